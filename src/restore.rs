//! Restore: a snapshot's entries back onto disk, byte-exact. Every chunk is verified
//! against its id before its bytes are written; nothing is written outside the target
//! and no symlink is ever followed.

use crate::error::{Error, IoContext, Result};
use crate::id::{PackId, SnapshotId};
use crate::index::{ChunkTable, Location};
use crate::manifest::{self, display_path, FileEntry, FileKind, ManifestReader, Record};
use crate::pack;
use crate::repo::Repository;
use crate::Progress;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, Permissions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub struct RestoreOptions {
    pub target: PathBuf,
    /// Restore into a non-empty target, replacing entries of the same name.
    pub overwrite: bool,
}

#[derive(Debug, Default)]
pub struct RestoreReport {
    pub files: u64,
    pub bytes: u64,
    /// Entries that could not be restored, each with the reason. Damaged files are
    /// removed rather than left with wrong content.
    pub errors: Vec<String>,
}

/// Files restored together: their chunks are spread over the cores.
const BATCH_FILES: usize = 512;
const BATCH_BYTES: u64 = 256 << 20;
/// Chunks of one file handled by one task; large files are split across tasks.
const TASK_CHUNKS: usize = 4;

pub fn restore(
    repo: &Repository,
    id: &SnapshotId,
    options: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    manifest::verify_file(&repo.snapshots_dir(), id)?;
    let summary = repo.summary(id)?;
    prepare_target(&options.target, options.overwrite)?;
    let per_component = summary.components.len() > 1;
    let mut restorer = Restorer {
        repo,
        chunks: repo.index.view()?.chunks()?,
        packs: PackFiles::default(),
        overwrite: options.overwrite,
        is_root: nix::unistd::geteuid().is_root(),
        dirs: HashSet::new(),
        linked: HashMap::new(),
        linked_queued: HashSet::new(),
        batch: Vec::new(),
        batch_bytes: 0,
        base: options.target.clone(),
        report: RestoreReport::default(),
        progress,
    };
    let mut reader = ManifestReader::open(&repo.snapshots_dir(), id)?;
    while let Some(record) = reader.next_record()? {
        match record {
            Record::Component(c) if per_component => {
                restorer.flush()?;
                restorer.enter_component(&options.target, &c.name)?
            }
            Record::File(entry) => restorer.entry(entry)?,
            _ => {}
        }
    }
    restorer.flush()?;
    // Directory times last: creating their children changed them.
    let mut reader = ManifestReader::open(&repo.snapshots_dir(), id)?;
    while let Some(record) = reader.next_record()? {
        match record {
            Record::Component(c) if per_component => restorer.base = options.target.join(&c.name),
            Record::File(entry) if entry.kind == FileKind::Directory => {
                let path = restorer.path_of(&entry);
                if let Err(e) = restorer.set_metadata(&path, &entry, None) {
                    restorer.report.errors.push(e.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(restorer.report)
}

fn prepare_target(target: &Path, overwrite: bool) -> Result<()> {
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => {
            let empty = fs::read_dir(target).at(target)?.next().is_none();
            if !empty && !overwrite {
                return Err(Error::Restore(format!(
                    "target {} is not empty (use --overwrite to restore into it)",
                    target.display()
                )));
            }
            Ok(())
        }
        Ok(_) => Err(Error::Restore(format!(
            "target {} exists and is not a directory",
            target.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir_all(target).at(target),
        Err(e) => Err(Error::io(target, e)),
    }
}

/// Open pack files shared by the restore workers.
#[derive(Default)]
struct PackFiles {
    open: Mutex<HashMap<PackId, Arc<File>>>,
}

impl PackFiles {
    const MAX_OPEN: usize = 64;

    fn get(&self, repo: &Repository, id: &PackId) -> Result<Arc<File>> {
        let mut open = self.open.lock().expect("pack cache lock");
        if let Some(file) = open.get(id) {
            return Ok(file.clone());
        }
        if open.len() >= Self::MAX_OPEN {
            open.clear();
        }
        let path = repo.pack_path(id);
        let file = Arc::new(File::open(&path).at(&path)?);
        open.insert(*id, file.clone());
        Ok(file)
    }
}

/// A regular file being restored: created, sized, waiting for its chunks.
struct Pending {
    entry: FileEntry,
    path: PathBuf,
    file: File,
    locations: Vec<Location>,
    error: Mutex<Option<String>>,
}

struct Restorer<'a> {
    repo: &'a Repository,
    chunks: ChunkTable,
    packs: PackFiles,
    overwrite: bool,
    is_root: bool,
    /// Directories of this restore verified to be real directories (not symlinks):
    /// an entry is only ever created inside one of these.
    dirs: HashSet<Vec<u8>>,
    /// Hard-linked files restored so far: (device, inode) at backup time -> the path
    /// written and the inode it got here.
    linked: HashMap<(u64, u64), (PathBuf, u64)>,
    /// Hard-linked files whose first copy is in the current batch.
    linked_queued: HashSet<(u64, u64)>,
    batch: Vec<Pending>,
    batch_bytes: u64,
    base: PathBuf,
    report: RestoreReport,
    progress: &'a dyn Progress,
}

impl Restorer<'_> {
    fn enter_component(&mut self, target: &Path, name: &str) -> Result<()> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::Restore(format!("unsafe component name {name:?}")));
        }
        self.base = target.join(name);
        self.dirs.clear();
        self.linked.clear();
        match fs::symlink_metadata(&self.base) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(Error::Restore(format!(
                "{} exists and is not a directory",
                self.base.display()
            ))),
            Err(_) => fs::create_dir(&self.base).at(&self.base),
        }
    }

    fn path_of(&self, entry: &FileEntry) -> PathBuf {
        self.base.join(OsStr::from_bytes(&entry.path))
    }

    fn entry(&mut self, entry: FileEntry) -> Result<()> {
        let path = self.path_of(&entry);
        if let Err(message) = self.check_place(&entry) {
            self.report.errors.push(message);
            return Ok(());
        }
        let result = match &entry.kind {
            FileKind::Directory => self.directory(&entry, &path),
            FileKind::Regular if entry.links > 1 => return self.hard_linked(entry, path),
            FileKind::Regular => return self.queue_file(entry, path),
            FileKind::Symlink { target } => self.clear(&path).and_then(|_| {
                std::os::unix::fs::symlink(OsStr::from_bytes(target), &path).at(&path)?;
                self.set_metadata(&path, &entry, None)
            }),
            FileKind::Fifo | FileKind::CharDevice { .. } | FileKind::BlockDevice { .. } => {
                self.clear(&path).and_then(|_| self.special(&entry, &path))
            }
            FileKind::Socket => Err(Error::Restore(format!(
                "{}: sockets belong to running programs and are not restored",
                path.display()
            ))),
        };
        match result {
            Ok(()) => self.report.files += 1,
            Err(e) => self.report.errors.push(e.to_string()),
        }
        self.progress.advance(1, 0);
        Ok(())
    }

    /// An entry's parent must be a directory this restore has verified, and the entry
    /// must not replace one.
    fn check_place(&self, entry: &FileEntry) -> Result<(), String> {
        let name = display_path(&entry.path);
        if let Some(slash) = entry.path.iter().rposition(|&b| b == b'/') {
            if !self.dirs.contains(&entry.path[..slash]) {
                return Err(format!(
                    "{name}: its directory is not in the snapshot before it; not restored"
                ));
            }
        }
        if self.dirs.contains(&entry.path) {
            return Err(format!(
                "{name}: appears twice in the snapshot; not restored again"
            ));
        }
        Ok(())
    }

    fn directory(&mut self, entry: &FileEntry, path: &Path) -> Result<()> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) if self.overwrite => {
                fs::remove_file(path).at(path)?;
                fs::create_dir(path).at(path)?;
            }
            Ok(_) => {
                return Err(Error::Restore(format!(
                    "{}: exists and is not a directory",
                    path.display()
                )))
            }
            Err(_) => fs::create_dir(path).at(path)?,
        }
        self.dirs.insert(entry.path.clone());
        Ok(())
    }

    /// The first path of a hard-linked file is written; later ones become links to it,
    /// once it is complete and verified.
    fn hard_linked(&mut self, entry: FileEntry, path: PathBuf) -> Result<()> {
        let key = (entry.device, entry.inode);
        if self.linked_queued.contains(&key) {
            self.flush()?;
        }
        let Some((first, inode)) = self.linked.get(&key).cloned() else {
            self.linked_queued.insert(key);
            return self.queue_file(entry, path);
        };
        let result = match fs::symlink_metadata(&first) {
            Ok(meta) if meta.is_file() && meta.ino() == inode => self
                .clear(&path)
                .and_then(|_| fs::hard_link(&first, &path).at(&path)),
            _ => Err(Error::Restore(format!(
                "{}: {} (its hard link) was replaced during the restore",
                path.display(),
                first.display()
            ))),
        };
        match result {
            Ok(()) => self.report.files += 1,
            Err(e) => self.report.errors.push(e.to_string()),
        }
        self.progress.advance(1, 0);
        Ok(())
    }

    /// Makes room for a non-directory entry; a directory in the way is never removed.
    fn clear(&self, path: &Path) -> Result<()> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => Err(Error::Restore(format!(
                "{}: a directory is in the way; not replaced",
                path.display()
            ))),
            Ok(_) if self.overwrite => fs::remove_file(path).at(path),
            Ok(_) => Err(Error::Restore(format!("{}: exists", path.display()))),
            Err(_) => Ok(()),
        }
    }

    fn special(&self, entry: &FileEntry, path: &Path) -> Result<()> {
        use nix::sys::stat::{mknod, Mode, SFlag};
        let (kind, rdev) = match entry.kind {
            FileKind::Fifo => (SFlag::S_IFIFO, 0),
            FileKind::CharDevice { rdev } => (SFlag::S_IFCHR, rdev),
            FileKind::BlockDevice { rdev } => (SFlag::S_IFBLK, rdev),
            _ => unreachable!("only special files come here"),
        };
        mknod(
            path,
            kind,
            Mode::from_bits_truncate(entry.mode & 0o7777),
            rdev,
        )
        .map_err(|e| Error::io(path, e.into()))?;
        self.set_metadata(path, entry, None)
    }

    fn queue_file(&mut self, entry: FileEntry, path: PathBuf) -> Result<()> {
        let prepared = self.clear(&path).and_then(|_| {
            let file = File::options()
                .write(true)
                .create_new(true)
                .open(&path)
                .at(&path)?;
            file.set_len(entry.size).at(&path)?;
            let mut locations = Vec::with_capacity(entry.chunks.len());
            for chunk in &entry.chunks {
                let location = self.chunks.get(&chunk.id)?.ok_or_else(|| {
                    Error::Restore(format!(
                        "{}: chunk {} is missing from the repository",
                        path.display(),
                        chunk.id
                    ))
                })?;
                if location.raw_len != chunk.len {
                    return Err(Error::Restore(format!(
                        "{}: chunk {} has the wrong length",
                        path.display(),
                        chunk.id
                    )));
                }
                locations.push(location);
            }
            Ok((file, locations))
        });
        match prepared {
            Ok((file, locations)) => {
                self.batch_bytes += entry.size;
                self.batch.push(Pending {
                    entry,
                    path,
                    file,
                    locations,
                    error: Mutex::new(None),
                });
                if self.batch.len() >= BATCH_FILES || self.batch_bytes >= BATCH_BYTES {
                    self.flush()?;
                }
            }
            Err(e) => {
                let _ = fs::remove_file(&path);
                self.report.errors.push(e.to_string());
            }
        }
        Ok(())
    }

    /// Writes the queued files' chunks in parallel, then their metadata.
    fn flush(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        self.linked_queued.clear();
        let mut tasks = Vec::new();
        for (file_index, pending) in batch.iter().enumerate() {
            let mut offset = 0u64;
            let mut first = 0;
            while first < pending.locations.len() {
                let end = (first + TASK_CHUNKS).min(pending.locations.len());
                tasks.push((file_index, first..end, offset));
                offset += pending.locations[first..end]
                    .iter()
                    .map(|l| l.raw_len as u64)
                    .sum::<u64>();
                first = end;
            }
        }
        tasks.par_iter().for_each(|(file_index, range, offset)| {
            let pending = &batch[*file_index];
            if let Err(e) = self.write_chunks(pending, range.clone(), *offset) {
                pending.error.lock().expect("error slot").get_or_insert(e);
            }
        });
        for pending in batch {
            let failed = pending.error.into_inner().expect("error slot");
            let result = match failed {
                Some(e) => Err(Error::Restore(format!(
                    "{}: {e}; removed",
                    pending.path.display()
                ))),
                None => self.set_metadata(&pending.path, &pending.entry, Some(&pending.file)),
            };
            match result {
                Ok(()) => {
                    self.report.files += 1;
                    self.report.bytes += pending.entry.size;
                    if pending.entry.links > 1 {
                        let inode = pending.file.metadata().at(&pending.path)?.ino();
                        let key = (pending.entry.device, pending.entry.inode);
                        self.linked.insert(key, (pending.path.clone(), inode));
                    }
                }
                Err(e) => {
                    let _ = fs::remove_file(&pending.path);
                    self.report.errors.push(e.to_string());
                }
            }
            self.progress.advance(1, 0);
        }
        Ok(())
    }

    fn write_chunks(
        &self,
        pending: &Pending,
        range: std::ops::Range<usize>,
        mut offset: u64,
    ) -> Result<(), String> {
        for (location, chunk) in pending.locations[range.clone()]
            .iter()
            .zip(&pending.entry.chunks[range])
        {
            let pack_path = self.repo.pack_path(&location.pack);
            let file = self
                .packs
                .get(self.repo, &location.pack)
                .map_err(|e| e.to_string())?;
            let stored = pack::read_stored(&file, &pack_path, location.offset, location.stored_len)
                .map_err(|e| e.to_string())?;
            let raw = pack::decode_chunk(&chunk.id, location.codec, location.raw_len, stored)
                .map_err(|e| format!("{e} (pack {})", location.pack))?;
            // The file was sized up front: runs of zeros stay holes.
            if raw.iter().any(|&b| b != 0) {
                pending
                    .file
                    .write_all_at(&raw, offset)
                    .map_err(|e| format!("write: {e}"))?;
            }
            offset += raw.len() as u64;
            self.progress.advance(0, raw.len() as u64);
        }
        Ok(())
    }

    /// Owner (as root), mode and times. The owner comes first: chown clears set-id bits.
    fn set_metadata(&self, path: &Path, entry: &FileEntry, file: Option<&File>) -> Result<()> {
        let is_symlink = matches!(entry.kind, FileKind::Symlink { .. });
        if self.is_root {
            std::os::unix::fs::lchown(path, Some(entry.uid), Some(entry.gid)).at(path)?;
        }
        // Times by path use utimensat(AT_SYMLINK_NOFOLLOW): no open (which would block
        // on a FIFO) and no following of symlinks.
        let mtime = filetime::FileTime::from_unix_time(entry.mtime.secs, entry.mtime.nanos);
        if is_symlink {
            return filetime::set_symlink_file_times(path, mtime, mtime).at(path);
        }
        if entry.kind == FileKind::Directory && !fs::symlink_metadata(path).at(path)?.is_dir() {
            return Err(Error::Restore(format!(
                "{}: no longer a directory",
                path.display()
            )));
        }
        let permissions = Permissions::from_mode(entry.mode & 0o7777);
        match file {
            Some(file) => {
                file.set_permissions(permissions).at(path)?;
                filetime::set_file_handle_times(file, Some(mtime), Some(mtime)).at(path)
            }
            None => {
                fs::set_permissions(path, permissions).at(path)?;
                filetime::set_symlink_file_times(path, mtime, mtime).at(path)
            }
        }
    }
}
