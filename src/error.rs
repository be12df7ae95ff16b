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
