//! Reading chunks back out of packs: found through the index, decoded, verified, and
//! for a delta decoded against its reference (which is always stored whole).
//! Shared by every reader (restore, dump, check, prune, and backup looking up the
//! reference of a new delta), from any number of threads.

use crate::compress::{self, Codec};
use crate::error::{ChunkError, ChunkErrorKind};
use crate::id::{ChunkId, PackId};
use crate::index::{ChunkTable, Location};
use crate::layout;
use crate::manifest::{ChunkRef, ChunkSource};
use crate::pack;
use crate::repo::Repository;

pub struct ChunkReader<'a> {
    repo: &'a Repository,
    chunks: ChunkTable,
}

/// File lists (manifest version 3) are chunks like any other.
impl ChunkSource for ChunkReader<'_> {
    fn read_chunk(&self, chunk: &ChunkRef) -> crate::Result<Vec<u8>> {
        let bytes = self.read(&chunk.id)?;
        if bytes.len() != chunk.len as usize {
            let what = format!("{} bytes where the manifest says {}", bytes.len(), chunk.len);
            return Err(ChunkError::corrupt(chunk.id, what).into());
        }
        Ok(bytes)
    }
}

/// A repository reads file lists through an index view taken for each chunk: a reader
/// that stays open for a whole backup (the parent's files) must not hold one.
impl ChunkSource for Repository {
    fn read_chunk(&self, chunk: &ChunkRef) -> crate::Result<Vec<u8>> {
        ChunkReader::new(self)?.read_chunk(chunk)
    }
}

impl<'a> ChunkReader<'a> {
    /// Reads through a view of the index taken now.
    pub fn new(repo: &'a Repository) -> crate::Result<ChunkReader<'a>> {
        Ok(ChunkReader { repo, chunks: repo.index.view()?.chunks()? })
    }

    pub fn repository(&self) -> &'a Repository {
        self.repo
    }

    pub fn chunks(&self) -> &ChunkTable {
        &self.chunks
    }

    /// Chunk `id`, wherever the index places it.
    pub fn read(&self, id: &ChunkId) -> Result<Vec<u8>, ChunkError> {
        let location = self.locate(id)?;
        self.read_at(id, &location)
    }

    /// Chunk `id` from `location` (as the index gave it).
    pub fn read_at(&self, id: &ChunkId, location: &Location) -> Result<Vec<u8>, ChunkError> {
        let stored = self.stored(id, location.pack, location.offset, location.stored_len);
        stored
            .and_then(|stored| self.decode(id, location.codec, location.raw_len, stored, location.reference))
            .map_err(|e| e.in_pack(location.pack, location.offset))
    }

    /// Decodes stored bytes read by the caller (from a pack it reads whole, say),
    /// reading the reference of a delta through the index.
    pub fn decode(
        &self,
        id: &ChunkId,
        codec: Codec,
        raw_len: u32,
        stored: Vec<u8>,
        reference: Option<ChunkId>,
    ) -> Result<Vec<u8>, ChunkError> {
        let reference = match (codec, reference) {
            (Codec::Delta, Some(reference)) => Some(self.read_reference(&reference).map_err(|e| {
                ChunkError::new(*id, ChunkErrorKind::ReferenceUnreadable { reference: Box::new(e) })
            })?),
            (Codec::Delta, None) => return Err(ChunkError::corrupt(*id, "a delta without a reference")),
            _ => None,
        };
        compress::decode_chunk(id, codec, raw_len, stored, reference.as_deref())
    }

    /// A reference chunk, which must be stored whole: reading a delta never needs more
    /// than two chunks.
    pub fn read_reference(&self, id: &ChunkId) -> Result<Vec<u8>, ChunkError> {
        let location = self.locate(id)?;
        if location.codec == Codec::Delta {
            let what = "a reference chunk, yet itself stored as a delta";
            return Err(ChunkError::corrupt(*id, what).in_pack(location.pack, location.offset));
        }
        self.read_at(id, &location)
    }

    /// What a new version of chunk `previous` can be stored against: `previous` itself
    /// or, when that is a delta, its reference (references are stored whole), with its
    /// bytes. `None` when it cannot be read: the new version is then stored whole, and
    /// `check` reports the damage.
    pub fn whole_version_of(&self, previous: &ChunkId) -> Option<(ChunkId, Vec<u8>)> {
        let location = self.chunks.get(previous).ok()??;
        let whole = location.reference.unwrap_or(*previous);
        self.read_reference(&whole).ok().map(|bytes| (whole, bytes))
    }

    fn locate(&self, id: &ChunkId) -> Result<Location, ChunkError> {
        self.chunks.get(id).map_err(|e| ChunkError::io(*id, e))?.ok_or_else(|| ChunkError::missing(*id))
    }

    fn stored(
        &self,
        id: &ChunkId,
        pack: PackId,
        offset: u64,
        stored_len: u32,
    ) -> Result<Vec<u8>, ChunkError> {
        pack::read_stored(self.repo.storage(), &layout::pack(&pack), offset, stored_len)
            .map_err(|e| ChunkError::io(*id, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LockMode;
    use crate::testing::{backup_tree, memory_storage, open, write_tree};

    #[test]
    fn missing_and_corrupt_chunks_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let storage = memory_storage();
        backup_tree(&open(&storage, LockMode::Append, None), &write_tree(dir.path(), 1));
        let repo = open(&storage, LockMode::Shared, None);
        let reader = ChunkReader::new(&repo).unwrap();
        let err = reader.read(&ChunkId::of(b"never stored")).unwrap_err();
        assert!(matches!(err.kind, ChunkErrorKind::Missing), "{err}");

        let mut first = None;
        reader
            .chunks()
            .for_each(|id, location| {
                first = first.or(Some((id, location)));
                Ok(())
            })
            .unwrap();
        let (id, location) = first.unwrap();
        assert!(reader.read(&id).is_ok());
        storage.corrupt(&layout::pack(&location.pack), |bytes| bytes[location.offset as usize] ^= 1);
        let err = reader.read(&id).unwrap_err();
        assert!(matches!(err.kind, ChunkErrorKind::Corrupt { .. }), "{err}");
        assert_eq!((err.pack, err.offset), (Some(location.pack), Some(location.offset)));
    }
}
