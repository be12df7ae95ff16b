//! `restore --until-log N`: a database component as of the end of its log file N, put
//! together from the snapshots of a set. What is guaranteed (format-spec/snapshots.md,
//! "Restoring to a log number"):
//! - `bdb`: the data files of the newest snapshot whose copy ended at or before log N,
//!   and every log from that snapshot's first to N, each from a snapshot that holds it
//!   complete (N itself may be the prefix a snapshot took while it was being written).
//!   Catastrophic recovery (`db_recover -c`) then rolls the data files forward to the
//!   end of log N. Refused when a log in between is in no snapshot, or only as a prefix.
//! - `bdb-je`: JE's cleaner moves live records from old files into new ones, so files
//!   from different moments cannot be mixed: the files of the snapshot whose last log
//!   is N, with N taken complete from a later snapshot when one has it. Refused when no
//!   snapshot ended at log N.

use super::{restore_records, RestoreOptions, RestoreReport};
use crate::error::{Error, Hint, Result};
use crate::id::SnapshotId;
use crate::manifest::{ComponentSummary, FileEntry, FileRole, ManifestReader, Record, SnapshotSummary};
use crate::repo::Repository;
use crate::stores::StoreType;
use crate::Progress;
use std::collections::{BTreeMap, BTreeSet};

pub struct UntilLog {
    pub set: Option<String>,
    /// Needed only when the set's snapshots hold several database components.
    pub component: Option<String>,
    pub log: u64,
}

pub struct UntilLogReport {
    pub restore: RestoreReport,
    pub component: String,
    /// The snapshot the data files (for bdb-je, the files below N) came from.
    pub data_from: SnapshotId,
    /// Every snapshot some file came from.
    pub used: Vec<SnapshotId>,
}

/// A log copy and whether it is whole (the snapshot had newer logs).
struct LogCopy {
    entry: FileEntry,
    complete: bool,
    from: SnapshotId,
}

pub fn restore_until_log(
    repo: &Repository,
    request: &UntilLog,
    options: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<UntilLogReport> {
    let n = request.log;
    let (set, snapshots) = repo.snapshots_of_set(request.set.as_deref())?;
    let name = component_name(&set, &snapshots, request.component.as_deref())?;
    // Snapshots holding the component with logs, oldest first.
    let copies: Vec<(&SnapshotSummary, &ComponentSummary)> = snapshots
        .iter()
        .filter_map(|s| s.components.iter().find(|c| c.header.name == name).map(|c| (s, c)))
        .filter(|(_, c)| c.trailer.last_log_number.is_some())
        .collect();
    let last_of = |c: &ComponentSummary| c.trailer.last_log_number.expect("filtered");
    let store_type = copies.last().map(|(_, c)| c.header.store_type.clone()).unwrap_or_default();
    let endings = || copies.iter().map(|(_, c)| last_of(c).to_string()).collect::<Vec<_>>().join(", ");

    let newest = copies.iter().map(|(_, c)| last_of(c)).max();
    if newest.is_none_or(|newest| n > newest) {
        let what = format!("no snapshot holds log {n} (the snapshots end at logs {})", endings());
        return Err(refused(&set, &name, n, what));
    }
    let data_index = match StoreType::parse(&store_type) {
        Some(StoreType::Bdb) => copies.iter().rposition(|(_, c)| last_of(c) <= n),
        Some(StoreType::BdbJe) => copies.iter().rposition(|(_, c)| last_of(c) == n),
        _ => {
            return Err(refused(
                &set,
                &name,
                n,
                format!("store type {store_type:?} has no logs to restore to"),
            ))
        }
    };
    let Some(data_index) = data_index else {
        let what = match store_type.as_str() {
            "bdb" => "no snapshot's copy ended at or before that log".to_string(),
            _ => "bdb-je files can only be taken together as a snapshot left them, and no snapshot ended at that log".to_string(),
        };
        return Err(refused(&set, &name, n, format!("{what} (the snapshots end at logs {})", endings())));
    };
    let (data_snapshot, data_component) = copies[data_index];
    let data_files = component_files(repo, &data_snapshot.id, &name)?;
    let first = data_component.trailer.first_log_number.ok_or_else(|| {
        Error::Snapshot(format!(
            "snapshot {}: component {name} has a last log number but no first",
            data_snapshot.id
        ))
    })?;
    let needed: BTreeSet<u64> = match store_type.as_str() {
        "bdb" => (first..=n).collect(),
        _ => data_files.iter().filter(|e| e.role == FileRole::Log).filter_map(|e| e.log_number).collect(),
    };

    // Each needed log from the first snapshot (from the data snapshot on) that holds
    // it complete, or else the longest prefix of it.
    let mut chosen: BTreeMap<u64, LogCopy> = BTreeMap::new();
    let unsettled = |chosen: &BTreeMap<u64, LogCopy>, k: &u64| chosen.get(k).is_none_or(|c| !c.complete);
    for (i, (snapshot, component)) in copies.iter().enumerate().skip(data_index) {
        let range = component.trailer.first_log_number.unwrap_or(0)..=last_of(component);
        if !needed.range(range).any(|k| unsettled(&chosen, k)) {
            continue;
        }
        let files =
            if i == data_index { data_files.clone() } else { component_files(repo, &snapshot.id, &name)? };
        for entry in files.into_iter().filter(|e| e.role == FileRole::Log) {
            let Some(k) = entry.log_number.filter(|k| needed.contains(k) && unsettled(&chosen, k)) else {
                continue;
            };
            let complete = k < last_of(component);
            chosen.insert(k, LogCopy { entry, complete, from: snapshot.id });
        }
    }
    if let Some(missing) = needed.iter().find(|k| !chosen.contains_key(k)) {
        return Err(refused(&set, &name, n, format!("log {missing} is in no snapshot of the set")));
    }
    if let Some((k, _)) = chosen.iter().find(|(k, c)| **k < n && !c.complete) {
        let what = format!(
            "log {k} was only copied while it was being written, and no later snapshot holds it whole"
        );
        return Err(refused(&set, &name, n, what));
    }

    let mut header = data_component.header.clone();
    header.placement = Vec::new();
    let mut used = vec![data_snapshot.id];
    let mut records = vec![Ok(Record::Component(header.clone()))];
    records.extend(data_files.into_iter().filter(|e| e.role != FileRole::Log).map(|e| Ok(Record::File(e))));
    for copy in chosen.into_values() {
        if !used.contains(&copy.from) {
            used.push(copy.from);
        }
        records.push(Ok(Record::File(copy.entry)));
    }
    let restore = restore_records(repo, &[&header], records.into_iter(), options, progress)?;
    Ok(UntilLogReport { restore, component: name, data_from: data_snapshot.id, used })
}

/// The component asked for, or the set's only database component.
fn component_name(set: &str, snapshots: &[SnapshotSummary], asked: Option<&str>) -> Result<String> {
    if let Some(name) = asked {
        return Ok(name.to_string());
    }
    let mut names: Vec<&str> = snapshots
        .iter()
        .flat_map(|s| &s.components)
        .filter(|c| StoreType::parse(&c.header.store_type).is_some_and(StoreType::has_logs))
        .map(|c| c.header.name.as_str())
        .collect();
    names.sort();
    names.dedup();
    match names.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(Error::Snapshot(format!("set {set:?} has no bdb or bdb-je component to restore to a log"))),
        many => {
            Err(Error::Snapshot(format!("set {set:?} has several database components ({})", many.join(", ")))
                .with_hint(Hint::ChooseComponent))
        }
    }
}

/// The file entries of one component of a snapshot, from a verified manifest.
fn component_files(repo: &Repository, id: &SnapshotId, name: &str) -> Result<Vec<FileEntry>> {
    let mut files = Vec::new();
    if let Some(mut reader) = ManifestReader::open_component(repo.storage(), id, name, repo)? {
        while let Some(entry) = reader.next_file()? {
            files.push(entry);
        }
    }
    Ok(files)
}

fn refused(set: &str, name: &str, n: u64, why: String) -> Error {
    Error::Snapshot(format!("cannot restore component {name} of set {set:?} to log {n}: {why}"))
}
