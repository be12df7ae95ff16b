//! The library's one error type. Every variant names the object it is about (a path, an
//! id, an offset), so a message alone tells an operator where to look.

use crate::id::{ChunkId, PackId};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // Not named `source`: the message already includes it, and a source would be
    // printed a second time by error-chain printers.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },

    #[error("{}: corrupt: {what}", path.display())]
    Corrupt { path: PathBuf, what: String },

    #[error("{}: {what}", path.display())]
    Repository { path: PathBuf, what: String },

    #[error("repository {} is locked by {holder}", path.display())]
    Locked { path: PathBuf, holder: String },

    #[error("index {}: {what}", path.display())]
    Index { path: PathBuf, what: String },

    #[error("index {}: written by an older cairn, to be rebuilt", path.display())]
    IndexOutdated { path: PathBuf },

    #[error("{0}")]
    Snapshot(String),

    #[error("{0}")]
    Invalid(String),

    /// A component copied alongside another that failed: the other's error is the one
    /// to report.
    #[error("stopped because another component of the backup failed")]
    Cancelled,

    #[error("{0}")]
    Restore(String),

    #[error("{0}")]
    Chunk(#[from] ChunkError),

    /// A component's file list (manifest version 3) could not be read: the component's
    /// files are unknown, the manifest itself may be sound.
    #[error("snapshot {snapshot}: file list of component {component:?}: {error}")]
    FileList { snapshot: crate::id::SnapshotId, component: String, error: Box<Error> },

    /// An error with advice on what to do about it. The message stays the library's
    /// description; the advice is data for the front end to put in its own words.
    #[error("{error}")]
    Hinted { error: Box<Error>, hint: Hint },
}

/// What an operator can do about an error or a check finding, named in the library's
/// terms. The `cairn` binary renders each as command-line advice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hint {
    /// The index is missing or unusable: rebuild it from the packs and manifests.
    RepairIndex,
    /// Check the repository to see what is damaged.
    Check,
    /// Check the repository, then rebuild the index.
    CheckThenRepairIndex,
    /// The path is not a repository: create one.
    Init,
    /// The restore target is not empty: restoring over its entries must be asked for.
    Overwrite,
    /// Several backup sets qualify: name one.
    ChooseSet,
    /// Several database components qualify: name one.
    ChooseComponent,
    /// No retention rule was given: name what to keep.
    Keep,
    /// The parent cannot serve this backup: take a full one.
    FullBackup,
    /// A logs-only backup cannot be made: take an incremental or a full one.
    IncrementalOrFull,
    /// The store cannot be copied while it runs: stop it and take an offline copy.
    Offline,
    /// The store is in use: an offline copy is impossible, a hot copy is not.
    HotCopy,
    /// The store type cannot copy this layout: back it up as a plain directory tree.
    PlainTree,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl AsRef<Path>, error: io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), error }
    }

    /// For `map_err`: `.map_err(Error::from_io(&path))`.
    pub fn from_io(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
        move |e| Error::io(path, e)
    }

    pub fn corrupt(path: impl AsRef<Path>, what: impl Into<String>) -> Self {
        Error::Corrupt { path: path.as_ref().to_path_buf(), what: what.into() }
    }

    pub fn index(path: impl AsRef<Path>, what: impl std::fmt::Display) -> Self {
        Error::Index { path: path.as_ref().to_path_buf(), what: what.to_string() }
    }

    /// This error with advice attached (replacing any it had).
    pub fn with_hint(self, hint: Hint) -> Self {
        match self {
            Error::Hinted { error, .. } => Error::Hinted { error, hint },
            error => Error::Hinted { error: Box::new(error), hint },
        }
    }

    /// This error with the advice `other` carries, if any: for an error that reports
    /// another one in its message.
    pub fn with_hint_of(self, other: &Error) -> Self {
        match other.hint() {
            Some(hint) => self.with_hint(hint),
            None => self,
        }
    }

    /// The advice attached to this error, if any.
    pub fn hint(&self) -> Option<Hint> {
        match self {
            Error::Hinted { hint, .. } => Some(*hint),
            _ => None,
        }
    }

    /// The error without its advice, for matching on what happened.
    pub fn unhinted(&self) -> &Error {
        match self {
            Error::Hinted { error, .. } => error.unhinted(),
            error => error,
        }
    }
}

/// Attaches a path to `io::Result`s: `file.read(..).at(&path)?`.
pub trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

/// A chunk that cannot be read back: which one, where it was looked for (when the index
/// placed it), and why.
#[derive(Debug, thiserror::Error)]
#[error("chunk {id}{}{}", Place(*pack, *offset), AfterId(kind))]
pub struct ChunkError {
    pub id: ChunkId,
    pub pack: Option<PackId>,
    pub offset: Option<u64>,
    pub kind: ChunkErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ChunkErrorKind {
    /// Not in the index.
    #[error("missing from the repository")]
    Missing,
    /// Stored bytes that do not decode to the chunk: a bad frame, the wrong length, a
    /// hash mismatch, a delta without its reference, a reference itself a delta.
    #[error("{what}")]
    Corrupt { what: String },
    /// The pack file or the index could not be read (the error names which).
    #[error("cannot be read: {0}")]
    Io(Box<Error>),
    /// A delta whose reference cannot be read; `reference` says why.
    #[error("its reference cannot be read: {reference}")]
    ReferenceUnreadable { reference: Box<ChunkError> },
}

impl ChunkError {
    pub fn new(id: ChunkId, kind: ChunkErrorKind) -> Self {
        ChunkError { id, pack: None, offset: None, kind }
    }

    pub fn missing(id: ChunkId) -> Self {
        ChunkError::new(id, ChunkErrorKind::Missing)
    }

    pub fn corrupt(id: ChunkId, what: impl Into<String>) -> Self {
        ChunkError::new(id, ChunkErrorKind::Corrupt { what: what.into() })
    }

    /// An error of the pack file or the index; a pack's corrupt bytes are the chunk's.
    pub fn io(id: ChunkId, error: Error) -> Self {
        match error {
            Error::Corrupt { what, .. } => ChunkError::corrupt(id, what),
            error => ChunkError::new(id, ChunkErrorKind::Io(Box::new(error))),
        }
    }

    /// Names the place the chunk was read from, unless it already names one.
    pub fn in_pack(mut self, pack: PackId, offset: u64) -> Self {
        if self.pack.is_none() {
            (self.pack, self.offset) = (Some(pack), Some(offset));
        }
        self
    }

    pub fn is_missing(&self) -> bool {
        matches!(self.kind, ChunkErrorKind::Missing)
    }
}

/// ` (pack P, offset O)`, when known.
struct Place(Option<PackId>, Option<u64>);

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match (self.0, self.1) {
            (Some(pack), Some(offset)) => write!(f, " (pack {pack}, offset {offset})"),
            (Some(pack), None) => write!(f, " (pack {pack})"),
            _ => Ok(()),
        }
    }
}

/// The kind as it reads after the chunk's id: "chunk X is missing from the
/// repository", "chunk X: content does not match its id".
struct AfterId<'a>(&'a ChunkErrorKind);

impl fmt::Display for AfterId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.0 {
            ChunkErrorKind::Missing => write!(f, " is {}", self.0),
            kind => write!(f, ": {kind}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_errors_name_the_chunk_and_where_it_was_read() {
        let (id, reference) = (ChunkId::of(b"delta"), ChunkId::of(b"reference"));
        let pack = PackId::of(b"pack");
        let missing = ChunkError::missing(reference);
        assert!(missing.is_missing());
        assert_eq!(missing.to_string(), format!("chunk {reference} is missing from the repository"));
        let unreadable =
            ChunkError::new(id, ChunkErrorKind::ReferenceUnreadable { reference: Box::new(missing) })
                .in_pack(pack, 16);
        assert_eq!(
            unreadable.to_string(),
            format!(
                "chunk {id} (pack {pack}, offset 16): its reference cannot be read: chunk {reference} is missing from the repository"
            )
        );
        let corrupt = ChunkError::io(id, Error::corrupt("/p", "bad")).in_pack(pack, 16).in_pack(pack, 99);
        assert!(matches!(corrupt.kind, ChunkErrorKind::Corrupt { .. }));
        assert_eq!(corrupt.offset, Some(16));
        let io = ChunkError::io(id, Error::io("/p", io::Error::other("eio")));
        assert!(matches!(io.kind, ChunkErrorKind::Io(_)));
        assert_eq!(Error::from(io).to_string(), format!("chunk {id}: cannot be read: /p: eio"));
    }
}
