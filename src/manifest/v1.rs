//! Reading version 1 manifests. Version 2 added fields to three records and variants to
//! `SnapshotKind`; the other records are the same bytes in both versions.

use super::{
    BackupStats, ComponentHeader, ComponentTrailer, Consistency, Excluded, FileEntry, FileError, Record,
    SnapshotHeader, SnapshotKind, SnapshotTrailer,
};
use crate::format;
use crate::time::Timestamp;
use bincode::Decode;

#[derive(Decode)]
enum RecordV1 {
    Snapshot(SnapshotHeader),
    Component(ComponentHeaderV1),
    File(FileEntry),
    ComponentEnd(ComponentTrailerV1),
    End(SnapshotTrailerV1),
}

#[derive(Decode)]
struct ComponentTrailerV1 {
    files: u64,
    bytes: u64,
    first_log_number: Option<u64>,
    last_log_number: Option<u64>,
    consistency: Consistency,
    passes: u32,
    excluded: Vec<Excluded>,
    vanished: Vec<Vec<u8>>,
}

#[derive(Decode)]
struct ComponentHeaderV1 {
    name: String,
    store_type: String,
    source: Vec<u8>,
}

#[derive(Decode)]
struct SnapshotTrailerV1 {
    finished: Timestamp,
    complete: bool,
    errors: Vec<FileError>,
    stats: BackupStats,
}

pub fn decode(bytes: &[u8]) -> Result<Record, String> {
    Ok(match format::decode::<RecordV1>(bytes)? {
        RecordV1::Snapshot(h) if matches!(h.kind, SnapshotKind::Full | SnapshotKind::Incremental) => {
            Record::Snapshot(h)
        }
        RecordV1::Snapshot(h) => return Err(format!("snapshot kind {:?} is not in version 1", h.kind)),
        // Version 1 put each component of a snapshot with several in a directory named
        // after it.
        RecordV1::Component(ComponentHeaderV1 { name, store_type, source }) => {
            Record::Component(ComponentHeader {
                placement: name.clone().into_bytes(),
                name,
                store_type,
                source,
            })
        }
        RecordV1::File(entry) => Record::File(entry),
        RecordV1::ComponentEnd(t) => Record::ComponentEnd(ComponentTrailer {
            files: t.files,
            bytes: t.bytes,
            first_log_number: t.first_log_number,
            last_log_number: t.last_log_number,
            consistency: t.consistency,
            passes: t.passes,
            excluded: t.excluded,
            vanished: t.vanished,
            copy_time: None,
            command: None,
        }),
        RecordV1::End(SnapshotTrailerV1 { finished, complete, errors, stats }) => {
            Record::End(SnapshotTrailer { finished, complete, errors, stats, hooks: None })
        }
    })
}
