//! The `Restorer`: a snapshot's entries onto disk in manifest order, each checked to lie
//! where it may before anything is created for it.

use super::files::{self, Pending, Written};
use super::target::make_place;
use super::{RestoreOptions, RestoreReport};
use crate::chunk_reader::ChunkReader;
use crate::error::{Error, IoContext, Result};
use crate::manifest::{self, display_path, FileEntry, FileKind};
use crate::repo::Repository;
use crate::Progress;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A hard-linked file already restored: later names link to it if their content is
/// the same (same chunk list).
#[derive(Clone)]
struct Linked {
    path: PathBuf,
    inode_here: u64,
    content: blake3::Hash,
}

/// A manifest path's key in `restored`: 128 bits of its hash.
fn path_key(path: &[u8]) -> u128 {
    let hash = blake3::hash(path);
    u128::from_le_bytes(hash.as_bytes()[..16].try_into().expect("16 bytes"))
}

/// What decides whether two names of an inode may share it: size and chunk list.
fn content_id(entry: &FileEntry) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&entry.size.to_le_bytes());
    for chunk in &entry.chunks {
        hasher.update(&chunk.id.0);
    }
    hasher.finalize()
}

/// Writes one snapshot's entries, component by component, into the target: creates each
/// entry only inside a directory it has made or verified, batches regular files for
/// `files::write_all`, links later names of hard-linked files to the first.
pub(super) struct Restorer<'a> {
    reader: ChunkReader<'a>,
    overwrite: bool,
    pub(super) is_root: bool,
    base: PathBuf,
    /// Directories of the current component that this restore made or verified to be
    /// real directories, with their metadata, applied once their contents are in place.
    dirs: HashMap<Vec<u8>, FileEntry>,
    /// Every non-directory path of the current component restored so far, as a
    /// 128-bit hash (small, for trees of millions of files): a manifest that names a
    /// path twice must not make a restore replace what it wrote itself.
    restored: HashSet<u128>,
    /// Set when the current component's directory cannot be made: its entries are skipped.
    pub(super) skipping: bool,
    /// Whether the current component is placed at the target itself, and the paths that
    /// the components placed there before it restored.
    placed_at_target: bool,
    at_target: HashSet<u128>,
    /// Places of other components inside the current one's: it may hold their
    /// directories (for their metadata) but nothing below them.
    pub(super) reserved: Vec<Vec<u8>>,
    /// Directories of finished components with their metadata, applied at the very end:
    /// a later component may still create entries in them.
    pub(super) finished_dirs: Vec<(PathBuf, FileEntry)>,
    /// Hard-linked files restored so far, by (device, inode) at backup time.
    linked: HashMap<(u64, u64), Linked>,
    /// Hard-linked files whose first name is in the current batch.
    linked_queued: HashSet<(u64, u64)>,
    /// Later names of those, linked after the batch is written.
    deferred_links: Vec<(FileEntry, PathBuf)>,
    batch: Vec<Pending>,
    batch_bytes: u64,
    pub(super) report: RestoreReport,
    progress: &'a dyn Progress,
}

impl<'a> Restorer<'a> {
    pub(super) fn new(
        repo: &'a Repository,
        options: &RestoreOptions,
        progress: &'a dyn Progress,
    ) -> Result<Restorer<'a>> {
        Ok(Restorer {
            reader: ChunkReader::new(repo)?,
            overwrite: options.overwrite,
            is_root: nix::unistd::geteuid().is_root(),
            base: options.target.clone(),
            dirs: HashMap::new(),
            restored: HashSet::new(),
            skipping: false,
            reserved: Vec::new(),
            placed_at_target: false,
            at_target: HashSet::new(),
            finished_dirs: Vec::new(),
            linked: HashMap::new(),
            linked_queued: HashSet::new(),
            deferred_links: Vec::new(),
            batch: Vec::new(),
            batch_bytes: 0,
            report: RestoreReport::default(),
            progress,
        })
    }

    /// Finishes the previous component and descends to this one's place; a place that
    /// cannot be made skips the component (reported), not the restore.
    pub(super) fn enter_component(&mut self, target: &Path, name: &str, placement: &[u8]) -> Result<()> {
        self.finish_component()?;
        self.reserved.clear();
        self.placed_at_target = placement.is_empty();
        if self.placed_at_target {
            self.restored = std::mem::take(&mut self.at_target);
        }
        self.base = target.to_path_buf();
        let made = make_place(&mut self.base, placement);
        self.skipping = made.is_err();
        if let Err(e) = made {
            self.report.errors.push(format!("{e}; component {name} not restored"));
        }
        Ok(())
    }

    /// Writes what is queued; directory metadata waits for the end of the restore.
    pub(super) fn finish_component(&mut self) -> Result<()> {
        self.flush()?;
        for (_, entry) in std::mem::take(&mut self.dirs) {
            self.finished_dirs.push((self.path_of(&entry), entry));
        }
        self.linked.clear();
        // Components placed at the target share it: a path one of them restored is not
        // for another to replace.
        match self.placed_at_target {
            true => self.at_target = std::mem::take(&mut self.restored),
            false => self.restored.clear(),
        }
        Ok(())
    }

    fn path_of(&self, entry: &FileEntry) -> PathBuf {
        self.base.join(OsStr::from_bytes(&entry.path))
    }

    pub(super) fn entry(&mut self, entry: FileEntry) -> Result<()> {
        let path = self.path_of(&entry);
        let key = path_key(&entry.path);
        if let Err(message) = self.check_place(&entry, key) {
            self.report.errors.push(message);
            return Ok(());
        }
        if entry.kind != FileKind::Directory {
            self.restored.insert(key);
        }
        let result = match &entry.kind {
            FileKind::Directory => self.directory(entry, &path),
            FileKind::Regular if entry.links > 1 => return self.hard_linked(entry, path),
            FileKind::Regular => return self.queue_file(entry, path),
            FileKind::Symlink { target } => self.clear(&path).and_then(|_| {
                std::os::unix::fs::symlink(OsStr::from_bytes(target), &path).at(&path)?;
                self.set_metadata_by_path(&path, &entry)
            }),
            FileKind::Fifo | FileKind::CharDevice { .. } | FileKind::BlockDevice { .. } => {
                self.clear(&path).and_then(|_| self.special(&entry, &path))
            }
            FileKind::Socket => Err(Error::Restore(format!(
                "{}: sockets belong to running programs and are not restored",
                path.display()
            ))),
        };
        self.count(result);
        Ok(())
    }

    fn count(&mut self, result: Result<()>) {
        match result {
            Ok(()) => self.report.files += 1,
            Err(e) => self.report.errors.push(e.to_string()),
        }
        self.progress.advance(1, 0);
    }

    /// An entry's parent must be a directory this restore has verified, and the entry
    /// must not replace one.
    fn check_place(&self, entry: &FileEntry, key: u128) -> Result<(), String> {
        let name = || display_path(&entry.path);
        if let Some(slash) = entry.path.iter().rposition(|&b| b == b'/') {
            if !self.dirs.contains_key(&entry.path[..slash]) {
                return Err(format!(
                    "{}: its directory is not in the snapshot before it; not restored",
                    name()
                ));
            }
        }
        if self.dirs.contains_key(&entry.path) || self.restored.contains(&key) {
            return Err(format!("{}: appears twice in the snapshot; not restored again", name()));
        }
        // Another component's place may only be held as a directory (for its metadata).
        let clashes = |place: &Vec<u8>| {
            manifest::inside(&entry.path, place)
                && (entry.path != *place || entry.kind != FileKind::Directory)
        };
        if let Some(other) = self.reserved.iter().find(|place| clashes(place)) {
            return Err(format!(
                "{}: lies where another component goes ({}); not restored",
                name(),
                display_path(other)
            ));
        }
        Ok(())
    }

    /// Directories are created private (0700) and get their own mode at the end.
    fn directory(&mut self, entry: FileEntry, path: &Path) -> Result<()> {
        let create = |path: &Path| fs::DirBuilder::new().mode(0o700).create(path).at(path);
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) if self.overwrite => {
                fs::remove_file(path).at(path)?;
                create(path)?;
            }
            Ok(_) => {
                return Err(Error::Restore(format!("{}: exists and is not a directory", path.display())))
            }
            Err(_) => create(path)?,
        }
        self.dirs.insert(entry.path.clone(), entry);
        Ok(())
    }

    /// Makes room for a non-directory entry; a directory in the way is never removed.
    fn clear(&self, path: &Path) -> Result<()> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {
                Err(Error::Restore(format!("{}: a directory is in the way; not replaced", path.display())))
            }
            Ok(_) if self.overwrite => fs::remove_file(path).at(path),
            Ok(_) => Err(Error::Restore(format!("{}: exists", path.display()))),
            Err(_) => Ok(()),
        }
    }

    /// The first name of a hard-linked file is restored like any file; later names
    /// with the same content become links to it once it is complete and verified.
    fn hard_linked(&mut self, entry: FileEntry, path: PathBuf) -> Result<()> {
        let key = (entry.device, entry.inode);
        if self.linked_queued.contains(&key) {
            self.deferred_links.push((entry, path));
            return Ok(());
        }
        match self.linked.get(&key).cloned() {
            Some(first) if first.content == content_id(&entry) => {
                let result = self.link(&first, &path);
                self.count(result);
                Ok(())
            }
            Some(_) => self.queue_file(entry, path),
            None => {
                self.linked_queued.insert(key);
                self.queue_file(entry, path)
            }
        }
    }

    fn link(&self, first: &Linked, path: &Path) -> Result<()> {
        match fs::symlink_metadata(&first.path) {
            Ok(meta) if meta.is_file() && meta.ino() == first.inode_here => {
                self.clear(path)?;
                fs::hard_link(&first.path, path).at(path)
            }
            _ => Err(Error::Restore(format!(
                "{}: {} (its hard link) was replaced during the restore",
                path.display(),
                first.path.display()
            ))),
        }
    }

    fn queue_file(&mut self, entry: FileEntry, path: PathBuf) -> Result<()> {
        match self.clear(&path).and_then(|_| files::create(entry, path, self.reader.chunks())) {
            Ok(pending) => {
                self.batch_bytes += pending.entry.size;
                self.batch.push(pending);
                if self.batch.len() >= files::BATCH_FILES || self.batch_bytes >= files::BATCH_BYTES {
                    self.flush()?;
                }
            }
            Err(e) => {
                self.report.errors.push(e.to_string());
                self.progress.advance(1, 0);
            }
        }
        Ok(())
    }

    /// Writes the queued files and sets their metadata, then makes the deferred links;
    /// a link whose first name failed queues a copy instead, written by the next round.
    fn flush(&mut self) -> Result<()> {
        loop {
            let batch = std::mem::take(&mut self.batch);
            self.batch_bytes = 0;
            self.linked_queued.clear();
            for written in files::write_all(&self.reader, batch, self.progress) {
                self.finish_file(written);
            }
            let deferred = std::mem::take(&mut self.deferred_links);
            if deferred.is_empty() && self.batch.is_empty() {
                return Ok(());
            }
            for (entry, path) in deferred {
                self.hard_linked(entry, path)?;
            }
        }
    }

    fn finish_file(&mut self, written: Written) {
        let Written { entry, path, file, result } = written;
        let done = result
            .map_err(|e| Error::Restore(format!("{}: {e}; removed", path.display())))
            .and_then(|_| self.set_metadata_by_handle(&path, &entry, &file))
            .and_then(|_| file.metadata().at(&path));
        match done {
            Ok(meta) => {
                self.report.files += 1;
                self.report.bytes += entry.size;
                if entry.links > 1 {
                    let linked = Linked { path, inode_here: meta.ino(), content: content_id(&entry) };
                    self.linked.insert((entry.device, entry.inode), linked);
                }
            }
            Err(e) => {
                let _ = fs::remove_file(&path);
                self.report.errors.push(e.to_string());
            }
        }
        self.progress.advance(1, 0);
    }
}
