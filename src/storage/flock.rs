//! The lock of a local repository: advisory `flock`s on two files.
//!
//! ```text
//! REPO/lock         readers and backups share it; prune, forget and repair hold it alone
//! REPO/append-lock  one backup at a time holds it
//! ```
//! A reader opens `lock` read-only and creates nothing, so a repository on read-only
//! media, or one the user cannot write, is read without a lock file being made; when
//! the file is missing or cannot be opened, a reader goes on unlocked (nothing that
//! could exclude it is running: every writer creates the file). An exclusive holder
//! writes who it is into the file it holds exclusively, so a blocked process can say.

use super::LockMode;
use crate::error::{Error, IoContext, Result};
use crate::layout;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

pub struct LocalLock {
    /// The file this process holds exclusively, truncated on release.
    owned: Option<File>,
    _held: Vec<File>,
}

/// An flock lasts as long as the process holds its file.
impl super::HeldLock for LocalLock {}

pub fn acquire(root: &Path, mode: LockMode, wait: Duration, command: &str) -> Result<LocalLock> {
    let deadline = Instant::now() + wait;
    let path = root.join(layout::LOCK);
    let lock = match mode {
        LockMode::Shared => match File::open(&path) {
            Ok(file) => file,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied) => {
                return Ok(LocalLock { owned: None, _held: Vec::new() })
            }
            Err(e) => return Err(Error::io(&path, e)),
        },
        _ => open_writable(&path)?,
    };
    let exclusive = mode == LockMode::Exclusive;
    take(&lock, exclusive, deadline, root, &path)?;
    match mode {
        LockMode::Shared => return Ok(LocalLock { owned: None, _held: vec![lock] }),
        LockMode::Exclusive => {
            return Ok(LocalLock { owned: Some(sign(lock, command, &path)?), _held: Vec::new() })
        }
        LockMode::Append => {}
    }
    let append_path = root.join(layout::APPEND_LOCK);
    let append = open_writable(&append_path)?;
    take(&append, true, deadline, root, &append_path)?;
    Ok(LocalLock { owned: Some(sign(append, command, &append_path)?), _held: vec![lock] })
}

fn open_writable(path: &Path) -> Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).at(path)
}

/// Locks `file` (at `path`), retrying until `deadline`; then fails naming the holder.
fn take(file: &File, exclusive: bool, deadline: Instant, root: &Path, path: &Path) -> Result<()> {
    loop {
        let attempt = match exclusive {
            true => file.try_lock(),
            false => file.try_lock_shared(),
        };
        match attempt {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked { path: root.to_path_buf(), holder: holder(root, path) })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(root.join(layout::LOCK), e)),
        }
    }
}

fn sign(mut file: File, command: &str, path: &Path) -> Result<File> {
    let info = format!(
        "pid {} on {} ({command}, since unix time {})",
        std::process::id(),
        crate::hostname(),
        crate::time::Timestamp::now().secs
    );
    file.set_len(0).at(path)?;
    file.rewind().at(path)?;
    file.write_all(info.as_bytes()).at(path)?;
    Ok(file)
}

/// Who holds the `contended` file: the line of the process holding a file exclusively
/// (`lock` held shared is held by readers, or by a backup, which signs `append-lock`).
/// A line left by a killed process is ignored: its file is no longer locked.
fn holder(root: &Path, contended: &Path) -> String {
    let signed_and_held = |path: &Path| -> Option<String> {
        let mut file = File::open(path).ok()?;
        let mut text = String::new();
        file.read_to_string(&mut text).ok()?;
        let held = matches!(file.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock));
        (held && !text.trim().is_empty()).then(|| text.trim().to_string())
    };
    let append = root.join(layout::APPEND_LOCK);
    signed_and_held(contended)
        .or_else(|| (contended != append).then(|| signed_and_held(&append)).flatten())
        .unwrap_or_else(|| "another cairn process reading it".to_string())
}

impl Drop for LocalLock {
    fn drop(&mut self) {
        if let Some(file) = &self.owned {
            let _ = file.set_len(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::ZERO;

    #[test]
    fn a_backup_excludes_writers_not_readers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let backup = acquire(root, LockMode::Append, NOW, "cairn backup").unwrap();
        let _reader = acquire(root, LockMode::Shared, NOW, "cairn ls").unwrap();
        let err = acquire(root, LockMode::Append, Duration::from_millis(150), "b").err().unwrap().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())) && err.contains("cairn backup"),
            "{err}"
        );
        let err = acquire(root, LockMode::Exclusive, NOW, "cairn prune").err().unwrap().to_string();
        assert!(err.contains("cairn backup"), "{err}");
        drop(backup);
        assert!(acquire(root, LockMode::Exclusive, NOW, "c").is_err(), "the reader still holds it");
    }

    #[test]
    fn prune_excludes_everyone_and_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let prune = acquire(root, LockMode::Exclusive, NOW, "cairn prune").unwrap();
        for mode in [LockMode::Shared, LockMode::Append, LockMode::Exclusive] {
            let err = acquire(root, mode, NOW, "x").err().unwrap().to_string();
            assert!(err.contains("cairn prune"), "{err}");
        }
        drop(prune);
        let _a = acquire(root, LockMode::Shared, NOW, "a").unwrap();
        let _b = acquire(root, LockMode::Shared, NOW, "b").unwrap();
        let _c = acquire(root, LockMode::Append, NOW, "c").unwrap();
    }

    #[test]
    fn a_killed_holders_line_is_not_taken_for_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // A prune killed without tidying up leaves its line; a backup now holds the
        // repository and blocks another.
        std::fs::write(root.join(layout::LOCK), "pid 1 on h (cairn prune, since unix time 0)").unwrap();
        let _backup = acquire(root, LockMode::Append, NOW, "cairn backup").unwrap();
        let err = acquire(root, LockMode::Append, NOW, "b").err().unwrap().to_string();
        assert!(err.contains("cairn backup") && !err.contains("cairn prune"), "{err}");
        let err = acquire(root, LockMode::Exclusive, NOW, "c").err().unwrap().to_string();
        assert!(err.contains("cairn backup") && !err.contains("cairn prune"), "{err}");
    }

    #[test]
    fn a_reader_creates_no_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let _reader = acquire(dir.path(), LockMode::Shared, NOW, "cairn ls").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
