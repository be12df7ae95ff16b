//! Setting restored entries' owner, mode and times without following a symlink: through
//! an open handle where the entry can be opened, else by path with no-follow calls.

use super::restorer::Restorer;
use crate::error::{Error, IoContext, Result};
use crate::manifest::{FileEntry, FileKind};
use std::fs::{self, File, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

impl Restorer<'_> {
    /// Sets directory metadata: last, because creating their contents changed their
    /// times, and their final modes may forbid writing. Deepest first: a parent's final
    /// mode may forbid reaching its children.
    pub(super) fn apply_directory_metadata(&mut self) {
        let mut dirs = std::mem::take(&mut self.finished_dirs);
        dirs.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (path, entry) in dirs {
            let applied = File::options()
                .read(true)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_DIRECTORY)
                .open(&path)
                .at(&path)
                .and_then(|dir| self.set_metadata_by_handle(&path, &entry, &dir));
            if let Err(e) = applied {
                self.report.errors.push(e.to_string());
            }
        }
    }

    /// Makes a FIFO or device node (mknod) and sets its metadata.
    pub(super) fn special(&self, entry: &FileEntry, path: &Path) -> Result<()> {
        use nix::sys::stat::{mknod, Mode, SFlag};
        let (kind, rdev) = match entry.kind {
            FileKind::Fifo => (SFlag::S_IFIFO, 0),
            FileKind::CharDevice { rdev } => (SFlag::S_IFCHR, rdev),
            FileKind::BlockDevice { rdev } => (SFlag::S_IFBLK, rdev),
            _ => unreachable!("only special files come here"),
        };
        mknod(path, kind, Mode::from_bits_truncate(entry.mode & 0o7777), rdev)
            .map_err(|e| Error::io(path, e.into()))?;
        self.set_metadata_by_path(path, entry)
    }

    /// Owner (as root), mode and times through an open handle. The owner comes first:
    /// chown clears set-id bits.
    pub(super) fn set_metadata_by_handle(&self, path: &Path, entry: &FileEntry, file: &File) -> Result<()> {
        if self.is_root {
            std::os::unix::fs::fchown(file, Some(entry.uid), Some(entry.gid)).at(path)?;
        }
        file.set_permissions(Permissions::from_mode(entry.mode & 0o7777)).at(path)?;
        let mtime = filetime::FileTime::from_unix_time(entry.mtime.secs, entry.mtime.nanos);
        filetime::set_file_handle_times(file, Some(mtime), Some(mtime)).at(path)
    }

    /// For entries that cannot be opened (symlinks, FIFOs, devices), just created by
    /// this restore: lchown and utimensat(AT_SYMLINK_NOFOLLOW) never follow a symlink.
    pub(super) fn set_metadata_by_path(&self, path: &Path, entry: &FileEntry) -> Result<()> {
        if self.is_root {
            std::os::unix::fs::lchown(path, Some(entry.uid), Some(entry.gid)).at(path)?;
        }
        let mtime = filetime::FileTime::from_unix_time(entry.mtime.secs, entry.mtime.nanos);
        if !matches!(entry.kind, FileKind::Symlink { .. }) {
            // chmod follows symlinks: make sure this is still the node we made.
            if fs::symlink_metadata(path).at(path)?.file_type().is_symlink() {
                return Err(Error::Restore(format!(
                    "{}: replaced by a symlink during the restore",
                    path.display()
                )));
            }
            fs::set_permissions(path, Permissions::from_mode(entry.mode & 0o7777)).at(path)?;
        }
        filetime::set_symlink_file_times(path, mtime, mtime).at(path)
    }
}
