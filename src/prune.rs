//! `prune`: gives back the space of chunks no snapshot references. Packs with nothing
//! live are deleted; packs mostly dead are repacked (their live chunks copied, verified,
//! into new packs) until the dead bytes left are within `max_unused` of the repository.
//!
//! Safe to kill at any instant, in this order:
//! 1. mark: every snapshot's chunks (and the references of those stored as deltas), into a scratch file (flat memory); a snapshot that
//!    cannot be read, or a chunk the index lacks, stops prune before anything changes;
//! 2. each new pack is made durable, then indexed with the live chunks moved into it
//!    (the copies in old packs become dead; a pack killed before its commit is an
//!    unindexed extra that the next writer indexes and the next prune removes);
//! 3. one index commit drops the old packs and the chunk locations left in them;
//! 4. new index files are written for the packs that stay, then the old index files
//!    are deleted (killed between the two, both sets name packs that exist);
//! 5. the old pack files are deleted (one left behind is removed by the next prune).
//!
//! A chunk is live in a pack only where the index places it: a second copy elsewhere
//! (left by an interrupted backup) is dead weight.

use crate::chunk_reader::ChunkReader;
use crate::compress::Frame;
use crate::error::{ChunkErrorKind, Error, Hint, Result};
use crate::id::{ChunkId, IndexFileId, PackId};
use crate::index::ChunkTable;
use crate::index_file;
use crate::layout;
use crate::marks::{ChunkMarks, MarksView};
use crate::pack::{self, PackEntry};
use crate::packer::Packer;
use crate::repo::Repository;
use crate::Progress;
use serde::Serialize;
use std::collections::HashSet;

/// New packs' chunk entries held before they are indexed in one commit: about 15 MB.
const INDEX_BATCH: usize = 1 << 18;

pub struct PruneOptions {
    /// Dead bytes that may stay in partly used packs, in percent of the repository.
    pub max_unused_percent: f64,
    pub dry_run: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub snapshots: u64,
    pub packs_before: u64,
    pub bytes_before: u64,
    pub packs_deleted: u64,
    pub packs_repacked: u64,
    pub packs_written: u64,
    /// Live bytes copied into new packs.
    pub bytes_repacked: u64,
    /// Pack bytes after prune (or that would be, with `dry_run`).
    pub bytes_after: u64,
    /// Dead bytes left in partly used packs.
    pub unused_after: u64,
    /// Index files written for the packs that stay (they replace all others).
    pub index_files_written: u64,
    pub dry_run: bool,
}

/// What marking found about one pack.
struct PackUse {
    id: PackId,
    size: u64,
    live_bytes: u64,
    dead_bytes: u64,
}

pub fn prune(repo: &Repository, options: &PruneOptions, progress: &dyn Progress) -> Result<PruneReport> {
    let mut report = PruneReport { dry_run: options.dry_run, ..Default::default() };
    let reader = ChunkReader::new(repo)?;
    let chunks = reader.chunks();
    let mut marks = ChunkMarks::create(&repo.scratch_dir())?;
    report.snapshots = mark(repo, &mut marks, chunks, progress)?;
    let marks = marks.view()?;
    let marked = check_all_indexed(repo, &marks, chunks)?;

    let mut uses = Vec::new();
    let mut found_live = 0u64;
    for (id, size) in repo.pack_files()? {
        let (mut live_bytes, mut dead_bytes) = (0, 0);
        for entry in pack::read_table(repo.storage(), &layout::pack(&id), size)? {
            match is_live(&entry, &id, &marks, chunks)? {
                true => {
                    live_bytes += entry.stored_len as u64;
                    found_live += 1;
                }
                false => dead_bytes += entry.stored_len as u64,
            }
        }
        uses.push(PackUse { id, size, live_bytes, dead_bytes });
    }
    // Each marked chunk is live at the one place the index gives for it. One that no
    // pack table confirms there would count as dead wherever it really is.
    if found_live != marked {
        return Err(Error::Repository {
            path: repo.location(),
            what: format!(
                "{} chunks that snapshots reference are not where the index places them; nothing was removed",
                marked - found_live.min(marked)
            ),
        }
        .with_hint(Hint::CheckThenRepairIndex));
    }
    report.packs_before = uses.len() as u64;
    report.bytes_before = uses.iter().map(|u| u.size).sum();

    let (deleted, mut partial): (Vec<PackUse>, Vec<PackUse>) =
        uses.into_iter().partition(|u| u.live_bytes == 0);
    // Repack the packs with the largest share of dead bytes first, until what is left
    // is within the limit.
    partial.sort_by(|a, b| (b.dead_bytes * a.size).cmp(&(a.dead_bytes * b.size)));
    let kept_bytes: u64 = partial.iter().map(|u| u.size).sum();
    let limit = (kept_bytes as f64 * options.max_unused_percent / 100.0) as u64;
    let mut unused: u64 = partial.iter().map(|u| u.dead_bytes).sum();
    let mut repack = Vec::new();
    let mut keep = Vec::new();
    for u in partial {
        if unused > limit && u.dead_bytes > 0 {
            unused -= u.dead_bytes;
            repack.push(u);
        } else {
            keep.push(u);
        }
    }
    report.packs_deleted = deleted.len() as u64;
    report.packs_repacked = repack.len() as u64;
    report.bytes_repacked = repack.iter().map(|u| u.live_bytes).sum();
    report.unused_after = unused;
    let kept: u64 = keep.iter().map(|u| u.size).sum();
    if options.dry_run {
        report.bytes_after = kept + report.bytes_repacked;
        report.packs_written = report.bytes_repacked.div_ceil(repo.config.pack_target);
        return Ok(report);
    }

    let written = write_new_packs(repo, &repack, &marks, &reader, progress)?;
    report.packs_written = written.ids.len() as u64;
    report.bytes_after = kept + written.bytes;
    // A pack is named by its bytes, and repacking the same chunks gives the same bytes:
    // a pack that a killed prune wrote (and the next writer indexed, so it counted as
    // dead here) can be written again now under the same name. It holds live chunks.
    let old: HashSet<PackId> =
        deleted.iter().chain(&repack).map(|u| u.id).filter(|id| !written.ids.contains(id)).collect();
    drop(reader);
    repo.check_lock()?;
    repo.index.drop_packs(&old)?;
    // The index files are written anew for what stays, and the old ones removed, before
    // any pack goes: no index file then names a pack that is gone.
    let replaced: Vec<IndexFileId> =
        index_file::list(repo.storage())?.into_iter().map(|(id, _)| id).collect();
    report.index_files_written =
        index_file::consolidate(repo.storage(), &repo.index, &replaced)?.len() as u64;
    for id in &old {
        repo.storage().delete(&layout::pack(id))?;
    }
    Ok(report)
}

/// Marks the chunks of every snapshot on disk; returns how many snapshots there are.
fn mark(
    repo: &Repository,
    marks: &mut ChunkMarks,
    chunks: &ChunkTable,
    progress: &dyn Progress,
) -> Result<u64> {
    let ids = repo.snapshot_ids()?;
    for (n, id) in ids.iter().enumerate() {
        marks.add_snapshot(repo, id, n as u32, chunks, progress).map_err(|e| {
            Error::Snapshot(format!(
                "snapshot {id} cannot be read ({e}); prune would not know which chunks it needs, so nothing was removed"
            ))
            .with_hint(Hint::Check)
        })?;
    }
    Ok(ids.len() as u64)
}

/// Every referenced chunk must be where the index says: otherwise the index is not to
/// be trusted with deciding what is dead.
/// Returns how many chunks are marked.
fn check_all_indexed(repo: &Repository, marks: &MarksView, chunks: &ChunkTable) -> Result<u64> {
    let mut missing: Option<ChunkId> = None;
    let (mut count, mut marked) = (0u64, 0u64);
    marks.for_each(|id, _, _| {
        marked += 1;
        if chunks.get(&id)?.is_none() {
            missing.get_or_insert(id);
            count += 1;
        }
        Ok(())
    })?;
    match missing {
        None => Ok(marked),
        Some(id) => Err(Error::Repository {
            path: repo.location(),
            what: format!(
                "{count} chunks that snapshots reference are not in the index (first: {id}); nothing was removed"
            ),
        }
        .with_hint(Hint::CheckThenRepairIndex)),
    }
}

fn is_live(entry: &PackEntry, pack: &PackId, marks: &MarksView, chunks: &ChunkTable) -> Result<bool> {
    if marks.get(&entry.id)?.is_none() {
        return Ok(false);
    }
    Ok(chunks.get(&entry.id)?.is_some_and(|at| at.pack == *pack && at.offset == entry.offset))
}

/// The packs prune wrote.
struct Written {
    ids: HashSet<PackId>,
    bytes: u64,
}

/// Copies the live chunks of `repack` into new durable packs, verifying each, and
/// indexes them a batch at a time (few commits, bounded memory).
fn write_new_packs(
    repo: &Repository,
    repack: &[PackUse],
    marks: &MarksView,
    reader: &ChunkReader,
    progress: &dyn Progress,
) -> Result<Written> {
    let chunks = reader.chunks();
    let mut written = Written { ids: HashSet::new(), bytes: 0 };
    let mut unindexed: Vec<pack::FinishedPack> = Vec::new();
    // Durable packs wait here to be indexed a batch at a time.
    let mut keep = |pack: pack::FinishedPack| -> Result<()> {
        written.ids.insert(pack.id);
        written.bytes += pack.size;
        unindexed.push(pack);
        if unindexed.iter().map(|p| p.entries.len()).sum::<usize>() >= INDEX_BATCH {
            repo.index.add_repacked(&unindexed)?;
            unindexed.clear();
        }
        Ok(())
    };
    let mut packer = Packer::new(repo);
    for u in repack {
        let name = layout::pack(&u.id);
        let path = repo.describe(&name);
        for entry in pack::read_table(repo.storage(), &name, u.size)? {
            if !is_live(&entry, &u.id, marks, chunks)? {
                continue;
            }
            let stored = pack::read_stored(repo.storage(), &name, entry.offset, entry.stored_len)?;
            // Never copy a damaged chunk into a new pack as if it were sound.
            reader.decode(&entry.id, entry.codec, entry.raw_len, stored.clone(), entry.reference).map_err(
                |e| {
                    let e = e.in_pack(u.id, entry.offset);
                    let what = format!("{e}; nothing was removed");
                    match e.kind {
                        ChunkErrorKind::Corrupt { .. } => Error::corrupt(&path, what),
                        _ => Error::Repository { path: path.clone(), what },
                    }
                },
            )?;
            let frame = Frame {
                id: entry.id,
                raw_len: entry.raw_len,
                codec: entry.codec,
                reference: entry.reference,
                bytes: stored,
            };
            let full = packer.add(&frame)?;
            progress.advance(0, entry.stored_len as u64);
            if full {
                packer.finish(&mut keep)?;
            }
        }
    }
    packer.finish(&mut keep)?;
    if !unindexed.is_empty() {
        repo.index.add_repacked(&unindexed)?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LockMode;
    use crate::testing::{assert_same_files, backup_tree, memory_storage, open, restore_to, write_tree};

    #[test]
    fn prune_removes_what_only_forgotten_snapshots_used() {
        let dir = tempfile::tempdir().unwrap();
        let storage = memory_storage();
        let repo = open(&storage, LockMode::Exclusive, None);
        let old = backup_tree(&repo, &write_tree(&dir.path().join("t1"), 1));
        let kept_tree = write_tree(&dir.path().join("t2"), 2);
        let kept = backup_tree(&repo, &kept_tree);
        repo.remove_snapshot(&old).unwrap();
        let bytes_before: u64 = repo.pack_files().unwrap().iter().map(|(_, size)| size).sum();
        let options = PruneOptions { max_unused_percent: 0.0, dry_run: false };
        let report = prune(&repo, &options, &crate::NoProgress).unwrap();
        assert_eq!(report.snapshots, 1);
        assert!(report.bytes_after < bytes_before, "{report:?}");
        drop(repo);

        let repo = open(&storage, LockMode::Shared, None);
        assert!(crate::check::check(&repo, true, &crate::NoProgress).unwrap().is_sound());
        let target = dir.path().join("restored");
        assert!(restore_to(&repo, &kept, &target).unwrap().errors.is_empty());
        assert_same_files(&kept_tree, &target);
    }

    /// A chunk the index places where no pack table has it would count as dead where it
    /// really is: prune refuses rather than delete it.
    #[test]
    fn a_chunk_not_where_the_index_places_it_stops_prune() {
        let dir = tempfile::tempdir().unwrap();
        let storage = memory_storage();
        let repo = open(&storage, LockMode::Exclusive, None);
        backup_tree(&repo, &write_tree(dir.path(), 1));
        let packs_before = repo.pack_files().unwrap().len();
        let (pack, size) = crate::testing::data_packs(&repo)[0];
        let mut entries = pack::read_table(repo.storage(), &layout::pack(&pack), size).unwrap();
        entries[0].offset += 1;
        repo.index.drop_packs(&[pack].into()).unwrap();
        repo.index.add_pack(&pack, size, &entries).unwrap();
        let options = PruneOptions { max_unused_percent: 0.0, dry_run: false };
        let err = prune(&repo, &options, &crate::NoProgress).unwrap_err();
        assert!(err.to_string().contains("not where the index places them"), "{err}");
        assert_eq!(repo.pack_files().unwrap().len(), packs_before, "nothing was removed");
    }
}
