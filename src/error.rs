//! The library's one error type. Every variant names the object it is about (a path, an
//! id, an offset), so a message alone tells an operator where to look.

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

    /// The index was left open by a killed writer; only a writer can recover it.
    #[error("index {}: needs recovery after an interrupted writer", path.display())]
    IndexNeedsRecovery { path: PathBuf },

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
