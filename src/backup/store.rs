//! Stage three of a component's copy: frames into packs, entries into the component's
//! file list (whose chunks go into packs too). A pack is indexed only once it is
//! durable, and `committed` tells the producer how far that is.

use super::shared_packer::SharedPacker;
use super::{Item, Payload};
use crate::chunk_reader::ChunkReader;
use crate::compress::{compress, compress_against};
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::manifest::{
    BackupStats, ChunkRef, ComponentTrailer, CopyTime, FileEntry, FileError, FileKind, FileListWriter,
    FileRole,
};
use crate::repo::Repository;
use crate::stores::SourceReport;
use crossbeam_channel::Receiver;
use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// What the store stage wrote for one component.
pub struct Stored {
    pub stats: BackupStats,
    pub errors: Vec<FileError>,
    files: u64,
    bytes: u64,
    /// Log numbers of the log files in the component.
    logs: Vec<u64>,
    vanished: Vec<Vec<u8>>,
    /// The chunks of the component's file list, in order.
    pub file_list: Vec<ChunkRef>,
}

impl Stored {
    /// The component's trailer. Where the store type says so, the logs must form an
    /// unbroken sequence: a log may vanish during a hot copy only by being cleaned up,
    /// which takes the oldest.
    pub fn trailer(&mut self, report: SourceReport, copy_time: CopyTime) -> Result<ComponentTrailer> {
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
        Ok(ComponentTrailer {
            files: self.files,
            bytes: self.bytes,
            first_log_number: logs.first().copied(),
            last_log_number: logs.last().copied(),
            consistency: report.consistency,
            passes: report.passes,
            excluded: report.excluded,
            vanished: std::mem::take(&mut self.vanished),
            copy_time: Some(copy_time),
            command: report.command,
        })
    }
}

/// The chunks of a component's file list go into packs of their own, each once: an
/// unchanged stretch of the list is already in the repository. A changed chunk is
/// stored as a delta against the parent's list chunk at the same offset of the list
/// (where that is much smaller): a file's new times change a few bytes of a chunk, so
/// changes scattered through a tree cost about those bytes, not whole chunks.
struct ListChunks<'a, 'p> {
    repo: &'a Repository,
    packer: &'a SharedPacker<'p>,
    added: HashSet<ChunkId>,
    /// The parent's list chunks with the offset each starts at.
    parent: Vec<(u64, ChunkId)>,
    /// Offset in the list of the next chunk.
    offset: u64,
}

impl<'a, 'p> ListChunks<'a, 'p> {
    fn new(repo: &'a Repository, packer: &'a SharedPacker<'p>, parent: Vec<ChunkRef>) -> Self {
        let mut start = 0;
        let parent = parent
            .into_iter()
            .map(|chunk| {
                start += chunk.len as u64;
                (start - chunk.len as u64, chunk.id)
            })
            .collect();
        ListChunks { repo, packer, added: HashSet::new(), parent, offset: 0 }
    }

    fn store(&mut self, id: ChunkId, bytes: &[u8], stats: &mut BackupStats) -> Result<()> {
        let offset = self.offset;
        self.offset += bytes.len() as u64;
        // A view per chunk, not per backup: see compress.rs.
        if !self.added.insert(id) || self.repo.index.view()?.chunks()?.contains(&id)? {
            return Ok(());
        }
        let level = self.repo.config.compression.level;
        let frame = match self.parent_chunk_at(offset) {
            Some(previous) => match ChunkReader::new(self.repo)?.whole_version_of(&previous) {
                Some((reference, whole)) => compress_against(id, bytes.to_vec(), level, reference, &whole),
                None => compress(id, bytes.to_vec(), level),
            },
            None => compress(id, bytes.to_vec(), level),
        };
        // Counted in what the backup added to packs, not in its new file data.
        stats.stored_bytes += self.packer.add_list_chunk(&frame)?;
        Ok(())
    }

    /// The parent's list chunk that holds list offset `offset`.
    fn parent_chunk_at(&self, offset: u64) -> Option<ChunkId> {
        let after = self.parent.partition_point(|(start, _)| *start <= offset);
        after.checked_sub(1).map(|i| self.parent[i].1)
    }
}

fn write_entry(
    list: &mut FileListWriter,
    chunks: &mut ListChunks<'_, '_>,
    entry: FileEntry,
    stored: &mut Stored,
) -> Result<()> {
    stored.stats.files += 1;
    stored.files += 1;
    if entry.kind == FileKind::Regular {
        stored.stats.bytes += entry.size;
        stored.bytes += entry.size;
    }
    if let (FileRole::Log, Some(n)) = (entry.role, entry.log_number) {
        stored.logs.push(n);
    }
    list.push(entry, &mut |id, bytes| chunks.store(id, bytes, &mut stored.stats))
}

/// Stores one component's items; its chunks are durable once `packer` has finished the
/// pack they went to (the caller finishes the last one when every component is done).
pub fn run(
    repo: &Repository,
    input: Receiver<Vec<Item>>,
    packer: &SharedPacker,
    committed: &Arc<AtomicU64>,
    parent_list: Vec<ChunkRef>,
) -> Result<Stored> {
    let mut stored = Stored {
        stats: BackupStats::default(),
        errors: Vec::new(),
        files: 0,
        bytes: 0,
        logs: Vec::new(),
        vanished: Vec::new(),
        file_list: Vec::new(),
    };
    let mut list = FileListWriter::default();
    let mut list_chunks = ListChunks::new(repo, packer, parent_list);
    let mut file: Option<FileEntry> = None;
    for batch in input {
        for item in batch {
            match item {
                Item::Entry(entry) => write_entry(&mut list, &mut list_chunks, entry, &mut stored)?,
                Item::Begin(entry) => file = Some(entry),
                Item::Chunk { id, len, payload } => {
                    let new = match payload {
                        Payload::Known => None,
                        Payload::Compressed { seq, frame } => Some((seq, frame)),
                        Payload::Raw { seq, bytes, .. } => {
                            Some((seq, compress(id, bytes, repo.config.compression.level)))
                        }
                    };
                    if let Some((seq, frame)) = new {
                        stored.stats.new_chunks += 1;
                        stored.stats.new_bytes += len as u64;
                        stored.stats.stored_bytes += packer.add((committed, seq), &frame)?;
                    }
                    if let Some(entry) = file.as_mut() {
                        entry.chunks.push(ChunkRef { id, len });
                    }
                }
                Item::End { size } => {
                    let mut entry = file.take().expect("End follows Begin");
                    entry.size = size;
                    write_entry(&mut list, &mut list_chunks, entry, &mut stored)?;
                }
                Item::Vanished { path } => stored.vanished.push(path),
                Item::Failed { path, message } => {
                    if file.as_ref().is_some_and(|c| c.path == path) {
                        file = None;
                    }
                    stored.errors.push(FileError { path, message });
                }
            }
        }
    }
    stored.file_list = list.finish(&mut |id, bytes| list_chunks.store(id, bytes, &mut stored.stats))?;
    Ok(stored)
}
