//! `forget`: removes the snapshots a retention policy does not keep, set by set. Only
//! manifests go; the chunks they alone used stay until `prune`.

use crate::error::{Error, Hint, Result};
use crate::id::SnapshotId;
use crate::manifest::{SnapshotKind, SnapshotSummary};
use crate::repo::Repository;
use crate::retention::{self, Candidate, Policy};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub id: SnapshotId,
    pub time: String,
    pub set: String,
    pub kind: SnapshotKind,
    pub tags: Vec<String>,
    pub keep: bool,
    pub reasons: Vec<String>,
}

/// The verdicts on every readable snapshot of `set` (or of every set), oldest first;
/// unless `dry_run`, the snapshots not kept are removed.
pub fn forget(repo: &Repository, set: Option<&str>, policy: &Policy, dry_run: bool) -> Result<Vec<Verdict>> {
    if policy.is_empty() {
        return Err(Error::Invalid("no retention rule given: forget would remove every snapshot".into())
            .with_hint(Hint::Keep));
    }
    let snapshots = repo.snapshots()?.readable;
    if let Some(set) = set.filter(|set| !snapshots.iter().any(|s| s.header.set == *set)) {
        return Err(Error::Snapshot(format!("no snapshot belongs to set {set:?}")));
    }
    let mut by_set: BTreeMap<&str, Vec<&SnapshotSummary>> = BTreeMap::new();
    for s in snapshots.iter().filter(|s| set.is_none_or(|set| s.header.set == set)) {
        by_set.entry(&s.header.set).or_default().push(s);
    }
    let mut verdicts = Vec::new();
    for (set, members) in by_set {
        let candidates: Vec<Candidate> =
            members.iter().map(|s| Candidate { time: s.header.time, tags: &s.header.tags }).collect();
        for (s, decision) in members.iter().zip(retention::apply(policy, &candidates)) {
            verdicts.push(Verdict {
                id: s.id,
                time: s.header.time.to_rfc3339(),
                set: set.to_string(),
                kind: s.header.kind,
                tags: s.header.tags.clone(),
                keep: decision.keep,
                reasons: decision.reasons,
            });
        }
    }
    if !dry_run {
        for verdict in verdicts.iter().filter(|v| !v.keep) {
            repo.remove_snapshot(&verdict.id)?;
        }
    }
    Ok(verdicts)
}
