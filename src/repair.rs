//! `repair index`: a new index from the packs and manifests alone, swapped in whole.
//! The old index is never patched in place; until the rename it stays as it was.

use crate::error::{IoContext, Result};
use crate::fsutil;
use crate::id::PackId;
use crate::index::Index;
use crate::lock::LockMode;
use crate::manifest::{self, ManifestReader};
use crate::pack;
use crate::repo::{self, OpenOptions};
use crate::Progress;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Default, serde::Serialize)]
pub struct RepairReport {
    pub packs: u64,
    pub chunks: u64,
    pub snapshots: u64,
    /// Packs and manifests that could not be read, and why; `check` tells what they hold.
    pub skipped: Vec<String>,
}

/// Indexes `packs` from their tables, a batch per transaction. Deltas wait for their
/// references (index::insert_pack), which may be in any pack: after a first round over
/// every pack, a second indexes the deltas it held back. Returns how many packs were
/// read, and why the others could not be.
pub(crate) fn index_packs(
    index: &Index,
    packs: &[(PackId, PathBuf)],
    progress: &dyn Progress,
) -> Result<(u64, Vec<String>)> {
    let (mut read, mut skipped) = (0, Vec::new());
    for round in 0..2 {
        let mut batch = Vec::new();
        for (id, path) in packs {
            let table = File::open(path).at(path).and_then(|f| {
                let size = f.metadata().at(path)?.len();
                Ok((size, pack::read_table(&f, path)?))
            });
            match table {
                Ok((size, entries)) => {
                    if round == 0 {
                        read += 1;
                        progress.advance(1, size);
                    }
                    batch.push((*id, size, entries));
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

pub fn rebuild_index(root: &Path, lock_wait: Duration, progress: &dyn Progress) -> Result<RepairReport> {
    let _lock = repo::lock(
        root,
        &OpenOptions { mode: LockMode::Exclusive, lock_wait, command: "cairn repair index" },
    )?;
    repo::read_config(root)?;
    let tmp = root.join("tmp");
    fs::create_dir_all(&tmp).at(&tmp)?;
    let temp_index = fsutil::temp_path(&tmp, "index");
    let index = Index::create(&temp_index)?;
    let mut report = RepairReport::default();

    let (packs, skipped) = index_packs(&index, &pack::list_packs(&root.join("packs"))?, progress)?;
    report.packs = packs;
    report.skipped = skipped;

    let snapshots_dir = root.join("snapshots");
    for id in manifest::list_snapshots(&snapshots_dir)? {
        match ManifestReader::open(&snapshots_dir, &id).and_then(|r| r.summary()) {
            Ok(summary) => {
                index.add_snapshot(&summary)?;
                report.snapshots += 1;
            }
            Err(e) => report.skipped.push(e.to_string()),
        }
    }
    report.chunks = index.view()?.chunk_count()?;
    drop(index);
    File::open(&temp_index).and_then(|f| f.sync_all()).at(&temp_index)?;
    let dest = repo::index_path(root);
    fs::rename(&temp_index, &dest).at(&dest)?;
    fsutil::fsync_dir(root)?;
    Ok(report)
}
