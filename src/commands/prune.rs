//! `prune`: give back the space of chunks no snapshot references.

use super::output::{print_prune, prune_with_bar};
use super::{close, Globals};
use crate::cli::PruneArgs;
use crate::Exit;
use anyhow::Result;
use cairn::prune::PruneOptions;
use cairn::storage::LockMode;
use std::io::Write;

pub fn run(g: &Globals, args: &PruneArgs, out: &mut impl Write) -> Result<Exit> {
    let repo = g.open(LockMode::Exclusive, "cairn prune")?;
    let options = PruneOptions { max_unused_percent: args.max_unused, dry_run: args.dry_run };
    let report = prune_with_bar(&repo, &options)?;
    match g.json {
        true => writeln!(out, "{}", serde_json::to_string(&report)?)?,
        false => print_prune(&report, out)?,
    }
    close(repo);
    Ok(Exit::Success)
}
