//! Reading the index: a consistent view, and the chunk table for many lookups.

use super::{builder, Location, StoredLocation, CHUNKS, INDEX_FILES, META, PACKS, REFERENCES, SNAPSHOTS};
use crate::compress::Codec;
use crate::error::{Error, Result};
use crate::format;
use crate::id::{ChunkId, IndexFileId, PackId, SnapshotId};
use crate::manifest::SnapshotSummary;
use redb::{ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// A consistent read view; lookups through it see the index as it was when it began.
pub struct IndexView<'a> {
    pub(super) txn: ReadTransaction,
    pub(super) path: &'a Path,
}

impl IndexView<'_> {
    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::index(self.path, e)
    }

    pub fn chunks(&self) -> Result<ChunkTable> {
        let table = self.txn.open_table(CHUNKS).map_err(|e| self.err(e))?;
        let references = self.txn.open_table(REFERENCES).map_err(|e| self.err(e))?;
        Ok(ChunkTable { table, references, path: self.path.to_path_buf() })
    }

    pub fn chunk_count(&self) -> Result<u64> {
        self.txn.open_table(CHUNKS).and_then(|t| Ok(t.len()?)).map_err(|e| self.err(e))
    }

    /// Every indexed pack with its size.
    pub fn packs(&self) -> Result<Vec<(PackId, u64)>> {
        let table = self.txn.open_table(PACKS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.push((PackId(k.value()), v.value()));
        }
        Ok(out)
    }

    /// The repository's index files whose content this index holds.
    pub fn index_files(&self) -> Result<HashSet<IndexFileId>> {
        let table = self.txn.open_table(INDEX_FILES).map_err(|e| self.err(e))?;
        let mut out = HashSet::new();
        for item in table.iter().map_err(|e| self.err(e))? {
            out.insert(IndexFileId(item.map_err(|e| self.err(e))?.0.value()));
        }
        Ok(out)
    }

    pub fn snapshot_summary(&self, id: &SnapshotId) -> Result<Option<SnapshotSummary>> {
        let table = self.txn.open_table(SNAPSHOTS).map_err(|e| self.err(e))?;
        let Some(bytes) = table.get(id.0).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        format::decode(bytes.value()).map(Some).map_err(|e| self.err(format!("snapshot {id}: {e}")))
    }

    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>> {
        let table = self.txn.open_table(SNAPSHOTS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in table.iter().map_err(|e| self.err(e))? {
            out.push(SnapshotId(item.map_err(|e| self.err(e))?.0.value()));
        }
        Ok(out)
    }

    /// The version the index records; `None` for a store nothing was written to.
    pub(super) fn version(&self) -> Result<Option<u64>> {
        match self.txn.open_table(META) {
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            table => {
                let meta = table.map_err(|e| self.err(e))?;
                Ok(meta.get("version").map_err(|e| self.err(e))?.map(|v| v.value()))
            }
        }
    }

    /// The indexed packs that are not `present`, each with the chunks the index places
    /// in it: what was lost when a pack file disappeared.
    pub fn gone_packs(&self, present: &HashSet<PackId>) -> Result<Vec<GonePack>> {
        let mut gone: HashMap<PackId, Vec<ChunkId>> = self
            .packs()?
            .into_iter()
            .filter(|(id, _)| !present.contains(id))
            .map(|(id, _)| (id, Vec::new()))
            .collect();
        if !gone.is_empty() {
            let table = self.txn.open_table(CHUNKS).map_err(|e| self.err(e))?;
            for item in table.iter().map_err(|e| self.err(e))? {
                let (chunk, location) = item.map_err(|e| self.err(e))?;
                if let Some(chunks) = gone.get_mut(&PackId(location.value().0)) {
                    chunks.push(ChunkId(chunk.value()));
                }
            }
        }
        let mut gone: Vec<GonePack> = gone.into_iter().map(|(id, chunks)| GonePack { id, chunks }).collect();
        gone.sort_by_key(|g| g.id);
        Ok(gone)
    }
}

/// A pack an index knew that the repository no longer holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GonePack {
    pub id: PackId,
    /// The chunks the index placed in it.
    pub chunks: Vec<ChunkId>,
}

/// `gone_packs` of an index file that another process may use: opened read-only for
/// the moment it takes, so that it tells a reader which packs have disappeared since a
/// writer last saw them. A writer that opens the file meanwhile waits (see `open`).
pub fn gone_packs_in_file(path: &Path, present: &HashSet<PackId>) -> Result<Vec<GonePack>> {
    let db = builder().open_read_only(path).map_err(|e| Error::index(path, e))?;
    let txn = db.begin_read().map_err(|e| Error::index(path, e))?;
    let view = IndexView { txn, path };
    match view.version()? {
        Some(super::INDEX_VERSION) => view.gone_packs(present),
        // Written by another cairn: its tables may mean something else.
        _ => Ok(Vec::new()),
    }
}

/// The chunk table, opened once for many lookups.
pub struct ChunkTable {
    table: redb::ReadOnlyTable<[u8; 32], StoredLocation>,
    references: redb::ReadOnlyTable<[u8; 32], [u8; 32]>,
    path: PathBuf,
}

impl ChunkTable {
    pub fn get(&self, id: &ChunkId) -> Result<Option<Location>> {
        match self.table.get(id.0).map_err(|e| Error::index(&self.path, e))? {
            Some(v) => self.location_from(id, v.value()).map(Some),
            None => Ok(None),
        }
    }

    /// The reference of chunk `id` if it is indexed as a delta: one lookup in the small
    /// references table, for walks over every chunk of a snapshot.
    pub fn reference_of(&self, id: &ChunkId) -> Result<Option<ChunkId>> {
        let found = self.references.get(id.0).map_err(|e| Error::index(&self.path, e))?;
        Ok(found.map(|r| ChunkId(r.value())))
    }

    fn location_from(&self, id: &ChunkId, value: StoredLocation) -> Result<Location> {
        let (pack, offset, stored_len, raw_len, codec) = value;
        let codec = Codec::from_byte(codec)
            .ok_or_else(|| Error::index(&self.path, format!("unknown codec {codec}")))?;
        let reference = match codec {
            Codec::Delta => {
                let found = self.references.get(id.0).map_err(|e| Error::index(&self.path, e))?;
                let reference = found.ok_or_else(|| {
                    Error::index(&self.path, format!("chunk {id} is a delta without a reference"))
                })?;
                Some(ChunkId(reference.value()))
            }
            _ => None,
        };
        Ok(Location { pack: PackId(pack), offset, stored_len, raw_len, codec, reference })
    }

    pub fn contains(&self, id: &ChunkId) -> Result<bool> {
        Ok(self.table.get(id.0).map_err(|e| Error::index(&self.path, e))?.is_some())
    }

    /// Visits every chunk id in id order, without decoding locations.
    pub fn for_each_id(&self, mut f: impl FnMut(ChunkId)) -> Result<()> {
        for item in self.table.iter().map_err(|e| Error::index(&self.path, e))? {
            f(ChunkId(item.map_err(|e| Error::index(&self.path, e))?.0.value()));
        }
        Ok(())
    }

    /// Visits every chunk in id order without holding them all in memory.
    pub fn for_each(&self, mut f: impl FnMut(ChunkId, Location) -> Result<()>) -> Result<()> {
        for item in self.table.iter().map_err(|e| Error::index(&self.path, e))? {
            let (k, v) = item.map_err(|e| Error::index(&self.path, e))?;
            let id = ChunkId(k.value());
            f(id, self.location_from(&id, v.value())?)?;
        }
        Ok(())
    }
}
