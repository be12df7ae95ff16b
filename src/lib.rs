//! cairn: a content-addressed, deduplicating archive for database stores and file trees.
//!
//! ```text
//! backup:  walk (store type: which files, what order) -> read (64 KiB multiples)
//!          -> chunk (FastCDC) -> id (BLAKE3) -> dedup (index) -> compress (zstd, or a
//!          delta against the parent's chunk at the same offset)
//!          -> pack writer -> packs durable -> index commit -> manifest (snapshot exists)
//! restore: manifest -> chunk refs -> index -> pack reads (and a delta's reference)
//!          -> decompress -> verify id -> write
//! ```
//! The on-disk format is specified in `format-spec/`; `format` holds its constants.

pub mod backup;
pub mod check;
pub mod chunk_reader;
pub mod chunker;
pub mod compress;
pub mod config;
pub mod diff;
pub mod error;
pub mod forget;
pub mod format;
pub mod id;
pub mod index;
pub mod layout;
pub mod manifest;
pub mod marks;
pub mod pack;
pub mod packer;
pub mod plan;
pub mod prune;
pub mod reindex;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod stats;
pub mod storage;
pub mod stores;
#[cfg(test)]
mod testing;
pub mod time;
pub mod walk;

pub use error::{Error, Result};
pub use id::{ChunkId, PackId, SnapshotId};
pub use repo::Repository;

/// Written into every snapshot header.
pub const CLIENT: &str = concat!("cairn ", env!("CARGO_PKG_VERSION"));

/// Receives progress of long operations; the library never prints.
pub trait Progress: Sync {
    /// `files` more entries and `bytes` more bytes are done.
    fn advance(&self, _files: u64, _bytes: u64) {}
}

/// For callers that do not show progress.
pub struct NoProgress;
impl Progress for NoProgress {}

pub fn hostname() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "unknown".into())
}
