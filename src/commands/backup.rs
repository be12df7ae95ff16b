//! `backup`: the flags (or a plan file) into backup options, and the report.

use super::output::{size, Bar};
use super::{close, Globals};
use crate::cli::BackupArgs;
use crate::Exit;
use anyhow::{bail, Context, Result};
use cairn::backup::{BackupOptions, Input, Mode};
use cairn::manifest::display_path;
use cairn::plan::Plan;
use cairn::repo::Repository;
use cairn::storage::LockMode;
use cairn::stores::StoreType;
use serde_json::json;
use std::io::Write;
use std::time::Instant;

pub fn run(g: &Globals, args: BackupArgs, out: &mut impl Write) -> Result<Exit> {
    let repo = g.open(LockMode::Append, "cairn backup")?;
    let exit = backup(&repo, args, g.json, out)?;
    close(repo);
    Ok(exit)
}

fn backup(repo: &Repository, args: BackupArgs, json: bool, out: &mut impl Write) -> Result<Exit> {
    let mut tags = args.tags;
    let (set, inputs, pre_exec, post_exec) = match &args.plan {
        Some(file) => {
            let plan = Plan::load(file)?;
            tags.extend(plan.tags);
            (plan.set, plan.inputs, plan.pre_exec, plan.post_exec)
        }
        None => {
            let mut inputs = Vec::new();
            for path in &args.paths {
                let absolute = std::path::absolute(path).with_context(|| format!("{}", path.display()))?;
                if let Err(e) = std::fs::symlink_metadata(&absolute) {
                    bail!("{}: {e}", path.display());
                }
                inputs.push(Input::Path {
                    path: absolute,
                    name: None,
                    store_type: None,
                    exclude: Vec::new(),
                });
            }
            for dump in &args.dumps {
                let Some((name, command)) =
                    dump.split_once('=').filter(|(n, c)| !n.is_empty() && !c.is_empty())
                else {
                    bail!("--dump {dump:?}: give NAME=COMMAND (or NAME=- for standard input)");
                };
                inputs.push(Input::Dump { name: name.into(), command: command.into() });
            }
            let set = match (args.set, inputs.as_slice()) {
                (Some(set), _) => set,
                (None, [Input::Path { path, .. }]) => path.display().to_string(),
                (None, [Input::Dump { .. }]) => bail!("a dump needs --set NAME"),
                (None, _) => bail!("a backup of several components needs --set NAME"),
            };
            (set, inputs, args.pre_exec, args.post_exec)
        }
    };
    let options = BackupOptions {
        set,
        tags,
        host: args.host.unwrap_or_else(cairn::hostname),
        mode: match (args.full, args.differential, args.logs_only) {
            (true, _, _) => Mode::Full,
            (_, true, _) => Mode::Differential,
            (_, _, true) => Mode::LogsOnly,
            _ => Mode::Incremental,
        },
        store_type: StoreType::parse(&args.store_type),
        offline: args.offline,
        pre_exec,
        post_exec,
    };
    let started = Instant::now();
    let bar = Bar::new("backing up");
    let report = cairn::backup::backup(repo, &inputs, &options, &bar)?;
    bar.done();
    let seconds = started.elapsed().as_secs_f64();
    let summary = &report.summary;
    let trailer = &summary.trailer;
    let stats = &trailer.stats;
    if options.store_type.is_none() {
        for (path, store_type) in &report.store_types {
            eprintln!(
                "store type: {} (recognised from the contents of {})",
                store_type.name(),
                path.display()
            );
        }
    }
    if summary.components.len() > 1 {
        for c in &summary.components {
            let at =
                if c.header.placement.is_empty() { ".".into() } else { display_path(&c.header.placement) };
            eprintln!("component {} ({}) at {at}", c.header.name, c.header.store_type);
        }
    }
    for e in &trailer.errors {
        eprintln!("error: {}", e.message);
    }
    if json {
        let value = json!({
            "id": report.id(), "set": options.set, "kind": summary.header.kind,
            "parent": summary.header.parent, "complete": trailer.complete,
            "files": stats.files, "bytes": stats.bytes, "bytes_read": stats.bytes_read,
            "new_chunks": stats.new_chunks, "new_bytes": stats.new_bytes, "stored_bytes": stats.stored_bytes,
            "errors": trailer.errors, "seconds": seconds, "hooks": trailer.hooks,
            "components": summary.components, "parent_file_lists_lost": report.parent_lists_lost,
        });
        writeln!(out, "{value}")?;
    } else {
        let kind = serde_json::to_value(summary.header.kind)?;
        let types: Vec<&str> = summary.components.iter().map(|c| c.header.store_type.as_str()).collect();
        writeln!(
            out,
            "snapshot {} saved ({}, {}): {} files, {}; read {}, new {}, stored {} in {:.1}s",
            report.id(),
            kind.as_str().unwrap_or_default(),
            types.join(", "),
            stats.files,
            size(stats.bytes),
            size(stats.bytes_read),
            size(stats.new_bytes),
            size(stats.stored_bytes),
            seconds
        )?;
        if let Some(hooks) = &trailer.hooks {
            let window = hooks.window_end.secs as f64 - hooks.window_start.secs as f64
                + (hooks.window_end.nanos as f64 - hooks.window_start.nanos as f64) / 1e9;
            writeln!(out, "quiesce window: {window:.2}s")?;
        }
    }
    for component in &report.parent_lists_lost {
        eprintln!(
            "cairn: warning: the parent snapshot's file list of {component} is lost from the repository (see check); its files were all read again"
        );
    }
    if let Some(failure) = &report.post_exec_failed {
        eprintln!("cairn: {failure} (snapshot {} was saved)", report.id());
        return Ok(Exit::Failure);
    }
    if trailer.complete {
        Ok(Exit::Success)
    } else {
        eprintln!(
            "cairn: snapshot {} is incomplete: {} files could not be read",
            report.id(),
            trailer.errors.len()
        );
        Ok(Exit::Incomplete)
    }
}
