//! `--offline`: asserting that no process is using a store.

use super::unsupported;
use crate::error::{Error, Hint, Result};
use std::fs;
use std::path::Path;

/// No process may have a file under `root` open. Checked through /proc/*/fd, which
/// shows every process to root and a user's own processes to others.
pub fn assert_no_open_files(root: &Path) -> Result<()> {
    let root = root.canonicalize().map_err(|e| Error::io(root, e))?;
    let me = std::process::id().to_string();
    let Ok(processes) = fs::read_dir("/proc") else {
        return Err(unsupported(
            &root,
            "an offline copy needs /proc to see which processes use the store".into(),
        ));
    };
    for process in processes.flatten() {
        let pid = process.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(fds) = fs::read_dir(process.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else { continue };
            if target.starts_with(&root) {
                let command = fs::read_to_string(process.path().join("comm")).unwrap_or_default();
                return Err(Error::Invalid(format!(
                    "{}: an offline copy was asked for, but process {pid} ({}) has {} open: stop it first, or take a hot copy",
                    root.display(),
                    command.trim(),
                    target.display()
                ))
                .with_hint(Hint::HotCopy));
            }
        }
    }
    Ok(())
}
