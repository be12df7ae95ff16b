//! Reading manifests: checking a file's hash against its name, and
//! `ManifestReader`, which streams records and refuses any out of order or unsafe.

use super::file_list::{ChunkSource, FileListStream, ListError};
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
        match self.list.next_entry(chunks) {
            Ok(Some(entry)) => return Ok(Record::File(entry)),
            Ok(None) => {}
            Err(ListError::Chunk(e)) => return Err(self.list_error(e)),
            Err(ListError::Corrupt(what)) => return Err(self.list_error(self.corrupt(what))),
        }
        let record = self.read_inline()?;
        if let Record::FileList(list) = &record {
            self.list.extend(list);
        } else if self.list.inside_record() {
            return Err(self.corrupt(format!("file list of {:?} ends inside a record", self.component)));
        }
        Ok(record)
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
mod tests;
