//! Reading needs no write access: every reading command works on a repository the user
//! cannot write (another user's files, a read-only mount) and leaves it exactly as it
//! was; readers run beside a backup.

mod support;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// Every entry below `root` with its size and modification time: what "nothing was
/// written" compares.
fn listing(root: &Path) -> BTreeMap<PathBuf, (u64, i64, i64)> {
    let mut out = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                pending.push(path.clone());
            }
            out.insert(
                path.strip_prefix(root).unwrap().to_path_buf(),
                (meta.len(), meta.mtime(), meta.mtime_nsec()),
            );
        }
    }
    out
}

/// Runs cairn as `nobody` when the tests run as root (root may write anything), else as
/// this user; with `cache` as its cache directory, or none.
fn cairn_as_user(repo: &Path, cache: Option<&Path>, args: &[&OsStr]) -> Run {
    let mut cmd = cairn_unprivileged();
    cmd.env_remove("CAIRN_REPO").env_remove("CAIRN_CACHE_DIR").env("HOME", "/nonexistent");
    cmd.env_remove("XDG_CACHE_HOME");
    match cache {
        Some(dir) => cmd.arg("--cache-dir").arg(dir),
        None => cmd.arg("--no-cache"),
    };
    cmd.arg("-r").arg(repo).args(args);
    run_command(&mut cmd, format!("cairn {args:?}"))
}

const NOTE: &str = "a file that `dump` prints\n";

fn small_tree(root: &Path, seed: u64) -> Tree {
    let spec = TreeSpec {
        seed,
        small_files: 40,
        large_files: vec![(3 << 20, false), (1 << 20, true)],
        deep_levels: 4,
    };
    let tree = generate_tree(root, &spec);
    fs::write(root.join("note.txt"), NOTE).unwrap();
    tree
}

/// A repository of two snapshots whose files nobody but root may write; with
/// `bare`, without its index and lock files (which a reader must not need, nor create).
fn readonly_repository(env: &TestEnv, bare: bool) -> (Tree, PathBuf, String, String) {
    let tree = small_tree(&env.path("src/tree"), 11);
    let first = env.backup(&tree.root, &[]);
    let second_root = env.path("src2/tree");
    fs::create_dir(env.path("src2")).unwrap();
    copy_tree(&tree.root, &second_root);
    modify_file(&second_root.join(&tree.large[0]), 3);
    let second = env.backup(&second_root, &[]);
    if bare {
        for file in ["index.redb", "lock", "append-lock"] {
            fs::remove_file(env.repo.join(file)).unwrap();
        }
    }
    // Readable by all, writable by none; the trees backed up stay as they were.
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    assert!(Command::new("chmod").args(["-R", "a+rX,a-w"]).arg(&env.repo).status().unwrap().success());
    (tree, second_root, first, second)
}

/// Every reading command, as a user who cannot write the repository; the repository is
/// left exactly as it was.
fn every_reader_works(
    repo: &Path,
    work: &Path,
    cache: Option<&Path>,
    tree: &Tree,
    first: &str,
    second: &str,
) {
    let before = listing(repo);
    let run = |args: &[&str]| {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        cairn_as_user(repo, cache, &args)
    };
    let listed = run(&["--json", "snapshots"]).success().json();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    run(&["ls", first]).success().mentions(&tree.small[0].to_string_lossy());
    run(&["cat", second]).success();
    run(&["diff", first, second]).success();
    run(&["stats"]).success();
    let check = run(&["check", "--read-data"]);
    check.success();
    let dumped = run(&["dump", first, "tree/note.txt"]);
    assert_eq!(dumped.success().stdout, NOTE);
    let target = work.join(format!("restored-{}", cache.is_some()));
    let target_arg = target.to_string_lossy().into_owned();
    run(&["restore", first, "--target", &target_arg]).success();
    assert_trees_equal(&tree.root, &target);
    assert_eq!(listing(repo), before, "a reader changed the repository");
}

/// A directory the unprivileged user may write into: restore targets and caches.
fn world_writable_dir(env: &TestEnv, name: &str) -> PathBuf {
    let dir = env.path(name);
    fs::create_dir(&dir).unwrap();
    chmod_world(&dir);
    dir
}

#[test]
fn reading_needs_no_write_access() {
    let env = TestEnv::new();
    let (tree, _, first, second) = readonly_repository(&env, true);
    let work = world_writable_dir(&env, "work");
    // With no cache the index is built in memory each time; with one it is kept there
    // and used again.
    every_reader_works(&env.repo, &work, None, &tree, &first, &second);
    let cache = work.join("cache");
    every_reader_works(&env.repo, &work, Some(&cache), &tree, &first, &second);
    assert!(fs::read_dir(&cache).unwrap().next().is_some(), "the cache directory holds the index");
    cairn_as_user(&env.repo, Some(&cache), &[OsStr::new("snapshots")]).success();

    // Writing still needs write access, and says so naming the repository.
    let backup = cairn_as_user(&env.repo, None, &[OsStr::new("backup"), tree.root.as_os_str()]);
    backup.expect_code(1).mentions(&env.repo.to_string_lossy());
}

#[test]
fn a_read_only_mount_is_read_as_it_is() {
    let env = TestEnv::new();
    // With its lock and index files: a reader takes the lock read-only and looks into
    // the writers' index read-only.
    let (tree, _, first, second) = readonly_repository(&env, false);
    let work = world_writable_dir(&env, "work");
    if !running_as_root() {
        // Without root there is no mount; the files cannot be written all the same.
        every_reader_works(&env.repo, &work, None, &tree, &first, &second);
        return;
    }
    let mount = env.path("mounted");
    fs::create_dir(&mount).unwrap();
    let status = |cmd: &mut Command| assert!(cmd.status().unwrap().success(), "{cmd:?}");
    status(Command::new("mount").arg("--bind").arg(&env.repo).arg(&mount));
    let unmount = Unmount(mount.clone());
    status(Command::new("mount").args(["-o", "remount,ro,bind"]).arg(&mount));
    assert!(fs::File::create(mount.join("probe")).is_err(), "the mount is writable");
    // As root too: root may write any file, but not on a read-only mount.
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = vec!["-r", mount.to_str().unwrap()];
        all.extend(args);
        run_raw(all)
    };
    run(&["snapshots"]).success();
    run(&["check", "--read-data"]).success();
    let target = work.join("as-root");
    run(&["restore", &second, "--target", target.to_str().unwrap()]).success();
    every_reader_works(&mount, &work, Some(&work.join("cache")), &tree, &first, &second);
    drop(unmount);
}

struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn readers_run_beside_a_backup() {
    let env = TestEnv::new();
    let tree = small_tree(&env.path("src/tree"), 13);
    let first = env.backup(&tree.root, &[]);
    let flag = env.path("backup-started");
    // The pre-exec hook runs while the backup holds its lock and the index.
    let hook = format!("touch {} && sleep 4", flag.display());
    let mut backup = env
        .command([OsString::from("backup"), "--pre-exec".into(), hook.into(), tree.root.clone().into()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !flag.exists() {
        assert!(started.elapsed() < Duration::from_secs(30), "the backup never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let listed = env.snapshots();
    assert_eq!(listed.len(), 1, "only committed snapshots are listed: {listed:?}");
    let target = env.path("restored");
    env.restore(&first, &target);
    assert_trees_equal(&tree.root, &target);
    env.run(["check"]).success();
    // Writers are still excluded, naming the backup.
    env.run(["backup", tree.root.to_str().unwrap()]).expect_code(11).mentions("cairn backup");
    env.run(["prune"]).expect_code(11).mentions("cairn backup");
    assert!(backup.wait().unwrap().success());
    assert_eq!(env.snapshots().len(), 2);
}
