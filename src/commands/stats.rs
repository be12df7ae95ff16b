//! `stats`: space accounting for the repository and per snapshot.

use super::output::{size, Bar};
use super::Globals;
use crate::Exit;
use anyhow::Result;
use cairn::repo::Repository;
use cairn::storage::LockMode;
use cairn::SnapshotId;
use std::io::Write;

pub fn run(g: &Globals, snapshot: Option<String>, out: &mut impl Write) -> Result<Exit> {
    let repo = g.open(LockMode::Shared, "cairn stats")?;
    let only = snapshot.map(|s| repo.resolve(&s)).transpose()?;
    stats(&repo, only, g.json, out)
}

fn stats(repo: &Repository, only: Option<SnapshotId>, json: bool, out: &mut impl Write) -> Result<Exit> {
    let bar = Bar::new("counting");
    let mut report = cairn::stats::stats(repo, &bar)?;
    bar.done();
    if let Some(id) = only {
        report.per_snapshot.retain(|s| s.id == id);
    }
    if json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        return Ok(Exit::Success);
    }
    if only.is_none() {
        writeln!(out, "snapshots:            {}", report.snapshots)?;
        writeln!(out, "logical size:         {}", size(report.logical_bytes))?;
        writeln!(
            out,
            "unique (deduplicated): {} in {} chunks (deduplication {:.2}x)",
            size(report.unique_bytes),
            report.unique_chunks,
            report.deduplication_ratio
        )?;
        writeln!(
            out,
            "stored (compressed):  {} (compression {:.2}x); pack files {}",
            size(report.stored_bytes),
            report.compression_ratio,
            size(report.pack_bytes)
        )?;
        if report.missing_chunks > 0 {
            writeln!(out, "missing chunks:       {} (run `cairn check`)", report.missing_chunks)?;
        }
    }
    writeln!(out, "{:<12}  {:<20}  {:>10}  {:>12}  {:>10}  set", "id", "time", "size", "only here", "added")?;
    for s in &report.per_snapshot {
        writeln!(
            out,
            "{:<12}  {:<20}  {:>10}  {:>12}  {:>10}  {}",
            &s.id.to_hex()[..12],
            s.time,
            size(s.logical_bytes),
            size(s.exclusive_stored_bytes),
            size(s.added_stored_bytes),
            s.set
        )?;
    }
    Ok(Exit::Success)
}
