//! A backup, top to bottom. Three stages connected by bounded queues keep both cores
//! busy while memory stays bounded:
//!
//! ```text
//! produce (thread)   walk -> reuse parent's chunks | read 64 KiB multiples -> FastCDC
//!                    -> BLAKE3 (rayon) -> dedup against index + in-flight chunks
//! compress (thread)  zstd every new chunk of a batch (rayon)
//! store (caller)     append frames to the pack; full pack -> fsync, rename -> index commit;
//!                    file entries -> manifest; at the end manifest -> snapshots/<id>
//! ```
//! The snapshot exists once its manifest is renamed into place, and that happens only
//! after every pack it needs is durable and indexed.

mod hooks;
mod parent;
mod produce;
mod store;

use crate::error::{Error, Result};
use crate::id::{ChunkId, SnapshotId};
use crate::manifest::{
    self, ComponentHeader, ComponentSummary, FileEntry, ManifestWriter, Record, SnapshotHeader, SnapshotKind,
    SnapshotSummary, Timestamp,
};
use crate::pack::{self, Frame};
use crate::repo::Repository;
use crate::stores::{Component, SourceReport, StoreType};
use crate::Progress;
use crossbeam_channel::bounded;
use rayon::prelude::*;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::AtomicU64;

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

pub struct BackupReport {
    pub summary: SnapshotSummary,
    /// The store type of the source, as given or recognised.
    pub store_type: StoreType,
    /// The post-exec command failed after the snapshot was saved.
    pub post_exec_failed: Option<String>,
}

impl BackupReport {
    pub fn id(&self) -> SnapshotId {
        self.summary.id
    }
}

/// What flows from stage to stage, in the order of the manifest.
enum Item {
    /// The start of a component; its files follow.
    Component(ComponentHeader),
    /// The end of the current component, with what its store says about the copy.
    ComponentEnd(SourceReport),
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
/// (2 queues x QUEUE_DEPTH + 3 in hand) x BATCH_BYTES.
const QUEUE_DEPTH: usize = 2;

/// Backs up `source` as one snapshot (one component per store it holds) and returns
/// it. For `dir`, files that cannot be read are reported in the snapshot (marked
/// incomplete); a database store's copy must be complete, so there any read error, like
/// any repository error, fails the backup and writes no snapshot.
pub fn backup(
    repo: &Repository,
    source: &Path,
    options: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let root = source.canonicalize().map_err(|e| Error::io(source, e))?;
    let parent = match options.mode {
        Mode::Full => None,
        Mode::Differential => repo.latest_full_in_set(&options.set)?,
        Mode::Incremental | Mode::LogsOnly => repo.latest_in_set(&options.set)?,
    };
    let kind = match (options.mode, &parent) {
        (_, None) if options.mode == Mode::LogsOnly => {
            return Err(Error::Invalid(format!(
                "--logs-only needs an earlier snapshot of set {:?} to take the data files from; take a full backup first",
                options.set
            )))
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
    let store_type = options.store_type.unwrap_or_else(|| StoreType::detect(&root));
    let mut hooks = hooks::Hooks::new(options.pre_exec.as_deref(), options.post_exec.as_deref());
    let copied = hooks.run_pre().and_then(|()| {
        let components = store_type.components(&root, options.offline)?;
        copy(repo, &header, components, parent.as_ref(), options.mode, progress)
    });
    let post_failure = hooks.run_post();
    let (mut manifest, components, stored, produced) = match (copied, &post_failure) {
        (Ok(copied), _) => copied,
        (Err(e), None) => return Err(e),
        (Err(e), Some(post)) => return Err(Error::Invalid(format!("{e}; and then {post}"))),
    };
    let mut trailer = stored.snapshot_trailer(produced);
    trailer.hooks = hooks.record();
    manifest.write(&Record::End(trailer.clone()))?;
    let id = manifest.finish(&repo.snapshots_dir())?;
    let summary = SnapshotSummary { id, header, components, trailer };
    repo.index.add_snapshot(&summary)?;
    Ok(BackupReport { summary, store_type, post_exec_failed: post_failure })
}

type Copied = (ManifestWriter, Vec<ComponentSummary>, store::Stored, produce::Produced);

/// Runs the pipeline over every component; the manifest is complete but for its trailer.
fn copy(
    repo: &Repository,
    header: &SnapshotHeader,
    components: Vec<Component>,
    parent: Option<&SnapshotSummary>,
    mode: Mode,
    progress: &dyn Progress,
) -> Result<Copied> {
    let mut jobs: Vec<produce::Job> = Vec::new();
    for component in components {
        manifest::validate_component_name(&component.name).map_err(Error::Invalid)?;
        if jobs.iter().any(|j| j.header.name == component.name) {
            return Err(Error::Invalid(format!(
                "{}: two components would be named {:?} (names are made lossy from non-UTF-8 directory names); rename one",
                component.root.display(),
                component.name
            )));
        }
        let store_type = component.files.store_type();
        let logs_only = mode == Mode::LogsOnly && store_type.has_logs();
        let parent_files = match parent {
            Some(p) => {
                Some(parent::ParentFiles::open(repo, p, &component.name, store_type == StoreType::Dir)?)
            }
            None => None,
        };
        if logs_only && parent_files.as_ref().and_then(|p| p.last_log_number()).is_none() {
            return Err(Error::Invalid(format!(
                "--logs-only: the parent snapshot has no logs of component {}; take a full or incremental backup",
                component.name
            )));
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
            "--logs-only applies to database stores (bdb, bdb-je), and this source has none".into(),
        ));
    }
    let mut manifest = ManifestWriter::create(&repo.tmp_dir())?;
    manifest.write(&Record::Snapshot(header.clone()))?;

    let committed = AtomicU64::new(0);
    let level = repo.config.compression.level;
    let (to_compress, compress_rx) = bounded::<Vec<Item>>(QUEUE_DEPTH);
    let (to_store, store_rx) = bounded::<Vec<Item>>(QUEUE_DEPTH);
    let (produced, stored) = std::thread::scope(|s| {
        let producer = s.spawn(|| produce::run(repo, jobs, &committed, to_compress, progress));
        s.spawn(move || {
            for mut batch in compress_rx {
                batch.par_iter_mut().for_each(|item| compress_item(item, level));
                if to_store.send(batch).is_err() {
                    break;
                }
            }
        });
        let stored = store::run(repo, store_rx, &mut manifest, &committed);
        (producer.join().expect("producer thread panicked"), stored)
    });
    // The store stage stops early only on its own error; report that one first.
    let mut stored = stored?;
    let produced = produced?;
    let components = std::mem::take(&mut stored.components);
    Ok((manifest, components, stored, produced))
}

fn compress_item(item: &mut Item, level: i32) {
    if let Item::Chunk { id, payload, .. } = item {
        if let Payload::Raw { seq, bytes } = std::mem::replace(payload, Payload::Known) {
            *payload = Payload::Compressed { seq, frame: pack::compress(*id, bytes, level) };
        }
    }
}
