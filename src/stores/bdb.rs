//! The `bdb` store: a Berkeley DB (core or XML) environment home. Data files first, in
//! name order, then `log.NNNNNNNNNN` in ascending number, as Berkeley DB's hot backup
//! procedure requires (a page must never be newer than the log that describes it).
//! Region files are left out: they are the running environment's shared memory, and
//! recovery recreates them. After the planned files, the home is listed again and log
//! files created meanwhile are copied, until a listing finds none.

use super::dir::{Found, Walked, Walker};
use super::{unsupported, Planned, Source, SourceReport, Sourced, StoreType};
use crate::config::{CHUNKER_DEFAULT, CHUNKER_FINE};
use crate::error::{Error, Result};
use crate::manifest::{Consistency, Excluded, FileRole};
use std::collections::VecDeque;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Listing passes before giving up on a store that keeps creating log files.
pub const MAX_PASSES: u32 = 10;

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

/// For `--offline`: no process may have a file of the home open. Checked through
/// /proc/*/fd, which shows every process to root and a user's own processes to others.
pub fn assert_offline(root: &Path) -> Result<()> {
    let root = root.canonicalize().map_err(|e| Error::io(root, e))?;
    let me = std::process::id().to_string();
    let Ok(processes) = fs::read_dir("/proc") else {
        return Err(unsupported(&root, "--offline needs /proc to see which processes use the store".into()));
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
                    "{}: --offline, but process {pid} ({}) has {} open: stop it first, or back up without --offline (a hot copy)",
                    root.display(),
                    command.trim(),
                    target.display()
                )));
            }
        }
    }
    Ok(())
}

pub struct BdbSource {
    root: PathBuf,
    offline: bool,
    queue: VecDeque<Planned>,
    excluded: Vec<Excluded>,
    /// Highest log number listed so far; later passes look for logs above it.
    last_log: Option<u64>,
    passes: u32,
}

impl BdbSource {
    /// With `offline`, first asserts that no process uses the environment.
    pub fn new(root: &Path, offline: bool) -> Result<BdbSource> {
        if offline {
            assert_offline(root)?;
        }
        refuse_relocated_files(root)?;
        allow_many_open_files();
        let mut source = BdbSource {
            root: root.to_path_buf(),
            offline,
            queue: VecDeque::new(),
            excluded: Vec::new(),
            last_log: None,
            passes: 1,
        };
        let (mut config, mut data, mut logs) = (Vec::new(), Vec::new(), Vec::new());
        for walked in Walker::new(root) {
            let found = match walked {
                Walked::Entry(found) => found,
                Walked::Error { message, .. } => return Err(Error::Invalid(message)),
            };
            let top_level = !found.rel.contains(&b'/');
            let name = found.rel.clone();
            if top_level && is_region_file(&name) {
                let reason = "region file: the running environment's shared memory; recovery recreates it";
                source.excluded.push(Excluded { path: name, reason: reason.into() });
            } else if let Some(n) = log_number(&name).filter(|_| top_level && found.meta.is_file()) {
                logs.push(planned(found, FileRole::Log, Some(n)));
            } else if name == b"DB_CONFIG" {
                config.push(planned(found, FileRole::Plain, None));
            } else {
                // Everything else, subdirectories included, in walk order: a directory
                // before its contents.
                data.push(planned(found, FileRole::Data, None));
            }
        }
        if logs.is_empty() && !offline {
            let what = "no log files in the environment home: a hot copy needs them (if the application moves them with set_lg_dir, back up that directory too, offline)";
            return Err(unsupported(root, what.into()));
        }
        logs.sort_by_key(|p| p.log_number);
        source.last_log = logs.last().and_then(|p| p.log_number);
        source.hold_open(&mut logs)?;
        source.queue.extend(config.into_iter().chain(data).chain(logs));
        Ok(source)
    }

    /// Opens the logs as soon as they are listed. Berkeley DB may remove a log once a
    /// checkpoint passes it, and a checkpoint can happen while the data files are being
    /// copied; the copied pages may still need that log. An open descriptor keeps it
    /// readable to the end.
    fn hold_open(&self, logs: &mut [Planned]) -> Result<()> {
        for log in logs {
            match fs::File::open(&log.found.abs) {
                Ok(file) => log.open = Some(file),
                // Removed between listing and opening: the gap check decides whether
                // the copy can do without it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&log.found.abs, e)),
            }
        }
        Ok(())
    }

    /// Another listing of the home: log files above the highest one listed so far.
    fn next_pass(&mut self) -> Result<()> {
        let entries = fs::read_dir(&self.root).map_err(|e| Error::io(&self.root, e))?;
        let mut logs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.root, e))?;
            let name = entry.file_name().as_bytes().to_vec();
            let Some(n) = log_number(&name).filter(|n| self.last_log.is_none_or(|last| *n > last)) else {
                continue;
            };
            let abs = entry.path();
            if let Ok(meta) = fs::symlink_metadata(&abs) {
                if meta.is_file() {
                    logs.push(planned(Found { rel: name, abs, meta }, FileRole::Log, Some(n)));
                }
            }
        }
        if logs.is_empty() {
            return Ok(());
        }
        if self.passes >= MAX_PASSES {
            let what = format!("new log files kept appearing after {MAX_PASSES} listing passes; checkpoint or pause the writer and retry");
            return Err(unsupported(&self.root, what));
        }
        self.passes += 1;
        logs.sort_by_key(|p| p.log_number);
        self.last_log = logs.last().and_then(|p| p.log_number);
        self.hold_open(&mut logs)?;
        self.queue.extend(logs);
        Ok(())
    }
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

/// Holding every log open may need more descriptors than the default soft limit.
fn allow_many_open_files() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

fn planned(found: Found, role: FileRole, log_number: Option<u64>) -> Planned {
    // Containers are updated page by page in place: small chunks keep an incremental
    // close to the pages that changed. Logs only grow: large chunks.
    let chunker = if role == FileRole::Data { CHUNKER_FINE } else { CHUNKER_DEFAULT };
    Planned { found, role, log_number, chunker, open: None }
}

impl Iterator for BdbSource {
    type Item = Result<Sourced>;

    fn next(&mut self) -> Option<Result<Sourced>> {
        if self.queue.is_empty() {
            if let Err(e) = self.next_pass() {
                return Some(Err(e));
            }
        }
        self.queue.pop_front().map(|p| Ok(Sourced::File(p)))
    }
}

impl Source for BdbSource {
    fn store_type(&self) -> StoreType {
        StoreType::Bdb
    }

    fn all_or_nothing(&self) -> bool {
        true
    }

    fn report(&self) -> SourceReport {
        let consistency = if self.offline { Consistency::Offline } else { Consistency::Hot };
        SourceReport { consistency, passes: self.passes, excluded: self.excluded.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let source = BdbSource::new(dir.path(), false).unwrap();
        let report = source.report();
        let order: Vec<(String, FileRole)> = source
            .map(|s| match s.unwrap() {
                Sourced::File(p) => (String::from_utf8(p.found.rel).unwrap(), p.role),
                Sourced::Unreadable { message, .. } => panic!("{message}"),
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
        let err = BdbSource::new(dir.path(), false).err().unwrap();
        assert!(err.to_string().contains("set_data_dir"), "{err}");
    }
}
