//! The `bdb` store: a Berkeley DB (core or XML) environment home. Data files first, in
//! name order, then `log.NNNNNNNNNN` in ascending number, as Berkeley DB's hot backup
//! procedure requires (a page must never be newer than the log that describes it).
//! Region files are left out: they are the running environment's shared memory, and
//! recovery recreates them. After the planned files, the home is listed again and log
//! files created meanwhile are copied, until a listing finds none.

use super::dir::{Found, Walked, Walker};
use super::logs::{HotCopy, LogCopy};
use super::offline::assert_no_open_files;
use super::{unsupported, Planned, StoreType};
use crate::config::CHUNKER_FINE;
use crate::error::{Error, Result};
use crate::manifest::{Excluded, FileRole};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `log.` followed by exactly ten digits.
pub fn log_number(name: &[u8]) -> Option<u64> {
    let digits = name.strip_prefix(b"log.")?;
    if digits.len() != 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn is_region_file(name: &[u8]) -> bool {
    name.starts_with(b"__db.")
}

pub fn looks_like_environment(root: &Path) -> bool {
    let Ok(entries) = fs::read_dir(root) else { return false };
    entries.flatten().any(|e| {
        let name = e.file_name();
        log_number(name.as_bytes()).is_some() || name.as_bytes() == b"__db.001"
    })
}

/// DB_CONFIG lines that move files out of the home, which this version does not follow.
const RELOCATING: [&str; 4] = ["set_data_dir", "add_data_dir", "set_lg_dir", "set_create_dir"];

/// The environment's files in copy order. With `offline`, first asserts that no process
/// uses the environment.
pub fn open(root: &Path, offline: bool) -> Result<HotCopy> {
    if offline {
        assert_no_open_files(root)?;
    }
    refuse_relocated_files(root)?;
    let (mut config, mut data, mut logs, mut excluded) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for walked in Walker::new(root) {
        let found = match walked {
            Walked::Entry(found) => found,
            Walked::Error { message, .. } => return Err(Error::Invalid(message)),
        };
        let top_level = !found.rel.contains(&b'/');
        if top_level && is_region_file(&found.rel) {
            let reason = "region file: the running environment's shared memory; recovery recreates it";
            excluded.push(Excluded { path: found.rel, reason: reason.into() });
        } else if let Some(n) = log_number(&found.rel).filter(|_| top_level && found.meta.is_file()) {
            logs.push((found, n));
        } else if found.rel == b"DB_CONFIG" {
            config.push(Planned::plain(found));
        } else {
            // Everything else, subdirectories included, in walk order: a directory
            // before its contents. Containers are updated page by page in place:
            // small chunks keep an incremental close to the pages that changed.
            data.push(Planned { role: FileRole::Data, chunker: CHUNKER_FINE, ..Planned::plain(found) });
        }
    }
    if logs.is_empty() && !offline {
        let what = "no log files in the environment home: a hot copy needs them (if the application moves them with set_lg_dir, back up that directory too, offline)";
        return Err(unsupported(root, what.into()));
    }
    let (logs, first) = LogCopy::new(root, list_logs, logs)?;
    let files = config.into_iter().chain(data).chain(first).collect();
    Ok(HotCopy::new(StoreType::Bdb, offline, files, logs, excluded))
}

/// The log files in the home as it is now.
fn list_logs(root: &Path) -> Result<Vec<(Found, u64)>> {
    let mut logs = Vec::new();
    for entry in fs::read_dir(root).map_err(|e| Error::io(root, e))? {
        let entry = entry.map_err(|e| Error::io(root, e))?;
        let name = entry.file_name().as_bytes().to_vec();
        let Some(n) = log_number(&name) else { continue };
        let abs = entry.path();
        // Gone already: the next pass's caller only wants logs that exist.
        if let Ok(meta) = fs::symlink_metadata(&abs) {
            if meta.is_file() {
                logs.push((Found { rel: name, abs, meta }, n));
            }
        }
    }
    Ok(logs)
}

fn refuse_relocated_files(root: &Path) -> Result<()> {
    let Ok(text) = fs::read_to_string(root.join("DB_CONFIG")) else { return Ok(()) };
    for line in text.lines() {
        let word = line.split_whitespace().next().unwrap_or("");
        if RELOCATING.contains(&word) {
            let what = format!("DB_CONFIG uses {word}: environments with data or log directories outside the home are not supported yet (back up with --type dir after a checkpoint with the store stopped)");
            return Err(unsupported(root, what));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::{Source, Sourced};

    #[test]
    fn log_names() {
        assert_eq!(log_number(b"log.0000000042"), Some(42));
        assert_eq!(log_number(b"log.000000042"), None);
        assert_eq!(log_number(b"log.00000000x2"), None);
        assert_eq!(log_number(b"xlog.0000000042"), None);
    }

    #[test]
    fn plan_puts_data_before_logs_and_leaves_regions_out() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["log.0000000010", "b.db", "__db.001", "log.0000000009", "a.db", "DB_CONFIG"] {
            fs::write(dir.path().join(name), name).unwrap();
        }
        let source = open(dir.path(), false).unwrap();
        let report = source.report();
        let order: Vec<(String, FileRole)> = source
            .map(|s| match s.unwrap() {
                Sourced::File(p) => (String::from_utf8(p.found.rel).unwrap(), p.role),
                Sourced::Unreadable { message, .. } => panic!("{message}"),
                Sourced::Stream { .. } => panic!("a store yields files"),
            })
            .collect();
        let names: Vec<&str> = order.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["DB_CONFIG", "a.db", "b.db", "log.0000000009", "log.0000000010"]);
        assert_eq!(order[1].1, FileRole::Data);
        assert_eq!(report.excluded.len(), 1);
    }

    #[test]
    fn relocated_homes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("DB_CONFIG"), "set_data_dir data\n").unwrap();
        let err = open(dir.path(), false).err().unwrap();
        assert!(err.to_string().contains("set_data_dir"), "{err}");
    }
}
