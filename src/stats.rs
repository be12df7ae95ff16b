//! `stats`: where the space goes. Logical bytes (what restoring every snapshot would
//! write), unique bytes after deduplication, stored bytes after compression, and per
//! snapshot the bytes only it holds (what forgetting it and pruning would free) and the
//! bytes it added when it was taken. One pass over every manifest, marks on disk.

use crate::error::Result;
use crate::id::SnapshotId;
use crate::marks::ChunkMarks;
use crate::repo::Repository;
use crate::Progress;
use serde::Serialize;

#[derive(Debug, Default, Serialize)]
pub struct RepoStats {
    pub snapshots: u64,
    /// Sum over snapshots of their regular files' sizes.
    pub logical_bytes: u64,
    /// Chunks the snapshots reference, each counted once.
    pub unique_chunks: u64,
    pub unique_bytes: u64,
    /// Their compressed size in packs.
    pub stored_bytes: u64,
    /// Every pack file's size: stored bytes plus chunks no snapshot needs (prune frees
    /// them) plus pack tables.
    pub pack_bytes: u64,
    /// Referenced chunks the index does not know (damage; see `check`).
    pub missing_chunks: u64,
    pub deduplication_ratio: f64,
    pub compression_ratio: f64,
    pub per_snapshot: Vec<SnapshotStats>,
}

#[derive(Debug, Serialize)]
pub struct SnapshotStats {
    pub id: SnapshotId,
    pub time: String,
    pub set: String,
    pub logical_bytes: u64,
    /// Stored bytes of the chunks no other snapshot references.
    pub exclusive_stored_bytes: u64,
    /// New chunk bytes when it was taken (uncompressed, and as stored).
    pub added_bytes: u64,
    pub added_stored_bytes: u64,
}

pub fn stats(repo: &Repository, progress: &dyn Progress) -> Result<RepoStats> {
    let snapshots = repo.snapshots()?.readable;
    let chunks = repo.index.view()?.chunks()?;
    let mut marks = ChunkMarks::create(&repo.scratch_dir())?;
    let mut report = RepoStats { snapshots: snapshots.len() as u64, ..Default::default() };
    for (n, summary) in snapshots.iter().enumerate() {
        marks.add_snapshot(repo, &summary.id, n as u32, &chunks, progress)?;
        report.logical_bytes += summary.trailer.stats.bytes;
        report.per_snapshot.push(SnapshotStats {
            id: summary.id,
            time: summary.header.time.to_rfc3339(),
            set: summary.header.set.clone(),
            logical_bytes: summary.trailer.stats.bytes,
            exclusive_stored_bytes: 0,
            added_bytes: summary.trailer.stats.new_bytes,
            added_stored_bytes: summary.trailer.stats.stored_bytes,
        });
    }
    marks.view()?.for_each(|id, count, last| {
        let Some(at) = chunks.get(&id)? else {
            report.missing_chunks += 1;
            return Ok(());
        };
        report.unique_chunks += 1;
        report.unique_bytes += at.raw_len as u64;
        report.stored_bytes += at.stored_len as u64;
        if count == 1 {
            report.per_snapshot[last as usize].exclusive_stored_bytes += at.stored_len as u64;
        }
        Ok(())
    })?;
    report.pack_bytes = repo.pack_files()?.iter().map(|(_, size)| size).sum();
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    report.deduplication_ratio = ratio(report.logical_bytes, report.unique_bytes);
    report.compression_ratio = ratio(report.unique_bytes, report.stored_bytes);
    Ok(report)
}
