//! cairn: a content-addressed, deduplicating archive for database stores and file trees.
//!
//! ```text
//! backup:  plan (store type: which files, what order)      stores/, walk
//!          -> read (64 KiB multiples) -> chunk (FastCDC)    backup/produce, chunker
//!          -> id (BLAKE3) -> dedup (index)                  backup/produce, index
//!          -> compress (zstd, or a delta against the        backup/compress, compress
//!             parent's chunk at the same offset)
//!          -> pack -> packs durable -> index commit         backup/store, packer, pack
//!          -> manifest (the snapshot exists)                manifest/writer
//! restore: manifest -> chunk refs -> index -> pack reads    restore/, manifest/reader
//!          (and a delta's reference) -> decompress          chunk_reader, compress
//!          -> verify id -> write                            restore/files
//! ```
//! Every object is read and written through `storage` (a local directory, memory, or a
//! fault-injecting layer for crash tests), named by `layout`. The on-disk format is
//! specified in `format-spec/`; `format` holds its constants.
//!
//! The public modules are the API: the commands (`backup`, `restore`, `check`, `prune`,
//! `forget`, `stats`, `diff`, `reindex`), the repository and its storage, and the
//! format's pieces that tests and independent tools read (`manifest`, `pack`,
//! `compress`, `chunker`, `config`, `layout`, `index`).

pub mod backup;
pub mod check;
mod chunk_reader;
pub mod chunker;
pub mod compress;
pub mod config;
pub mod copy;
pub mod diff;
pub mod error;
pub mod forget;
mod format;
pub mod id;
pub mod index;
pub mod index_file;
pub mod layout;
pub mod manifest;
mod marks;
pub mod pack;
mod packer;
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
mod walk;

pub use error::{Error, Hint, Result};
pub use id::{ChunkId, PackId, SnapshotId};
pub use repo::{OpenOptions, Repository};
pub use storage::{LocalStorage, LockMode, MemoryStorage, Storage};

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

/// Fills `buf` from the kernel's random source.
pub(crate) fn random_bytes(buf: &mut [u8]) -> error::Result<()> {
    use error::IoContext;
    use std::io::Read;
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf)).at("/dev/urandom")
}

pub fn hostname() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "unknown".into())
}
