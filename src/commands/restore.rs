//! `restore` (a snapshot, the one at a time, or a database up to a log) and `dump`.

use super::output::{size, Bar};
use super::Globals;
use crate::Exit;
use anyhow::{bail, Result};
use cairn::repo::Repository;
use cairn::restore::{RestoreOptions, UntilLog};
use cairn::storage::LockMode;
use cairn::time::Timestamp;
use std::io::Write;
use std::path::PathBuf;

/// The restore command's flags.
pub struct Request {
    pub snapshot: Option<String>,
    pub at: Option<String>,
    pub until_log: Option<u64>,
    pub component: Option<String>,
    pub set: Option<String>,
    pub target: PathBuf,
    pub overwrite: bool,
}

pub fn run(g: &Globals, request: Request, out: &mut impl Write) -> Result<Exit> {
    let Request { snapshot, at, until_log, component, set, target, overwrite } = request;
    let json = g.json;
    let repo = g.open(LockMode::Shared, "cairn restore")?;
    if let Some(log) = until_log {
        let request = UntilLog { set, component, log };
        return restore_until_log(
            &repo,
            &request,
            RestoreOptions { target, overwrite, component: None },
            json,
            out,
        );
    }
    if set.is_some() && at.is_none() {
        bail!("--set chooses among snapshots for --at or --until-log");
    }
    let id = match (snapshot, at) {
        (Some(snapshot), _) => repo.resolve(&snapshot)?,
        (None, Some(text)) => {
            let mut at = Timestamp::parse(&text).map_err(anyhow::Error::msg)?;
            // Listings show seconds: a time given to the second includes all of it.
            if !text.contains('.') {
                at.nanos = 999_999_999;
            }
            repo.resolve_at(set.as_deref(), at)?
        }
        (None, None) => unreachable!("clap requires one"),
    };
    restore(&repo, id, RestoreOptions { target, overwrite, component }, json, out)
}

pub fn dump(g: &Globals, snapshot: &str, what: &str, out: &mut impl Write) -> Result<Exit> {
    let repo = g.open(LockMode::Shared, "cairn dump")?;
    let id = repo.resolve(snapshot)?;
    let (component, path) = match what.split_once('/') {
        Some((component, path)) => (component, Some(path.as_bytes())),
        None => (what, None),
    };
    cairn::restore::dump_file(&repo, &id, component, path, out)?;
    out.flush()?;
    Ok(Exit::Success)
}

fn restore(
    repo: &Repository,
    id: cairn::SnapshotId,
    options: RestoreOptions,
    json: bool,
    out: &mut impl Write,
) -> Result<Exit> {
    let bar = Bar::new("restoring");
    let report = cairn::restore::restore(repo, &id, &options, &bar)?;
    bar.done();
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    if json {
        let value = serde_json::json!({ "id": id, "files": report.files, "bytes": report.bytes, "errors": report.errors });
        writeln!(out, "{value}")?;
    } else {
        let short = &id.to_hex()[..12];
        let (files, bytes, target) = (report.files, size(report.bytes), options.target.display());
        writeln!(out, "restored {files} files, {bytes} from snapshot {short} to {target}")?;
    }
    if !report.errors.is_empty() {
        bail!("{} entries could not be restored", report.errors.len());
    }
    Ok(Exit::Success)
}

fn restore_until_log(
    repo: &Repository,
    request: &UntilLog,
    options: RestoreOptions,
    json: bool,
    out: &mut impl Write,
) -> Result<Exit> {
    let bar = Bar::new("restoring");
    let report = cairn::restore::restore_until_log(repo, request, &options, &bar)?;
    bar.done();
    let restored = &report.restore;
    for e in &restored.errors {
        eprintln!("error: {e}");
    }
    if json {
        let value = serde_json::json!({
            "component": report.component, "until_log": request.log, "data_from": report.data_from,
            "snapshots": report.used, "files": restored.files, "bytes": restored.bytes, "errors": restored.errors,
        });
        writeln!(out, "{value}")?;
    } else {
        let used: Vec<String> = report.used.iter().map(|id| id.to_hex()[..12].to_string()).collect();
        let (files, bytes, target) = (restored.files, size(restored.bytes), options.target.display());
        writeln!(
            out,
            "restored {} up to log {} ({files} files, {bytes}) from snapshots {} to {target}",
            report.component,
            request.log,
            used.join(", ")
        )?;
    }
    if !restored.errors.is_empty() {
        bail!("{} entries could not be restored", restored.errors.len());
    }
    Ok(Exit::Success)
}
