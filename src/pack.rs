//! Pack files: many chunks, each its own zstd frame (or raw when compression does not
//! help), followed by a table of every chunk so that the index can be rebuilt from the
//! packs alone.
//!
//! ```text
//! header  magic "CAIRNPAK" | version u32 | reserved u32            16 bytes
//! frames  chunk 0 | chunk 1 | ...                                  stored bytes
//! table   entry 0 | entry 1 | ...                                  49 or 81 bytes each
//!         entry = id [32] | offset u64 | stored_len u32 | raw_len u32 | codec u8
//!                 [ | reference id [32], for codec 2 only ]
//! footer  BLAKE3(table) [32] | table offset u64 | entry count u32 | magic "CAIRNEND"
//! ```
//! The file is named by the BLAKE3 of all its bytes.

use crate::compress::{Codec, Frame};
use crate::error::{Error, IoContext, Result};
use crate::format::{self, MAX_CHUNK_LEN, PACK_ENTRY_LEN, PACK_FOOTER_LEN, PACK_FOOTER_MAGIC, PACK_MAGIC};
use crate::id::{ChunkId, PackId};
use crate::layout;
use crate::storage::{self, NewObject, Storage};
use std::io::Write;
use std::path::PathBuf;

/// Where one chunk sits inside its pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    pub id: ChunkId,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    pub codec: Codec,
    /// For `Codec::Delta`: the chunk the frame is decoded against.
    pub reference: Option<ChunkId>,
}

impl PackEntry {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.stored_len.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
        out.push(self.codec as u8);
        if let Some(reference) = self.reference {
            out.extend_from_slice(&reference.0);
        }
    }

    /// Decodes the entry at the start of `bytes`, returning it and its length; `None`
    /// for an unknown codec or a truncated entry. Version 1 packs have no deltas.
    pub(crate) fn decode(bytes: &[u8], version: u32) -> Option<(PackEntry, usize)> {
        let head = bytes.get(..PACK_ENTRY_LEN)?;
        let codec = Codec::from_byte(head[48])?;
        let (reference, len) = match codec {
            Codec::Delta if version >= 2 => {
                let id = bytes.get(PACK_ENTRY_LEN..PACK_ENTRY_LEN + 32)?;
                (Some(ChunkId(id.try_into().ok()?)), PACK_ENTRY_LEN + 32)
            }
            Codec::Delta => return None,
            _ => (None, PACK_ENTRY_LEN),
        };
        let entry = PackEntry {
            id: ChunkId(head[..32].try_into().ok()?),
            offset: format::read_u64(&head[32..40]),
            stored_len: format::read_u32(&head[40..44]),
            raw_len: format::read_u32(&head[44..48]),
            codec,
            reference,
        };
        Some((entry, len))
    }
}

impl PackEntry {
    /// Whether the frame lies within the pack's frames, before `end` (the table's
    /// offset), and its lengths are within the format's limits.
    pub(crate) fn fits_before(&self, end: u64) -> bool {
        let frame_end = self.offset.checked_add(self.stored_len as u64);
        let inside = self.offset >= format::FILE_HEADER_LEN as u64 && frame_end.is_some_and(|e| e <= end);
        inside && self.raw_len <= MAX_CHUNK_LEN && self.stored_len <= max_stored_len(self.raw_len)
    }
}

/// Writes one pack as a new object; `finish` makes it durable under its id.
pub struct PackWriter<'a> {
    out: Box<dyn NewObject + 'a>,
    /// For messages while the pack has no name yet.
    temp: PathBuf,
    hasher: blake3::Hasher,
    entries: Vec<PackEntry>,
    len: u64,
}

impl<'a> PackWriter<'a> {
    pub fn create(storage: &'a dyn Storage) -> Result<PackWriter<'a>> {
        let mut writer = PackWriter {
            out: storage.create()?,
            temp: storage.describe("packs/(new)"),
            hasher: blake3::Hasher::new(),
            entries: Vec::new(),
            len: 0,
        };
        writer.write(&format::file_header(PACK_MAGIC, format::PACK_VERSION))?;
        Ok(writer)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).at(&self.temp)?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    pub fn add(&mut self, frame: &Frame) -> Result<()> {
        // The table entry's length follows from the codec: a mismatch would make a
        // table that passes its own hash and cannot be read.
        assert_eq!(frame.codec == Codec::Delta, frame.reference.is_some(), "chunk {}", frame.id);
        let entry = PackEntry {
            id: frame.id,
            offset: self.len,
            stored_len: frame.bytes.len() as u32,
            raw_len: frame.raw_len,
            codec: frame.codec,
            reference: frame.reference,
        };
        self.write(&frame.bytes)?;
        self.entries.push(entry);
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Writes table and footer and makes the pack durable as `packs/xx/<id>`. A pack of
    /// that name already there holds these very bytes (a killed prune wrote it, say).
    pub fn finish(mut self) -> Result<FinishedPack> {
        let mut table = Vec::with_capacity(self.entries.len() * (PACK_ENTRY_LEN + 32));
        for entry in &self.entries {
            entry.encode(&mut table);
        }
        let table_offset = self.len;
        let mut footer = Vec::with_capacity(PACK_FOOTER_LEN);
        footer.extend_from_slice(blake3::hash(&table).as_bytes());
        footer.extend_from_slice(&table_offset.to_le_bytes());
        footer.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        footer.extend_from_slice(&PACK_FOOTER_MAGIC);
        self.write(&table)?;
        self.write(&footer)?;
        let id = PackId::from(self.hasher.finalize());
        storage::finish_content_named(self.out, &layout::pack(&id))?;
        Ok(FinishedPack { id, size: self.len, entries: self.entries })
    }
}

pub struct FinishedPack {
    pub id: PackId,
    pub size: u64,
    pub entries: Vec<PackEntry>,
}

/// Reads a pack's table through its footer, checking the table's hash.
/// `size` is the object's, as a listing gave it.
pub fn read_table(storage: &dyn Storage, name: &str, size: u64) -> Result<Vec<PackEntry>> {
    let path = &storage.describe(name);
    let read_exact = |offset: u64, len: usize| -> Result<Vec<u8>> {
        let bytes = storage.read_at(name, offset, len)?;
        match bytes.len() == len {
            true => Ok(bytes),
            false => Err(Error::corrupt(path, format!("ends before byte {}", offset + len as u64))),
        }
    };
    let min = (format::FILE_HEADER_LEN + PACK_FOOTER_LEN) as u64;
    if size < min {
        return Err(Error::corrupt(path, format!("{size} bytes is too short for a pack")));
    }
    let head = read_exact(0, format::FILE_HEADER_LEN)?;
    let version = format::check_file_header(&head, PACK_MAGIC, format::PACK_VERSION)
        .map_err(|e| Error::corrupt(path, e))?;
    let footer = read_exact(size - PACK_FOOTER_LEN as u64, PACK_FOOTER_LEN)?;
    if footer[44..52] != PACK_FOOTER_MAGIC {
        return Err(Error::corrupt(path, "no pack footer (truncated?)"));
    }
    let table_offset = format::read_u64(&footer[32..40]);
    let count = format::read_u32(&footer[40..44]) as u64;
    let table_end = size - PACK_FOOTER_LEN as u64;
    // Entries are at least PACK_ENTRY_LEN long, and in version 1 exactly that.
    let fits = match version {
        1 => table_offset.checked_add(count * PACK_ENTRY_LEN as u64) == Some(table_end),
        _ => table_offset.checked_add(count * PACK_ENTRY_LEN as u64).is_some_and(|end| end <= table_end),
    };
    if table_offset < format::FILE_HEADER_LEN as u64 || !fits {
        return Err(Error::corrupt(path, "pack footer does not match the file size"));
    }
    let table = read_exact(table_offset, (table_end - table_offset) as usize)?;
    if blake3::hash(&table).as_bytes() != &footer[..32] {
        return Err(Error::corrupt(path, "pack table checksum mismatch"));
    }
    let mut entries = Vec::with_capacity(count as usize);
    let mut rest = &table[..];
    for _ in 0..count {
        let (entry, len) = PackEntry::decode(rest, version)
            .ok_or_else(|| Error::corrupt(path, "pack table entry with unknown codec or cut short"))?;
        rest = &rest[len..];
        if !entry.fits_before(table_offset) {
            return Err(Error::corrupt(
                path,
                format!("chunk {} lies outside the pack or is too large", entry.id),
            ));
        }
        entries.push(entry);
    }
    if !rest.is_empty() {
        return Err(Error::corrupt(path, format!("{} bytes after the last pack table entry", rest.len())));
    }
    Ok(entries)
}

/// A stored frame is never larger than the raw chunk (cairn stores raw when
/// compression does not help); a little slack admits other encoders' frames.
fn max_stored_len(raw_len: u32) -> u32 {
    raw_len.saturating_add(raw_len / 64).saturating_add(1024)
}

/// Reads one chunk's stored bytes.
pub fn read_stored(storage: &dyn Storage, name: &str, offset: u64, stored_len: u32) -> Result<Vec<u8>> {
    let path = || storage.describe(name);
    if stored_len > max_stored_len(MAX_CHUNK_LEN) {
        return Err(Error::corrupt(
            path(),
            format!("a chunk of {stored_len} stored bytes at offset {offset}"),
        ));
    }
    let stored = storage.read_at(name, offset, stored_len as usize)?;
    if stored.len() != stored_len as usize {
        return Err(Error::corrupt(path(), format!("ends inside the chunk at offset {offset}")));
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::{compress, compress_against, decode_chunk};
    use crate::storage::MemoryStorage;

    fn table_of(storage: &MemoryStorage, id: &PackId) -> Result<Vec<PackEntry>> {
        let name = layout::pack(id);
        read_table(storage, &name, storage.size(&name)?)
    }

    #[test]
    fn pack_round_trip_and_named_by_hash() {
        let storage = MemoryStorage::new();
        let chunks: Vec<Vec<u8>> = vec![vec![0u8; 10_000], b"incompressible?".to_vec(), vec![]];
        let mut writer = PackWriter::create(&storage).unwrap();
        for raw in &chunks {
            writer.add(&compress(ChunkId::of(raw), raw.clone(), 3)).unwrap();
        }
        let pack = writer.finish().unwrap();
        let name = layout::pack(&pack.id);
        let bytes = storage.read(&name).unwrap();
        assert_eq!(PackId::of(&bytes), pack.id);
        assert_eq!(bytes.len() as u64, pack.size);
        let table = table_of(&storage, &pack.id).unwrap();
        assert_eq!(table, pack.entries);
        assert_eq!(table[0].codec, Codec::Zstd);
        assert_eq!(table[1].codec, Codec::Raw);
        for (entry, raw) in table.iter().zip(&chunks) {
            let stored = read_stored(&storage, &name, entry.offset, entry.stored_len).unwrap();
            assert_eq!(&decode_chunk(&entry.id, entry.codec, entry.raw_len, stored, None).unwrap(), raw);
        }
    }

    #[test]
    fn a_delta_entry_names_its_reference() {
        let mut old = vec![0u8; 32768];
        blake3::Hasher::new().update(b"old").finalize_xof().fill(&mut old);
        let mut new = old.clone();
        new[1000..1008].copy_from_slice(b"changed!");
        let (old_id, new_id) = (ChunkId::of(&old), ChunkId::of(&new));
        let storage = MemoryStorage::new();
        let mut writer = PackWriter::create(&storage).unwrap();
        writer.add(&compress(old_id, old.clone(), 3)).unwrap();
        writer.add(&compress_against(new_id, new, 3, old_id, &old)).unwrap();
        let pack = writer.finish().unwrap();
        let table = table_of(&storage, &pack.id).unwrap();
        assert_eq!(table, pack.entries);
        assert_eq!(table[1].reference, Some(old_id));
        // Version 1 had no deltas: the same table under a version 1 header is refused.
        storage.corrupt(&layout::pack(&pack.id), |bytes| bytes[8] = 1);
        assert!(table_of(&storage, &pack.id).is_err());
    }

    #[test]
    fn damage_is_detected() {
        let raw = vec![7u8; 5000];
        let frame = compress(ChunkId::of(&raw), raw, 3);
        let storage = MemoryStorage::new();
        let mut writer = PackWriter::create(&storage).unwrap();
        writer.add(&frame).unwrap();
        let pack = writer.finish().unwrap();
        let name = layout::pack(&pack.id);
        storage.corrupt(&name, |bytes| {
            let table_byte = bytes.len() - PACK_FOOTER_LEN - 10;
            bytes[table_byte] ^= 0x40;
        });
        let err = table_of(&storage, &pack.id).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        storage.corrupt(&name, |bytes| bytes.truncate(bytes.len() - 3));
        assert!(table_of(&storage, &pack.id).is_err());
    }

    /// Regression: an offset near 2^64 with a valid table hash once overflowed.
    #[test]
    fn table_entries_outside_the_pack_are_refused() {
        let storage = MemoryStorage::new();
        let mut writer = PackWriter::create(&storage).unwrap();
        writer.add(&compress(ChunkId::of(b"x"), b"x".to_vec(), 3)).unwrap();
        let pack = writer.finish().unwrap();
        let name = layout::pack(&pack.id);
        let mut bytes = storage.read(&name).unwrap();
        let table_start = bytes.len() - PACK_FOOTER_LEN - PACK_ENTRY_LEN;
        for (offset, raw_len) in [(u64::MAX - 5, 1u32), (16, MAX_CHUNK_LEN + 1)] {
            bytes[table_start + 32..table_start + 40].copy_from_slice(&offset.to_le_bytes());
            bytes[table_start + 44..table_start + 48].copy_from_slice(&raw_len.to_le_bytes());
            let table_hash = blake3::hash(&bytes[table_start..table_start + PACK_ENTRY_LEN]);
            let footer = bytes.len() - PACK_FOOTER_LEN;
            bytes[footer..footer + 32].copy_from_slice(table_hash.as_bytes());
            storage.corrupt(&name, |stored| stored.clone_from(&bytes));
            let err = table_of(&storage, &pack.id).unwrap_err();
            assert!(err.to_string().contains("outside the pack or is too large"), "{err}");
        }
    }
}
