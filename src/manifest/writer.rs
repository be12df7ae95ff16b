//! Writing manifests: `ManifestWriter` streams records into a new object and names it
//! by its hash. A component's files go into its file list first (file_list.rs), and the
//! manifest names the list's chunks.

use super::hashing::HashingWriter;
use super::records::{ChunkRef, Record};
use crate::error::{IoContext, Result};
use crate::format::{self, SNAPSHOT_MAGIC};
use crate::id::SnapshotId;
use crate::layout;
use crate::storage::{self, NewObject, Storage};
use std::io::Write;
use std::path::PathBuf;

/// A writer's choice, not a rule of the format: 36 KiB records, each naming about 16 MiB
/// of file list.
const LIST_RECORD_CHUNKS: usize = 1024;

/// Streams records into a new object; `finish` names it by its hash.
pub struct ManifestWriter<'a> {
    encoder: zstd::stream::write::Encoder<'static, HashingWriter<Box<dyn NewObject + 'a>>>,
    temp: PathBuf,
}

impl<'a> ManifestWriter<'a> {
    pub fn create(storage: &'a dyn Storage) -> Result<ManifestWriter<'a>> {
        let temp = storage.describe("snapshots/(new)");
        let mut out = HashingWriter { inner: storage.create()?, hasher: blake3::Hasher::new() };
        out.write_all(&format::file_header(SNAPSHOT_MAGIC, format::MANIFEST_VERSION)).at(&temp)?;
        let encoder = zstd::stream::write::Encoder::new(out, 3).at(&temp)?;
        Ok(ManifestWriter { encoder, temp })
    }

    pub fn write(&mut self, record: &Record) -> Result<()> {
        let bytes = format::encode(record);
        self.encoder.write_all(&(bytes.len() as u32).to_le_bytes()).at(&self.temp)?;
        self.encoder.write_all(&bytes).at(&self.temp)
    }

    /// Names a component's file list, in records of at most `LIST_RECORD_CHUNKS` chunks
    /// so that no record grows with the component.
    pub fn write_file_list(&mut self, chunks: &[ChunkRef]) -> Result<()> {
        for part in chunks.chunks(LIST_RECORD_CHUNKS) {
            self.write(&Record::FileList(part.to_vec()))?;
        }
        Ok(())
    }

    /// Makes the manifest durable as `snapshots/<id>`: from here on the snapshot exists.
    pub fn finish(self) -> Result<SnapshotId> {
        let out = self.encoder.finish().at(&self.temp)?;
        let id = SnapshotId::from(out.hasher.finalize());
        storage::finish_content_named(out.inner, &layout::snapshot(&id))?;
        Ok(id)
    }
}
