//! Stage one of a backup: walk the source, reuse what the parent already has, read and
//! cut the rest, name every chunk and decide which are new.

use super::parent::{unchanged, ParentFiles};
use super::{Item, Payload, BATCH_BYTES, BATCH_ITEMS};
use crate::chunker::{self, ChunkerParams};
use crate::error::{Error, Result};
use crate::format::READ_UNIT;
use crate::id::ChunkId;
use crate::index::{ChunkTable, Index};
use crate::manifest::{ChunkRef, FileEntry, FileKind};
use crate::repo::Repository;
use crate::stores::dir::{entry_from, Walked, Walker};
use crate::Progress;
use crossbeam_channel::Sender;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the producer knows at the end.
pub struct Produced {
    pub bytes_read: u64,
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
    inflight: InFlight<'a>,
    out: Sender<Vec<Item>>,
    batch: Vec<Item>,
    batch_bytes: usize,
    buffer: Vec<u8>,
    /// The chunks of the file being read.
    chunks: Vec<ChunkRef>,
    /// Hard-linked files read in this backup, by (device, inode): each is read once.
    /// Hard-linked files read in this backup, by (device, inode), with the number of
    /// their names still to come: each inode is read once, and forgotten once all its
    /// names are seen.
    hard_links: HashMap<(u64, u64), (FileEntry, u64)>,
    bytes_read: u64,
    progress: &'a dyn Progress,
}

pub fn run(
    repo: &Repository,
    root: &Path,
    mut parent: Option<ParentFiles>,
    committed: &AtomicU64,
    out: Sender<Vec<Item>>,
    progress: &dyn Progress,
) -> Result<Produced> {
    let params = *repo.config.chunker(crate::config::CHUNKER_DEFAULT).expect("validated config");
    let mut p = Producer {
        inflight: InFlight::new(&repo.index, committed)?,
        out,
        batch: Vec::new(),
        batch_bytes: 0,
        buffer: vec![0u8; read_buffer_len(&params)],
        chunks: Vec::new(),
        hard_links: HashMap::new(),
        bytes_read: 0,
        progress,
    };
    let root_meta = std::fs::metadata(root).map_err(|e| Error::io(root, e))?;
    if root_meta.is_dir() {
        for walked in Walker::new(root) {
            match walked {
                Walked::Entry(found) => match entry_from(&found) {
                    Ok(entry) => p.file(entry, &found.abs, &params, parent.as_mut())?,
                    Err(e) => p.push(Item::Failed {
                        path: found.rel,
                        message: format!("{}: {e}", found.abs.display()),
                    })?,
                },
                Walked::Error { rel, message } => p.push(Item::Failed { path: rel, message })?,
            }
        }
    } else {
        // A single file: a component holding just that file under its own name.
        let rel = root.file_name().map(|n| n.as_encoded_bytes().to_vec()).unwrap_or_default();
        let found = crate::stores::dir::Found { rel, abs: root.to_path_buf(), meta: root_meta };
        let entry = entry_from(&found).map_err(|e| Error::io(root, e))?;
        p.file(entry, root, &params, parent.as_mut())?;
    }
    p.flush()?;
    Ok(Produced { bytes_read: p.bytes_read })
}

/// Enough for two maximal chunks, in whole read units: every full buffer holds at
/// least one complete chunk.
fn read_buffer_len(params: &ChunkerParams) -> usize {
    let want = (2 * params.max_size as usize).max(8 << 20);
    want.div_ceil(READ_UNIT) * READ_UNIT
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

    fn file(
        &mut self,
        mut entry: FileEntry,
        abs: &Path,
        params: &ChunkerParams,
        parent: Option<&mut ParentFiles>,
    ) -> Result<()> {
        if entry.kind != FileKind::Regular {
            self.progress.advance(1, 0);
            return self.push(Item::Entry(entry));
        }
        let previous = match parent {
            Some(parent) => parent.find(&entry.path)?,
            None => None,
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
        let path = entry.path.clone();
        let first_link = (entry.links > 1).then(|| entry.clone());
        self.push(Item::Begin(entry))?;
        match self.read_chunks(abs, params) {
            Ok(Ok(size)) => {
                if let Some(mut first) = first_link {
                    first.size = size;
                    first.chunks = std::mem::take(&mut self.chunks);
                    let names_to_come = first.links - 1;
                    self.hard_links.insert(link, (first, names_to_come));
                }
                self.progress.advance(1, 0);
                self.push(Item::End { size })
            }
            Ok(Err(io_error)) => self
                .push(Item::Failed { path, message: format!("cannot read {}: {io_error}", abs.display()) }),
            Err(fatal) => Err(fatal),
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
    fn read_chunks(&mut self, abs: &Path, params: &ChunkerParams) -> Result<std::io::Result<u64>> {
        let mut file = match File::open(abs) {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        self.chunks.clear();
        let mut buffer = std::mem::take(&mut self.buffer);
        let result = self.cut_stream(&mut file, &mut buffer, params);
        self.buffer = buffer;
        result
    }

    fn cut_stream(
        &mut self,
        file: &mut File,
        buffer: &mut [u8],
        params: &ChunkerParams,
    ) -> Result<std::io::Result<u64>> {
        let (mut filled, mut total, mut eof) = (0usize, 0u64, false);
        loop {
            while !eof {
                let room = (buffer.len() - filled) / READ_UNIT * READ_UNIT;
                if room == 0 {
                    break;
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
            let ids: Vec<ChunkId> = ranges.par_iter().map(|r| ChunkId::of(&data[r.clone()])).collect();
            for (range, id) in ranges.iter().zip(ids) {
                let payload = match self.inflight.claim(id)? {
                    Some(seq) => Payload::Raw { seq, bytes: data[range.clone()].to_vec() },
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
