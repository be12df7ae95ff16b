//! The lock of a repository on object storage, where there are no file locks: each
//! holder writes a lock object `locks/<random id>` saying who it is and how it uses
//! the repository, then lists `locks/` and backs off if it finds one that excludes it
//! (format-spec/repository.md, "Locks on object storage").
//!
//! Why this is enough: a holder writes its lock before it lists. Of two processes
//! whose locks conflict, the one that lists second sees the other's lock (the store
//! lists a finished PUT), so at least one of them backs off; both may, and then both
//! retry after a random pause. A holder refreshes its lock while it runs; a lock not
//! refreshed for `STALE` (its holder died or lost the store), or whose holder was a
//! process of this host that is gone, excludes nobody. A holder that could not refresh
//! its lock for `STALE / 2` is told so by `LockGuard::check`, and must stop before it
//! makes anything depend on objects it wrote: others may already treat its lock as
//! stale.

use super::{LockMode, Storage};
use crate::error::{Error, Result};
use crate::format;
use crate::id::to_hex;
use crate::layout::LOCKS;
use crate::time::Timestamp;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// "CAIRNLCK", version 1.
pub const LOCK_MAGIC: [u8; 8] = *b"CAIRNLCK";
pub const LOCK_VERSION: u32 = 1;

/// A lock older than this excludes nobody.
pub const STALE: Duration = Duration::from_secs(30 * 60);
/// How often a holder writes its lock again.
pub const REFRESH: Duration = Duration::from_secs(5 * 60);

/// What a lock object holds after its file header.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct LockRecord {
    /// 0 shared, 1 append, 2 exclusive.
    pub mode: u8,
    /// Seconds since the Unix epoch when the lock was written.
    pub time: i64,
    pub host: String,
    pub pid: u32,
    pub command: String,
}

impl LockRecord {
    fn mode(&self) -> Option<LockMode> {
        match self.mode {
            0 => Some(LockMode::Shared),
            1 => Some(LockMode::Append),
            2 => Some(LockMode::Exclusive),
            _ => None,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = format::file_header(LOCK_MAGIC, LOCK_VERSION).to_vec();
        bytes.extend(format::encode(self));
        bytes
    }

    pub fn decode(bytes: &[u8]) -> std::result::Result<LockRecord, String> {
        format::check_file_header(bytes, LOCK_MAGIC, LOCK_VERSION)?;
        format::decode(&bytes[format::FILE_HEADER_LEN..])
    }

    /// Whether this lock still binds anyone: not too old, and not left by a process of
    /// this host that has gone.
    fn is_live(&self, now: i64) -> bool {
        let age = now.saturating_sub(self.time);
        if age > STALE.as_secs() as i64 {
            return false;
        }
        let this_host = self.host == crate::hostname();
        !this_host || process_exists(self.pid)
    }

    fn describe(&self) -> String {
        let when = Timestamp { secs: self.time, nanos: 0 }.to_rfc3339();
        format!("{} (pid {} on {}, since {when})", self.command, self.pid, self.host)
    }
}

fn mode_byte(mode: LockMode) -> u8 {
    match mode {
        LockMode::Shared => 0,
        LockMode::Append => 1,
        LockMode::Exclusive => 2,
    }
}

/// Whether a holder in `mine` must wait for one in `theirs`.
fn excludes(mine: LockMode, theirs: LockMode) -> bool {
    mine == LockMode::Exclusive || theirs == LockMode::Exclusive
}

fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    !matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(nix::errno::Errno::ESRCH))
}

fn random_name() -> Result<String> {
    let mut bytes = [0u8; 16];
    crate::random_bytes(&mut bytes)?;
    Ok(format!("{LOCKS}{}", to_hex(&bytes)))
}

/// A lock held; dropping it stops the refresh and removes the lock object.
pub struct LockGuard {
    shared: Arc<Shared>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    storage: Arc<dyn Storage>,
    name: Mutex<String>,
    record: Mutex<LockRecord>,
    /// When the lock was last written, on this process's clock.
    last_written: AtomicI64,
    stop: (Mutex<bool>, Condvar),
    lost: AtomicBool,
}

/// Takes a lock in `mode` on `storage`, retrying for up to `wait` while a holder
/// excludes it; then fails naming that holder.
pub fn acquire(
    storage: Arc<dyn Storage>,
    mode: LockMode,
    wait: Duration,
    command: &str,
) -> Result<LockGuard> {
    let deadline = Instant::now() + wait;
    let record = LockRecord {
        mode: mode_byte(mode),
        time: Timestamp::now().secs,
        host: crate::hostname(),
        pid: std::process::id(),
        command: command.to_string(),
    };
    loop {
        let record = LockRecord { time: Timestamp::now().secs, ..record.clone() };
        let name = random_name()?;
        storage.put(&name, &record.encode())?;
        match first_conflict(storage.as_ref(), &name, mode)? {
            None => return Ok(LockGuard::hold(storage, name, record)),
            Some(holder) => {
                storage.delete(&name)?;
                if Instant::now() >= deadline {
                    let path = storage.describe(LOCKS.trim_end_matches('/'));
                    return Err(Error::Locked { path, holder: holder.describe() });
                }
                std::thread::sleep(backoff());
            }
        }
    }
}

/// A pause of 0.5 to 1.5 s, different in each process, so that two processes that
/// backed off from each other do not meet again.
fn backoff() -> Duration {
    let mut byte = [0u8; 1];
    let jitter = crate::random_bytes(&mut byte).map(|_| byte[0] as u64).unwrap_or(128);
    Duration::from_millis(500 + jitter * 4)
}

/// The first live lock other than `own` that excludes a holder in `mode`. A lock that
/// vanished between listing and reading was released; one that cannot be decoded is
/// not cairn's and binds nobody.
fn first_conflict(storage: &dyn Storage, own: &str, mode: LockMode) -> Result<Option<LockRecord>> {
    let now = Timestamp::now().secs;
    for object in storage.list(LOCKS)? {
        if object.name == own {
            continue;
        }
        let bytes = match storage.read(&object.name) {
            Err(e) if super::is_not_found(&e) => continue,
            other => other?,
        };
        let Ok(record) = LockRecord::decode(&bytes) else { continue };
        let conflicts = record.mode().is_none_or(|theirs| excludes(mode, theirs));
        if conflicts && record.is_live(now) {
            return Ok(Some(record));
        }
    }
    Ok(None)
}

impl LockGuard {
    fn hold(storage: Arc<dyn Storage>, name: String, record: LockRecord) -> LockGuard {
        let shared = Arc::new(Shared {
            storage,
            last_written: AtomicI64::new(record.time),
            name: Mutex::new(name),
            record: Mutex::new(record),
            stop: (Mutex::new(false), Condvar::new()),
            lost: AtomicBool::new(false),
        });
        let refresher = {
            let shared = shared.clone();
            std::thread::spawn(move || shared.refresh_until_stopped())
        };
        LockGuard { shared, refresher: Some(refresher) }
    }

    /// Fails if the lock may no longer bind others: it could not be written again for
    /// half of `STALE`.
    pub fn check(&self) -> Result<()> {
        let age = Timestamp::now().secs.saturating_sub(self.shared.last_written.load(Ordering::Relaxed));
        if self.shared.lost.load(Ordering::Relaxed) || age > (STALE / 2).as_secs() as i64 {
            let name = self.shared.name.lock().expect("lock name").clone();
            return Err(Error::Locked {
                path: self.shared.storage.describe(&name),
                holder: format!("nobody: this process could not refresh its lock for {age} s"),
            });
        }
        Ok(())
    }
}

impl Shared {
    /// Writes the lock again under a new name every `REFRESH`, then removes the old
    /// one: there is always one fresh lock object of this holder.
    fn refresh_until_stopped(&self) {
        let (stopped, wake) = &self.stop;
        let mut stop = stopped.lock().expect("stop flag");
        loop {
            let (guard, _) = wake.wait_timeout_while(stop, REFRESH, |stop| !*stop).expect("stop flag");
            stop = guard;
            if *stop {
                return;
            }
            // A failure is tried again at the next tick; `check` says when it has been
            // too long.
            let _ = self.refresh();
        }
    }

    fn refresh(&self) -> Result<()> {
        let mut record = self.record.lock().expect("lock record");
        record.time = Timestamp::now().secs;
        let new_name = random_name()?;
        self.storage.put(&new_name, &record.encode())?;
        self.last_written.store(record.time, Ordering::Relaxed);
        let old = std::mem::replace(&mut *self.name.lock().expect("lock name"), new_name);
        if let Err(e) = self.storage.delete(&old) {
            if !super::is_not_found(&e) {
                return Err(e);
            }
            // Someone removed our lock as stale: others may act as if we were gone.
            self.lost.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl super::HeldLock for LockGuard {
    fn still_held(&self) -> Result<()> {
        self.check()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        *self.shared.stop.0.lock().expect("stop flag") = true;
        self.shared.stop.1.notify_all();
        if let Some(refresher) = self.refresher.take() {
            let _ = refresher.join();
        }
        let name = self.shared.name.lock().expect("lock name").clone();
        // Best effort: a lock left behind goes stale, or is seen as its dead holder's.
        let _ = self.shared.storage.delete(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    fn storage() -> Arc<dyn Storage> {
        Arc::new(MemoryStorage::new())
    }

    #[test]
    fn readers_and_backups_share_and_exclusive_holders_exclude_everyone() {
        let s = storage();
        let reader = acquire(s.clone(), LockMode::Shared, Duration::ZERO, "cairn ls").unwrap();
        let backup = acquire(s.clone(), LockMode::Append, Duration::ZERO, "cairn backup").unwrap();
        let second_backup = acquire(s.clone(), LockMode::Append, Duration::ZERO, "cairn backup").unwrap();
        let err = acquire(s.clone(), LockMode::Exclusive, Duration::ZERO, "cairn prune").err().unwrap();
        assert!(err.to_string().contains("cairn "), "{err}");
        assert_eq!(s.list(LOCKS).unwrap().len(), 3, "the refused lock was removed");
        drop((reader, backup, second_backup));
        assert!(s.list(LOCKS).unwrap().is_empty());
        let prune = acquire(s.clone(), LockMode::Exclusive, Duration::ZERO, "cairn prune").unwrap();
        let err = acquire(s.clone(), LockMode::Shared, Duration::ZERO, "cairn ls").err().unwrap();
        assert!(err.to_string().contains("cairn prune"), "{err}");
        prune.check().unwrap();
    }

    #[test]
    fn a_waiting_holder_gets_the_lock_once_it_is_released() {
        let s = storage();
        let prune = acquire(s.clone(), LockMode::Exclusive, Duration::ZERO, "cairn prune").unwrap();
        let waiter = {
            let s = s.clone();
            std::thread::spawn(move || acquire(s, LockMode::Append, Duration::from_secs(20), "cairn backup"))
        };
        std::thread::sleep(Duration::from_millis(700));
        drop(prune);
        assert!(waiter.join().unwrap().is_ok());
    }

    #[test]
    fn stale_locks_and_locks_of_dead_processes_on_this_host_bind_nobody() {
        let s = storage();
        let now = Timestamp::now().secs;
        let old = LockRecord {
            mode: 2,
            time: now - STALE.as_secs() as i64 - 1,
            host: "elsewhere".into(),
            pid: 1,
            command: "cairn prune".into(),
        };
        s.put("locks/old", &old.encode()).unwrap();
        // A pid above the kernel's maximum belongs to no process.
        let dead = LockRecord { time: now, host: crate::hostname(), pid: 1 << 30, ..old.clone() };
        s.put("locks/dead", &dead.encode()).unwrap();
        s.put("locks/garbage", b"not a lock").unwrap();
        acquire(s.clone(), LockMode::Append, Duration::ZERO, "cairn backup").unwrap();
        let live = LockRecord { time: now, ..old };
        s.put("locks/live", &live.encode()).unwrap();
        assert!(acquire(s.clone(), LockMode::Append, Duration::ZERO, "cairn backup").is_err());
    }

    #[test]
    fn a_holder_whose_lock_was_removed_or_not_refreshed_is_told_to_stop() {
        let s = storage();
        let guard = acquire(s.clone(), LockMode::Append, Duration::ZERO, "cairn backup").unwrap();
        guard.check().unwrap();
        // Not written again for longer than half the stale age.
        let old = Timestamp::now().secs - (STALE / 2).as_secs() as i64 - 1;
        guard.shared.last_written.store(old, Ordering::Relaxed);
        assert!(guard.check().unwrap_err().to_string().contains("could not refresh"));
        // Refreshed, but someone had removed the old lock as stale meanwhile.
        let name = guard.shared.name.lock().unwrap().clone();
        s.delete(&name).unwrap();
        guard.shared.refresh().unwrap();
        assert!(guard.check().is_err());
        assert!(s.list(LOCKS).unwrap().len() == 1, "the refreshed lock is there");
    }

    #[test]
    fn lock_records_round_trip_and_other_bytes_are_refused() {
        let record = LockRecord {
            mode: 1,
            time: 1_700_000_000,
            host: "h".into(),
            pid: 42,
            command: "cairn backup".into(),
        };
        // The example of format-spec/repository.md, "Lock objects".
        let spec_example = "434149524e4c434b01000000000000000100f15365000000000100000000000000\
                            682a0000000c00000000000000636169726e206261636b7570";
        assert_eq!(crate::id::to_hex(&record.encode()), spec_example);
        assert_eq!(LockRecord::decode(&record.encode()).unwrap(), record);
        assert!(LockRecord::decode(b"CAIRNSNP").is_err());
    }
}
