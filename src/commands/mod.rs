//! One module per command (or small family): validated options -> library call ->
//! output -> exit code. Command modules share `output` and `advice`, never each other.

mod advice;
mod backup;
mod check;
mod copy;
mod diff;
mod forget;
mod init;
mod listing;
mod output;
mod prune;
mod repair;
mod restore;
mod stats;

pub use advice::{explain, explain_chain};

use crate::cli::{Cli, Command, RepairWhat};
use crate::Exit;
use anyhow::{Context, Result};
use cairn::repo::{OpenOptions, Repository};
use cairn::storage::{Location, LockMode};
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// What every command needs from the global flags.
pub struct Globals {
    repo: Option<Location>,
    pub json: bool,
    pub lock_wait: Duration,
    pub cache_dir: Option<PathBuf>,
}

impl Globals {
    /// Where the repository is: `-r` or `CAIRN_REPO`.
    pub fn location(&self) -> Result<Location> {
        self.repo.clone().context("no repository given: use -r REPO or set CAIRN_REPO")
    }

    pub fn open(&self, mode: LockMode, command: &str) -> Result<Repository> {
        self.open_at(&self.location()?, mode, command)
    }

    /// Opens the repository at `location`, with the global flags' lock wait and cache.
    pub fn open_at(&self, location: &Location, mode: LockMode, command: &str) -> Result<Repository> {
        let options = OpenOptions {
            mode,
            lock_wait: self.lock_wait,
            command: command.to_string(),
            cache_dir: self.cache_dir.clone(),
        };
        Ok(Repository::open(location.open()?, &options)?)
    }
}

/// Ends a session that wrote. What it tidies is a cache: a failure there is reported,
/// but does not turn a finished backup or prune into a failed one.
pub fn close(repo: Repository) {
    if let Err(e) = repo.close() {
        eprintln!("warning: {}", explain(&e));
    }
}

/// `$XDG_CACHE_HOME/cairn`, else `~/.cache/cairn`, as restic's cache.
fn default_cache_dir() -> Option<PathBuf> {
    let nonempty = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = nonempty("XDG_CACHE_HOME").or_else(|| nonempty("HOME").map(|home| home.join(".cache")))?;
    Some(base.join("cairn"))
}

pub fn run(cli: Cli) -> Result<Exit> {
    let cache_dir = match cli.no_cache {
        true => None,
        false => cli.cache_dir.or_else(default_cache_dir),
    };
    let g =
        Globals { repo: cli.repo, json: cli.json, lock_wait: Duration::from_secs(cli.retry_lock), cache_dir };
    let mut out = io::stdout().lock();
    match cli.command {
        Command::Init => init::run(&g, &mut out),
        Command::Backup(args) => backup::run(&g, args, &mut out),
        Command::Snapshots { set } => listing::snapshots(&g, set, &mut out),
        Command::Ls { snapshot } => listing::ls(&g, &snapshot, &mut out),
        Command::Cat { snapshot } => listing::cat(&g, &snapshot, &mut out),
        Command::Restore { snapshot, at, until_log, component, set, target, overwrite } => {
            let request = restore::Request { snapshot, at, until_log, component, set, target, overwrite };
            restore::run(&g, request, &mut out)
        }
        Command::Forget(args) => forget::run(&g, args, &mut out),
        Command::Prune(args) => prune::run(&g, &args, &mut out),
        Command::Dump { snapshot, what } => restore::dump(&g, &snapshot, &what, &mut out),
        Command::Stats { snapshot } => stats::run(&g, snapshot, &mut out),
        Command::Diff { a, b } => diff::run(&g, &a, &b, &mut out),
        Command::Copy { from, snapshots } => copy::run(&g, &from, &snapshots, &mut out),
        Command::Check { read_data } => check::run(&g, read_data, &mut out),
        Command::Repair { what: RepairWhat::Index } => repair::index(&g, &mut out),
    }
}
