//! Store types: which files of a source belong to a backup, in which order, with which
//! role, log number and chunker profile, and what is left out on purpose.

pub mod bdb;
pub mod bdb_je;
pub mod dir;
pub mod dump;
pub mod logs;
pub mod offline;
pub mod qpid;

use crate::config::CHUNKER_DEFAULT;
use crate::error::{Error, Result};
use crate::manifest::{Consistency, Excluded, FileEntry, FileRole, HookRun};
use crate::walk::Found;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreType {
    Dir,
    Bdb,
    BdbJe,
    /// A broker work directory: several components, each of its own type.
    Qpid,
    /// A JSON store of a broker: one file.
    Json,
    /// A command's standard output: one file.
    Dump,
}

impl StoreType {
    pub fn name(self) -> &'static str {
        match self {
            StoreType::Dir => "dir",
            StoreType::Bdb => "bdb",
            StoreType::BdbJe => "bdb-je",
            StoreType::Qpid => "qpid",
            StoreType::Json => "json",
            StoreType::Dump => "dump",
        }
    }

    pub fn parse(name: &str) -> Option<StoreType> {
        match name {
            "dir" => Some(StoreType::Dir),
            "bdb" => Some(StoreType::Bdb),
            "bdb-je" => Some(StoreType::BdbJe),
            "qpid" => Some(StoreType::Qpid),
            _ => None,
        }
    }

    /// The store type a directory's contents show; `dir` when nothing else fits.
    pub fn detect(root: &Path) -> StoreType {
        if qpid::looks_like_work_dir(root) {
            StoreType::Qpid
        } else if bdb_je::looks_like_environment(root) {
            StoreType::BdbJe
        } else if bdb::looks_like_environment(root) {
            StoreType::Bdb
        } else {
            StoreType::Dir
        }
    }

    /// The components a backup of `root` makes: one, except for stores made of several
    /// (a broker's work directory).
    pub fn components(self, root: &Path, offline: bool, exclude: &[String]) -> Result<Vec<Component>> {
        if !exclude.is_empty() && self != StoreType::Dir {
            let what = format!("excludes apply to dir components; a {} store is copied whole", self.name());
            return Err(unsupported(root, what));
        }
        if self == StoreType::Qpid {
            return qpid::components(root, offline);
        }
        let files: Box<dyn Source> = match self {
            StoreType::Dir if !exclude.is_empty() => Box::new(dir::DirSource::excluding(root, exclude)?),
            _ => self.open(root, offline)?,
        };
        let name = root.file_name().map_or_else(|| "root".to_string(), |n| n.to_string_lossy().into_owned());
        Ok(vec![Component { name, placement: Vec::new(), root: root.to_path_buf(), files }])
    }

    /// Whether the store is a database whose log files carry its changes.
    pub fn has_logs(self) -> bool {
        matches!(self, StoreType::Bdb | StoreType::BdbJe)
    }

    /// The store's files. `offline` asserts that the store is not running (each type
    /// says how it checks); a plain tree has no such notion and refuses it.
    fn open(self, root: &Path, offline: bool) -> Result<Box<dyn Source>> {
        Ok(match self {
            StoreType::Dir if offline => {
                return Err(unsupported(
                    root,
                    "an offline copy applies to database store types, not dir".into(),
                ))
            }
            StoreType::Dir => Box::new(dir::DirSource::new(root)?),
            StoreType::Qpid | StoreType::Json | StoreType::Dump => {
                return Err(unsupported(
                    root,
                    format!("{} stores are copied as part of a qpid work directory", self.name()),
                ))
            }
            StoreType::Bdb => Box::new(bdb::open(root, offline)?),
            StoreType::BdbJe => Box::new(bdb_je::open(root, offline)?),
        })
    }
}

/// One component of a snapshot, ready to copy.
pub struct Component {
    pub name: String,
    /// Where a restore of the whole snapshot puts it, relative to the target.
    pub placement: Vec<u8>,
    pub root: PathBuf,
    pub files: Box<dyn Source>,
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

impl Planned {
    /// A file the store keeps as it is, like any file of a tree.
    pub fn plain(found: Found) -> Planned {
        Planned { found, role: FileRole::Plain, log_number: None, chunker: CHUNKER_DEFAULT, open: None }
    }
}

pub enum Sourced {
    File(Planned),
    /// Content that is not a file of the source (a command's output): its entry as it
    /// will be recorded, the stream to read, and a name for messages.
    Stream {
        entry: FileEntry,
        from: std::fs::File,
        label: PathBuf,
    },
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
    /// Whether the copied logs must form an unbroken sequence: a store whose logs are
    /// only ever removed from the oldest end (not one whose cleaner removes any).
    pub contiguous_logs: bool,
    /// A dump: the command that produced it.
    pub command: Option<HookRun>,
}

/// The files of one component, in copy order. A database store may list its directory
/// again once its planned files are yielded (a hot copy's later passes).
pub trait Source: Iterator<Item = Result<Sourced>> + Send {
    fn store_type(&self) -> StoreType;
    /// A store whose files cannot all be read has no usable copy: any read error fails
    /// the backup instead of making an incomplete snapshot.
    fn all_or_nothing(&self) -> bool;
    /// Something that makes a blocked copy return at once (a dump command killed), for
    /// when another component of the backup failed.
    fn stopper(&self) -> Option<Box<dyn Fn() + Send + Sync>> {
        None
    }
    /// Called once every file is read: a source that must check how it ended (a dump
    /// command's exit status) fails here.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
    fn report(&self) -> SourceReport;
}

pub(crate) fn unsupported(root: &Path, what: String) -> Error {
    Error::Invalid(format!("{}: {what}", root.display()))
}
