//! A component's file list (manifest version 3): its `File` records, one byte stream cut
//! content-defined into chunks that are stored in packs like file data, so that a
//! snapshot whose files did not change stores no new bytes for them, and one where a
//! few changed stores about the chunks those records fall in.
//!
//! ```text
//! file list = chunk 0 | chunk 1 | ...        each chunk named by the BLAKE3 of its bytes
//!           = len u32 | bincode(Record::File) | len u32 | ...   records may span chunks
//! ```
//! `FileListWriter` makes the stream and cuts it; `FileListStream` reads it back into
//! file records one chunk at a time, so neither side holds more than a chunk and a
//! record.

use super::records::{validate_entry, ChunkRef, FileEntry, Record};
use crate::chunker::{self, ChunkerParams};
use crate::error::{Error, Result};
use crate::format::{self, MAX_RECORD_LEN};
use crate::id::ChunkId;
use std::collections::VecDeque;

/// Where a manifest reader gets the chunks of a file list from (the repository's
/// packs, through its index). Each chunk returned must have been verified against its id.
pub trait ChunkSource: Sync {
    fn read_chunk(&self, chunk: &ChunkRef) -> Result<Vec<u8>>;
}

/// Cuts of the file list: FastCDC with the parameters of the `fine` profile (4 / 16 /
/// 64 KiB). Readers do not depend on them; a writer that keeps them keeps the cuts of an
/// unchanged stretch of the list where they were, which is what makes it deduplicate.
/// Small enough that one changed record costs about 16 KiB of list, large enough that
/// the chunk references cost 36 bytes per 16 KiB (0.2%) and each chunk compresses well.
pub const FILE_LIST_CUTS: ChunkerParams = ChunkerParams::FINE;

/// Records are collected until this many bytes are buffered, then cut: at least the
/// largest chunk, so buffer-by-buffer cuts equal the cuts of the whole stream.
const CUT_BUFFER: usize = 4 * FILE_LIST_CUTS.max_size as usize;

/// Encodes file records into the file list stream and cuts it; each finished chunk goes
/// to the caller's `store`, which makes sure the repository has it.
pub struct FileListWriter {
    buffer: Vec<u8>,
    chunks: Vec<ChunkRef>,
}

impl Default for FileListWriter {
    fn default() -> Self {
        FileListWriter { buffer: Vec::with_capacity(CUT_BUFFER + (64 << 10)), chunks: Vec::new() }
    }
}

impl FileListWriter {
    pub fn push(
        &mut self,
        entry: FileEntry,
        store: &mut dyn FnMut(ChunkId, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let record = format::encode(&Record::File(entry));
        self.buffer.extend_from_slice(&(record.len() as u32).to_le_bytes());
        self.buffer.extend_from_slice(&record);
        if self.buffer.len() >= CUT_BUFFER {
            self.cut(false, store)?;
        }
        Ok(())
    }

    /// Cuts what is left and returns the whole list, in order.
    pub fn finish(mut self, store: &mut dyn FnMut(ChunkId, &[u8]) -> Result<()>) -> Result<Vec<ChunkRef>> {
        self.cut(true, store)?;
        Ok(self.chunks)
    }

    fn cut(&mut self, at_end: bool, store: &mut dyn FnMut(ChunkId, &[u8]) -> Result<()>) -> Result<()> {
        let mut start = 0;
        for len in chunker::cut(&self.buffer, &FILE_LIST_CUTS, at_end) {
            let bytes = &self.buffer[start..start + len];
            let id = ChunkId::of(bytes);
            store(id, bytes)?;
            self.chunks.push(ChunkRef { id, len: len as u32 });
            start += len;
        }
        self.buffer.drain(..start);
        Ok(())
    }
}

/// Reads a file list back, a chunk at a time, from chunk references handed to it as
/// the manifest names them.
#[derive(Default)]
pub(super) struct FileListStream {
    pending: VecDeque<ChunkRef>,
    current: Vec<u8>,
    pos: usize,
    /// The file record being read, as far as the chunks handed over so far hold it: a
    /// record may span chunks and `FileList` records.
    partial: PartialRecord,
}

#[derive(Default)]
struct PartialRecord {
    /// The length prefix once read, then the record's bytes so far.
    len: Option<usize>,
    bytes: Vec<u8>,
}

/// Why a list could not be read: a chunk that could not be had, or bytes that are not
/// a list of file records.
pub(super) enum ListError {
    Chunk(Error),
    Corrupt(String),
}

impl FileListStream {
    pub(super) fn extend(&mut self, chunks: &[ChunkRef]) {
        self.pending.extend(chunks.iter().copied());
    }

    /// The next file record; `None` when the chunks handed over so far end first (what
    /// was read of a record is kept for when more are handed over).
    pub(super) fn next_entry(&mut self, source: &dyn ChunkSource) -> Result<Option<FileEntry>, ListError> {
        loop {
            let want = self.partial.len.unwrap_or(4);
            let have = self.partial.bytes.len();
            if have < want {
                // Grown as bytes arrive: a damaged length costs no more than the list holds.
                let step = (want - have).min(1 << 20);
                let mut bytes = std::mem::take(&mut self.partial.bytes);
                bytes.resize(have + step, 0);
                let n = self.read(&mut bytes[have..], source).map_err(ListError::Chunk)?;
                bytes.truncate(have + n);
                self.partial.bytes = bytes;
                if n < step {
                    return Ok(None);
                }
                continue;
            }
            let bytes = std::mem::take(&mut self.partial.bytes);
            if self.partial.len.is_none() {
                let len = format::read_u32(&bytes);
                if len > MAX_RECORD_LEN {
                    return Err(ListError::Corrupt(format!("record of {len} bytes")));
                }
                self.partial.len = Some(len as usize);
                continue;
            }
            self.partial = PartialRecord::default();
            let entry = match format::decode::<Record>(&bytes) {
                Ok(Record::File(entry)) => entry,
                Ok(_) => return Err(ListError::Corrupt("a record that is not a file".into())),
                Err(e) => return Err(ListError::Corrupt(format!("record: {e}"))),
            };
            validate_entry(&entry).map_err(ListError::Corrupt)?;
            return Ok(Some(entry));
        }
    }

    /// Whether part of a record has been read: the list may not end here.
    pub(super) fn inside_record(&self) -> bool {
        self.partial.len.is_some() || !self.partial.bytes.is_empty()
    }

    /// Fills `out` from the stream; returns how many bytes it could, fewer only when the
    /// chunks handed to it so far are used up.
    fn read(&mut self, out: &mut [u8], source: &dyn ChunkSource) -> Result<usize> {
        let mut filled = 0;
        while filled < out.len() {
            if self.pos == self.current.len() {
                let Some(next) = self.pending.pop_front() else { break };
                self.current = source.read_chunk(&next)?;
                self.pos = 0;
                continue;
            }
            let n = (out.len() - filled).min(self.current.len() - self.pos);
            out[filled..filled + n].copy_from_slice(&self.current[self.pos..self.pos + n]);
            self.pos += n;
            filled += n;
        }
        Ok(filled)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::error::Error;
    use crate::manifest::records::tests::sample_entry;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// Chunks kept in memory, as a repository would keep them in packs.
    #[derive(Default)]
    pub struct MemoryChunks(pub Mutex<HashMap<ChunkId, Vec<u8>>>);

    impl MemoryChunks {
        pub fn store(&self) -> impl FnMut(ChunkId, &[u8]) -> Result<()> + '_ {
            |id, bytes| {
                self.0.lock().unwrap().insert(id, bytes.to_vec());
                Ok(())
            }
        }
    }

    impl ChunkSource for MemoryChunks {
        fn read_chunk(&self, chunk: &ChunkRef) -> Result<Vec<u8>> {
            let bytes = self.0.lock().unwrap().get(&chunk.id).cloned();
            bytes.ok_or_else(|| Error::Invalid(format!("chunk {} is missing", chunk.id)))
        }
    }

    pub fn entries(count: usize, changed: impl Fn(usize) -> bool) -> Vec<FileEntry> {
        (0..count)
            .map(|i| {
                let mut entry = sample_entry(format!("dir{:03}/file{i:06}", i / 100).as_bytes());
                entry.inode = i as u64;
                if changed(i) {
                    entry.mtime.secs += 1;
                }
                entry
            })
            .collect()
    }

    pub fn write_list(entries: Vec<FileEntry>, chunks: &MemoryChunks) -> Vec<ChunkRef> {
        let mut writer = FileListWriter::default();
        let mut store = chunks.store();
        for entry in entries {
            writer.push(entry, &mut store).unwrap();
        }
        writer.finish(&mut store).unwrap()
    }

    #[test]
    fn the_stream_is_the_records_in_order_across_chunk_boundaries() {
        let chunks = MemoryChunks::default();
        let entries = entries(3000, |_| false);
        let list = write_list(entries.clone(), &chunks);
        assert!(list.len() > 3, "{} chunks", list.len());
        let mut expected = Vec::new();
        for entry in entries {
            let record = format::encode(&Record::File(entry));
            expected.extend((record.len() as u32).to_le_bytes());
            expected.extend(record);
        }
        let mut stream = FileListStream::default();
        stream.extend(&list);
        // Odd-sized reads cross chunk boundaries.
        let (mut read, mut buf) = (Vec::new(), [0u8; 777]);
        loop {
            let n = stream.read(&mut buf, &chunks).unwrap();
            if n == 0 {
                break;
            }
            read.extend_from_slice(&buf[..n]);
        }
        assert_eq!(read, expected);
    }

    #[test]
    fn an_unchanged_list_cuts_alike_and_a_change_costs_about_its_chunk() {
        let chunks = MemoryChunks::default();
        let first = write_list(entries(20_000, |_| false), &chunks);
        let again = write_list(entries(20_000, |_| false), &chunks);
        assert_eq!(first, again);
        // Twenty neighbouring records changed in the middle.
        let changed = write_list(entries(20_000, |i| (10_000..10_020).contains(&i)), &chunks);
        let new: Vec<_> = changed.iter().filter(|c| !first.contains(c)).collect();
        assert!(!new.is_empty() && new.len() <= 3, "{} of {} chunks new", new.len(), changed.len());
    }
}
