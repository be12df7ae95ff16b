//! Restore: a snapshot's entries back onto disk, byte-exact. Every chunk is verified
//! against its id before its bytes are written; nothing is written outside the target
//! and no symlink is ever followed: an entry is created only inside a directory this
//! restore has made or verified, and metadata is set through handles opened without
//! following symlinks.

mod dump;
mod files;
mod metadata;
mod restorer;
mod target;
mod until_log;

pub use dump::dump_file;
pub use until_log::{restore_until_log, UntilLog};

use crate::error::{ChunkError, Error, Result};
use crate::id::SnapshotId;
use crate::manifest::{self, ComponentHeader, ManifestReader, Record};
use crate::repo::Repository;
use crate::Progress;
use restorer::Restorer;
use std::path::PathBuf;

pub struct RestoreOptions {
    pub target: PathBuf,
    /// Restore into a non-empty target, replacing entries of the same name.
    pub overwrite: bool,
    /// Only this component, with its contents directly in the target.
    pub component: Option<String>,
}

#[derive(Debug, Default)]
pub struct RestoreReport {
    pub files: u64,
    pub bytes: u64,
    /// Entries that could not be restored, each with the reason. Damaged files are
    /// removed rather than left with wrong content.
    pub errors: Vec<String>,
}

pub fn restore(
    repo: &Repository,
    id: &SnapshotId,
    options: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    manifest::verify_file(repo.storage(), id)?;
    let summary = repo.summary(id)?;
    file_lists_are_at_hand(repo, id, options.component.as_deref())?;
    let mut reader = ManifestReader::open(repo.storage(), id, repo)?;
    if let Some(name) = &options.component {
        reader.only_files_of(name);
    }
    let records = std::iter::from_fn(|| reader.next_record().transpose());
    let Some(name) = &options.component else {
        let headers: Vec<&ComponentHeader> = summary.components.iter().map(|c| &c.header).collect();
        return restore_records(repo, &headers, records, options, progress);
    };
    let header = component_header(&summary, name)?;
    let mut inside = false;
    let only = records.filter(|record| match record {
        Ok(Record::Component(c)) => {
            inside = c.name == *name;
            inside
        }
        Ok(Record::File(_)) => inside,
        _ => true,
    });
    restore_records(repo, &[&header], only, options, progress)
}

/// A component whose file list lost a chunk cannot be restored whole: said before
/// anything is written, rather than after the components before it.
fn file_lists_are_at_hand(repo: &Repository, id: &SnapshotId, component: Option<&str>) -> Result<()> {
    let chunks = repo.index.view()?.chunks()?;
    for (name, list) in ManifestReader::file_lists(repo.storage(), id)? {
        if component.is_some_and(|wanted| wanted != name) {
            continue;
        }
        for chunk in &list {
            if !chunks.contains(&chunk.id)? {
                let error = Box::new(ChunkError::missing(chunk.id).into());
                return Err(Error::FileList { snapshot: *id, component: name, error });
            }
        }
    }
    Ok(())
}

fn component_header(summary: &manifest::SnapshotSummary, name: &str) -> Result<ComponentHeader> {
    match summary.components.iter().find(|c| c.header.name == name) {
        Some(c) => Ok(c.header.clone()),
        None => {
            let names: Vec<&str> = summary.components.iter().map(|c| c.header.name.as_str()).collect();
            Err(Error::Restore(format!(
                "snapshot {} has no component {name:?} (it has {})",
                summary.id,
                names.join(", ")
            )))
        }
    }
}

/// Restores the entries of `records` (component headers and file entries in manifest
/// order); `components` are the headers of all of them, to place each.
fn restore_records(
    repo: &Repository,
    components: &[&ComponentHeader],
    records: impl Iterator<Item = Result<Record>>,
    options: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    target::prepare_target(&options.target, options.overwrite)?;
    // A snapshot of several components puts each at its placement; the places of the
    // others are out of bounds for one whose place holds theirs.
    let per_component = components.len() > 1;
    let placed_apart: Vec<Vec<u8>> =
        components.iter().map(|c| c.placement.clone()).filter(|p| !p.is_empty()).collect();
    let mut restorer = Restorer::new(repo, options, progress)?;
    for record in records {
        match record? {
            Record::Component(c) if per_component => {
                restorer.enter_component(&options.target, &c.name, &c.placement)?;
                // The places of components inside this one's, relative to it.
                restorer.reserved = target::reserved_within(&placed_apart, &c.placement);
            }
            Record::File(_) if restorer.skipping => {}
            Record::File(entry) => restorer.entry(entry)?,
            _ => {}
        }
    }
    restorer.finish_component()?;
    restorer.apply_directory_metadata();
    Ok(restorer.report)
}

#[cfg(test)]
mod tests {
    use crate::error::Hint;
    use crate::storage::LockMode;
    use crate::testing::{assert_same_files, backup_tree, memory_storage, open, restore_to, write_tree};

    #[test]
    fn a_snapshot_restores_from_memory_and_never_over_a_tree_unasked() {
        let dir = tempfile::tempdir().unwrap();
        let storage = memory_storage();
        let tree = write_tree(&dir.path().join("t"), 3);
        let id = backup_tree(&open(&storage, LockMode::Append, None), &tree);
        let repo = open(&storage, LockMode::Shared, None);
        let target = dir.path().join("restored");
        let report = restore_to(&repo, &id, &target).unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.files, 4, "three files and a directory");
        assert_same_files(&tree, &target);
        let err = restore_to(&repo, &id, &target).err().unwrap();
        assert_eq!(err.hint(), Some(Hint::Overwrite), "{err}");
    }
}
