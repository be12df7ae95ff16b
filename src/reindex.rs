//! Keeping the index cache in step with the repository: a sync when a repository is
//! opened (the packs and manifests that appeared or went since the index last saw
//! them), and `repair index`, a new index made from the packs and manifests alone.

use crate::error::{IoContext, Result};
use crate::id::{PackId, SnapshotId};
use crate::index::{GonePack, Index};
use crate::layout;
use crate::manifest::ManifestReader;
use crate::pack;
use crate::storage::{self, LockMode, Storage};
use crate::Progress;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Default, serde::Serialize)]
pub struct RepairReport {
    pub packs: u64,
    pub chunks: u64,
    pub snapshots: u64,
    /// Packs and manifests that could not be read, and why; `check` tells what they hold.
    pub skipped: Vec<String>,
}

/// Every pack in the repository, by the id its name gives, in id order, with its size.
pub fn list_packs(storage: &dyn Storage) -> Result<Vec<(PackId, u64)>> {
    let mut packs: Vec<(PackId, u64)> = storage
        .list(layout::PACKS)?
        .into_iter()
        .filter_map(|object| Some((layout::pack_id(&object.name)?, object.size)))
        .collect();
    packs.sort();
    Ok(packs)
}

/// Every snapshot manifest in the repository, in id order.
pub fn list_snapshots(storage: &dyn Storage) -> Result<Vec<SnapshotId>> {
    let mut ids: Vec<SnapshotId> = storage
        .list(layout::SNAPSHOTS)?
        .iter()
        .filter_map(|object| layout::snapshot_id(&object.name))
        .collect();
    ids.sort();
    Ok(ids)
}

/// Indexes `packs` from their tables, a batch per transaction. Deltas wait for their
/// references (index::insert_pack), which may be in any pack: after a first round over
/// every pack, a second indexes the deltas it held back. Returns how many packs were
/// read, and why the others could not be.
pub(crate) fn index_packs(
    storage: &dyn Storage,
    index: &Index,
    packs: &[(PackId, u64)],
    progress: &dyn Progress,
) -> Result<(u64, Vec<String>)> {
    let (mut read, mut skipped) = (0, Vec::new());
    for round in 0..2 {
        let mut batch = Vec::new();
        for &(id, size) in packs {
            match pack::read_table(storage, &layout::pack(&id), size) {
                Ok(entries) => {
                    if round == 0 {
                        read += 1;
                        progress.advance(1, size);
                    }
                    batch.push((id, size, entries));
                }
                Err(e) if round == 0 => skipped.push(e.to_string()),
                Err(_) => {}
            }
            if batch.len() >= 256 {
                index.add_packs(&std::mem::take(&mut batch))?;
            }
        }
        index.add_packs(&batch)?;
    }
    Ok((read, skipped))
}

/// Brings `index` up to date with the repository: a manifest or pack that an
/// interrupted writer (or another client) added and the index has not seen, and packs
/// and manifests that have gone (their chunks must not be deduplicated against).
/// Damaged files are left alone here; `check` reports them.
///
/// Manifests are listed before packs: every pack a listed manifest names was durable
/// before the manifest appeared, so the index then holds all they need. A `writer` is
/// about to deduplicate against the packs it finds, which a killed writer may have
/// named without making durable: it makes them durable first.
pub(crate) fn sync(storage: &dyn Storage, index: &Index, writer: bool) -> Result<Synced> {
    let view = index.view()?;
    let indexed_snapshots: HashSet<SnapshotId> = view.snapshot_ids()?.into_iter().collect();
    let on_disk_snapshots = list_snapshots(storage)?;
    let present: HashSet<&SnapshotId> = on_disk_snapshots.iter().collect();
    for id in on_disk_snapshots.iter().filter(|id| !indexed_snapshots.contains(id)) {
        if let Ok(summary) = ManifestReader::outline(storage, id).and_then(|r| r.summary()) {
            index.add_snapshot(&summary)?;
        }
    }
    for id in indexed_snapshots.iter().filter(|id| !present.contains(id)) {
        index.remove_snapshot(id)?;
    }
    let indexed_packs: HashSet<PackId> = view.packs()?.into_iter().map(|(id, _, _)| id).collect();
    let on_disk = list_packs(storage)?;
    let present: HashSet<PackId> = on_disk.iter().map(|(id, _)| *id).collect();
    let lost = view.gone_packs(&present)?;
    drop(view);
    let gone: HashSet<PackId> = lost.iter().map(|g| g.id).collect();
    // Gone first: a chunk must not keep pointing into a gone pack while a copy on
    // disk waits to be indexed. Dropping a pack also drops the deltas whose
    // reference was in it, wherever they are; so once any pack is gone, every pack
    // is indexed again (a rare path: an index older than the packs).
    let to_index: Vec<(PackId, u64)> = match gone.is_empty() {
        true => on_disk.into_iter().filter(|(id, _)| !indexed_packs.contains(id)).collect(),
        false => {
            index.drop_packs(&gone)?;
            on_disk
        }
    };
    if writer {
        for (id, _) in to_index.iter().filter(|(id, _)| !indexed_packs.contains(id)) {
            storage.make_durable(&layout::pack(id))?;
        }
    }
    if !to_index.is_empty() {
        index_packs(storage, index, &to_index, &crate::NoProgress)?;
    }
    Ok(Synced { snapshots: on_disk_snapshots, packs: present, gone_packs: lost })
}

/// What a sync found.
pub(crate) struct Synced {
    /// The manifests listed, in id order: the snapshots the index is complete for.
    pub snapshots: Vec<SnapshotId>,
    /// The packs listed.
    pub packs: HashSet<PackId>,
    /// Packs the index knew that are gone, with the chunks they held.
    pub gone_packs: Vec<GonePack>,
}

/// Fills an empty `index` from the packs and manifests alone.
pub fn fill(storage: &dyn Storage, index: &Index, progress: &dyn Progress) -> Result<RepairReport> {
    let mut report = RepairReport::default();
    let (packs, skipped) = index_packs(storage, index, &list_packs(storage)?, progress)?;
    report.packs = packs;
    report.skipped = skipped;
    for id in list_snapshots(storage)? {
        match ManifestReader::outline(storage, &id).and_then(|r| r.summary()) {
            Ok(summary) => {
                index.add_snapshot(&summary)?;
                report.snapshots += 1;
            }
            Err(e) => report.skipped.push(e.to_string()),
        }
    }
    report.chunks = index.view()?.chunk_count()?;
    Ok(report)
}

/// `repair index` of a repository that is not a local directory: a new index cache of
/// this client, made beside the old one and renamed over it. Readers and backups may
/// go on meanwhile (a cache is this client's alone).
pub fn rebuild_cached_index(
    storage: &dyn Storage,
    cache_dir: &Path,
    lock_wait: Duration,
    command: &str,
    progress: &dyn Progress,
) -> Result<RepairReport> {
    let _lock = storage.lock(LockMode::Shared, lock_wait, command)?;
    let config = crate::config::read(storage)?;
    let path = crate::index::cache_path(cache_dir, &config.repository_id);
    let dir = path.parent().expect("a cache file is in a directory");
    std::fs::create_dir_all(dir).at(dir)?;
    let temp = crate::storage::local::temp_path(dir, "index");
    let index = Index::create(&temp)?;
    let filled = fill(storage, &index, progress);
    drop(index);
    if filled.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    let report = filled?;
    std::fs::rename(&temp, &path).at(&path)?;
    Ok(report)
}

/// `repair index` of a local repository: a new `index.redb` made beside the old one and
/// swapped in whole. The old index is never patched in place; until the rename it
/// stays as it was.
/// `command` is what blocked processes are told holds the lock.
pub fn rebuild_local_index(
    storage: &storage::LocalStorage,
    lock_wait: Duration,
    command: &str,
    progress: &dyn Progress,
) -> Result<RepairReport> {
    let _lock = storage.lock(LockMode::Exclusive, lock_wait, command)?;
    crate::config::read(storage)?;
    let temp = storage.temp_file("index")?;
    let index = Index::create(&temp)?;
    let report = fill(storage, &index, progress)?;
    drop(index);
    storage.swap_in(&temp, &storage.root().join(layout::LOCAL_INDEX))?;
    Ok(report)
}
