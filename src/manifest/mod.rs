//! Snapshot manifests: what one snapshot holds, complete on its own. A manifest is a
//! stream of records (header, then per component its files, then a trailer), zstd
//! compressed, so neither writing nor reading one needs it all in memory.
//!
//! ```text
//! magic "CAIRNSNP" | version u32 | reserved u32         16 bytes, not compressed
//! one zstd stream of:  len u32 | bincode(Record)  ...    Snapshot, (Component, FileList*, ComponentEnd)*, End
//! ```
//! The file is named by the BLAKE3 of all its bytes; that name is the snapshot id. Each
//! component's `File` records are in its file list, chunks stored in packs that the
//! `FileList` records name, so an unchanged stretch of files costs nothing again.
//!
//! `records` holds the record types, `paths` the rules their paths obey, `file_list` the
//! chunked file lists, `writer` and `reader` the streams, `hashing` the hash both compute
//! on the way; `v1` reads version 1 (version 2 put `File` records in the manifest itself).

mod file_list;
mod hashing;
mod paths;
mod reader;
mod records;
mod v1;
mod writer;

pub use file_list::{ChunkSource, FileListWriter, FILE_LIST_CUTS};
pub use paths::{
    display_path, inside, serialize_path, validate_component_name, validate_path, validate_placements,
};
pub use reader::{verify_file, ManifestReader};
pub use records::{
    validate_entry, BackupStats, ChunkRef, ComponentHeader, ComponentSummary, ComponentTrailer, Consistency,
    CopyTime, Excluded, FileEntry, FileError, FileKind, FileRole, HookRun, Hooks, Record, SnapshotHeader,
    SnapshotKind, SnapshotSummary, SnapshotTrailer,
};
pub use writer::ManifestWriter;
