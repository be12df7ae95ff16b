//! `diff A B`: the files added, removed and changed from snapshot A to snapshot B,
//! component by component, and for database components the log numbers each holds.
//! Trees are compared as they are stored (in path order), streaming: memory does not
//! grow with the number of files. A store's files (few) are sorted first.

use crate::error::Result;
use crate::id::SnapshotId;
use crate::manifest::{self, FileEntry, ManifestReader};
use crate::repo::Repository;
use crate::walk::path_order;
use serde::Serialize;
use std::cmp::Ordering;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    /// Content or type changed (or the same content cut into other chunks).
    Modified,
    /// Same content; mode, owner, modification time or link count changed.
    Metadata,
}

#[derive(Debug, Serialize)]
pub struct FileChange {
    pub component: String,
    #[serde(serialize_with = "manifest::serialize_path")]
    pub path: Vec<u8>,
    pub change: Change,
    pub size_before: u64,
    pub size_after: u64,
}

#[derive(Debug, Serialize)]
pub struct ComponentLogs {
    pub component: String,
    /// First and last log number in A and in B.
    pub before: Option<(u64, u64)>,
    pub after: Option<(u64, u64)>,
}

#[derive(Debug, Default, Serialize)]
pub struct DiffSummary {
    pub added: u64,
    pub removed: u64,
    pub modified: u64,
    pub metadata: u64,
    pub added_bytes: u64,
    pub removed_bytes: u64,
    /// Sizes in B of the modified files.
    pub modified_bytes: u64,
    pub logs: Vec<ComponentLogs>,
}

/// Calls `on_change` for every difference, in order, and returns the totals.
pub fn diff(
    repo: &Repository,
    a: &SnapshotId,
    b: &SnapshotId,
    mut on_change: impl FnMut(&FileChange) -> Result<()>,
) -> Result<DiffSummary> {
    let (before, after) = (repo.summary(a)?, repo.summary(b)?);
    let mut names: Vec<&str> = before.components.iter().map(|c| c.header.name.as_str()).collect();
    for c in &after.components {
        if !names.contains(&c.header.name.as_str()) {
            names.push(&c.header.name);
        }
    }
    let mut summary = DiffSummary::default();
    for name in names {
        let find =
            |s: &manifest::SnapshotSummary| s.components.iter().find(|c| c.header.name == name).cloned();
        let (old, new) = (find(&before), find(&after));
        let range = |c: &Option<manifest::ComponentSummary>| {
            let t = &c.as_ref()?.trailer;
            Some((t.first_log_number?, t.last_log_number?))
        };
        if range(&old).is_some() || range(&new).is_some() {
            summary.logs.push(ComponentLogs {
                component: name.into(),
                before: range(&old),
                after: range(&new),
            });
        }
        let in_path_order = |c: &Option<manifest::ComponentSummary>| {
            c.as_ref().is_none_or(|c| c.header.store_type == crate::stores::StoreType::Dir.name())
        };
        let mut left = Files::open(repo, a, name, old.is_some(), in_path_order(&old))?;
        let mut right = Files::open(repo, b, name, new.is_some(), in_path_order(&new))?;
        let (mut l, mut r) = (left.next()?, right.next()?);
        loop {
            let order = match (&l, &r) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(x), Some(y)) => path_order(&x.path, &y.path),
            };
            let change = match order {
                Ordering::Less => {
                    let x = l.take().expect("some");
                    l = left.next()?;
                    Some(FileChange::new(name, x.path, Change::Removed, x.size, 0))
                }
                Ordering::Greater => {
                    let y = r.take().expect("some");
                    r = right.next()?;
                    Some(FileChange::new(name, y.path, Change::Added, 0, y.size))
                }
                Ordering::Equal => {
                    let (x, y) = (l.take().expect("some"), r.take().expect("some"));
                    (l, r) = (left.next()?, right.next()?);
                    compare(&x, &y).map(|change| FileChange::new(name, y.path, change, x.size, y.size))
                }
            };
            if let Some(change) = change {
                summary.count(&change);
                on_change(&change)?;
            }
        }
    }
    Ok(summary)
}

impl FileChange {
    fn new(component: &str, path: Vec<u8>, change: Change, size_before: u64, size_after: u64) -> FileChange {
        FileChange { component: component.into(), path, change, size_before, size_after }
    }
}

impl DiffSummary {
    fn count(&mut self, c: &FileChange) {
        match c.change {
            Change::Added => {
                (self.added, self.added_bytes) = (self.added + 1, self.added_bytes + c.size_after)
            }
            Change::Removed => {
                (self.removed, self.removed_bytes) = (self.removed + 1, self.removed_bytes + c.size_before)
            }
            Change::Modified => {
                (self.modified, self.modified_bytes) = (self.modified + 1, self.modified_bytes + c.size_after)
            }
            Change::Metadata => self.metadata += 1,
        }
    }
}

fn compare(x: &FileEntry, y: &FileEntry) -> Option<Change> {
    let content = |e: &FileEntry| (e.size, e.chunks.iter().map(|c| c.id).collect::<Vec<_>>());
    if x.kind != y.kind || content(x) != content(y) {
        return Some(Change::Modified);
    }
    // Links too: a hard link turned into a copy restores as a different tree.
    let meta = |e: &FileEntry| (e.mode, e.uid, e.gid, e.mtime, e.links);
    (meta(x) != meta(y)).then_some(Change::Metadata)
}

/// One component's files in `path_order`: streamed from a tree's manifest, or read
/// whole and sorted for a store (whose copy order is another).
enum Files<'a> {
    None,
    Stream(Box<ManifestReader<'a>>),
    Sorted(std::vec::IntoIter<FileEntry>),
}

impl<'a> Files<'a> {
    fn open(
        repo: &'a Repository,
        id: &SnapshotId,
        name: &str,
        present: bool,
        in_path_order: bool,
    ) -> Result<Files<'a>> {
        if !present {
            return Ok(Files::None);
        }
        let Some(reader) = ManifestReader::open_component(repo.storage(), id, name, repo)? else {
            return Ok(Files::None);
        };
        let mut files = Files::Stream(Box::new(reader));
        if !in_path_order {
            let mut all = Vec::new();
            while let Some(entry) = files.next()? {
                all.push(entry);
            }
            all.sort_by(|a, b| path_order(&a.path, &b.path));
            files = Files::Sorted(all.into_iter());
        }
        Ok(files)
    }

    fn next(&mut self) -> Result<Option<FileEntry>> {
        Ok(match self {
            Files::None => None,
            Files::Sorted(entries) => entries.next(),
            Files::Stream(reader) => reader.next_file()?,
        })
    }
}
