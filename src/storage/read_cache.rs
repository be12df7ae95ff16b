//! A layer that turns many small ranged reads into few large ones, for storage where
//! each request costs a round trip (an object store). Restore, check and the deltas of
//! a backup read a chunk at a time, in pack order: once a read follows the one before
//! it in the same object, the 8 MiB block around it is read and serves the next ones
//! from memory. A read that does not (a pack's header, then its table at the end, when
//! a new client indexes it) is passed on as it is. Objects are immutable (their names
//! are their hashes), so a cached block is never stale. While a reader reads on, the
//! next block is fetched on a thread of its own (at most `PREFETCHING` at once), so the
//! network works while the reader decodes. Memory is bounded by `BLOCKS` blocks of
//! `BLOCK` bytes.
//!
//! Measured on a restore of a 936 MiB Berkeley DB environment (280 MiB stored) from a
//! 3-node Garage cluster on loopback, two cores: a GET per chunk took over 10 minutes;
//! 4 MiB blocks 3.7 to 4.2 s; with one block fetched ahead, 8 MiB blocks 3.2 s (peak
//! 167 MiB), two or three ahead no better (the cluster shares the two cores).

use super::{NewObject, ObjectInfo, Storage, StorageLock};
use crate::error::Result;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const BLOCK: u64 = 8 << 20;
const BLOCKS: usize = 16;
/// Object sizes remembered (a listing's, or asked for); forgotten all at once beyond
/// this.
const MAX_SIZES: usize = 1 << 16;
/// A read that starts this close after the end of the last one of the same object
/// counts as reading on.
const READING_ON: u64 = 1 << 20;
/// Blocks fetched ahead of a reader that reads on.
const AHEAD: u64 = 1;
/// Blocks fetched ahead at once, over all readers.
const PREFETCHING: usize = 4;

/// A block being read or read: the first reader fills it, others wait for it. `None`
/// when that read failed (each waiter then reads for itself and reports its own error).
type Slot = Arc<OnceLock<Option<Arc<Vec<u8>>>>>;

pub struct ReadCache<S>(Arc<Cache<S>>);

struct Cache<S> {
    inner: S,
    /// Blocks being fetched ahead of their readers.
    prefetching: AtomicUsize,
    /// Object sizes, so that a block read never asks past an object's end (an object
    /// store fails such a range instead of shortening it).
    sizes: Mutex<HashMap<String, u64>>,
    /// Where the last read of each object ended (forgotten with the sizes).
    last_end: Mutex<HashMap<String, u64>>,
    /// Most recently used last.
    blocks: Mutex<VecDeque<((String, u64), Slot)>>,
}

impl<S: Storage + 'static> ReadCache<S> {
    pub fn new(inner: S) -> ReadCache<S> {
        ReadCache(Arc::new(Cache {
            inner,
            prefetching: AtomicUsize::new(0),
            sizes: Mutex::default(),
            last_end: Mutex::default(),
            blocks: Mutex::new(VecDeque::new()),
        }))
    }
}

impl<S: Storage + 'static> Cache<S> {
    /// Starts fetching block `block` of `name` unless it is cached or being fetched, or
    /// enough fetches run already.
    fn prefetch(self: &Arc<Self>, name: &str, block: u64) {
        let present =
            self.blocks.lock().expect("read cache").iter().any(|((n, b), _)| *b == block && n == name);
        if present || self.prefetching.fetch_add(1, Ordering::AcqRel) >= PREFETCHING {
            self.prefetching.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let (cache, name) = (self.clone(), name.to_string());
        std::thread::spawn(move || {
            // A failure is the reader's to meet and report when it gets there.
            let _ = cache.block(&name, block);
            cache.prefetching.fetch_sub(1, Ordering::AcqRel);
        });
    }

    fn slot(&self, name: &str, block: u64) -> Slot {
        let mut blocks = self.blocks.lock().expect("read cache");
        let found = blocks.iter().position(|((n, b), _)| *b == block && n == name);
        let entry = match found {
            Some(i) => blocks.remove(i).expect("position found"),
            None => ((name.to_string(), block), Slot::default()),
        };
        let slot = entry.1.clone();
        blocks.push_back(entry);
        if blocks.len() > BLOCKS {
            blocks.pop_front();
        }
        slot
    }

    /// Whether a read of `len` bytes at `offset` follows the last read of `name`, or
    /// falls in a block already cached; notes where it ends.
    fn reads_on(&self, name: &str, offset: u64, len: usize) -> bool {
        let mut last_end = self.last_end.lock().expect("last reads");
        if last_end.len() >= MAX_SIZES {
            last_end.clear();
        }
        let previous = last_end.insert(name.to_string(), offset + len as u64);
        drop(last_end);
        let follows = previous.is_some_and(|end| offset >= end && offset - end <= READING_ON);
        follows || {
            let block = offset / BLOCK;
            let blocks = self.blocks.lock().expect("read cache");
            blocks.iter().any(|((n, b), slot)| *b == block && n == name && slot.get().is_some())
        }
    }

    fn drop_object(&self, name: &str) {
        self.blocks.lock().expect("read cache").retain(|((n, _), _)| n != name);
        self.sizes.lock().expect("sizes").remove(name);
        self.last_end.lock().expect("last reads").remove(name);
    }

    fn forget(&self, name: &str, block: u64) {
        self.blocks.lock().expect("read cache").retain(|((n, b), _)| !(*b == block && n == name));
    }

    fn size(&self, name: &str) -> Result<u64> {
        if let Some(&size) = self.sizes.lock().expect("sizes").get(name) {
            return Ok(size);
        }
        let size = self.inner.size(name)?;
        let mut sizes = self.sizes.lock().expect("sizes");
        if sizes.len() >= MAX_SIZES {
            sizes.clear();
        }
        sizes.insert(name.to_string(), size);
        Ok(size)
    }

    /// Block `block` of object `name` (shorter at the object's end).
    fn block(&self, name: &str, block: u64) -> Result<Arc<Vec<u8>>> {
        let len = BLOCK.min(self.size(name)?.saturating_sub(block * BLOCK)) as usize;
        let slot = self.slot(name, block);
        let mut failure = None;
        let filled = slot.get_or_init(|| match self.inner.read_at(name, block * BLOCK, len) {
            Ok(bytes) => Some(Arc::new(bytes)),
            Err(e) => {
                failure = Some(e);
                None
            }
        });
        match (filled, failure) {
            (Some(bytes), _) => Ok(bytes.clone()),
            (None, Some(e)) => {
                self.forget(name, block);
                Err(e)
            }
            (None, None) => self.inner.read_at(name, block * BLOCK, len).map(Arc::new),
        }
    }
}

impl<S: Storage + 'static> Storage for ReadCache<S> {
    fn describe(&self, name: &str) -> PathBuf {
        self.0.inner.describe(name)
    }

    fn create(&self) -> Result<Box<dyn NewObject + '_>> {
        self.0.inner.create()
    }

    /// From the cached blocks the range falls in. A read of more than a block goes to
    /// the object directly: it is large enough on its own.
    fn read_at(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        if len as u64 > BLOCK || !self.0.reads_on(name, offset, len) {
            return self.0.inner.read_at(name, offset, len);
        }
        let end = offset + len as u64;
        let mut out = Vec::with_capacity(len);
        let mut at = offset;
        while at < end {
            let block = at / BLOCK;
            let bytes = self.0.block(name, block)?;
            let start = (at - block * BLOCK) as usize;
            if start >= bytes.len() {
                break; // the object ends before the range does
            }
            let stop = ((end - block * BLOCK) as usize).min(bytes.len());
            out.extend_from_slice(&bytes[start..stop]);
            if bytes.len() < BLOCK as usize {
                break;
            }
            at = (block + 1) * BLOCK;
        }
        // The blocks after the one read on, as far as the object goes.
        let next = end.div_ceil(BLOCK).max(offset / BLOCK + 1);
        let size = self.0.size(name)?;
        for ahead in (next..next + AHEAD).take_while(|b| size > b * BLOCK) {
            self.0.prefetch(name, ahead);
        }
        Ok(out)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        self.0.inner.read(name)
    }

    fn reader(&self, name: &str) -> Result<Box<dyn std::io::Read + Send>> {
        self.0.inner.reader(name)
    }

    fn size(&self, name: &str) -> Result<u64> {
        self.0.inner.size(name)
    }

    /// Remembers the sizes listed: opening a repository lists its packs, and a block
    /// read then needs no request to learn where a pack ends.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let objects = self.0.inner.list(prefix)?;
        let mut sizes = self.0.sizes.lock().expect("sizes");
        if sizes.len() + objects.len() <= MAX_SIZES {
            sizes.extend(objects.iter().map(|o| (o.name.clone(), o.size)));
        }
        Ok(objects)
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.0.drop_object(name);
        self.0.inner.delete(name)
    }

    fn replace(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.0.drop_object(name);
        self.0.inner.replace(name, bytes)
    }

    fn make_durable(&self, name: &str) -> Result<()> {
        self.0.inner.make_durable(name)
    }

    fn lock(&self, mode: super::LockMode, wait: Duration, command: &str) -> Result<StorageLock> {
        self.0.inner.lock(mode, wait, command)
    }

    fn local_root(&self) -> Option<PathBuf> {
        self.0.inner.local_root()
    }

    fn parallel_writes(&self) -> usize {
        self.0.inner.parallel_writes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    #[test]
    fn keeps_the_storage_contract() {
        crate::storage::tests::contract(&ReadCache::new(MemoryStorage::new()));
    }

    #[test]
    fn ranges_across_blocks_and_past_the_end_read_what_is_there() {
        let storage = ReadCache::new(MemoryStorage::new());
        let bytes: Vec<u8> = (0..(2 * BLOCK + 100)).map(|i| (i % 251) as u8).collect();
        storage.put("packs/ab/x", &bytes).unwrap();
        let cases = [(0, 10), (BLOCK - 5, 10), (2 * BLOCK + 90, 50), (2 * BLOCK + 100, 5), (3 * BLOCK, 5)];
        for (offset, len) in cases {
            // A read just before makes this one read on, through the blocks.
            storage.read_at("packs/ab/x", offset.saturating_sub(1), offset.min(1) as usize).unwrap();
            let want = &bytes[(offset as usize).min(bytes.len())..((offset as usize) + len).min(bytes.len())];
            assert_eq!(storage.read_at("packs/ab/x", offset, len).unwrap(), want, "{offset}+{len}");
        }
        // Reading on in order is served by blocks; a lone read is not.
        storage.0.drop_object("packs/ab/x");
        storage.read_at("packs/ab/x", 2 * BLOCK + 50, 10).unwrap();
        assert!(storage.0.blocks.lock().unwrap().iter().all(|((n, _), _)| n != "packs/ab/x"));
        storage.read_at("packs/ab/x", 2 * BLOCK + 60, 10).unwrap();
        assert_eq!(storage.0.blocks.lock().unwrap().len(), 1);
        let big = storage.read_at("packs/ab/x", 1, BLOCK as usize + 1).unwrap();
        assert_eq!(big, &bytes[1..BLOCK as usize + 2]);
        assert!(storage.0.blocks.lock().unwrap().len() <= BLOCKS);
        assert!(storage.read_at("packs/ab/missing", 0, 1).is_err());
    }
}
