//! `copy`: snapshots of another repository into this one.

use super::output::{size, Bar};
use super::Globals;
use crate::Exit;
use anyhow::Result;
use cairn::storage::{Location, LockMode};
use std::io::Write;

pub fn run(g: &Globals, from: &Location, specs: &[String], out: &mut impl Write) -> Result<Exit> {
    let source = g.open_at(from, LockMode::Shared, "cairn copy (reading)")?;
    let target = g.open(LockMode::Append, "cairn copy")?;
    // Copying "all" while some manifests cannot be read copies the others, then fails
    // naming those: a copy that silently left snapshots behind would look complete.
    let (snapshots, unreadable) = match specs.is_empty() {
        true => {
            let list = source.snapshots()?;
            (list.readable.into_iter().map(|s| s.id).collect(), list.unreadable)
        }
        false => {
            let ids = specs.iter().map(|spec| source.resolve(spec)).collect::<cairn::Result<Vec<_>>>()?;
            (ids, Vec::new())
        }
    };
    let bar = Bar::new("copying");
    let report = cairn::copy::copy(&source, &target, &snapshots, &bar)?;
    bar.done();
    super::close(target);
    if g.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        for id in &report.copied {
            writeln!(out, "copied snapshot {id}")?;
        }
        let (copied, there) = (report.copied.len(), report.already_there.len());
        writeln!(
            out,
            "{copied} snapshots copied ({} chunks, {} sent), {there} already there",
            report.chunks_copied,
            size(report.bytes_copied)
        )?;
    }
    for (id, error) in &unreadable {
        eprintln!("cairn: snapshot {id} was not copied: {error}");
    }
    Ok(if unreadable.is_empty() { Exit::Success } else { Exit::Failure })
}
