//! The packs being filled, shared by the components copied side by side (a set of many
//! small components still makes few, full packs), and the packs being sent. File list
//! chunks go into packs of their own: a snapshot's list is then read from one place in
//! a few requests, not a chunk here and there among the data of an object store.
//!
//! Where the storage takes one write at a time (a local directory), a full pack is made
//! durable and indexed on the spot. Where it takes several (an object store, where a
//! PUT is a round trip), a full pack goes to one of `parallel_writes` sender threads
//! while the next one fills; each is indexed once durable, in the order the packs were
//! closed, so that a component's `committed` counter only ever moves past chunks that
//! are all indexed. At most that many packs wait in memory besides the open one.

use crate::compress::Frame;
use crate::error::{Error, Result};
use crate::pack::{FinishedPack, PackWriter};
use crate::packer::Packer;
use crate::repo::Repository;
use crossbeam_channel::{bounded, Sender};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::Scope;

/// Per component with chunks in a pack: its `committed` counter and one past the
/// highest sequence number it added (each adds in sequence order).
type Waiting = Vec<(Arc<AtomicU64>, u64)>;

pub struct SharedPacker<'a> {
    repo: &'a Repository,
    open: Mutex<OpenPack<'a>>,
    /// The pack of file list chunks being filled.
    lists: Mutex<OpenPack<'a>>,
    /// `None` where packs are made durable one at a time, on the spot.
    senders: Option<Senders<'a>>,
}

struct OpenPack<'a> {
    packer: Packer<'a>,
    waiting: Waiting,
}

struct Senders<'a> {
    queue: Mutex<Option<Sender<Closed<'a>>>>,
    indexer: Arc<InOrder>,
}

/// A full pack on its way to storage.
struct Closed<'a> {
    seq: u64,
    pack: PackWriter<'a>,
    waiting: Waiting,
}

/// Indexes sent packs in the order they were closed.
#[derive(Default)]
struct InOrder {
    state: Mutex<InOrderState>,
    progressed: Condvar,
}

#[derive(Default)]
struct InOrderState {
    closed: u64,
    indexed: u64,
    sent: BTreeMap<u64, (Result<FinishedPack>, Waiting)>,
    /// The first failure, until someone reports it; `failed` stays.
    failure: Option<Error>,
    failed: bool,
}

impl<'a> SharedPacker<'a> {
    /// A packer whose sender threads, if the storage wants any, run in `scope`.
    pub fn new<'scope>(repo: &'a Repository, scope: &'scope Scope<'scope, '_>) -> SharedPacker<'a>
    where
        'a: 'scope,
    {
        let open = Mutex::new(OpenPack { packer: Packer::new(repo), waiting: Vec::new() });
        let lists = Mutex::new(OpenPack { packer: Packer::new(repo), waiting: Vec::new() });
        let threads = repo.storage().parallel_writes();
        let senders = (threads > 1).then(|| {
            let (queue, jobs) = bounded::<Closed<'a>>(0);
            let indexer = Arc::new(InOrder::default());
            for _ in 0..threads {
                let (jobs, indexer) = (jobs.clone(), indexer.clone());
                scope.spawn(move || {
                    for Closed { seq, pack, waiting } in jobs {
                        indexer.sent(repo, seq, pack.finish(), waiting);
                    }
                });
            }
            Senders { queue: Mutex::new(Some(queue)), indexer }
        });
        SharedPacker { repo, open, lists, senders }
    }

    /// Adds `frame` to the open pack; `waiter` is the producer (its `committed` counter
    /// and the frame's sequence number) to tell once the pack is indexed.
    pub fn add(&self, waiter: (&Arc<AtomicU64>, u64), frame: &Frame) -> Result<u64> {
        let mut open = self.open.lock().expect("packer lock");
        let full = open.packer.add(frame)?;
        let (committed, seq) = waiter;
        match open.waiting.iter_mut().find(|(c, _)| Arc::ptr_eq(c, committed)) {
            Some((_, end)) => *end = seq + 1,
            None => open.waiting.push((committed.clone(), seq + 1)),
        }
        if full {
            self.close_open(&mut open)?;
        }
        Ok(frame.bytes.len() as u64)
    }

    /// Adds a file list's chunk to the open list pack. No producer waits for it: the
    /// caller makes it durable with every other chunk (`finish`) before the manifest
    /// names it.
    pub fn add_list_chunk(&self, frame: &Frame) -> Result<u64> {
        let mut lists = self.lists.lock().expect("list packer lock");
        if lists.packer.add(frame)? {
            self.close_open(&mut lists)?;
        }
        Ok(frame.bytes.len() as u64)
    }

    /// Makes every pack durable and indexed: every chunk added so far is then safe.
    pub fn finish(&self) -> Result<()> {
        self.close_open(&mut self.open.lock().expect("packer lock"))?;
        self.close_open(&mut self.lists.lock().expect("list packer lock"))?;
        let Some(senders) = &self.senders else { return Ok(()) };
        drop(senders.queue.lock().expect("send queue").take());
        senders.indexer.wait_for_all()
    }

    fn close_open(&self, open: &mut OpenPack<'a>) -> Result<()> {
        let OpenPack { packer, waiting } = open;
        let Some(senders) = &self.senders else {
            // Each pack is indexed as soon as it is durable, and only then do the
            // components with chunks in it learn that those are committed.
            return packer.finish(|done| index(self.repo, &done, std::mem::take(waiting)));
        };
        senders.indexer.failed()?;
        let Some(pack) = packer.close() else { return Ok(()) };
        let seq = senders.indexer.close();
        let queue = senders.queue.lock().expect("send queue");
        let queue =
            queue.as_ref().ok_or_else(|| Error::Invalid("pack added after the packer finished".into()))?;
        queue.send(Closed { seq, pack, waiting: std::mem::take(waiting) }).map_err(|_| Error::Cancelled)
    }
}

fn index(repo: &Repository, done: &FinishedPack, waiting: Waiting) -> Result<()> {
    repo.add_pack(&done.id, done.size, &done.entries)?;
    for (committed, end) in waiting {
        committed.store(end, Ordering::Release);
    }
    Ok(())
}

impl InOrder {
    /// Numbers the next pack sent.
    fn close(&self) -> u64 {
        let mut state = self.state.lock().expect("indexer");
        state.closed += 1;
        state.closed - 1
    }

    /// Pack `seq` is durable (or failed): index it and every later one already sent,
    /// as far as the order allows.
    fn sent(&self, repo: &Repository, seq: u64, result: Result<FinishedPack>, waiting: Waiting) {
        let mut state = self.state.lock().expect("indexer");
        state.sent.insert(seq, (result, waiting));
        loop {
            let next = state.indexed;
            let Some((result, waiting)) = state.sent.remove(&next) else { break };
            state.indexed += 1;
            if state.failed {
                continue;
            }
            if let Err(e) = result.and_then(|done| index(repo, &done, waiting)) {
                state.failed = true;
                state.failure = Some(e);
            }
        }
        self.progressed.notify_all();
    }

    /// The failure of a pack sent, reported once; later callers are told to stop.
    fn failed(&self) -> Result<()> {
        let mut state = self.state.lock().expect("indexer");
        match (state.failure.take(), state.failed) {
            (Some(e), _) => Err(e),
            (None, true) => Err(Error::Cancelled),
            (None, false) => Ok(()),
        }
    }

    fn wait_for_all(&self) -> Result<()> {
        let mut state = self.state.lock().expect("indexer");
        while state.indexed < state.closed {
            state = self.progressed.wait(state).expect("indexer");
        }
        drop(state);
        self.failed()
    }
}
