//! The reader's tests: round trips, file lists across chunks and records, and the
//! manifests it must refuse.

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

/// The sample's component `c`, whose file list's one chunk is lost, then a component
/// `d` of one file `z`.
fn second_component_after_a_lost_list() -> (MemoryStorage, MemoryChunks, SnapshotId) {
    let (storage, chunks) = (MemoryStorage::new(), MemoryChunks::default());
    let mut records = sample_records();
    let Record::Component(first) = &records[1] else { panic!() };
    let second =
        Record::Component(ComponentHeader { name: "d".into(), placement: b"d".to_vec(), ..first.clone() });
    let extra = [second, Record::File(sample_entry(b"z")), records[3].clone()];
    records.splice(4..4, extra);
    let id = write_all(&storage, &chunks, &records, 1);
    let first_list = write_list(vec![sample_entry(b"a/\xffb")], &MemoryChunks::default());
    chunks.0.lock().unwrap().remove(&first_list[0].id);
    (storage, chunks, id)
}

#[test]
fn the_files_of_other_components_are_passed_over_unread() {
    // The first component's list is lost: reading only the second's still works.
    let (storage, chunks, id) = second_component_after_a_lost_list();
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
    let (storage, chunks, id) = second_component_after_a_lost_list();

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
