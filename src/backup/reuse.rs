//! What a new copy of a file may take from its parent entry: the whole chunk list when
//! the file's role allows it (`may_reuse`), else, for a data file, the parent's chunk at
//! each offset as the reference a new chunk is stored as a delta against (`SameOffset`).

use super::parent::ParentFiles;
use crate::id::ChunkId;
use crate::manifest::{ChunkRef, FileEntry, FileRole};
use crate::time::Timestamp;

/// Seconds a data file must have been quiet before the parent backup began for its
/// unchanged times to prove unchanged content: file times tick coarsely (a few ms), so a
/// write just after the parent read the file could leave them as they were.
const QUIET_SECS: i64 = 2;

/// What a file's role allows (given that its size, times and inode are as the parent
/// recorded): logs below the parent's last log are complete and never change; the
/// parent's last log and newer ones are read. Data files are updated in place: reused
/// only when last changed well before the parent backup began, else read as they are now.
pub(super) fn may_reuse(entry: &FileEntry, parent: &ParentFiles<'_>) -> bool {
    match entry.role {
        FileRole::Plain => true,
        FileRole::Data => {
            let changed = entry.mtime.max(entry.ctime);
            Timestamp { secs: changed.secs + QUIET_SECS, ..changed } < parent.started()
        }
        FileRole::Log => {
            matches!((entry.log_number, parent.last_log_number()), (Some(n), Some(last)) if n < last)
        }
    }
}

/// The chunks of a file's previous version, looked up by offset as the new version is
/// cut (offsets only grow).
pub(super) struct SameOffset {
    chunks: Vec<ChunkRef>,
    next: usize,
    /// Offset of `chunks[next]`.
    start: u64,
}

impl SameOffset {
    pub(super) fn new(chunks: Vec<ChunkRef>) -> SameOffset {
        SameOffset { chunks, next: 0, start: 0 }
    }

    /// The previous version's chunk that holds byte `offset`.
    pub(super) fn at(&mut self, offset: u64) -> Option<ChunkId> {
        while let Some(chunk) = self.chunks.get(self.next) {
            if offset < self.start + chunk.len as u64 {
                return Some(chunk.id);
            }
            self.start += chunk.len as u64;
            self.next += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_offset_finds_the_chunk_holding_each_offset() {
        let ids: Vec<ChunkId> = (0u8..3).map(|i| ChunkId::of(&[i])).collect();
        let chunks = vec![
            ChunkRef { id: ids[0], len: 10 },
            ChunkRef { id: ids[1], len: 5 },
            ChunkRef { id: ids[2], len: 1 },
        ];
        let mut lookup = SameOffset::new(chunks);
        assert_eq!(lookup.at(0), Some(ids[0]));
        assert_eq!(lookup.at(9), Some(ids[0]));
        assert_eq!(lookup.at(10), Some(ids[1]));
        assert_eq!(lookup.at(15), Some(ids[2]));
        assert_eq!(lookup.at(16), None);
    }
}
