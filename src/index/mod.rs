//! The redb index: where each chunk lives, which packs exist, and a summary of each
//! snapshot. A cache of what packs and manifests say: `reindex` brings it up to date.

use crate::compress::Codec;
use crate::error::{Error, Hint, Result};
use crate::format;
use crate::id::{ChunkId, IndexFileId, PackId, SnapshotId};
use crate::manifest::SnapshotSummary;
use crate::pack::{FinishedPack, PackEntry};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};

mod view;
pub use view::{gone_packs_in_file, ChunkTable, GonePack, IndexView};

/// (pack id, offset, stored length, raw length, codec)
type StoredLocation = ([u8; 32], u64, u32, u32, u8);
/// chunk id -> where it is stored
const CHUNKS: TableDefinition<[u8; 32], StoredLocation> = TableDefinition::new("chunks");
/// chunk id -> the reference chunk it is decoded against, for chunks stored as deltas
const REFERENCES: TableDefinition<[u8; 32], [u8; 32]> = TableDefinition::new("references");
/// pack id -> file size
const PACKS: TableDefinition<[u8; 32], u64> = TableDefinition::new("packs");
/// index file id -> its size: the repository's index files this index holds
const INDEX_FILES: TableDefinition<[u8; 32], u64> = TableDefinition::new("index_files");
/// snapshot id -> bincode(SnapshotSummary)
const SNAPSHOTS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("snapshots");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Bumped whenever the tables change meaning; an index of another version is rebuilt.
/// 2: snapshot summaries as in manifest version 2.
/// 3: the references of chunks stored as deltas.
/// 4: the index files read; packs without a chunk count.
const INDEX_VERSION: u64 = 4;

/// redb's page cache. Its default (1 GiB) would let memory grow with the repository;
/// lookups by random chunk id gain little from a larger cache anyway. 8 MiB holds the
/// branch pages of an index of several million chunks. (A backup asks which chunks
/// exist from memory, `backup::known`; the cache and the pages it churns through were
/// over half of the memory of a first backup of a million small files.)
const CACHE_BYTES: usize = 8 << 20;

/// An index file smaller than this is never worth compacting.
const COMPACT_ABOVE: u64 = 1 << 20;

fn builder() -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(CACHE_BYTES);
    builder
}

/// The index cache a client keeps of repository `repository_id` under `cache_dir`: one
/// directory per repository.
pub fn cache_path(cache_dir: &Path, repository_id: &[u8; 32]) -> PathBuf {
    cache_dir.join(crate::id::to_hex(repository_id)).join(crate::layout::LOCAL_INDEX)
}

/// Where a chunk is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: PackId,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    pub codec: Codec,
    /// For `Codec::Delta`: the chunk to decode against.
    pub reference: Option<ChunkId>,
}

pub struct Index {
    db: Database,
    path: PathBuf,
    /// The file's size when opened: a session that grew it by half is worth compacting.
    /// `None` for an index that is not a file of its own.
    opened_size: Option<u64>,
}

fn stored_location(pack: &PackId, e: &PackEntry) -> StoredLocation {
    (pack.0, e.offset, e.stored_len, e.raw_len, e.codec as u8)
}

/// Records where `e` lives, with its reference if it is a delta.
fn put_location(
    chunks: &mut redb::Table<[u8; 32], StoredLocation>,
    references: &mut redb::Table<[u8; 32], [u8; 32]>,
    pack: &PackId,
    e: &PackEntry,
) -> Result<(), redb::Error> {
    chunks.insert(e.id.0, stored_location(pack, e))?;
    match e.reference {
        Some(reference) => references.insert(e.id.0, reference.0)?,
        None => references.remove(e.id.0)?,
    };
    Ok(())
}

/// Drops every chunk location in `gone` packs, and every delta whose reference was
/// among them: without its reference a delta cannot be read either.
fn drop_locations(
    txn: &redb::WriteTransaction,
    gone: &std::collections::HashSet<PackId>,
) -> Result<(), redb::Error> {
    let mut chunks = txn.open_table(CHUNKS)?;
    chunks.retain(|_, location| !gone.contains(&PackId(location.0)))?;
    let mut references = txn.open_table(REFERENCES)?;
    let mut orphans = Vec::new();
    for item in references.iter()? {
        let (delta, reference) = item?;
        let delta_gone = chunks.get(delta.value())?.is_none_or(|l| l.value().4 != Codec::Delta as u8);
        let reference_whole =
            chunks.get(reference.value())?.is_some_and(|l| l.value().4 != Codec::Delta as u8);
        if delta_gone || !reference_whole {
            orphans.push(delta.value());
        }
    }
    for delta in orphans {
        references.remove(delta)?;
        if chunks.get(delta)?.is_some_and(|l| l.value().4 == Codec::Delta as u8) {
            chunks.remove(delta)?;
        }
    }
    let mut packs = txn.open_table(PACKS)?;
    for pack in gone {
        packs.remove(pack.0)?;
    }
    Ok(())
}

impl Index {
    /// Creates a new, empty index at `path`.
    pub fn create(path: &Path) -> Result<Index> {
        let db = builder().create(path).map_err(|e| Error::index(path, e))?;
        Index::initialized(Index { db, path: path.to_path_buf(), opened_size: Some(0) })
    }

    /// An index in `backend` (memory, or a crash test's file), new or as left there;
    /// `name` stands for it in messages.
    pub fn with_backend(backend: impl redb::StorageBackend, name: &str) -> Result<Index> {
        let path = PathBuf::from(name);
        let db = builder().create_with_backend(backend).map_err(|e| Error::index(&path, e))?;
        let index = Index { db, path, opened_size: None };
        match index.version()? {
            None => Index::initialized(index),
            Some(_) => index.checked_version(),
        }
    }

    /// A new, empty index in memory, for a reader that may write nowhere.
    pub fn in_memory() -> Result<Index> {
        Index::with_backend(redb::backends::InMemoryBackend::new(), "in-memory index")
    }

    fn initialized(index: Index) -> Result<Index> {
        index.write(|txn| {
            txn.open_table(CHUNKS)?;
            txn.open_table(REFERENCES)?;
            txn.open_table(PACKS)?;
            txn.open_table(INDEX_FILES)?;
            txn.open_table(SNAPSHOTS)?;
            txn.open_table(META)?.insert("version", INDEX_VERSION)?;
            Ok(())
        })?;
        Ok(index)
    }

    /// Opens an existing index file, recovering it if a killed writer left it open.
    /// Only one process at a time may have it open: while another has, this waits up
    /// to `wait` (a reader looks into a writer's file for a moment, `gone_packs_in_file`),
    /// then fails as `Locked`.
    pub fn open(path: &Path, wait: std::time::Duration) -> Result<Index> {
        if !path.exists() {
            return Err(Error::index(path, "missing").with_hint(Hint::RepairIndex));
        }
        let deadline = std::time::Instant::now() + wait;
        let db = loop {
            match builder().open(path) {
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                    let holder = "another process that has its index open".to_string();
                    return Err(Error::Locked { path: path.to_path_buf(), holder });
                }
                other => break other,
            }
        }
        .map_err(|e| Error::index(path, e).with_hint(Hint::RepairIndex))?;
        let opened_size = Some(std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len());
        Index { db, path: path.to_path_buf(), opened_size }.checked_version()
    }

    /// The version the index records; `None` for a store nothing was written to.
    fn version(&self) -> Result<Option<u64>> {
        self.view()?.version()
    }

    fn checked_version(self) -> Result<Index> {
        match self.version()? {
            Some(INDEX_VERSION) => Ok(self),
            Some(older) if older < INDEX_VERSION => Err(Error::IndexOutdated { path: self.path }),
            _ => Err(Error::index(&self.path, "unknown index version")),
        }
    }

    /// Gives back the space that copy-on-write commits left free inside the file, once
    /// this session has grown it by half: a backup commits once per pack, each commit of
    /// random chunk ids rewrites most of the tree, and a freed page is reused only once
    /// no reader needs it, so a first backup of 30,000 chunks leaves 33.7 MB for 3.6 MB
    /// of tables. A session that added little (a no-change backup) is not worth reading
    /// the whole file for. redb's `compact` moves pages down only until one does not fit
    /// lower, so it cannot always help; the free pages are then reused by later
    /// commits. Needs no other transaction open. Returns whether it compacted.
    pub fn compact_if_grown(&mut self) -> Result<bool> {
        let Some(opened_size) = self.opened_size else {
            return Ok(false);
        };
        let path = &self.path;
        let size = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
        if size < COMPACT_ABOVE || size < opened_size + opened_size / 2 {
            return Ok(false);
        }
        self.compact()
    }

    /// Compacts the index now, whatever its size (`compact_if_grown` decides when it
    /// is worth it). Returns whether anything moved.
    pub fn compact(&mut self) -> Result<bool> {
        self.db.compact().map_err(|e| Error::index(&self.path, e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn view(&self) -> Result<IndexView<'_>> {
        let txn = self.db.begin_read().map_err(|e| Error::index(&self.path, e))?;
        Ok(IndexView { txn, path: &self.path })
    }

    fn write(&self, f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>) -> Result<()> {
        let txn = self.db.begin_write().map_err(|e| Error::index(&self.path, e))?;
        f(&txn).map_err(|e| Error::index(&self.path, e))?;
        txn.commit().map_err(|e| Error::index(&self.path, e))
    }

    /// Records a durable pack and its chunks in one transaction. A chunk already indexed
    /// keeps its location unless that is a delta and this copy is whole; a delta is
    /// indexed only while its reference is indexed whole (see `insert_pack`). Copies not
    /// indexed are dead weight that prune may reclaim.
    pub fn add_pack(&self, pack: &PackId, size: u64, entries: &[PackEntry]) -> Result<()> {
        self.write(|txn| insert_pack(txn, pack, size, entries, &mut Vec::new()))
    }

    /// Packs found on disk (rebuilding, or ones a killed writer did not index), in one
    /// transaction. A delta whose reference is in a pack not yet added is held back:
    /// callers add every pack again once all are in.
    pub fn add_packs(&self, packs: &[(PackId, u64, Vec<PackEntry>)]) -> Result<()> {
        self.write(|txn| {
            for (pack, size, entries) in packs {
                insert_pack(txn, pack, *size, entries, &mut Vec::new())?;
            }
            Ok(())
        })
    }

    /// Records what an index file says about `packs` (those of its packs that the
    /// repository holds) and that the file was read, in one transaction. Returns the
    /// deltas held back because their reference is not indexed yet: the caller adds them
    /// with `add_held_back` once every file is in.
    pub fn add_index_file(
        &self,
        file: &IndexFileId,
        size: u64,
        packs: &[&(PackId, u64, Vec<PackEntry>)],
    ) -> Result<Vec<(PackId, PackEntry)>> {
        let mut held_back = Vec::new();
        self.write(|txn| {
            for (pack, size, entries) in packs {
                insert_pack(txn, pack, *size, entries, &mut held_back)?;
            }
            txn.open_table(INDEX_FILES)?.insert(file.0, size)?;
            Ok(())
        })?;
        Ok(held_back)
    }

    /// Indexes deltas that `add_index_file` held back, now that their references may be
    /// in; those whose reference is still missing are dead copies and stay out.
    pub fn add_held_back(&self, deltas: &[(PackId, PackEntry)]) -> Result<()> {
        self.write(|txn| {
            let mut chunks = txn.open_table(CHUNKS)?;
            let mut references = txn.open_table(REFERENCES)?;
            for (pack, entry) in deltas {
                if should_insert(&chunks, entry)? {
                    put_location(&mut chunks, &mut references, pack, entry)?;
                }
            }
            Ok(())
        })
    }

    /// Forgets every chunk, pack and index file, keeping the snapshots: for an index
    /// that saw packs go, which is filled again from the index files and pack tables.
    pub fn clear_packs(&self) -> Result<()> {
        self.write(|txn| {
            txn.open_table(CHUNKS)?.retain(|_, _| false)?;
            txn.open_table(REFERENCES)?.retain(|_, _| false)?;
            txn.open_table(PACKS)?.retain(|_, _| false)?;
            txn.open_table(INDEX_FILES)?.retain(|_, _| false)?;
            Ok(())
        })
    }

    /// Forgets packs that are gone from disk (or that prune is about to delete), every
    /// chunk location in them, and every delta whose reference was there: no backup may
    /// deduplicate against what cannot be read. Scans the chunk table.
    pub fn drop_packs(&self, gone: &std::collections::HashSet<PackId>) -> Result<()> {
        self.write(|txn| drop_locations(txn, gone))
    }

    /// Records packs that prune wrote, moving the locations of their chunks into them
    /// (the copies in the old packs become dead). Called once the packs are durable.
    pub fn add_repacked(&self, new: &[FinishedPack]) -> Result<()> {
        self.write(|txn| {
            let mut chunks = txn.open_table(CHUNKS)?;
            let mut references = txn.open_table(REFERENCES)?;
            let mut packs = txn.open_table(PACKS)?;
            for pack in new {
                for e in &pack.entries {
                    put_location(&mut chunks, &mut references, &pack.id, e)?;
                }
                packs.insert(pack.id.0, pack.size)?;
            }
            Ok(())
        })
    }

    pub fn add_snapshot(&self, summary: &SnapshotSummary) -> Result<()> {
        let bytes = format::encode(summary);
        self.write(|txn| {
            txn.open_table(SNAPSHOTS)?.insert(summary.id.0, bytes.as_slice())?;
            Ok(())
        })
    }

    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.write(|txn| {
            txn.open_table(SNAPSHOTS)?.remove(id.0)?;
            Ok(())
        })
    }
}

fn insert_pack(
    txn: &redb::WriteTransaction,
    pack: &PackId,
    size: u64,
    entries: &[PackEntry],
    held_back: &mut Vec<(PackId, PackEntry)>,
) -> Result<(), redb::Error> {
    let mut chunks = txn.open_table(CHUNKS)?;
    let mut references = txn.open_table(REFERENCES)?;
    // In pack order, not key order: inserting each pack's chunks sorted visits every
    // leaf once, but leaves them half full. On a million small files the index was 241
    // MB instead of 120 MB (10.3 MB instead of 4.7 MB after an incremental of a 1 GB
    // Berkeley DB environment), for a first backup that was 30% faster in one pair of
    // runs on disk and no faster on tmpfs (benches/million-files.sh: 13.7 s against
    // 13.9 s); while the index lives in the repository, its size wins.
    for e in entries {
        if should_insert(&chunks, e)? {
            put_location(&mut chunks, &mut references, pack, e)?;
        } else if e.reference.is_some() && chunks.get(e.id.0)?.is_none() {
            held_back.push((*pack, *e));
        }
    }
    txn.open_table(PACKS)?.insert(pack.0, size)?;
    Ok(())
}

/// Whatever order copies are found in, a reference is found whole, and a delta is
/// indexed only with its reference: a whole copy replaces a delta, and a delta waits for
/// its reference (a copy prune left behind after removing the reference is never
/// indexed again).
fn should_insert(chunks: &redb::Table<[u8; 32], StoredLocation>, e: &PackEntry) -> Result<bool, redb::Error> {
    let indexed_delta =
        |id: &ChunkId| Ok::<_, redb::Error>(chunks.get(id.0)?.map(|l| l.value().4 == Codec::Delta as u8));
    Ok(match (indexed_delta(&e.id)?, e.reference) {
        (None, Some(reference)) => indexed_delta(&reference)? == Some(false),
        (None, None) => true,
        (Some(old_is_delta), _) => old_is_delta && e.codec != Codec::Delta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_entries_are_found_and_first_location_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let index = Index::create(&path).unwrap();
        let id = ChunkId::of(b"x");
        let entry =
            PackEntry { id, offset: 16, stored_len: 1, raw_len: 1, codec: Codec::Raw, reference: None };
        index.add_pack(&PackId::of(b"p1"), 100, &[entry]).unwrap();
        index.add_pack(&PackId::of(b"p2"), 100, &[PackEntry { offset: 99, ..entry }]).unwrap();
        drop(index);
        let index = Index::open(&path, std::time::Duration::ZERO).unwrap();
        let view = index.view().unwrap();
        let loc = view.chunks().unwrap().get(&id).unwrap().unwrap();
        assert_eq!((loc.pack, loc.offset), (PackId::of(b"p1"), 16));
        assert!(!view.chunks().unwrap().contains(&ChunkId::of(b"y")).unwrap());
        assert_eq!(view.packs().unwrap().len(), 2);
        assert_eq!(view.chunk_count().unwrap(), 1);
    }

    #[test]
    fn a_delta_is_indexed_only_with_its_reference_whole_and_a_whole_copy_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::create(&dir.path().join("index.redb")).unwrap();
        let (id, reference) = (ChunkId::of(b"new"), ChunkId::of(b"old"));
        let delta = PackEntry {
            id,
            offset: 16,
            stored_len: 1,
            raw_len: 3,
            codec: Codec::Delta,
            reference: Some(reference),
        };
        let whole = PackEntry { codec: Codec::Zstd, reference: None, offset: 40, ..delta };
        let get = |index: &Index| index.view().unwrap().chunks().unwrap().get(&id).unwrap();
        // Held back while its reference is not indexed.
        index.add_pack(&PackId::of(b"p1"), 100, &[delta]).unwrap();
        assert_eq!(get(&index), None);
        index.add_pack(&PackId::of(b"p0"), 100, &[PackEntry { id: reference, ..whole }]).unwrap();
        index.add_pack(&PackId::of(b"p1"), 100, &[delta]).unwrap();
        let location = get(&index).unwrap();
        assert_eq!((location.codec, location.reference), (Codec::Delta, Some(reference)));
        // A whole copy wins, whatever the order.
        index.add_pack(&PackId::of(b"p2"), 100, &[whole]).unwrap();
        index.add_pack(&PackId::of(b"p3"), 100, &[delta]).unwrap();
        let location = get(&index).unwrap();
        assert_eq!(
            (location.pack, location.codec, location.reference),
            (PackId::of(b"p2"), Codec::Zstd, None)
        );
        index.drop_packs(&[PackId::of(b"p2")].into()).unwrap();
        assert_eq!(get(&index), None);
        // A delta whose reference is lost is lost as well.
        index.add_pack(&PackId::of(b"p3"), 100, &[delta]).unwrap();
        assert!(get(&index).is_some());
        index.drop_packs(&[PackId::of(b"p0")].into()).unwrap();
        assert_eq!(get(&index), None);
    }

    #[test]
    fn missing_index_names_the_repair() {
        let dir = tempfile::tempdir().unwrap();
        let err = Index::open(&dir.path().join("index.redb"), std::time::Duration::ZERO).err().unwrap();
        assert!(err.to_string().contains("missing"));
        assert_eq!(err.hint(), Some(Hint::RepairIndex));
    }
}
