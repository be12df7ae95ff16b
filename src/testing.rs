//! Helpers for unit tests: repositories in memory, and small trees to back up.

use crate::backup::{self, BackupOptions, Input};
use crate::id::SnapshotId;
use crate::repo::{self, OpenOptions, Repository};
use crate::restore::{self, RestoreOptions, RestoreReport};
use crate::storage::{LockMode, MemoryStorage};
use crate::NoProgress;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A new, empty repository in memory.
pub fn memory_storage() -> MemoryStorage {
    let storage = MemoryStorage::new();
    repo::init(&storage).unwrap();
    storage
}

/// Opens `storage` as a process would, with its index in memory or in `cache`.
pub fn open(storage: &MemoryStorage, mode: LockMode, cache: Option<&Path>) -> Repository {
    let options = OpenOptions {
        mode,
        lock_wait: Duration::ZERO,
        command: "test".into(),
        cache_dir: cache.map(Path::to_path_buf),
    };
    Repository::open(Arc::new(storage.clone()), &options).unwrap()
}

/// A few small files and a larger one of random bytes under `root`; `seed` varies them.
pub fn write_tree(root: &Path, seed: u8) -> PathBuf {
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("a.txt"), format!("alpha {seed}\n")).unwrap();
    fs::write(root.join("sub/b.txt"), "bravo\n".repeat(1000)).unwrap();
    let mut random = vec![0u8; 300 << 10];
    blake3::Hasher::new().update(&[seed]).finalize_xof().fill(&mut random);
    fs::write(root.join("sub/random.bin"), random).unwrap();
    root.to_path_buf()
}

pub fn backup_tree(repo: &Repository, root: &Path) -> SnapshotId {
    let options = BackupOptions::new("tree", "test");
    backup::backup(repo, &[Input::path(root)], &options, &NoProgress).unwrap().id()
}

pub fn restore_to(repo: &Repository, id: &SnapshotId, target: &Path) -> crate::Result<RestoreReport> {
    let options = RestoreOptions { target: target.to_path_buf(), overwrite: false, component: None };
    restore::restore(repo, id, &options, &NoProgress)
}

/// Asserts that the regular files below `a` and `b` have the same names and bytes.
pub fn assert_same_files(a: &Path, b: &Path) {
    let files = |root: &Path| {
        let mut out = Vec::new();
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                match path.is_dir() {
                    true => pending.push(path),
                    false => {
                        out.push((path.strip_prefix(root).unwrap().to_path_buf(), fs::read(&path).unwrap()))
                    }
                }
            }
        }
        out.sort();
        out
    };
    assert!(files(a) == files(b), "{} and {} differ", a.display(), b.display());
}

/// The packs of `repo` that hold file data, not file lists (backups keep the two apart).
pub fn data_packs(repo: &Repository) -> Vec<(crate::id::PackId, u64)> {
    let mut list_chunks = std::collections::HashSet::new();
    for id in repo.snapshot_ids().unwrap() {
        for (_, chunks) in crate::manifest::ManifestReader::file_lists(repo.storage(), &id).unwrap() {
            list_chunks.extend(chunks.into_iter().map(|c| c.id));
        }
    }
    let table = |id: &crate::id::PackId, size| {
        crate::pack::read_table(repo.storage(), &crate::layout::pack(id), size).unwrap()
    };
    let packs = repo.pack_files().unwrap().into_iter();
    packs.filter(|(id, size)| table(id, *size).iter().all(|e| !list_chunks.contains(&e.id))).collect()
}
