//! Stage three of a backup: frames into packs, entries into the manifest. A pack is
//! indexed only once it is durable, and `committed` tells the producer how far that is.

use super::produce::Produced;
use super::{Item, Payload};
use crate::error::{Error, Result};
use crate::manifest::{
    BackupStats, ChunkRef, ComponentHeader, ComponentSummary, ComponentTrailer, FileEntry, FileError,
    FileKind, FileRole, ManifestWriter, Record, SnapshotTrailer, Timestamp,
};
use crate::pack::{compress, PackWriter};
use crate::repo::Repository;
use crate::stores::SourceReport;
use crossbeam_channel::Receiver;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Stored {
    stats: BackupStats,
    errors: Vec<FileError>,
    pub components: Vec<ComponentSummary>,
}

/// What the store stage gathers about the component it is writing.
struct Current {
    header: ComponentHeader,
    files: u64,
    bytes: u64,
    /// Log numbers of the log files in the component.
    logs: Vec<u64>,
    vanished: Vec<Vec<u8>>,
}

impl Current {
    /// The component's trailer. Where the store type says so, the logs must form an
    /// unbroken sequence: a log may vanish during a hot copy only by being cleaned up,
    /// which takes the oldest.
    fn trailer(mut self, report: SourceReport) -> Result<ComponentSummary> {
        let logs = &mut self.logs;
        logs.sort_unstable();
        let gap = logs.windows(2).find(|w| w[1] != w[0] + 1).filter(|_| report.contiguous_logs);
        if let Some(gap) = gap {
            return Err(Error::Invalid(format!(
                "log files {} to {} are missing from the copy (removed while the store was copied?); no snapshot was written",
                gap[0] + 1,
                gap[1] - 1
            )));
        }
        let trailer = ComponentTrailer {
            files: self.files,
            bytes: self.bytes,
            first_log_number: logs.first().copied(),
            last_log_number: logs.last().copied(),
            consistency: report.consistency,
            passes: report.passes,
            excluded: report.excluded,
            vanished: self.vanished,
        };
        Ok(ComponentSummary { header: self.header, trailer })
    }
}

impl Stored {
    pub fn snapshot_trailer(self, produced: Produced) -> SnapshotTrailer {
        let mut stats = self.stats;
        stats.bytes_read = produced.bytes_read;
        SnapshotTrailer {
            finished: Timestamp::now(),
            complete: self.errors.is_empty(),
            errors: self.errors,
            stats,
            hooks: None,
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

fn write_entry(
    manifest: &mut ManifestWriter,
    entry: FileEntry,
    stats: &mut BackupStats,
    component: &mut Option<Current>,
) -> Result<()> {
    let component = component.as_mut().expect("files belong to a component");
    stats.files += 1;
    component.files += 1;
    if entry.kind == FileKind::Regular {
        stats.bytes += entry.size;
        component.bytes += entry.size;
    }
    if let (FileRole::Log, Some(n)) = (entry.role, entry.log_number) {
        component.logs.push(n);
    }
    manifest.write(&Record::File(entry))
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
    let mut components = Vec::new();
    let mut component: Option<Current> = None;
    let mut file: Option<FileEntry> = None;
    for batch in input {
        for item in batch {
            match item {
                Item::Component(header) => {
                    manifest.write(&Record::Component(header.clone()))?;
                    let (files, bytes, logs, vanished) = (0, 0, Vec::new(), Vec::new());
                    component = Some(Current { header, files, bytes, logs, vanished });
                }
                Item::ComponentEnd(report) => {
                    let done = component.take().expect("a component ends after it starts").trailer(report)?;
                    manifest.write(&Record::ComponentEnd(done.trailer.clone()))?;
                    components.push(done);
                }
                Item::Entry(entry) => write_entry(manifest, entry, &mut stats, &mut component)?,
                Item::Begin(entry) => file = Some(entry),
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
                    if let Some(entry) = file.as_mut() {
                        entry.chunks.push(ChunkRef { id, len });
                    }
                }
                Item::End { size } => {
                    let mut entry = file.take().expect("End follows Begin");
                    entry.size = size;
                    write_entry(manifest, entry, &mut stats, &mut component)?;
                }
                Item::Vanished { path } => component.as_mut().expect("in a component").vanished.push(path),
                Item::Failed { path, message } => {
                    if file.as_ref().is_some_and(|c| c.path == path) {
                        file = None;
                    }
                    errors.push(FileError { path, message });
                }
            }
        }
    }
    packer.finish()?;
    Ok(Stored { stats, errors, components })
}
