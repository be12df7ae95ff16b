//! Stage one of a backup: walk the source, reuse what the parent already has, read and
//! cut the rest, name every chunk and decide which are new.

use super::inflight::InFlight;
use super::logs_only::LogsOnly;
use super::parent::{unchanged, ParentFiles};
use super::reuse::{may_reuse, SameOffset};
use super::{Item, Payload, BATCH_BYTES, BATCH_ITEMS};
use crate::chunker::{self, ChunkerParams};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::format::READ_UNIT;
use crate::id::ChunkId;
use crate::manifest::{ChunkRef, ComponentHeader, FileEntry, FileKind, FileRole};
use crate::repo::Repository;
use crate::stores::{Planned, Source, SourceReport, Sourced};
use crate::walk::entry_from;
use crate::Progress;
use crossbeam_channel::Sender;
use std::collections::HashMap;
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
pub struct Job<'a> {
    pub header: ComponentHeader,
    pub files: Box<dyn Source>,
    pub parent: Option<ParentFiles<'a>>,
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
        (true, Some(last)) => Some(LogsOnly::new(last, header.name.clone())),
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
                        Some(l) => p.logs_only_file(l, entry, &found.abs, open, parent.as_mut())?,
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
        parent: Option<&mut ParentFiles<'_>>,
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
        // Only a file opened by the source can be a pipe (a dump): one the walk found
        // regular is not, and asking costs a syscall per file.
        let may_be_pipe = open.is_some();
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
        match self.read_chunks(&mut file, may_be_pipe, &params, references.as_mut())? {
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

    /// A file of a `--logs-only` copy: the parent entries its rules keep, then the file
    /// itself if they say to read it.
    fn logs_only_file(
        &mut self,
        logs_only: &mut LogsOnly,
        entry: FileEntry,
        abs: &Path,
        open: Option<File>,
        parent: Option<&mut ParentFiles<'_>>,
    ) -> Result<()> {
        let parent = parent.expect("logs-only has a parent");
        let step = logs_only.step(&entry, open.is_some(), parent)?;
        for kept in step.keep {
            if !self.all_present(&kept.chunks)? {
                return Err(logs_only.missing(&kept));
            }
            self.progress.advance(1, kept.size);
            self.push(Item::Entry(kept))?;
        }
        match step.read {
            true => self.file(entry, abs, open, Some(parent)),
            false => Ok(()),
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
        may_be_pipe: bool,
        params: &ChunkerParams,
        references: Option<&mut SameOffset>,
    ) -> Result<std::io::Result<u64>> {
        self.chunks.clear();
        let mut buffer = std::mem::take(&mut self.buffer);
        let result = self.cut_stream(file, may_be_pipe, &mut buffer, params, references);
        self.buffer = buffer;
        result
    }

    fn cut_stream(
        &mut self,
        file: &mut File,
        may_be_pipe: bool,
        buffer: &mut [u8],
        params: &ChunkerParams,
        mut references: Option<&mut SameOffset>,
    ) -> Result<std::io::Result<u64>> {
        let (mut filled, mut total, mut eof) = (0usize, 0u64, false);
        // A pipe (a dump) may block for as long as its command pleases: wait for it in
        // short polls, so that a failure elsewhere stops this copy at once.
        let pipe = may_be_pipe
            && file.metadata().is_ok_and(|m| m.file_type().is_fifo() || m.file_type().is_char_device());
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
