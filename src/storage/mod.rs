//! The storage layer under a repository: a handful of object operations that a local
//! directory, memory and an object store can all provide. Everything above it speaks
//! of object names (layout.rs), never of files.
//!
//! Durability lives inside each implementation: when `NewObject::finish`, `delete` or
//! `replace` returns, the change survives a crash or power cut. Objects are immutable
//! once written, except `config`, which `replace` swaps whole.

mod faulty;
mod flock;
pub mod local;
mod location;
mod memory;
pub mod object_lock;
mod read_cache;
mod s3;

pub use faulty::{CrashableFile, Fault, FaultCounter, FaultyStorage};
pub use local::LocalStorage;
pub use location::Location;
pub use memory::MemoryStorage;
pub use read_cache::ReadCache;
pub use s3::{S3Location, S3Storage};

use crate::error::{Error, Result};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

/// How a process uses the repository, which decides what it excludes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Reads: excluded only by `Exclusive` (prune, forget, repair), never by a backup.
    Shared,
    /// Adds objects (backup): excludes other `Append` and `Exclusive` holders.
    Append,
    /// Removes or rewrites objects: excludes everyone.
    Exclusive,
}

impl LockMode {
    pub fn writes(self) -> bool {
        self != LockMode::Shared
    }
}

/// Held for as long as the process uses the repository; dropping it releases the lock.
pub type StorageLock = Box<dyn HeldLock>;

/// A lock held. A lock that others may stop honouring while this process runs (a lock
/// object it could not refresh) says so, and the process must not make anything depend
/// on what it wrote since.
pub trait HeldLock: Send + Sync {
    fn still_held(&self) -> Result<()> {
        Ok(())
    }
}

/// No lock at all: memory storage, or a reader of read-only media.
impl HeldLock for () {}

/// A new object being written. It is named when it is finished, since most names are
/// the hash of the bytes; it becomes visible, whole, only when `finish` returns.
/// Dropped unfinished, it leaves nothing behind.
pub trait NewObject: Write + Send {
    /// Makes the object durable as `name`. An object of that name that already exists
    /// is left as it is and reported as `AlreadyExists`: names are content hashes (or
    /// `config`, written once), so both hold the same bytes.
    fn finish(self: Box<Self>, name: &str) -> Result<()>;
}

/// One object as a listing gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Relative to the repository, with `/` separators: `packs/ab/ab12...`.
    pub name: String,
    pub size: u64,
}

pub trait Storage: Send + Sync {
    /// Where object `name` is, for messages: a path or a URL.
    fn describe(&self, name: &str) -> PathBuf;

    /// Starts writing a new immutable object.
    fn create(&self) -> Result<Box<dyn NewObject + '_>>;

    /// `len` bytes of object `name` from `offset`; fewer only if the object ends first.
    fn read_at(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>>;

    /// The whole object.
    fn read(&self, name: &str) -> Result<Vec<u8>>;

    /// The object as a stream, for manifests, which are read record by record.
    fn reader(&self, name: &str) -> Result<Box<dyn io::Read + Send>>;

    fn size(&self, name: &str) -> Result<u64>;

    /// Every object whose name starts with `prefix` (a directory such as `packs/`), in
    /// no particular order.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;

    /// Removes object `name` durably; removing a missing object is `NotFound`.
    fn delete(&self, name: &str) -> Result<()>;

    /// Replaces the one mutable object (`config`) whole: a reader sees the old bytes or
    /// the new ones, never a mix.
    fn replace(&self, name: &str, bytes: &[u8]) -> Result<()>;

    /// Makes object `name`, already there, durable: a process may have named it and
    /// died before it was, and a writer is about to depend on it. Nothing to do where
    /// naming an object is durable at once (memory, an object store's PUT).
    fn make_durable(&self, _name: &str) -> Result<()> {
        Ok(())
    }

    /// Takes the repository lock in `mode`, waiting up to `wait` for a holder that
    /// excludes it; then fails naming that holder. `command` is shown to processes
    /// this one blocks.
    fn lock(&self, mode: LockMode, wait: Duration, command: &str) -> Result<StorageLock>;

    /// The directory of a local repository: its own index cache and scratch space live
    /// there when it is writable. `None` for storage that is not a local directory.
    fn local_root(&self) -> Option<PathBuf> {
        None
    }

    /// How many new objects are worth writing at once (each `finish` on a thread of its
    /// own): more than one where a write is a round trip rather than a disk's work.
    fn parallel_writes(&self) -> usize {
        1
    }

    /// Writes a new object whole: `create`, write, `finish`.
    fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let mut object = self.create()?;
        object.write_all(bytes).map_err(|e| Error::io(self.describe(name), e))?;
        object.finish(name)
    }
}

/// Finishes an object named by the hash of its bytes: one already there under that
/// name holds the same bytes (and `finish` has made it durable), so that is success.
pub fn finish_content_named(object: Box<dyn NewObject + '_>, name: &str) -> Result<()> {
    match object.finish(name) {
        Err(e) if is_already_exists(&e) => Ok(()),
        other => other,
    }
}

/// Whether `e` says the object is not there.
pub fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Io { error, .. } if error.kind() == io::ErrorKind::NotFound)
}

/// Whether `e` says an object of that name already exists (see `NewObject::finish`).
pub fn is_already_exists(e: &Error) -> bool {
    matches!(e, Error::Io { error, .. } if error.kind() == io::ErrorKind::AlreadyExists)
}

/// Checks an object name: relative, `/`-separated, no empty, `.` or `..` parts, so that
/// no implementation can be led outside its repository.
pub fn check_name(name: &str) -> io::Result<()> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.split('/').any(|part| part.is_empty() || part == "." || part == "..");
    match bad {
        true => Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not an object name"))),
        false => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Read;

    /// The contract every implementation keeps; each one's tests run it.
    pub fn contract(storage: &dyn Storage) {
        storage.put("packs/ab/one", b"first").unwrap();
        assert_eq!(storage.read("packs/ab/one").unwrap(), b"first");
        assert_eq!(storage.read_at("packs/ab/one", 1, 3).unwrap(), b"irs");
        assert_eq!(storage.read_at("packs/ab/one", 3, 10).unwrap(), b"st");
        assert_eq!(storage.size("packs/ab/one").unwrap(), 5);

        // Never replaced: the first object stays.
        let err = storage.put("packs/ab/one", b"other").unwrap_err();
        assert!(is_already_exists(&err), "{err}");
        assert_eq!(storage.read("packs/ab/one").unwrap(), b"first");

        // An unfinished object leaves nothing.
        let mut unfinished = storage.create().unwrap();
        unfinished.write_all(b"half").unwrap();
        drop(unfinished);
        assert!(is_not_found(&storage.read("packs/cd/two").unwrap_err()));

        storage.put("snapshots/s1", b"manifest").unwrap();
        let mut packs = storage.list("packs/").unwrap();
        packs.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(packs, vec![ObjectInfo { name: "packs/ab/one".into(), size: 5 }]);
        assert_eq!(storage.list("snapshots/").unwrap().len(), 1);
        assert!(storage.list("nothing/").unwrap().is_empty());

        storage.put("config", b"v1").unwrap();
        storage.replace("config", b"version 2").unwrap();
        assert_eq!(storage.read("config").unwrap(), b"version 2");

        storage.delete("packs/ab/one").unwrap();
        assert!(is_not_found(&storage.read("packs/ab/one").unwrap_err()));
        assert!(is_not_found(&storage.size("packs/ab/one").unwrap_err()));
        assert!(is_not_found(&storage.delete("packs/ab/one").unwrap_err()));
        assert!(storage.list("packs/").unwrap().is_empty());

        let mut streamed = Vec::new();
        storage.reader("config").unwrap().read_to_end(&mut streamed).unwrap();
        assert_eq!(streamed, b"version 2");

        for bad in ["", "/etc/passwd", "packs/../../x", "a//b", "./config"] {
            assert!(storage.read(bad).is_err(), "{bad:?}");
            assert!(storage.put(bad, b"x").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn object_names_stay_inside() {
        assert!(check_name("packs/ab/cd").is_ok());
        assert!(check_name("config").is_ok());
        assert!(check_name("packs/").is_err());
        assert!(check_name("..").is_err());
    }
}
