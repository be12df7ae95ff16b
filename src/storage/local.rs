//! A repository in a local directory. A new object is written under `tmp/`, fsynced,
//! renamed to its name without replacing anything there, and its directory fsynced.
//! Reading needs no write access anywhere.

use super::{check_name, flock, LockMode, NewObject, ObjectInfo, Storage, StorageLock};
use crate::error::{Error, IoContext, Result};
use crate::layout;
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct LocalStorage {
    root: PathBuf,
    /// Files open for ranged reads: a restore reads many chunks from each pack.
    open: Mutex<HashMap<String, Arc<File>>>,
}

impl LocalStorage {
    const MAX_OPEN: usize = 64;
    /// Directories below a listed prefix that are looked into: the layout's objects are
    /// at most one level down (`packs/xx/<id>`).
    const MAX_LIST_DEPTH: usize = 2;

    pub fn new(root: &Path) -> LocalStorage {
        LocalStorage { root: root.to_path_buf(), open: Mutex::default() }
    }

    fn open_file(&self, name: &str) -> Result<Arc<File>> {
        let mut open = self.open.lock().expect("open files lock");
        if let Some(file) = open.get(name) {
            return Ok(file.clone());
        }
        if open.len() >= Self::MAX_OPEN {
            open.clear();
        }
        let path = self.path(name)?;
        let file = Arc::new(File::open(&path).at(&path)?);
        open.insert(name.to_string(), file.clone());
        Ok(file)
    }

    /// Makes the directories a new repository writes into.
    pub fn create_dirs(&self) -> Result<()> {
        for dir in [layout::PACKS, layout::SNAPSHOTS, layout::LOCAL_TMP] {
            let path = self.root.join(dir.trim_end_matches('/'));
            fs::create_dir_all(&path).at(&path)?;
        }
        for file in [layout::LOCK, layout::APPEND_LOCK] {
            let path = self.root.join(file);
            File::create(&path).at(&path)?;
        }
        fsync_dir(&self.root)
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        check_name(name).at(self.root.join(name))?;
        Ok(self.root.join(name))
    }

    /// fsyncs every directory from `path`'s up to the repository's own, every time, not
    /// only those this process created: another process may have created one and been
    /// killed before its fsync.
    fn fsync_dirs_above(&self, path: &Path) -> Result<()> {
        let mut dir = parent_of(path);
        loop {
            fsync_dir(dir)?;
            if dir == self.root || !dir.starts_with(&self.root) {
                return Ok(());
            }
            dir = parent_of(dir);
        }
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join(layout::LOCAL_TMP)
    }

    /// `tmp/`, made again when missing: copies of a repository may lose empty
    /// directories.
    fn new_tmp_dir(&self) -> Result<PathBuf> {
        let tmp = self.tmp_dir();
        fs::create_dir_all(&tmp).at(&tmp)?;
        Ok(tmp)
    }

    /// A file written under `tmp/` (see `temp_path`) made durable in place of `dest`,
    /// replacing it whole: fsync, rename, fsync of the directories above. For the one
    /// mutable object and for the repository's own index file.
    pub fn swap_in(&self, temp: &Path, dest: &Path) -> Result<()> {
        File::open(temp).and_then(|f| f.sync_all()).at(temp)?;
        fs::rename(temp, dest).at(dest)?;
        self.fsync_dirs_above(dest)
    }

    /// A fresh name under `tmp/` for a file `swap_in` will put in place.
    pub fn temp_file(&self, what: &str) -> Result<PathBuf> {
        Ok(temp_path(&self.new_tmp_dir()?, what))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Empties `tmp/` of what interrupted writers left; only under a writer's lock, so
    /// that nothing in it is still being written. Recreates it when missing: copies of
    /// a repository may lose empty directories.
    fn clear_tmp(&self) -> Result<()> {
        let tmp = self.tmp_dir();
        fs::create_dir_all(&tmp).at(&tmp)?;
        for entry in fs::read_dir(&tmp).at(&tmp)? {
            let path = entry.at(&tmp)?.path();
            if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path).at(&path)?;
            } else {
                fs::remove_file(&path).at(&path)?;
            }
        }
        Ok(())
    }
}

/// A fresh name in `tmp_dir`, unique within this process and across processes.
pub fn temp_path(tmp_dir: &Path, what: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    tmp_dir.join(format!("{what}-{}-{n}.tmp", std::process::id()))
}

pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// The directory holding `path`; `.` for a bare relative name.
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Renames `temp` to `dest` unless `dest` exists. File systems without
/// `RENAME_NOREPLACE` (some network and FAT file systems) get a check then a rename:
/// the two can race only with another writer of the same name, which by the naming
/// rule writes the same bytes.
fn rename_no_replace(temp: &Path, dest: &Path) -> io::Result<()> {
    match renameat2(AT_FDCWD, temp, AT_FDCWD, dest, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EEXIST) => Err(io::ErrorKind::AlreadyExists.into()),
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS) => match dest.symlink_metadata() {
            Ok(_) => Err(io::ErrorKind::AlreadyExists.into()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::rename(temp, dest),
            Err(e) => Err(e),
        },
        Err(errno) => Err(errno.into()),
    }
}

struct LocalObject<'a> {
    storage: &'a LocalStorage,
    out: BufWriter<File>,
    temp: PathBuf,
    finished: bool,
}

impl Write for LocalObject<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl NewObject for LocalObject<'_> {
    /// fsync, rename without replacing, then fsync the directories above it.
    fn finish(mut self: Box<Self>, name: &str) -> Result<()> {
        let dest = self.storage.path(name)?;
        self.out.flush().at(&self.temp)?;
        self.out.get_ref().sync_all().at(&self.temp)?;
        let dir = parent_of(&dest).to_path_buf();
        fs::create_dir_all(&dir).at(&dir)?;
        let renamed = rename_no_replace(&self.temp, &dest).at(&dest);
        self.finished = renamed.is_ok();
        if let Err(e) = renamed {
            // The one there may be a killed writer's, named but not yet durable.
            if super::is_already_exists(&e) {
                self.storage.make_durable(name)?;
            }
            return Err(e);
        }
        self.storage.fsync_dirs_above(&dest)
    }
}

impl Drop for LocalObject<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

impl Storage for LocalStorage {
    fn describe(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn create(&self) -> Result<Box<dyn NewObject + '_>> {
        let temp = temp_path(&self.new_tmp_dir()?, "new");
        let file = File::create(&temp).at(&temp)?;
        Ok(Box::new(LocalObject {
            storage: self,
            out: BufWriter::with_capacity(1 << 20, file),
            temp,
            finished: false,
        }))
    }

    /// Called for every chunk a restore reads: the open file is looked up by name,
    /// and a path made only for an error.
    fn read_at(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let file = self.open_file(name)?;
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(self.root.join(name), e)),
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.path(name)?;
        fs::read(&path).at(&path)
    }

    fn reader(&self, name: &str) -> Result<Box<dyn io::Read + Send>> {
        let path = self.path(name)?;
        Ok(Box::new(File::open(&path).at(&path)?))
    }

    fn size(&self, name: &str) -> Result<u64> {
        let path = self.path(name)?;
        Ok(fs::metadata(&path).at(&path)?.len())
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let dir = prefix.trim_end_matches('/');
        let base = self.path(dir)?;
        let mut out = Vec::new();
        let mut pending = vec![(base, dir.to_string(), 0)];
        while let Some((path, name, depth)) = pending.pop() {
            let entries = match fs::read_dir(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                other => other.at(&path)?,
            };
            for entry in entries {
                let entry = entry.at(&path)?;
                let Some(file_name) = entry.file_name().to_str().map(str::to_string) else { continue };
                let child = format!("{name}/{file_name}");
                // Symlinks are followed, as reads follow them (a copy of a repository
                // may link its shard directories elsewhere); the depth limit keeps a
                // link to an ancestor from looping.
                let meta = match fs::metadata(entry.path()) {
                    // Gone since the listing, or a dangling link: no object.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    other => other.at(entry.path())?,
                };
                if meta.is_dir() && depth < Self::MAX_LIST_DEPTH {
                    pending.push((entry.path(), child, depth + 1));
                } else if meta.is_file() {
                    out.push(ObjectInfo { name: child, size: meta.len() });
                }
            }
        }
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        self.open.lock().expect("open files lock").remove(name);
        fs::remove_file(&path).at(&path)?;
        fsync_dir(parent_of(&path))
    }

    fn replace(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let dest = self.path(name)?;
        let temp = temp_path(&self.new_tmp_dir()?, "replace");
        let mut file = File::create(&temp).at(&temp)?;
        file.write_all(bytes).at(&temp)?;
        self.swap_in(&temp, &dest)
    }

    fn make_durable(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        File::open(&path).and_then(|f| f.sync_all()).at(&path)?;
        self.fsync_dirs_above(&path)
    }

    /// A writer that takes its lock empties `tmp/`: no other writer runs, so anything
    /// there is an interrupted one's.
    fn lock(&self, mode: LockMode, wait: Duration, command: &str) -> Result<StorageLock> {
        let lock = flock::acquire(&self.root, mode, wait, command)?;
        if mode.writes() {
            self.clear_tmp()?;
        }
        Ok(Box::new(lock))
    }

    fn local_root(&self) -> Option<PathBuf> {
        Some(self.root.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_storage_contract() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path());
        storage.create_dirs().unwrap();
        super::super::tests::contract(&storage);
        // Nothing is left behind in tmp/ by finished, refused or dropped objects.
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn writes_into_a_missing_tmp_directory() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path());
        storage.put("snapshots/x", b"bytes").unwrap();
        assert_eq!(fs::read(dir.path().join("snapshots/x")).unwrap(), b"bytes");
    }
}
