//! Filling packs: frames go into the open pack until it reaches the repository's
//! `pack_target` or holds `MAX_PACK_ENTRIES` chunks, and a finished pack is made durable before it is handed to be indexed.
//! Shared by backup (each pack indexed at once) and prune (repacked packs indexed in batches).

use crate::compress::Frame;
use crate::error::Result;
use crate::format::MAX_PACK_ENTRIES;
use crate::pack::{FinishedPack, PackWriter};
use crate::repo::Repository;

/// The pack being filled. A pack is indexed only once durable: `finish` makes it durable
/// under its id before the caller's indexing step sees it, so an index never names
/// a pack that a crash could lose.
pub struct Packer<'a> {
    repo: &'a Repository,
    open: Option<PackWriter<'a>>,
}

impl<'a> Packer<'a> {
    pub fn new(repo: &'a Repository) -> Packer<'a> {
        Packer { repo, open: None }
    }

    /// Appends `frame` to the open pack, opening one if there is none. Returns whether
    /// the pack has reached the target size or entry count: the caller then `finish`es it (after
    /// noting what the frame belongs to, which `finish` makes safe).
    pub fn add(&mut self, frame: &Frame) -> Result<bool> {
        let pack = match &mut self.open {
            Some(pack) => pack,
            None => self.open.insert(PackWriter::create(self.repo.storage())?),
        };
        pack.add(frame)?;
        Ok(pack.len() >= self.repo.config.pack_target || pack.entry_count() >= MAX_PACK_ENTRIES)
    }

    /// The open pack, if it holds any chunk, for the caller to finish (elsewhere).
    pub fn close(&mut self) -> Option<PackWriter<'a>> {
        self.open.take().filter(|pack| !pack.is_empty())
    }

    /// Makes the open pack, if it holds any chunk, durable under its id and then hands
    /// it to `index`; every frame added so far is then stored for good (indexed once
    /// `index` has done its part).
    pub fn finish(&mut self, index: impl FnOnce(FinishedPack) -> Result<()>) -> Result<()> {
        match self.open.take().filter(|pack| !pack.is_empty()) {
            Some(pack) => index(pack.finish()?),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::compress;
    use crate::id::ChunkId;
    use crate::storage::LockMode;
    use crate::testing::{memory_storage, open};

    /// Regression (issue 18): 32 MiB of 25-byte files made one pack of over a million
    /// entries, all held in memory until the pack was indexed.
    #[test]
    fn a_pack_of_small_chunks_closes_at_the_entry_limit() {
        let storage = memory_storage();
        let repo = open(&storage, LockMode::Append, None);
        let mut packer = Packer::new(&repo);
        for i in 0..MAX_PACK_ENTRIES {
            let raw = (i as u64).to_le_bytes().to_vec();
            let full = packer.add(&compress(ChunkId::of(&raw), raw, 3)).unwrap();
            assert_eq!(full, i + 1 == MAX_PACK_ENTRIES, "after {} entries", i + 1);
        }
        let mut count = 0;
        packer
            .finish(|pack| {
                count = pack.entries.len();
                Ok(())
            })
            .unwrap();
        assert_eq!(count, MAX_PACK_ENTRIES);
    }
}
