//! Durable file creation: write under a temporary name, fsync, rename, fsync the
//! directory. After `persist` returns, the file exists whole or a crash lost nothing.

use crate::error::{IoContext, Result};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// A fresh name in `tmp_dir`, unique within this process and across processes.
pub fn temp_path(tmp_dir: &Path, what: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    tmp_dir.join(format!("{what}-{}-{n}.tmp", std::process::id()))
}

/// Makes `file` (written at `temp`) durable under `dest`, creating `dest`'s directory
/// when needed. The directory and its parent are fsynced every time, not only when
/// this process created the directory: another process may have created it and been
/// killed before its fsync.
pub fn persist(file: File, temp: &Path, dest: &Path) -> Result<()> {
    file.sync_all().at(temp)?;
    drop(file);
    let dir = parent_of(dest);
    fs::create_dir_all(dir).at(dir)?;
    fs::rename(temp, dest).at(dest)?;
    fsync_dir(dir)?;
    fsync_dir(parent_of(dir))
}

/// The directory holding `path`; `.` for a bare relative name.
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Writes `bytes` durably to `dest` by way of a temporary file in `tmp_dir`.
pub fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    let temp = temp_path(tmp_dir, "write");
    let mut file = File::create(&temp).at(&temp)?;
    file.write_all(bytes).at(&temp)?;
    persist(file, &temp, dest)
}
