//! One function per command: validated options -> library call -> output -> exit code.

use crate::cli::{BackupArgs, Cli, Command, RepairWhat};
use crate::space;
use crate::Exit;
use anyhow::{bail, Context, Result};
use cairn::backup::{BackupOptions, Input, Mode};
use cairn::lock::LockMode;
use cairn::manifest::{display_path, FileKind, ManifestReader, Record, SnapshotSummary};
use cairn::plan::Plan;
use cairn::prune::PruneOptions;
use cairn::repo::{self, OpenOptions, Repository};
use cairn::restore::RestoreOptions;
use cairn::restore::UntilLog;
use cairn::stores::StoreType;
use cairn::time::Timestamp;
use cairn::{check, repair, Progress};
use serde_json::json;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What every command needs from the global flags.
struct Globals {
    repo: Option<PathBuf>,
    json: bool,
    lock_wait: Duration,
}

impl Globals {
    fn repo_path(&self) -> Result<&Path> {
        self.repo.as_deref().context("no repository given: use -r REPO or set CAIRN_REPO")
    }

    fn open(&self, mode: LockMode, command: &str) -> Result<Repository> {
        let options = OpenOptions { mode, lock_wait: self.lock_wait, command };
        Ok(Repository::open(self.repo_path()?, &options)?)
    }
}

/// Ends a session that wrote. What it tidies is a cache: a failure there is reported,
/// but does not turn a finished backup or prune into a failed one.
fn close(repo: Repository) {
    if let Err(e) = repo.close() {
        eprintln!("warning: {e}");
    }
}

pub fn run(cli: Cli) -> Result<Exit> {
    let g = Globals { repo: cli.repo, json: cli.json, lock_wait: Duration::from_secs(cli.retry_lock) };
    let json = g.json;
    let mut out = io::stdout().lock();
    match cli.command {
        Command::Init => init(&g, &mut out),
        Command::Backup(args) => {
            let repo = g.open(LockMode::Exclusive, "cairn backup")?;
            let exit = backup(&repo, args, json, &mut out)?;
            close(repo);
            Ok(exit)
        }
        Command::Snapshots { set } => {
            let list = g.open(LockMode::Shared, "cairn snapshots")?.snapshots()?;
            for (id, e) in &list.unreadable {
                eprintln!("warning: snapshot {id} is unreadable: {e}");
            }
            let in_set = |s: &SnapshotSummary| set.as_ref().is_none_or(|set| &s.header.set == set);
            let snapshots: Vec<SnapshotSummary> = list.readable.into_iter().filter(in_set).collect();
            print_snapshots(&snapshots, json, &mut out)?;
            Ok(Exit::Success)
        }
        Command::Ls { snapshot } => {
            let repo = g.open(LockMode::Shared, "cairn ls")?;
            ls(&repo, &repo.resolve(&snapshot)?, json, &mut out)?;
            Ok(Exit::Success)
        }
        Command::Cat { snapshot } => {
            let repo = g.open(LockMode::Shared, "cairn cat")?;
            cat(&repo, &repo.resolve(&snapshot)?, &mut out)?;
            Ok(Exit::Success)
        }
        Command::Restore { snapshot, at, until_log, component, set, target, overwrite } => {
            let repo = g.open(LockMode::Shared, "cairn restore")?;
            if let Some(log) = until_log {
                let request = UntilLog { set, component, log };
                return restore_until_log(
                    &repo,
                    &request,
                    RestoreOptions { target, overwrite, component: None },
                    json,
                    &mut out,
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
            restore(&repo, id, RestoreOptions { target, overwrite, component }, json, &mut out)
        }
        Command::Forget(args) => {
            let repo = g.open(LockMode::Exclusive, "cairn forget")?;
            let exit = space::forget(&repo, args, json, &mut out)?;
            close(repo);
            Ok(exit)
        }
        Command::Prune(args) => {
            let repo = g.open(LockMode::Exclusive, "cairn prune")?;
            let options = PruneOptions { max_unused_percent: args.max_unused, dry_run: args.dry_run };
            let exit = space::prune(&repo, &options, json, &mut out)?;
            close(repo);
            Ok(exit)
        }
        Command::Dump { snapshot, what } => {
            let repo = g.open(LockMode::Shared, "cairn dump")?;
            let id = repo.resolve(&snapshot)?;
            let (component, path) = match what.split_once('/') {
                Some((component, path)) => (component, Some(path.as_bytes())),
                None => (what.as_str(), None),
            };
            cairn::restore::dump_file(&repo, &id, component, path, &mut out)?;
            out.flush()?;
            Ok(Exit::Success)
        }
        Command::Stats { snapshot } => {
            let repo = g.open(LockMode::Shared, "cairn stats")?;
            let only = snapshot.map(|s| repo.resolve(&s)).transpose()?;
            space::stats(&repo, only, json, &mut out)
        }
        Command::Diff { a, b } => {
            let repo = g.open(LockMode::Shared, "cairn diff")?;
            let (a, b) = (repo.resolve(&a)?, repo.resolve(&b)?);
            space::diff(&repo, &a, &b, json, &mut out)
        }
        Command::Check { read_data } => {
            let repo = g.open(LockMode::Shared, "cairn check")?;
            let bar = Bar::new("checking");
            let report = check::check(&repo, read_data, &bar)?;
            bar.done();
            print_check(&report, json, &mut out)?;
            if !report.is_sound() {
                bail!("the repository is damaged: {} problems", report.problems.len());
            }
            Ok(Exit::Success)
        }
        Command::Repair { what: RepairWhat::Index } => repair_index(&g, &mut out),
    }
}

fn init(g: &Globals, out: &mut impl Write) -> Result<Exit> {
    let path = g.repo_path()?;
    let config = repo::init(path)?;
    let id = cairn::id::to_hex(&config.repository_id);
    if g.json {
        writeln!(out, "{}", json!({ "path": path, "id": id }))?;
    } else {
        writeln!(out, "created cairn repository {} at {}", &id[..12], path.display())?;
    }
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
        let value =
            json!({ "id": id, "files": report.files, "bytes": report.bytes, "errors": report.errors });
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
        let value = json!({
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

fn repair_index(g: &Globals, out: &mut impl Write) -> Result<Exit> {
    let bar = Bar::new("indexing");
    let report = repair::rebuild_index(g.repo_path()?, g.lock_wait, &bar)?;
    bar.done();
    for skipped in &report.skipped {
        eprintln!("warning: skipped {skipped}");
    }
    if g.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        let (packs, chunks, snapshots) = (report.packs, report.chunks, report.snapshots);
        writeln!(out, "index rebuilt: {packs} packs, {chunks} chunks, {snapshots} snapshots")?;
    }
    Ok(Exit::Success)
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
            "components": summary.components,
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

fn print_snapshots(snapshots: &[SnapshotSummary], json: bool, out: &mut impl Write) -> Result<()> {
    if json {
        let list: Vec<_> = snapshots
            .iter()
            .map(|s| {
                json!({
                    "id": s.id, "time": s.header.time.to_rfc3339(), "host": s.header.host,
                    "set": s.header.set, "tags": s.header.tags, "parent": s.header.parent,
                    "kind": s.header.kind, "complete": s.trailer.complete,
                    "files": s.trailer.stats.files, "bytes": s.trailer.stats.bytes,
                    "components": s.components.iter().map(|c| json!({
                        "name": c.header.name, "store_type": c.header.store_type,
                        "placement": display_path(&c.header.placement),
                        "first_log_number": c.trailer.first_log_number,
                        "last_log_number": c.trailer.last_log_number,
                        "files": c.trailer.files, "bytes": c.trailer.bytes,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(list))?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<12}  {:<20}  {:<11}  {:>8}  {:>10}  {:<24}  tags",
        "id", "time", "kind", "files", "size", "set"
    )?;
    for s in snapshots {
        let kind = format!("{:?}{}", s.header.kind, if s.trailer.complete { "" } else { "!" }).to_lowercase();
        writeln!(
            out,
            "{:<12}  {:<20}  {:<11}  {:>8}  {:>10}  {:<24}  {}",
            &s.id.to_hex()[..12],
            s.header.time.to_rfc3339(),
            kind,
            s.trailer.stats.files,
            size(s.trailer.stats.bytes),
            s.header.set,
            s.header.tags.join(",")
        )?;
        if s.components.len() > 1 {
            for c in &s.components {
                let logs = match (c.trailer.first_log_number, c.trailer.last_log_number) {
                    (Some(first), Some(last)) => format!(", logs {first}..{last}"),
                    _ => String::new(),
                };
                let (name, kind, files) = (&c.header.name, &c.header.store_type, c.trailer.files);
                writeln!(out, "    {name} ({kind}): {files} entries, {}{logs}", size(c.trailer.bytes))?;
            }
        }
    }
    writeln!(out, "{} snapshots", snapshots.len())?;
    Ok(())
}

fn ls(repo: &Repository, id: &cairn::SnapshotId, json: bool, out: &mut impl Write) -> Result<()> {
    let mut reader = ManifestReader::open(&repo.snapshots_dir(), id)?;
    let mut component = String::new();
    let mut first = true;
    if json {
        write!(out, "[")?;
    }
    while let Some(record) = reader.next_record()? {
        match record {
            Record::Component(c) => {
                if !json {
                    writeln!(out, "component {} ({}):", c.name, c.store_type)?;
                }
                component = c.name
            }
            Record::ComponentEnd(t) if !json => {
                writeln!(out, "  {} entries, {}", t.files, size(t.bytes))?;
            }
            Record::File(entry) if json => {
                let mut value = serde_json::to_value(&entry)?;
                value["component"] = json!(component);
                value["chunks"] = json!(entry.chunks.len());
                write!(out, "{}{}", if first { "" } else { "," }, value)?;
                first = false;
            }
            Record::File(entry) => {
                let mut line = format!(
                    "{} {:>5} {:>5} {:>12} {}  {}",
                    mode_string(&entry.kind, entry.mode),
                    entry.uid,
                    entry.gid,
                    entry.size,
                    entry.mtime.to_rfc3339(),
                    display_path(&entry.path)
                );
                if let FileKind::Symlink { target } = &entry.kind {
                    line.push_str(&format!(" -> {}", display_path(target)));
                }
                writeln!(out, "{line}")?;
            }
            _ => {}
        }
    }
    if json {
        writeln!(out, "]")?;
    }
    Ok(())
}

/// The manifest as one JSON object, streamed record by record.
fn cat(repo: &Repository, id: &cairn::SnapshotId, out: &mut impl Write) -> Result<()> {
    let mut reader = ManifestReader::open(&repo.snapshots_dir(), id)?;
    write!(out, "{{\"id\":\"{id}\",\"format_version\":{}", reader.version())?;
    let mut first_file = true;
    let mut first_component = true;
    while let Some(record) = reader.next_record()? {
        match record {
            Record::Snapshot(h) => {
                write!(out, ",\"snapshot\":{},\"components\":[", serde_json::to_string(&h)?)?
            }
            Record::Component(c) => {
                let sep = if first_component { "" } else { "," };
                write!(out, "{sep}{{\"component\":{},\"files\":[", serde_json::to_string(&c)?)?;
                first_component = false;
                first_file = true;
            }
            Record::File(f) => {
                write!(out, "{}{}", if first_file { "" } else { "," }, serde_json::to_string(&f)?)?;
                first_file = false;
            }
            Record::ComponentEnd(t) => write!(out, "],\"end\":{}}}", serde_json::to_string(&t)?)?,
            Record::End(t) => write!(out, "],\"end\":{}", serde_json::to_string(&t)?)?,
        }
    }
    writeln!(out, "}}")?;
    Ok(())
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
        writeln!(out, "error: {}", problem.what)?;
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

fn mode_string(kind: &FileKind, mode: u32) -> String {
    let t = match kind {
        FileKind::Regular => '-',
        FileKind::Directory => 'd',
        FileKind::Symlink { .. } => 'l',
        FileKind::Fifo => 'p',
        FileKind::Socket => 's',
        FileKind::CharDevice { .. } => 'c',
        FileKind::BlockDevice { .. } => 'b',
    };
    let mut s = String::from(t);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// A progress line on stderr when it is a terminal; indicatif draws nothing otherwise.
pub struct Bar {
    bar: indicatif::ProgressBar,
    files: AtomicU64,
}

impl Bar {
    pub fn new(what: &str) -> Bar {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {elapsed} {prefix} {msg} files, {bytes} ({bytes_per_sec})",
            )
            .expect("valid template"),
        );
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar { bar, files: AtomicU64::new(0) }
    }

    pub fn done(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Bar {
    fn advance(&self, files: u64, bytes: u64) {
        if files > 0 {
            let n = self.files.fetch_add(files, Ordering::Relaxed) + files;
            self.bar.set_message(n.to_string());
        }
        self.bar.inc(bytes);
    }
}
