//! Backups killed with SIGKILL at varied moments must never damage the repository.

mod support;

use std::ffi::OsStr;
use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::*;

/// About 40 MB: random and compressible large files plus the usual small ones.
fn crash_spec() -> TreeSpec {
    TreeSpec {
        seed: 40,
        small_files: 400,
        large_files: vec![
            (8 << 20, false),
            (7 << 20, false),
            (6 << 20, true),
            (5 << 20, true),
            (5 << 20, false),
            (4 << 20, false),
            (3 << 20, true),
            (1 << 20, false),
        ],
        deep_levels: 20,
    }
}

/// Changes the tree for round `round`: new bytes for two large files and a few small
/// ones, and one new file.
fn change_tree(tree: &Tree, round: u64) {
    let n = tree.large.len() as u64;
    for k in 0..2 {
        let rel = &tree.large[((round * 2 + k) % n) as usize];
        modify_file(&tree.root.join(rel), 1000 + round * 10 + k);
    }
    for k in 0..5 {
        let rel = &tree.small[((round * 37 + k * 11) % tree.small.len() as u64) as usize];
        modify_file(&tree.root.join(rel), 5000 + round * 10 + k);
    }
    let mut rng = Rng::new(9000 + round);
    fs::write(tree.root.join(format!("added-{round}.bin")), rng.random_bytes(2 << 20)).unwrap();
}

/// Arguments of an incremental or a `--full` backup of the tree.
fn backup_args(tree: &Tree, full: bool) -> Vec<&OsStr> {
    let mut args = vec![OsStr::new("backup")];
    if full {
        args.push(OsStr::new("--full"));
    }
    args.push(tree.root.as_os_str());
    args
}

#[test]
fn killed_backups_leave_the_repository_sound() {
    let started = Instant::now();
    let env = TestEnv::new();
    let tree = generate_tree(&env.path("src"), &crash_spec());
    let first = env.backup(&tree.root, &[]);

    // How long an uninterrupted round takes, incremental and full: the kills below are
    // spread over that time (clamped to 20 ms .. 1.5 s), so they land in every stage of a backup
    // however fast this machine is.
    let mut took = [Duration::ZERO; 2];
    for (k, full) in [false, true].into_iter().enumerate() {
        change_tree(&tree, 100 + k as u64);
        let t = Instant::now();
        env.run(backup_args(&tree, full)).success();
        took[k] = t.elapsed();
    }
    eprintln!("uninterrupted rounds: incremental {:?}, full {:?}", took[0], took[1]);

    let fractions = [0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.97];
    let mut interrupted = 0;
    for (round, &fraction) in fractions.iter().enumerate() {
        let full = round % 2 == 1;
        let delay = took[usize::from(full)]
            .mul_f64(fraction)
            .clamp(Duration::from_millis(20), Duration::from_millis(1500));
        change_tree(&tree, round as u64);
        let mut child = env
            .command(backup_args(&tree, full))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn cairn backup");
        std::thread::sleep(delay);
        let finished_first = child.try_wait().unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        match finished_first {
            None => interrupted += 1,
            Some(s) => assert!(s.success(), "round {round}: backup failed: {s:?}"),
        }
        eprintln!(
            "round {round} (full: {full}): killed after {delay:?}{}",
            if finished_first.is_some() { ", but it had finished" } else { "" }
        );
    }
    assert!(
        interrupted >= fractions.len() / 3,
        "only {interrupted} of {} backups were still running when killed",
        fractions.len()
    );

    // Straight after the last kill, before any writer: check accepts the repository
    // and the first snapshot restores exactly the tree it was taken from.
    env.run(["check"]).success();
    let expected = env.path("expected");
    generate_tree(&expected, &crash_spec());
    let out = env.path("out-first");
    env.restore(&first, &out);
    assert_trees_equal(&expected, &out);
    fs::remove_dir_all(&out).unwrap();
    fs::remove_dir_all(&expected).unwrap();

    // The next backup succeeds.
    let next = env.backup(&tree.root, &[]);
    let listed = env.snapshots();
    assert_eq!(listed[0]["id"], first.as_str());
    assert_eq!(listed[listed.len() - 1]["id"], next.as_str());

    // A writer after the crashes: a full backup succeeds and restores exactly.
    let last = env.backup(&tree.root, &["--full"]);
    let out = env.path("out-last");
    env.restore(&last, &out);
    assert_trees_equal(&tree.root, &out);

    // What the killed backups left is cleaned up or sound.
    env.run(["check", "--read-data"]).success();
    let tmp: Vec<_> = fs::read_dir(env.repo.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "tmp/ not cleaned by the next writer: {tmp:?}");
    eprintln!(
        "{interrupted} of {} backups interrupted; {:.1}s in all",
        fractions.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Starts `cairn backup` and kills it with SIGKILL once it has begun writing into
/// REPO/tmp (so it holds the exclusive lock and has the index open for writing).
/// Returns false when the backup finished first.
fn kill_mid_backup(env: &TestEnv, tree: &Tree) -> bool {
    let tmp = env.repo.join("tmp");
    let mut child = env
        .command(backup_args(tree, false))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cairn backup");
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if fs::read_dir(&tmp).unwrap().next().is_some() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn readers_work_right_after_a_killed_backup() {
    let env = TestEnv::new();
    let tree = generate_tree(&env.path("src"), &crash_spec());
    let first = env.backup(&tree.root, &[]);
    let killed = (0..5).any(|round| {
        change_tree(&tree, round);
        kill_mid_backup(&env, &tree)
    });
    assert!(killed, "no backup could be killed while it ran");

    // Nothing but readers: the repository is as the killed writer left it.
    let listed = env.snapshots();
    assert_eq!(listed[0]["id"], first.as_str());
    env.run(["ls", first.as_str()]).success();
    env.run(["check"]).success();
    let expected = env.path("expected");
    generate_tree(&expected, &crash_spec());
    let out = env.path("out");
    env.restore(&first, &out);
    assert_trees_equal(&expected, &out);
}
