//! The repository lock: writers hold it exclusively, readers share it. The holder of an
//! exclusive lock writes who it is into the lock file, so a blocked process can say.

use crate::error::{Error, IoContext, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

pub struct RepoLock {
    file: File,
    mode: LockMode,
}

/// Takes the lock, retrying until `wait` has passed; then fails naming the holder.
pub fn acquire(path: &Path, mode: LockMode, wait: Duration, command: &str) -> Result<RepoLock> {
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).at(path)?;
    let deadline = Instant::now() + wait;
    loop {
        let attempt = match mode {
            LockMode::Shared => file.try_lock_shared(),
            LockMode::Exclusive => file.try_lock(),
        };
        match attempt {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked { path: repo_of(path), holder: holder(&mut file) });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(path, e)),
        }
    }
    if mode == LockMode::Exclusive {
        let host = crate::hostname();
        let info = format!(
            "pid {} on {host} ({command}, since unix time {})",
            std::process::id(),
            crate::time::Timestamp::now().secs
        );
        file.set_len(0).at(path)?;
        file.rewind().at(path)?;
        file.write_all(info.as_bytes()).at(path)?;
    }
    Ok(RepoLock { file, mode })
}

fn repo_of(lock_path: &Path) -> PathBuf {
    lock_path.parent().unwrap_or(lock_path).to_path_buf()
}

fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut text));
    let text = text.trim();
    if text.is_empty() {
        "another cairn process reading it".to_string()
    } else {
        text.to_string()
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        if self.mode == LockMode::Exclusive {
            let _ = self.file.set_len(0);
        }
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_writer_fails_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = acquire(&path, LockMode::Exclusive, Duration::ZERO, "cairn backup").unwrap();
        let err = acquire(&path, LockMode::Shared, Duration::from_millis(150), "cairn ls").err().unwrap();
        let message = err.to_string();
        assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
        assert!(message.contains("cairn backup"), "{message}");
        drop(first);
        let _a = acquire(&path, LockMode::Shared, Duration::ZERO, "a").unwrap();
        let _b = acquire(&path, LockMode::Shared, Duration::ZERO, "b").unwrap();
        assert!(acquire(&path, LockMode::Exclusive, Duration::ZERO, "c").is_err());
    }
}
