//! The checked-in repositories (tests/vectors/repo-v1 and repo-v2, each made once by
//! its make-vN.sh) must always read back exactly: any accidental format change fails
//! here. Never regenerate the vectors to make this pass.

use assert_cmd::Command;
use cairn::chunker::{self, ChunkerParams};
use cairn::compress::{self, Codec};
use cairn::config::Config;
use cairn::manifest::{FileKind, ManifestReader, Record, SnapshotKind};
use cairn::storage::{LocalStorage, Storage};
use cairn::{layout, pack, reindex};
use cairn::{ChunkId, PackId, SnapshotId};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const FULL: &str = "f76b198eb8b3492eca35128c9d1b16ccdc74c2a302a24c09f3ad6fece05829b0";
const INCREMENTAL: &str = "82b611aa2d50286d1fc92c64452e85669b3dd603a41e9fd547387315666e4695";
const DATA_PACK: &str = "9a25c40b5f80be2efd82b85733783de3694667ce923f08c37ad7926d2ad71180";
const SECOND_PACK: &str = "7975eb25a10a91dba2d3522d91f611e7496ca21190192c0452cc29fe50258839";

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/repo-v1")
}

/// The same xorshift as make-v1.sh.
fn noise(len: usize, mut x: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Expected content of each regular file, per snapshot.
fn expected_files(snapshot: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let hello: &[u8] = if snapshot == FULL { b"hello, cairn\n" } else { b"hello again, cairn\n" };
    vec![
        (b"caf\xe9.txt".to_vec(), b"non-utf8 name\n".to_vec()),
        (b"dir/hard.txt".to_vec(), b"non-utf8 name\n".to_vec()),
        (b"dir/noise.bin".to_vec(), noise(600 * 1024, 42)),
        (b"dir/zeros.bin".to_vec(), vec![0u8; 100_000]),
        (b"hello.txt".to_vec(), hello.to_vec()),
    ]
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), dest).unwrap();
        }
    }
}

#[test]
fn config_bytes_decode_to_the_v1_parameters() {
    let path = vectors().join("config");
    let bytes = fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"CAIRNCFG");
    assert_eq!(&bytes[8..12], &1u32.to_le_bytes());
    let config = Config::decode(&bytes, &path).unwrap();
    assert_eq!(config.chunkers, &V1_PROFILES[..]);
    assert_eq!((config.compression.algorithm, config.compression.level), (1, 3));
    assert_eq!(config.pack_target, 32 << 20);
}

/// Profiles as written then, not today's constants, which may change for new
/// repositories.
const fn profile(min_size: u32, avg_size: u32, max_size: u32) -> ChunkerParams {
    ChunkerParams { min_size, avg_size, max_size, normalization: 1 }
}
const V1_PROFILES: [ChunkerParams; 3] = [
    profile(256 << 10, 1 << 20, 4 << 20),
    profile(4 << 10, 16 << 10, 64 << 10),
    profile(64 << 10, 256 << 10, 1 << 20),
];

/// A repository keeps cutting with its own profiles: a backup into a copy of repo-v1
/// cuts a file with the 1 MiB default it was made with (cut points pinned in
/// chunker::tests), whatever a new repository's default is.
#[test]
fn a_backup_into_an_old_repository_cuts_with_its_own_profiles() {
    let checked = Checked::new(&vectors());
    let src = checked.work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("noise.bin"), noise(6 << 20, 42)).unwrap();
    let repo = checked.work.path().join("repo");
    let out = Command::cargo_bin("cairn")
        .unwrap()
        .arg("-r")
        .arg(&repo)
        .arg("--json")
        .arg("backup")
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id: SnapshotId = report["id"].as_str().unwrap().parse().unwrap();
    let options = cairn::OpenOptions {
        mode: cairn::LockMode::Shared,
        lock_wait: std::time::Duration::ZERO,
        command: "test".into(),
        cache_dir: None,
    };
    let repo = cairn::Repository::open_local(&repo, &options).unwrap();
    let mut reader = ManifestReader::open(repo.storage(), &id, &repo).unwrap();
    let mut lengths = Vec::new();
    while let Some(record) = reader.next_record().unwrap() {
        if let Record::File(f) = record {
            lengths.extend(f.chunks.iter().map(|c| c.len));
        }
    }
    assert_eq!(lengths, [1058165, 1245702, 1666421, 1118569, 925238, 277361]);
}

#[test]
fn packs_are_named_by_their_hash_and_their_tables_decode() {
    let storage = LocalStorage::new(&vectors());
    let packs = reindex::list_packs(&storage).unwrap();
    let ids: Vec<String> = packs.iter().map(|(id, _)| id.to_hex()).collect();
    assert_eq!(ids, vec![SECOND_PACK.to_string(), DATA_PACK.to_string()]);
    for (id, _) in &packs {
        assert_eq!(PackId::of(&storage.read(&layout::pack(id)).unwrap()), *id, "{id}");
    }
    let (id, size) = &packs[1];
    let name = layout::pack(id);
    let table = pack::read_table(&storage, &name, *size).unwrap();
    let summary: Vec<(u64, u32, u32, Codec)> =
        table.iter().map(|e| (e.offset, e.stored_len, e.raw_len, e.codec)).collect();
    assert_eq!(summary, PINNED_TABLE);
    for entry in &table {
        let stored = pack::read_stored(&storage, &name, entry.offset, entry.stored_len).unwrap();
        compress::decode_chunk(&entry.id, entry.codec, entry.raw_len, stored, None).unwrap();
    }
}

const PINNED_TABLE: &[(u64, u32, u32, Codec)] = &[
    (16, 14, 14, Codec::Raw),
    (30, 614400, 614400, Codec::Raw),
    (614430, 22, 100000, Codec::Zstd),
    (614452, 13, 13, Codec::Raw),
];

#[test]
fn manifests_decode_to_the_snapshots_that_were_taken() {
    for (id, kind, parent) in
        [(FULL, SnapshotKind::Full, None), (INCREMENTAL, SnapshotKind::Incremental, Some(FULL))]
    {
        let id: SnapshotId = id.parse().unwrap();
        let mut reader = ManifestReader::outline(&LocalStorage::new(&vectors()), &id).unwrap();
        let mut files = Vec::new();
        while let Some(record) = reader.next_record().unwrap() {
            match record {
                Record::Snapshot(h) => {
                    assert_eq!((h.set.as_str(), h.host.as_str(), h.kind), ("vectors", "vector-host", kind));
                    assert_eq!(h.tags, vec!["v1".to_string()]);
                    assert_eq!(h.parent.map(|p| p.to_hex()), parent.map(String::from));
                }
                Record::Component(c) => {
                    assert_eq!((c.name.as_str(), c.store_type.as_str()), ("tree", "dir"));
                    // Version 1 has no placement: read as the component's name.
                    assert_eq!(c.placement, b"tree");
                }
                Record::File(f) => files.push(f),
                Record::ComponentEnd(t) => assert_eq!((t.last_log_number, t.copy_time), (None, None)),
                Record::End(t) => assert!(t.complete),
                Record::FileList(_) => panic!("a version 1 manifest has no file lists"),
            }
        }
        let paths: Vec<&[u8]> = files.iter().map(|f| f.path.as_slice()).collect();
        assert_eq!(
            paths,
            vec![
                &b"caf\xe9.txt"[..],
                b"dir",
                b"dir/hard.txt",
                b"dir/noise.bin",
                b"dir/zeros.bin",
                b"empty",
                b"hello.txt",
                b"link"
            ]
        );
        assert_eq!(files[0].links, 2);
        assert_eq!((files[2].device, files[2].inode), (files[0].device, files[0].inode));
        assert_eq!(files[7].kind, FileKind::Symlink { target: b"hello.txt".to_vec() });
        assert_eq!(files[1].mtime.secs, 1_700_000_000);
        // The chunk lists are what today's chunker cuts from the same bytes.
        // With the repository's own parameters (an earlier default than today's).
        let config =
            Config::decode(&fs::read(vectors().join("config")).unwrap(), Path::new("config")).unwrap();
        let params = config.chunkers[0];
        for (path, content) in expected_files(&id.to_hex()) {
            let entry = files.iter().find(|f| f.path == path).unwrap();
            let mut start = 0;
            let mut ids = Vec::new();
            for len in chunker::cut(&content, &params, true) {
                ids.push(ChunkId::of(&content[start..start + len]));
                start += len;
            }
            let recorded: Vec<ChunkId> = entry.chunks.iter().map(|c| c.id).collect();
            assert_eq!(recorded, ids, "{}", String::from_utf8_lossy(&path));
        }
    }
}

/// A copy of a vectors repository whose index the binary rebuilt from packs and
/// manifests alone, and which then passed `check --read-data`; `restore` puts a
/// snapshot of it into a new directory of the copy's temporary directory.
struct Checked {
    work: tempfile::TempDir,
}

impl Checked {
    fn new(vectors: &Path) -> Checked {
        let checked = Checked { work: tempfile::tempdir().unwrap() };
        copy_dir(vectors, &checked.work.path().join("repo"));
        checked.cairn(&["repair", "index"]);
        checked.cairn(&["check", "--read-data"]);
        checked
    }

    fn cairn(&self, args: &[&str]) {
        let repo = self.work.path().join("repo");
        Command::cargo_bin("cairn").unwrap().arg("-r").arg(repo).args(args).assert().success();
    }

    fn restore(&self, id: &str) -> PathBuf {
        let target = self.work.path().join(id);
        self.cairn(&["restore", id, "--target", target.to_str().unwrap()]);
        target
    }
}

#[test]
fn the_binary_rebuilds_the_index_and_restores_every_snapshot() {
    let checked = Checked::new(&vectors());
    for id in [FULL, INCREMENTAL] {
        let target = checked.restore(id);
        for (path, content) in expected_files(id) {
            let file = target.join(std::ffi::OsStr::from_bytes(&path));
            assert_eq!(fs::read(&file).unwrap(), content, "{}", file.display());
        }
        assert_eq!(fs::read_link(target.join("link")).unwrap(), Path::new("hello.txt"));
        assert!(fs::read_dir(target.join("empty")).unwrap().next().is_none());
        assert_eq!(fs::metadata(target.join("dir")).unwrap().mtime(), 1_700_000_000);
        assert_eq!(fs::metadata(target.join("hello.txt")).unwrap().mode() & 0o777, 0o640);
        let linked = fs::metadata(target.join("dir/hard.txt")).unwrap();
        let first = fs::metadata(target.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"))).unwrap();
        assert_eq!(linked.ino(), first.ino(), "the hard link is restored as one");
    }
}

/// The checked-in version 2 repository (tests/vectors/repo-v2, made once by
/// make-v2.sh): a broker work directory of two components, hooks, a differential.
mod v2 {
    use super::*;

    const FULL: &str = "431d6caa3083611f8c9459f44d624d5b13b14aa2cdb47e4748fc928ee1a90f07";
    const DIFFERENTIAL: &str = "88ffd20fafca2e4bb2a949e3c3d4f76ee26ad2615bf56241188c642c07b3e26b";

    fn vectors() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/repo-v2")
    }

    fn expected_files(snapshot: &str) -> Vec<(&'static str, &'static str)> {
        let log = if snapshot == FULL { "broker started\n" } else { "broker started\nbroker stopped\n" };
        vec![
            ("config.json", "{\"name\":\"broker\",\"modelVersion\":\"9.0\",\"virtualhostnodes\":[{\"name\":\"default\",\"type\":\"JSON\"}]}\n"),
            ("default/config/default.json", "{\"name\":\"default\",\"type\":\"BDB\",\"modelVersion\":\"9.0\"}\n"),
            ("log/qpid.log", log),
        ]
    }

    #[test]
    fn manifests_decode_to_components_placements_hooks_and_kinds() {
        let dir = vectors().join("snapshots");
        for (id, kind) in [(FULL, SnapshotKind::Full), (DIFFERENTIAL, SnapshotKind::Differential)] {
            let id: SnapshotId = id.parse().unwrap();
            assert_eq!(&fs::read(dir.join(id.to_hex())).unwrap()[8..12], &2u32.to_le_bytes());
            let mut reader = ManifestReader::outline(&LocalStorage::new(&vectors()), &id).unwrap();
            assert_eq!(reader.version(), 2);
            let (mut components, mut paths) = (Vec::new(), Vec::new());
            while let Some(record) = reader.next_record().unwrap() {
                match record {
                    Record::Snapshot(h) => {
                        assert_eq!(
                            (h.set.as_str(), h.host.as_str(), h.kind),
                            ("vectors", "vector-host", kind)
                        );
                        let parent = (kind == SnapshotKind::Differential).then(|| FULL.to_string());
                        assert_eq!(h.parent.map(|p| p.to_hex()), parent);
                    }
                    Record::Component(c) => components.push((c.name, c.store_type, c.placement)),
                    Record::File(f) => paths.push(String::from_utf8(f.path).unwrap()),
                    Record::ComponentEnd(t) => {
                        let time = t.copy_time.expect("version 2 records when a component was copied");
                        assert!(time.started <= time.finished);
                        assert_eq!(t.command, None);
                        if components.len() == 2 {
                            assert_eq!(t.excluded.len(), 1);
                            assert_eq!(t.excluded[0].path, b"default.lck");
                        }
                    }
                    Record::End(t) => match kind {
                        SnapshotKind::Full => {
                            let hooks = t.hooks.expect("the full backup ran hooks");
                            let (pre, post) = (hooks.pre.unwrap(), hooks.post.unwrap());
                            assert_eq!((pre.command.as_str(), pre.exit_code), ("echo quiesce", 0));
                            assert_eq!((post.command.as_str(), post.exit_code), ("echo resume", 0));
                            assert!(pre.finished <= hooks.window_start && hooks.window_end <= post.started);
                        }
                        _ => assert_eq!(t.hooks, None),
                    },
                    Record::FileList(_) => panic!("a version 2 manifest has no file lists"),
                }
            }
            let names: Vec<(&str, &str, &[u8])> =
                components.iter().map(|(n, t, p)| (n.as_str(), t.as_str(), p.as_slice())).collect();
            assert_eq!(names, [("broker", "dir", &b""[..]), ("default.config", "json", b"default/config")]);
            let expected =
                ["config.json", "default", "default/config", "log", "log/qpid.log", "default.json"];
            assert_eq!(paths, expected);
        }
    }

    #[test]
    fn the_binary_rebuilds_the_index_and_restores_the_work_directory() {
        let checked = Checked::new(&vectors());
        for id in [FULL, DIFFERENTIAL] {
            let target = checked.restore(id);
            for (path, content) in expected_files(id) {
                assert_eq!(fs::read_to_string(target.join(path)).unwrap(), content, "{path}");
            }
            assert!(!target.join("default/config/default.lck").exists());
            assert_eq!(fs::metadata(target.join("default/config")).unwrap().mtime(), 1_700_000_000);
        }
    }
}

/// The checked-in repository with version 2 packs (tests/vectors/repo-v3, made once by
/// make-v3.sh): a data file changed in place, its changed piece stored as a delta.
mod v3 {
    use super::*;

    const FULL: &str = "7bde6149a7e9aae50be7cec7b4410967cb0035202f871778dc72824b7d25676f";
    const INCREMENTAL: &str = "2f7cb7baafbe0040b7b186dc1020a59f0e3eb43cd415d1e925df7a0ce0d7f8d5";
    const DATA_PACK: &str = "2d7cc6f2a2c2681bda6723fab16b3fd6d6b9009199271a309ecd46bf95d59157";
    const DELTA_PACK: &str = "78227104433e8c11492cef6eac9974e51092af61da4a6396156393d6d08399e1";

    fn vectors() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/repo-v3")
    }

    fn data_file(snapshot: &str) -> Vec<u8> {
        let mut data = noise(100 * 1024, 7);
        if snapshot == INCREMENTAL {
            data[40_000..40_008].copy_from_slice(b"changed!");
        }
        data
    }

    #[test]
    fn the_config_has_the_pages_profile_and_the_delta_pack_names_its_reference() {
        let config =
            Config::decode(&fs::read(vectors().join("config")).unwrap(), Path::new("config")).unwrap();
        let pages = profile(64 << 10, 64 << 10, 64 << 10);
        let profiles = [profile(512 << 10, 2 << 20, 4 << 20), V1_PROFILES[1], V1_PROFILES[2], pages];
        assert_eq!(config.chunkers, profiles);

        let storage = LocalStorage::new(&vectors());
        let packs = reindex::list_packs(&storage).unwrap();
        let ids: Vec<String> = packs.iter().map(|(id, _)| id.to_hex()).collect();
        assert_eq!(ids, [DATA_PACK, DELTA_PACK]);
        for (id, _) in &packs {
            let bytes = storage.read(&layout::pack(id)).unwrap();
            assert_eq!(PackId::of(&bytes), *id);
            assert_eq!(&bytes[8..12], &2u32.to_le_bytes(), "pack version 2");
        }
        let (old, new) = (data_file(FULL), data_file(INCREMENTAL));
        let piece = |data: &[u8]| data[..64 << 10].to_vec();
        let (id, size) = &packs[1];
        let name = layout::pack(id);
        let table = pack::read_table(&storage, &name, *size).unwrap();
        let summary: Vec<(u64, u32, u32, Codec, Option<ChunkId>)> =
            table.iter().map(|e| (e.offset, e.stored_len, e.raw_len, e.codec, e.reference)).collect();
        let reference = ChunkId::of(&piece(&old));
        assert_eq!(summary, [(16, 31, 65536, Codec::Delta, Some(reference)), (47, 8, 8, Codec::Raw, None)]);
        let stored = pack::read_stored(&storage, &name, table[0].offset, table[0].stored_len).unwrap();
        assert_eq!(table[0].id, ChunkId::of(&piece(&new)));
        let decoded =
            compress::decode_chunk(&table[0].id, Codec::Delta, 65536, stored.clone(), Some(&piece(&old)));
        assert_eq!(decoded.unwrap(), piece(&new));
        assert!(compress::decode_chunk(&table[0].id, Codec::Delta, 65536, stored, None).is_err());
    }

    #[test]
    fn the_data_file_is_cut_in_fixed_pieces_and_both_snapshots_restore() {
        let id: SnapshotId = INCREMENTAL.parse().unwrap();
        let mut reader = ManifestReader::outline(&LocalStorage::new(&vectors()), &id).unwrap();
        let mut data = None;
        while let Some(record) = reader.next_record().unwrap() {
            if let Record::File(f) = record {
                if f.path == b"data.db" {
                    data = Some(f);
                }
            }
        }
        let data = data.expect("data.db in the manifest");
        assert_eq!(data.chunker, 3);
        let expected: Vec<ChunkId> = data_file(INCREMENTAL).chunks(64 << 10).map(ChunkId::of).collect();
        assert_eq!(data.chunks.iter().map(|c| c.id).collect::<Vec<_>>(), expected);

        let checked = Checked::new(&vectors());
        for id in [FULL, INCREMENTAL] {
            let target = checked.restore(id);
            assert_eq!(fs::read(target.join("data.db")).unwrap(), data_file(id), "{id}");
            assert_eq!(fs::read(target.join("log.0000000001")).unwrap(), b"log one\n");
        }
    }
}

/// The checked-in repository with version 3 manifests (tests/vectors/repo-v4, made once
/// by make-v4.sh): file lists in packs, the incremental's sharing all but one chunk.
mod v4 {
    use super::*;

    const FULL: &str = "d9c431e83578e97328a5afce1962bcf1ee5bd665a27f56888e21d26242a748ed";
    const INCREMENTAL: &str = "99039e6728fee1e1dd2a7b82d85a2b846c3b60f5462b79a98b79e60c1fa24ca1";
    const FIRST_LIST: [(&str, u32); 4] = [
        ("9738f12b7189f18a87cc93298e791ca9762f84035e429bbc4a4a1142c27e198f", 10664),
        ("6b1437ca05612f7a9ad8246e57390f28706032f3043c2d50217ae95f9596222f", 4544),
        ("d026e0729586fd7b66ae58011ed520c3915b415781e870f67b5667a8e7380ea3", 17480),
        ("95fe071c2bc06646477cf8c5f2ce9a3a9da7416e0fcc814c5ad534b9b76c8524", 27552),
    ];
    /// The incremental's last two chunks (`d5`'s directory entry and `d5/f20.txt`
    /// changed), each stored as a delta against the first list's chunk at its offset.
    const CHANGED: [(&str, u32); 2] = [
        ("9f6e5a097f794d04fe4d74794ed4fadd433e231ca1166764bea902a66937735f", 34),
        ("153ba15c129e233d1e8f8905905fd25595007235125a0ca7c0b14677dcd4df04", 73),
    ];

    fn vectors() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/repo-v4")
    }

    fn content(snapshot: &str, d: usize, f: usize) -> String {
        match (snapshot, d, f) {
            (INCREMENTAL, 5, 20) => "file 20 of directory 5, changed\n".to_string(),
            _ => format!("file {f:02} of directory {d}\n"),
        }
    }

    fn open_repo(path: &Path) -> cairn::Repository {
        let options = cairn::OpenOptions {
            mode: cairn::LockMode::Shared,
            lock_wait: std::time::Duration::ZERO,
            command: "test".into(),
            cache_dir: None,
        };
        cairn::Repository::open_local(path, &options).unwrap()
    }

    /// The manifest file names the chunks of its one component's file list, and the
    /// lists of the two snapshots differ in the chunk that holds the changed record.
    #[test]
    fn manifests_name_file_lists_that_share_their_unchanged_chunks() {
        let storage = LocalStorage::new(&vectors());
        let mut lists = Vec::new();
        for id in [FULL, INCREMENTAL] {
            let id: SnapshotId = id.parse().unwrap();
            assert_eq!(&storage.read(&layout::snapshot(&id)).unwrap()[8..12], &3u32.to_le_bytes());
            let mut outline = ManifestReader::outline(&storage, &id).unwrap();
            assert_eq!(outline.version(), 3);
            let mut list = Vec::new();
            while let Some(record) = outline.next_record().unwrap() {
                match record {
                    Record::Component(c) => {
                        assert_eq!((c.name.as_str(), c.store_type.as_str()), ("tree", "dir"))
                    }
                    Record::FileList(chunks) => list.extend(chunks),
                    Record::File(_) => panic!("a version 3 manifest holds no file records itself"),
                    Record::ComponentEnd(t) => assert_eq!(t.files, 410),
                    _ => {}
                }
            }
            lists.push(list);
        }
        let (first, second) = (&lists[0], &lists[1]);
        let pinned: Vec<(String, u32)> = first.iter().map(|c| (c.id.to_hex(), c.len)).collect();
        assert_eq!(pinned, FIRST_LIST.map(|(id, len)| (id.to_string(), len)));
        assert_eq!(second[..2], first[..2]);
        assert_eq!(second.iter().map(|c| c.len).collect::<Vec<_>>(), FIRST_LIST.map(|(_, len)| len));

        // The changed chunks are deltas against the first list's chunks at their
        // offsets, and decode to themselves only against those.
        let mut entries = Vec::new();
        for (id, size) in reindex::list_packs(&storage).unwrap() {
            let name = layout::pack(&id);
            entries.extend(
                pack::read_table(&storage, &name, size).unwrap().into_iter().map(|e| (name.clone(), e)),
            );
        }
        let raw = |id: &ChunkId| {
            let (name, entry) = entries.iter().find(|(_, e)| e.id == *id).unwrap();
            (*entry, pack::read_stored(&storage, name, entry.offset, entry.stored_len).unwrap())
        };
        for (i, (id, stored_len)) in CHANGED.iter().enumerate() {
            let chunk = second[2 + i];
            assert_eq!(chunk.id.to_hex(), *id);
            let (entry, delta) = raw(&chunk.id);
            assert_eq!(
                (entry.codec, entry.stored_len, entry.reference),
                (Codec::Delta, *stored_len, Some(first[2 + i].id))
            );
            let (reference_entry, reference_stored) = raw(&first[2 + i].id);
            let reference = compress::decode_chunk(
                &first[2 + i].id,
                reference_entry.codec,
                reference_entry.raw_len,
                reference_stored,
                None,
            )
            .unwrap();
            let decoded = compress::decode_chunk(&chunk.id, Codec::Delta, chunk.len, delta, Some(&reference));
            assert_eq!(ChunkId::of(&decoded.unwrap()), chunk.id);
        }
    }

    /// Read through the packs, the lists hold the tree's entries in path order, and the
    /// list is exactly their records, one after another.
    #[test]
    fn file_lists_decode_to_the_tree_in_path_order() {
        let repo = open_repo(&vectors());
        for snapshot in [FULL, INCREMENTAL] {
            let id: SnapshotId = snapshot.parse().unwrap();
            let mut reader = ManifestReader::open(repo.storage(), &id, &repo).unwrap();
            let (mut paths, mut list, mut records) = (Vec::new(), Vec::new(), Vec::new());
            while let Some(record) = reader.next_record().unwrap() {
                match &record {
                    Record::File(f) => {
                        paths.push(String::from_utf8(f.path.clone()).unwrap());
                        if f.kind == FileKind::Regular {
                            let (d, f_) = (f.path[1] - b'0', &f.path[4..6]);
                            let f_: usize = std::str::from_utf8(f_).unwrap().parse().unwrap();
                            assert_eq!(f.size as usize, content(snapshot, d as usize, f_).len());
                        }
                        // encoding.md: little-endian, fixed-width integers.
                        let config =
                            bincode::config::standard().with_little_endian().with_fixed_int_encoding();
                        let bytes = bincode::encode_to_vec(&record, config).unwrap();
                        records.extend((bytes.len() as u32).to_le_bytes());
                        records.extend(bytes);
                    }
                    Record::FileList(chunks) => list.extend(chunks.clone()),
                    _ => {}
                }
            }
            let mut expected = Vec::new();
            for d in 0..10 {
                expected.push(format!("d{d}"));
                expected.extend((0..40).map(|f| format!("d{d}/f{f:02}.txt")));
            }
            assert_eq!(paths, expected);
            let mut start = 0;
            for chunk in &list {
                let piece = &records[start..start + chunk.len as usize];
                assert_eq!(ChunkId::of(piece), chunk.id);
                start += chunk.len as usize;
            }
            assert_eq!(start, records.len());
        }
    }

    #[test]
    fn the_binary_rebuilds_the_index_and_restores_both_snapshots() {
        let checked = Checked::new(&vectors());
        for id in [FULL, INCREMENTAL] {
            let target = checked.restore(id);
            for d in 0..10 {
                for f in 0..40 {
                    let path = target.join(format!("d{d}/f{f:02}.txt"));
                    assert_eq!(fs::read_to_string(&path).unwrap(), content(id, d, f), "{}", path.display());
                }
            }
            assert_eq!(fs::metadata(target.join("d0")).unwrap().mtime(), 1_700_000_000);
        }
    }
}

/// The checked-in repository with index files (tests/vectors/repo-v5, made once by
/// make-v5.sh): each of its two backups wrote one for the packs it added.
mod v5 {
    use super::*;
    use cairn::index_file;

    const FULL: &str = "a16e7b0d45567101b027e2245bfe73538b4b09ba5bd1c94fde5c85d1b21c4f4e";
    const INCREMENTAL: &str = "44e41071a04a04b307050ea3189587e012d8248059508653123dc2e8aba6135d";
    /// The full backup's index file (two packs, four entries) and the incremental's
    /// (two packs, one whole entry and one delta).
    const FULL_INDEX: (&str, u64) = ("437bf83607cf0fd471d56387b85bfadcf70756dcfa0740b5b32f605ca7cc2743", 316);
    const INCREMENTAL_INDEX: (&str, u64) =
        ("e7d89c5dfcd6968274a748f113e174a6e31270817964b79119db0fefcdf1ed07", 242);

    fn vectors() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/repo-v5")
    }

    fn expected_files(snapshot: &str) -> Vec<(&'static str, Vec<u8>)> {
        let notes = if snapshot == FULL { "notes, version 1\n" } else { "notes, version 2\n" };
        let log: String = (1..=2000).map(|n| format!("line {n} of the log\n")).collect();
        vec![("notes.txt", notes.into()), ("data/z.txt", vec![b'z'; 300_000]), ("data/log.txt", log.into())]
    }

    #[test]
    fn each_backup_wrote_one_index_file_that_repeats_its_pack_tables() {
        let storage = LocalStorage::new(&vectors());
        let listed = index_file::list(&storage).unwrap();
        let mut expected = [FULL_INDEX, INCREMENTAL_INDEX];
        expected.sort();
        let names: Vec<(String, u64)> = listed.iter().map(|(id, size)| (id.to_hex(), *size)).collect();
        let expected: Vec<(String, u64)> =
            expected.iter().map(|(id, size)| (id.to_string(), *size)).collect();
        assert_eq!(names, expected);
        let mut named = Vec::new();
        let mut codecs = Vec::new();
        for (id, size) in &listed {
            let bytes = storage.read(&layout::index_file(id)).unwrap();
            assert_eq!(&bytes[..16], b"CAIRNIDX\x01\0\0\0\0\0\0\0");
            let file = index_file::read(&storage, id, *size).unwrap();
            assert_eq!(file.packs.len(), 2, "{id}: a data pack and a file-list pack");
            for (pack, pack_size, entries) in file.packs {
                assert_eq!(storage.size(&layout::pack(&pack)).unwrap(), pack_size);
                assert_eq!(pack::read_table(&storage, &layout::pack(&pack), pack_size).unwrap(), entries);
                codecs.push((id.to_hex(), entries.iter().map(|e| e.codec).collect::<Vec<_>>()));
                named.push(pack);
            }
        }
        named.sort();
        let packs: Vec<PackId> =
            reindex::list_packs(&storage).unwrap().into_iter().map(|(id, _)| id).collect();
        assert_eq!(named, packs, "every pack is named once");
        let delta_in_incremental =
            codecs.iter().any(|(id, c)| id == INCREMENTAL_INDEX.0 && c.contains(&Codec::Delta));
        assert!(delta_in_incremental, "{codecs:?}");
    }

    #[test]
    fn a_client_restores_through_the_index_files_alone() {
        let work = tempfile::tempdir().unwrap();
        let repo = work.path().join("repo");
        copy_dir(&vectors(), &repo);
        // Every pack table made unreadable: only the index files can place the chunks.
        for (id, size) in reindex::list_packs(&LocalStorage::new(&repo)).unwrap() {
            let path = repo.join(layout::pack(&id));
            let mut bytes = fs::read(&path).unwrap();
            bytes[size as usize - 8..].fill(0);
            fs::write(&path, bytes).unwrap();
        }
        for id in [FULL, INCREMENTAL] {
            let target = work.path().join(id);
            Command::cargo_bin("cairn")
                .unwrap()
                .args(["--no-cache", "-r", repo.to_str().unwrap(), "restore", id, "--target"])
                .arg(&target)
                .assert()
                .success();
            for (path, content) in expected_files(id) {
                assert_eq!(fs::read(target.join(path)).unwrap(), content, "{id}: {path}");
            }
        }
    }
}

/// Every vector repository is read where it is checked in, as an archive on read-only
/// media would be: listed, checked and restored without a lock file, an index or
/// anything else being written into it.
#[test]
fn every_vector_repository_is_read_as_it_is_checked_in() {
    let work = tempfile::tempdir().unwrap();
    for name in ["repo-v1", "repo-v2", "repo-v3", "repo-v4", "repo-v5"] {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors").join(name);
        let files = |dir: &Path| -> Vec<(PathBuf, u64)> {
            let mut out = Vec::new();
            let mut pending = vec![dir.to_path_buf()];
            while let Some(dir) = pending.pop() {
                for entry in fs::read_dir(&dir).unwrap() {
                    let path = entry.unwrap().path();
                    match path.is_dir() {
                        true => pending.push(path),
                        false => out.push((path.clone(), fs::metadata(&path).unwrap().len())),
                    }
                }
            }
            out.sort();
            out
        };
        let before = files(&repo);
        let cairn = |args: &[&str]| {
            let out = Command::cargo_bin("cairn")
                .unwrap()
                .arg("--no-cache")
                .arg("-r")
                .arg(&repo)
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{name}: cairn {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            out.stdout
        };
        let listed: serde_json::Value = serde_json::from_slice(&cairn(&["--json", "snapshots"])).unwrap();
        let ids: Vec<String> =
            listed.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
        assert!(ids.len() >= 2, "{name}: {listed}");
        cairn(&["check", "--read-data"]);
        for id in &ids {
            let target = work.path().join(format!("{name}-{id}"));
            cairn(&["restore", id, "--target", target.to_str().unwrap()]);
            if name == "repo-v1" {
                for (path, content) in expected_files(id) {
                    assert_eq!(fs::read(target.join(std::ffi::OsStr::from_bytes(&path))).unwrap(), content);
                }
            }
        }
        assert_eq!(files(&repo), before, "{name}: reading wrote into the checked-in repository");
    }
}
