//! A repository: its storage, config and lock, and the index cache chosen for this
//! process; and the snapshot list.
//!
//! Which index a process uses: a writer of a local repository its `index.redb`; a
//! reader (which must work on a repository it cannot write, and beside a running
//! backup, which holds that file), and any process using a repository on object
//! storage, an index of its own in the per-user cache directory, or in memory when it
//! has none. Either is brought up to date from the packs and
//! manifests when the repository is opened, so a missing or stale index is rebuilt,
//! never refused.

use crate::config::{self, Config};
use crate::error::{Error, Hint, IoContext, Result};
use crate::id::{PackId, SnapshotId};
use crate::index::{self, GonePack, Index};
use crate::index_file;
use crate::layout;
use crate::manifest::{ManifestReader, SnapshotKind, SnapshotSummary};
use crate::pack::PackEntry;
use crate::reindex;
use crate::storage::{LocalStorage, LockMode, Storage, StorageLock};
use crate::time::Timestamp;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Repository {
    storage: Arc<dyn Storage>,
    pub config: Config,
    pub index: Index,
    mode: LockMode,
    /// Packs an index had seen that were gone when the repository was opened.
    gone_packs: Vec<GonePack>,
    /// The snapshots listed when the repository was opened, and those this process
    /// wrote since: its index is complete for those, not for any that another backup
    /// commits meanwhile (on object storage, backups run side by side).
    snapshots_seen: Mutex<Vec<SnapshotId>>,
    /// Packs this process made durable and indexed that no index file names yet.
    unnamed_packs: Mutex<index_file::Builder>,
    lock: StorageLock,
}

#[derive(Debug, Default)]
pub struct SnapshotList {
    pub readable: Vec<SnapshotSummary>,
    /// Manifests that failed to decode or verify; `check` reports them in full.
    pub unreadable: Vec<(SnapshotId, Error)>,
}

/// How to open a repository.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    pub mode: LockMode,
    /// How long to wait for another process's lock before failing.
    pub lock_wait: Duration,
    /// What this process is doing, shown to processes blocked by its lock.
    pub command: String,
    /// Where this user keeps index caches of repositories it reads (one directory per
    /// repository id); `None` keeps a reader's index in memory.
    pub cache_dir: Option<PathBuf>,
}

/// Creates an empty repository in the directory `root`, which must be missing or empty.
/// The config is written last: a directory without it is not taken for a repository.
pub fn init_local(root: &Path) -> Result<Config> {
    if root.exists() {
        let mut entries = fs::read_dir(root).at(root)?;
        if entries.next().is_some() {
            return Err(Error::Repository { path: root.into(), what: "exists and is not empty".into() });
        }
    } else {
        fs::create_dir_all(root).at(root)?;
    }
    let storage = LocalStorage::new(root);
    storage.create_dirs()?;
    drop(Index::create(&root.join(layout::LOCAL_INDEX))?);
    init(&storage)
}

/// Creates an empty repository in `storage` (a bucket prefix), which must hold no
/// objects yet.
pub fn init_empty(storage: &dyn Storage) -> Result<Config> {
    if !storage.list("")?.is_empty() {
        let path = storage.describe(layout::CONFIG).parent().map(Path::to_path_buf).unwrap_or_default();
        return Err(Error::Repository { path, what: "exists and is not empty".into() });
    }
    init(storage)
}

/// Writes the config of a new repository into `storage`.
pub fn init(storage: &dyn Storage) -> Result<Config> {
    let config = Config::new(random_id(storage)?);
    storage.put(layout::CONFIG, &config.encode())?;
    Ok(config)
}

fn random_id(storage: &dyn Storage) -> Result<[u8; 32]> {
    let mut id = [0u8; 32];
    crate::random_bytes(&mut id)?;
    // Mixed with the place and time in case /dev/urandom is not what it claims.
    let mut hasher = blake3::Hasher::new();
    hasher.update(&id);
    hasher.update(storage.describe(layout::CONFIG).as_os_str().as_encoded_bytes());
    hasher.update(&Timestamp::now().secs.to_le_bytes());
    Ok(*hasher.finalize().as_bytes())
}

impl Repository {
    /// Opens the repository in the local directory `root`.
    pub fn open_local(root: &Path, options: &OpenOptions) -> Result<Repository> {
        Repository::open(Arc::new(LocalStorage::new(root)), options)
    }

    /// Opens a repository: config first (so that a directory that is none is left
    /// untouched), then the lock, then the index, brought up to date.
    pub fn open(storage: Arc<dyn Storage>, options: &OpenOptions) -> Result<Repository> {
        config::read(storage.as_ref())?;
        let lock = storage.lock(options.mode, options.lock_wait, &options.command)?;
        let config = config::read(storage.as_ref())?;
        let index = match (options.mode.writes(), storage.local_root()) {
            (true, Some(root)) => local_index(&root.join(layout::LOCAL_INDEX), WAIT_FOR_READERS)?,
            _ => cached_index(&config, options.cache_dir.as_deref())?,
        };
        let synced = reindex::sync(storage.as_ref(), &index, options.mode.writes())?;
        let mut gone_packs = synced.gone_packs;
        if let (false, Some(root)) = (options.mode.writes(), storage.local_root()) {
            gone_packs.extend(gone_since_last_write(&root, &synced.packs, &gone_packs));
        }
        Ok(Repository {
            storage,
            config,
            index,
            mode: options.mode,
            gone_packs,
            snapshots_seen: Mutex::new(synced.snapshots),
            unnamed_packs: Mutex::default(),
            lock,
        })
    }

    /// Opens a repository with an index of the caller's (crash tests give one whose
    /// file they control), brought up to date.
    pub fn open_with_index(storage: Arc<dyn Storage>, mode: LockMode, index: Index) -> Result<Repository> {
        let lock = storage.lock(mode, Duration::ZERO, "cairn")?;
        let config = config::read(storage.as_ref())?;
        let synced = reindex::sync(storage.as_ref(), &index, mode.writes())?;
        Ok(Repository {
            storage,
            config,
            index,
            mode,
            gone_packs: synced.gone_packs,
            snapshots_seen: Mutex::new(synced.snapshots),
            unnamed_packs: Mutex::default(),
            lock,
        })
    }

    /// Ends a session that wrote: compacts the index if this session grew it by half.
    /// Dropping the repository instead is safe, only untidy.
    pub fn close(mut self) -> Result<()> {
        self.index.compact_if_grown()?;
        Ok(())
    }

    /// Packs that have disappeared since an index saw them, with the chunks they held:
    /// damage that `check` reports.
    pub fn gone_packs(&self) -> &[GonePack] {
        &self.gone_packs
    }

    /// Fails if this process's lock may no longer bind others (see `HeldLock`): called
    /// before a write that makes earlier ones count (a manifest, prune's deletions).
    pub fn check_lock(&self) -> Result<()> {
        self.lock.still_held()
    }

    pub fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    /// Where object `name` is, for messages.
    pub fn describe(&self, name: &str) -> PathBuf {
        self.storage.describe(name)
    }

    /// The repository itself, for messages.
    pub fn location(&self) -> PathBuf {
        let config = self.describe(layout::CONFIG);
        config.parent().map(Path::to_path_buf).unwrap_or(config)
    }

    /// Where scratch files of this process go (record spools, chunk marks): never into
    /// a repository this process only reads.
    pub fn scratch_dir(&self) -> PathBuf {
        match (self.mode.writes(), self.storage.local_root()) {
            (true, Some(root)) => root.join(layout::LOCAL_TMP),
            _ => std::env::temp_dir(),
        }
    }

    /// Every pack in the repository with its size, in id order.
    pub fn pack_files(&self) -> Result<Vec<(PackId, u64)>> {
        reindex::list_packs(self.storage())
    }

    /// Every snapshot manifest in the repository, in id order. An exclusive holder
    /// (prune, forget) lists them now: nothing else adds or removes snapshots while it
    /// holds its lock. Others get those there when they opened the repository, which
    /// their index is complete for, and those they wrote since.
    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>> {
        match self.mode {
            LockMode::Exclusive => reindex::list_snapshots(self.storage()),
            _ => Ok(self.snapshots_seen.lock().expect("snapshot list").clone()),
        }
    }

    /// Records a pack this process has made durable: in the index now, in an index file
    /// once `write_index_file` is called or enough packs have gathered.
    pub(crate) fn add_pack(&self, pack: &PackId, size: u64, entries: &[PackEntry]) -> Result<()> {
        self.index.add_pack(pack, size, entries)?;
        let mut unnamed = self.unnamed_packs.lock().expect("unnamed packs");
        unnamed.add_whole_pack(*pack, size, entries);
        match unnamed.is_full() {
            true => self.write_unnamed(&mut unnamed),
            false => Ok(()),
        }
    }

    /// Writes the packs added since the last index file into a new one: before a
    /// manifest, so that a client that reads the snapshot learns its packs from it.
    pub(crate) fn write_index_file(&self) -> Result<()> {
        self.write_unnamed(&mut self.unnamed_packs.lock().expect("unnamed packs"))
    }

    fn write_unnamed(&self, unnamed: &mut index_file::Builder) -> Result<()> {
        if let Some((id, size)) = unnamed.write(self.storage())? {
            self.index.add_index_file(&id, size, &[])?;
        }
        Ok(())
    }

    /// Records a snapshot this process has just written (its manifest is durable).
    pub(crate) fn add_snapshot(&self, summary: &SnapshotSummary) -> Result<()> {
        self.index.add_snapshot(summary)?;
        let mut seen = self.snapshots_seen.lock().expect("snapshot list");
        seen.push(summary.id);
        seen.sort();
        Ok(())
    }

    /// Deletes a snapshot's manifest durably, then its index entry (a crash between
    /// the two leaves an entry that the next opening drops).
    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.check_lock()?;
        self.storage.delete(&layout::snapshot(id))?;
        self.index.remove_snapshot(id)
    }

    pub fn summary(&self, id: &SnapshotId) -> Result<SnapshotSummary> {
        match self.index.view()?.snapshot_summary(id)? {
            Some(summary) => Ok(summary),
            None => ManifestReader::outline(self.storage(), id)?.summary(),
        }
    }

    /// All readable snapshots, oldest first, and the manifests that cannot be read.
    /// The manifests on disk are the truth; the index only spares reading them.
    pub fn snapshots(&self) -> Result<SnapshotList> {
        let mut list = SnapshotList::default();
        for id in self.snapshot_ids()? {
            match self.summary(&id) {
                Ok(summary) => list.readable.push(summary),
                Err(e) => list.unreadable.push((id, e)),
            }
        }
        list.readable.sort_by_key(|s| (s.header.time, s.id));
        Ok(list)
    }

    /// The newest readable snapshot of `set`, the parent of an incremental backup.
    pub fn latest_in_set(&self, set: &str) -> Result<Option<SnapshotSummary>> {
        Ok(self.snapshots()?.readable.into_iter().rfind(|s| s.header.set == set))
    }

    /// The readable snapshots of `set` (or of the only set there is), oldest first, with
    /// the set's name.
    pub fn snapshots_of_set(&self, set: Option<&str>) -> Result<(String, Vec<SnapshotSummary>)> {
        let snapshots = self.snapshots()?.readable;
        let set = which_set(&snapshots, set)?;
        Ok((set.clone(), snapshots.into_iter().filter(|s| s.header.set == set).collect()))
    }

    /// The newest readable full snapshot of `set`: a differential's parent.
    pub fn latest_full_in_set(&self, set: &str) -> Result<Option<SnapshotSummary>> {
        let snapshots = self.snapshots()?.readable;
        Ok(snapshots.into_iter().rfind(|s| s.header.set == set && s.header.kind == SnapshotKind::Full))
    }

    /// The newest readable snapshot taken at or before `at`, of `set` or, without one,
    /// of the only set there is.
    pub fn resolve_at(&self, set: Option<&str>, at: Timestamp) -> Result<SnapshotId> {
        let snapshots = self.snapshots()?.readable;
        let set = which_set(&snapshots, set)?;
        snapshots.iter().rfind(|s| s.header.set == set && s.header.time <= at).map(|s| s.id).ok_or_else(
            || Error::Snapshot(format!("set {set:?} has no snapshot at or before {}", at.to_rfc3339())),
        )
    }

    /// A full id, a unique prefix of one, or `latest`.
    pub fn resolve(&self, spec: &str) -> Result<SnapshotId> {
        if spec == "latest" {
            return self
                .snapshots()?
                .readable
                .last()
                .map(|s| s.id)
                .ok_or_else(|| Error::Snapshot("the repository has no snapshots".into()));
        }
        if spec.is_empty() || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Snapshot(format!("{spec:?} is not a snapshot id, prefix or `latest`")));
        }
        let spec_lower = spec.to_ascii_lowercase();
        let matches: Vec<SnapshotId> =
            self.snapshot_ids()?.into_iter().filter(|id| id.to_hex().starts_with(&spec_lower)).collect();
        match matches.as_slice() {
            [id] => Ok(*id),
            [] => Err(Error::Snapshot(format!("no snapshot matches {spec:?}"))),
            _ => Err(Error::Snapshot(format!(
                "{spec:?} matches {} snapshots; give more digits",
                matches.len()
            ))),
        }
    }
}

/// `set`, or without one the only set the snapshots belong to.
fn which_set(snapshots: &[SnapshotSummary], set: Option<&str>) -> Result<String> {
    if let Some(set) = set {
        return Ok(set.to_string());
    }
    let sets: std::collections::BTreeSet<&str> = snapshots.iter().map(|s| s.header.set.as_str()).collect();
    match sets.len() {
        0 => Err(Error::Snapshot("the repository has no snapshots".into())),
        1 => Ok(sets.into_iter().next().expect("one set").to_string()),
        n => Err(Error::Snapshot(format!("the repository holds {n} sets")).with_hint(Hint::ChooseSet)),
    }
}

/// How long a writer waits for readers looking into its index file (they hold it for
/// the moment it takes to list its packs).
const WAIT_FOR_READERS: Duration = Duration::from_secs(10);

/// A writer's index: the local repository's own file, made and filled when missing
/// (it is a cache), and made again when an older cairn wrote it.
fn local_index(path: &Path, wait: Duration) -> Result<Index> {
    if !path.exists() {
        return Index::create(path);
    }
    match Index::open(path, wait) {
        Err(Error::IndexOutdated { .. }) => {
            fs::remove_file(path).at(path)?;
            Index::create(path)
        }
        other => other,
    }
}

/// A reader's index: its own copy in the cache directory, made again when it is
/// damaged (it is this user's cache, nobody else's); in memory when there is no cache
/// directory, it cannot be written, or another process of this user has it open.
fn cached_index(config: &Config, cache_dir: Option<&Path>) -> Result<Index> {
    let Some(cache_dir) = cache_dir else { return Index::in_memory() };
    let path = index::cache_path(cache_dir, &config.repository_id);
    let dir = path.parent().expect("a cache file is in a directory").to_path_buf();
    let opened = fs::create_dir_all(&dir).at(&dir).and_then(|_| match local_index(&path, Duration::ZERO) {
        Err(e) if matches!(e.unhinted(), Error::Index { .. }) => {
            fs::remove_file(&path).at(&path).and_then(|_| Index::create(&path))
        }
        other => other,
    });
    opened.or_else(|_| Index::in_memory())
}

/// Packs that the writers' own index of a local repository places chunks in and that
/// are not `present`, beyond those in `known`: a reader with a new cache learns what a
/// writer saw. Best effort: the file may be missing, held by a writer or damaged, and
/// then it tells nothing.
fn gone_since_last_write(root: &Path, present: &HashSet<PackId>, known: &[GonePack]) -> Vec<GonePack> {
    let path = root.join(layout::LOCAL_INDEX);
    if !path.exists() {
        return Vec::new();
    }
    let gone = index::gone_packs_in_file(&path, present).unwrap_or_default();
    gone.into_iter().filter(|g| !known.iter().any(|k| k.id == g.id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;
    use crate::testing::{backup_tree, memory_storage, open, write_tree};

    #[test]
    fn a_storage_without_config_is_no_repository() {
        let options = OpenOptions {
            mode: LockMode::Shared,
            lock_wait: Duration::ZERO,
            command: "test".into(),
            cache_dir: None,
        };
        let err = Repository::open(Arc::new(MemoryStorage::new()), &options).err().unwrap();
        assert!(err.to_string().contains("is not a cairn repository"), "{err}");
        assert_eq!(err.hint(), Some(Hint::Init));
    }

    #[test]
    fn snapshots_resolve_by_prefix_and_latest_and_a_reader_keeps_to_what_it_saw() {
        let dir = tempfile::tempdir().unwrap();
        let storage = memory_storage();
        let writer = open(&storage, LockMode::Append, None);
        let first = backup_tree(&writer, &write_tree(&dir.path().join("t"), 1));
        let reader = open(&storage, LockMode::Shared, None);
        let second = backup_tree(&writer, &write_tree(&dir.path().join("t"), 2));
        // A reader opened before the second snapshot does not see it (its index lacks
        // the new packs), and checks sound; a new reader finds it.
        assert_eq!(reader.resolve("latest").unwrap(), first);
        assert!(crate::check::check(&reader, true, &crate::NoProgress).unwrap().is_sound());
        assert_eq!(open(&storage, LockMode::Shared, None).resolve("latest").unwrap(), second);
        assert_eq!(writer.resolve(&first.to_hex()[..10]).unwrap(), first);
        assert!(writer.resolve("zz").is_err());
        assert_eq!(writer.snapshots().unwrap().readable.len(), 2);
    }

    #[test]
    fn a_reader_writes_nothing_into_the_repository() {
        let dir = tempfile::tempdir().unwrap();
        let storage = memory_storage();
        backup_tree(&open(&storage, LockMode::Append, None), &write_tree(&dir.path().join("t"), 1));
        let before = storage.list("").unwrap();
        let reader = open(&storage, LockMode::Shared, Some(&dir.path().join("cache")));
        crate::check::check(&reader, true, &crate::NoProgress).unwrap();
        assert_eq!(storage.list("").unwrap(), before);
    }

    #[test]
    fn a_damaged_cache_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let storage = memory_storage();
        let id = backup_tree(&open(&storage, LockMode::Append, None), &write_tree(&dir.path().join("t"), 1));
        let config = config::read(&storage).unwrap();
        let cache = dir.path().join("cache");
        let file = cache.join(crate::id::to_hex(&config.repository_id)).join(layout::LOCAL_INDEX);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, b"not a redb database").unwrap();
        assert_eq!(open(&storage, LockMode::Shared, Some(&cache)).resolve("latest").unwrap(), id);
        assert!(Index::open(&file, Duration::ZERO).is_ok(), "the cache holds an index again");
    }
}
