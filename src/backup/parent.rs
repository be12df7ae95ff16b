//! The parent snapshot's file list for one component, read alongside the walk: both are
//! in `path_order`, so finding a file's previous entry is a merge, not a lookup table.

use crate::error::{Error, Hint, Result};
use crate::id::SnapshotId;
use crate::manifest::{ChunkRef, FileEntry, FileKind, FileRole, ManifestReader, SnapshotSummary};
use crate::repo::Repository;
use crate::time::Timestamp;
use crate::walk::path_order;
use std::cmp::Ordering;
use std::collections::HashMap;

pub struct ParentFiles<'a> {
    id: SnapshotId,
    started: Timestamp,
    last_log_number: Option<u64>,
    files: Files<'a>,
    file_list: Vec<ChunkRef>,
    list_lost: bool,
}

enum Files<'a> {
    /// A tree in `path_order`, read alongside the walk.
    Ordered { reader: Option<Box<ManifestReader<'a>>>, next: Option<FileEntry> },
    /// A store's files in copy order: few, so held by path.
    Indexed(HashMap<Vec<u8>, FileEntry>),
}

impl<'a> ParentFiles<'a> {
    /// Positions at the files of component `name`; a parent without it offers none.
    /// `in_path_order` says whether the new copy asks for files in `path_order`.
    /// The whole manifest is verified first: its chunk ids are copied into the new
    /// snapshot, and the reader would check the hash only at its end.
    pub fn open(
        repo: &'a Repository,
        parent: &SnapshotSummary,
        name: &str,
        in_path_order: bool,
    ) -> Result<ParentFiles<'a>> {
        let id = parent.id;
        let component = parent.components.iter().find(|c| c.header.name == name);
        let last_log_number = component.and_then(|c| c.trailer.last_log_number);
        let unreadable = |e| unreadable(id, e);
        let lists = ManifestReader::file_lists(repo.storage(), &id).map_err(unreadable)?;
        let file_list = lists.into_iter().find(|(n, _)| n == name).map(|(_, list)| list).unwrap_or_default();
        let chunks = repo.index.view().and_then(|v| v.chunks()).map_err(unreadable)?;
        let mut list_lost = false;
        for chunk in &file_list {
            list_lost |= !chunks.contains(&chunk.id).map_err(unreadable)?;
        }
        let mut reader = match list_lost {
            true => None,
            false => ManifestReader::open_component(repo.storage(), &id, name, repo).map_err(unreadable)?,
        };
        let files = if in_path_order {
            let mut files = Files::Ordered { reader: reader.map(Box::new), next: None };
            advance(&mut files).map_err(unreadable)?;
            files
        } else {
            let mut by_path = HashMap::new();
            while let Some(entry) =
                reader.as_mut().map(|r| r.next_file()).transpose().map_err(unreadable)?.flatten()
            {
                by_path.insert(entry.path.clone(), entry);
            }
            Files::Indexed(by_path)
        };
        Ok(ParentFiles { id, started: parent.header.time, last_log_number, files, file_list, list_lost })
    }

    /// The repository lost chunks of the parent's file list of this component (with a
    /// pack): it offers no files, so every file is read again, as the files whose own
    /// chunks were lost are. Storing the same list again makes the parent whole too.
    pub fn file_list_lost(&self) -> bool {
        self.list_lost
    }

    /// The chunks of the parent's file list of this component, which the new list's
    /// changed chunks are stored against.
    pub fn file_list(&self) -> &[ChunkRef] {
        &self.file_list
    }

    /// When the parent backup began.
    pub fn started(&self) -> Timestamp {
        self.started
    }

    /// The parent component's last log number: logs below it are complete.
    pub fn last_log_number(&self) -> Option<u64> {
        self.last_log_number
    }

    /// The parent's entry for `path`, if it had one. With `in_path_order`, paths must be
    /// asked in `path_order`.
    pub fn find(&mut self, path: &[u8]) -> Result<Option<FileEntry>> {
        if let Files::Indexed(by_path) = &mut self.files {
            return Ok(by_path.remove(path));
        }
        loop {
            let order = match &self.files {
                Files::Ordered { next: Some(candidate), .. } => path_order(&candidate.path, path),
                _ => return Ok(None),
            };
            match order {
                Ordering::Less => self.advance()?,
                Ordering::Equal => {
                    let Files::Ordered { next, .. } = &mut self.files else { unreachable!("ordered") };
                    let found = next.take();
                    self.advance()?;
                    return Ok(found);
                }
                Ordering::Greater => return Ok(None),
            }
        }
    }

    /// The parent's log files numbered below `n`, in ascending number (store
    /// components only, whose files are held by path).
    pub fn logs_below(&mut self, n: u64) -> Vec<FileEntry> {
        let Files::Indexed(by_path) = &mut self.files else { return Vec::new() };
        let paths: Vec<Vec<u8>> = by_path
            .values()
            .filter(|e| e.role == FileRole::Log && e.log_number.is_some_and(|l| l < n))
            .map(|e| e.path.clone())
            .collect();
        let mut logs: Vec<FileEntry> = paths.iter().filter_map(|path| by_path.remove(path)).collect();
        logs.sort_by_key(|e| e.log_number);
        logs
    }

    fn advance(&mut self) -> Result<()> {
        let id = self.id;
        advance(&mut self.files).map_err(|e| unreadable(id, e))
    }
}

/// A parent that cannot be read cannot lend its chunk lists; a full backup needs none.
fn unreadable(id: SnapshotId, e: Error) -> Error {
    Error::Snapshot(format!("parent snapshot {id} is unreadable ({e})")).with_hint(Hint::FullBackup)
}

/// Moves an ordered parent list to its next file entry.
fn advance(files: &mut Files) -> Result<()> {
    let Files::Ordered { reader, next } = files else { return Ok(()) };
    *next = None;
    if let Some(r) = reader {
        match r.next_file()? {
            Some(entry) => *next = Some(entry),
            None => *reader = None,
        }
    }
    Ok(())
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
