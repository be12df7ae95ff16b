//! A backup, top to bottom. The pre hook runs, then every component (a store, a tree, a
//! dump) is copied side by side, each through three stages connected by bounded queues
//! that keep both cores busy while memory stays bounded:
//!
//! ```text
//! produce (thread)   walk -> reuse parent's chunks | read 64 KiB multiples -> FastCDC
//!                    -> BLAKE3 -> dedup against index + in-flight chunks
//! compress (thread)  zstd every new chunk of a batch or two (rayon); a changed piece of a
//!                    database data file as a delta against the parent's piece
//! store (thread)     append frames to the pack; full pack -> fsync, rename -> index commit;
//!                    file entries -> the component's file list, cut into chunks that
//!                    go to the pack too unless the repository has them
//! ```
//! Then the post hook runs, and a manifest naming each component's file list is renamed
//! into `snapshots/<id>`. The snapshot exists from that rename, which happens only after
//! every pack it needs (its file lists' among them) is durable and indexed.
//!
//! `copy_component` wires the three stages (`produce`, `compress`, `store`); `components`
//! decides what is copied, `parent`, `reuse` and `logs_only` what is taken from the parent.

mod components;
mod compress;
mod hooks;
mod inflight;
mod known;
mod logs_only;
mod parent;
mod produce;
mod reuse;
mod shared_packer;
mod store;

use crate::compress::Frame;
use crate::error::{Error, Hint, Result};
use crate::id::{ChunkId, SnapshotId};
use crate::manifest::{
    self, BackupStats, ComponentHeader, ComponentSummary, CopyTime, FileEntry, FileError, ManifestWriter,
    Record, SnapshotHeader, SnapshotKind, SnapshotSummary, SnapshotTrailer,
};
use crate::repo::Repository;
use crate::stores::dump::STDIN;
use crate::stores::{Component, StoreType};
use crate::time::Timestamp;
use crate::Progress;
use crossbeam_channel::bounded;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

pub struct BackupOptions {
    pub set: String,
    pub tags: Vec<String>,
    pub host: String,
    /// Which earlier snapshot the backup is made against.
    pub mode: Mode,
    /// The store type; `None` recognises it from the directory's contents.
    pub store_type: Option<StoreType>,
    /// Assert that the store is not running, and record the copy as offline.
    pub offline: bool,
    /// Shell commands run before and after the copy (`sh -c`); the second runs even
    /// when the first or the copy fails.
    pub pre_exec: Option<String>,
    pub post_exec: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Against the newest snapshot of the set: unchanged files are not read.
    Incremental,
    /// Against the newest full snapshot of the set.
    Differential,
    /// Every file read, no parent.
    Full,
    /// Database stores: the parent's data files kept without reading them, only the
    /// logs from the parent's last one on copied, as Berkeley DB's incremental backup.
    LogsOnly,
}

impl BackupOptions {
    /// An incremental backup of set `set` from `host`, with no tags, hooks or type.
    pub fn new(set: impl Into<String>, host: impl Into<String>) -> BackupOptions {
        BackupOptions {
            set: set.into(),
            tags: Vec::new(),
            host: host.into(),
            mode: Mode::Incremental,
            store_type: None,
            offline: false,
            pre_exec: None,
            post_exec: None,
        }
    }
}

/// What a backup reads: a path, or a dump.
pub enum Input {
    Path {
        path: PathBuf,
        /// The component's name (default: the path's last element).
        name: Option<String>,
        /// Its store type (default: `BackupOptions::store_type`, else recognised).
        store_type: Option<StoreType>,
        /// `dir` only: glob patterns of paths (relative to it) left out, with what
        /// is below them.
        exclude: Vec<String>,
    },
    /// The standard output of `command` (`sh -c`), or with `-` cairn's standard input,
    /// as one file named `name`.
    Dump { name: String, command: String },
}

impl Input {
    /// `path` as a component named after its last element, of the type recognised.
    pub fn path(path: &std::path::Path) -> Input {
        Input::Path { path: path.to_path_buf(), name: None, store_type: None, exclude: Vec::new() }
    }
}

pub struct BackupReport {
    pub summary: SnapshotSummary,
    /// Each path's store type, as given or recognised.
    pub store_types: Vec<(PathBuf, StoreType)>,
    /// The post-exec command failed after the snapshot was saved.
    pub post_exec_failed: Option<String>,
    /// Components whose file list in the parent snapshot is lost (with a pack): their
    /// files were all read again.
    pub parent_lists_lost: Vec<String>,
}

impl BackupReport {
    pub fn id(&self) -> SnapshotId {
        self.summary.id
    }
}

/// What flows from stage to stage, in the order of the manifest.
enum Item {
    /// A finished entry: not a regular file, or unchanged since the parent.
    Entry(FileEntry),
    /// A regular file whose chunks follow, then `End`.
    Begin(FileEntry),
    Chunk {
        id: ChunkId,
        len: u32,
        payload: Payload,
    },
    End {
        size: u64,
    },
    /// A store's file that disappeared between listing and reading.
    Vanished {
        path: Vec<u8>,
    },
    /// The file (or listing) at `path` could not be read; a `Begin` before it is void.
    Failed {
        path: Vec<u8>,
        message: String,
    },
}

enum Payload {
    /// The repository already has it, or an earlier chunk of this backup carries it.
    Known,
    /// New; `seq` numbers new chunks in order, for the in-flight bookkeeping.
    Raw {
        seq: u64,
        bytes: Vec<u8>,
        /// The chunk this one replaces, to store it against (see `compress::compress_against`).
        reference: Option<ChunkId>,
    },
    Compressed {
        seq: u64,
        frame: Frame,
    },
}

/// Items travel in batches of about this many new bytes, so queues are cheap per item
/// and a batch gives rayon enough chunks to share between cores.
const BATCH_BYTES: usize = 4 << 20;
const BATCH_ITEMS: usize = 2048;
/// Batches in flight between two stages: the memory bound is about
/// (2 queues x QUEUE_DEPTH + 4 in hand) x BATCH_BYTES.
const QUEUE_DEPTH: usize = 2;

/// Backs up `inputs` as one snapshot (one component per store or dump) and returns it.
/// For `dir`, files that cannot be read are reported in the snapshot (marked
/// incomplete); a database store's copy or a dump must be complete, so there any read
/// error, like any repository error, fails the backup and writes no snapshot.
pub fn backup(
    repo: &Repository,
    inputs: &[Input],
    options: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    // Paths first: a missing one fails before any command runs.
    let mut roots = Vec::new();
    for input in inputs {
        if let Input::Path { path, store_type, name, .. } = input {
            let root = path.canonicalize().map_err(|e| match name {
                Some(name) => Error::Invalid(format!("component {name}: {}: {e}", path.display())),
                None => Error::io(path, e),
            })?;
            let store_type = store_type.or(options.store_type).unwrap_or_else(|| StoreType::detect(&root));
            roots.push((root, store_type));
        }
    }
    if inputs.is_empty() {
        return Err(Error::Invalid("nothing to back up: give a path or a dump".into()));
    }
    let from_stdin =
        inputs.iter().filter(|i| matches!(i, Input::Dump { command, .. } if command == STDIN)).count();
    if from_stdin > 1 {
        return Err(Error::Invalid("only one dump can read standard input".into()));
    }
    let parent = match options.mode {
        Mode::Full => None,
        Mode::Differential => repo.latest_full_in_set(&options.set)?,
        Mode::Incremental | Mode::LogsOnly => repo.latest_in_set(&options.set)?,
    };
    let kind = match (options.mode, &parent) {
        (_, None) if options.mode == Mode::LogsOnly => {
            return Err(Error::Invalid(format!(
                "a logs-only backup needs an earlier snapshot of set {:?} to take the data files from",
                options.set
            ))
            .with_hint(Hint::FullBackup))
        }
        (_, None) => SnapshotKind::Full,
        (Mode::Differential, Some(_)) => SnapshotKind::Differential,
        (Mode::LogsOnly, Some(_)) => SnapshotKind::LogsOnly,
        _ => SnapshotKind::Incremental,
    };
    let header = SnapshotHeader {
        time: Timestamp::now(),
        host: options.host.clone(),
        set: options.set.clone(),
        tags: options.tags.clone(),
        parent: parent.as_ref().map(|p| p.id),
        kind,
        client: crate::CLIENT.to_string(),
    };
    let mut hooks = hooks::Hooks::new(options.pre_exec.as_deref(), options.post_exec.as_deref());
    let copied = hooks.run_pre().and_then(|()| {
        let components = components::components(inputs, &roots, options.offline)?;
        copy(repo, components, parent.as_ref(), options.mode, progress)
    });
    let post_failure = hooks.run_post();
    let (copied, parent_lists_lost) = match (copied, &post_failure) {
        (Ok(copied), _) => copied,
        (Err(e), None) => return Err(e),
        (Err(e), Some(post)) => return Err(Error::Invalid(format!("{e}; and then {post}")).with_hint_of(&e)),
    };

    let summary = save(repo, header, copied, hooks.record())?;
    repo.add_snapshot(&summary)?;
    Ok(BackupReport { summary, store_types: roots, post_exec_failed: post_failure, parent_lists_lost })
}

/// Writes the snapshot's manifest: the header, each component's file list between its
/// header and trailer, then the trailer. The snapshot exists once this returns (the
/// packs its file lists and files point into are durable and indexed by now).
fn save(
    repo: &Repository,
    header: SnapshotHeader,
    copied: Vec<Copied>,
    hooks: Option<manifest::Hooks>,
) -> Result<SnapshotSummary> {
    let mut manifest = ManifestWriter::create(repo.storage())?;
    manifest.write(&Record::Snapshot(header.clone()))?;
    let (mut stats, mut errors, mut components) = (BackupStats::default(), Vec::new(), Vec::new());
    for c in copied {
        manifest.write(&Record::Component(c.summary.header.clone()))?;
        manifest.write_file_list(&c.file_list)?;
        manifest.write(&Record::ComponentEnd(c.summary.trailer.clone()))?;
        stats.add(&c.stats);
        errors.extend(c.errors);
        components.push(c.summary);
    }
    let trailer =
        SnapshotTrailer { finished: Timestamp::now(), complete: errors.is_empty(), errors, stats, hooks };
    manifest.write(&Record::End(trailer.clone()))?;
    repo.write_index_file()?;
    repo.check_lock()?;
    let id = manifest.finish()?;
    Ok(SnapshotSummary { id, header, components, trailer })
}

/// One component's copy, ready to go into the manifest.
struct Copied {
    summary: ComponentSummary,
    file_list: Vec<manifest::ChunkRef>,
    stats: BackupStats,
    errors: Vec<FileError>,
}

/// Copies every component, side by side (the quiesce window lasts as long as the
/// slowest one, not the sum). The first failure stops the others.
fn copy(
    repo: &Repository,
    components: Vec<Component>,
    parent: Option<&SnapshotSummary>,
    mode: Mode,
    progress: &dyn Progress,
) -> Result<(Vec<Copied>, Vec<String>)> {
    let mut jobs: Vec<produce::Job> = Vec::new();
    let mut lists_lost = Vec::new();
    for component in components {
        let store_type = component.files.store_type();
        let logs_only = mode == Mode::LogsOnly && store_type.has_logs();
        let parent_files = match parent {
            Some(p) => {
                Some(parent::ParentFiles::open(repo, p, &component.name, store_type == StoreType::Dir)?)
            }
            None => None,
        };
        if parent_files.as_ref().is_some_and(|p| p.file_list_lost()) {
            if logs_only {
                return Err(Error::Invalid(format!(
                    "logs-only backup: the parent snapshot's file list of component {} is lost (check names the damage)",
                    component.name
                ))
                .with_hint(Hint::IncrementalOrFull));
            }
            lists_lost.push(component.name.clone());
        }
        if logs_only && parent_files.as_ref().and_then(|p| p.last_log_number()).is_none() {
            return Err(Error::Invalid(format!(
                "logs-only backup: the parent snapshot has no logs of component {}",
                component.name
            ))
            .with_hint(Hint::IncrementalOrFull));
        }
        let header = ComponentHeader {
            name: component.name,
            store_type: store_type.name().into(),
            source: component.root.as_os_str().as_bytes().to_vec(),
            placement: component.placement,
        };
        jobs.push(produce::Job { header, files: component.files, parent: parent_files, logs_only });
    }
    if mode == Mode::LogsOnly && !jobs.iter().any(|j| j.logs_only) {
        return Err(Error::Invalid(
            "a logs-only backup applies to database stores (bdb, bdb-je), and this source has none".into(),
        )
        .with_hint(Hint::IncrementalOrFull));
    }
    let cancel = AtomicBool::new(false);
    let stoppers: Vec<_> = jobs.iter().filter_map(|j| j.files.stopper()).collect();
    let stop_all = || {
        cancel.store(true, Ordering::Relaxed);
        stoppers.iter().for_each(|stop| stop());
    };
    // The packer's sender threads (if any) outlive the component threads.
    let (results, finished) = std::thread::scope(|senders| {
        let packer = shared_packer::SharedPacker::new(repo, senders);
        let results: Vec<Result<Copied>> = std::thread::scope(|s| {
            let running: Vec<_> = jobs
                .into_iter()
                .map(|job| {
                    let (cancel, stop_all, packer) = (&cancel, &stop_all, &packer);
                    s.spawn(move || match copy_component(repo, job, packer, cancel, progress) {
                        // Failing once the others were told to stop is being stopped.
                        Err(_) if cancel.load(Ordering::Relaxed) => Err(Error::Cancelled),
                        Err(e) => {
                            stop_all();
                            Err(e)
                        }
                        copied => copied,
                    })
                })
                .collect();
            running.into_iter().map(|t| t.join().expect("component thread panicked")).collect()
        });
        // Every pack durable and indexed before the manifest may name them; after a
        // failure, the packs on their way are left to finish (or not) on their own.
        let finished = match results.iter().all(|r| r.is_ok()) {
            true => packer.finish(),
            false => Ok(()),
        };
        (results, finished)
    });
    // Report the failure that stopped the others, not their being stopped.
    let mut copied = Vec::new();
    let mut cancelled = false;
    for result in results {
        match result {
            Ok(c) => copied.push(c),
            Err(Error::Cancelled) => cancelled = true,
            Err(e) => return Err(e),
        }
    }
    if cancelled {
        return Err(Error::Cancelled);
    }
    finished?;
    Ok((copied, lists_lost))
}

/// One component through the three stages: produce and compress on threads of their
/// own, store on this one, each closing its output queue when it ends so the next one
/// ends too. The component's records go to its file list.
fn copy_component(
    repo: &Repository,
    job: produce::Job,
    packer: &shared_packer::SharedPacker,
    cancel: &AtomicBool,
    progress: &dyn Progress,
) -> Result<Copied> {
    let started = Timestamp::now();
    let header = job.header.clone();
    let parent_list = job.parent.as_ref().map(|p| p.file_list().to_vec()).unwrap_or_default();
    // How far the index holds this component's new chunks: written by the store stage,
    // read by the producer (see `inflight`).
    let committed = Arc::new(AtomicU64::new(0));
    let (to_compress, compress_rx) = bounded::<Vec<Item>>(QUEUE_DEPTH);
    let (to_store, store_rx) = bounded::<Vec<Item>>(QUEUE_DEPTH);
    let (produced, stored) = std::thread::scope(|s| {
        let producer = s.spawn(|| produce::run(repo, job, &committed, to_compress, cancel, progress));
        s.spawn(move || compress::run(repo, compress_rx, to_store));
        let stored = store::run(repo, store_rx, packer, &committed, parent_list);
        (producer.join().expect("producer thread panicked"), stored)
    });
    // The store stage stops early only on its own error; report that one first.
    let mut stored = stored?;
    let produced = produced?;
    let copy_time = CopyTime { started, finished: Timestamp::now() };
    let trailer = stored.trailer(produced.report, copy_time)?;
    stored.stats.bytes_read = produced.bytes_read;
    Ok(Copied {
        summary: ComponentSummary { header, trailer },
        file_list: std::mem::take(&mut stored.file_list),
        stats: stored.stats,
        errors: stored.errors,
    })
}

#[cfg(test)]
mod tests;
