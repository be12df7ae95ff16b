//! The records a manifest is made of, in stream order: `Snapshot` (header), per component
//! `Component`, `File`... (from version 3 on: `FileList`..., whose chunks hold the `File`
//! records), `ComponentEnd`, then `End` (trailer); and the summaries listings keep of
//! them. Field order is the bincode byte order of the format: never reorder.

use super::paths::{display_path, serialize_path, serialize_paths, validate_path};
use crate::format;
use crate::id::{ChunkId, SnapshotId};
use crate::time::Timestamp;
use bincode::{Decode, Encode};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotKind {
    Full,
    /// Against the newest snapshot of the set.
    Incremental,
    /// Against the newest full snapshot of the set (version 2).
    Differential,
    /// Database stores: the parent's data files kept, only logs copied (version 2).
    LogsOnly,
}

#[derive(Clone, Debug, PartialEq, Encode, Decode, Serialize)]
pub struct SnapshotHeader {
    pub time: Timestamp,
    pub host: String,
    pub set: String,
    pub tags: Vec<String>,
    pub parent: Option<SnapshotId>,
    pub kind: SnapshotKind,
    /// The program that wrote the snapshot, e.g. "cairn 0.1.0".
    pub client: String,
}

#[derive(Clone, Debug, PartialEq, Encode, Decode, Serialize)]
pub struct ComponentHeader {
    pub name: String,
    pub store_type: String,
    /// The path the component was read from, as the operator gave it.
    #[serde(serialize_with = "serialize_path")]
    pub source: Vec<u8>,
    /// Where a restore of a snapshot with several components puts this one, relative to
    /// the target; empty for the target itself (version 2; version 1 means its name).
    #[serde(serialize_with = "serialize_path")]
    pub placement: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum FileKind {
    Regular,
    Directory,
    Symlink {
        #[serde(serialize_with = "serialize_path")]
        target: Vec<u8>,
    },
    Fifo,
    Socket,
    CharDevice {
        rdev: u64,
    },
    BlockDevice {
        rdev: u64,
    },
}

/// What a file is to its store; decides chunking and incremental rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileRole {
    Plain,
    Data,
    Log,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct FileEntry {
    /// Relative, '/'-separated, raw bytes; see `validate_path`.
    #[serde(serialize_with = "serialize_path")]
    pub path: Vec<u8>,
    #[serde(flatten)]
    pub kind: FileKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub inode: u64,
    /// `st_dev` at backup time: with `inode`, identifies hard links.
    pub device: u64,
    /// `st_nlink`: a regular file with more than one is restored as hard links.
    pub links: u64,
    pub size: u64,
    pub role: FileRole,
    pub log_number: Option<u64>,
    /// Index into the repository config's chunker profiles.
    pub chunker: u8,
    pub chunks: Vec<ChunkRef>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// A plain file tree: files are read as they are.
    Unspecified,
    Offline,
    Hot,
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct Excluded {
    #[serde(serialize_with = "serialize_path")]
    pub path: Vec<u8>,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct ComponentTrailer {
    pub files: u64,
    pub bytes: u64,
    pub first_log_number: Option<u64>,
    pub last_log_number: Option<u64>,
    pub consistency: Consistency,
    pub passes: u32,
    pub excluded: Vec<Excluded>,
    #[serde(serialize_with = "serialize_paths")]
    pub vanished: Vec<Vec<u8>>,
    /// When the component's copy started and ended (version 2): components of a set
    /// are copied side by side.
    pub copy_time: Option<CopyTime>,
    /// A dump component: the command whose standard output it holds (version 2).
    pub command: Option<HookRun>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct CopyTime {
    pub started: Timestamp,
    pub finished: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct FileError {
    #[serde(serialize_with = "serialize_path")]
    pub path: Vec<u8>,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct BackupStats {
    /// Entries of every type in the snapshot.
    pub files: u64,
    /// Sum of the sizes of regular files.
    pub bytes: u64,
    /// Bytes read from the source (files unchanged since the parent are not read).
    pub bytes_read: u64,
    pub new_chunks: u64,
    /// Uncompressed bytes of chunks the repository did not have.
    pub new_bytes: u64,
    /// Bytes added to pack files.
    pub stored_bytes: u64,
}

impl BackupStats {
    /// Adds another component's counts.
    pub fn add(&mut self, other: &BackupStats) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.bytes_read += other.bytes_read;
        self.new_chunks += other.new_chunks;
        self.new_bytes += other.new_bytes;
        self.stored_bytes += other.stored_bytes;
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct SnapshotTrailer {
    pub finished: Timestamp,
    /// False when some files could not be read; `errors` says which.
    pub complete: bool,
    pub errors: Vec<FileError>,
    pub stats: BackupStats,
    /// The commands run around the copy, if any (version 2).
    pub hooks: Option<Hooks>,
}

/// `--pre-exec` and `--post-exec`: the application is quiesced from the end of the
/// first to the start of the second, and that window is what the copy cost it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct Hooks {
    pub pre: Option<HookRun>,
    pub post: Option<HookRun>,
    pub window_start: Timestamp,
    pub window_end: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct HookRun {
    pub command: String,
    /// The exit status, or 128 + the signal that killed it.
    pub exit_code: i32,
    pub started: Timestamp,
    pub finished: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub enum Record {
    Snapshot(SnapshotHeader),
    Component(ComponentHeader),
    File(FileEntry),
    ComponentEnd(ComponentTrailer),
    End(SnapshotTrailer),
    /// Chunks of the component's file list, which holds its `File` records (version 3;
    /// file_list.rs).
    FileList(Vec<ChunkRef>),
}

/// Everything of a snapshot but its file lists: what listings need.
#[derive(Clone, Debug, PartialEq, Encode, Decode, Serialize)]
pub struct SnapshotSummary {
    pub id: SnapshotId,
    #[serde(flatten)]
    pub header: SnapshotHeader,
    pub components: Vec<ComponentSummary>,
    #[serde(flatten)]
    pub trailer: SnapshotTrailer,
}

#[derive(Clone, Debug, PartialEq, Encode, Decode, Serialize)]
pub struct ComponentSummary {
    #[serde(flatten)]
    pub header: ComponentHeader,
    #[serde(flatten)]
    pub trailer: ComponentTrailer,
}

/// Timestamps beyond about 35,000 years either side of 1970 are corruption.
const MAX_TIME_SECS: u64 = 1 << 40;

/// Everything a reader must refuse in a file entry (format-spec/snapshots.md).
pub fn validate_entry(entry: &FileEntry) -> Result<(), String> {
    validate_path(&entry.path)?;
    let name = display_path(&entry.path);
    for time in [entry.mtime, entry.ctime] {
        if time.nanos >= 1_000_000_000 || time.secs.unsigned_abs() > MAX_TIME_SECS {
            return Err(format!("{name}: impossible timestamp {}.{:09}", time.secs, time.nanos));
        }
    }
    if entry.kind != FileKind::Regular && (!entry.chunks.is_empty() || entry.size != 0) {
        return Err(format!("{name}: only regular files have content"));
    }
    if let Some(bad) = entry.chunks.iter().find(|c| c.len == 0 || c.len > format::MAX_CHUNK_LEN) {
        return Err(format!("{name}: chunk {} of {} bytes", bad.id, bad.len));
    }
    let total: u64 = entry.chunks.iter().map(|c| c.len as u64).sum();
    if total != entry.size {
        return Err(format!("{name}: size {} but chunks of {total} bytes", entry.size));
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::format;
    use proptest::prelude::*;

    pub fn sample_entry(path: &[u8]) -> FileEntry {
        FileEntry {
            path: path.to_vec(),
            kind: FileKind::Regular,
            mode: 0o100644,
            uid: 1000,
            gid: 1000,
            mtime: Timestamp { secs: 1_700_000_000, nanos: 5 },
            ctime: Timestamp { secs: 1_700_000_001, nanos: 6 },
            inode: 42,
            device: 7,
            links: 1,
            size: 3,
            role: FileRole::Plain,
            log_number: None,
            chunker: 0,
            chunks: vec![ChunkRef { id: ChunkId::of(b"abc"), len: 3 }],
        }
    }

    #[test]
    fn file_record_bytes_match_the_spec() {
        let entry = FileEntry {
            path: b"d/\xff".to_vec(),
            kind: FileKind::Symlink { target: b"t".to_vec() },
            mode: 0o120777,
            uid: 1,
            gid: 2,
            mtime: Timestamp { secs: -1, nanos: 3 },
            ctime: Timestamp { secs: 4, nanos: 5 },
            inode: 6,
            device: 8,
            links: 2,
            size: 0,
            role: FileRole::Log,
            log_number: Some(7),
            chunker: 1,
            chunks: vec![ChunkRef { id: ChunkId([0xab; 32]), len: 9 }],
        };
        let mut expected = Vec::new();
        expected.extend(2u32.to_le_bytes()); // Record::File
        expected.extend(3u64.to_le_bytes()); // path length
        expected.extend(b"d/\xff");
        expected.extend(2u32.to_le_bytes()); // FileKind::Symlink
        expected.extend(1u64.to_le_bytes());
        expected.extend(b"t");
        expected.extend(0o120777u32.to_le_bytes());
        expected.extend(1u32.to_le_bytes());
        expected.extend(2u32.to_le_bytes());
        expected.extend((-1i64).to_le_bytes());
        expected.extend(3u32.to_le_bytes());
        expected.extend(4i64.to_le_bytes());
        expected.extend(5u32.to_le_bytes());
        expected.extend(6u64.to_le_bytes()); // inode
        expected.extend(8u64.to_le_bytes()); // device
        expected.extend(2u64.to_le_bytes()); // links
        expected.extend(0u64.to_le_bytes()); // size
        expected.extend(2u32.to_le_bytes()); // FileRole::Log
        expected.push(1); // Some
        expected.extend(7u64.to_le_bytes());
        expected.push(1); // chunker profile
        expected.extend(1u64.to_le_bytes()); // one chunk
        expected.extend([0xab; 32]);
        expected.extend(9u32.to_le_bytes());
        assert_eq!(format::encode(&Record::File(entry)), expected);
    }

    #[test]
    fn file_list_record_bytes_match_the_spec() {
        let record = Record::FileList(vec![
            ChunkRef { id: ChunkId([0x11; 32]), len: 16_384 },
            ChunkRef { id: ChunkId([0x22; 32]), len: 298 },
        ]);
        let mut expected = Vec::new();
        expected.extend(5u32.to_le_bytes());
        expected.extend(2u64.to_le_bytes());
        expected.extend([0x11; 32]);
        expected.extend([0x00, 0x40, 0x00, 0x00]);
        expected.extend([0x22; 32]);
        expected.extend([0x2a, 0x01, 0x00, 0x00]);
        assert_eq!(format::encode(&record), expected);
    }

    proptest! {
        #[test]
        fn file_entry_encoding_round_trips(path in proptest::collection::vec(1u8..=255, 1..40),
                                           size in any::<u64>(), log in any::<Option<u64>>()) {
            let mut entry = sample_entry(&path);
            entry.size = size;
            entry.log_number = log;
            let record = Record::File(entry);
            let bytes = format::encode(&record);
            prop_assert_eq!(format::decode::<Record>(&bytes).unwrap(), record);
        }
    }
}
