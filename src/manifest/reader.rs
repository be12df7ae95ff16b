//! Reading manifests: checking a file's hash against its name, and
//! `ManifestReader`, which streams records and refuses any out of order or unsafe.

use super::file_list::{ChunkSource, FileListStream};
use super::hashing::HashingReader;
use super::paths::{validate_component_name, validate_placements};
use super::records::{validate_entry, ChunkRef, ComponentSummary, FileEntry, Record, SnapshotSummary};
use super::v1;
use crate::error::{Error, IoContext, Result};
use crate::format::{self, MAX_RECORD_LEN, SNAPSHOT_MAGIC};
use crate::id::SnapshotId;
use crate::layout;
use crate::storage::Storage;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;

/// A manifest object as the storage streams it.
type ObjectStream = Box<dyn Read + Send>;

/// Checks that a manifest's bytes hash to its id, without decoding it.
pub fn verify_file(storage: &dyn Storage, id: &SnapshotId) -> Result<()> {
    let name = layout::snapshot(id);
    let path = storage.describe(&name);
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(storage.reader(&name)?).at(&path)?;
    let actual = SnapshotId::from(hasher.finalize());
    if actual != *id {
        return Err(Error::corrupt(&path, format!("content hash is {actual}, not its name")));
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Header,
    ComponentOrEnd,
    FileOrComponentEnd,
    Eof,
}

/// Streams the records of a manifest, checking their order, and at the end that the
/// file's hash is its id: a fully read manifest is a verified one. From version 3 on a
/// component's files are in its file list (file_list.rs): the reader hands out each
/// `FileList` record, then the `File` records read from its chunks.
pub struct ManifestReader<'a> {
    decoder: zstd::stream::read::Decoder<'static, BufReader<HashingReader<BufReader<ObjectStream>>>>,
    path: PathBuf,
    id: SnapshotId,
    expect: Expect,
    version: u32,
    components: std::collections::HashSet<String>,
    placements: Vec<Vec<u8>>,
    /// Where file lists are read from; without it (`outline`) they are passed over.
    chunks: Option<&'a dyn ChunkSource>,
    list: FileListStream,
    /// The file record being read from the list, as far as the chunks handed out so
    /// far hold it: a record may span chunks and `FileList` records.
    partial: PartialRecord,
    /// The component being read.
    component: String,
    /// Only this component's files are wanted: the others' are passed over unread.
    files_of: Option<String>,
    /// Inside a component whose files are not wanted.
    passing_over: bool,
    /// An error left the reader mid-record: nothing more can be read, except past the
    /// rest of a component whose file list failed (`pass_over_component`).
    failed: Option<Failure>,
}

#[derive(Default)]
struct PartialRecord {
    /// The length prefix once read, then the record's bytes so far.
    len: Option<usize>,
    bytes: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Failure {
    /// Reading the file list failed; the manifest itself is still in step.
    FileList,
    Manifest,
}

impl<'a> ManifestReader<'a> {
    /// Every record, file lists read through `chunks`.
    pub fn open(storage: &dyn Storage, id: &SnapshotId, chunks: &'a dyn ChunkSource) -> Result<Self> {
        Self::open_with(storage, id, Some(chunks))
    }

    /// Every record of the manifest file itself: a version 3 manifest's file lists are
    /// handed out as `FileList` records and not read. Enough for a summary, and needs
    /// nothing but the manifest.
    pub fn outline(storage: &dyn Storage, id: &SnapshotId) -> Result<ManifestReader<'static>> {
        ManifestReader::open_with(storage, id, None)
    }

    fn open_with(
        storage: &dyn Storage,
        id: &SnapshotId,
        chunks: Option<&'a dyn ChunkSource>,
    ) -> Result<Self> {
        let name = layout::snapshot(id);
        let path = storage.describe(&name);
        let object = storage.reader(&name)?;
        let mut raw =
            HashingReader { inner: BufReader::with_capacity(1 << 20, object), hasher: blake3::Hasher::new() };
        let mut head = [0u8; format::FILE_HEADER_LEN];
        raw.read_exact(&mut head).map_err(|e| Error::corrupt(&path, format!("header: {e}")))?;
        let version = format::check_file_header(&head, SNAPSHOT_MAGIC, format::MANIFEST_VERSION)
            .map_err(|e| Error::corrupt(&path, e))?;
        let decoder = zstd::stream::read::Decoder::new(raw).at(&path)?;
        Ok(ManifestReader {
            decoder,
            path,
            id: *id,
            expect: Expect::Header,
            version,
            components: Default::default(),
            placements: Vec::new(),
            chunks,
            list: FileListStream::default(),
            partial: PartialRecord::default(),
            component: String::new(),
            files_of: None,
            passing_over: false,
            failed: None,
        })
    }

    /// A manifest positioned at the files of component `name`, or `None` when the
    /// snapshot has none. The whole file is hashed first: callers stop reading at the
    /// component's end, before the reader would check the hash itself.
    pub fn open_component(
        storage: &dyn Storage,
        id: &SnapshotId,
        name: &str,
        chunks: &'a dyn ChunkSource,
    ) -> Result<Option<Self>> {
        verify_file(storage, id)?;
        let mut reader = ManifestReader::open(storage, id, chunks)?;
        reader.only_files_of(name);
        while let Some(record) = reader.next_record()? {
            if matches!(&record, Record::Component(c) if c.name == name) {
                return Ok(Some(reader));
            }
        }
        Ok(None)
    }

    /// Each component's name with the chunks of its file list (none before version 3),
    /// from the manifest file alone.
    pub fn file_lists(storage: &dyn Storage, id: &SnapshotId) -> Result<Vec<(String, Vec<ChunkRef>)>> {
        let mut outline = ManifestReader::outline(storage, id)?;
        let mut lists: Vec<(String, Vec<ChunkRef>)> = Vec::new();
        while let Some(record) = outline.next_record()? {
            match record {
                Record::Component(c) => lists.push((c.name, Vec::new())),
                Record::FileList(chunks) => lists.last_mut().expect("after a component").1.extend(chunks),
                _ => {}
            }
        }
        Ok(lists)
    }

    /// From here on, hands out the files of component `name` only: the other
    /// components' records are still read (their order checked), but not their file
    /// lists, nor are their files handed out.
    pub fn only_files_of(&mut self, name: &str) {
        self.files_of = Some(name.to_string());
    }

    /// The next file entry of the component being read; `None` at its end (and after).
    pub fn next_file(&mut self) -> Result<Option<FileEntry>> {
        while self.expect == Expect::FileOrComponentEnd {
            match self.next_record()? {
                Some(Record::File(entry)) => return Ok(Some(entry)),
                Some(Record::FileList(_)) => {}
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The format version the manifest was written in.
    pub fn version(&self) -> u32 {
        self.version
    }

    fn corrupt(&self, what: impl Into<String>) -> Error {
        Error::corrupt(&self.path, what)
    }

    /// The next record, or `None` after the trailer (once the hash has been checked).
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        if let Some(failure) = self.failed {
            return Err(self.corrupt(format!("not readable past an earlier error ({failure:?})")));
        }
        let record = self.read_next();
        if let Err(e) = &record {
            let in_list = matches!(e, Error::FileList { .. });
            self.failed = Some(if in_list { Failure::FileList } else { Failure::Manifest });
        }
        record
    }

    /// After an error in a component's file list, goes on at the component's trailer
    /// (returned): the manifest names the other components' lists and files apart.
    pub fn pass_over_component(&mut self) -> Result<Record> {
        if self.failed != Some(Failure::FileList) {
            return Err(self.corrupt("only a file list that failed can be passed over"));
        }
        self.failed = None;
        let trailer = self.pass_over_files();
        if trailer.is_err() {
            self.failed = Some(Failure::Manifest);
        }
        trailer
    }

    fn read_next(&mut self) -> Result<Option<Record>> {
        if self.passing_over && self.expect == Expect::FileOrComponentEnd {
            return self.pass_over_files().map(Some);
        }
        match (self.expect, self.chunks) {
            (Expect::Eof, _) => Ok(None),
            (Expect::FileOrComponentEnd, Some(chunks)) if self.version >= 3 => {
                self.read_listed(chunks).map(Some)
            }
            _ => self.read_inline().map(Some),
        }
    }

    /// Reads past the files of an unwanted component; returns its trailer.
    fn pass_over_files(&mut self) -> Result<Record> {
        self.list = FileListStream::default();
        self.partial = PartialRecord::default();
        loop {
            let record = self.read_inline()?;
            if matches!(record, Record::ComponentEnd(_)) {
                return Ok(record);
            }
        }
    }

    /// The next record of the manifest file itself, checked for its place in the order.
    fn read_inline(&mut self) -> Result<Record> {
        let mut len = [0u8; 4];
        self.decoder.read_exact(&mut len).map_err(|e| self.corrupt(format!("record length: {e}")))?;
        let len = u32::from_le_bytes(len);
        if len > MAX_RECORD_LEN {
            return Err(self.corrupt(format!("record of {len} bytes")));
        }
        let mut bytes = Vec::new();
        (&mut self.decoder).take(len as u64).read_to_end(&mut bytes).at(&self.path)?;
        if bytes.len() != len as usize {
            return Err(self.corrupt("truncated record"));
        }
        let record = match self.version {
            1 => v1::decode(&bytes),
            _ => format::decode::<Record>(&bytes),
        };
        let record = record.map_err(|e| self.corrupt(format!("record: {e}")))?;
        let listed = self.version >= 3;
        self.expect = match (self.expect, &record) {
            (Expect::Header, Record::Snapshot(_)) => Expect::ComponentOrEnd,
            (Expect::ComponentOrEnd, Record::Component(c)) => {
                validate_component_name(&c.name).map_err(|e| self.corrupt(e))?;
                if !self.components.insert(c.name.clone()) {
                    return Err(self.corrupt(format!("component {:?} appears twice", c.name)));
                }
                self.placements.push(c.placement.clone());
                validate_placements(self.placements.iter().map(Vec::as_slice))
                    .map_err(|e| self.corrupt(e))?;
                self.passing_over = self.files_of.as_ref().is_some_and(|name| *name != c.name);
                self.component = c.name.clone();
                Expect::FileOrComponentEnd
            }
            (Expect::ComponentOrEnd, Record::End(_)) => Expect::Eof,
            (Expect::FileOrComponentEnd, Record::File(entry)) if !listed => {
                validate_entry(entry).map_err(|e| self.corrupt(e))?;
                Expect::FileOrComponentEnd
            }
            (Expect::FileOrComponentEnd, Record::FileList(list)) if listed => {
                if let Some(bad) = list.iter().find(|c| c.len == 0 || c.len > format::MAX_CHUNK_LEN) {
                    return Err(self.corrupt(format!("file list chunk {} of {} bytes", bad.id, bad.len)));
                }
                Expect::FileOrComponentEnd
            }
            (Expect::FileOrComponentEnd, Record::ComponentEnd(_)) => Expect::ComponentOrEnd,
            (expect, _) => return Err(self.corrupt(format!("record out of order (expected {expect:?})"))),
        };
        if self.expect == Expect::Eof {
            self.verify_end()?;
        }
        Ok(record)
    }

    /// Inside a component of a version 3 manifest: its next file, read from the list;
    /// or, when the list's chunks handed out so far are used up, the next record of the
    /// manifest itself (a `FileList`, handed out before any of its chunks is read, so
    /// that a caller knows what a damaged chunk belongs to; or the trailer).
    fn read_listed(&mut self, chunks: &dyn ChunkSource) -> Result<Record> {
        if let Some(entry) = self.fill_record(chunks)? {
            return Ok(Record::File(entry));
        }
        let record = self.read_inline()?;
        if let Record::FileList(list) = &record {
            self.list.extend(list);
        } else if self.partial.len.is_some() || !self.partial.bytes.is_empty() {
            return Err(self.corrupt(format!("file list of {:?} ends inside a record", self.component)));
        }
        Ok(record)
    }

    /// Reads the file record in progress on from the list; `None` when the list's
    /// chunks so far end first (what was read stays in `partial`).
    fn fill_record(&mut self, chunks: &dyn ChunkSource) -> Result<Option<FileEntry>> {
        loop {
            let want = self.partial.len.unwrap_or(4);
            let have = self.partial.bytes.len();
            if have < want {
                // Grown as bytes arrive: a damaged length costs no more than the list holds.
                let step = (want - have).min(1 << 20);
                self.partial.bytes.resize(have + step, 0);
                let read = self.list.read(&mut self.partial.bytes[have..], chunks);
                let n = read.map_err(|e| self.list_error(e))?;
                self.partial.bytes.truncate(have + n);
                if n < step {
                    return Ok(None);
                }
                continue;
            }
            let bytes = std::mem::take(&mut self.partial.bytes);
            if self.partial.len.is_none() {
                let len = format::read_u32(&bytes);
                if len > MAX_RECORD_LEN {
                    return Err(self.list_error(self.corrupt(format!("record of {len} bytes"))));
                }
                self.partial.len = Some(len as usize);
                continue;
            }
            self.partial = PartialRecord::default();
            let entry = match format::decode::<Record>(&bytes) {
                Ok(Record::File(entry)) => entry,
                Ok(_) => return Err(self.list_error(self.corrupt("a record that is not a file"))),
                Err(e) => return Err(self.list_error(self.corrupt(format!("record: {e}")))),
            };
            validate_entry(&entry).map_err(|e| self.list_error(self.corrupt(e)))?;
            return Ok(Some(entry));
        }
    }

    fn list_error(&self, error: Error) -> Error {
        Error::FileList { snapshot: self.id, component: self.component.clone(), error: Box::new(error) }
    }

    fn verify_end(&mut self) -> Result<()> {
        let mut rest = Vec::new();
        self.decoder.read_to_end(&mut rest).at(&self.path)?;
        if !rest.is_empty() {
            return Err(self.corrupt("data after the trailer"));
        }
        let raw = self.decoder.get_mut();
        io::copy(raw, &mut io::sink()).at(&self.path)?;
        let actual = SnapshotId::from(raw.get_ref().hasher.finalize());
        if actual != self.id {
            return Err(self.corrupt(format!("content hash is {actual}, not its name")));
        }
        Ok(())
    }

    /// Reads the whole manifest, keeping all but the file entries.
    pub fn summary(mut self) -> Result<SnapshotSummary> {
        let mut header = None;
        let mut components = Vec::new();
        let mut current = None;
        while let Some(record) = self.next_record()? {
            match record {
                Record::Snapshot(h) => header = Some(h),
                Record::Component(c) => current = Some(c),
                Record::File(_) | Record::FileList(_) => {}
                Record::ComponentEnd(trailer) => {
                    let header = current.take().expect("reader checks record order");
                    components.push(ComponentSummary { header, trailer });
                }
                Record::End(trailer) => {
                    let header = header.take().expect("reader checks record order");
                    return Ok(SnapshotSummary { id: self.id, header, components, trailer });
                }
            }
        }
        unreachable!("the reader returns the trailer before the end")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ChunkId;
    use crate::manifest::file_list::{self, tests::write_list, tests::MemoryChunks};
    use crate::manifest::records::tests::sample_entry;
    use crate::manifest::records::*;
    use crate::manifest::writer::ManifestWriter;
    use crate::storage::MemoryStorage;
    use crate::time::Timestamp;

    fn sample_records() -> Vec<Record> {
        vec![
            Record::Snapshot(SnapshotHeader {
                time: Timestamp { secs: 1, nanos: 2 },
                host: "h".into(),
                set: "s".into(),
                tags: vec!["t".into()],
                parent: None,
                kind: SnapshotKind::Full,
                client: "test".into(),
            }),
            Record::Component(ComponentHeader {
                name: "c".into(),
                store_type: "dir".into(),
                source: b"/x".to_vec(),
                placement: b"c".to_vec(),
            }),
            Record::File(sample_entry(b"a/\xffb")),
            Record::ComponentEnd(ComponentTrailer {
                files: 1,
                bytes: 3,
                first_log_number: None,
                last_log_number: None,
                consistency: Consistency::Unspecified,
                passes: 1,
                excluded: vec![],
                vanished: vec![],
                copy_time: None,
                command: None,
            }),
            Record::End(SnapshotTrailer {
                finished: Timestamp { secs: 3, nanos: 0 },
                complete: true,
                errors: vec![],
                stats: BackupStats::default(),
                hooks: None,
            }),
        ]
    }

    /// Writes `records` as a version 3 manifest: the files of each component go into
    /// its file list, named by `list_records` records of about equal share.
    fn write_all(
        storage: &MemoryStorage,
        chunks: &MemoryChunks,
        records: &[Record],
        list_records: usize,
    ) -> SnapshotId {
        let mut writer = ManifestWriter::create(storage).unwrap();
        let mut files = Vec::new();
        for record in records {
            match record {
                Record::File(entry) => files.push(entry.clone()),
                Record::ComponentEnd(_) => {
                    let list = write_list(std::mem::take(&mut files), chunks);
                    for part in list.chunks(list.len().div_ceil(list_records).max(1)) {
                        writer.write(&Record::FileList(part.to_vec())).unwrap();
                    }
                    writer.write(record).unwrap();
                }
                _ => writer.write(record).unwrap(),
            }
        }
        writer.finish().unwrap()
    }

    fn read_all(storage: &MemoryStorage, chunks: &MemoryChunks, id: &SnapshotId) -> Result<Vec<Record>> {
        let mut reader = ManifestReader::open(storage, id, chunks)?;
        let mut read = Vec::new();
        while let Some(r) = reader.next_record()? {
            read.push(r);
        }
        Ok(read)
    }

    fn without_lists(records: Vec<Record>) -> Vec<Record> {
        records.into_iter().filter(|r| !matches!(r, Record::FileList(_))).collect()
    }

    #[test]
    fn manifest_round_trip_is_verified() {
        let (storage, chunks) = (MemoryStorage::new(), MemoryChunks::default());
        let records = sample_records();
        let id = write_all(&storage, &chunks, &records, 1);
        assert_eq!(without_lists(read_all(&storage, &chunks, &id).unwrap()), records);
        let summary = ManifestReader::outline(&storage, &id).unwrap().summary().unwrap();
        assert_eq!(summary.components.len(), 1);
    }

    #[test]
    fn files_are_read_across_chunks_and_list_records() {
        let (storage, chunks) = (MemoryStorage::new(), MemoryChunks::default());
        let mut records = sample_records();
        let files: Vec<Record> =
            file_list::tests::entries(5000, |_| false).into_iter().map(Record::File).collect();
        records.splice(2..3, files);
        // Records span chunks, and chunks of one record are named by two list records.
        let id = write_all(&storage, &chunks, &records, 7);
        let read = read_all(&storage, &chunks, &id).unwrap();
        assert_eq!(read.iter().filter(|r| matches!(r, Record::FileList(_))).count(), 7);
        assert_eq!(without_lists(read), records);
        // The outline hands out the lists and reads none of them.
        let mut outline = ManifestReader::outline(&storage, &id).unwrap();
        let mut lists = 0;
        while let Some(record) = outline.next_record().unwrap() {
            assert!(!matches!(record, Record::File(_)));
            lists += matches!(record, Record::FileList(_)) as usize;
        }
        assert_eq!(lists, 7);
    }

    #[test]
    fn a_missing_list_chunk_or_a_list_ending_inside_a_record_is_refused() {
        let (storage, chunks) = (MemoryStorage::new(), MemoryChunks::default());
        let id = write_all(&storage, &chunks, &sample_records(), 1);
        let err = read_all(&storage, &MemoryChunks::default(), &id).unwrap_err().to_string();
        assert!(err.contains("file list") && err.contains("missing"), "{err}");

        let mut writer = ManifestWriter::create(&storage).unwrap();
        let records = sample_records();
        writer.write(&records[0]).unwrap();
        writer.write(&records[1]).unwrap();
        let mut list = write_list(vec![sample_entry(b"a")], &chunks);
        list[0].len -= 1;
        let short = &chunks.0.lock().unwrap()[&list[0].id][..list[0].len as usize].to_vec();
        list[0].id = ChunkId::of(short);
        chunks.0.lock().unwrap().insert(list[0].id, short.clone());
        writer.write(&Record::FileList(list)).unwrap();
        writer.write(&records[3]).unwrap();
        writer.write(&records[4]).unwrap();
        let id = writer.finish().unwrap();
        let err = read_all(&storage, &chunks, &id).unwrap_err().to_string();
        assert!(err.contains("ends inside a record"), "{err}");
    }

    #[test]
    fn the_files_of_other_components_are_passed_over_unread() {
        let (storage, chunks) = (MemoryStorage::new(), MemoryChunks::default());
        let mut records = sample_records();
        let Record::Component(first) = &records[1] else { panic!() };
        let second = Record::Component(ComponentHeader {
            name: "d".into(),
            placement: b"d".to_vec(),
            ..first.clone()
        });
        let extra = [second, Record::File(sample_entry(b"z")), records[3].clone()];
        records.splice(4..4, extra);
        let id = write_all(&storage, &chunks, &records, 1);
        // The first component's list is lost: reading only the second's still works.
        let first_list = write_list(vec![sample_entry(b"a/\xffb")], &MemoryChunks::default());
        chunks.0.lock().unwrap().remove(&first_list[0].id);
        let mut reader = ManifestReader::open_component(&storage, &id, "d", &chunks).unwrap().unwrap();
        assert_eq!(reader.next_file().unwrap().unwrap().path, b"z");
        assert_eq!(reader.next_file().unwrap(), None);
        assert!(read_all(&storage, &chunks, &id).is_err());
    }

    /// A manifest of the sample's header and trailers around the given list records.
    fn with_lists(storage: &MemoryStorage, lists: &[Vec<ChunkRef>]) -> SnapshotId {
        let records = sample_records();
        let mut writer = ManifestWriter::create(storage).unwrap();
        writer.write(&records[0]).unwrap();
        writer.write(&records[1]).unwrap();
        for list in lists {
            writer.write(&Record::FileList(list.clone())).unwrap();
        }
        writer.write(&records[3]).unwrap();
        writer.write(&records[4]).unwrap();
        writer.finish().unwrap()
    }

    /// Regression (review): list records met inside a file record were queued until it
    /// was whole, so a manifest of many empty ones could grow memory without bound.
    #[test]
    fn list_records_are_handed_out_one_at_a_time() {
        let (storage, chunks) = (MemoryStorage::new(), MemoryChunks::default());
        let list = write_list(vec![sample_entry(b"a")], &chunks);
        let bytes = chunks.0.lock().unwrap()[&list[0].id].clone();
        // The record's first two bytes, then 10,000 empty list records, then the rest.
        let (head, tail) = bytes.split_at(2);
        let [first, second] = [head, tail].map(|part| {
            let id = ChunkId::of(part);
            chunks.0.lock().unwrap().insert(id, part.to_vec());
            vec![ChunkRef { id, len: part.len() as u32 }]
        });
        let mut lists = vec![first];
        lists.extend(std::iter::repeat_n(Vec::new(), 10_000));
        lists.push(second);
        let id = with_lists(&storage, &lists);
        let mut reader = ManifestReader::open(&storage, &id, &chunks).unwrap();
        let (mut handed_out, mut files) = (0, 0);
        while let Some(record) = reader.next_record().unwrap() {
            match record {
                Record::FileList(_) => handed_out += 1,
                Record::File(entry) => {
                    assert_eq!(handed_out, 10_002, "every list record comes before the file they hold");
                    assert_eq!(entry.path, b"a");
                    files += 1;
                }
                _ => {}
            }
        }
        assert_eq!(files, 1);
    }

    #[test]
    fn hostile_file_lists_are_refused() {
        let (storage, chunks) = (MemoryStorage::new(), MemoryChunks::default());
        // A list that holds a record other than a file.
        let record = format::encode(&sample_records()[3]);
        let bytes = [&(record.len() as u32).to_le_bytes()[..], &record].concat();
        let id = ChunkId::of(&bytes);
        chunks.0.lock().unwrap().insert(id, bytes.clone());
        let snapshot = with_lists(&storage, &[vec![ChunkRef { id, len: bytes.len() as u32 }]]);
        let err = read_all(&storage, &chunks, &snapshot).unwrap_err();
        assert!(matches!(err, Error::FileList { .. }) && err.to_string().contains("not a file"), "{err}");

        // A chunk reference of no bytes, or of more than any chunk.
        for len in [0, format::MAX_CHUNK_LEN + 1] {
            let snapshot = with_lists(&storage, &[vec![ChunkRef { id, len }]]);
            let err = ManifestReader::outline(&storage, &snapshot).and_then(|r| r.summary()).unwrap_err();
            assert!(err.to_string().contains(&format!("of {len} bytes")), "{err}");
        }

        // A list record in a manifest that says it is version 2.
        let good = with_lists(&storage, &[vec![ChunkRef { id, len: bytes.len() as u32 }]]);
        let mut raw = storage.read(&layout::snapshot(&good)).unwrap();
        raw[8..12].copy_from_slice(&2u32.to_le_bytes());
        let v2 = SnapshotId::from(blake3::hash(&raw));
        storage.put(&layout::snapshot(&v2), &raw).unwrap();
        let err = ManifestReader::outline(&storage, &v2).and_then(|r| r.summary()).unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");
    }

    /// A component whose list cannot be read can be passed over, and the others read
    /// on; without that, the reader refuses to go on after its error.
    #[test]
    fn after_a_failed_file_list_the_next_component_is_read() {
        let (storage, chunks) = (MemoryStorage::new(), MemoryChunks::default());
        let mut records = sample_records();
        let Record::Component(first) = &records[1] else { panic!() };
        let second = Record::Component(ComponentHeader {
            name: "d".into(),
            placement: b"d".to_vec(),
            ..first.clone()
        });
        let extra = [second, Record::File(sample_entry(b"z")), records[3].clone()];
        records.splice(4..4, extra);
        let id = write_all(&storage, &chunks, &records, 1);
        let first_list = write_list(vec![sample_entry(b"a/\xffb")], &MemoryChunks::default());
        chunks.0.lock().unwrap().remove(&first_list[0].id);

        let mut reader = ManifestReader::open(&storage, &id, &chunks).unwrap();
        let err = std::iter::from_fn(|| reader.next_record().transpose()).find_map(Result::err).unwrap();
        assert!(matches!(err, Error::FileList { ref component, .. } if component == "c"), "{err}");
        assert!(reader.next_record().is_err(), "nothing is read past an error");
        assert!(matches!(reader.pass_over_component().unwrap(), Record::ComponentEnd(_)));
        let rest: Vec<Record> =
            std::iter::from_fn(|| reader.next_record().transpose()).map(Result::unwrap).collect();
        assert!(rest.iter().any(|r| matches!(r, Record::File(e) if e.path == b"z")));
        assert!(matches!(rest.last(), Some(Record::End(_))));
    }

    #[test]
    fn flipped_byte_or_wrong_order_is_rejected() {
        let (storage, chunks) = (MemoryStorage::new(), MemoryChunks::default());
        let id = write_all(&storage, &chunks, &sample_records(), 1);
        storage.corrupt(&layout::snapshot(&id), |bytes| *bytes.last_mut().unwrap() ^= 1);
        let result = ManifestReader::outline(&storage, &id).and_then(|r| r.summary());
        assert!(result.is_err());
        assert!(verify_file(&storage, &id).unwrap_err().to_string().contains("not its name"));

        let mut records = sample_records();
        records.swap(1, 2);
        let mut writer = ManifestWriter::create(&storage).unwrap();
        for record in &records {
            writer.write(record).unwrap();
        }
        let id = writer.finish().unwrap();
        let result = ManifestReader::outline(&storage, &id).and_then(|r| r.summary());
        assert!(result.unwrap_err().to_string().contains("out of order"));
    }

    #[test]
    fn a_file_record_in_the_manifest_itself_is_out_of_order_from_version_3() {
        let storage = MemoryStorage::new();
        let mut writer = ManifestWriter::create(&storage).unwrap();
        for record in &sample_records() {
            writer.write(record).unwrap();
        }
        let id = writer.finish().unwrap();
        let result = ManifestReader::outline(&storage, &id).and_then(|r| r.summary());
        assert!(result.unwrap_err().to_string().contains("out of order"));
    }
}
