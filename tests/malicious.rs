//! Restores of crafted manifests: whatever a manifest says, a restore stays inside its
//! target, never follows a symlink, and never writes one file's content into another.

mod support;

use cairn::manifest::*;
use cairn::time::Timestamp;
use cairn::SnapshotId;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use support::*;

fn entry(path: &[u8], kind: FileKind, mode: u32) -> FileEntry {
    FileEntry {
        path: path.to_vec(),
        kind,
        mode,
        uid: 4242,
        gid: 4242,
        mtime: Timestamp { secs: 1000, nanos: 0 },
        ctime: Timestamp { secs: 1000, nanos: 0 },
        inode: 1,
        device: 1,
        links: 1,
        size: 0,
        role: FileRole::Plain,
        log_number: None,
        chunker: 0,
        chunks: Vec::new(),
    }
}

/// Writes a one-component manifest of `files` straight into the repository.
fn craft(repo: &Path, files: Vec<FileEntry>) -> SnapshotId {
    let storage = cairn::storage::LocalStorage::new(repo);
    let mut writer = ManifestWriter::create(&storage).unwrap();
    writer
        .write(&Record::Snapshot(SnapshotHeader {
            time: Timestamp::now(),
            host: "h".into(),
            set: "crafted".into(),
            tags: vec![],
            parent: None,
            kind: SnapshotKind::Full,
            client: "test".into(),
        }))
        .unwrap();
    let component = ComponentHeader {
        name: "c".into(),
        store_type: "dir".into(),
        source: b"/".to_vec(),
        placement: vec![],
    };
    writer.write(&Record::Component(component)).unwrap();
    writer.write(&Record::FileList(store_file_list(&storage, files))).unwrap();
    writer
        .write(&Record::ComponentEnd(ComponentTrailer {
            files: 0,
            bytes: 0,
            first_log_number: None,
            last_log_number: None,
            consistency: Consistency::Unspecified,
            passes: 1,
            excluded: vec![],
            vanished: vec![],
            copy_time: None,
            command: None,
        }))
        .unwrap();
    writer
        .write(&Record::End(SnapshotTrailer {
            finished: Timestamp::now(),
            complete: true,
            errors: vec![],
            stats: BackupStats::default(),
            hooks: None,
        }))
        .unwrap();
    writer.finish().unwrap()
}

/// Stores `files` as a file list in a pack of its own, as a backup would.
fn store_file_list(storage: &dyn cairn::Storage, files: Vec<FileEntry>) -> Vec<ChunkRef> {
    let mut chunks = Vec::new();
    let mut keep = |id, bytes: &[u8]| {
        chunks.push((id, bytes.to_vec()));
        Ok(())
    };
    let mut list = FileListWriter::default();
    for file in files {
        list.push(file, &mut keep).unwrap();
    }
    let refs = list.finish(&mut keep).unwrap();
    let mut pack = cairn::pack::PackWriter::create(storage).unwrap();
    for (id, bytes) in chunks {
        pack.add(&cairn::compress::compress(id, bytes, 3)).unwrap();
    }
    pack.finish().unwrap();
    refs
}

/// Backs up `files` (name, content) for real and returns each file's one chunk, so that
/// crafted manifests can point at chunks the repository holds.
fn real_chunks(env: &TestEnv, files: &[(&str, &[u8])]) -> std::collections::HashMap<String, ChunkRef> {
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for (name, content) in files {
        fs::write(src.join(name), content).unwrap();
    }
    let real = env.backup(&src, &[]);
    let manifest = env.run(["cat", &real]).success().json();
    let listed = manifest["components"][0]["files"].as_array().unwrap();
    files
        .iter()
        .map(|(name, content)| {
            let file = listed.iter().find(|f| f["path"] == *name).unwrap();
            let id = file["chunks"][0]["id"].as_str().unwrap().parse().unwrap();
            (name.to_string(), ChunkRef { id, len: content.len() as u32 })
        })
        .collect()
}

#[test]
fn entries_beneath_a_symlink_never_reach_its_target() {
    let env = TestEnv::new();
    let outside = env.path("outside");
    fs::create_dir_all(outside.join("victimdir")).unwrap();
    fs::write(outside.join("victimfile"), b"precious").unwrap();
    let before = fs::metadata(outside.join("victimdir")).unwrap();
    let link = FileKind::Symlink { target: outside.as_os_str().as_encoded_bytes().to_vec() };
    let id = craft(
        &env.repo,
        vec![
            entry(b"a", link, 0o120777),
            entry(b"a/victimdir", FileKind::Directory, 0o40777),
            entry(b"a/victimfile", FileKind::Fifo, 0o10666),
            entry(b"a/new", FileKind::Directory, 0o40777),
        ],
    );
    let target = env.path("target");
    env.run(["restore", &id.to_hex(), "--target", target.to_str().unwrap()])
        .failure()
        .mentions("not restored");
    let after = fs::metadata(outside.join("victimdir")).unwrap();
    assert_eq!((after.mode(), after.uid(), after.mtime()), (before.mode(), before.uid(), before.mtime()));
    assert_eq!(fs::read(outside.join("victimfile")).unwrap(), b"precious");
    assert!(!outside.join("new").exists());
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 2);
}

#[test]
fn hard_links_with_different_content_are_restored_apart() {
    let env = TestEnv::new();
    let chunks = real_chunks(&env, &[("a", b"AAA"), ("b", b"BBB")]);
    let chunk_of = |name: &str| chunks[name];
    let linked = |path: &[u8], chunk: ChunkRef| FileEntry {
        links: 2,
        inode: 77,
        device: 5,
        size: 3,
        chunks: vec![chunk],
        ..entry(path, FileKind::Regular, 0o100644)
    };
    let id = craft(&env.repo, vec![linked(b"a", chunk_of("a")), linked(b"b", chunk_of("b"))]);
    let target = env.path("target");
    env.run(["restore", &id.to_hex(), "--target", target.to_str().unwrap()]).success();
    assert_eq!(fs::read(target.join("a")).unwrap(), b"AAA");
    assert_eq!(fs::read(target.join("b")).unwrap(), b"BBB");
}

/// Regression: with --overwrite, a path named twice once replaced what the restore had
/// just written (and a later hard link could then reach the wrong content).
#[test]
fn a_path_named_twice_is_restored_once() {
    let env = TestEnv::new();
    let chunks = real_chunks(&env, &[("a", b"AAA"), ("c", b"CCC")]);
    let file = |name: &str| FileEntry {
        size: 3,
        chunks: vec![chunks[name]],
        ..entry(name.as_bytes(), FileKind::Regular, 0o100644)
    };
    let id = craft(
        &env.repo,
        vec![
            file("a"),
            entry(b"a", FileKind::Directory, 0o40755),
            file("c"),
            entry(b"a", FileKind::Fifo, 0o10644),
        ],
    );
    let target = env.path("target");
    fs::create_dir_all(&target).unwrap();
    fs::write(target.join("old"), b"old").unwrap();
    let restore = env.run(["restore", &id.to_hex(), "--target", target.to_str().unwrap(), "--overwrite"]);
    restore.failure().mentions("appears twice");
    assert_eq!(fs::read(target.join("a")).unwrap(), b"AAA");
}

/// Regression: directory modes were applied in no particular order, so a parent that
/// forbids entry (mode 0600) could stop its child's metadata being set.
#[test]
fn directory_modes_are_applied_deepest_first() {
    let env = TestEnv::new();
    let mut files = Vec::new();
    for i in 0..8 {
        let top = format!("p{i}");
        files.push(entry(top.as_bytes(), FileKind::Directory, 0o40600));
        files.push(entry(format!("{top}/q").as_bytes(), FileKind::Directory, 0o40750));
    }
    let id = craft(&env.repo, files);
    let target = env.path("target");
    env.run(["restore", &id.to_hex(), "--target", target.to_str().unwrap()]).success();
    for i in 0..8 {
        let top = target.join(format!("p{i}"));
        assert_eq!(fs::metadata(&top).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(fs::metadata(top.join("q")).unwrap().mode() & 0o7777, 0o750);
        assert_eq!(fs::metadata(top.join("q")).unwrap().mtime(), 1000);
    }
}
