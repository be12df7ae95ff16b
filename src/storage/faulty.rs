//! Fault injection for crash tests: a storage, and an index file, that count their
//! durable operations and fail at the Nth: before it takes effect, after (the caller
//! is told of a failure that happened anyway), or as a power cut, which also fails
//! everything after it and drops what was not yet made durable (the index file's
//! writes since its last sync), as a machine losing power would.

use super::{LockMode, NewObject, ObjectInfo, Storage, StorageLock};
use crate::error::{Error, Result};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails and has no effect; later ones succeed.
    Fail,
    /// The operation takes effect but reports a failure (a rename done, then the
    /// directory's fsync failed); later ones succeed.
    FailAfter,
    /// The operation fails and has no effect, and so does every operation after it.
    PowerCut,
}

impl Fault {
    pub const ALL: [Fault; 3] = [Fault::Fail, Fault::FailAfter, Fault::PowerCut];
}

/// What a durable operation is to do.
enum Verdict {
    Proceed,
    /// Take effect, then report this.
    FailAfter(io::Error),
}

/// Counts durable operations (object finished, deleted, replaced; index synced) across
/// the storage and index file that share it.
#[derive(Debug)]
pub struct FaultCounter {
    done: AtomicU64,
    at: Option<(u64, Fault)>,
    off: AtomicBool,
}

impl FaultCounter {
    /// Counts without failing: a first run tells how many operations there are.
    pub fn counting() -> Arc<FaultCounter> {
        Arc::new(FaultCounter { done: AtomicU64::new(0), at: None, off: AtomicBool::new(false) })
    }

    /// Fails the `n`th durable operation (from 1).
    pub fn failing_at(n: u64, fault: Fault) -> Arc<FaultCounter> {
        Arc::new(FaultCounter { done: AtomicU64::new(0), at: Some((n, fault)), off: AtomicBool::new(false) })
    }

    /// Durable operations that succeeded.
    pub fn count(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    /// Whether the fault has happened.
    pub fn fired(&self) -> bool {
        self.at.is_some_and(|(n, _)| self.count() >= n) || self.off.load(Ordering::SeqCst)
    }

    fn check_power(&self) -> io::Result<()> {
        match self.off.load(Ordering::SeqCst) {
            true => Err(io::Error::other("injected fault: the power is off")),
            false => Ok(()),
        }
    }

    /// Called before a durable operation: go ahead, fail now (no effect), or take
    /// effect and then fail.
    fn durable_op(&self, what: &str) -> io::Result<Verdict> {
        self.check_power()?;
        let n = self.done.load(Ordering::SeqCst) + 1;
        let injected = || io::Error::other(format!("injected fault at durable operation {n} ({what})"));
        match self.at {
            Some((at, Fault::PowerCut)) if n == at => {
                self.off.store(true, Ordering::SeqCst);
                Err(injected())
            }
            Some((at, fault)) if n == at => {
                // Counted, so that the next operation is not the failing one again.
                self.done.store(n, Ordering::SeqCst);
                match fault {
                    Fault::FailAfter => Ok(Verdict::FailAfter(injected())),
                    _ => Err(injected()),
                }
            }
            _ => {
                self.done.store(n, Ordering::SeqCst);
                Ok(Verdict::Proceed)
            }
        }
    }
}

pub struct FaultyStorage {
    inner: Arc<dyn Storage>,
    counter: Arc<FaultCounter>,
}

impl FaultyStorage {
    pub fn new(inner: Arc<dyn Storage>, counter: Arc<FaultCounter>) -> FaultyStorage {
        FaultyStorage { inner, counter }
    }

    fn power(&self, name: &str) -> Result<()> {
        self.counter.check_power().map_err(|e| Error::io(self.describe(name), e))
    }

    /// Runs `op`, a durable operation, as the fault plan says.
    fn durable_op(&self, what: &str, name: &str, op: impl FnOnce() -> Result<()>) -> Result<()> {
        let fail = |e| Error::io(self.describe(name), e);
        match self.counter.durable_op(&format!("{what} {name}")).map_err(fail)? {
            Verdict::Proceed => op(),
            Verdict::FailAfter(e) => op().and(Err(fail(e))),
        }
    }
}

struct FaultyObject<'a> {
    inner: Box<dyn NewObject + 'a>,
    storage: &'a FaultyStorage,
}

impl Write for FaultyObject<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.storage.counter.check_power()?;
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl NewObject for FaultyObject<'_> {
    fn finish(self: Box<Self>, name: &str) -> Result<()> {
        let inner = self.inner;
        self.storage.durable_op("write", name, || inner.finish(name))
    }
}

/// Reads until the power goes.
struct FaultyReader {
    inner: Box<dyn io::Read + Send>,
    counter: Arc<FaultCounter>,
}

impl io::Read for FaultyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.counter.check_power()?;
        self.inner.read(buf)
    }
}

impl Storage for FaultyStorage {
    fn describe(&self, name: &str) -> PathBuf {
        self.inner.describe(name)
    }

    fn create(&self) -> Result<Box<dyn NewObject + '_>> {
        self.power("")?;
        Ok(Box::new(FaultyObject { inner: self.inner.create()?, storage: self }))
    }

    fn read_at(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.power(name)?;
        self.inner.read_at(name, offset, len)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        self.power(name)?;
        self.inner.read(name)
    }

    fn reader(&self, name: &str) -> Result<Box<dyn io::Read + Send>> {
        self.power(name)?;
        Ok(Box::new(FaultyReader { inner: self.inner.reader(name)?, counter: self.counter.clone() }))
    }

    fn size(&self, name: &str) -> Result<u64> {
        self.power(name)?;
        self.inner.size(name)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.power(prefix)?;
        self.inner.list(prefix)
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.durable_op("delete", name, || self.inner.delete(name))
    }

    fn replace(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.durable_op("replace", name, || self.inner.replace(name, bytes))
    }

    fn make_durable(&self, name: &str) -> Result<()> {
        self.durable_op("sync", name, || self.inner.make_durable(name))
    }

    fn lock(&self, mode: LockMode, wait: Duration, command: &str) -> Result<StorageLock> {
        self.inner.lock(mode, wait, command)
    }

    fn local_root(&self) -> Option<PathBuf> {
        self.inner.local_root()
    }
}

/// An index file in memory whose syncs are durable operations of a `FaultCounter`:
/// writes since the last successful sync are what a power cut loses.
#[derive(Debug)]
pub struct CrashableFile {
    counter: Arc<FaultCounter>,
    working: RwLock<Vec<u8>>,
    durable: Arc<Mutex<Vec<u8>>>,
}

impl CrashableFile {
    /// A file holding `durable` (empty for a new index), as found after a restart.
    pub fn new(counter: Arc<FaultCounter>, durable: Vec<u8>) -> CrashableFile {
        CrashableFile {
            counter,
            working: RwLock::new(durable.clone()),
            durable: Arc::new(Mutex::new(durable)),
        }
    }

    /// What the file holds durably, to be read after the database is gone.
    pub fn durable(&self) -> Arc<Mutex<Vec<u8>>> {
        self.durable.clone()
    }

    fn working(&self) -> io::Result<std::sync::RwLockWriteGuard<'_, Vec<u8>>> {
        self.counter.check_power()?;
        Ok(self.working.write().expect("index file lock"))
    }
}

impl redb::StorageBackend for CrashableFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.working()?.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let working = self.working()?;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let bytes = start.checked_add(out.len()).and_then(|end| working.get(start..end));
        out.copy_from_slice(bytes.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.working()?.resize(usize::try_from(len).map_err(io::Error::other)?, 0);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let verdict = self.counter.durable_op("index sync")?;
        *self.durable.lock().expect("index file lock") = self.working()?.clone();
        match verdict {
            Verdict::Proceed => Ok(()),
            Verdict::FailAfter(e) => Err(e),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut working = self.working()?;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start + data.len();
        if working.len() < end {
            working.resize(end, 0);
        }
        working[start..end].copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    #[test]
    fn fails_the_nth_durable_operation_only() {
        let memory = MemoryStorage::new();
        let faulty = FaultyStorage::new(Arc::new(memory.clone()), FaultCounter::failing_at(2, Fault::Fail));
        faulty.put("a", b"1").unwrap();
        assert!(faulty
            .put("b", b"2")
            .unwrap_err()
            .to_string()
            .contains("injected fault at durable operation 2"));
        faulty.put("c", b"3").unwrap();
        let names: Vec<String> = memory.list("").unwrap().into_iter().map(|o| o.name).collect();
        assert_eq!(names, ["a", "c"]);
    }

    #[test]
    fn a_failure_after_the_effect_reports_what_happened_anyway() {
        let memory = MemoryStorage::new();
        let faulty =
            FaultyStorage::new(Arc::new(memory.clone()), FaultCounter::failing_at(1, Fault::FailAfter));
        assert!(faulty.put("a", b"1").is_err());
        assert_eq!(memory.read("a").unwrap(), b"1");
        faulty.delete("a").unwrap();
    }

    #[test]
    fn a_power_cut_stops_everything_after_it() {
        let memory = MemoryStorage::new();
        let counter = FaultCounter::failing_at(2, Fault::PowerCut);
        let faulty = FaultyStorage::new(Arc::new(memory.clone()), counter.clone());
        faulty.put("a", b"1").unwrap();
        assert!(faulty.delete("a").is_err());
        assert!(faulty.put("c", b"3").is_err());
        assert!(faulty.read("a").is_err());
        assert!(counter.fired());
        assert_eq!(memory.read("a").unwrap(), b"1");
    }

    #[test]
    fn an_index_file_loses_what_was_not_synced() {
        use redb::StorageBackend;
        let counter = FaultCounter::failing_at(2, Fault::PowerCut);
        let file = CrashableFile::new(counter, Vec::new());
        file.write(0, b"synced").unwrap();
        file.sync_data().unwrap();
        file.write(0, b"lost!!").unwrap();
        assert!(file.sync_data().is_err());
        assert_eq!(*file.durable().lock().unwrap(), b"synced");
    }
}
