//! `forget`: remove the snapshots a retention policy does not keep (and prune after).

use super::output::{print_prune, prune_with_bar};
use super::{close, Globals};
use crate::cli::ForgetArgs;
use crate::Exit;
use anyhow::Result;
use cairn::prune::PruneOptions;
use cairn::repo::Repository;
use cairn::retention::{Policy, Span};
use cairn::storage::LockMode;
use serde_json::json;
use std::io::Write;

pub fn run(g: &Globals, args: ForgetArgs, out: &mut impl Write) -> Result<Exit> {
    let repo = g.open(LockMode::Exclusive, "cairn forget")?;
    let exit = forget(&repo, args, g.json, out)?;
    close(repo);
    Ok(exit)
}

fn forget(repo: &Repository, args: ForgetArgs, json: bool, out: &mut impl Write) -> Result<Exit> {
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
        true => Some(prune_with_bar(repo, &PruneOptions { max_unused_percent: 5.0, dry_run: false })?),
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
