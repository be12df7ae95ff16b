//! Repositories in a bucket of a real 3-node Garage cluster on loopback: the command
//! set, backups side by side with a prune waiting for them, a node killed during a
//! backup, the whole cluster stopped during one, and locks of killed processes.

mod support;

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::garage::Garage;
use support::*;

/// A repository under `prefix` of the cluster's bucket, reached through node `node`,
/// with an index cache of its own.
struct Bucket<'g> {
    garage: &'g Garage,
    url: String,
    cache: tempfile::TempDir,
}

impl<'g> Bucket<'g> {
    fn new(garage: &'g Garage, node: usize, prefix: &str) -> Bucket<'g> {
        let cache = tempfile::Builder::new().prefix("cairn-s3-cache-").tempdir().unwrap();
        Bucket { garage, url: garage.repo_url(node, prefix), cache }
    }

    fn command<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&self, args: I) -> Command {
        let mut cmd = Command::new(cairn_bin());
        cmd.env_remove("CAIRN_REPO").env("CAIRN_CACHE_DIR", self.cache.path());
        cmd.envs(self.garage.env());
        cmd.arg("-r").arg(&self.url).args(args);
        cmd
    }

    #[track_caller]
    fn run<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&self, args: I) -> Run {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let what = format!(
            "cairn -r {} {}",
            self.url,
            args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
        );
        run_command(&mut self.command(&args), what)
    }

    #[track_caller]
    fn backup(&self, path: &Path, extra: &[&str]) -> String {
        let mut args: Vec<&OsStr> = vec![OsStr::new("backup")];
        args.extend(extra.iter().map(OsStr::new));
        args.push(path.as_os_str());
        let id = self.run(args).success().snapshot_id();
        assert!(is_snapshot_id(&id));
        id
    }

    /// cairn started with `args`, its output captured.
    fn spawn<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&self, args: I) -> Child {
        self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    fn spawn_backup(&self, path: &Path) -> Child {
        self.spawn([OsStr::new("backup"), path.as_os_str()])
    }

    #[track_caller]
    fn restore_matches(&self, snapshot: &str, original: &Path, target: &Path) {
        self.run([OsStr::new("restore"), OsStr::new(snapshot), OsStr::new("--target"), target.as_os_str()])
            .success();
        assert_trees_equal(original, target);
    }

    fn snapshot_ids(&self) -> Vec<String> {
        let list = self.run(["--json", "snapshots"]).success().json();
        list.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
    }
}

#[test]
fn every_command_works_on_a_bucket() {
    let garage = Garage::start();
    let dir = tempfile::tempdir().unwrap();
    let tree = generate_tree(&dir.path().join("tree"), &TreeSpec::small(7));
    let repo = Bucket::new(&garage, 0, "every/command");
    repo.run(["init"]).success().mentions("s3:http://127.0.0.1:");
    repo.run(["init"]).failure().mentions("exists and is not empty");

    let first = repo.backup(&tree.root, &[]);
    modify_file(&tree.root.join(&tree.small[3]), 99);
    let second = repo.backup(&tree.root, &[]);
    assert_eq!(repo.snapshot_ids().len(), 2);
    repo.run(["ls", &second]).success().mentions(&tree.small[3].to_string_lossy());
    repo.run(["cat", &first]).success();
    repo.run(["diff", &first, &second]).success().mentions(&tree.small[3].to_string_lossy());
    repo.run(["stats"]).success();
    // A set with a dump component, and the dump back out on standard output.
    let set = repo.backup(&tree.root, &["--set", "app", "--dump", "db=printf 'dumped bytes'"]);
    assert_eq!(repo.run(["dump", &set, "db"]).success().stdout, "dumped bytes");
    repo.run(["check", "--read-data"]).success();
    repo.restore_matches(&second, &tree.root, &dir.path().join("restored"));

    // A second client (its own cache, another node) sees the same repository.
    let other = Bucket::new(&garage, 1, "every/command");
    assert_eq!(other.snapshot_ids().len(), 3);
    other.run(["forget", "--keep-last", "1"]).success();
    other.run(["prune"]).success();
    repo.run(["check", "--read-data"]).success();
    // The newest of each set is kept.
    let mut kept = repo.snapshot_ids();
    kept.sort();
    let mut newest = vec![second.clone(), set.clone()];
    newest.sort();
    assert_eq!(kept, newest);
    repo.run(["repair", "index"]).success().mentions("index rebuilt");
    repo.restore_matches(&second, &tree.root, &dir.path().join("restored-after-prune"));
    // Nothing is left behind: no lock objects once every process has ended.
    let locks = list_locks(&repo);
    assert!(locks.is_empty(), "lock objects left: {locks:?}");
}

/// The lock objects in the repository, listed through cairn's storage layer with the
/// cluster's key.
fn list_locks(repo: &Bucket) -> Vec<String> {
    use cairn::storage::object_lock::LockRecord;
    use cairn::storage::{S3Location, S3Storage, Storage};
    let location = S3Location::parse(repo.url.strip_prefix("s3:").unwrap()).unwrap();
    let storage =
        S3Storage::with_keys(location, support::garage::REGION, &repo.garage.key_id, &repo.garage.secret)
            .unwrap();
    // A listing may still show an object deleted a moment ago (Garage does): a lock
    // counts only if it can be read, as the lock protocol itself counts them.
    let readable =
        |name: &String| storage.read(name).ok().map(|b| format!("{name}: {:?}", LockRecord::decode(&b)));
    storage.list("locks/").unwrap().into_iter().filter_map(|o| readable(&o.name)).collect()
}

#[test]
fn backups_side_by_side_and_a_prune_that_waits_for_them() {
    let garage = Garage::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = Bucket::new(&garage, 0, "side-by-side");
    repo.run(["init"]).success();
    let trees: Vec<Tree> = (0..4)
        .map(|i| generate_tree(&dir.path().join(format!("host{i}")), &TreeSpec::small(100 + i)))
        .collect();
    // An older snapshot for prune to remove, so that it has packs to delete.
    let old = generate_tree(&dir.path().join("old"), &TreeSpec::small(99));
    repo.backup(&old.root, &[]);
    modify_file(&old.root.join(&old.large[0]), 5);
    repo.backup(&old.root, &[]);
    repo.run([
        OsStr::new("forget"),
        OsStr::new("--set"),
        old.root.as_os_str(),
        OsStr::new("--keep-last"),
        OsStr::new("1"),
    ])
    .success();

    // Four backups from four processes (four clients: caches of their own), each
    // through a node of the cluster, and a prune started while they run.
    let clients: Vec<Bucket> = (0..4).map(|i| Bucket::new(&garage, i % 3, "side-by-side")).collect();
    let backups: Vec<Child> = clients
        .iter()
        .zip(&trees)
        .map(|(client, tree)| {
            client.spawn([OsStr::new("--json"), OsStr::new("backup"), tree.root.as_os_str()])
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let prune = repo.spawn(["--retry-lock", "120", "prune"]);
    let ids: Vec<String> = backups
        .into_iter()
        .map(|backup| outcome(backup, "backup").success().json()["id"].as_str().unwrap().to_string())
        .collect();
    outcome(prune, "prune").success();

    repo.run(["check", "--read-data"]).success();
    let listed = repo.snapshot_ids();
    for (i, (id, tree)) in ids.iter().zip(&trees).enumerate() {
        assert!(listed.contains(id), "snapshot of host {i} is not listed");
        repo.restore_matches(id, &tree.root, &dir.path().join(format!("restored{i}")));
    }
}

/// Waits for `child` to end; `what` names it in assertion messages.
fn outcome(child: Child, what: &str) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        command: what.to_string(),
    }
}

/// A backup of enough data that it is still uploading when the test acts.
fn big_tree(root: &Path, seed: u64) -> Tree {
    let spec = TreeSpec {
        seed,
        small_files: 200,
        large_files: vec![(40 << 20, false), (40 << 20, false)],
        deep_levels: 3,
    };
    generate_tree(root, &spec)
}

/// Gives the backup `child` a moment to begin uploading, and checks it still runs.
fn started(child: &mut Child) {
    std::thread::sleep(Duration::from_millis(400));
    assert!(child.try_wait().unwrap().is_none(), "the backup ended before the test could act");
}

/// A repository with one small snapshot, and a backup of a big tree running into it.
struct UnderWay<'g> {
    dir: tempfile::TempDir,
    small: Tree,
    tree: Tree,
    repo: Bucket<'g>,
    before: String,
    backup: Child,
}

fn backup_under_way<'g>(garage: &'g Garage, prefix: &str, seed: u64) -> UnderWay<'g> {
    let dir = tempfile::tempdir().unwrap();
    let small = generate_tree(&dir.path().join("small"), &TreeSpec::small(seed));
    let tree = big_tree(&dir.path().join("big"), seed + 10);
    let repo = Bucket::new(garage, 0, prefix);
    repo.run(["init"]).success();
    let before = repo.backup(&small.root, &[]);
    let mut backup = repo.spawn_backup(&tree.root);
    started(&mut backup);
    UnderWay { dir, small, tree, repo, before, backup }
}

#[test]
fn a_node_killed_during_a_backup_loses_nothing() {
    let garage = Garage::start();
    let UnderWay { dir, small, tree, repo, before, backup } = backup_under_way(&garage, "node-killed", 3);
    garage.kill_node(2);
    // Two of three replicas still make a quorum: the backup completes.
    let during = outcome(backup, "backup with a node down").success().snapshot_id();

    repo.run(["check", "--read-data"]).success();
    repo.restore_matches(&before, &small.root, &dir.path().join("r-before"));
    repo.restore_matches(&during, &tree.root, &dir.path().join("r-during"));
    garage.restart_nodes(&[2]);
    modify_file(&tree.root.join(&tree.small[0]), 1);
    let after = repo.backup(&tree.root, &[]);
    repo.restore_matches(&after, &tree.root, &dir.path().join("r-after"));
}

#[test]
fn the_cluster_stopped_during_a_backup_gives_one_error_and_no_snapshot() {
    let garage = Garage::start();
    let UnderWay { dir, small, tree, repo, before, backup } = backup_under_way(&garage, "cluster-stopped", 4);
    let stopped = Instant::now();
    for node in 0..3 {
        garage.kill_node(node);
    }
    let run = outcome(backup, "backup with the cluster down");
    let errors: Vec<&str> = run.failure().stderr.lines().filter(|l| l.starts_with("cairn:")).collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(errors[0].contains(&garage.endpoint(0)), "the error names no endpoint: {}", run.stderr);
    assert!(stopped.elapsed() < Duration::from_secs(120), "gave up after {:?}", stopped.elapsed());

    garage.restart_nodes(&[0, 1, 2]);
    assert_eq!(repo.snapshot_ids(), vec![before.clone()], "a snapshot appeared from the failed backup");
    repo.run(["check", "--read-data"]).success();
    let after = repo.backup(&tree.root, &[]);
    repo.restore_matches(&after, &tree.root, &dir.path().join("r-after"));
    repo.restore_matches(&before, &small.root, &dir.path().join("r-before"));
}

#[test]
fn a_killed_backup_leaves_no_lock_that_blocks_prune() {
    let garage = Garage::start();
    let dir = tempfile::tempdir().unwrap();
    let tree = big_tree(&dir.path().join("big"), 8);
    let repo = Bucket::new(&garage, 0, "killed-lock");
    repo.run(["init"]).success();
    let mut backup = repo.spawn_backup(&tree.root);
    started(&mut backup);
    backup.kill().unwrap(); // SIGKILL: its lock object stays behind
    backup.wait().unwrap();
    // The lock names a process of this host that is gone: it binds nobody.
    repo.run(["prune"]).success();
    repo.run(["check", "--read-data"]).success();
    let id = repo.backup(&tree.root, &[]);
    repo.restore_matches(&id, &tree.root, &dir.path().join("restored"));
}

#[test]
fn bad_credentials_a_missing_bucket_and_a_store_that_is_down_are_one_line_errors() {
    let garage = Garage::start();
    let repo = Bucket::new(&garage, 0, "errors");
    repo.run(["init"]).success();
    let one_line = |run: &Run, needle: &str| {
        run.failure().mentions(needle);
        assert_eq!(run.stderr.lines().filter(|l| !l.trim().is_empty()).count(), 1, "{}", run.stderr);
    };
    let wrong =
        run_command(repo.command(["snapshots"]).env("AWS_SECRET_ACCESS_KEY", "wrong"), "wrong key".into());
    one_line(&wrong, "AccessDenied");
    let missing = Bucket {
        garage: &garage,
        url: format!("s3:{}/no-such-bucket/x", garage.endpoint(0)),
        cache: tempfile::tempdir().unwrap(),
    };
    one_line(&missing.run(["snapshots"]), "no-such-bucket");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = Bucket {
        garage: &garage,
        url: format!("s3:http://127.0.0.1:{port}/cairn/x"),
        cache: tempfile::tempdir().unwrap(),
    };
    one_line(&down.run(["snapshots"]), &format!("127.0.0.1:{port}"));
    let bad_url =
        Bucket { garage: &garage, url: "s3:ftp://host/b".into(), cache: tempfile::tempdir().unwrap() };
    bad_url.run(["snapshots"]).expect_code(2).mentions("unknown scheme");
}

#[test]
fn copy_into_a_bucket_and_out_of_it_sends_each_chunk_once_and_restores_byte_exact() {
    let garage = Garage::start();
    let dir = tempfile::tempdir().unwrap();
    let local = |name: &str| Bucket {
        garage: &garage,
        url: dir.path().join(name).to_string_lossy().into_owned(),
        cache: tempfile::tempdir().unwrap(),
    };
    let (origin, bucket, back) = (local("origin"), Bucket::new(&garage, 1, "copies"), local("back"));
    for repo in [&origin, &bucket, &back] {
        repo.run(["init"]).success();
    }
    let tree = generate_tree(&dir.path().join("tree"), &TreeSpec::small(21));
    let first = origin.backup(&tree.root, &[]);
    modify_file(&tree.root.join(&tree.large[0]), 3);
    let second = origin.backup(&tree.root, &[]);

    let json = |run: &Run| run.success().json();
    let into = json(&bucket.run([
        OsStr::new("--json"),
        OsStr::new("copy"),
        OsStr::new("--from-repo"),
        OsStr::new(&origin.url),
    ]));
    assert_eq!(into["copied"].as_array().unwrap().len(), 2, "{into}");
    let again = json(&bucket.run([
        OsStr::new("--json"),
        OsStr::new("copy"),
        OsStr::new("--from-repo"),
        OsStr::new(&origin.url),
    ]));
    assert_eq!(
        (again["chunks_copied"].as_u64(), again["already_there"].as_array().unwrap().len()),
        (Some(0), 2)
    );
    bucket.run(["check", "--read-data"]).success();
    bucket.restore_matches(&second, &tree.root, &dir.path().join("from-bucket"));

    // Only the newest back out: the chunks it shares with the first are sent with it.
    back.run([OsStr::new("copy"), OsStr::new("--from-repo"), OsStr::new(&bucket.url), OsStr::new("latest")])
        .success();
    assert_eq!(back.snapshot_ids(), vec![second.clone()]);
    back.run(["check", "--read-data"]).success();
    back.restore_matches(&second, &tree.root, &dir.path().join("from-copy"));
    assert!(bucket.snapshot_ids().contains(&first));
}
