//! The parent snapshot's file list for one component, read alongside the walk: both are
//! in `path_order`, so finding a file's previous entry is a merge, not a lookup table.

use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::manifest::{self, FileEntry, FileKind, ManifestReader, Record};
use crate::repo::Repository;
use crate::stores::dir::path_order;
use std::cmp::Ordering;

pub struct ParentFiles {
    reader: Option<ManifestReader>,
    next: Option<FileEntry>,
    id: SnapshotId,
}

impl ParentFiles {
    /// Positions at the files of component `name`; a parent without it offers none.
    /// The whole manifest is verified first: its chunk ids are copied into the new
    /// snapshot, and the reader would check the hash only at its end.
    pub fn open(repo: &Repository, id: &SnapshotId, name: &str) -> Result<ParentFiles> {
        let mut files = ParentFiles { reader: None, next: None, id: *id };
        let dir = repo.snapshots_dir();
        manifest::verify_file(&dir, id).map_err(|e| files.unreadable(e))?;
        let mut reader = ManifestReader::open(&dir, id).map_err(|e| files.unreadable(e))?;
        while let Some(record) = reader.next_record().map_err(|e| files.unreadable(e))? {
            if matches!(&record, Record::Component(c) if c.name == name) {
                files.reader = Some(reader);
                files.advance()?;
                break;
            }
        }
        Ok(files)
    }

    fn unreadable(&self, e: Error) -> Error {
        Error::Snapshot(format!("parent snapshot {} is unreadable ({e}); back up with --full", self.id))
    }

    fn advance(&mut self) -> Result<()> {
        self.next = None;
        if let Some(reader) = &mut self.reader {
            match reader.next_record().map_err(|e| self.unreadable(e))? {
                Some(Record::File(entry)) => self.next = Some(entry),
                _ => self.reader = None,
            }
        }
        Ok(())
    }

    /// The parent's entry for `path`, if it had one. Paths must be asked in `path_order`.
    pub fn find(&mut self, path: &[u8]) -> Result<Option<FileEntry>> {
        while let Some(next) = &self.next {
            match path_order(&next.path, path) {
                Ordering::Less => self.advance()?,
                Ordering::Equal => {
                    let found = self.next.take();
                    self.advance()?;
                    return Ok(found);
                }
                Ordering::Greater => break,
            }
        }
        Ok(None)
    }
}

/// A regular file whose size, times and inode all match its parent entry has the same
/// content: the parent's chunk list is reused without reading it.
pub fn unchanged(previous: &FileEntry, current: &FileEntry) -> bool {
    previous.kind == FileKind::Regular
        && current.kind == FileKind::Regular
        && previous.size == current.size
        && previous.mtime == current.mtime
        && previous.ctime == current.ctime
        && previous.inode == current.inode
        && previous.chunker == current.chunker
        && previous.chunks.iter().map(|c| c.len as u64).sum::<u64>() == current.size
}
