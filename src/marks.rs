//! Which chunks the snapshots reference, and how many of them reference each, kept in a
//! temporary redb file: marking every chunk of a repository of millions takes the same
//! little memory as marking a few (prune and stats need this; the set itself can be
//! larger than memory). The file is deleted when the marks are dropped.

use crate::error::{Error, Result};
use crate::id::{ChunkId, SnapshotId};
use crate::index::ChunkTable;
use crate::manifest::{ManifestReader, Record};
use crate::repo::Repository;
use crate::Progress;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};

/// chunk id -> (snapshots that reference it, the last of them to do so)
const MARKS: TableDefinition<[u8; 32], (u32, u32)> = TableDefinition::new("marks");
/// Ids buffered before a write transaction.
const BATCH: usize = 1 << 16;
const CACHE: usize = 16 << 20;

pub struct ChunkMarks {
    db: Database,
    path: PathBuf,
    pending: Vec<ChunkId>,
    /// The snapshot whose chunks are being marked.
    owner: u32,
}

impl ChunkMarks {
    pub fn create(tmp_dir: &Path) -> Result<ChunkMarks> {
        std::fs::create_dir_all(tmp_dir).map_err(|e| Error::io(tmp_dir, e))?;
        let path = crate::storage::local::temp_path(tmp_dir, "marks");
        let db =
            Database::builder().set_cache_size(CACHE).create(&path).map_err(|e| Error::index(&path, e))?;
        let marks = ChunkMarks { db, path, pending: Vec::new(), owner: 0 };
        // Creates the table, so that a view of no marks finds it.
        marks.write(|_| Ok(()))?;
        Ok(marks)
    }

    /// Marks that follow belong to snapshot `owner` (numbered by the caller).
    pub fn begin_snapshot(&mut self, owner: u32) -> Result<()> {
        self.flush()?;
        self.owner = owner;
        Ok(())
    }

    /// Marks every chunk of snapshot `id` as referenced by `owner` (numbered by the
    /// caller): its file lists' and its files', and the reference of each stored as a
    /// delta, which the snapshot needs as much. Reading the manifest to its end checks
    /// its hash: a damaged one is an error, not a partial mark.
    pub fn add_snapshot(
        &mut self,
        repo: &Repository,
        id: &SnapshotId,
        owner: u32,
        chunks: &ChunkTable,
        progress: &dyn Progress,
    ) -> Result<()> {
        self.begin_snapshot(owner)?;
        let mut reader = ManifestReader::open(repo.storage(), id, repo)?;
        while let Some(record) = reader.next_record()? {
            match record {
                Record::File(entry) => {
                    for chunk in &entry.chunks {
                        self.add_with_reference(chunk.id, chunks)?;
                    }
                    progress.advance(1, entry.size);
                }
                Record::FileList(list) => {
                    for chunk in &list {
                        self.add_with_reference(chunk.id, chunks)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn add_with_reference(&mut self, id: ChunkId, chunks: &ChunkTable) -> Result<()> {
        self.add(id)?;
        match chunks.reference_of(&id)? {
            Some(reference) => self.add(reference),
            None => Ok(()),
        }
    }

    pub fn add(&mut self, id: ChunkId) -> Result<()> {
        self.pending.push(id);
        if self.pending.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut ids = std::mem::take(&mut self.pending);
        ids.sort_unstable();
        ids.dedup();
        let owner = self.owner;
        self.write(|table| {
            for id in &ids {
                let count = match table.get(id.0)?.map(|v| v.value()) {
                    None => Some(1),
                    Some((count, last)) if last != owner => Some(count + 1),
                    Some(_) => None,
                };
                if let Some(count) = count {
                    table.insert(id.0, (count, owner))?;
                }
            }
            Ok(())
        })?;
        self.pending = ids;
        self.pending.clear();
        Ok(())
    }

    fn write(
        &self,
        f: impl FnOnce(&mut redb::Table<[u8; 32], (u32, u32)>) -> Result<(), redb::StorageError>,
    ) -> Result<()> {
        let index_err = |e: &dyn std::fmt::Display| Error::index(&self.path, e.to_string());
        let mut txn = self.db.begin_write().map_err(|e| index_err(&e))?;
        // A scratch file: nothing in it needs to survive a crash.
        txn.set_durability(Durability::None).map_err(|e| index_err(&e))?;
        {
            let mut table = txn.open_table(MARKS).map_err(|e| index_err(&e))?;
            f(&mut table).map_err(|e| index_err(&e))?;
        }
        txn.commit().map_err(|e| index_err(&e))
    }

    /// Everything marked so far, for lookups.
    pub fn view(&mut self) -> Result<MarksView> {
        self.flush()?;
        let index_err = |e: &dyn std::fmt::Display| Error::index(&self.path, e.to_string());
        let txn = self.db.begin_read().map_err(|e| index_err(&e))?;
        let table = txn.open_table(MARKS).map_err(|e| index_err(&e))?;
        Ok(MarksView { table, path: self.path.clone() })
    }
}

impl Drop for ChunkMarks {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub struct MarksView {
    table: redb::ReadOnlyTable<[u8; 32], (u32, u32)>,
    path: PathBuf,
}

impl MarksView {
    /// How many snapshots reference `id`, and the last of them; `None` when none does.
    pub fn get(&self, id: &ChunkId) -> Result<Option<(u32, u32)>> {
        Ok(self.table.get(id.0).map_err(|e| Error::index(&self.path, e))?.map(|v| v.value()))
    }

    /// Every marked chunk with its count and last referencing snapshot, in id order.
    pub fn for_each(&self, mut f: impl FnMut(ChunkId, u32, u32) -> Result<()>) -> Result<()> {
        for item in self.table.iter().map_err(|e| Error::index(&self.path, e))? {
            let (k, v) = item.map_err(|e| Error::index(&self.path, e))?;
            let (count, last) = v.value();
            f(ChunkId(k.value()), count, last)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_snapshot_once_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (ChunkId::of(b"a"), ChunkId::of(b"b"));
        let mut marks = ChunkMarks::create(dir.path()).unwrap();
        marks.begin_snapshot(0).unwrap();
        for id in [a, a, b] {
            marks.add(id).unwrap();
        }
        marks.begin_snapshot(1).unwrap();
        marks.add(a).unwrap();
        let view = marks.view().unwrap();
        assert_eq!(view.get(&a).unwrap(), Some((2, 1)));
        assert_eq!(view.get(&b).unwrap(), Some((1, 0)));
        assert_eq!(view.get(&ChunkId::of(b"c")).unwrap(), None);
        drop(view);
        drop(marks);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
