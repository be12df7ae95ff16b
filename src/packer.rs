//! Filling packs: frames go into the open pack until it reaches the repository's
//! `pack_target`, and a finished pack is made durable before it is handed to be indexed.
//! Shared by backup (each pack indexed at once) and prune (repacked packs indexed in batches).

use crate::compress::Frame;
use crate::error::Result;
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
    /// the pack has reached the target size: the caller then `finish`es it (after
    /// noting what the frame belongs to, which `finish` makes safe).
    pub fn add(&mut self, frame: &Frame) -> Result<bool> {
        let pack = match &mut self.open {
            Some(pack) => pack,
            None => self.open.insert(PackWriter::create(self.repo.storage())?),
        };
        pack.add(frame)?;
        Ok(pack.len() >= self.repo.config.pack_target)
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
