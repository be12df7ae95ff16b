//! Verifies a repository: packs against the index, manifests against both, and with
//! `read_data` every chunk's bytes against its id. Damage is traced to the snapshots
//! and files it affects.

use crate::chunk_reader::ChunkReader;
use crate::compress::{self, Codec};
use crate::error::{ChunkError, Error, Hint, Result};
use crate::id::{ChunkId, PackId, SnapshotId};
use crate::index::ChunkTable;
use crate::layout;
use crate::manifest::{display_path, ManifestReader, Record};
use crate::pack::{self, PackEntry};
use crate::repo::Repository;
use crate::storage::Storage;
use crate::Progress;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Serialize)]
pub struct Problem {
    pub what: String,
    pub pack: Option<PackId>,
    /// Snapshots and files whose data this problem touches.
    pub affected: Vec<Affected>,
    /// What would fix it, when a step is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<Hint>,
}

#[derive(Debug, Serialize, PartialEq, Eq, Hash, Clone)]
pub struct Affected {
    pub snapshot: SnapshotId,
    pub path: String,
}

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub packs: u64,
    pub chunks: u64,
    pub snapshots: u64,
    pub bytes_verified: u64,
    pub problems: Vec<Problem>,
    /// Findings that are not damage, such as packs an interrupted backup left behind.
    pub notes: Vec<String>,
}

impl CheckReport {
    pub fn is_sound(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Default)]
struct Findings {
    problems: Vec<Problem>,
    /// Chunks that cannot be read back, with the problem that explains why.
    damaged: HashMap<ChunkId, usize>,
}

impl Findings {
    fn add(&mut self, what: String, pack: Option<PackId>, chunks: impl IntoIterator<Item = ChunkId>) {
        let n = self.problems.len();
        self.problems.push(Problem { what, pack, affected: Vec::new(), hint: None });
        for id in chunks {
            self.damaged.entry(id).or_insert(n);
        }
    }
}

pub fn check(repo: &Repository, read_data: bool, progress: &dyn Progress) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let mut findings = Findings::default();
    let view = repo.index.view()?;
    let reader = ChunkReader::new(repo)?;
    let chunks = reader.chunks();
    let indexed: HashMap<PackId, u64> = view.packs()?.into_iter().collect();
    let on_disk: HashMap<PackId, u64> = repo.pack_files()?.into_iter().collect();
    report.packs = indexed.len() as u64;
    report.chunks = view.chunk_count()?;
    // A pack an index knew is damage only for the chunks that are stored nowhere else
    // now (a prune by another process, or a copy of the repository put back, moves
    // them) and that a snapshot needs (below: a problem no file is affected by goes).
    let mut gone_problems = Vec::new();
    for gone in repo.gone_packs() {
        let mut lost = Vec::new();
        for id in &gone.chunks {
            if !chunks.contains(id)? {
                lost.push(*id);
            }
        }
        if !lost.is_empty() {
            gone_problems.push(findings.problems.len());
            findings.add(format!("pack {} is missing", gone.id), Some(gone.id), lost);
        }
    }
    for id in on_disk.keys().filter(|id| !indexed.contains_key(id)) {
        report.notes.push(format!(
            "pack {id} is not in the index (left by an interrupted backup or prune; the next writer indexes it, and prune removes what no snapshot needs)"
        ));
    }

    check_index_files(repo.storage(), &mut findings)?;

    let (healthy, matched) =
        check_pack_tables(repo.storage(), &indexed, &on_disk, chunks, &mut findings, progress)?;
    if matched != report.chunks {
        let lost = trace_unmatched_chunks(chunks, &healthy, &mut findings)?;
        if matched + lost < report.chunks {
            let what = format!(
                "the index places {} chunks where no pack table confirms them",
                report.chunks - matched - lost
            );
            findings.add(what, None, []);
            findings.problems.last_mut().expect("just added").hint = Some(Hint::RepairIndex);
        }
    }
    if read_data {
        report.bytes_verified = verify_data(repo.storage(), &reader, &healthy, &mut findings, progress);
    }
    for snapshot in repo.snapshot_ids()? {
        report.snapshots += 1;
        check_manifest(repo, &snapshot, chunks, &mut findings)?;
    }
    report.problems = findings
        .problems
        .into_iter()
        .enumerate()
        .filter(|(n, problem)| !gone_problems.contains(n) || !problem.affected.is_empty())
        .map(|(_, problem)| problem)
        .collect();
    Ok(report)
}

/// Every index file must be sound. A damaged one costs no data (the packs it names are
/// read through their own tables), and prune replaces it.
fn check_index_files(storage: &dyn Storage, findings: &mut Findings) -> Result<()> {
    for (id, size) in crate::index_file::list(storage)? {
        match crate::index_file::read(storage, &id, size) {
            Err(e @ Error::Corrupt { .. }) => {
                findings.add(format!("{e} (no data is lost; prune writes the index files anew)"), None, [])
            }
            other => drop(other?),
        }
    }
    Ok(())
}

/// Every indexed pack must exist with its indexed size and a sound table that agrees
/// with the index. Returns the sound packs and how many index entries they confirm.
fn check_pack_tables(
    storage: &dyn Storage,
    indexed: &HashMap<PackId, u64>,
    on_disk: &HashMap<PackId, u64>,
    chunks: &ChunkTable,
    findings: &mut Findings,
    progress: &dyn Progress,
) -> Result<(HashSet<PackId>, u64)> {
    let mut healthy = HashSet::new();
    let mut matched = 0u64;
    let mut packs: Vec<(&PackId, &u64)> = indexed.iter().collect();
    packs.sort();
    for (id, size) in packs {
        progress.advance(1, 0);
        let Some(&actual) = on_disk.get(id) else {
            findings.add(format!("pack {id} is missing"), Some(*id), []);
            continue;
        };
        let table = match read_table_of_size(storage, id, actual, *size) {
            Ok(table) => table,
            Err(e) => {
                findings.add(format!("pack {id}: {e}"), Some(*id), []);
                continue;
            }
        };
        healthy.insert(*id);
        for entry in &table {
            let Some(location) = chunks.get(&entry.id)? else {
                continue;
            };
            if location.pack != *id || location.offset != entry.offset {
                continue;
            }
            matched += 1;
            let agrees = location.stored_len == entry.stored_len
                && location.raw_len == entry.raw_len
                && location.codec == entry.codec
                && location.reference == entry.reference;
            if !agrees {
                let what = format!("pack {id}: index entry of chunk {} disagrees with the pack", entry.id);
                findings.add(what, Some(*id), [entry.id]);
            }
        }
    }
    Ok((healthy, matched))
}

fn read_table_of_size(storage: &dyn Storage, id: &PackId, actual: u64, size: u64) -> Result<Vec<PackEntry>> {
    let name = layout::pack(id);
    if actual != size {
        return Err(Error::corrupt(
            storage.describe(&name),
            format!("{actual} bytes, the index says {size}"),
        ));
    }
    pack::read_table(storage, &name, actual)
}

/// Index entries in packs that are missing or unsound: their chunks are unreadable.
/// Each is tied to the problem of its pack, or to a new one when the pack had none.
/// Returns how many there are.
fn trace_unmatched_chunks(
    chunks: &ChunkTable,
    healthy: &HashSet<PackId>,
    findings: &mut Findings,
) -> Result<u64> {
    let mut lost = Vec::new();
    chunks.for_each(|chunk, location| {
        if !healthy.contains(&location.pack) {
            lost.push((chunk, location.pack));
        }
        Ok(())
    })?;
    let count = lost.len() as u64;
    for (chunk, pack) in lost {
        let problem = match findings.problems.iter().position(|p| p.pack == Some(pack)) {
            Some(problem) => problem,
            None => {
                findings.add(
                    format!("the index places chunks in pack {pack}, which it does not list"),
                    Some(pack),
                    [],
                );
                findings.problems.last_mut().expect("just added").hint = Some(Hint::RepairIndex);
                findings.problems.len() - 1
            }
        };
        findings.damaged.entry(chunk).or_insert(problem);
    }
    Ok(count)
}

/// Reads every sound pack in full, on all cores. Returns the bytes verified.
fn verify_data(
    storage: &dyn Storage,
    reader: &ChunkReader,
    healthy: &HashSet<PackId>,
    findings: &mut Findings,
    progress: &dyn Progress,
) -> u64 {
    let mut ids: Vec<&PackId> = healthy.iter().collect();
    ids.sort();
    let results: Vec<(PackId, u64, Vec<Damage>)> = ids
        .par_iter()
        .map(|id| {
            let (bytes, damage) = verify_pack_data(storage, reader, id);
            progress.advance(0, bytes);
            (**id, bytes, damage)
        })
        .collect();
    let mut verified = 0;
    for (id, bytes, damage) in results {
        verified += bytes;
        for (what, chunk_ids) in damage {
            findings.add(format!("pack {id}: {what}"), Some(id), chunk_ids);
        }
    }
    verified
}

/// What is wrong, and the chunks it makes unreadable.
type Damage = (String, Vec<ChunkId>);

/// Hashes the whole pack and decodes every chunk. Returns bytes read and the damage.
fn verify_pack_data(storage: &dyn Storage, reader: &ChunkReader, id: &PackId) -> (u64, Vec<Damage>) {
    let name = layout::pack(id);
    let bytes = match storage.read(&name) {
        Ok(bytes) => bytes,
        Err(e) => return (0, vec![(format!("cannot read: {e}"), Vec::new())]),
    };
    let mut damage = Vec::new();
    let entries: Vec<PackEntry> =
        match pack::read_table(storage, &name, bytes.len() as u64).map_err(|e| e.to_string()) {
            Ok(entries) => entries,
            Err(e) => return (bytes.len() as u64, vec![(e, Vec::new())]),
        };
    let mut bad_chunks = Vec::new();
    // Deltas whose reference cannot be read: not verifiable here.
    let mut unverified = Vec::new();
    for entry in &entries {
        let start = entry.offset as usize;
        // The table was read separately: a file that changed since is damage, not a panic.
        let decoded = match bytes.get(start..start + entry.stored_len as usize) {
            Some(stored) => {
                let reference = match entry.reference.map(|r| reader.read_reference(&r)) {
                    None => None,
                    Some(Ok(bytes)) => Some(bytes),
                    // Not this pack's fault: a damaged reference is reported where it is
                    // stored, and a missing one by the snapshots whose files need it (a
                    // dead copy whose reference prune removed needs nothing).
                    Some(Err(_)) => {
                        unverified.push(entry.id);
                        continue;
                    }
                };
                compress::decode_chunk(
                    &entry.id,
                    entry.codec,
                    entry.raw_len,
                    stored.to_vec(),
                    reference.as_deref(),
                )
            }
            None => Err(ChunkError::corrupt(entry.id, "its stored bytes lie beyond the pack's end")),
        };
        if let Err(e) = decoded {
            damage.push((e.to_string(), vec![entry.id]));
            bad_chunks.push(entry.id);
        }
    }
    if PackId::of(&bytes) != *id {
        // Whatever changed may be in a delta that could not be decoded.
        match (bad_chunks.is_empty(), unverified.is_empty()) {
            (true, true) => damage.push((
                "content does not match its name (damage outside the chunk data)".to_string(),
                Vec::new(),
            )),
            (_, false) => damage.push((
                format!(
                    "content does not match its name, and {} deltas whose reference is unreadable could not be verified",
                    unverified.len()
                ),
                unverified,
            )),
            (false, true) => {}
        }
    }
    (bytes.len() as u64, damage)
}

/// Reads a manifest to its end (which verifies its hash) and checks every chunk it
/// names against the index, noting files that use damaged chunks.
fn check_manifest(
    repo: &Repository,
    id: &SnapshotId,
    chunks: &ChunkTable,
    findings: &mut Findings,
) -> Result<()> {
    let mut reader = match ManifestReader::open(repo.storage(), id, repo) {
        Ok(reader) => reader,
        Err(e) => {
            findings.add(format!("snapshot {id}: {e}"), None, []);
            return Ok(());
        }
    };
    let mut affected_seen: HashSet<(usize, Vec<u8>)> = HashSet::new();
    let mut component = String::new();
    loop {
        let record = match reader.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(()),
            // A component whose file list cannot be read: its files are unknown, the
            // other components' are checked on.
            Err(e @ Error::FileList { .. }) => {
                findings.add(e.to_string(), None, []);
                match reader.pass_over_component() {
                    Ok(_) => continue,
                    Err(e) => {
                        findings.add(format!("snapshot {id}: {e}"), None, []);
                        return Ok(());
                    }
                }
            }
            Err(e) => {
                findings.add(format!("snapshot {id}: {e}"), None, []);
                return Ok(());
            }
        };
        let entry = match record {
            Record::File(entry) => entry,
            Record::Component(c) => {
                component = c.name;
                continue;
            }
            // Damage to a file list is damage to every file of its component.
            Record::FileList(list) => {
                let path = format!("(the file list of component {component})").into_bytes();
                for chunk in &list {
                    if let Some(&problem) = findings.damaged.get(&chunk.id) {
                        note_affected(findings, &mut affected_seen, problem, id, &path);
                    }
                }
                continue;
            }
            _ => continue,
        };
        for chunk in &entry.chunks {
            if let Some(&problem) = findings.damaged.get(&chunk.id) {
                note_affected(findings, &mut affected_seen, problem, id, &entry.path);
                continue;
            }
            match chunks.get(&chunk.id)? {
                Some(location) if location.raw_len == chunk.len => {
                    if let Some(reference) = location.reference {
                        check_reference(
                            id,
                            &entry.path,
                            &chunk.id,
                            &reference,
                            chunks,
                            findings,
                            &mut affected_seen,
                        )?;
                    }
                }
                Some(_) => findings.add(
                    format!(
                        "snapshot {id}: {}: chunk {} has a different length in the index",
                        display_path(&entry.path),
                        chunk.id
                    ),
                    None,
                    [],
                ),
                None => {
                    findings.add(
                        format!("chunk {} is missing from the repository", chunk.id),
                        None,
                        [chunk.id],
                    );
                    let problem = findings.problems.len() - 1;
                    note_affected(findings, &mut affected_seen, problem, id, &entry.path);
                }
            }
        }
    }
}

/// A delta is readable only with its reference, which must be indexed, stored whole and
/// sound: the file is affected by whatever is wrong with it.
fn check_reference(
    snapshot: &SnapshotId,
    path: &[u8],
    delta: &ChunkId,
    reference: &ChunkId,
    chunks: &ChunkTable,
    findings: &mut Findings,
    affected_seen: &mut HashSet<(usize, Vec<u8>)>,
) -> Result<()> {
    let problem = match findings.damaged.get(reference) {
        Some(&problem) => problem,
        None => {
            let what = match chunks.get(reference)? {
                Some(location) if location.codec != Codec::Delta => return Ok(()),
                Some(_) => {
                    format!("chunk {delta}: its reference chunk {reference} is itself stored as a delta")
                }
                None => {
                    format!("chunk {delta}: its reference chunk {reference} is missing from the repository")
                }
            };
            findings.add(what, None, [*reference]);
            findings.problems.len() - 1
        }
    };
    note_affected(findings, affected_seen, problem, snapshot, path);
    Ok(())
}

/// Names `path` of `snapshot` among what `problem` affects, once.
fn note_affected(
    findings: &mut Findings,
    seen: &mut HashSet<(usize, Vec<u8>)>,
    problem: usize,
    snapshot: &SnapshotId,
    path: &[u8],
) {
    if seen.insert((problem, path.to_vec())) {
        findings.problems[problem].affected.push(Affected { snapshot: *snapshot, path: display_path(path) });
    }
}

#[cfg(test)]
mod tests;
