//! Stage three of a backup: frames into packs, entries into the manifest. A pack is
//! indexed only once it is durable, and `committed` tells the producer how far that is.

use super::produce::Produced;
use super::{Item, Payload};
use crate::error::{Error, Result};
use crate::manifest::{
    BackupStats, ChunkRef, ComponentTrailer, FileEntry, FileError, FileKind, FileRole, ManifestWriter,
    Record, SnapshotTrailer, Timestamp,
};
use crate::pack::{compress, PackWriter};
use crate::repo::Repository;
use crate::stores::SourceReport;
use crossbeam_channel::Receiver;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Stored {
    stats: BackupStats,
    errors: Vec<FileError>,
    /// Log numbers of the log files copied.
    logs: Vec<u64>,
    vanished: Vec<Vec<u8>>,
}

impl Stored {
    /// The component's trailer. The copied logs must form an unbroken sequence: a log
    /// may vanish during a hot copy only by being cleaned up, which takes the oldest.
    pub fn component_trailer(&self, report: SourceReport) -> Result<ComponentTrailer> {
        let mut logs = self.logs.clone();
        logs.sort_unstable();
        if let Some(gap) = logs.windows(2).find(|w| w[1] != w[0] + 1) {
            return Err(Error::Invalid(format!(
                "log files {} to {} are missing from the copy (removed while the store was copied?); no snapshot was written",
                gap[0] + 1,
                gap[1] - 1
            )));
        }
        Ok(ComponentTrailer {
            files: self.stats.files,
            bytes: self.stats.bytes,
            first_log_number: logs.first().copied(),
            last_log_number: logs.last().copied(),
            consistency: report.consistency,
            passes: report.passes,
            excluded: report.excluded,
            vanished: self.vanished.clone(),
        })
    }

    pub fn snapshot_trailer(self, produced: Produced) -> SnapshotTrailer {
        let mut stats = self.stats;
        stats.bytes_read = produced.bytes_read;
        SnapshotTrailer {
            finished: Timestamp::now(),
            complete: self.errors.is_empty(),
            errors: self.errors,
            stats,
        }
    }
}

struct Packer<'a> {
    repo: &'a Repository,
    pack: Option<PackWriter>,
    /// One past the highest sequence number in the open pack.
    pack_seq_end: u64,
    committed: &'a AtomicU64,
}

impl Packer<'_> {
    fn add(&mut self, seq: u64, frame: &crate::pack::Frame) -> Result<u64> {
        if self.pack.is_none() {
            self.pack = Some(PackWriter::create(&self.repo.tmp_dir())?);
        }
        let pack = self.pack.as_mut().expect("just created");
        pack.add(frame)?;
        self.pack_seq_end = seq + 1;
        if pack.len() >= self.repo.config.pack_target {
            self.finish()?;
        }
        Ok(frame.bytes.len() as u64)
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(pack) = self.pack.take() {
            let done = pack.finish(&self.repo.packs_dir())?;
            self.repo.index.add_pack(&done.id, done.size, &done.entries)?;
            self.committed.store(self.pack_seq_end, Ordering::Release);
        }
        Ok(())
    }
}

pub fn run(
    repo: &Repository,
    input: Receiver<Vec<Item>>,
    manifest: &mut ManifestWriter,
    committed: &AtomicU64,
) -> Result<Stored> {
    let mut packer = Packer { repo, pack: None, pack_seq_end: 0, committed };
    let mut stats = BackupStats::default();
    let mut errors = Vec::new();
    let (mut logs, mut vanished) = (Vec::new(), Vec::new());
    let mut current: Option<FileEntry> = None;
    let mut write_entry = |entry: FileEntry, stats: &mut BackupStats, logs: &mut Vec<u64>| -> Result<()> {
        stats.files += 1;
        if entry.kind == FileKind::Regular {
            stats.bytes += entry.size;
        }
        if let (FileRole::Log, Some(n)) = (entry.role, entry.log_number) {
            logs.push(n);
        }
        manifest.write(&Record::File(entry))
    };
    for batch in input {
        for item in batch {
            match item {
                Item::Entry(entry) => write_entry(entry, &mut stats, &mut logs)?,
                Item::Begin(entry) => current = Some(entry),
                Item::Chunk { id, len, payload } => {
                    let new = match payload {
                        Payload::Known => None,
                        Payload::Compressed { seq, frame } => Some((seq, frame)),
                        Payload::Raw { seq, bytes } => {
                            Some((seq, compress(id, bytes, repo.config.compression.level)))
                        }
                    };
                    if let Some((seq, frame)) = new {
                        stats.new_chunks += 1;
                        stats.new_bytes += len as u64;
                        stats.stored_bytes += packer.add(seq, &frame)?;
                    }
                    if let Some(entry) = current.as_mut() {
                        entry.chunks.push(ChunkRef { id, len });
                    }
                }
                Item::End { size } => {
                    let mut entry = current.take().expect("End follows Begin");
                    entry.size = size;
                    write_entry(entry, &mut stats, &mut logs)?;
                }
                Item::Vanished { path } => vanished.push(path),
                Item::Failed { path, message } => {
                    if current.as_ref().is_some_and(|c| c.path == path) {
                        current = None;
                    }
                    errors.push(FileError { path, message });
                }
            }
        }
    }
    packer.finish()?;
    Ok(Stored { stats, errors, logs, vanished })
}
