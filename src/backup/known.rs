//! Answers to "does the repository have this chunk?" without an index lookup per chunk:
//! a backup asks once for every chunk it cuts and every chunk of every unchanged file,
//! and a lookup in the redb index by random id reads a page from the file once the index
//! outgrows its cache (2.6 us each at a million chunks: most of a no-change backup).

use crate::error::Result;
use crate::id::ChunkId;
use crate::index::ChunkTable;

/// Chunks kept in memory at most (32 bytes each and at most 4 for their bucket, so
/// 72 MiB); beyond that a backup asks the index itself, slower but with memory bounded
/// whatever the repository's size.
pub(super) const MAX_KNOWN: u64 = 1 << 21;

/// Every chunk id the index held when the backup began, sorted, and found by its
/// leading bits: ids are uniform, so with about as many buckets as ids a lookup costs
/// two memory reads (the bucket's start, then the id), not a binary search's twenty.
pub(super) struct KnownChunks {
    ids: Vec<ChunkId>,
    /// `ids[starts[p]..starts[p + 1]]` are the ids whose leading `bits` bits are `p`.
    starts: Vec<u32>,
    bits: u32,
}

impl KnownChunks {
    /// The chunks of `table`, which must hold at most `MAX_KNOWN`.
    pub(super) fn load(table: &ChunkTable, count: u64) -> Result<KnownChunks> {
        let mut ids = Vec::with_capacity(count.min(MAX_KNOWN) as usize);
        table.for_each_id(|id| ids.push(id))?;
        Ok(KnownChunks::from_ids(ids))
    }

    fn from_ids(mut ids: Vec<ChunkId>) -> KnownChunks {
        // The index yields them in key order already; this only makes sure.
        if !ids.is_sorted() {
            ids.sort_unstable();
        }
        // One bucket per id or two: 4 bytes a bucket beside 32 an id.
        let bits = ids.len().max(1).ilog2();
        let mut known = KnownChunks { ids, starts: vec![0u32; (1 << bits) + 1], bits };
        for i in 0..known.ids.len() {
            let p = known.bucket(&known.ids[i]);
            known.starts[p + 1] += 1;
        }
        for p in 0..1 << bits {
            known.starts[p + 1] += known.starts[p];
        }
        known
    }

    fn bucket(&self, id: &ChunkId) -> usize {
        // The first eight bytes in their sort order (as a big-endian number would be).
        let lead = id.0[..8].iter().fold(0u64, |lead, &byte| lead << 8 | byte as u64);
        lead.checked_shr(64 - self.bits).unwrap_or(0) as usize
    }

    pub(super) fn contains(&self, id: &ChunkId) -> bool {
        let p = self.bucket(id);
        let bucket = &self.ids[self.starts[p] as usize..self.starts[p + 1] as usize];
        bucket.iter().any(|known| known == id)
    }
}

/// The chunks a backup has committed to the index since it began, as a Bloom filter: it
/// never says no to one of them, so a "no" spares the lookup in the index, and a "maybe"
/// (about 1% of other chunks) asks the index. About 10 bits a chunk: a series of
/// filters, each twice as large as the one before, added as they fill.
#[derive(Default)]
pub(super) struct CommittedFilter {
    filters: Vec<Bloom>,
}

struct Bloom {
    bits: Vec<u64>,
    capacity: usize,
    len: usize,
}

/// Bits per chunk and probes per chunk: a false positive rate of about 1%.
const BITS_PER_CHUNK: usize = 10;
const PROBES: u64 = 7;
const FIRST_CAPACITY: usize = 1 << 14;

impl Bloom {
    fn new(capacity: usize) -> Bloom {
        let words = (capacity * BITS_PER_CHUNK).div_ceil(64);
        Bloom { bits: vec![0; words], capacity, len: 0 }
    }

    fn insert(&mut self, id: &ChunkId) {
        for (word, mask) in probes(self.bits.len(), id) {
            self.bits[word] |= mask;
        }
        self.len += 1;
    }

    fn may_contain(&self, id: &ChunkId) -> bool {
        probes(self.bits.len(), id).all(|(word, mask)| self.bits[word] & mask != 0)
    }
}

/// The bits of `id` in a filter of `words` 64-bit words: chunk ids are BLAKE3 hashes,
/// so their bytes serve as the hash functions (double hashing over two words of the id).
fn probes(words: usize, id: &ChunkId) -> impl Iterator<Item = (usize, u64)> {
    let word = |i: usize| u64::from_le_bytes(id.0[i..i + 8].try_into().expect("8 bytes"));
    let (h1, h2) = (word(0), word(8) | 1);
    let m = words as u64 * 64;
    (0..PROBES).map(move |i| {
        let bit = h1.wrapping_add(i.wrapping_mul(h2)) % m;
        ((bit / 64) as usize, 1u64 << (bit % 64))
    })
}

impl CommittedFilter {
    pub(super) fn insert(&mut self, id: &ChunkId) {
        if self.filters.last().is_none_or(|f| f.len >= f.capacity) {
            let capacity = self.filters.last().map_or(FIRST_CAPACITY, |f| f.capacity * 2);
            self.filters.push(Bloom::new(capacity));
        }
        self.filters.last_mut().expect("just pushed").insert(id);
    }

    pub(super) fn may_contain(&self, id: &ChunkId) -> bool {
        self.filters.iter().any(|f| f.may_contain(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(range: std::ops::Range<u32>) -> Vec<ChunkId> {
        range.map(|i| ChunkId::of(&i.to_le_bytes())).collect()
    }

    #[test]
    fn known_chunks_find_exactly_their_ids() {
        let known = KnownChunks::from_ids(ids(0..50_000));
        assert!(ids(0..50_000).iter().all(|id| known.contains(id)));
        assert!(!ids(50_000..100_000).iter().any(|id| known.contains(id)));
        let empty = KnownChunks::from_ids(Vec::new());
        assert!(!empty.contains(&ChunkId::of(b"x")));
        // Ids at the ends of the prefix range.
        let edges = vec![ChunkId([0; 32]), ChunkId([0xff; 32])];
        let known = KnownChunks::from_ids(edges.clone());
        assert!(edges.iter().all(|id| known.contains(id)));
        assert!(!known.contains(&ChunkId([0x7f; 32])));
    }

    #[test]
    fn the_committed_filter_never_misses_and_rarely_errs() {
        let mut filter = CommittedFilter::default();
        let inserted = ids(0..100_000);
        inserted.iter().for_each(|id| filter.insert(id));
        assert!(inserted.iter().all(|id| filter.may_contain(id)));
        assert!(filter.filters.len() > 1, "grows by adding filters");
        let false_positives = ids(100_000..200_000).iter().filter(|id| filter.may_contain(id)).count();
        assert!(false_positives < 5_000, "{false_positives} of 100,000");
    }
}
