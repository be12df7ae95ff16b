//! `cairn dump`: one file of a snapshot to a stream, without a restore target.

use super::component_header;
use crate::chunk_reader::ChunkReader;
use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::manifest::{display_path, FileKind, ManifestReader};
use crate::repo::Repository;
use std::path::Path;

/// `cairn dump`: one regular file of a snapshot (a dump component's, or `path` in a
/// component) to `out`, every chunk verified before it is written. Returns its size.
pub fn dump_file(
    repo: &Repository,
    id: &SnapshotId,
    component: &str,
    path: Option<&[u8]>,
    out: &mut dyn std::io::Write,
) -> Result<u64> {
    let summary = repo.summary(id)?;
    component_header(&summary, component)?;
    let mut reader = ManifestReader::open_component(repo.storage(), id, component, repo)?
        .ok_or_else(|| Error::Restore(format!("snapshot {id} has no component {component:?}")))?;
    // The file asked for, or the component's only regular file.
    let mut found = None;
    while let Some(entry) = reader.next_file()? {
        match path {
            Some(p) if entry.path == p => {
                found = Some(entry);
                break;
            }
            Some(_) => {}
            None if entry.kind != FileKind::Regular => {}
            None if found.is_some() => {
                return Err(Error::Restore(format!(
                    "component {component} holds several files: name one as {component}/PATH"
                )))
            }
            None => found = Some(entry),
        }
    }
    let entry = found.ok_or_else(|| match path {
        Some(p) => Error::Restore(format!("component {component} has no {}", display_path(p))),
        None => Error::Restore(format!("component {component} holds no regular file")),
    })?;
    if entry.kind != FileKind::Regular {
        return Err(Error::Restore(format!("{}: not a regular file", display_path(&entry.path))));
    }
    let reader = ChunkReader::new(repo)?;
    for chunk in &entry.chunks {
        let raw = reader
            .read(&chunk.id)
            .map_err(|e| Error::Restore(format!("{}: {e}", display_path(&entry.path))))?;
        out.write_all(&raw).map_err(|e| Error::io(Path::new("standard output"), e))?;
    }
    Ok(entry.size)
}
