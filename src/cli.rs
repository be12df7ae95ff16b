//! Command-line syntax: raw flags only; `commands` turns them into library calls.

use cairn::storage::Location;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Deduplicating, store-aware backups of database stores and file trees"
)]
pub struct Cli {
    /// Repository: a directory, or s3:http://HOST:PORT/BUCKET/PREFIX (or https) for a
    /// bucket, with credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or
    /// AWS_PROFILE, and AWS_DEFAULT_REGION.
    #[arg(short = 'r', long = "repo", env = "CAIRN_REPO", global = true, value_parser = LocationParser)]
    pub repo: Option<Location>,
    /// Machine-readable output (JSON) on standard output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for another cairn process's lock before giving up.
    #[arg(long, value_name = "SECONDS", default_value_t = 0, global = true)]
    pub retry_lock: u64,
    /// Where this user keeps the index caches of repositories it reads (default:
    /// $XDG_CACHE_HOME/cairn, else ~/.cache/cairn).
    #[arg(long, value_name = "DIR", env = "CAIRN_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Keep no index cache: a reader builds its index in memory each time.
    #[arg(long, global = true, conflicts_with = "cache_dir")]
    pub no_cache: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a new, empty repository.
    Init,
    /// Back up a directory (or file) as a new snapshot; prints its id.
    Backup(BackupArgs),
    /// List snapshots, oldest first.
    Snapshots {
        /// Only snapshots of this set.
        #[arg(long)]
        set: Option<String>,
    },
    /// List the entries of a snapshot.
    Ls { snapshot: String },
    /// Print a snapshot's manifest as JSON.
    Cat { snapshot: String },
    /// Restore a snapshot into a directory.
    Restore {
        /// Snapshot id, unique prefix, or `latest` (not with --at or --until-log).
        #[arg(required_unless_present_any = ["at", "until_log"], conflicts_with_all = ["at", "until_log"])]
        snapshot: Option<String>,
        /// The newest snapshot taken at or before this time (RFC 3339 or @SECONDS; a time
        /// given to the second includes that whole second).
        #[arg(long, value_name = "TIME", conflicts_with = "until_log")]
        at: Option<String>,
        /// A database component (bdb, bdb-je) as of the end of its log file N, put
        /// together from the set's snapshots (see format-spec/snapshots.md for what is
        /// guaranteed per store type).
        #[arg(long, value_name = "N")]
        until_log: Option<u64>,
        /// Only this component, its contents directly in the target (with --until-log:
        /// the database component, when the set has several).
        #[arg(long, value_name = "NAME")]
        component: Option<String>,
        /// With --at or --until-log: the backup set (needed when there are several).
        #[arg(long)]
        set: Option<String>,
        #[arg(long, value_name = "DIR")]
        target: PathBuf,
        /// Restore into a non-empty directory, replacing entries of the same name.
        #[arg(long)]
        overwrite: bool,
    },
    /// Remove the snapshots a retention policy does not keep (per set).
    Forget(ForgetArgs),
    /// Give back the space of chunks that no snapshot references.
    Prune(PruneArgs),
    /// Space accounting: logical, unique and stored bytes, and per snapshot what only it
    /// holds and what it added.
    Stats {
        /// Only this snapshot's line (id, unique prefix or `latest`).
        snapshot: Option<String>,
    },
    /// Files added, removed and changed from snapshot A to snapshot B.
    Diff { a: String, b: String },
    /// Write one file of a snapshot to standard output: a dump component, or a
    /// component's file (`cairn dump latest jcr | pg_restore ...`).
    Dump {
        snapshot: String,
        /// COMPONENT, or COMPONENT/PATH.
        what: String,
    },
    /// Copy snapshots from another repository into this one, sending only the chunks
    /// this one lacks.
    Copy {
        /// The repository to copy from (a directory or s3:...).
        #[arg(long = "from-repo", value_name = "REPO", value_parser = LocationParser)]
        from: Location,
        /// Snapshots of the source (ids, prefixes or `latest`); default: all of them.
        snapshots: Vec<String>,
    },
    /// Verify the repository; exits 0 only when it is sound.
    Check {
        /// Also read, decompress and hash every chunk.
        #[arg(long)]
        read_data: bool,
    },
    /// Repair repository metadata.
    Repair {
        #[command(subcommand)]
        what: RepairWhat,
    },
}

#[derive(Args)]
pub struct BackupArgs {
    /// Directories or files, each a component named after its last element (several
    /// need --set).
    #[arg(required_unless_present_any = ["dumps", "plan"])]
    pub paths: Vec<PathBuf>,
    /// A dump component: the standard output of COMMAND (run with sh -c), or with `-`
    /// this process's standard input, kept as one file named NAME.
    #[arg(long = "dump", value_name = "NAME=COMMAND")]
    pub dumps: Vec<String>,
    /// A backup-set file (TOML): set name, components, hooks, retention.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["paths", "dumps", "set", "pre_exec", "post_exec", "store_type"])]
    pub plan: Option<PathBuf>,
    /// Backup set: incrementals build on the newest snapshot of the same set
    /// (default for a single path: its absolute path).
    #[arg(long)]
    pub set: Option<String>,
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Read every file, even those unchanged since the parent snapshot.
    #[arg(long, conflicts_with_all = ["differential", "logs_only"])]
    pub full: bool,
    /// Make the backup against the newest full snapshot of the set, not the newest.
    #[arg(long, conflicts_with = "logs_only")]
    pub differential: bool,
    /// Database stores (bdb, bdb-je): keep the parent's data files without reading
    /// them and copy only the logs from the parent's last one on.
    #[arg(long)]
    pub logs_only: bool,
    /// Shell command run before the copy (quiesce the application, checkpoint); a
    /// failure stops the backup.
    #[arg(long, value_name = "CMD")]
    pub pre_exec: Option<String>,
    /// Shell command run after the copy, even when it or --pre-exec failed.
    #[arg(long, value_name = "CMD")]
    pub post_exec: Option<String>,
    /// Store type: `auto` recognises it from the directory's contents.
    #[arg(long = "type", value_name = "TYPE", default_value = "auto", value_parser = ["auto", "dir", "bdb", "bdb-je", "qpid"])]
    pub store_type: String,
    /// Assert that the store is not running (no process has one of its files open)
    /// and record the copy as offline.
    #[arg(long)]
    pub offline: bool,
    /// Host name recorded in the snapshot (default: this machine's).
    #[arg(long)]
    pub host: Option<String>,
}

#[derive(Args)]
pub struct ForgetArgs {
    /// Only this backup set (default: every set, each on its own).
    #[arg(long)]
    pub set: Option<String>,
    /// The set and the retention of a backup-set file.
    #[arg(long, value_name = "FILE", conflicts_with = "set")]
    pub plan: Option<PathBuf>,
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_last: u32,
    /// Keep the newest snapshot of each of the last N hours that have one (UTC).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_hourly: u32,
    /// ... of each of the last N days.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_daily: u32,
    /// ... of each of the last N weeks (Monday to Sunday).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_weekly: u32,
    /// ... of each of the last N months.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_monthly: u32,
    /// ... of each of the last N years.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_yearly: u32,
    /// Keep every snapshot taken within this span before the newest (e.g. 1y6m, 30d, 12h).
    #[arg(long, value_name = "SPAN")]
    pub keep_within: Option<String>,
    /// Keep every snapshot with this tag.
    #[arg(long = "keep-tag", value_name = "TAG")]
    pub keep_tags: Vec<String>,
    /// Show what would be kept and removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Prune afterwards.
    #[arg(long)]
    pub prune: bool,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Dead bytes allowed to stay in partly used packs, in percent of the repository;
    /// more is repacked.
    #[arg(long, value_name = "PERCENT", default_value_t = 5.0)]
    pub max_unused: f64,
    /// Show what would be deleted and repacked; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Subcommand)]
pub enum RepairWhat {
    /// Rebuild index.redb from the packs and snapshot manifests.
    Index,
}

/// `-r`: a path (any bytes) or an `s3:` URL, checked as the command line is parsed so
/// that a bad one is a usage error.
#[derive(Clone)]
struct LocationParser;

impl clap::builder::TypedValueParser for LocationParser {
    type Value = Location;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Location, clap::Error> {
        Location::parse(value).map_err(|e| {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("-r: {e}\n")).with_cmd(cmd)
        })
    }
}
