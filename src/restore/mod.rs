//! Restore: a snapshot's entries back onto disk, byte-exact. Every chunk is verified
//! against its id before its bytes are written; nothing is written outside the target
//! and no symlink is ever followed: an entry is created only inside a directory this
//! restore has made or verified, and metadata is set through handles opened without
//! following symlinks.

mod files;
mod until_log;

pub use until_log::{restore_until_log, UntilLog};

use crate::chunk_reader::ChunkReader;
use crate::error::{Error, Hint, IoContext, Result};
use crate::id::SnapshotId;
use crate::manifest::{self, display_path, ComponentHeader, FileEntry, FileKind, ManifestReader, Record};
use crate::repo::Repository;
use crate::Progress;
use files::{Pending, Written};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, Permissions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub struct RestoreOptions {
    pub target: PathBuf,
    /// Restore into a non-empty target, replacing entries of the same name.
    pub overwrite: bool,
    /// Only this component, with its contents directly in the target.
    pub component: Option<String>,
}

#[derive(Debug, Default)]
pub struct RestoreReport {
    pub files: u64,
    pub bytes: u64,
    /// Entries that could not be restored, each with the reason. Damaged files are
    /// removed rather than left with wrong content.
    pub errors: Vec<String>,
}

pub fn restore(
    repo: &Repository,
    id: &SnapshotId,
    options: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    manifest::verify_file(repo.storage(), id)?;
    let summary = repo.summary(id)?;
    let mut reader = ManifestReader::open(repo.storage(), id)?;
    let records = std::iter::from_fn(|| reader.next_record().transpose());
    let Some(name) = &options.component else {
        let headers: Vec<&ComponentHeader> = summary.components.iter().map(|c| &c.header).collect();
        return restore_records(repo, &headers, records, options, progress);
    };
    let header = component_header(&summary, name)?;
    let mut inside = false;
    let only = records.filter(|record| match record {
        Ok(Record::Component(c)) => {
            inside = c.name == *name;
            inside
        }
        Ok(Record::File(_)) => inside,
        _ => true,
    });
    restore_records(repo, &[&header], only, options, progress)
}

fn component_header(summary: &manifest::SnapshotSummary, name: &str) -> Result<ComponentHeader> {
    match summary.components.iter().find(|c| c.header.name == name) {
        Some(c) => Ok(c.header.clone()),
        None => {
            let names: Vec<&str> = summary.components.iter().map(|c| c.header.name.as_str()).collect();
            Err(Error::Restore(format!(
                "snapshot {} has no component {name:?} (it has {})",
                summary.id,
                names.join(", ")
            )))
        }
    }
}

/// `cairn dump`: one regular file of a snapshot (a dump component's, or `path` in a
/// component) to `out`, every chunk verified before it is written. Returns its size.
pub fn dump_file(
    repo: &Repository,
    id: &SnapshotId,
    component: &str,
    path: Option<&[u8]>,
    out: &mut dyn std::io::Write,
) -> Result<u64> {
    let summary = repo.summary(id)?;
    component_header(&summary, component)?;
    let mut reader = ManifestReader::open_component(repo.storage(), id, component)?
        .ok_or_else(|| Error::Restore(format!("snapshot {id} has no component {component:?}")))?;
    // The file asked for, or the component's only regular file.
    let mut found = None;
    while let Some(entry) = reader.next_file()? {
        match path {
            Some(p) if entry.path == p => {
                found = Some(entry);
                break;
            }
            Some(_) => {}
            None if entry.kind != FileKind::Regular => {}
            None if found.is_some() => {
                return Err(Error::Restore(format!(
                    "component {component} holds several files: name one as {component}/PATH"
                )))
            }
            None => found = Some(entry),
        }
    }
    let entry = found.ok_or_else(|| match path {
        Some(p) => Error::Restore(format!("component {component} has no {}", display_path(p))),
        None => Error::Restore(format!("component {component} holds no regular file")),
    })?;
    if entry.kind != FileKind::Regular {
        return Err(Error::Restore(format!("{}: not a regular file", display_path(&entry.path))));
    }
    let reader = ChunkReader::new(repo)?;
    for chunk in &entry.chunks {
        let raw = reader
            .read(&chunk.id)
            .map_err(|e| Error::Restore(format!("{}: {e}", display_path(&entry.path))))?;
        out.write_all(&raw).map_err(|e| Error::io(Path::new("standard output"), e))?;
    }
    Ok(entry.size)
}

/// Restores the entries of `records` (component headers and file entries in manifest
/// order); `components` are the headers of all of them, to place each.
fn restore_records(
    repo: &Repository,
    components: &[&ComponentHeader],
    records: impl Iterator<Item = Result<Record>>,
    options: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    prepare_target(&options.target, options.overwrite)?;
    // A snapshot of several components puts each at its placement; the places of the
    // others are out of bounds for one whose place holds theirs.
    let per_component = components.len() > 1;
    let placed_apart: Vec<Vec<u8>> =
        components.iter().map(|c| c.placement.clone()).filter(|p| !p.is_empty()).collect();
    let mut restorer = Restorer {
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
    };
    for record in records {
        match record? {
            Record::Component(c) if per_component => {
                restorer.enter_component(&options.target, &c.name, &c.placement)?;
                // The places of components inside this one's, relative to it.
                restorer.reserved = placed_apart
                    .iter()
                    .filter(|p| **p != c.placement)
                    .filter_map(|p| match c.placement.is_empty() {
                        true => Some(p.clone()),
                        false => {
                            p.strip_prefix(c.placement.as_slice())?.strip_prefix(b"/").map(<[u8]>::to_vec)
                        }
                    })
                    .collect();
            }
            Record::File(_) if restorer.skipping => {}
            Record::File(entry) => restorer.entry(entry)?,
            _ => {}
        }
    }
    restorer.finish_component()?;
    restorer.apply_directory_metadata();
    Ok(restorer.report)
}

fn prepare_target(target: &Path, overwrite: bool) -> Result<()> {
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => {
            let empty = fs::read_dir(target).at(target)?.next().is_none();
            if !empty && !overwrite {
                let what = format!("target {} is not empty", target.display());
                return Err(Error::Restore(what).with_hint(Hint::Overwrite));
            }
            Ok(())
        }
        Ok(_) => Err(Error::Restore(format!("target {} exists and is not a directory", target.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir_all(target).at(target),
        Err(e) => Err(Error::io(target, e)),
    }
}

/// A hard-linked file already restored: later names link to it if their content is
/// the same (same chunk list).
#[derive(Clone)]
struct Linked {
    path: PathBuf,
    inode_here: u64,
    content: blake3::Hash,
}

fn path_key(path: &[u8]) -> u128 {
    let hash = blake3::hash(path);
    u128::from_le_bytes(hash.as_bytes()[..16].try_into().expect("16 bytes"))
}

fn content_id(entry: &FileEntry) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&entry.size.to_le_bytes());
    for chunk in &entry.chunks {
        hasher.update(&chunk.id.0);
    }
    hasher.finalize()
}

struct Restorer<'a> {
    reader: ChunkReader<'a>,
    overwrite: bool,
    is_root: bool,
    base: PathBuf,
    /// Directories of the current component that this restore made or verified to be
    /// real directories, with their metadata, applied once their contents are in place.
    dirs: HashMap<Vec<u8>, FileEntry>,
    /// Every non-directory path of the current component restored so far, as a
    /// 128-bit hash (small, for trees of millions of files): a manifest that names a
    /// path twice must not make a restore replace what it wrote itself.
    restored: HashSet<u128>,
    /// Set when the current component's directory cannot be made: its entries are skipped.
    skipping: bool,
    /// Whether the current component is placed at the target itself, and the paths that
    /// the components placed there before it restored.
    placed_at_target: bool,
    at_target: HashSet<u128>,
    /// Places of other components inside the current one's: it may hold their
    /// directories (for their metadata) but nothing below them.
    reserved: Vec<Vec<u8>>,
    /// Directories of finished components with their metadata, applied at the very end:
    /// a later component may still create entries in them.
    finished_dirs: Vec<(PathBuf, FileEntry)>,
    /// Hard-linked files restored so far, by (device, inode) at backup time.
    linked: HashMap<(u64, u64), Linked>,
    /// Hard-linked files whose first name is in the current batch.
    linked_queued: HashSet<(u64, u64)>,
    /// Later names of those, linked after the batch is written.
    deferred_links: Vec<(FileEntry, PathBuf)>,
    batch: Vec<Pending>,
    batch_bytes: u64,
    report: RestoreReport,
    progress: &'a dyn Progress,
}

impl Restorer<'_> {
    fn enter_component(&mut self, target: &Path, name: &str, placement: &[u8]) -> Result<()> {
        self.finish_component()?;
        self.reserved.clear();
        self.placed_at_target = placement.is_empty();
        if self.placed_at_target {
            self.restored = std::mem::take(&mut self.at_target);
        }
        self.base = target.to_path_buf();
        let mut made = Ok(());
        for part in placement.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
            self.base.push(OsStr::from_bytes(part));
            made = match fs::symlink_metadata(&self.base) {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => {
                    Err(Error::Restore(format!("{} exists and is not a directory", self.base.display())))
                }
                Err(_) => fs::create_dir(&self.base).at(&self.base),
            };
            if made.is_err() {
                break;
            }
        }
        self.skipping = made.is_err();
        if let Err(e) = made {
            self.report.errors.push(format!("{e}; component {name} not restored"));
        }
        Ok(())
    }

    /// Writes what is queued; directory metadata waits for the end of the restore.
    fn finish_component(&mut self) -> Result<()> {
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

    /// Sets directory metadata: last, because creating their contents changed their
    /// times, and their final modes may forbid writing. Deepest first: a parent's final
    /// mode may forbid reaching its children.
    fn apply_directory_metadata(&mut self) {
        let mut dirs = std::mem::take(&mut self.finished_dirs);
        dirs.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (path, entry) in dirs {
            let applied = File::options()
                .read(true)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_DIRECTORY)
                .open(&path)
                .at(&path)
                .and_then(|dir| self.set_metadata_by_handle(&path, &entry, &dir));
            if let Err(e) = applied {
                self.report.errors.push(e.to_string());
            }
        }
    }

    fn path_of(&self, entry: &FileEntry) -> PathBuf {
        self.base.join(OsStr::from_bytes(&entry.path))
    }

    fn entry(&mut self, entry: FileEntry) -> Result<()> {
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

    fn special(&self, entry: &FileEntry, path: &Path) -> Result<()> {
        use nix::sys::stat::{mknod, Mode, SFlag};
        let (kind, rdev) = match entry.kind {
            FileKind::Fifo => (SFlag::S_IFIFO, 0),
            FileKind::CharDevice { rdev } => (SFlag::S_IFCHR, rdev),
            FileKind::BlockDevice { rdev } => (SFlag::S_IFBLK, rdev),
            _ => unreachable!("only special files come here"),
        };
        mknod(path, kind, Mode::from_bits_truncate(entry.mode & 0o7777), rdev)
            .map_err(|e| Error::io(path, e.into()))?;
        self.set_metadata_by_path(path, entry)
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

    /// Owner (as root), mode and times through an open handle. The owner comes first:
    /// chown clears set-id bits.
    fn set_metadata_by_handle(&self, path: &Path, entry: &FileEntry, file: &File) -> Result<()> {
        if self.is_root {
            std::os::unix::fs::fchown(file, Some(entry.uid), Some(entry.gid)).at(path)?;
        }
        file.set_permissions(Permissions::from_mode(entry.mode & 0o7777)).at(path)?;
        let mtime = filetime::FileTime::from_unix_time(entry.mtime.secs, entry.mtime.nanos);
        filetime::set_file_handle_times(file, Some(mtime), Some(mtime)).at(path)
    }

    /// For entries that cannot be opened (symlinks, FIFOs, devices), just created by
    /// this restore: lchown and utimensat(AT_SYMLINK_NOFOLLOW) never follow a symlink.
    fn set_metadata_by_path(&self, path: &Path, entry: &FileEntry) -> Result<()> {
        if self.is_root {
            std::os::unix::fs::lchown(path, Some(entry.uid), Some(entry.gid)).at(path)?;
        }
        let mtime = filetime::FileTime::from_unix_time(entry.mtime.secs, entry.mtime.nanos);
        if !matches!(entry.kind, FileKind::Symlink { .. }) {
            // chmod follows symlinks: make sure this is still the node we made.
            if fs::symlink_metadata(path).at(path)?.file_type().is_symlink() {
                return Err(Error::Restore(format!(
                    "{}: replaced by a symlink during the restore",
                    path.display()
                )));
            }
            fs::set_permissions(path, Permissions::from_mode(entry.mode & 0o7777)).at(path)?;
        }
        filetime::set_symlink_file_times(path, mtime, mtime).at(path)
    }
}
