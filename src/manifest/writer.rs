//! Writing manifests: `ManifestWriter` streams records into a temporary file and names
//! it by its hash; `RecordSpool` holds one component's records until the manifest takes them.

use super::hashing::HashingWriter;
use super::reader::snapshot_path;
use super::records::Record;
use crate::error::{Error, IoContext, Result};
use crate::format::{self, SNAPSHOT_MAGIC};
use crate::fsutil;
use crate::id::SnapshotId;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Streams records into a temporary file; `finish` names it by its hash.
pub struct ManifestWriter {
    encoder: zstd::stream::write::Encoder<'static, HashingWriter<BufWriter<File>>>,
    temp: PathBuf,
}

impl ManifestWriter {
    pub fn create(tmp_dir: &Path) -> Result<ManifestWriter> {
        let temp = fsutil::temp_path(tmp_dir, "snapshot");
        let file = File::create(&temp).at(&temp)?;
        let mut out = HashingWriter { inner: BufWriter::new(file), hasher: blake3::Hasher::new() };
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
    pub fn finish(self, snapshots_dir: &Path) -> Result<SnapshotId> {
        let out = self.encoder.finish().at(&self.temp)?;
        let id = SnapshotId::from(out.hasher.finalize());
        let file = out.inner.into_inner().map_err(|e| Error::io(&self.temp, e.into_error()))?;
        fsutil::persist(file, &self.temp, &snapshot_path(snapshots_dir, &id))?;
        Ok(id)
    }
}

impl ManifestWriter {
    /// Copies the records of a spool into the manifest, in order.
    pub fn append(&mut self, spool: RecordSpool) -> Result<()> {
        let file = spool.out.into_inner().map_err(|e| Error::io(&spool.path, e.into_error()))?;
        drop(file);
        let mut input = File::open(&spool.path).at(&spool.path)?;
        io::copy(&mut input, &mut self.encoder).at(&self.temp)?;
        std::fs::remove_file(&spool.path).at(&spool.path)
    }
}

/// The records of one component, written to a scratch file while components are copied
/// side by side, and appended to the manifest once all are done. A failed backup leaves
/// it in `tmp/`, which the next writer clears.
pub struct RecordSpool {
    out: BufWriter<File>,
    path: PathBuf,
}

impl RecordSpool {
    pub fn create(tmp_dir: &Path) -> Result<RecordSpool> {
        let path = fsutil::temp_path(tmp_dir, "records");
        let file = File::create(&path).at(&path)?;
        Ok(RecordSpool { out: BufWriter::with_capacity(1 << 20, file), path })
    }

    pub fn write(&mut self, record: &Record) -> Result<()> {
        let bytes = format::encode(record);
        self.out.write_all(&(bytes.len() as u32).to_le_bytes()).at(&self.path)?;
        self.out.write_all(&bytes).at(&self.path)
    }
}
