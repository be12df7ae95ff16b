//! Snapshot manifests: what one snapshot holds, complete on its own. A manifest is a
//! stream of records (header, then per component its files, then a trailer), zstd
//! compressed, so neither writing nor reading one needs it all in memory.
//!
//! ```text
//! magic "CAIRNSNP" | version u32 | reserved u32         16 bytes, not compressed
//! one zstd stream of:  len u32 | bincode(Record)  ...    Snapshot, (Component, File*, ComponentEnd)*, End
//! ```
//! The file is named by the BLAKE3 of all its bytes; that name is the snapshot id.

mod v1;

use crate::error::{Error, IoContext, Result};
use crate::format::{self, MAX_RECORD_LEN, SNAPSHOT_MAGIC};
use crate::fsutil;
use crate::id::{ChunkId, SnapshotId};
use bincode::{Decode, Encode};
use serde::Serialize;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Seconds and nanoseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

impl Timestamp {
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp { secs: d.as_secs() as i64, nanos: d.subsec_nanos() }
    }

    /// Parses RFC 3339 (`2026-11-21T20:18:45Z`, `2026-11-21T21:18:45+01:00`, fractions
    /// of a second allowed; a space may replace the `T`) or `@SECONDS` since the epoch.
    pub fn parse(text: &str) -> Result<Timestamp, String> {
        let bad = || format!("{text:?} is not a time (use RFC 3339, e.g. 2026-11-21T20:18:45Z, or @SECONDS)");
        if let Some(secs) = text.strip_prefix('@') {
            return secs.parse().map(|secs| Timestamp { secs, nanos: 0 }).map_err(|_| bad());
        }
        let b = text.as_bytes();
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't' | b' ')
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(bad());
        }
        let num = |range: std::ops::Range<usize>| {
            text.get(range)
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(bad)
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let days_in_month = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        // Leap seconds (:60) are refused: Unix time cannot name them.
        if !(1..=12).contains(&month)
            || !(1..=days_in_month).contains(&day)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(bad());
        }
        let mut rest = &text[19..];
        let mut nanos = 0u32;
        if let Some(fraction) = rest.strip_prefix('.') {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let padded = format!("{:0<9}", &fraction[..digits.min(9)]);
            nanos = padded.parse().map_err(|_| bad())?;
            rest = &fraction[digits..];
        }
        let offset = match rest {
            "Z" | "z" => 0,
            _ if rest.len() == 6
                && matches!(rest.as_bytes()[0], b'+' | b'-')
                && rest.as_bytes()[3] == b':' =>
            {
                let sign = if rest.starts_with('-') { -1 } else { 1 };
                let hours: i64 = rest[1..3].parse().ok().filter(|h| (0..=23).contains(h)).ok_or_else(bad)?;
                let minutes: i64 =
                    rest[4..6].parse().ok().filter(|m| (0..=59).contains(m)).ok_or_else(bad)?;
                sign * (hours * 3600 + minutes * 60)
            }
            _ => return Err(bad()),
        };
        let days = days_from_civil(year, month, day);
        Ok(Timestamp { secs: days * 86_400 + hour * 3600 + minute * 60 + second - offset, nanos })
    }

    /// UTC in RFC 3339, e.g. `2026-11-21T20:18:45Z` (civil date from days, Hinnant).
    pub fn to_rfc3339(&self) -> String {
        let rem = self.secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(self.secs.div_euclid(86_400));
        format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01: the inverse of `days_from_civil`.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

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

/// Paths are raw bytes; shown as UTF-8 where they are, with `\xNN` for other bytes.
pub fn display_path(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len());
    for piece in path.utf8_chunks() {
        for c in piece.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in piece.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

pub fn serialize_path<S: serde::Serializer>(path: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&display_path(path))
}

fn serialize_paths<S: serde::Serializer>(paths: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(paths.iter().map(|p| display_path(p)))
}

/// A manifest path must be relative, '/'-separated, without empty, `.` or `..`
/// components and without NUL: restoring it can then never leave the target.
pub fn validate_path(path: &[u8]) -> Result<(), String> {
    let bad = path.is_empty()
        || path.contains(&0)
        || path.split(|&b| b == b'/').any(|part| part.is_empty() || part == b"." || part == b"..");
    if bad {
        Err(format!("unsafe path {:?} in manifest", display_path(path)))
    } else {
        Ok(())
    }
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

/// Where components go in a restore of the whole snapshot: each placement is the target
/// itself (shared by any number) or a safe relative path, no two the same. One may lie
/// inside another (a broker's stores inside its work directory); the outer one then
/// holds nothing below the inner one's place, and components at the target no path
/// twice (checked by the restore).
pub fn validate_placements<'a>(placements: impl IntoIterator<Item = &'a [u8]>) -> Result<(), String> {
    let mut seen: Vec<&[u8]> = Vec::new();
    for placement in placements {
        if !placement.is_empty() {
            validate_path(placement).map_err(|e| format!("placement: {e}"))?;
            if seen.contains(&placement) {
                return Err(format!("two components are placed at {}", display_path(placement)));
            }
        }
        seen.push(placement);
    }
    Ok(())
}

/// Whether `path` is `dir` or below it.
pub fn inside(path: &[u8], dir: &[u8]) -> bool {
    path.strip_prefix(dir).is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
}

/// A component name becomes a directory name in a restore target.
pub fn validate_component_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(format!("unsafe component name {name:?}"));
    }
    Ok(())
}

struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: blake3::Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Streams records into a temporary file; `finish` names it by its hash.
pub struct ManifestWriter {
    encoder: zstd::stream::write::Encoder<'static, HashingWriter<BufWriter<File>>>,
    temp: PathBuf,
}

impl ManifestWriter {
    pub fn create(tmp_dir: &Path) -> Result<ManifestWriter> {
        let temp = fsutil::temp_path(tmp_dir, "snapshot");
        let file = File::create(&temp).at(&temp)?;
        let mut out = HashingWriter { inner: BufWriter::new(file), hasher: blake3::Hasher::new() };
        out.write_all(&format::file_header(SNAPSHOT_MAGIC, format::MANIFEST_VERSION)).at(&temp)?;
        let encoder = zstd::stream::write::Encoder::new(out, 3).at(&temp)?;
        Ok(ManifestWriter { encoder, temp })
    }

    pub fn write(&mut self, record: &Record) -> Result<()> {
        let bytes = format::encode(record);
        self.encoder.write_all(&(bytes.len() as u32).to_le_bytes()).at(&self.temp)?;
        self.encoder.write_all(&bytes).at(&self.temp)
    }

    /// Makes the manifest durable as `snapshots/<id>`: from here on the snapshot exists.
    pub fn finish(self, snapshots_dir: &Path) -> Result<SnapshotId> {
        let out = self.encoder.finish().at(&self.temp)?;
        let id = SnapshotId::from(out.hasher.finalize());
        let file = out.inner.into_inner().map_err(|e| Error::io(&self.temp, e.into_error()))?;
        fsutil::persist(file, &self.temp, &snapshot_path(snapshots_dir, &id))?;
        Ok(id)
    }
}

impl ManifestWriter {
    /// Copies the records of a spool into the manifest, in order.
    pub fn append(&mut self, spool: RecordSpool) -> Result<()> {
        let file = spool.out.into_inner().map_err(|e| Error::io(&spool.path, e.into_error()))?;
        drop(file);
        let mut input = File::open(&spool.path).at(&spool.path)?;
        io::copy(&mut input, &mut self.encoder).at(&self.temp)?;
        std::fs::remove_file(&spool.path).at(&spool.path)
    }
}

/// The records of one component, written to a scratch file while components are copied
/// side by side, and appended to the manifest once all are done. A failed backup leaves
/// it in `tmp/`, which the next writer clears.
pub struct RecordSpool {
    out: BufWriter<File>,
    path: PathBuf,
}

impl RecordSpool {
    pub fn create(tmp_dir: &Path) -> Result<RecordSpool> {
        let path = fsutil::temp_path(tmp_dir, "records");
        let file = File::create(&path).at(&path)?;
        Ok(RecordSpool { out: BufWriter::with_capacity(1 << 20, file), path })
    }

    pub fn write(&mut self, record: &Record) -> Result<()> {
        let bytes = format::encode(record);
        self.out.write_all(&(bytes.len() as u32).to_le_bytes()).at(&self.path)?;
        self.out.write_all(&bytes).at(&self.path)
    }
}

/// Every manifest under `snapshots_dir`, in id order.
pub fn list_snapshots(snapshots_dir: &Path) -> Result<Vec<SnapshotId>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(snapshots_dir).at(snapshots_dir)? {
        if let Some(id) = entry.at(snapshots_dir)?.file_name().to_str().and_then(|n| n.parse().ok()) {
            out.push(id);
        }
    }
    out.sort();
    Ok(out)
}

pub fn snapshot_path(snapshots_dir: &Path, id: &SnapshotId) -> PathBuf {
    snapshots_dir.join(id.to_hex())
}

/// Checks that a manifest's bytes hash to its id, without decoding it.
pub fn verify_file(snapshots_dir: &Path, id: &SnapshotId) -> Result<()> {
    let path = snapshot_path(snapshots_dir, id);
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(File::open(&path).at(&path)?).at(&path)?;
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
    decoder: zstd::stream::read::Decoder<'static, BufReader<HashingReader<BufReader<File>>>>,
    path: PathBuf,
    id: SnapshotId,
    expect: Expect,
    version: u32,
    components: std::collections::HashSet<String>,
    placements: Vec<Vec<u8>>,
}

impl ManifestReader {
    pub fn open(snapshots_dir: &Path, id: &SnapshotId) -> Result<ManifestReader> {
        let path = snapshot_path(snapshots_dir, id);
        let file = File::open(&path).at(&path)?;
        let mut raw = HashingReader { inner: BufReader::new(file), hasher: blake3::Hasher::new() };
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
        snapshots_dir: &Path,
        id: &SnapshotId,
        name: &str,
    ) -> Result<Option<ManifestReader>> {
        verify_file(snapshots_dir, id)?;
        let mut reader = ManifestReader::open(snapshots_dir, id)?;
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

    fn write_all(dir: &Path, records: &[Record]) -> SnapshotId {
        let mut writer = ManifestWriter::create(dir).unwrap();
        for record in records {
            writer.write(record).unwrap();
        }
        writer.finish(dir).unwrap()
    }

    #[test]
    fn manifest_round_trip_is_verified() {
        let dir = tempfile::tempdir().unwrap();
        let records = sample_records();
        let id = write_all(dir.path(), &records);
        let mut reader = ManifestReader::open(dir.path(), &id).unwrap();
        let mut read = Vec::new();
        while let Some(r) = reader.next_record().unwrap() {
            read.push(r);
        }
        assert_eq!(read, records);
        let summary = ManifestReader::open(dir.path(), &id).unwrap().summary().unwrap();
        assert_eq!(summary.components.len(), 1);
    }

    #[test]
    fn flipped_byte_or_wrong_order_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let id = write_all(dir.path(), &sample_records());
        let path = snapshot_path(dir.path(), &id);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let result = ManifestReader::open(dir.path(), &id).and_then(|r| r.summary());
        assert!(result.is_err());

        let mut records = sample_records();
        records.swap(1, 2);
        let id = write_all(dir.path(), &records);
        let result = ManifestReader::open(dir.path(), &id).and_then(|r| r.summary());
        assert!(result.unwrap_err().to_string().contains("out of order"));
    }

    #[test]
    fn unsafe_paths_are_rejected() {
        for bad in [&b""[..], b"/etc", b"a/../b", b"..", b"a//b", b"./a", b"a/", b"a\0b"] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
        validate_path(b"a/b/\xff.c").unwrap();
    }

    #[test]
    fn placements_may_nest_but_not_repeat() {
        let ok: [&[u8]; 3] = [b"", b"node/config", b"node/messages"];
        validate_placements(ok).unwrap();
        validate_placements([&b""[..], b"", b"a", b"a/b"]).unwrap();
        let bad: [&[&[u8]]; 2] = [&[b"a", b"a"], &[b"a/b", b"c", b"a/b"]];
        for placements in bad {
            assert!(validate_placements(placements.iter().copied()).is_err(), "{placements:?}");
        }
        assert!(validate_placements([&b"../x"[..]]).is_err());
        assert!(inside(b"a/b", b"a") && inside(b"a", b"a") && !inside(b"ab", b"a"));
    }

    /// format-spec/snapshots.md spells out these bytes; this test holds code and spec together.
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
    fn rfc3339_parses_back() {
        for secs in [0, 951_782_400, 1_795_292_325, -1, 4_102_444_800] {
            let t = Timestamp { secs, nanos: 0 };
            assert_eq!(Timestamp::parse(&t.to_rfc3339()), Ok(t));
        }
        let t = Timestamp::parse("2026-11-21T21:18:45.5+01:00").unwrap();
        assert_eq!((t.secs, t.nanos), (1_795_292_325, 500_000_000));
        assert_eq!(Timestamp::parse("@12").unwrap().secs, 12);
        for bad in [
            "2026-11-21",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "2026-11-21T20:18:45",
            "@x",
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2030-01-01T23:59:60Z",
            "2026-11-21T20:18:45+99:99",
            "-001-11-21T20:18:45Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(Timestamp { secs: 0, nanos: 0 }.to_rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp { secs: 951_782_400, nanos: 0 }.to_rfc3339(), "2000-02-29T00:00:00Z");
        assert_eq!(Timestamp { secs: 1_795_292_325, nanos: 0 }.to_rfc3339(), "2026-11-21T20:18:45Z");
        assert_eq!(Timestamp { secs: -1, nanos: 0 }.to_rfc3339(), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn display_path_escapes_non_utf8() {
        assert_eq!(display_path(b"a/\xffb\\"), "a/\\xffb\\\\");
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
