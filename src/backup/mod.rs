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

mod parent;
mod produce;
mod store;

use crate::error::{Error, Result};
use crate::id::{ChunkId, SnapshotId};
use crate::manifest::{
    ComponentHeader, ComponentSummary, FileEntry, ManifestWriter, Record, SnapshotHeader, SnapshotKind,
    SnapshotSummary, Timestamp,
};
use crate::pack::{self, Frame};
use crate::repo::Repository;
use crate::stores::StoreType;
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
    /// Read every file even when the parent snapshot says it is unchanged.
    pub full: bool,
    /// The store type; `None` recognises it from the directory's contents.
    pub store_type: Option<StoreType>,
    /// Assert that the store is not running, and record the copy as offline.
    pub offline: bool,
}

pub struct BackupReport {
    pub summary: SnapshotSummary,
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

/// Backs up `source` as one component of its store type and returns the new snapshot.
/// For `dir`, files that cannot be read are reported in the snapshot (marked
/// incomplete); a database store's copy must be complete, so there any read error, like
/// any repository error, fails the backup and writes no snapshot.
pub fn backup(
    repo: &Repository,
    source: &Path,
    options: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let root = source.canonicalize().map_err(|e| Error::io(source, e))?;
    let name = component_name(&root);
    let parent = match options.full {
        true => None,
        false => repo.latest_in_set(&options.set)?,
    };
    let header = SnapshotHeader {
        time: Timestamp::now(),
        host: options.host.clone(),
        set: options.set.clone(),
        tags: options.tags.clone(),
        parent: parent.as_ref().map(|p| p.id),
        kind: if parent.is_some() { SnapshotKind::Incremental } else { SnapshotKind::Full },
        client: crate::CLIENT.to_string(),
    };
    let store_type = options.store_type.unwrap_or_else(|| StoreType::detect(&root));
    let mut files = store_type.open(&root, options.offline)?;
    let component = ComponentHeader {
        name: name.clone(),
        store_type: store_type.name().into(),
        source: root.as_os_str().as_bytes().to_vec(),
    };
    let mut manifest = ManifestWriter::create(&repo.tmp_dir())?;
    manifest.write(&Record::Snapshot(header.clone()))?;
    manifest.write(&Record::Component(component.clone()))?;
    let parent_files = match &parent {
        Some(p) => Some(parent::ParentFiles::open(repo, p, &name, store_type == StoreType::Dir)?),
        None => None,
    };

    let committed = AtomicU64::new(0);
    let level = repo.config.compression.level;
    let (to_compress, compress_rx) = bounded::<Vec<Item>>(QUEUE_DEPTH);
    let (to_store, store_rx) = bounded::<Vec<Item>>(QUEUE_DEPTH);
    let (produced, stored) = std::thread::scope(|s| {
        let producer =
            s.spawn(|| produce::run(repo, files.as_mut(), parent_files, &committed, to_compress, progress));
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
    let stored = stored?;
    let produced = produced?;

    let component =
        ComponentSummary { header: component, trailer: stored.component_trailer(files.report())? };
    manifest.write(&Record::ComponentEnd(component.trailer.clone()))?;
    let trailer = stored.snapshot_trailer(produced);
    manifest.write(&Record::End(trailer.clone()))?;
    let id = manifest.finish(&repo.snapshots_dir())?;
    let summary = SnapshotSummary { id, header, components: vec![component], trailer };
    repo.index.add_snapshot(&summary)?;
    Ok(BackupReport { summary })
}

fn compress_item(item: &mut Item, level: i32) {
    if let Item::Chunk { id, payload, .. } = item {
        if let Payload::Raw { seq, bytes } = std::mem::replace(payload, Payload::Known) {
            *payload = Payload::Compressed { seq, frame: pack::compress(*id, bytes, level) };
        }
    }
}

/// A component is named after the last element of its path (`/` is "root").
fn component_name(root: &Path) -> String {
    root.file_name().map_or_else(|| "root".to_string(), |name| name.to_string_lossy().into_owned())
}
