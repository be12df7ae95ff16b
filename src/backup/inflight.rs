//! The producer's view of which chunks exist: the index, plus the new chunks this backup
//! has sent down the pipeline that the store stage has not committed yet.

use super::known::{CommittedFilter, KnownChunks, MAX_KNOWN};
use crate::error::Result;
use crate::id::ChunkId;
use crate::index::{ChunkTable, Index};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

/// New chunks not yet committed to the index. The store stage publishes in `committed`
/// the sequence number below which every new chunk is indexed; those are dropped from
/// here, so the set stays as small as the queues and the open pack.
///
/// What the index held when the backup began is `known` (in memory, exact) unless it is
/// too large; the chunks committed since are asked of the index itself, and only when
/// `committed_since` says they may be among them. No other process changes the index
/// during a backup (the append lock excludes prune, forget and repair), and this one
/// only adds to it, so `known` stays true.
pub(super) struct InFlight<'a> {
    index: &'a Index,
    known: Option<KnownChunks>,
    committed_since: CommittedFilter,
    /// A view of the index taken after the last commit seen, opened when first needed
    /// (an open view keeps the pages later commits free from being reused).
    table: Option<ChunkTable>,
    ids: HashSet<ChunkId>,
    order: VecDeque<(u64, ChunkId)>,
    next_seq: u64,
    seen_committed: u64,
    committed: &'a AtomicU64,
}

impl<'a> InFlight<'a> {
    pub(super) fn new(index: &'a Index, committed: &'a AtomicU64) -> Result<Self> {
        let view = index.view()?;
        let count = view.chunk_count()?;
        let known = match count <= MAX_KNOWN {
            true => Some(KnownChunks::load(&view.chunks()?, count)?),
            false => None,
        };
        Ok(InFlight {
            index,
            known,
            committed_since: CommittedFilter::default(),
            table: None,
            ids: HashSet::new(),
            order: VecDeque::new(),
            next_seq: 0,
            seen_committed: 0,
            committed,
        })
    }

    /// Once the store stage has committed more packs, forgets the in-flight chunks those
    /// hold (noting them as committed) and drops the view that predates them.
    fn refresh(&mut self) {
        let committed = self.committed.load(Ordering::Acquire);
        if committed > self.seen_committed {
            self.table = None;
            while self.order.front().is_some_and(|(seq, _)| *seq < committed) {
                let (_, old) = self.order.pop_front().expect("front exists");
                self.ids.remove(&old);
                self.committed_since.insert(&old);
            }
            self.seen_committed = committed;
        }
    }

    /// Whether the repository has `id` or this backup is storing it.
    pub(super) fn has(&mut self, id: &ChunkId) -> Result<bool> {
        self.refresh();
        if self.ids.contains(id) {
            return Ok(true);
        }
        if let Some(known) = &self.known {
            if known.contains(id) {
                return Ok(true);
            }
            if !self.committed_since.may_contain(id) {
                return Ok(false);
            }
        }
        // The view is taken after `committed` was read, so it holds every chunk below it.
        let table = match &mut self.table {
            Some(table) => table,
            None => self.table.insert(self.index.view()?.chunks()?),
        };
        table.contains(id)
    }

    /// Returns the sequence number of `id` if it is new, `None` if it is known.
    pub(super) fn claim(&mut self, id: ChunkId) -> Result<Option<u64>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::Codec;
    use crate::id::PackId;
    use crate::pack::PackEntry;

    fn entry(id: ChunkId) -> PackEntry {
        PackEntry { id, offset: 16, stored_len: 1, raw_len: 1, codec: Codec::Raw, reference: None }
    }

    #[test]
    fn chunks_are_found_before_during_and_after_their_commit() {
        let index = Index::in_memory().unwrap();
        let before = ChunkId::of(b"indexed before the backup");
        index.add_pack(&PackId::of(b"p0"), 100, &[entry(before)]).unwrap();
        let committed = AtomicU64::new(0);
        let mut inflight = InFlight::new(&index, &committed).unwrap();
        assert!(inflight.known.is_some());
        assert!(inflight.has(&before).unwrap());
        let new = ChunkId::of(b"new");
        assert_eq!(inflight.claim(new).unwrap(), Some(0));
        assert_eq!(inflight.claim(new).unwrap(), None, "in flight");
        // The store stage indexes the pack, then publishes the commit.
        index.add_pack(&PackId::of(b"p1"), 100, &[entry(new)]).unwrap();
        committed.store(1, Ordering::Release);
        assert!(inflight.has(&new).unwrap(), "committed since the backup began");
        assert!(inflight.ids.is_empty());
        assert!(!inflight.has(&ChunkId::of(b"never stored")).unwrap());
    }
}
