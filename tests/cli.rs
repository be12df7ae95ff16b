//! End-to-end tests of the `cairn` command line.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::*;

fn restore_args<'a>(snapshot: &'a str, target: &'a Path) -> Vec<&'a OsStr> {
    vec![OsStr::new("restore"), OsStr::new(snapshot), OsStr::new("--target"), target.as_os_str()]
}

fn num(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or_else(|| panic!("{field} is not a number in {v}"))
}

/// index.redb is a cache whose file size redb manages: across commits it alternates
/// between two sizes (about 290 KB and 570 KB here), so it is bounded separately from the
/// repository's data (packs, manifests, config).
#[track_caller]
fn assert_index_bounded(before: u64, after: u64) {
    assert!(after <= before.max(1 << 20) * 2, "index.redb grew from {before} to {after} bytes");
}

#[test]
fn round_trip_is_byte_exact() {
    let env = TestEnv::new();
    let tree = generate_tree(&env.path("src"), &TreeSpec::standard(1));
    let id = env.backup(&tree.root, &[]);

    let out = env.path("out");
    env.restore(&id, &out);
    assert_trees_equal(&tree.root, &out);

    // A non-empty target is refused without --overwrite ...
    let busy = env.path("busy");
    fs::create_dir_all(busy.join("modes")).unwrap();
    fs::write(busy.join("stray"), b"not from the snapshot").unwrap();
    fs::write(busy.join("modes/private"), b"stale content").unwrap();
    env.run(restore_args(&id, &busy)).expect_code(1).mentions("--overwrite");
    assert_eq!(
        fs::read(busy.join("modes/private")).unwrap(),
        b"stale content",
        "a refused restore must not touch the target"
    );
    // ... and accepted with it: entries of the same name are replaced, others kept.
    let mut args = restore_args(&id, &busy);
    args.push(OsStr::new("--overwrite"));
    env.run(args).success();
    let skip_stray = |p: &Path| p == Path::new("stray");
    if let Some(diff) = tree_difference_except(&tree.root, &busy, &skip_stray) {
        panic!("restore --overwrite: {diff}");
    }
    assert_eq!(fs::read(busy.join("stray")).unwrap(), b"not from the snapshot");
}

#[test]
fn incremental_backup_reads_only_changed_files() {
    let env = TestEnv::new();
    let tree = generate_tree(&env.path("src"), &TreeSpec::standard(2));

    let first = env.backup_json(&tree.root, &[]);
    let id1 = first["id"].as_str().unwrap().to_string();
    assert_eq!(first["kind"], "full");
    assert_eq!(num(&first, "bytes"), tree.bytes);
    assert_eq!(num(&first, "bytes_read"), tree.bytes);

    // Unchanged tree: nothing read, nothing stored, the repository barely grows.
    let size_before = env.data_size();
    let index_before = env.index_size();
    let second = env.backup_json(&tree.root, &[]);
    let id2 = second["id"].as_str().unwrap().to_string();
    let growth = env.data_size() - size_before;
    assert_index_bounded(index_before, env.index_size());
    let bytes = num(&second, "bytes");
    assert_eq!(bytes, tree.bytes);
    assert!(num(&second, "new_bytes") * 100 < bytes, "new_bytes {} of {bytes}", second["new_bytes"]);
    assert!(num(&second, "stored_bytes") * 100 < bytes, "stored_bytes {} of {bytes}", second["stored_bytes"]);
    assert_eq!(num(&second, "bytes_read"), 0, "{second}");
    assert!(
        growth * 100 < tree.bytes,
        "the repository grew by {growth} bytes for an unchanged tree of {} bytes",
        tree.bytes
    );
    assert_eq!(second["kind"], "incremental");
    assert_eq!(second["parent"], id1.as_str());
    let listed = env.snapshots();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["id"], id2.as_str());
    assert_eq!(listed[1]["kind"], "incremental");
    assert_eq!(listed[1]["parent"], id1.as_str());

    // The tree as it was before the change.
    let before = env.path("before");
    env.restore(&id1, &before);
    assert_trees_equal(&tree.root, &before);

    // One file changes: only it is read.
    let changed = tree.root.join(&tree.small[17]);
    modify_file(&changed, 99);
    let changed_size = fs::metadata(&changed).unwrap().len();
    let third = env.backup_json(&tree.root, &[]);
    let id3 = third["id"].as_str().unwrap().to_string();
    assert_eq!(third["kind"], "incremental");
    assert_eq!(third["parent"], id2.as_str());
    assert_eq!(
        num(&third, "bytes_read"),
        changed_size,
        "only {} should have been read: {third}",
        tree.small[17].display()
    );
    assert_eq!(num(&third, "new_bytes"), changed_size, "{third}");

    // Each snapshot restores the tree as it was then.
    for (id, expected) in [(&id1, &before), (&id2, &before), (&id3, &tree.root)] {
        let out = env.path(&format!("out-{}", &id[..8]));
        env.restore(id, &out);
        if let Some(diff) = tree_difference(expected, &out) {
            panic!("snapshot {id}: {diff}");
        }
    }
}

#[test]
fn full_backup_rereads_everything_but_stores_nothing_new() {
    let env = TestEnv::new();
    let tree = generate_tree(&env.path("src"), &TreeSpec::standard(3));
    env.backup(&tree.root, &[]);
    let size_before = env.data_size();
    let index_before = env.index_size();
    let full = env.backup_json(&tree.root, &["--full"]);
    let growth = env.data_size() - size_before;
    assert_index_bounded(index_before, env.index_size());
    let bytes = num(&full, "bytes");
    assert_eq!(bytes, tree.bytes);
    assert_eq!(num(&full, "bytes_read"), bytes, "{full}");
    assert_eq!(full["kind"], "full");
    assert!(full["parent"].is_null(), "{full}");
    assert!(num(&full, "new_bytes") * 100 < bytes, "{full}");
    assert!(num(&full, "stored_bytes") * 100 < bytes, "{full}");
    assert!(growth * 100 < bytes, "repository grew by {growth} bytes");
    let out = env.path("out");
    env.restore("latest", &out);
    assert_trees_equal(&tree.root, &out);
}

#[test]
fn damaged_pack_is_found_and_contained() {
    let env = TestEnv::new();
    let tree = generate_tree(&env.path("src"), &TreeSpec::small(4));
    let id = env.backup(&tree.root, &[]);

    // Flip a byte in the middle of the first stored frame of a pack that holds file
    // data (the snapshot's file list is in a pack of its own).
    let manifest = env.run(["cat", id.as_str()]).success().json();
    let file_chunks = |file: &serde_json::Value| -> Vec<String> {
        let chunks = file["chunks"].as_array().map(Vec::as_slice).unwrap_or_default();
        chunks.iter().map(|c| c["id"].as_str().unwrap().to_string()).collect()
    };
    let files: Vec<(String, Vec<String>)> = manifest["components"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|component| component["files"].as_array().unwrap())
        .map(|file| (file["path"].as_str().unwrap().to_string(), file_chunks(file)))
        .collect();
    let (pack, first) = env
        .packs()
        .into_iter()
        .find_map(|pack| {
            let first = pack_table(&pack).into_iter().min_by_key(|e| e.offset)?;
            let holds_data = files.iter().any(|(_, chunks)| chunks.contains(&first.id));
            holds_data.then_some((pack, first))
        })
        .expect("a pack whose first chunk is file data");
    let pack_id = pack.file_name().unwrap().to_str().unwrap().to_string();
    assert!(first.offset >= 16, "{first:?}");
    flip_byte(&pack, first.offset + u64::from(first.stored_len) / 2);

    // The files that use that chunk.
    let affected: Vec<String> =
        files.iter().filter(|(_, chunks)| chunks.contains(&first.id)).map(|(path, _)| path.clone()).collect();
    assert!(!affected.is_empty(), "no file uses chunk {}", first.id);

    // `check` without --read-data reads no chunk data: it may or may not notice.
    let _ = env.run(["check"]);
    let check = env.run(["check", "--read-data"]);
    check.failure().mentions(&pack_id);
    assert!(
        affected.iter().any(|p| check.all().contains(p.as_str())),
        "check --read-data names none of {affected:?}:\n{}",
        check.all()
    );

    let out = env.path("out");
    let restore = env.run(restore_args(&id, &out));
    restore.failure();
    assert!(
        affected.iter().any(|p| restore.all().contains(p.as_str())),
        "restore names none of {affected:?}:\n{}",
        restore.all()
    );
    // Damaged files are not left behind with wrong content ...
    for rel in &affected {
        let restored = out.join(rel);
        if let Ok(data) = fs::read(&restored) {
            assert_eq!(data, fs::read(tree.root.join(rel)).unwrap(), "{rel} was restored with wrong content");
        }
    }
    // ... and every other file is restored exactly.
    let affected_paths: Vec<PathBuf> = affected.iter().map(PathBuf::from).collect();
    let skip = |p: &Path| affected_paths.iter().any(|a| a == p);
    if let Some(diff) = tree_difference_except(&tree.root, &out, &skip) {
        panic!("restore after damage: {diff}");
    }
}

#[test]
fn a_missing_index_is_rebuilt_not_refused() {
    let env = TestEnv::new();
    let tree = generate_tree(&env.path("src"), &TreeSpec::small(5));
    env.backup(&tree.root, &[]);
    modify_file(&tree.root.join(&tree.small[3]), 7);
    env.backup(&tree.root, &[]);
    let listed = env.snapshots();

    // Readers build an index of their own and write nothing into the repository.
    fs::remove_file(env.repo.join("index.redb")).unwrap();
    env.run(["snapshots"]).success();
    env.run(["ls", "latest"]).success();
    let out = env.path("out");
    env.restore("latest", &out);
    assert_trees_equal(&tree.root, &out);
    env.run(["check", "--read-data"]).success();
    assert!(!env.repo.join("index.redb").exists(), "a reader wrote the repository's index");

    // A backup makes it from the packs and goes on: an incremental that finds its
    // parent and stores nothing new.
    let report = env.backup_json(&tree.root, &[]);
    assert!(env.repo.join("index.redb").exists());
    assert_eq!(report["stored_bytes"], 0, "{report}");

    env.run(["repair", "index"]).success();
    let after: Vec<_> = env.snapshots().into_iter().take(listed.len()).collect();
    assert_eq!(after, listed, "snapshots changed across the repair");
    env.run(["check", "--read-data"]).success();
}

#[test]
fn snapshot_resolution() {
    let env = TestEnv::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    // An empty repository has no `latest`.
    env.run(["ls", "latest"]).expect_code(1).mentions("no snapshots");

    // 17 snapshots: two of them must share their first hex digit.
    let mut ids = Vec::new();
    for i in 0..17 {
        fs::write(src.join("file"), format!("version {i}")).unwrap();
        ids.push(env.backup(&src, &[]));
    }
    let listed: Vec<String> = env.snapshots().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(listed, ids, "snapshots are listed oldest first");

    let resolved = |spec: &str| -> String {
        env.run(["cat", spec]).success().json()["id"].as_str().unwrap().to_string()
    };
    assert_eq!(resolved("latest"), ids[16]);
    for id in &ids {
        assert_eq!(&resolved(id), id);
        // The shortest unique prefix, in either case.
        let n = (1..=64).find(|&n| ids.iter().filter(|o| o.starts_with(&id[..n])).count() == 1).unwrap();
        assert_eq!(&resolved(&id[..n]), id);
        assert_eq!(&resolved(&id[..n].to_ascii_uppercase()), id);
    }

    // CAIRN_REPO gives the repository too.
    let out = assert_cmd::Command::cargo_bin("cairn")
        .unwrap()
        .env("CAIRN_REPO", &env.repo)
        .args(["cat", "latest"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&ids[16]));

    // Ambiguous prefix.
    let shared = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|p| ids.iter().filter(|id| id.starts_with(p.as_str())).count() >= 2)
        .unwrap();
    let run = env.run(["ls", shared.as_str()]);
    run.expect_code(1).mentions(&shared).mentions("matches");
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    // Unknown prefix, and something that is not an id at all.
    let unknown = (0..256)
        .map(|d| format!("{d:02x}"))
        .find(|p| !ids.iter().any(|id| id.starts_with(p.as_str())))
        .unwrap();
    env.run(["ls", unknown.as_str()]).expect_code(1).mentions(&unknown).mentions("no snapshot");
    env.run(["cat", "zz"]).expect_code(1).mentions("not a snapshot id");
    let full_unknown = "0".repeat(63) + if ids.iter().any(|i| i == &"0".repeat(64)) { "1" } else { "0" };
    env.run(["cat", full_unknown.as_str()]).expect_code(1).mentions("no snapshot");
}

#[test]
fn json_outputs() {
    let env = TestEnv::without_repo();
    let init = run_raw([OsStr::new("--json"), OsStr::new("-r"), env.repo.as_os_str(), OsStr::new("init")]);
    let init = init.success().json();
    assert!(is_snapshot_id(init["id"].as_str().unwrap()), "{init}");
    assert!(init["path"].is_string(), "{init}");

    let tree = generate_tree(&env.path("src"), &TreeSpec::small(6));
    let backup = env.backup_json(&tree.root, &["--set", "daily", "--tag", "x", "--tag", "y"]);
    for field in [
        "id",
        "complete",
        "files",
        "bytes",
        "bytes_read",
        "new_bytes",
        "stored_bytes",
        "new_chunks",
        "errors",
    ] {
        assert!(backup.get(field).is_some(), "backup --json lacks {field}: {backup}");
    }
    let id = backup["id"].as_str().unwrap().to_string();
    assert!(is_snapshot_id(&id));
    assert_eq!(backup["complete"], true);
    assert_eq!(backup["errors"], Value::Array(vec![]));
    assert_eq!(backup["set"], "daily");
    let all_paths = tree_paths(&tree.root);
    assert_eq!(num(&backup, "files"), all_paths.len() as u64);
    assert_eq!(num(&backup, "bytes"), tree.bytes);
    assert!(num(&backup, "new_chunks") > 0);
    assert!(num(&backup, "stored_bytes") > 0);

    let list = env.snapshots();
    assert_eq!(list.len(), 1);
    let s = &list[0];
    for field in ["id", "time", "set", "tags", "parent", "kind", "components"] {
        assert!(s.get(field).is_some(), "snapshots --json lacks {field}: {s}");
    }
    assert_eq!(s["id"], id.as_str());
    assert!(s["time"].is_string());
    assert_eq!(s["set"], "daily");
    assert_eq!(s["tags"], serde_json::json!(["x", "y"]));
    assert!(s["parent"].is_null());
    assert_eq!(s["kind"], "full");
    let components = s["components"].as_array().unwrap();
    assert_eq!(components.len(), 1);
    assert_eq!(components[0]["name"], "src");
    assert_eq!(components[0]["store_type"], "dir");
    assert!(components[0].get("last_log_number").is_some(), "{s}");

    // `cat`: the whole manifest, every path in it.
    let manifest = env.run(["cat", "latest"]).success().json();
    assert_eq!(manifest["id"], id.as_str());
    let listed: BTreeSet<String> = manifest["components"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = all_paths.iter().map(|p| display_path(p)).collect();
    assert_eq!(listed, expected);

    // `ls --json`: one object per entry.
    let ls = env.run(["--json", "ls", &id[..10]]).success().json();
    assert_eq!(ls.as_array().unwrap().len(), all_paths.len());
    // `ls` (text) shows every path too.
    let ls_text = env.run(["ls", "latest"]).success().stdout.clone();
    for p in &expected {
        assert!(ls_text.contains(p.as_str()), "ls does not show {p}");
    }

    let check = env.run(["--json", "check", "--read-data"]).success().json();
    assert_eq!(check["problems"], Value::Array(vec![]), "{check}");
    assert!(num(&check, "bytes_verified") > 0);

    let out = env.path("out");
    let mut args: Vec<&OsStr> = vec![OsStr::new("--json")];
    args.extend(restore_args("latest", &out));
    let restore = env.run(args).success().json();
    assert_eq!(restore["id"], id.as_str());
    assert_eq!(num(&restore, "bytes"), tree.bytes);

    let repair = env.run(["--json", "repair", "index"]).success().json();
    assert_eq!(num(&repair, "snapshots"), 1, "{repair}");
}

#[test]
fn error_messages() {
    let env = TestEnv::new();
    // Backup of a missing path: named, exit 1, no snapshot.
    let missing = env.path("no-such-dir");
    let run = env.run([OsStr::new("backup"), missing.as_os_str()]);
    run.expect_code(1).mentions("no-such-dir");
    assert_eq!(env.snapshot_files(), 0);
    assert!(env.snapshots().is_empty());

    // A directory that is not a repository.
    let not_repo = env.path("plain");
    fs::create_dir(&not_repo).unwrap();
    fs::write(not_repo.join("file"), b"x").unwrap();
    for args in [vec!["snapshots"], vec!["check"], vec!["ls", "latest"]] {
        let mut all = vec![OsStr::new("-r"), not_repo.as_os_str()];
        all.extend(args.iter().map(OsStr::new));
        run_raw(all).expect_code(1).mentions("not a cairn repository");
    }
    assert!(!not_repo.join("lock").exists(), "opening a non-repository must not create files in it");
    // A path that does not exist at all.
    run_raw([OsStr::new("-r"), missing.as_os_str(), OsStr::new("snapshots")])
        .expect_code(1)
        .mentions("not a cairn repository");
    assert!(!missing.exists());

    // No repository at all.
    run_raw(["snapshots"]).expect_code(1).mentions("CAIRN_REPO");

    // init refuses a non-empty directory, and an existing repository.
    run_raw([OsStr::new("-r"), not_repo.as_os_str(), OsStr::new("init")])
        .expect_code(1)
        .mentions("not empty");
    assert!(!not_repo.join("config").exists());
    env.run(["init"]).expect_code(1).mentions("not empty");

    // Restore onto a file.
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a"), b"a").unwrap();
    let id = env.backup(&src, &[]);
    env.run(restore_args(&id, &not_repo.join("file"))).expect_code(1).mentions("not a directory");
}

#[test]
fn unreadable_file_gives_incomplete_snapshot() {
    let env = TestEnv::without_repo();
    let as_root = running_as_root();
    let setpriv = Path::new("/usr/bin/setpriv");
    if as_root {
        assert!(
            setpriv.exists() || which("setpriv").is_some(),
            "running as root, the test needs `setpriv` (util-linux) to run cairn as nobody"
        );
    }
    // Runs cairn, as nobody when we are root (root reads any file).
    let cairn = |args: &[&OsStr]| -> Run {
        let mut cmd = cairn_unprivileged();
        cmd.env_remove("CAIRN_REPO")
            .env("CAIRN_CACHE_DIR", test_cache_dir())
            .arg("-r")
            .arg(&env.repo)
            .args(args);
        run_command(&mut cmd, format!("cairn {args:?}"))
    };

    let src = env.path("src");
    for (rel, data) in [("a.txt", &b"alpha"[..]), ("sub/b.txt", b"bravo"), ("z.txt", b"zulu")] {
        let path = src.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap();
    }
    let secret = src.join("sub/secret");
    fs::write(&secret, b"top secret").unwrap();
    chmod_world(env.dir.path());
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    assert!(fs::File::open(&secret).is_ok() == as_root);

    cairn(&[OsStr::new("init")]).success();
    let backup = cairn(&[OsStr::new("backup"), src.as_os_str()]);
    backup.expect_code(3).mentions("sub/secret");
    let id = backup.snapshot_id();
    assert!(is_snapshot_id(&id), "{}", backup.stdout);

    let list = cairn(&[OsStr::new("--json"), OsStr::new("snapshots")]);
    let list = list.success().json();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["complete"], false);

    let json_backup = cairn(&[OsStr::new("--json"), OsStr::new("backup"), src.as_os_str()]);
    json_backup.expect_code(3);
    let v = json_backup.json();
    assert_eq!(v["complete"], false);
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v}");
    assert!(errors[0].to_string().contains("secret"), "{v}");

    let out = env.path("out");
    let restore =
        cairn(&[OsStr::new("restore"), OsStr::new(id.as_str()), OsStr::new("--target"), out.as_os_str()]);
    restore.success();
    assert_eq!(fs::read(out.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(fs::read(out.join("sub/b.txt")).unwrap(), b"bravo");
    assert_eq!(fs::read(out.join("z.txt")).unwrap(), b"zulu");
    assert!(!out.join("sub/secret").exists(), "an unread file was restored");
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .as_bytes()
        .split(|&b| b == b':')
        .map(|dir| Path::new(OsStr::from_bytes(dir)).join(program))
        .find(|p| p.is_file())
}

#[test]
fn lock_held_by_another_process() {
    let env = TestEnv::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();

    let pid = std::process::id();
    let mut lock = fs::OpenOptions::new().read(true).write(true).open(env.repo.join("lock")).unwrap();
    lock.try_lock().expect("take the lock");
    lock.set_len(0).unwrap();
    write!(lock, "pid {pid} on test (cairn backup, since unix time 0)").unwrap();
    lock.flush().unwrap();

    let holder = format!("pid {pid}");
    env.run([OsStr::new("backup"), src.as_os_str()]).expect_code(11).mentions(&holder);
    env.run(["snapshots"]).expect_code(11).mentions(&holder);
    env.run(["repair", "index"]).expect_code(11).mentions(&holder);
    assert_eq!(env.snapshot_files(), 0);

    // With --retry-lock the command waits for the lock to be released.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        lock.unlock().unwrap();
        drop(lock);
    });
    let started = Instant::now();
    let run = env.run([OsStr::new("--retry-lock"), OsStr::new("5"), OsStr::new("backup"), src.as_os_str()]);
    let waited = started.elapsed();
    releaser.join().unwrap();
    run.success();
    assert!(is_snapshot_id(&run.snapshot_id()));
    assert!(waited >= Duration::from_millis(900), "did not wait: {waited:?}");
    assert!(waited < Duration::from_secs(5), "waited too long: {waited:?}");
    assert_eq!(env.snapshots().len(), 1);
}

#[test]
fn corrupt_index_stops_writers_not_readers() {
    let env = TestEnv::new();
    let tree = generate_tree(&env.path("src"), &TreeSpec::small(8));
    let id = env.backup(&tree.root, &[]);
    fs::write(env.repo.join("index.redb"), b"not a redb database").unwrap();
    // Readers never open the writers' index.
    env.run(["snapshots"]).success();
    env.run(["check"]).success();
    // A writer will not guess what damaged its index: it says so and how to rebuild it.
    let backup = env.run([OsStr::new("backup"), tree.root.as_os_str()]);
    backup.expect_code(1).mentions("index.redb").mentions("cairn repair index");
    env.run(["repair", "index"]).success();
    env.backup(&tree.root, &[]);
    let out = env.path("out");
    env.restore(&id, &out);
    assert_trees_equal(&tree.root, &out);
    env.run(["check", "--read-data"]).success();
}

#[test]
fn damaged_manifest_does_not_block_other_snapshots() {
    let env = TestEnv::new();
    let tree = generate_tree(&env.path("src"), &TreeSpec::small(9));
    let good = env.backup(&tree.root, &[]);
    modify_file(&tree.root.join(&tree.small[0]), 1);
    let bad = env.backup(&tree.root, &[]);
    // Damage the second manifest and rebuild the index, as an operator would.
    let manifest = env.repo.join("snapshots").join(&bad);
    let len = fs::metadata(&manifest).unwrap().len();
    fs::OpenOptions::new().write(true).open(&manifest).unwrap().set_len(len / 2).unwrap();
    env.run(["repair", "index"]).success().mentions(&bad);
    env.run(["check"]).expect_code(1).mentions(&bad);

    // The intact snapshot is still listed and restorable, and new backups work.
    env.run(["snapshots"]).mentions(&good[..12]);
    let out = env.path("out");
    env.restore(&good, &out);
    let other = env.path("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("f"), b"data").unwrap();
    env.backup(&other, &[]);
    env.backup(&tree.root, &[]);
}

#[test]
fn tree_harness_is_deterministic_and_strict() {
    let env = TestEnv::without_repo();
    let a = generate_tree(&env.path("a"), &TreeSpec::small(10));
    let b = env.path("b");
    generate_tree(&b, &TreeSpec::small(10));
    assert_trees_equal(&a.root, &b);

    // The tree holds every kind of entry the round-trip tests rely on.
    let paths = tree_paths(&a.root);
    let has = |p: &[u8]| paths.iter().any(|x| x == p);
    assert!(has(b"names/caf\xe9.txt") && has(b"names/dir-\x80\x81/inner"));
    assert!(paths.iter().any(|p| p.ends_with(b"l11/bottom.txt")));
    for p in ["links/absolute", "links/dangling", "links/relative", "emptydirs/b/c"] {
        assert!(has(p.as_bytes()), "{p}");
    }
    assert_eq!(fs::read_link(a.root.join("links/dangling")).unwrap(), Path::new("no/such/file"));
    let mode = |p: &str| fs::metadata(a.root.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("modes/readonly"), 0o444);
    assert_eq!(mode("emptydirs/b"), 0o1777);

    // Each kind of difference is found and named by path.
    let differs = |change: &dyn Fn(&Path), what: &str| {
        let c = env.path("c");
        let _ = fs::remove_dir_all(&c);
        generate_tree(&c, &TreeSpec::small(10));
        change(&c);
        let diff = tree_difference(&a.root, &c).unwrap_or_else(|| panic!("{what} not noticed"));
        assert!(diff.contains(what), "{diff} does not name {what}");
    };
    let touch = |p: &Path, secs: i64, nanos: u32| {
        let t = filetime::FileTime::from_unix_time(secs, nanos);
        filetime::set_symlink_file_times(p, t, t).unwrap();
    };
    differs(
        &|c| {
            let p = c.join("links/relative");
            let m = fs::symlink_metadata(&p).unwrap();
            touch(&p, filetime::FileTime::from_last_modification_time(&m).unix_seconds(), 1);
        },
        "links/relative",
    );
    differs(
        &|c| {
            let p = c.join("modes/exec");
            fs::set_permissions(&p, fs::Permissions::from_mode(0o754)).unwrap();
        },
        "modes/exec",
    );
    differs(
        &|c| {
            let p = c.join("large/zeros.bin");
            let m = fs::metadata(&p).unwrap();
            let mut data = fs::read(&p).unwrap();
            data[0] = 1;
            fs::write(&p, data).unwrap();
            let t = filetime::FileTime::from_last_modification_time(&m);
            filetime::set_file_times(&p, t, t).unwrap();
        },
        "large/zeros.bin",
    );
    differs(
        &|c| {
            let p = c.join("links/dangling");
            fs::remove_file(&p).unwrap();
            std::os::unix::fs::symlink("no/such/other", &p).unwrap();
        },
        "links/dangling",
    );
    differs(&|c| fs::remove_dir(c.join("emptydirs/b/c")).unwrap(), "emptydirs/b");
    differs(
        &|c| fs::write(c.join("names").join(OsStr::from_bytes(b"\xff\xfe")), b"x").unwrap(),
        "names/\\xff\\xfe",
    );
}

/// Regression: a chunk in a pack that has vanished must be traced to the files that
/// use it (check once indexed lost chunks against a problem that did not exist).
#[test]
fn missing_pack_is_reported_with_the_files_it_held() {
    let env = TestEnv::new();
    let tree = generate_tree(&env.path("src"), &TreeSpec::small(5));
    env.backup(&tree.root, &[]);
    let packs = env.packs();
    let pack = &packs[0];
    let pack_id = pack.file_name().unwrap().to_str().unwrap().to_string();
    fs::remove_file(pack).unwrap();
    let check = env.run(["check"]);
    check.failure().mentions(&pack_id).mentions("missing").mentions("affects snapshot");
    let json = env.run(["--json", "check"]).failure().json();
    let problem = &json["problems"][0];
    assert!(problem["affected"].as_array().is_some_and(|a| !a.is_empty()), "{json}");
}

#[test]
fn hard_links_are_restored_as_links() {
    use std::os::unix::fs::MetadataExt;
    let env = TestEnv::new();
    let src = env.path("links");
    fs::create_dir_all(src.join("a/b")).unwrap();
    fs::write(src.join("one"), vec![7u8; 300_000]).unwrap();
    fs::hard_link(src.join("one"), src.join("a/two")).unwrap();
    fs::hard_link(src.join("one"), src.join("a/b/three")).unwrap();
    fs::write(src.join("single"), b"alone").unwrap();
    let report = env.backup_json(&src, &[]);
    // One inode is read once, however many names it has.
    assert_eq!(report["bytes"], 3 * 300_000 + 5);
    assert_eq!(report["bytes_read"], 300_000 + 5);
    let id = report["id"].as_str().unwrap().to_string();
    let out = env.path("out");
    env.restore(&id, &out);
    assert_trees_equal(&src, &out);
    let inode = |p: &str| fs::metadata(out.join(p)).unwrap().ino();
    assert_eq!(inode("one"), inode("a/two"));
    assert_eq!(inode("one"), inode("a/b/three"));
    assert_eq!(fs::metadata(out.join("one")).unwrap().nlink(), 3);
    assert_eq!(fs::metadata(out.join("single")).unwrap().nlink(), 1);
}

/// Regression: with its packs gone, the next backup must not reuse chunk lists that
/// point at lost data; it reads the files again, which also makes the old snapshot whole.
#[test]
fn lost_packs_are_stored_again_by_the_next_backup() {
    let env = TestEnv::new();
    let tree = generate_tree(&env.path("src"), &TreeSpec::small(6));
    let first = env.backup(&tree.root, &[]);
    for pack in env.packs() {
        fs::remove_file(pack).unwrap();
    }
    env.run(["check"]).failure();
    let report = env.backup_json(&tree.root, &[]);
    assert_eq!(report["kind"], "incremental");
    assert_eq!(report["bytes_read"], report["bytes"], "{report}");
    env.run(["check", "--read-data"]).success();
    let out = env.path("out");
    env.restore(&first, &out);
    assert_trees_equal(&tree.root, &out);
}

/// Regression: `persist` once fsynced the parent of `repo`, which is "" for `-r repo`.
#[test]
fn relative_repository_paths_work() {
    let env = TestEnv::without_repo();
    let dir = env.path("cwd");
    fs::create_dir_all(dir.join("data")).unwrap();
    fs::write(dir.join("data/f"), b"x").unwrap();
    let cairn = |args: &[&str]| {
        let out = std::process::Command::new(cairn_bin()).current_dir(&dir).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    cairn(&["-r", "repo", "init"]);
    cairn(&["-r", "repo", "backup", "data"]);
    cairn(&["-r", "repo", "restore", "latest", "--target", "out"]);
    assert_eq!(fs::read(dir.join("out/f")).unwrap(), b"x");
}

#[test]
fn restore_at_a_time_picks_the_newest_snapshot_before_it() {
    let env = TestEnv::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let mut times = Vec::new();
    for round in 0..3 {
        fs::write(src.join("f"), format!("version {round}")).unwrap();
        env.backup(&src, &[]);
        times.push(env.snapshots().last().unwrap()["time"].as_str().unwrap().to_string());
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let out = env.path("out");
    env.run(["restore", "--at", &times[1], "--target", out.to_str().unwrap()]).success();
    assert_eq!(fs::read_to_string(out.join("f")).unwrap(), "version 1");
    env.run(["restore", "--at", "2000-01-01T00:00:00Z", "--target", env.path("none").to_str().unwrap()])
        .failure()
        .mentions("no snapshot at or before 2000-01-01T00:00:00Z");
    env.run(["restore", "--at", "yesterday", "--target", env.path("bad").to_str().unwrap()])
        .failure()
        .mentions("RFC 3339");
    let other = env.path("other");
    fs::create_dir_all(&other).unwrap();
    env.backup(&other, &["--set", "other"]);
    env.run(["restore", "--at", &times[2], "--target", env.path("x").to_str().unwrap()])
        .failure()
        .mentions("--set");
    let set = src.to_str().unwrap();
    let out = env.path("out2");
    env.run(["restore", "--at", &times[2], "--set", set, "--target", out.to_str().unwrap()]).success();
    assert_eq!(fs::read_to_string(out.join("f")).unwrap(), "version 2");
}

#[test]
fn hooks_run_around_the_copy_and_the_window_is_recorded() {
    let env = TestEnv::new();
    let tree = env.path("src");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("a"), "a").unwrap();
    let log = env.path("hooks.log");
    let (pre, post) =
        (format!("echo pre >> {0}; echo noise", log.display()), format!("echo post >> {}", log.display()));
    let report = env.backup_json(&tree, &["--pre-exec", &pre, "--post-exec", &post]);
    assert_eq!(fs::read_to_string(&log).unwrap(), "pre\npost\n");
    let hooks = &report["hooks"];
    assert_eq!((hooks["pre"]["exit_code"].as_i64(), hooks["post"]["exit_code"].as_i64()), (Some(0), Some(0)));
    assert!(seconds(&hooks["pre"]["finished"]) <= seconds(&hooks["window_start"]));
    assert!(seconds(&hooks["window_start"]) <= seconds(&hooks["window_end"]));
    assert!(seconds(&hooks["window_end"]) <= seconds(&hooks["post"]["started"]));
    let manifest = env.run(["cat", report["id"].as_str().unwrap()]).success().json();
    assert_eq!(manifest["format_version"], 3);

    // A failing pre command copies nothing, and the post command still runs.
    fs::remove_file(&log).unwrap();
    let before = env.snapshot_files();
    env.run(["backup", "--pre-exec", "exit 3", "--post-exec", &post, tree.to_str().unwrap()])
        .failure()
        .mentions("pre-exec hook failed")
        .mentions("status 3");
    assert_eq!(fs::read_to_string(&log).unwrap(), "post\n");
    assert_eq!(env.snapshot_files(), before);

    // A failing post command: the copy was complete, so the snapshot stays, but the
    // exit status says something needs attention.
    env.run(["backup", "--post-exec", "exit 4", tree.to_str().unwrap()])
        .expect_code(1)
        .mentions("post-exec hook failed")
        .mentions("was saved");
    assert_eq!(env.snapshot_files(), before + 1);
}

#[test]
fn a_differential_is_made_against_the_newest_full_snapshot() {
    let env = TestEnv::new();
    let tree = env.path("src");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("a"), "one").unwrap();
    let full = env.backup_json(&tree, &[]);
    fs::write(tree.join("b"), "two").unwrap();
    let incremental = env.backup_json(&tree, &[]);
    assert_eq!(incremental["parent"], full["id"]);
    fs::write(tree.join("c"), "three").unwrap();
    let differential = env.backup_json(&tree, &["--differential"]);
    assert_eq!(differential["kind"], "differential");
    assert_eq!(differential["parent"], full["id"]);
    // Read: what changed since the full, not since the incremental.
    assert_eq!(num(&differential, "bytes_read"), 3 + 5);
    env.run(["backup", "--logs-only", tree.to_str().unwrap()])
        .failure()
        .mentions("applies to database stores");
    let out = env.path("out");
    env.restore(differential["id"].as_str().unwrap(), &out);
    assert_trees_equal(&tree, &out);
}

#[test]
fn stats_and_diff_account_for_every_byte() {
    let env = TestEnv::new();
    let tree = env.path("src");
    fs::create_dir_all(tree.join("d")).unwrap();
    let mut rng = Rng::new(3);
    fs::write(tree.join("shared"), rng.random_bytes(300_000)).unwrap();
    fs::write(tree.join("d/gone"), rng.random_bytes(200_000)).unwrap();
    fs::write(tree.join("changed"), "one").unwrap();
    let first = env.backup_json(&tree, &[]);
    fs::remove_file(tree.join("d/gone")).unwrap();
    fs::write(tree.join("new"), rng.random_bytes(100_000)).unwrap();
    fs::write(tree.join("changed"), "two!").unwrap();
    let second = env.backup_json(&tree, &[]);

    let stats = env.run(["--json", "stats"]).success().json();
    assert_eq!(num(&stats, "snapshots"), 2);
    assert_eq!(num(&stats, "logical_bytes"), num(&first, "bytes") + num(&second, "bytes"));
    // Random data does not compress: unique bytes are the three large files, two
    // versions of the small one and the two snapshots' file lists (a few hundred bytes
    // each); what only each snapshot holds is what it alone has, its file list included.
    let unique = num(&stats, "unique_bytes");
    assert!((600_007..602_000).contains(&unique), "{unique}");
    let per = stats["per_snapshot"].as_array().unwrap();
    let only = |i: usize| num(&per[i], "exclusive_stored_bytes");
    assert!((200_000..201_000).contains(&only(0)), "{}", only(0));
    assert!((100_000..101_000).contains(&only(1)), "{}", only(1));
    assert!(stats["deduplication_ratio"].as_f64().unwrap() > 1.4);

    let (a, b) = (first["id"].as_str().unwrap(), second["id"].as_str().unwrap());
    let diff = env.run(["--json", "diff", a, b]).success().json();
    let changes: Vec<(String, String)> = diff["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["path"].as_str().unwrap().to_string(), c["change"].as_str().unwrap().to_string()))
        .collect();
    let expected = [("changed", "modified"), ("d", "metadata"), ("d/gone", "removed"), ("new", "added")];
    assert_eq!(changes, expected.map(|(p, c)| (p.to_string(), c.to_string())));
    assert_eq!(num(&diff["summary"], "removed_bytes"), 200_000);
    assert_eq!(num(&diff["summary"], "added_bytes"), 100_000);
    env.run(["diff", a, b]).success().mentions("- src/d/gone").mentions("1 added");
}

/// Regression (review of the delta change): damage in a chunk that deltas are decoded
/// against is one problem, at the pack that holds it, listing the files of every
/// snapshot that needs it, directly or through a delta; the delta's sound pack is not
/// blamed.
#[test]
fn a_damaged_reference_is_reported_where_it_is_stored_with_every_file_that_needs_it() {
    let env = TestEnv::new();
    let home = env.path("home");
    fs::create_dir_all(&home).unwrap();
    let original = Rng::new(3).random_bytes(2 << 16);
    fs::write(home.join("data.db"), &original).unwrap();
    fs::write(home.join("log.0000000001"), "one\n").unwrap();
    let first = env.backup(&home, &["--type", "bdb"]);
    let changed = [&original[..10], b"changed!", &original[18..]].concat();
    fs::write(home.join("data.db"), &changed).unwrap();
    fs::write(home.join("log.0000000002"), "two\n").unwrap();
    let second = env.backup(&home, &["--type", "bdb"]);

    let tables: Vec<(PathBuf, Vec<PackEntry>)> =
        env.packs().into_iter().map(|p| (p.clone(), pack_table(&p))).collect();
    // A data piece's delta (64 KiB), not one of a file list's chunks.
    let delta = tables
        .iter()
        .flat_map(|(_, t)| t)
        .find(|e| e.codec == 2 && e.raw_len == 1 << 16)
        .expect("a delta")
        .clone();
    let reference = delta.reference.unwrap();
    let (reference_pack, entry) = tables
        .iter()
        .find_map(|(p, t)| t.iter().find(|e| e.id == reference).map(|e| (p.clone(), e.clone())))
        .unwrap();
    flip_byte(&reference_pack, entry.offset + entry.stored_len as u64 / 2);

    let json = env.run(["--json", "check", "--read-data"]).failure().json();
    let problems = json["problems"].as_array().unwrap();
    let reference_pack_id = reference_pack.file_name().unwrap().to_str().unwrap();
    assert_eq!(problems.len(), 1, "{json}");
    assert_eq!(problems[0]["pack"], reference_pack_id, "{json}");
    let mut affected: Vec<(String, String)> = problems[0]["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["snapshot"].as_str().unwrap().to_string(), a["path"].as_str().unwrap().to_string()))
        .collect();
    affected.sort();
    let mut expected = vec![(first, "data.db".to_string()), (second, "data.db".to_string())];
    expected.sort();
    assert_eq!(affected, expected);
}
