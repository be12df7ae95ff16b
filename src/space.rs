//! The space commands: forget, prune, stats, diff (and their output).

use crate::cli::ForgetArgs;
use crate::commands::{size, Bar};
use crate::Exit;
use anyhow::Result;
use cairn::diff::Change;
use cairn::manifest::display_path;
use cairn::prune::{self, PruneOptions, PruneReport};
use cairn::repo::Repository;
use cairn::retention::{Policy, Span};
use cairn::SnapshotId;
use serde_json::json;
use std::io::Write;

pub fn forget(repo: &Repository, args: ForgetArgs, json: bool, out: &mut impl Write) -> Result<Exit> {
    let mut set = args.set.clone();
    let mut policy = Policy {
        last: args.keep_last,
        hourly: args.keep_hourly,
        daily: args.keep_daily,
        weekly: args.keep_weekly,
        monthly: args.keep_monthly,
        yearly: args.keep_yearly,
        within: args.keep_within.as_deref().map(Span::parse).transpose().map_err(anyhow::Error::msg)?,
        tags: args.keep_tags,
    };
    if let Some(file) = &args.plan {
        let plan = cairn::plan::Plan::load(file)?;
        if !policy.is_empty() {
            anyhow::bail!("--plan gives the retention; leave out the --keep-* options");
        }
        policy = plan.retention.ok_or_else(|| anyhow::anyhow!("{}: no [retention] table", file.display()))?;
        set = Some(plan.set);
    }
    let verdicts = cairn::forget::forget(repo, set.as_deref(), &policy, args.dry_run)?;
    let pruned = match args.prune && !args.dry_run {
        true => Some(run_prune(repo, &PruneOptions { max_unused_percent: 5.0, dry_run: false })?),
        false => None,
    };
    if json {
        writeln!(out, "{}", json!({ "snapshots": verdicts, "dry_run": args.dry_run, "prune": pruned }))?;
        return Ok(Exit::Success);
    }
    let mut set = None;
    for v in &verdicts {
        if set != Some(&v.set) {
            writeln!(out, "set {}:", v.set)?;
            set = Some(&v.set);
        }
        let action = match (v.keep, args.dry_run) {
            (true, _) => "keep  ",
            (false, true) => "would remove",
            (false, false) => "remove",
        };
        writeln!(out, "  {action}  {}  {}  {}", &v.id.to_hex()[..12], v.time, v.reasons.join(", "))?;
    }
    let removed = verdicts.iter().filter(|v| !v.keep).count();
    let verb = if args.dry_run { "would be removed" } else { "removed" };
    writeln!(out, "{} kept, {removed} {verb}", verdicts.len() - removed)?;
    if let Some(report) = &pruned {
        print_prune(report, out)?;
    }
    Ok(Exit::Success)
}

pub fn prune(repo: &Repository, options: &PruneOptions, json: bool, out: &mut impl Write) -> Result<Exit> {
    let report = run_prune(repo, options)?;
    match json {
        true => writeln!(out, "{}", serde_json::to_string(&report)?)?,
        false => print_prune(&report, out)?,
    }
    Ok(Exit::Success)
}

fn run_prune(repo: &Repository, options: &PruneOptions) -> Result<PruneReport> {
    let bar = Bar::new("pruning");
    let report = prune::prune(repo, options, &bar)?;
    bar.done();
    Ok(report)
}

fn print_prune(r: &PruneReport, out: &mut impl Write) -> Result<()> {
    let would = if r.dry_run { "would be " } else { "" };
    writeln!(
        out,
        "{} snapshots; {} packs, {}: {} packs {would}deleted, {} {would}repacked ({} live copied into {} new)",
        r.snapshots,
        r.packs_before,
        size(r.bytes_before),
        r.packs_deleted,
        r.packs_repacked,
        size(r.bytes_repacked),
        r.packs_written
    )?;
    writeln!(
        out,
        "repository after: {} (freed {}); {} unused left in partly used packs",
        size(r.bytes_after),
        size(r.bytes_before.saturating_sub(r.bytes_after)),
        size(r.unused_after)
    )?;
    Ok(())
}

pub fn stats(repo: &Repository, only: Option<SnapshotId>, json: bool, out: &mut impl Write) -> Result<Exit> {
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

pub fn diff(
    repo: &Repository,
    a: &SnapshotId,
    b: &SnapshotId,
    json: bool,
    out: &mut impl Write,
) -> Result<Exit> {
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
