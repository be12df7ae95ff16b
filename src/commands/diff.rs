//! `diff`: files added, removed and changed between two snapshots.

use super::output::size;
use super::Globals;
use crate::Exit;
use anyhow::Result;
use cairn::diff::Change;
use cairn::manifest::display_path;
use cairn::repo::Repository;
use cairn::storage::LockMode;
use cairn::SnapshotId;
use std::io::Write;

pub fn run(g: &Globals, a: &str, b: &str, out: &mut impl Write) -> Result<Exit> {
    let repo = g.open(LockMode::Shared, "cairn diff")?;
    let (a, b) = (repo.resolve(a)?, repo.resolve(b)?);
    diff(&repo, &a, &b, g.json, out)
}

fn diff(repo: &Repository, a: &SnapshotId, b: &SnapshotId, json: bool, out: &mut impl Write) -> Result<Exit> {
    let mut first = true;
    if json {
        write!(out, "{{\"changes\":[")?;
    }
    let stdout_error = |e: std::io::Error| cairn::Error::io(std::path::Path::new("standard output"), e);
    let summary = cairn::diff::diff(repo, a, b, |change| {
        if json {
            let text = serde_json::to_string(change).map_err(|e| cairn::Error::Invalid(e.to_string()))?;
            write!(out, "{}{text}", if first { "" } else { "," }).map_err(stdout_error)?;
            first = false;
        } else {
            let (mark, sizes) = match change.change {
                Change::Added => ("+", size(change.size_after)),
                Change::Removed => ("-", size(change.size_before)),
                Change::Modified => {
                    ("M", format!("{} -> {}", size(change.size_before), size(change.size_after)))
                }
                Change::Metadata => ("m", size(change.size_after)),
            };
            writeln!(out, "{mark} {}/{}  ({sizes})", change.component, display_path(&change.path))
                .map_err(stdout_error)?;
        }
        Ok(())
    })?;
    if json {
        writeln!(out, "],\"summary\":{}}}", serde_json::to_string(&summary)?)?;
        return Ok(Exit::Success);
    }
    for logs in &summary.logs {
        let show = |r: Option<(u64, u64)>| r.map_or("none".to_string(), |(f, l)| format!("{f}..{l}"));
        writeln!(out, "logs of {}: {} -> {}", logs.component, show(logs.before), show(logs.after))?;
    }
    writeln!(
        out,
        "{} added ({}), {} removed ({}), {} modified ({}), {} metadata only",
        summary.added,
        size(summary.added_bytes),
        summary.removed,
        size(summary.removed_bytes),
        summary.modified,
        size(summary.modified_bytes),
        summary.metadata
    )?;
    Ok(Exit::Success)
}
