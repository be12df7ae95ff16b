//! `copy`: snapshots from one repository into another (a local one into a bucket, a
//! bucket into a local one), sending only the chunks the target lacks, so that a copy
//! kept elsewhere costs what changed.
//!
//! A chunk is copied as it is stored (its compressed frame, or its delta and, first,
//! the delta's reference), after reading it through the source's chunk reader, which
//! checks it against its id: damage in the source is an error, never copied on. The
//! snapshot's manifest is copied byte for byte (so it keeps its id) once every chunk it
//! names is durable and indexed in the target, as a backup writes one.

use crate::chunk_reader::ChunkReader;
use crate::compress::{Codec, Frame};
use crate::error::{Error, Result};
use crate::id::{ChunkId, SnapshotId};
use crate::index::ChunkTable;
use crate::layout;
use crate::manifest::{ManifestReader, Record};
use crate::pack;
use crate::packer::Packer;
use crate::repo::Repository;
use crate::Progress;
use std::collections::HashSet;

#[derive(Debug, Default, serde::Serialize)]
pub struct CopyReport {
    /// Snapshots copied, in the order given.
    pub copied: Vec<SnapshotId>,
    /// Snapshots the target had already.
    pub already_there: Vec<SnapshotId>,
    pub chunks_copied: u64,
    /// Stored (compressed) bytes sent.
    pub bytes_copied: u64,
}

/// Copies `snapshots` of `source` into `target` (opened to append).
pub fn copy(
    source: &Repository,
    target: &Repository,
    snapshots: &[SnapshotId],
    progress: &dyn Progress,
) -> Result<CopyReport> {
    chunk_the_same(source, target)?;
    let reader = ChunkReader::new(source)?;
    let mut report = CopyReport::default();
    for id in snapshots {
        let name = layout::snapshot(id);
        match target.storage().size(&name) {
            Ok(_) => {
                report.already_there.push(*id);
                continue;
            }
            Err(e) if crate::storage::is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
        let mut sender = Sender {
            target,
            source: &reader,
            packer: Packer::new(target),
            queued: HashSet::new(),
            chunks: 0,
            bytes: 0,
        };
        sender.snapshot_chunks(source, id, progress)?;
        // The manifest last, once everything it names is durable and indexed; the
        // bytes sent are the bytes its id names.
        let manifest = source.storage().read(&name)?;
        if SnapshotId::of(&manifest) != *id {
            return Err(Error::corrupt(source.describe(&name), "does not hash to its name"));
        }
        target.write_index_file()?;
        target.check_lock()?;
        match target.storage().put(&name, &manifest) {
            Err(e) if crate::storage::is_already_exists(&e) => {}
            other => other?,
        }
        target.add_snapshot(&source.summary(id)?)?;
        report.copied.push(*id);
        report.chunks_copied += sender.chunks;
        report.bytes_copied += sender.bytes;
    }
    Ok(report)
}

/// Manifests name chunker profiles by position: the target must have the source's.
fn chunk_the_same(source: &Repository, target: &Repository) -> Result<()> {
    let (ours, theirs) = (&source.config.chunkers, &target.config.chunkers);
    match theirs.len() >= ours.len() && theirs[..ours.len()] == ours[..] {
        true => Ok(()),
        false => Err(Error::Invalid(format!(
            "{} cannot take snapshots of {}: their chunker profiles differ",
            target.location().display(),
            source.location().display()
        ))),
    }
}

/// The chunks of one snapshot on their way into the target's packs.
struct Sender<'t, 's> {
    target: &'t Repository,
    source: &'s ChunkReader<'s>,
    packer: Packer<'t>,
    /// Chunks sent for this snapshot: the view of the target's index predates them.
    queued: HashSet<ChunkId>,
    /// Chunks sent, and their stored bytes.
    chunks: u64,
    bytes: u64,
}

impl Sender<'_, '_> {
    /// Sends every chunk of snapshot `id` the target lacks, and makes them durable and
    /// indexed.
    fn snapshot_chunks(
        &mut self,
        source: &Repository,
        id: &SnapshotId,
        progress: &dyn Progress,
    ) -> Result<()> {
        let view = self.target.index.view()?;
        let target_chunks = view.chunks()?;
        let mut manifest = ManifestReader::open(source.storage(), id, source)?;
        while let Some(record) = manifest.next_record()? {
            let chunks = match &record {
                Record::File(entry) => {
                    progress.advance(1, entry.size);
                    &entry.chunks
                }
                Record::FileList(list) => list,
                _ => continue,
            };
            for chunk in chunks {
                self.send(&chunk.id, &target_chunks)?;
            }
        }
        self.finish_pack()
    }

    /// Sends chunk `id` unless the target has it (whole, or as a delta whose reference
    /// it has: the index holds no other); a delta's reference goes first. The stored
    /// bytes are read once, and decoded to check them against the id before they go.
    fn send(&mut self, id: &ChunkId, target_chunks: &ChunkTable) -> Result<()> {
        if self.queued.contains(id) || target_chunks.contains(id)? {
            return Ok(());
        }
        let location = self.source.chunks().get(id)?.ok_or_else(|| {
            Error::Invalid(format!(
                "chunk {id} is missing from the source repository; run `cairn check` there"
            ))
        })?;
        if let (Codec::Delta, Some(reference)) = (location.codec, location.reference) {
            self.send(&reference, target_chunks)?;
        }
        let storage = self.source.repository().storage();
        let pack = layout::pack(&location.pack);
        let bytes = pack::read_stored(storage, &pack, location.offset, location.stored_len)?;
        self.source
            .decode(id, location.codec, location.raw_len, bytes.clone(), location.reference)
            .map_err(|e| e.in_pack(location.pack, location.offset))?;
        self.chunks += 1;
        self.bytes += bytes.len() as u64;
        self.queued.insert(*id);
        let (raw_len, codec, reference) = (location.raw_len, location.codec, location.reference);
        if self.packer.add(&Frame { id: *id, raw_len, codec, reference, bytes })? {
            self.finish_pack()?;
        }
        Ok(())
    }

    fn finish_pack(&mut self) -> Result<()> {
        let target = self.target;
        self.packer.finish(|done| target.add_pack(&done.id, done.size, &done.entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{LockMode, Storage};
    use crate::testing::{assert_same_files, backup_tree, memory_storage, open, restore_to, write_tree};

    #[test]
    fn a_copied_snapshot_restores_from_the_target_alone_and_is_sent_once() {
        let dir = tempfile::tempdir().unwrap();
        let (source, target) = (memory_storage(), memory_storage());
        let writer = open(&source, LockMode::Append, None);
        backup_tree(&writer, &write_tree(&dir.path().join("t"), 1));
        let tree = write_tree(&dir.path().join("t"), 2);
        let second = backup_tree(&writer, &tree);
        drop(writer);

        let from = open(&source, LockMode::Shared, None);
        let into = open(&target, LockMode::Append, None);
        let report = copy(&from, &into, &[second], &crate::NoProgress).unwrap();
        assert_eq!(report.copied, vec![second]);
        assert!(report.chunks_copied > 0);
        let again = copy(&from, &into, &[second], &crate::NoProgress).unwrap();
        assert_eq!((again.already_there, again.chunks_copied), (vec![second], 0));
        drop(into);

        // The same manifest bytes (so the same id), and every chunk it needs, with no
        // object of the source.
        let name = layout::snapshot(&second);
        assert_eq!(target.read(&name).unwrap(), source.read(&name).unwrap());
        let copied = open(&target, LockMode::Shared, None);
        assert!(crate::check::check(&copied, true, &crate::NoProgress).unwrap().is_sound());
        restore_to(&copied, &second, &dir.path().join("restored")).unwrap();
        assert_same_files(&tree, &dir.path().join("restored"));
    }

    #[test]
    fn a_damaged_source_chunk_is_an_error_and_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (source, target) = (memory_storage(), memory_storage());
        let id = backup_tree(&open(&source, LockMode::Append, None), &write_tree(dir.path(), 1));
        let pack = source.list(layout::PACKS).unwrap().remove(0).name;
        let mut bytes = source.read(&pack).unwrap();
        bytes[crate::format::FILE_HEADER_LEN + 3] ^= 0xff;
        source.delete(&pack).unwrap();
        source.put(&pack, &bytes).unwrap();
        let (from, into) = (open(&source, LockMode::Shared, None), open(&target, LockMode::Append, None));
        assert!(copy(&from, &into, &[id], &crate::NoProgress).is_err());
        assert!(target.list(layout::SNAPSHOTS).unwrap().is_empty());
    }
}
