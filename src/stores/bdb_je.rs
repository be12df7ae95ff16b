//! The `bdb-je` store: a Berkeley DB Java Edition environment. JE keeps everything in
//! its log, `NNNNNNNN.jdb` files numbered in hexadecimal, appended to and never changed
//! once full; its cleaner copies the live records of old files into new ones and
//! deletes the old files, at any time. A copy takes the files in ascending number, each
//! in the `dataNNN/` subdirectory JE put it in, and lists again until no new file
//! appears (see `logs`). Gaps in the numbers are normal: they are cleaned files.

use super::logs::{HotCopy, LogCopy};
use super::offline::assert_no_open_files;
use super::{unsupported, Planned, StoreType};
use crate::error::{Error, Result};
use crate::manifest::Excluded;
use crate::walk::{Found, Walked, Walker};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Eight hexadecimal digits and `.jdb`.
pub fn log_number(name: &[u8]) -> Option<u64> {
    let digits = name.strip_suffix(b".jdb")?;
    if digits.len() != 8 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// `dataNNN`: the subdirectories JE spreads its log over when configured to.
fn is_data_dir(name: &[u8]) -> bool {
    name.strip_prefix(b"data").is_some_and(|d| d.len() == 3 && d.iter().all(u8::is_ascii_digit))
}

/// Where a log file may be: the home itself or one of its data subdirectories.
fn log_location(rel: &[u8]) -> Option<u64> {
    match rel.iter().position(|&c| c == b'/') {
        None => log_number(rel),
        Some(slash) if is_data_dir(&rel[..slash]) => log_number(&rel[slash + 1..]),
        Some(_) => None,
    }
}

/// Files JE writes beside its log that are no part of the store.
fn left_out(name: &[u8]) -> Option<&'static str> {
    if name == b"je.lck" {
        Some("JE's lock file: held by the running environment, made again when it opens")
    } else if name.starts_with(b"je.info.") {
        Some("JE's own trace log")
    } else if name.starts_with(b"je.stat.") || name.starts_with(b"je.config.") {
        Some("JE's statistics output")
    } else if name.ends_with(b".del") || name.ends_with(b".bad") {
        Some("a log file JE's cleaner or verifier set aside: no longer part of the store")
    } else {
        None
    }
}

pub fn looks_like_environment(root: &Path) -> bool {
    let Ok(entries) = fs::read_dir(root) else { return false };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.as_bytes();
        log_number(name).is_some() || name == b"je.lck"
    })
}

/// The environment's files in copy order. With `offline`, first asserts that no process
/// has the environment open (a running JE holds `je.lck` and its log files open).
pub fn open(root: &Path, offline: bool) -> Result<HotCopy> {
    if offline {
        assert_no_open_files(root)?;
    }
    let (mut other, mut logs, mut excluded) = (Vec::new(), Vec::new(), Vec::new());
    for walked in Walker::new(root) {
        let found = match walked {
            Walked::Entry(found) => found,
            Walked::Error { message, .. } => return Err(Error::Invalid(message)),
        };
        let name = found.rel.rsplit(|&c| c == b'/').next().unwrap_or_default();
        if let Some(n) = log_location(&found.rel).filter(|_| found.meta.is_file()) {
            logs.push((found, n));
        } else if let Some(reason) = left_out(name) {
            excluded.push(Excluded { path: found.rel, reason: reason.into() });
        } else {
            // je.properties, the data subdirectories themselves, anything else the
            // application keeps here: kept as they are, before the log.
            other.push(Planned::plain(found));
        }
    }
    if logs.is_empty() && !offline {
        return Err(unsupported(
            root,
            "no .jdb log files: not a Berkeley DB Java Edition environment".into(),
        ));
    }
    let home = root.to_path_buf();
    let (logs, first) = LogCopy::new(root, Box::new(move || list_logs(&home)), logs)?;
    let files = other.into_iter().chain(first).collect();
    Ok(HotCopy::new(StoreType::BdbJe, offline, files, logs, excluded))
}

/// The log files in the home and its data subdirectories as they are now.
fn list_logs(root: &Path) -> Result<Vec<(Found, u64)>> {
    let mut logs = Vec::new();
    let mut dirs = vec![(Vec::new(), root.to_path_buf())];
    while let Some((prefix, dir)) = dirs.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let name = entry.file_name().as_bytes().to_vec();
            let rel = [prefix.as_slice(), &name].concat();
            let Ok(meta) = fs::symlink_metadata(entry.path()) else { continue };
            if prefix.is_empty() && meta.is_dir() && is_data_dir(&name) {
                dirs.push(([rel.as_slice(), b"/"].concat(), entry.path()));
            } else if let Some(n) = log_number(&name).filter(|_| meta.is_file()) {
                logs.push((Found { rel, abs: entry.path(), meta }, n));
            }
        }
    }
    Ok(logs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::{Source, Sourced};

    #[test]
    fn log_names() {
        assert_eq!(log_number(b"0000001f.jdb"), Some(31));
        assert_eq!(log_number(b"0000001f.del"), None);
        assert_eq!(log_number(b"000001f.jdb"), None);
        assert_eq!(log_location(b"data002/0000000a.jdb"), Some(10));
        assert_eq!(log_location(b"other/0000000a.jdb"), None);
        assert_eq!(log_location(b"data2/0000000a.jdb"), None);
    }

    #[test]
    fn plan_keeps_subdirectories_orders_by_number_and_leaves_jes_own_files_out() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("data001")).unwrap();
        fs::create_dir(dir.path().join("data002")).unwrap();
        let files =
            ["data002/00000003.jdb", "data001/00000002.jdb", "data002/00000000.jdb", "je.lck", "je.info.0"];
        for name in files.into_iter().chain(["je.properties", "0000000b.del"]) {
            fs::write(dir.path().join(name), name).unwrap();
        }
        let source = open(dir.path(), false).unwrap();
        let report = source.report();
        let order: Vec<String> = source
            .map(|s| match s.unwrap() {
                Sourced::File(p) => String::from_utf8(p.found.rel).unwrap(),
                Sourced::Unreadable { message, .. } => panic!("{message}"),
                Sourced::Stream { .. } => panic!("a store yields files"),
            })
            .collect();
        assert_eq!(
            order,
            [
                "data001",
                "data002",
                "je.properties",
                "data002/00000000.jdb",
                "data001/00000002.jdb",
                "data002/00000003.jdb"
            ]
        );
        let excluded: Vec<&[u8]> = report.excluded.iter().map(|e| e.path.as_slice()).collect();
        assert_eq!(excluded, [b"0000000b.del".as_slice(), b"je.info.0", b"je.lck"]);
    }
}
