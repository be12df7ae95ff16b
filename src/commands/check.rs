//! `check`: verify the repository.

use super::advice::advice;
use super::output::{size, Bar};
use super::Globals;
use crate::Exit;
use anyhow::{bail, Result};
use cairn::check;
use cairn::storage::LockMode;
use std::io::Write;

pub fn run(g: &Globals, read_data: bool, out: &mut impl Write) -> Result<Exit> {
    let repo = g.open(LockMode::Shared, "cairn check")?;
    let bar = Bar::new("checking");
    let report = check::check(&repo, read_data, &bar)?;
    bar.done();
    print_check(&report, g.json, out)?;
    if !report.is_sound() {
        bail!("the repository is damaged: {} problems", report.problems.len());
    }
    Ok(Exit::Success)
}

fn print_check(report: &check::CheckReport, json: bool, out: &mut impl Write) -> Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string(report)?)?;
        return Ok(());
    }
    for note in &report.notes {
        writeln!(out, "note: {note}")?;
    }
    for problem in &report.problems {
        match problem.hint {
            Some(hint) => writeln!(out, "error: {} ({})", problem.what, advice(hint))?,
            None => writeln!(out, "error: {}", problem.what)?,
        }
        for affected in &problem.affected {
            writeln!(out, "  affects snapshot {} file {}", &affected.snapshot.to_hex()[..12], affected.path)?;
        }
    }
    let read = if report.bytes_verified > 0 {
        format!(", {} of pack data verified", size(report.bytes_verified))
    } else {
        String::new()
    };
    writeln!(
        out,
        "{} packs, {} chunks, {} snapshots checked{read}: {}",
        report.packs,
        report.chunks,
        report.snapshots,
        if report.is_sound() {
            "no problems found".to_string()
        } else {
            format!("{} problems", report.problems.len())
        }
    )?;
    Ok(())
}
