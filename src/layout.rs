//! Every name in a repository, in one place (format-spec/repository.md).
//!
//! ```text
//! config               format version, id, chunker profiles, compression (mutable)
//! packs/xx/<id>        immutable pack files; xx = the id's first two hex digits
//! snapshots/<id>       immutable snapshot manifests
//! index/<id>           immutable index files: where the chunks of packs are
//! locks/<random id>    on object storage: who uses the repository, and how
//! ```
//! A local repository also has files that are not objects: its index cache, its lock
//! files and `tmp/`, where new objects are written before they are renamed.

use crate::id::{IndexFileId, PackId, SnapshotId};

pub const CONFIG: &str = "config";
pub const PACKS: &str = "packs/";
pub const SNAPSHOTS: &str = "snapshots/";
pub const INDEX_FILES: &str = "index/";
/// Lock objects of repositories on object storage (storage/object_lock.rs).
pub const LOCKS: &str = "locks/";

/// A local repository's own index cache (index.md); may be absent.
pub const LOCAL_INDEX: &str = "index.redb";
/// Shared by readers and backups, held alone by prune, forget and repair.
pub const LOCK: &str = "lock";
/// Held by the one backup writing.
pub const APPEND_LOCK: &str = "append-lock";
/// Objects being written; anything here when no writer runs is garbage.
pub const LOCAL_TMP: &str = "tmp";

/// `packs/<first two hex digits>/<id>`: keeps directories small with many packs.
pub fn pack(id: &PackId) -> String {
    let hex = id.to_hex();
    format!("{PACKS}{}/{hex}", &hex[..2])
}

pub fn snapshot(id: &SnapshotId) -> String {
    format!("{SNAPSHOTS}{}", id.to_hex())
}

pub fn index_file(id: &IndexFileId) -> String {
    format!("{INDEX_FILES}{}", id.to_hex())
}

/// The index file a listed name is, if it is one.
pub fn index_file_id(name: &str) -> Option<IndexFileId> {
    name.strip_prefix(INDEX_FILES)?.parse().ok()
}

/// The pack a listed name is, if it is one; other names are not part of the repository.
pub fn pack_id(name: &str) -> Option<PackId> {
    let (dir, hex) = name.strip_prefix(PACKS)?.split_once('/')?;
    let id: PackId = hex.parse().ok()?;
    (dir == &hex[..2]).then_some(id)
}

/// The snapshot a listed name is, if it is one.
pub fn snapshot_id(name: &str) -> Option<SnapshotId> {
    name.strip_prefix(SNAPSHOTS)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        let pack = PackId([0xab; 32]);
        assert_eq!(pack_id(&super::pack(&pack)), Some(pack));
        assert!(super::pack(&pack).starts_with("packs/ab/abab"));
        let snap = SnapshotId([7; 32]);
        assert_eq!(snapshot_id(&snapshot(&snap)), Some(snap));
        let file = IndexFileId([9; 32]);
        assert_eq!(index_file_id(&index_file(&file)), Some(file));
        assert_eq!(index_file_id(&snapshot(&snap)), None);
        let misplaced = format!("packs/cd/{}", pack.to_hex());
        assert_eq!(pack_id(&misplaced), None);
        assert_eq!(pack_id("packs/ab/notes.txt"), None);
        assert_eq!(snapshot_id("snapshots/.hidden"), None);
    }
}
