//! Store types: which files of a source belong to a backup, in which order, with which
//! role, log number and chunker profile, and what is left out on purpose.

pub mod bdb;
pub mod dir;

use crate::error::{Error, Result};
use crate::manifest::{Consistency, Excluded, FileRole};
use dir::Found;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreType {
    Dir,
    Bdb,
}

impl StoreType {
    pub fn name(self) -> &'static str {
        match self {
            StoreType::Dir => "dir",
            StoreType::Bdb => "bdb",
        }
    }

    pub fn parse(name: &str) -> Option<StoreType> {
        match name {
            "dir" => Some(StoreType::Dir),
            "bdb" => Some(StoreType::Bdb),
            _ => None,
        }
    }

    /// The store type a directory's contents show; `dir` when nothing else fits.
    pub fn detect(root: &Path) -> StoreType {
        if bdb::looks_like_environment(root) {
            StoreType::Bdb
        } else {
            StoreType::Dir
        }
    }

    /// The store's files. `offline` asserts that the store is not running (each type
    /// says how it checks); a plain tree has no such notion and refuses it.
    pub fn open(self, root: &Path, offline: bool) -> Result<Box<dyn Source>> {
        Ok(match self {
            StoreType::Dir if offline => {
                return Err(unsupported(root, "--offline applies to database store types, not dir".into()))
            }
            StoreType::Dir => Box::new(dir::DirSource::new(root)?),
            StoreType::Bdb => Box::new(bdb::BdbSource::new(root, offline)?),
        })
    }
}

/// One file a store contributes, with what it is to the store.
pub struct Planned {
    pub found: Found,
    pub role: FileRole,
    pub log_number: Option<u64>,
    /// Chunker profile (position in the config's list).
    pub chunker: u8,
    /// Opened when listed, for files that must stay readable until copied even if the
    /// store removes them meanwhile (database logs).
    pub open: Option<std::fs::File>,
}

pub enum Sourced {
    File(Planned),
    /// An entry or a listing that could not be read.
    Unreadable {
        rel: Vec<u8>,
        message: String,
    },
}

/// What a store says about its copy once all its files are yielded.
pub struct SourceReport {
    pub consistency: Consistency,
    pub passes: u32,
    pub excluded: Vec<Excluded>,
}

/// The files of one component, in copy order. A database store may list its directory
/// again once its planned files are yielded (a hot copy's later passes).
pub trait Source: Iterator<Item = Result<Sourced>> + Send {
    fn store_type(&self) -> StoreType;
    /// A store whose files cannot all be read has no usable copy: any read error fails
    /// the backup instead of making an incomplete snapshot.
    fn all_or_nothing(&self) -> bool;
    fn report(&self) -> SourceReport;
}

pub(crate) fn unsupported(root: &Path, what: String) -> Error {
    Error::Invalid(format!("{}: {what}", root.display()))
}
