//! `--logs-only` for one database component: which files the new snapshot takes from
//! the parent as they are, and which it reads. The rules alone; the producer acts on them.

use super::parent::ParentFiles;
use crate::error::{Error, Hint, Result};
use crate::manifest::{FileEntry, FileRole};

/// Data files come from the parent without being read, so do the parent's logs below
/// its last one (including those the store has since removed); the parent's last log,
/// which may have grown, and newer ones are read. The parent's last log must still be there: without it the sequence is broken.
pub(super) struct LogsOnly {
    parent_last: u64,
    /// Whether the parent's last log was met (and the parent's older logs emitted).
    reached: bool,
    name: String,
}

/// What becomes of one file of the source: first the parent entries in `keep` go into
/// the snapshot as they are, then, with `read`, the file itself is copied as any other.
pub(super) struct Step {
    pub keep: Vec<FileEntry>,
    pub read: bool,
}

impl LogsOnly {
    /// For component `name`, whose parent's last log is `parent_last`.
    pub(super) fn new(parent_last: u64, name: String) -> LogsOnly {
        LogsOnly { parent_last, reached: false, name }
    }

    /// Decides about `entry`; `opened` says whether the source could open it.
    pub(super) fn step(
        &mut self,
        entry: &FileEntry,
        opened: bool,
        parent: &mut ParentFiles<'_>,
    ) -> Result<Step> {
        let read = |keep| Ok(Step { keep, read: true });
        match (entry.role, entry.log_number) {
            (FileRole::Log, Some(n)) if n < self.parent_last => Ok(Step { keep: Vec::new(), read: false }),
            (FileRole::Log, Some(n)) => {
                if self.reached {
                    return read(Vec::new());
                }
                // Listed but gone before it could be opened is gone as well.
                if n != self.parent_last || !opened {
                    return Err(self.broken());
                }
                self.reached = true;
                read(parent.logs_below(self.parent_last))
            }
            (FileRole::Data, _) => match parent.find(&entry.path)? {
                Some(kept) if kept.kind == entry.kind => Ok(Step { keep: vec![kept], read: false }),
                // New since the parent: read it (recovery accepts a newer page).
                _ => read(Vec::new()),
            },
            // Configuration and directories are taken as they are now.
            _ => read(Vec::new()),
        }
    }

    /// The error when the repository no longer holds all chunks of `kept`.
    pub(super) fn missing(&self, kept: &FileEntry) -> Error {
        Error::Invalid(format!(
            "logs-only backup: the repository no longer holds all of {} of component {} from the parent snapshot",
            String::from_utf8_lossy(&kept.path),
            self.name
        ))
        .with_hint(Hint::FullBackup)
    }

    /// At the end of the source: the parent's last log must have been met.
    pub(super) fn finish(self) -> Result<()> {
        match self.reached {
            true => Ok(()),
            false => Err(self.broken()),
        }
    }

    fn broken(&self) -> Error {
        Error::Invalid(format!(
            "logs-only backup: log {} of component {}, the last one the parent snapshot copied, is no longer in the store, so the log sequence since the parent is broken",
            self.parent_last, self.name
        ))
        .with_hint(Hint::IncrementalOrFull)
    }
}
