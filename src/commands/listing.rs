//! `snapshots`, `ls` and `cat`: what the repository and a snapshot hold.

use super::output::{mode_string, size};
use super::Globals;
use crate::Exit;
use anyhow::Result;
use cairn::manifest::{display_path, FileKind, ManifestReader, Record, SnapshotSummary};
use cairn::repo::Repository;
use cairn::storage::LockMode;
use serde_json::json;
use std::io::Write;

pub fn snapshots(g: &Globals, set: Option<String>, out: &mut impl Write) -> Result<Exit> {
    let list = g.open(LockMode::Shared, "cairn snapshots")?.snapshots()?;
    for (id, e) in &list.unreadable {
        eprintln!("warning: snapshot {id} is unreadable: {}", super::explain(e));
    }
    let in_set = |s: &SnapshotSummary| set.as_ref().is_none_or(|set| &s.header.set == set);
    let snapshots: Vec<SnapshotSummary> = list.readable.into_iter().filter(in_set).collect();
    print_snapshots(&snapshots, g.json, out)?;
    Ok(Exit::Success)
}

fn print_snapshots(snapshots: &[SnapshotSummary], json: bool, out: &mut impl Write) -> Result<()> {
    if json {
        let list: Vec<_> = snapshots
            .iter()
            .map(|s| {
                json!({
                    "id": s.id, "time": s.header.time.to_rfc3339(), "host": s.header.host,
                    "set": s.header.set, "tags": s.header.tags, "parent": s.header.parent,
                    "kind": s.header.kind, "complete": s.trailer.complete,
                    "files": s.trailer.stats.files, "bytes": s.trailer.stats.bytes,
                    "components": s.components.iter().map(|c| json!({
                        "name": c.header.name, "store_type": c.header.store_type,
                        "placement": display_path(&c.header.placement),
                        "first_log_number": c.trailer.first_log_number,
                        "last_log_number": c.trailer.last_log_number,
                        "files": c.trailer.files, "bytes": c.trailer.bytes,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(list))?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<12}  {:<20}  {:<11}  {:>8}  {:>10}  {:<24}  tags",
        "id", "time", "kind", "files", "size", "set"
    )?;
    for s in snapshots {
        let kind = format!("{:?}{}", s.header.kind, if s.trailer.complete { "" } else { "!" }).to_lowercase();
        writeln!(
            out,
            "{:<12}  {:<20}  {:<11}  {:>8}  {:>10}  {:<24}  {}",
            &s.id.to_hex()[..12],
            s.header.time.to_rfc3339(),
            kind,
            s.trailer.stats.files,
            size(s.trailer.stats.bytes),
            s.header.set,
            s.header.tags.join(",")
        )?;
        if s.components.len() > 1 {
            for c in &s.components {
                let logs = match (c.trailer.first_log_number, c.trailer.last_log_number) {
                    (Some(first), Some(last)) => format!(", logs {first}..{last}"),
                    _ => String::new(),
                };
                let (name, kind, files) = (&c.header.name, &c.header.store_type, c.trailer.files);
                writeln!(out, "    {name} ({kind}): {files} entries, {}{logs}", size(c.trailer.bytes))?;
            }
        }
    }
    writeln!(out, "{} snapshots", snapshots.len())?;
    Ok(())
}

pub fn ls(g: &Globals, snapshot: &str, out: &mut impl Write) -> Result<Exit> {
    let repo = g.open(LockMode::Shared, "cairn ls")?;
    print_ls(&repo, &repo.resolve(snapshot)?, g.json, out)?;
    Ok(Exit::Success)
}

fn print_ls(repo: &Repository, id: &cairn::SnapshotId, json: bool, out: &mut impl Write) -> Result<()> {
    let mut reader = ManifestReader::open(repo.storage(), id, repo)?;
    let mut component = String::new();
    let mut first = true;
    if json {
        write!(out, "[")?;
    }
    while let Some(record) = reader.next_record()? {
        match record {
            Record::Component(c) => {
                if !json {
                    writeln!(out, "component {} ({}):", c.name, c.store_type)?;
                }
                component = c.name
            }
            Record::ComponentEnd(t) if !json => {
                writeln!(out, "  {} entries, {}", t.files, size(t.bytes))?;
            }
            Record::File(entry) if json => {
                let mut value = serde_json::to_value(&entry)?;
                value["component"] = json!(component);
                value["chunks"] = json!(entry.chunks.len());
                write!(out, "{}{}", if first { "" } else { "," }, value)?;
                first = false;
            }
            Record::File(entry) => {
                let mut line = format!(
                    "{} {:>5} {:>5} {:>12} {}  {}",
                    mode_string(&entry.kind, entry.mode),
                    entry.uid,
                    entry.gid,
                    entry.size,
                    entry.mtime.to_rfc3339(),
                    display_path(&entry.path)
                );
                if let FileKind::Symlink { target } = &entry.kind {
                    line.push_str(&format!(" -> {}", display_path(target)));
                }
                writeln!(out, "{line}")?;
            }
            _ => {}
        }
    }
    if json {
        writeln!(out, "]")?;
    }
    Ok(())
}

pub fn cat(g: &Globals, snapshot: &str, out: &mut impl Write) -> Result<Exit> {
    let repo = g.open(LockMode::Shared, "cairn cat")?;
    print_cat(&repo, &repo.resolve(snapshot)?, out)?;
    Ok(Exit::Success)
}

/// The manifest as one JSON object, streamed record by record.
fn print_cat(repo: &Repository, id: &cairn::SnapshotId, out: &mut impl Write) -> Result<()> {
    let mut reader = ManifestReader::open(repo.storage(), id, repo)?;
    write!(out, "{{\"id\":\"{id}\",\"format_version\":{}", reader.version())?;
    let mut first_file = true;
    let mut first_component = true;
    // A version 3 component's file list chunks, written after its files.
    let mut file_list = Vec::new();
    while let Some(record) = reader.next_record()? {
        match record {
            Record::Snapshot(h) => {
                write!(out, ",\"snapshot\":{},\"components\":[", serde_json::to_string(&h)?)?
            }
            Record::Component(c) => {
                let sep = if first_component { "" } else { "," };
                write!(out, "{sep}{{\"component\":{},\"files\":[", serde_json::to_string(&c)?)?;
                first_component = false;
                first_file = true;
            }
            Record::File(f) => {
                write!(out, "{}{}", if first_file { "" } else { "," }, serde_json::to_string(&f)?)?;
                first_file = false;
            }
            Record::FileList(chunks) => file_list.extend(chunks),
            Record::ComponentEnd(t) => {
                write!(out, "]")?;
                if reader.version() >= 3 {
                    write!(out, ",\"file_list\":{}", serde_json::to_string(&file_list)?)?;
                    file_list.clear();
                }
                write!(out, ",\"end\":{}}}", serde_json::to_string(&t)?)?
            }
            Record::End(t) => write!(out, "],\"end\":{}", serde_json::to_string(&t)?)?,
        }
    }
    writeln!(out, "}}")?;
    Ok(())
}
