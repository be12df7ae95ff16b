//! Keeping the index cache in step with the repository: a sync when a repository is
//! opened (the packs, index files and manifests that appeared or went since the index
//! last saw them), and `repair index`, a new index made from the packs and manifests alone.

use crate::error::{Error, IoContext, Result};
use crate::id::{ChunkId, IndexFileId, PackId, SnapshotId};
use crate::index::{GonePack, Index};
use crate::index_file;
use crate::layout;
use crate::manifest::ManifestReader;
use crate::pack;
use crate::storage::{self, LockMode, Storage};
use crate::Progress;
use std::collections::{HashMap, HashSet};
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
/// every pack, a second indexes the deltas it held back. With `cover`, the entries are
/// also written as index files, so that nobody needs to read these tables again.
/// Returns how many packs were read, and why the others could not be.
pub(crate) fn index_packs(
    storage: &dyn Storage,
    index: &Index,
    packs: &[(PackId, u64)],
    progress: &dyn Progress,
    mut cover: Option<&mut index_file::Builder>,
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
                        if let Some(builder) = cover.as_deref_mut() {
                            builder.add_whole_pack(id, size, &entries);
                            if builder.is_full() {
                                builder.write(storage)?;
                            }
                        }
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
    if let Some(builder) = cover {
        builder.write(storage)?;
    }
    Ok((read, skipped))
}

/// Indexes what the index files `files` say about the packs that are `present`; returns
/// the packs they name that are not, with the chunks they place there. A damaged file is
/// passed over: the packs it names are indexed from their own tables, and `check`
/// reports it.
fn add_index_files(
    storage: &dyn Storage,
    index: &Index,
    files: &[(IndexFileId, u64)],
    present: &HashSet<PackId>,
) -> Result<Vec<GonePack>> {
    let mut held_back = Vec::new();
    let mut missing: HashMap<PackId, Vec<ChunkId>> = HashMap::new();
    for (id, size) in files {
        let file = match index_file::read(storage, id, *size) {
            Err(Error::Corrupt { .. }) => continue,
            other => other?,
        };
        let (held, gone): (Vec<_>, Vec<_>) =
            file.packs.iter().partition(|(pack, _, _)| present.contains(pack));
        for (pack, _, entries) in gone {
            missing.entry(*pack).or_default().extend(entries.iter().map(|e| e.id));
        }
        held_back.extend(index.add_index_file(id, *size, &held)?);
    }
    index.add_held_back(&held_back)?;
    Ok(missing.into_iter().map(|(id, chunks)| GonePack { id, chunks }).collect())
}

/// Brings `index` up to date with the repository: manifests, index files and packs
/// that an interrupted writer (or another client) added and the index has not seen, and
/// packs and manifests that have gone (their chunks must not be deduplicated against).
/// Damaged files are left alone here; `check` reports them.
///
/// Manifests are listed before index files, and index files before packs: every pack a
/// listed manifest or index file names was durable before it appeared, so the index
/// then holds all they need. Packs that no index file names (written before index files
/// existed, or by a backup killed before it wrote its own) are indexed from their
/// tables. A `writer` is about to deduplicate against the packs it finds, which a killed
/// writer may have named without making durable: it makes them durable first, and
/// writes an index file for them.
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
    let index_files = index_file::list(storage)?;
    let on_disk = list_packs(storage)?;
    let present: HashSet<PackId> = on_disk.iter().map(|(id, _)| *id).collect();
    let mut lost = view.gone_packs(&present)?;
    let seen = view.index_files()?;
    drop(view);
    // Dropping a pack also drops the deltas whose reference was in it, wherever they
    // are; so once any pack is gone, the index is filled again (a rare path: an index
    // older than a prune).
    let unseen: Vec<(IndexFileId, u64)> = match lost.is_empty() {
        true => index_files.into_iter().filter(|(id, _)| !seen.contains(id)).collect(),
        false => {
            index.clear_packs()?;
            index_files
        }
    };
    for gone in add_index_files(storage, index, &unseen, &present)? {
        if !lost.iter().any(|known| known.id == gone.id) {
            lost.push(gone);
        }
    }
    lost.sort_by_key(|gone| gone.id);
    let indexed: HashSet<PackId> = index.view()?.packs()?.into_iter().map(|(id, _)| id).collect();
    let unnamed: Vec<(PackId, u64)> = on_disk.into_iter().filter(|(id, _)| !indexed.contains(id)).collect();
    if !unnamed.is_empty() {
        let mut cover = index_file::Builder::default();
        if writer {
            for (id, _) in &unnamed {
                storage.make_durable(&layout::pack(id))?;
            }
        }
        index_packs(storage, index, &unnamed, &crate::NoProgress, writer.then_some(&mut cover))?;
    }
    Ok(Synced { snapshots: on_disk_snapshots, packs: present, gone_packs: lost })
}

/// What a sync found.
pub(crate) struct Synced {
    /// The manifests listed, in id order: the snapshots the index is complete for.
    pub snapshots: Vec<SnapshotId>,
    /// The packs listed.
    pub packs: HashSet<PackId>,
    /// Packs the index knew, or an index file names, that are gone, with the chunks
    /// they held.
    pub gone_packs: Vec<GonePack>,
}

/// Fills an empty `index` from the packs and manifests alone.
pub fn fill(storage: &dyn Storage, index: &Index, progress: &dyn Progress) -> Result<RepairReport> {
    let mut report = RepairReport::default();
    let (packs, skipped) = index_packs(storage, index, &list_packs(storage)?, progress, None)?;
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
