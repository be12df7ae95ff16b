//! A repository on disk: layout, opening under the lock, and the snapshot list.
//!
//! ```text
//! REPO/config          format version, id, chunker profiles, compression
//! REPO/packs/xx/<id>   immutable pack files
//! REPO/snapshots/<id>  immutable snapshot manifests
//! REPO/index.redb      cache of the two above
//! REPO/lock            the repository lock
//! REPO/tmp/            files being written; anything here after a crash is garbage
//! ```

use crate::config::Config;
use crate::error::{Error, Hint, IoContext, Result};
use crate::fsutil;
use crate::id::{PackId, SnapshotId};
use crate::index::Index;
use crate::lock::{self, LockMode, RepoLock};
use crate::manifest::{self, ManifestReader, SnapshotKind, SnapshotSummary, Timestamp};
use crate::pack;
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Repository {
    root: PathBuf,
    pub config: Config,
    pub index: Index,
    _lock: RepoLock,
}

#[derive(Debug, Default)]
pub struct SnapshotList {
    pub readable: Vec<SnapshotSummary>,
    /// Manifests that failed to decode or verify; `check` reports them in full.
    pub unreadable: Vec<(SnapshotId, Error)>,
}

/// How to open a repository.
#[derive(Clone, Copy)]
pub struct OpenOptions<'a> {
    pub mode: LockMode,
    /// How long to wait for another process's lock before failing.
    pub lock_wait: Duration,
    /// What this process is doing, shown to processes blocked by its lock.
    pub command: &'a str,
}

pub fn config_path(root: &Path) -> PathBuf {
    root.join("config")
}

pub fn index_path(root: &Path) -> PathBuf {
    root.join("index.redb")
}

/// Creates an empty repository at `root`, which must be missing or an empty directory.
/// The config is written last: a directory without it is not taken for a repository.
pub fn init(root: &Path) -> Result<Config> {
    if root.exists() {
        let mut entries = fs::read_dir(root).at(root)?;
        if entries.next().is_some() {
            return Err(Error::Repository { path: root.into(), what: "exists and is not empty".into() });
        }
    } else {
        fs::create_dir_all(root).at(root)?;
    }
    for dir in ["packs", "snapshots", "tmp"] {
        fs::create_dir(root.join(dir)).at(root.join(dir))?;
    }
    File::create(root.join("lock")).at(root.join("lock"))?;
    drop(Index::create(&index_path(root))?);
    let config = Config::new(random_id(root)?);
    fsutil::write_atomic(&root.join("tmp"), &config_path(root), &config.encode())?;
    fsutil::fsync_dir(root)?;
    Ok(config)
}

fn random_id(root: &Path) -> Result<[u8; 32]> {
    let mut id = [0u8; 32];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut id)).at("/dev/urandom")?;
    // Mixed with the path and time in case /dev/urandom is not what it claims.
    let mut hasher = blake3::Hasher::new();
    hasher.update(&id);
    hasher.update(root.as_os_str().as_encoded_bytes());
    hasher.update(&crate::manifest::Timestamp::now().secs.to_le_bytes());
    Ok(*hasher.finalize().as_bytes())
}

/// Reads and checks the config; the error says when `root` is not a repository.
pub fn read_config(root: &Path) -> Result<Config> {
    let path = config_path(root);
    let bytes = fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::Repository { path: root.into(), what: "is not a cairn repository (no config file)".into() }
                .with_hint(Hint::Init)
        }
        _ => Error::io(&path, e),
    })?;
    Config::decode(&bytes, &path)
}

/// Takes the repository lock before anything else is read.
pub fn lock(root: &Path, options: &OpenOptions) -> Result<RepoLock> {
    if !config_path(root).exists() {
        read_config(root)?;
    }
    lock::acquire(&root.join("lock"), options.mode, options.lock_wait, options.command)
}

impl Repository {
    pub fn open(root: &Path, options: &OpenOptions) -> Result<Repository> {
        let mut lock = lock(root, options)?;
        let config = read_config(root)?;
        let writable = options.mode == LockMode::Exclusive;
        let index = match Index::open(&index_path(root), writable) {
            Err(Error::IndexNeedsRecovery { .. }) => {
                // A writer was killed. Recovering the index needs a writable open, so
                // take the exclusive lock for that moment, then read as asked.
                drop(lock);
                let exclusive = OpenOptions { mode: LockMode::Exclusive, ..*options };
                drop(Repository::open(root, &exclusive)?);
                lock = self::lock(root, options)?;
                Index::open(&index_path(root), writable)?
            }
            // The index is a cache: one an older cairn wrote is made again from the
            // packs and manifests, under the exclusive lock.
            Err(Error::IndexOutdated { .. }) => {
                drop(lock);
                crate::repair::rebuild_index(root, options.lock_wait, &crate::NoProgress)?;
                lock = self::lock(root, options)?;
                Index::open(&index_path(root), writable)?
            }
            other => other?,
        };
        let repo = Repository { root: root.to_path_buf(), config, index, _lock: lock };
        if writable {
            repo.clear_tmp()?;
            repo.sync_index()?;
        }
        Ok(repo)
    }

    /// Ends a session that wrote: compacts the index if this session grew it by half.
    /// Dropping the repository instead is safe, only untidy.
    pub fn close(mut self) -> Result<()> {
        self.index.compact_if_grown()?;
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn packs_dir(&self) -> PathBuf {
        self.root.join("packs")
    }

    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn pack_path(&self, id: &PackId) -> PathBuf {
        pack::pack_path(&self.packs_dir(), id)
    }

    /// Files left in tmp/ by an interrupted process; only called under the exclusive lock.
    /// tmp/ itself is recreated if missing: copies of a repository may lose empty directories.
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

    /// Brings the index up to date with what is on disk: a manifest or pack that an
    /// interrupted writer renamed but did not index, and packs that have disappeared
    /// (their chunks must not be deduplicated against). Damaged files are left alone
    /// here; `check` reports them.
    fn sync_index(&self) -> Result<()> {
        let view = self.index.view()?;
        let indexed_snapshots = view.snapshot_ids()?;
        let on_disk = self.snapshot_ids()?;
        for id in &on_disk {
            if view.snapshot_summary(id)?.is_none() {
                if let Ok(summary) = ManifestReader::open(&self.snapshots_dir(), id).and_then(|r| r.summary())
                {
                    self.index.add_snapshot(&summary)?;
                }
            }
        }
        for id in indexed_snapshots.iter().filter(|id| !on_disk.contains(id)) {
            self.index.remove_snapshot(id)?;
        }
        let indexed_packs: HashSet<PackId> = view.packs()?.into_iter().map(|(id, _, _)| id).collect();
        drop(view);
        let on_disk = self.pack_files()?;
        let present: HashSet<PackId> = on_disk.iter().map(|(id, _)| *id).collect();
        let gone: HashSet<PackId> = indexed_packs.difference(&present).copied().collect();
        // Gone first: a chunk must not keep pointing into a gone pack while a copy on
        // disk waits to be indexed. Dropping a pack also drops the deltas whose
        // reference was in it, wherever they are; so once any pack is gone, every pack
        // is indexed again (a rare path: an index older than the packs).
        let to_index: Vec<(PackId, PathBuf)> = match gone.is_empty() {
            true => on_disk.into_iter().filter(|(id, _)| !indexed_packs.contains(id)).collect(),
            false => {
                self.index.drop_packs(&gone)?;
                on_disk
            }
        };
        if !to_index.is_empty() {
            // Unreadable packs are left alone here; `check` reports them.
            crate::repair::index_packs(&self.index, &to_index, &crate::NoProgress)?;
        }
        Ok(())
    }

    /// Every pack file on disk, by the id its name gives.
    pub fn pack_files(&self) -> Result<Vec<(PackId, PathBuf)>> {
        pack::list_packs(&self.packs_dir())
    }

    /// Every snapshot manifest on disk.
    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>> {
        manifest::list_snapshots(&self.snapshots_dir())
    }

    /// Deletes a snapshot's manifest durably, then its index entry (a crash between
    /// the two leaves an entry that the next writer drops).
    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        let path = manifest::snapshot_path(&self.snapshots_dir(), id);
        std::fs::remove_file(&path).at(&path)?;
        fsutil::fsync_dir(&self.snapshots_dir())?;
        self.index.remove_snapshot(id)
    }

    pub fn summary(&self, id: &SnapshotId) -> Result<SnapshotSummary> {
        match self.index.view()?.snapshot_summary(id)? {
            Some(summary) => Ok(summary),
            None => ManifestReader::open(&self.snapshots_dir(), id)?.summary(),
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
