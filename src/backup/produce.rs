//! Stage one of a backup: walk the source, reuse what the parent already has, read and
//! cut the rest, name every chunk and decide which are new.

use super::parent::{unchanged, ParentFiles};
use super::{Item, Payload, BATCH_BYTES, BATCH_ITEMS};
use crate::chunker::{self, ChunkerParams};
use crate::config::Config;
use crate::error::{Error, Hint, Result};
use crate::format::READ_UNIT;
use crate::id::ChunkId;
use crate::index::{ChunkTable, Index};
use crate::manifest::{ChunkRef, ComponentHeader, FileEntry, FileKind, FileRole};
use crate::repo::Repository;
use crate::stores::{Planned, Source, SourceReport, Sourced};
use crate::time::Timestamp;
use crate::walk::entry_from;
use crate::Progress;
use crossbeam_channel::Sender;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What the producer knows at the end.
pub struct Produced {
    pub bytes_read: u64,
    pub report: SourceReport,
}

/// New chunks not yet committed to the index. The store stage publishes in `committed`
/// the sequence number below which every new chunk is indexed; those are dropped from
/// here after a fresh index view is taken, so the set stays as small as the queues.
struct InFlight<'a> {
    index: &'a Index,
    table: ChunkTable,
    ids: HashSet<ChunkId>,
    order: VecDeque<(u64, ChunkId)>,
    next_seq: u64,
    seen_committed: u64,
    committed: &'a AtomicU64,
}

impl<'a> InFlight<'a> {
    fn new(index: &'a Index, committed: &'a AtomicU64) -> Result<Self> {
        Ok(InFlight {
            index,
            table: index.view()?.chunks()?,
            ids: HashSet::new(),
            order: VecDeque::new(),
            next_seq: 0,
            seen_committed: 0,
            committed,
        })
    }

    /// Takes a fresh index view once the store stage has committed more packs, and
    /// forgets the in-flight chunks those hold.
    fn refresh(&mut self) -> Result<()> {
        let committed = self.committed.load(Ordering::Acquire);
        if committed > self.seen_committed {
            self.table = self.index.view()?.chunks()?;
            while self.order.front().is_some_and(|(seq, _)| *seq < committed) {
                let (_, old) = self.order.pop_front().expect("front exists");
                self.ids.remove(&old);
            }
            self.seen_committed = committed;
        }
        Ok(())
    }

    /// Whether the repository has `id` or this backup is storing it.
    fn has(&mut self, id: &ChunkId) -> Result<bool> {
        self.refresh()?;
        Ok(self.ids.contains(id) || self.table.contains(id)?)
    }

    /// Returns the sequence number of `id` if it is new, `None` if it is known.
    fn claim(&mut self, id: ChunkId) -> Result<Option<u64>> {
        if self.has(&id)? {
            return Ok(None);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.ids.insert(id);
        self.order.push_back((seq, id));
        Ok(Some(seq))
    }
}

struct Producer<'a> {
    config: &'a Config,
    /// Set when another component of the backup failed: stop.
    cancel: &'a AtomicBool,
    /// A store copy must be complete: read errors fail the backup.
    all_or_nothing: bool,
    inflight: InFlight<'a>,
    out: Sender<Vec<Item>>,
    batch: Vec<Item>,
    batch_bytes: usize,
    buffer: Vec<u8>,
    /// The chunks of the file being read.
    chunks: Vec<ChunkRef>,
    /// Hard-linked files read in this backup, by (device, inode), with the number of
    /// their names still to come: each inode is read once, and forgotten once all its
    /// names are seen.
    hard_links: HashMap<(u64, u64), (FileEntry, u64)>,
    bytes_read: u64,
    progress: &'a dyn Progress,
}

/// One component to copy: its header, its files and its parent's files.
pub struct Job {
    pub header: ComponentHeader,
    pub files: Box<dyn Source>,
    pub parent: Option<ParentFiles>,
    /// Keep the parent's data files, copy only the logs from the parent's last one on.
    pub logs_only: bool,
}

/// Copies one component. Stops early, with `Error::Cancelled`, once `cancel` is set (a
/// component copied alongside failed).
pub fn run(
    repo: &Repository,
    job: Job,
    committed: &AtomicU64,
    out: Sender<Vec<Item>>,
    cancel: &AtomicBool,
    progress: &dyn Progress,
) -> Result<Produced> {
    let Job { header, mut files, mut parent, logs_only } = job;
    let mut p = Producer {
        config: &repo.config,
        cancel,
        all_or_nothing: files.all_or_nothing(),
        inflight: InFlight::new(&repo.index, committed)?,
        out,
        batch: Vec::new(),
        batch_bytes: 0,
        buffer: vec![0u8; read_buffer_len(&repo.config)],
        chunks: Vec::new(),
        hard_links: HashMap::new(),
        bytes_read: 0,
        progress,
    };
    let mut logs_only = match (logs_only, parent.as_ref().and_then(ParentFiles::last_log_number)) {
        (true, Some(last)) => Some(LogsOnly { parent_last: last, reached: false, name: header.name.clone() }),
        _ => None,
    };
    for next in &mut *files {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        match next? {
            Sourced::File(Planned { found, role, log_number, chunker, open }) => match entry_from(&found) {
                Ok(mut entry) => {
                    (entry.role, entry.log_number, entry.chunker) =
                        (role, log_number, repo.config.profile_for(chunker));
                    match logs_only.as_mut() {
                        Some(l) => l.file(&mut p, entry, &found.abs, open, parent.as_mut())?,
                        None => p.file(entry, &found.abs, open, parent.as_mut())?,
                    }
                }
                Err(e) => p.unreadable(found.rel, format!("{}: {e}", found.abs.display()))?,
            },
            Sourced::Stream { entry, from, label } => p.file(entry, &label, Some(from), None)?,
            Sourced::Unreadable { rel, message } => p.unreadable(rel, message)?,
        }
    }
    // A source stopped because another component failed (its command killed) ends
    // like a finished one: the other failure is the one to report.
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::Cancelled);
    }
    if let Some(l) = logs_only {
        l.finish()?;
    }
    files.finish()?;
    p.flush()?;
    Ok(Produced { bytes_read: p.bytes_read, report: files.report() })
}

/// `--logs-only` for one database component: data files come from the parent without
/// being read, so do the parent's logs below its last one (including those the store
/// has since removed); the parent's last log, which may have grown, and newer ones are
/// read. The parent's last log must still be there: without it the sequence is broken.
struct LogsOnly {
    parent_last: u64,
    /// Whether the parent's last log was met (and the parent's older logs emitted).
    reached: bool,
    name: String,
}

impl LogsOnly {
    fn file(
        &mut self,
        p: &mut Producer,
        entry: FileEntry,
        abs: &Path,
        open: Option<File>,
        parent: Option<&mut ParentFiles>,
    ) -> Result<()> {
        let parent = parent.expect("logs-only has a parent");
        match (entry.role, entry.log_number) {
            (FileRole::Log, Some(n)) if n < self.parent_last => Ok(()),
            (FileRole::Log, Some(n)) => {
                if !self.reached {
                    // Listed but gone before it could be opened is gone as well.
                    if n != self.parent_last || open.is_none() {
                        return Err(self.broken());
                    }
                    self.reached = true;
                    for old in parent.logs_below(self.parent_last) {
                        self.keep(p, old)?;
                    }
                }
                p.file(entry, abs, open, Some(parent))
            }
            (FileRole::Data, _) => match parent.find(&entry.path)? {
                Some(kept) if kept.kind == entry.kind => self.keep(p, kept),
                // New since the parent: read it (recovery accepts a newer page).
                _ => p.file(entry, abs, open, Some(parent)),
            },
            // Configuration and directories are taken as they are now.
            _ => p.file(entry, abs, open, Some(parent)),
        }
    }

    /// Takes the parent's entry as it is.
    fn keep(&self, p: &mut Producer, kept: FileEntry) -> Result<()> {
        if !p.all_present(&kept.chunks)? {
            return Err(Error::Invalid(format!(
                "logs-only backup: the repository no longer holds all of {} of component {} from the parent snapshot",
                String::from_utf8_lossy(&kept.path),
                self.name
            ))
            .with_hint(Hint::FullBackup));
        }
        p.progress.advance(1, kept.size);
        p.push(Item::Entry(kept))
    }

    fn finish(self) -> Result<()> {
        match self.reached {
            true => Ok(()),
            false => Err(self.broken()),
        }
    }

    fn broken(&self) -> Error {
        Error::Invalid(format!(
            "logs-only backup: log {} of component {}, the last one the parent snapshot copied, is no longer in the store, so the log sequence since the parent is broken",
            self.parent_last, self.name
        ))
        .with_hint(Hint::IncrementalOrFull)
    }
}

/// Whether `file` has input (or an end) within a fifth of a second.
fn readable_soon(file: &File) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
    // An error (interrupted) just means: look again.
    poll(&mut fds, PollTimeout::from(200u16)).is_ok_and(|n| n > 0)
}

/// Enough for two maximal chunks of any profile, in whole read units: every full
/// buffer holds at least one complete chunk.
fn read_buffer_len(config: &Config) -> usize {
    let largest = config.chunkers.iter().map(|c| c.max_size as usize).max().unwrap_or(0);
    (2 * largest).max(8 << 20).div_ceil(READ_UNIT) * READ_UNIT
}

/// Seconds a data file must have been quiet before the parent backup began for its
/// unchanged times to prove unchanged content: file times tick coarsely (a few ms), so a
/// write just after the parent read the file could leave them as they were.
const QUIET_SECS: i64 = 2;

/// What a file's role allows (given that its size, times and inode are as the parent
/// recorded): logs below the parent's last log are complete and never change; the
/// parent's last log and newer ones are read. Data files are updated in place: reused
/// only when last changed well before the parent backup began, else read as they are now.
fn may_reuse(entry: &FileEntry, parent: &ParentFiles) -> bool {
    match entry.role {
        FileRole::Plain => true,
        FileRole::Data => {
            let changed = entry.mtime.max(entry.ctime);
            Timestamp { secs: changed.secs + QUIET_SECS, ..changed } < parent.started()
        }
        FileRole::Log => {
            matches!((entry.log_number, parent.last_log_number()), (Some(n), Some(last)) if n < last)
        }
    }
}

impl Producer<'_> {
    fn push(&mut self, item: Item) -> Result<()> {
        if let Item::Chunk { payload: Payload::Raw { bytes, .. }, .. } = &item {
            self.batch_bytes += bytes.len();
        }
        self.batch.push(item);
        if self.batch_bytes >= BATCH_BYTES || self.batch.len() >= BATCH_ITEMS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batch_bytes = 0;
        let batch = std::mem::take(&mut self.batch);
        // A closed queue means the store stage failed; it reports why.
        self.out.send(batch).map_err(|_| Error::Invalid("backup stopped".into()))
    }

    /// A file or listing that cannot be read: noted in the snapshot, or for a store
    /// (whose copy must be complete) the end of the backup.
    fn unreadable(&mut self, path: Vec<u8>, message: String) -> Result<()> {
        if self.all_or_nothing {
            return Err(Error::Invalid(format!(
                "{message}; a store copy must be complete, so no snapshot was written"
            )));
        }
        self.push(Item::Failed { path, message })
    }

    fn file(
        &mut self,
        mut entry: FileEntry,
        abs: &Path,
        open: Option<File>,
        parent: Option<&mut ParentFiles>,
    ) -> Result<()> {
        if entry.kind != FileKind::Regular {
            self.progress.advance(1, 0);
            return self.push(Item::Entry(entry));
        }
        let (previous, mut references) = match parent {
            Some(parent) => {
                let found = parent.find(&entry.path)?;
                // A data file is updated in place: a new chunk is most like the one at
                // its offset in the parent, and is stored as a delta against it.
                let references = found
                    .as_ref()
                    .filter(|found| entry.role == FileRole::Data && found.kind == FileKind::Regular)
                    .map(|found| SameOffset::new(found.chunks.clone()));
                (found.filter(|_| may_reuse(&entry, parent)), references)
            }
            None => (None, None),
        };
        let link = (entry.device, entry.inode);
        let first_name = if entry.links > 1 { self.other_name_of(link) } else { None };
        let known = previous.as_ref().or(first_name.as_ref());
        if let Some(known) = known.filter(|known| unchanged(known, &entry)) {
            let chunks = known.chunks.clone();
            // Reuse only what the repository still holds; otherwise read the file again.
            if self.all_present(&chunks)? {
                entry.chunks = chunks;
                self.progress.advance(1, entry.size);
                return self.push(Item::Entry(entry));
            }
        }
        let params = *self.config.chunker(entry.chunker).expect("store types use the config's profiles");
        let mut file = match open.map_or_else(|| File::open(abs), Ok) {
            Ok(file) => file,
            // Gone since the listing: a store notes it (a cleaned-up log, say); the
            // backup checks afterwards that no log is missing from the sequence.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.all_or_nothing => {
                return self.push(Item::Vanished { path: entry.path });
            }
            Err(e) => return self.unreadable(entry.path, format!("cannot read {}: {e}", abs.display())),
        };
        let path = entry.path.clone();
        let first_link = (entry.links > 1).then(|| entry.clone());
        self.push(Item::Begin(entry))?;
        match self.read_chunks(&mut file, &params, references.as_mut())? {
            Ok(size) => {
                if let Some(mut first) = first_link {
                    first.size = size;
                    first.chunks = std::mem::take(&mut self.chunks);
                    let names_to_come = first.links - 1;
                    self.hard_links.insert(link, (first, names_to_come));
                }
                self.progress.advance(1, 0);
                self.push(Item::End { size })
            }
            Err(e) => self.unreadable(path, format!("cannot read {}: {e}", abs.display())),
        }
    }

    /// The entry of an inode already read under another name in this backup.
    fn other_name_of(&mut self, link: (u64, u64)) -> Option<FileEntry> {
        let (first, names_to_come) = self.hard_links.get_mut(&link)?;
        *names_to_come = names_to_come.saturating_sub(1);
        if *names_to_come == 0 {
            self.hard_links.remove(&link).map(|(first, _)| first)
        } else {
            Some(first.clone())
        }
    }

    fn all_present(&mut self, chunks: &[ChunkRef]) -> Result<bool> {
        for chunk in chunks {
            if !self.inflight.has(&chunk.id)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads one file in multiples of `READ_UNIT` and emits its chunks. The outer error
    /// is fatal to the backup; the inner one is this file's alone.
    fn read_chunks(
        &mut self,
        file: &mut File,
        params: &ChunkerParams,
        references: Option<&mut SameOffset>,
    ) -> Result<std::io::Result<u64>> {
        self.chunks.clear();
        let mut buffer = std::mem::take(&mut self.buffer);
        let result = self.cut_stream(file, &mut buffer, params, references);
        self.buffer = buffer;
        result
    }

    fn cut_stream(
        &mut self,
        file: &mut File,
        buffer: &mut [u8],
        params: &ChunkerParams,
        mut references: Option<&mut SameOffset>,
    ) -> Result<std::io::Result<u64>> {
        let (mut filled, mut total, mut eof) = (0usize, 0u64, false);
        // A pipe (a dump) may block for as long as its command pleases: wait for it in
        // short polls, so that a failure elsewhere stops this copy at once.
        let pipe = file.metadata().is_ok_and(|m| m.file_type().is_fifo() || m.file_type().is_char_device());
        loop {
            while !eof {
                let room = (buffer.len() - filled) / READ_UNIT * READ_UNIT;
                if room == 0 {
                    break;
                }
                if self.cancel.load(Ordering::Relaxed) {
                    return Err(Error::Cancelled);
                }
                if pipe && !readable_soon(file) {
                    continue;
                }
                match file.read(&mut buffer[filled..filled + room]) {
                    Ok(0) => eof = true,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Ok(Err(e)),
                }
            }
            let data = &buffer[..filled];
            let lengths = chunker::cut(data, params, eof);
            let mut ranges = Vec::with_capacity(lengths.len());
            let mut start = 0;
            for len in lengths {
                ranges.push(start..start + len);
                start += len;
            }
            // Hashed here, not on the rayon pool: there it would wait behind whole
            // batches of compression, and the pipeline would stall for want of input
            // (BLAKE3 runs at gigabytes a second on one core).
            let ids: Vec<ChunkId> = ranges.iter().map(|r| ChunkId::of(&data[r.clone()])).collect();
            for (range, id) in ranges.iter().zip(ids) {
                let payload = match self.inflight.claim(id)? {
                    Some(seq) => {
                        let reference = references.as_mut().and_then(|r| r.at(total + range.start as u64));
                        Payload::Raw { seq, bytes: data[range.clone()].to_vec(), reference }
                    }
                    None => Payload::Known,
                };
                let len = range.len() as u32;
                self.chunks.push(ChunkRef { id, len });
                self.push(Item::Chunk { id, len, payload })?;
            }
            self.bytes_read += start as u64;
            self.progress.advance(0, start as u64);
            total += start as u64;
            buffer.copy_within(start..filled, 0);
            filled -= start;
            if eof && filled == 0 {
                return Ok(Ok(total));
            }
        }
    }
}

/// The chunks of a file's previous version, looked up by offset as the new version is
/// cut (offsets only grow).
struct SameOffset {
    chunks: Vec<ChunkRef>,
    next: usize,
    /// Offset of `chunks[next]`.
    start: u64,
}

impl SameOffset {
    fn new(chunks: Vec<ChunkRef>) -> SameOffset {
        SameOffset { chunks, next: 0, start: 0 }
    }

    /// The previous version's chunk that holds byte `offset`.
    fn at(&mut self, offset: u64) -> Option<ChunkId> {
        while let Some(chunk) = self.chunks.get(self.next) {
            if offset < self.start + chunk.len as u64 {
                return Some(chunk.id);
            }
            self.start += chunk.len as u64;
            self.next += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_offset_finds_the_chunk_holding_each_offset() {
        let ids: Vec<ChunkId> = (0u8..3).map(|i| ChunkId::of(&[i])).collect();
        let chunks = vec![
            ChunkRef { id: ids[0], len: 10 },
            ChunkRef { id: ids[1], len: 5 },
            ChunkRef { id: ids[2], len: 1 },
        ];
        let mut lookup = SameOffset::new(chunks);
        assert_eq!(lookup.at(0), Some(ids[0]));
        assert_eq!(lookup.at(9), Some(ids[0]));
        assert_eq!(lookup.at(10), Some(ids[1]));
        assert_eq!(lookup.at(15), Some(ids[2]));
        assert_eq!(lookup.at(16), None);
    }
}
