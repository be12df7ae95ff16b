//! `repair index`: rebuild the index from the packs and manifests.

use super::output::Bar;
use super::Globals;
use crate::Exit;
use anyhow::Result;
use cairn::reindex;
use cairn::storage::LocalStorage;
use std::io::Write;

pub fn index(g: &Globals, out: &mut impl Write) -> Result<Exit> {
    let bar = Bar::new("indexing");
    let report = reindex::rebuild_local_index(
        &LocalStorage::new(g.repo_path()?),
        g.lock_wait,
        "cairn repair index",
        &bar,
    )?;
    bar.done();
    for skipped in &report.skipped {
        eprintln!("warning: skipped {skipped}");
    }
    if g.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        let (packs, chunks, snapshots) = (report.packs, report.chunks, report.snapshots);
        writeln!(out, "index rebuilt: {packs} packs, {chunks} chunks, {snapshots} snapshots")?;
    }
    Ok(Exit::Success)
}
