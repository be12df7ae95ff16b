//! The producer's view of which chunks exist: the index, plus the new chunks this backup
//! has sent down the pipeline that the store stage has not committed yet.

use crate::error::Result;
use crate::id::ChunkId;
use crate::index::{ChunkTable, Index};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

/// New chunks not yet committed to the index. The store stage publishes in `committed`
/// the sequence number below which every new chunk is indexed; those are dropped from
/// here after a fresh index view is taken, so the set stays as small as the queues.
pub(super) struct InFlight<'a> {
    index: &'a Index,
    table: ChunkTable,
    ids: HashSet<ChunkId>,
    order: VecDeque<(u64, ChunkId)>,
    next_seq: u64,
    seen_committed: u64,
    committed: &'a AtomicU64,
}

impl<'a> InFlight<'a> {
    pub(super) fn new(index: &'a Index, committed: &'a AtomicU64) -> Result<Self> {
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
    pub(super) fn has(&mut self, id: &ChunkId) -> Result<bool> {
        self.refresh()?;
        Ok(self.ids.contains(id) || self.table.contains(id)?)
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
