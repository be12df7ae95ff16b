//! Index files: immutable objects of the repository (`index/<id>`) that say where the
//! chunks of some packs are, so that a client without an index cache builds one from a
//! few files instead of reading the table of every pack (one request per pack on
//! object storage). A backup writes one for the packs it added; prune writes the whole
//! index anew and removes the files it replaces (`consolidate`).
//!
//! They repeat what the pack tables say and are never the only record: a pack no index
//! file names is indexed from its own table, and every chunk read is verified against
//! its id whatever told the reader where it was.
//!
//! ```text
//! header   magic "CAIRNIDX" | version u32 | reserved u32              16 bytes
//! packs    count u32 | (pack id [32] | pack size u64) * count
//! entries  count u32 | (pack number u32 | pack table entry) * count    53 or 85 bytes each
//! ```
//! The file is named by the BLAKE3 of all its bytes.

use crate::error::{Error, Result};
use crate::format::{self, INDEX_FILE_MAGIC, INDEX_FILE_VERSION, PACK_ENTRY_LEN, PACK_FOOTER_LEN};
use crate::id::{IndexFileId, PackId};
use crate::index::Index;
use crate::layout;
use crate::pack::PackEntry;
use crate::storage::{self, Storage};
use std::collections::HashMap;

/// A writer starts a new file after this many entries (about 14 MB), so that neither it
/// nor a reader ever holds more than one file's worth in memory. A writer's choice:
/// readers accept any count up to `MAX_FILE_LEN`.
pub const ENTRIES_PER_FILE: usize = 1 << 18;

/// Readers refuse larger files before reading them (a damaged size cannot make them
/// allocate without bound).
pub const MAX_FILE_LEN: u64 = 1 << 30;

/// The chunks of packs, grouped by pack, as one index file holds them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IndexFile {
    /// Each pack with its size and the entries this file gives for it (possibly none).
    pub packs: Vec<(PackId, u64, Vec<PackEntry>)>,
}

/// Collects packs and entries and encodes them as index files of bounded size.
#[derive(Default)]
pub struct Builder {
    packs: Vec<(PackId, u64)>,
    numbers: HashMap<PackId, u32>,
    entries: Vec<(u32, PackEntry)>,
}

impl Builder {
    pub fn is_empty(&self) -> bool {
        self.packs.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= ENTRIES_PER_FILE
    }

    /// Names a pack (again: a pack is listed once per file).
    pub fn add_pack(&mut self, pack: PackId, size: u64) -> u32 {
        *self.numbers.entry(pack).or_insert_with(|| {
            self.packs.push((pack, size));
            (self.packs.len() - 1) as u32
        })
    }

    pub fn add_entry(&mut self, pack: PackId, size: u64, entry: PackEntry) {
        let number = self.add_pack(pack, size);
        self.entries.push((number, entry));
    }

    /// Names a pack with all of its entries.
    pub fn add_whole_pack(&mut self, pack: PackId, size: u64, entries: &[PackEntry]) {
        let number = self.add_pack(pack, size);
        self.entries.extend(entries.iter().map(|e| (number, *e)));
    }

    /// The file's bytes, leaving the builder empty.
    pub fn take(&mut self) -> Vec<u8> {
        let Builder { packs, entries, .. } = std::mem::take(self);
        let mut out = Vec::with_capacity(24 + packs.len() * 40 + entries.len() * (4 + PACK_ENTRY_LEN + 32));
        out.extend_from_slice(&format::file_header(INDEX_FILE_MAGIC, INDEX_FILE_VERSION));
        out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
        for (id, size) in &packs {
            out.extend_from_slice(&id.0);
            out.extend_from_slice(&size.to_le_bytes());
        }
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (number, entry) in &entries {
            out.extend_from_slice(&number.to_le_bytes());
            entry.encode(&mut out);
        }
        out
    }

    /// Writes what was collected as a new index file, durable when this returns, and
    /// gives its id and size; `None` when there was nothing.
    pub fn write(&mut self, storage: &dyn Storage) -> Result<Option<(IndexFileId, u64)>> {
        if self.is_empty() {
            return Ok(None);
        }
        let bytes = self.take();
        let id = IndexFileId::of(&bytes);
        let mut object = storage.create()?;
        let name = layout::index_file(&id);
        std::io::Write::write_all(&mut object, &bytes).map_err(|e| Error::io(storage.describe(&name), e))?;
        storage::finish_content_named(object, &name)?;
        Ok(Some((id, bytes.len() as u64)))
    }
}

/// Every index file in the repository, with its size, in id order.
pub fn list(storage: &dyn Storage) -> Result<Vec<(IndexFileId, u64)>> {
    let mut files: Vec<(IndexFileId, u64)> = storage
        .list(layout::INDEX_FILES)?
        .into_iter()
        .filter_map(|object| Some((layout::index_file_id(&object.name)?, object.size)))
        .collect();
    files.sort();
    Ok(files)
}

/// Reads and verifies one index file; `size` is the listed one.
pub fn read(storage: &dyn Storage, id: &IndexFileId, size: u64) -> Result<IndexFile> {
    let name = layout::index_file(id);
    let path = storage.describe(&name);
    if size > MAX_FILE_LEN {
        return Err(Error::corrupt(&path, format!("{size} bytes is more than an index file may hold")));
    }
    let bytes = storage.read(&name)?;
    if IndexFileId::of(&bytes) != *id {
        return Err(Error::corrupt(&path, "content does not match its name"));
    }
    decode(&bytes).map_err(|what| Error::corrupt(&path, what))
}

/// Decodes an index file's bytes, checking every count against the bytes that remain
/// before allocating, and every entry as a pack table's entries are checked.
pub fn decode(bytes: &[u8]) -> Result<IndexFile, String> {
    format::check_file_header(bytes, INDEX_FILE_MAGIC, INDEX_FILE_VERSION)?;
    let mut rest = Cursor(&bytes[format::FILE_HEADER_LEN..]);
    let pack_count = format::read_u32(rest.take(4)?) as usize;
    let pack_bytes = rest.take(pack_count.checked_mul(40).ok_or("pack count out of range")?)?;
    let mut packs: Vec<(PackId, u64, Vec<PackEntry>)> = pack_bytes
        .chunks_exact(40)
        .map(|p| (PackId(p[..32].try_into().expect("32 bytes")), format::read_u64(&p[32..]), Vec::new()))
        .collect();
    let entry_count = format::read_u32(rest.take(4)?) as usize;
    for n in 0..entry_count {
        let number = format::read_u32(rest.take(4)?) as usize;
        let (entry, len) = PackEntry::decode(rest.0, format::PACK_VERSION)
            .ok_or_else(|| format!("entry {n} has an unknown codec or is cut short"))?;
        rest.take(len)?;
        let (pack, size, entries) = packs
            .get_mut(number)
            .ok_or_else(|| format!("entry {n} names pack number {number} of {pack_count}"))?;
        if !entry.fits_before(size.saturating_sub(PACK_FOOTER_LEN as u64)) {
            return Err(format!("chunk {} lies outside pack {pack} or is too large", entry.id));
        }
        entries.push(entry);
    }
    if !rest.0.is_empty() {
        return Err(format!("{} bytes after the last entry", rest.0.len()));
    }
    Ok(IndexFile { packs })
}

/// The bytes not yet decoded.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("ends early".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
}

/// Writes the whole of `index` as new index files (for prune: the packs and locations
/// it leaves), then removes the index files `replaced` that are not among them. Memory
/// is one file's worth and a list of the packs. Returns the files written, and records
/// them in `index` as read.
pub fn consolidate(
    storage: &dyn Storage,
    index: &Index,
    replaced: &[IndexFileId],
) -> Result<Vec<IndexFileId>> {
    let view = index.view()?;
    let sizes: HashMap<PackId, u64> = view.packs()?.into_iter().collect();
    let mut named: std::collections::HashSet<PackId> = std::collections::HashSet::new();
    let mut builder = Builder::default();
    let mut written = Vec::new();
    view.chunks()?.for_each(|id, location| {
        let size = *sizes.get(&location.pack).ok_or_else(|| {
            Error::index(
                index.path(),
                format!("chunk {id} is placed in pack {}, which is not indexed", location.pack),
            )
        })?;
        named.insert(location.pack);
        let entry = PackEntry {
            id,
            offset: location.offset,
            stored_len: location.stored_len,
            raw_len: location.raw_len,
            codec: location.codec,
            reference: location.reference,
        };
        builder.add_entry(location.pack, size, entry);
        if builder.is_full() {
            written.extend(builder.write(storage)?);
        }
        Ok(())
    })?;
    // Packs in which no chunk is indexed are named too, so that nobody reads their tables.
    for (pack, size) in sizes.iter().filter(|(pack, _)| !named.contains(pack)) {
        builder.add_pack(*pack, *size);
    }
    written.extend(builder.write(storage)?);
    drop(view);
    for (id, size) in &written {
        index.add_index_file(id, *size, &[])?;
    }
    let written: Vec<IndexFileId> = written.into_iter().map(|(id, _)| id).collect();
    for id in replaced.iter().filter(|id| !written.contains(id)) {
        storage.delete(&layout::index_file(id))?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::Codec;
    use crate::id::ChunkId;

    fn entry(n: u8, offset: u64) -> PackEntry {
        PackEntry {
            id: ChunkId::of(&[n]),
            offset,
            stored_len: 10,
            raw_len: 20,
            codec: Codec::Zstd,
            reference: None,
        }
    }

    #[test]
    fn files_round_trip_and_damage_is_refused() {
        let (p1, p2, p3) = (PackId::of(b"1"), PackId::of(b"2"), PackId::of(b"3"));
        let delta = PackEntry { codec: Codec::Delta, reference: Some(ChunkId::of(b"r")), ..entry(3, 16) };
        let mut builder = Builder::default();
        builder.add_entry(p1, 1000, entry(1, 16));
        builder.add_entry(p2, 2000, delta);
        builder.add_entry(p1, 1000, entry(2, 26));
        builder.add_pack(p3, 68);
        let bytes = builder.take();
        assert!(builder.is_empty());
        assert_eq!(bytes.len(), 16 + 4 + 3 * 40 + 4 + 2 * 53 + 85);
        let file = decode(&bytes).unwrap();
        let expected =
            vec![(p1, 1000, vec![entry(1, 16), entry(2, 26)]), (p2, 2000, vec![delta]), (p3, 68, vec![])];
        assert_eq!(file.packs, expected);

        for cut in [0, 15, 19, 100, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().contains("after the last entry"));
        // A pack count that claims more than the file holds allocates nothing.
        let mut huge = bytes.clone();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
        // An entry naming a pack the file does not list.
        let mut stray = bytes.clone();
        let first_entry = 16 + 4 + 3 * 40 + 4;
        stray[first_entry..first_entry + 4].copy_from_slice(&7u32.to_le_bytes());
        assert!(decode(&stray).unwrap_err().contains("pack number 7"));
        // An entry beyond its pack's frames.
        let mut outside = Builder::default();
        outside.add_entry(p3, 68, entry(1, 16));
        assert!(decode(&outside.take()).unwrap_err().contains("outside"));
    }

    /// The example in format-spec/repository.md, "Index files".
    #[test]
    fn bytes_match_the_spec_example() {
        let chunk = PackEntry {
            id: ChunkId([0xbb; 32]),
            offset: 16,
            stored_len: 10,
            raw_len: 20,
            codec: Codec::Zstd,
            reference: None,
        };
        let mut builder = Builder::default();
        builder.add_entry(PackId([0xaa; 32]), 1000, chunk);
        let bytes = builder.take();
        let mut expected = b"CAIRNIDX\x01\0\0\0\0\0\0\0\x01\0\0\0".to_vec();
        expected.extend([0xaa; 32]);
        expected.extend([0xe8, 3, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend([0xbb; 32]);
        expected.extend([16, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 20, 0, 0, 0, 1]);
        assert_eq!(bytes, expected);
        assert_eq!(bytes.len(), 117);
    }

    #[test]
    fn a_file_is_named_by_its_bytes_and_checked_when_read() {
        let storage = crate::storage::MemoryStorage::default();
        let mut builder = Builder::default();
        assert_eq!(builder.write(&storage).unwrap(), None);
        builder.add_entry(PackId::of(b"1"), 1000, entry(1, 16));
        let (id, size) = builder.write(&storage).unwrap().unwrap();
        let listed = list(&storage).unwrap();
        assert_eq!(listed, vec![(id, size)]);
        assert_eq!(read(&storage, &id, listed[0].1).unwrap().packs.len(), 1);
        let mut bytes = storage.read(&layout::index_file(&id)).unwrap();
        bytes[30] ^= 1;
        storage.replace(&layout::index_file(&id), &bytes).unwrap();
        let err = read(&storage, &id, listed[0].1).unwrap_err().to_string();
        assert!(err.contains("does not match its name"), "{err}");
    }
}
