//! The log files of a hot copy, shared by the database store types. Logs are copied
//! after the data files, in ascending number, and held open from the moment they are
//! listed: the store may remove a log (a checkpoint, JE's cleaner) while earlier files
//! are copied, and an open descriptor keeps it readable.
//!
//! The newest log is still being appended to, so it is copied last: when a new listing
//! finds newer logs, the one that was newest is complete and is copied before them; when
//! a listing finds none, the newest is copied and the copy ends. Its copy is then a
//! prefix of the log, which recovery accepts; copying it before a newer log appeared
//! could leave a hole between the two.

use super::{unsupported, Planned, Source, SourceReport, Sourced, StoreType};
use crate::config::CHUNKER_DEFAULT;
use crate::error::{Error, Result};
use crate::manifest::{Consistency, Excluded, FileRole};
use crate::walk::Found;
use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};

/// Listing passes before giving up on a store that keeps creating log files.
pub const MAX_PASSES: u32 = 10;

/// Every log file of the store as it is now, with its number.
pub type ListLogs = Box<dyn Fn() -> Result<Vec<(Found, u64)>> + Send>;

pub struct LogCopy {
    root: PathBuf,
    list: ListLogs,
    /// Highest log number listed so far; later passes look for logs above it.
    last_listed: Option<u64>,
    /// The newest log listed, held back until a listing shows whether more follow.
    newest: Option<Planned>,
    passes: u32,
    done: bool,
}

pub fn log_file(found: Found, number: u64) -> Planned {
    // Logs only grow: large chunks.
    Planned { found, role: FileRole::Log, log_number: Some(number), chunker: CHUNKER_DEFAULT, open: None }
}

impl LogCopy {
    /// Starts with the logs of the first listing; returns those to copy at once (all
    /// but the newest).
    pub fn new(root: &Path, list: ListLogs, logs: Vec<(Found, u64)>) -> Result<(LogCopy, Vec<Planned>)> {
        allow_many_open_files();
        let mut copy = LogCopy {
            root: root.to_path_buf(),
            list,
            last_listed: None,
            newest: None,
            passes: 1,
            done: false,
        };
        let first = copy.take(logs)?;
        Ok((copy, first))
    }

    pub fn passes(&self) -> u32 {
        self.passes
    }

    /// The next logs to copy, once everything handed out before is copied; empty when
    /// the copy is complete.
    pub fn next_pass(&mut self) -> Result<Vec<Planned>> {
        if self.done {
            return Ok(Vec::new());
        }
        let newer: Vec<(Found, u64)> = (self.list)()?
            .into_iter()
            .filter(|(_, n)| self.last_listed.is_none_or(|last| *n > last))
            .collect();
        if newer.is_empty() {
            self.done = true;
            return Ok(self.newest.take().into_iter().collect());
        }
        if self.passes >= MAX_PASSES {
            let what = format!("new log files kept appearing after {MAX_PASSES} listing passes; checkpoint or pause the writer and retry");
            return Err(unsupported(&self.root, what));
        }
        self.passes += 1;
        self.take(newer)
    }

    /// Opens the listed logs, queues the previous newest (complete now) and all but the
    /// newest of these.
    fn take(&mut self, mut logs: Vec<(Found, u64)>) -> Result<Vec<Planned>> {
        logs.sort_by_key(|(_, n)| *n);
        let mut out: Vec<Planned> = self.newest.take().into_iter().collect();
        for (found, n) in logs {
            let mut log = log_file(found, n);
            match fs::File::open(&log.found.abs) {
                Ok(file) => log.open = Some(file),
                // Removed between listing and opening: the copy notes it as vanished,
                // and the store type decides whether the sequence can do without it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&log.found.abs, e)),
            }
            self.last_listed = Some(n);
            out.extend(self.newest.replace(log));
        }
        Ok(out)
    }
}

/// A database store's copy as a `Source`: its other files first, then its logs as
/// `LogCopy` hands them out.
pub struct HotCopy {
    store_type: StoreType,
    offline: bool,
    queue: VecDeque<Planned>,
    excluded: Vec<Excluded>,
    logs: LogCopy,
}

impl HotCopy {
    pub fn new(
        store_type: StoreType,
        offline: bool,
        files: Vec<Planned>,
        logs: LogCopy,
        excluded: Vec<Excluded>,
    ) -> HotCopy {
        HotCopy { store_type, offline, queue: files.into(), excluded, logs }
    }
}

impl Iterator for HotCopy {
    type Item = Result<Sourced>;

    fn next(&mut self) -> Option<Result<Sourced>> {
        if self.queue.is_empty() {
            match self.logs.next_pass() {
                Ok(more) => self.queue.extend(more),
                Err(e) => return Some(Err(e)),
            }
        }
        self.queue.pop_front().map(|p| Ok(Sourced::File(p)))
    }
}

impl Source for HotCopy {
    fn store_type(&self) -> StoreType {
        self.store_type
    }

    fn all_or_nothing(&self) -> bool {
        true
    }

    fn report(&self) -> SourceReport {
        SourceReport {
            consistency: if self.offline { Consistency::Offline } else { Consistency::Hot },
            passes: self.logs.passes(),
            excluded: self.excluded.clone(),
            // Berkeley DB removes logs only from the oldest end; JE's cleaner any.
            contiguous_logs: self.store_type == StoreType::Bdb,
            command: None,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn list_top(root: &Path) -> Result<Vec<(Found, u64)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(root).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if let Some(n) = name.strip_suffix(".log").and_then(|n| n.parse().ok()) {
                let meta = entry.metadata().unwrap();
                out.push((Found { rel: name.into_bytes(), abs: entry.path(), meta }, n));
            }
        }
        Ok(out)
    }

    fn numbers(planned: &[Planned]) -> Vec<u64> {
        planned.iter().map(|p| p.log_number.unwrap()).collect()
    }

    #[test]
    fn the_newest_log_waits_until_a_listing_shows_no_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        for n in [3, 1, 2] {
            fs::write(dir.path().join(format!("{n}.log")), "x").unwrap();
        }
        let root = dir.path().to_path_buf();
        let list: ListLogs = Box::new(move || list_top(&root));
        let (mut copy, first) = LogCopy::new(dir.path(), list, list_top(dir.path()).unwrap()).unwrap();
        assert_eq!(numbers(&first), [1, 2]);
        fs::write(dir.path().join("4.log"), "x").unwrap();
        fs::write(dir.path().join("5.log"), "x").unwrap();
        assert_eq!(numbers(&copy.next_pass().unwrap()), [3, 4]);
        assert_eq!(numbers(&copy.next_pass().unwrap()), [5]);
        fs::write(dir.path().join("6.log"), "x").unwrap();
        assert!(copy.next_pass().unwrap().is_empty(), "the copy ended with 5");
        assert_eq!(copy.passes(), 2);
    }

    #[test]
    fn a_store_that_keeps_writing_logs_fails_after_the_last_pass() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let (mut copy, _) = LogCopy::new(dir.path(), Box::new(move || list_top(&root)), Vec::new()).unwrap();
        let mut result = Ok(Vec::new());
        for n in 0..=MAX_PASSES as u64 {
            fs::write(dir.path().join(format!("{n}.log")), "x").unwrap();
            result = copy.next_pass();
            if result.is_err() {
                break;
            }
        }
        assert!(result.err().unwrap().to_string().contains("kept appearing"));
    }
}
