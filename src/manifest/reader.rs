//! Reading manifests: checking a file's hash against its name, and
//! `ManifestReader`, which streams records and refuses any out of order or unsafe.

use super::hashing::HashingReader;
use super::paths::{validate_component_name, validate_placements};
use super::records::{validate_entry, ComponentSummary, FileEntry, Record, SnapshotSummary};
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
/// file's hash is its id: a fully read manifest is a verified one.
pub struct ManifestReader {
    decoder: zstd::stream::read::Decoder<'static, BufReader<HashingReader<BufReader<ObjectStream>>>>,
    path: PathBuf,
    id: SnapshotId,
    expect: Expect,
    version: u32,
    components: std::collections::HashSet<String>,
    placements: Vec<Vec<u8>>,
}

impl ManifestReader {
    pub fn open(storage: &dyn Storage, id: &SnapshotId) -> Result<ManifestReader> {
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
        })
    }

    /// A manifest positioned at the files of component `name`, or `None` when the
    /// snapshot has none. The whole file is hashed first: callers stop reading at the
    /// component's end, before the reader would check the hash itself.
    pub fn open_component(
        storage: &dyn Storage,
        id: &SnapshotId,
        name: &str,
    ) -> Result<Option<ManifestReader>> {
        verify_file(storage, id)?;
        let mut reader = ManifestReader::open(storage, id)?;
        while let Some(record) = reader.next_record()? {
            if matches!(&record, Record::Component(c) if c.name == name) {
                return Ok(Some(reader));
            }
        }
        Ok(None)
    }

    /// The next file entry of the component being read; `None` at its end (and after).
    pub fn next_file(&mut self) -> Result<Option<FileEntry>> {
        if self.expect != Expect::FileOrComponentEnd {
            return Ok(None);
        }
        match self.next_record()? {
            Some(Record::File(entry)) => Ok(Some(entry)),
            _ => Ok(None),
        }
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
        if self.expect == Expect::Eof {
            return Ok(None);
        }
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
                Expect::FileOrComponentEnd
            }
            (Expect::ComponentOrEnd, Record::End(_)) => Expect::Eof,
            (Expect::FileOrComponentEnd, Record::File(entry)) => {
                validate_entry(entry).map_err(|e| self.corrupt(e))?;
                Expect::FileOrComponentEnd
            }
            (Expect::FileOrComponentEnd, Record::ComponentEnd(_)) => Expect::ComponentOrEnd,
            (expect, _) => return Err(self.corrupt(format!("record out of order (expected {expect:?})"))),
        };
        if self.expect == Expect::Eof {
            self.verify_end()?;
        }
        Ok(Some(record))
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
                Record::File(_) => {}
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

    fn write_all(storage: &MemoryStorage, records: &[Record]) -> SnapshotId {
        let mut writer = ManifestWriter::create(storage).unwrap();
        for record in records {
            writer.write(record).unwrap();
        }
        writer.finish().unwrap()
    }

    #[test]
    fn manifest_round_trip_is_verified() {
        let storage = MemoryStorage::new();
        let records = sample_records();
        let id = write_all(&storage, &records);
        let mut reader = ManifestReader::open(&storage, &id).unwrap();
        let mut read = Vec::new();
        while let Some(r) = reader.next_record().unwrap() {
            read.push(r);
        }
        assert_eq!(read, records);
        let summary = ManifestReader::open(&storage, &id).unwrap().summary().unwrap();
        assert_eq!(summary.components.len(), 1);
    }

    #[test]
    fn flipped_byte_or_wrong_order_is_rejected() {
        let storage = MemoryStorage::new();
        let id = write_all(&storage, &sample_records());
        storage.corrupt(&layout::snapshot(&id), |bytes| *bytes.last_mut().unwrap() ^= 1);
        let result = ManifestReader::open(&storage, &id).and_then(|r| r.summary());
        assert!(result.is_err());
        assert!(verify_file(&storage, &id).unwrap_err().to_string().contains("not its name"));

        let mut records = sample_records();
        records.swap(1, 2);
        let id = write_all(&storage, &records);
        let result = ManifestReader::open(&storage, &id).and_then(|r| r.summary());
        assert!(result.unwrap_err().to_string().contains("out of order"));
    }
}
