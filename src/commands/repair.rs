//! `repair index`: rebuild the index from the packs and manifests.

use super::output::Bar;
use super::Globals;
use crate::Exit;
use anyhow::{Context, Result};
use cairn::reindex;
use cairn::storage::{LocalStorage, Location};
use std::io::Write;

pub fn index(g: &Globals, out: &mut impl Write) -> Result<Exit> {
    let bar = Bar::new("indexing");
    let command = "cairn repair index";
    let report = match g.location()? {
        Location::Local(root) => {
            reindex::rebuild_local_index(&LocalStorage::new(&root), g.lock_wait, command, &bar)?
        }
        other => {
            let cache = g.cache_dir.as_deref().context(
                "a repository on object storage has no index of its own; repair index rebuilds this \
                 client's index cache, and --no-cache leaves none",
            )?;
            reindex::rebuild_cached_index(other.open()?.as_ref(), cache, g.lock_wait, command, &bar)?
        }
    };
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
