//! The space commands: forget, prune (and their output).

use crate::cli::ForgetArgs;
use crate::commands::{size, Bar};
use crate::Exit;
use anyhow::Result;
use cairn::prune::{self, PruneOptions, PruneReport};
use cairn::repo::Repository;
use cairn::retention::{Policy, Span};
use serde_json::json;
use std::io::Write;

pub fn forget(repo: &Repository, args: ForgetArgs, json: bool, out: &mut impl Write) -> Result<Exit> {
    let policy = Policy {
        last: args.keep_last,
        hourly: args.keep_hourly,
        daily: args.keep_daily,
        weekly: args.keep_weekly,
        monthly: args.keep_monthly,
        yearly: args.keep_yearly,
        within: args.keep_within.as_deref().map(Span::parse).transpose().map_err(anyhow::Error::msg)?,
        tags: args.keep_tags,
    };
    let verdicts = cairn::forget::forget(repo, args.set.as_deref(), &policy, args.dry_run)?;
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
