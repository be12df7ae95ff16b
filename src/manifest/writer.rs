//! Writing manifests: `ManifestWriter` streams records into a new object and names it
//! by its hash; `RecordSpool` holds one component's records until the manifest takes them.

use super::hashing::HashingWriter;
use super::records::Record;
use crate::error::{Error, IoContext, Result};
use crate::format::{self, SNAPSHOT_MAGIC};
use crate::id::SnapshotId;
use crate::layout;
use crate::storage::{self, NewObject, Storage};
use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

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

    /// Makes the manifest durable as `snapshots/<id>`: from here on the snapshot exists.
    pub fn finish(self) -> Result<SnapshotId> {
        let out = self.encoder.finish().at(&self.temp)?;
        let id = SnapshotId::from(out.hasher.finalize());
        storage::finish_content_named(out.inner, &layout::snapshot(&id))?;
        Ok(id)
    }

    /// Copies the records of a spool into the manifest, in order.
    pub fn append(&mut self, spool: RecordSpool) -> Result<()> {
        let mut file = spool.out.into_inner().map_err(|e| Error::io(&spool.path, e.into_error()))?;
        file.rewind().at(&spool.path)?;
        io::copy(&mut file, &mut self.encoder).at(&self.temp)?;
        Ok(())
    }
}

/// The records of one component, written to a scratch file while components are copied
/// side by side, and appended to the manifest once all are done. The file has no name:
/// it goes when it is closed, whatever ends the backup.
pub struct RecordSpool {
    out: BufWriter<File>,
    path: PathBuf,
}

impl RecordSpool {
    pub fn create(scratch_dir: &Path) -> Result<RecordSpool> {
        std::fs::create_dir_all(scratch_dir).at(scratch_dir)?;
        let file = tempfile::tempfile_in(scratch_dir).at(scratch_dir)?;
        Ok(RecordSpool { out: BufWriter::with_capacity(1 << 20, file), path: scratch_dir.join("(records)") })
    }

    pub fn write(&mut self, record: &Record) -> Result<()> {
        let bytes = format::encode(record);
        self.out.write_all(&(bytes.len() as u32).to_le_bytes()).at(&self.path)?;
        self.out.write_all(&bytes).at(&self.path)
    }
}
