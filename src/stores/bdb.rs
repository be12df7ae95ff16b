//! The `bdb` store: a Berkeley DB (core or XML) environment home. Data files first, in
//! name order, then `log.NNNNNNNNNN` in ascending number, as Berkeley DB's hot backup
//! procedure requires (a page must never be newer than the log that describes it).
//! Region files are left out: they are the running environment's shared memory, and
//! recovery recreates them. After the planned files, the home is listed again and log
//! files created meanwhile are copied, until a listing finds none.

use super::logs::{HotCopy, LogCopy};
use super::offline::assert_no_open_files;
use super::{unsupported, Planned, StoreType};
use crate::config::CHUNKER_PAGES;
use crate::error::{Error, Hint, Result};
use crate::manifest::{Excluded, FileRole};
use crate::walk::{Found, Walked, Walker};
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

/// DB_CONFIG lines that put files in other directories: followed inside the home,
/// refused outside it.
const RELOCATING: [&str; 4] = ["set_data_dir", "add_data_dir", "set_lg_dir", "set_create_dir"];

/// The environment's files in copy order. With `offline`, first asserts that no process
/// uses the environment.
pub fn open(root: &Path, offline: bool) -> Result<HotCopy> {
    if offline {
        assert_no_open_files(root)?;
    }
    let log_dir = directories(root)?;
    let in_log_dir = |rel: &[u8]| match rel.iter().rposition(|&c| c == b'/') {
        None => log_dir.is_empty(),
        Some(slash) => rel[..slash] == log_dir[..],
    };
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
        } else if let Some(n) = file_name(&found.rel)
            .and_then(log_number)
            .filter(|_| in_log_dir(&found.rel) && found.meta.is_file())
        {
            logs.push((found, n));
        } else if found.rel == b"DB_CONFIG" {
            config.push(Planned::plain(found));
        } else {
            // Everything else, subdirectories included, in walk order: a directory
            // before its contents. Containers are updated page by page in place: cut
            // in fixed pieces, each changed one stored as a delta against the parent's.
            data.push(Planned { role: FileRole::Data, chunker: CHUNKER_PAGES, ..Planned::plain(found) });
        }
    }
    if logs.is_empty() && !offline {
        let what = "no log files in the environment's log directory: a hot copy needs them";
        return Err(unsupported(root, what.into()));
    }
    let home = root.to_path_buf();
    let (logs, first) = LogCopy::new(root, Box::new(move || list_logs(&home, &log_dir)), logs)?;
    let files = config.into_iter().chain(data).chain(first).collect();
    Ok(HotCopy::new(StoreType::Bdb, offline, files, logs, excluded))
}

fn file_name(rel: &[u8]) -> Option<&[u8]> {
    rel.rsplit(|&c| c == b'/').next()
}

/// The log files in the log directory (`log_dir`, relative to the home) as it is now.
fn list_logs(home: &Path, log_dir: &[u8]) -> Result<Vec<(Found, u64)>> {
    let dir = home.join(std::ffi::OsStr::from_bytes(log_dir));
    let mut logs = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        let name = entry.file_name().as_bytes().to_vec();
        let Some(n) = log_number(&name) else { continue };
        let abs = entry.path();
        let rel = match log_dir.is_empty() {
            true => name,
            false => [log_dir, b"/", &name].concat(),
        };
        // Gone already: the next pass's caller only wants logs that exist.
        if let Ok(meta) = fs::symlink_metadata(&abs) {
            if meta.is_file() {
                logs.push((Found { rel, abs, meta }, n));
            }
        }
    }
    Ok(logs)
}

/// Reads DB_CONFIG's directories: data directories inside the home are walked like the
/// rest of it; returns the log directory (relative to the home, empty for the home).
/// Directories outside the home are refused: the copy would not be one tree.
fn directories(root: &Path) -> Result<Vec<u8>> {
    let Ok(text) = fs::read_to_string(root.join("DB_CONFIG")) else { return Ok(Vec::new()) };
    let mut log_dir = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let word = words.next().unwrap_or("");
        if !RELOCATING.contains(&word) {
            continue;
        }
        let dir = words.next().unwrap_or("").trim_end_matches('/');
        if dir.is_empty() || dir.starts_with('/') || crate::manifest::validate_path(dir.as_bytes()).is_err() {
            let what = format!("DB_CONFIG: {word} {dir}: a directory outside the environment home; back up each directory's environment with the store stopped, as a plain tree, or keep the directories inside the home");
            return Err(unsupported(root, what).with_hint(Hint::PlainTree));
        }
        if word == "set_lg_dir" {
            log_dir = dir.as_bytes().to_vec();
        }
    }
    Ok(log_dir)
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
    fn directories_inside_the_home_are_followed_and_outside_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["set_lg_dir /var/log/db", "set_data_dir ../data", "add_data_dir"] {
            fs::write(dir.path().join("DB_CONFIG"), format!("{bad}\n")).unwrap();
            let err = open(dir.path(), false).err().unwrap();
            assert!(err.to_string().contains("outside the environment home"), "{bad}: {err}");
        }
        fs::write(dir.path().join("DB_CONFIG"), "set_data_dir data\nset_lg_dir logs/\n").unwrap();
        for sub in ["data", "logs"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        for name in ["data/a.db", "logs/log.0000000001", "logs/log.0000000002", "log.0000000007"] {
            fs::write(dir.path().join(name), name).unwrap();
        }
        let order: Vec<(String, Option<u64>)> = open(dir.path(), false)
            .unwrap()
            .map(|s| match s.unwrap() {
                Sourced::File(p) => (String::from_utf8(p.found.rel).unwrap(), p.log_number),
                _ => panic!("files only"),
            })
            .collect();
        let names: Vec<&str> = order.iter().map(|(n, _)| n.as_str()).collect();
        // A stray log.* outside the log directory is an ordinary file of the home.
        assert_eq!(
            names,
            [
                "DB_CONFIG",
                "data",
                "data/a.db",
                "log.0000000007",
                "logs",
                "logs/log.0000000001",
                "logs/log.0000000002"
            ]
        );
        assert_eq!(order[6].1, Some(2));
        assert_eq!(order[3].1, None);
    }
}
