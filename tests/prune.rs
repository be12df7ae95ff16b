//! forget and prune on a repository of many backups of a changing tree: the space comes
//! back, kept snapshots stay whole, and a prune killed at any moment loses nothing.

mod support;

use std::ffi::OsStr;
use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::*;

fn spec() -> TreeSpec {
    TreeSpec {
        seed: 7,
        small_files: 300,
        large_files: vec![(3 << 20, false), (2 << 20, false), (2 << 20, true), (1 << 20, false)],
        deep_levels: 5,
    }
}

/// New bytes for one large file and a few small ones, and a new file that the next
/// round removes again: every round leaves chunks that only its snapshot holds.
fn change_tree(tree: &Tree, round: u64) {
    let large = &tree.large[(round % tree.large.len() as u64) as usize];
    modify_file(&tree.root.join(large), 100 + round);
    for k in 0..3 {
        let small = &tree.small[((round * 31 + k * 7) % tree.small.len() as u64) as usize];
        modify_file(&tree.root.join(small), 500 + round * 10 + k);
    }
    let _ = fs::remove_file(tree.root.join(format!("extra-{}.bin", round.wrapping_sub(1))));
    fs::write(tree.root.join(format!("extra-{round}.bin")), Rng::new(round).random_bytes(1 << 20)).unwrap();
}

/// A repository with `rounds` backups of a changing tree; returns the environment, the
/// tree, and the snapshot ids with a copy of the tree each was taken from.
fn many_backups(rounds: u64) -> (TestEnv, Tree, Vec<(String, std::path::PathBuf)>) {
    let env = TestEnv::new();
    let tree = generate_tree(&env.path("src"), &spec());
    let mut taken = Vec::new();
    for round in 0..rounds {
        change_tree(&tree, round);
        let id = env.backup(&tree.root, &[]);
        let copy = env.path(&format!("as-of-{round}"));
        copy_tree(&tree.root, &copy);
        taken.push((id, copy));
    }
    (env, tree, taken)
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn forgetting_all_but_the_last_and_pruning_gives_the_space_back() {
    let (env, tree, taken) = many_backups(8);
    let before = env.data_size();
    let run = env.run(["--json", "forget", "--keep-last", "2", "--prune"]).success().json();
    let kept: Vec<&str> = run["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["keep"] == true)
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(kept, [taken[6].0.as_str(), taken[7].0.as_str()]);
    assert_eq!(env.snapshots().len(), 2);
    env.run(["check", "--read-data"]).success();
    for (id, copy) in &taken[6..] {
        let out = env.path(&format!("restored-{id}"));
        env.restore(id, &out);
        assert_trees_equal(copy, &out);
    }

    // Down to the last one: within 10% of a fresh repository holding only it.
    env.run(["forget", "--keep-last", "1"]).success();
    let report = env.run(["--json", "prune", "--max-unused", "0"]).success().json();
    let after = env.data_size();
    let fresh = TestEnv::new();
    fresh.backup(&tree.root, &[]);
    let alone = fresh.data_size();
    eprintln!("packs: {before} bytes after 8 backups, {after} after prune, {alone} in a fresh repository");
    assert!(after as f64 <= alone as f64 * 1.10, "{after} vs {alone}: {report}");
    assert!(after < before / 2);
    let out = env.path("restored-last");
    env.restore(&taken[7].0, &out);
    assert_trees_equal(&tree.root, &out);
}

#[test]
fn a_prune_killed_at_any_moment_loses_nothing_and_the_next_one_completes() {
    let (env, _tree, taken) = many_backups(6);
    env.run(["forget", "--keep-last", "2"]).success();
    let pristine = env.path("pristine");
    copy_tree(&env.repo, &pristine);
    let t = Instant::now();
    env.run(["prune", "--max-unused", "0"]).success();
    let took = t.elapsed();
    let pruned_size = env.data_size();
    eprintln!("an uninterrupted prune took {took:?}");

    // The packs a prune writes, left behind unindexed by a prune killed before its index
    // commit: the next prune writes the same packs again (a pack is named by its bytes)
    // and must not delete them as leftovers.
    let written: Vec<_> = walk_files(&env.repo.join("packs"))
        .into_iter()
        .filter(|p| !pristine.join(p.strip_prefix(&env.repo).unwrap()).exists())
        .collect();
    assert!(!written.is_empty(), "the prune should have repacked something");
    let leftovers = env.path("leftovers");
    copy_tree(&pristine, &leftovers);
    for pack in &written {
        let dest = leftovers.join(pack.strip_prefix(&env.repo).unwrap());
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(pack, dest).unwrap();
    }
    fs::remove_dir_all(&env.repo).unwrap();
    fs::rename(&leftovers, &env.repo).unwrap();
    env.run(["prune", "--max-unused", "0"]).success();
    env.run(["check", "--read-data"]).success();

    let fractions = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
    let mut interrupted = 0;
    for &fraction in &fractions {
        fs::remove_dir_all(&env.repo).unwrap();
        copy_tree(&pristine, &env.repo);
        let delay = took.mul_f64(fraction).max(Duration::from_millis(5));
        let mut child = env
            .command([OsStr::new("prune"), OsStr::new("--max-unused"), OsStr::new("0")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            interrupted += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Whatever the moment, every kept snapshot's chunks are there and sound...
        env.run(["check", "--read-data"]).success();
        // ...and the next prune completes, to the same size as an uninterrupted one.
        env.run(["prune", "--max-unused", "0"]).success();
        let size = env.data_size();
        assert!(size <= pruned_size + pruned_size / 20, "fraction {fraction}: {size} vs {pruned_size}");
    }
    assert!(interrupted >= fractions.len() / 3, "only {interrupted} prunes were still running when killed");
    env.run(["check", "--read-data"]).success();
    for (id, copy) in &taken[4..] {
        let out = env.path(&format!("restored-{id}"));
        env.restore(id, &out);
        assert_trees_equal(copy, &out);
    }
}

#[test]
fn prune_refuses_while_another_process_holds_the_repository() {
    let env = TestEnv::new();
    let lock = fs::OpenOptions::new().read(true).write(true).open(env.repo.join("lock")).unwrap();
    lock.try_lock().expect("take the lock");
    env.run(["prune"]).expect_code(11);
    env.run(["forget", "--keep-last", "1"]).expect_code(11);
    drop(lock);
    env.run(["forget"]).failure().mentions("no retention rule given").mentions("--keep-*");
}

/// Regression (review of the delta change): prune keeps a pack that still holds a dead
/// delta after removing the delta's reference. Neither an index rebuilt from the packs
/// nor a later backup may take that copy for the chunk, and `check --read-data` sees no
/// damage in it.
#[test]
fn a_dead_delta_whose_reference_was_pruned_is_never_indexed_again() {
    let env = TestEnv::new();
    let home = env.path("home");
    fs::create_dir_all(&home).unwrap();
    let mut rng = Rng::new(11);
    let data = home.join("data.db");
    let original = rng.random_bytes(3 << 16);
    let changed = [&original[..100], b"changed!", &original[108..]].concat();
    let mut log = 0;
    let mut backup = |content: &[u8], extra_file: Option<(&str, Vec<u8>)>| {
        fs::write(&data, content).unwrap();
        if let Some((name, bytes)) = extra_file {
            fs::write(home.join(name), bytes).unwrap();
        }
        log += 1;
        fs::write(home.join(format!("log.{log:010}")), format!("log {log}\n")).unwrap();
        env.backup(&home, &["--type", "bdb"])
    };
    backup(&original, None);
    // The changed first piece is a delta, packed beside a large live file.
    backup(&changed, Some(("other.db", rng.random_bytes(300_000))));
    // Deltas of data pieces (64 KiB); file lists' changed chunks may be deltas too.
    let deltas = || {
        let entries = env.packs().iter().flat_map(|p| pack_table(p)).collect::<Vec<_>>();
        entries.iter().filter(|e| e.codec == 2 && e.raw_len == 1 << 16).count()
    };
    assert_eq!(deltas(), 1);
    backup(&[&rng.random_bytes(1 << 16)[..], &original[1 << 16..]].concat(), None);
    env.run(["forget", "--keep-last", "1"]).success();
    env.run(["prune"]).success();
    assert_eq!(deltas(), 1, "the dead delta stays in its pack, whose other chunks are live");
    env.run(["check", "--read-data"]).success();

    env.run(["repair", "index"]).success();
    let again = backup(&changed, None);
    let out = env.path("restored");
    env.restore(&again, &out);
    assert_eq!(fs::read(out.join("data.db")).unwrap(), changed);
    env.run(["check", "--read-data"]).success();
}

/// Regression (second review of the delta change): an index from before a prune (a
/// repository copied while prune ran, say) is brought up to date by the next writer,
/// which finds the new packs unindexed and the old ones gone; every chunk the kept
/// snapshots need, deltas whose reference moved included, must be indexed again.
#[test]
fn an_index_from_before_a_prune_is_brought_up_to_date() {
    let env = TestEnv::new();
    let home = env.path("home");
    fs::create_dir_all(&home).unwrap();
    let mut rng = Rng::new(5);
    let mut data = rng.random_bytes(16 << 16);
    let mut taken = Vec::new();
    for round in 0..5u64 {
        // A few 64 KiB pieces change in place (deltas); another file changes whole.
        for k in 0..4 {
            let at = (((round * 5 + k * 3) % 16) as usize) * 65536 + 1000 + round as usize * 10;
            data[at..at + 8].copy_from_slice(&round.to_le_bytes());
        }
        fs::write(home.join("data.db"), &data).unwrap();
        fs::write(home.join("other.db"), rng.random_bytes(200_000)).unwrap();
        fs::write(home.join(format!("log.{:010}", round + 1)), format!("log {round}\n")).unwrap();
        taken.push((env.backup(&home, &["--type", "bdb"]), data.clone()));
    }
    env.run(["forget", "--keep-last", "2"]).success();
    let old_index = env.path("old-index.redb");
    fs::copy(env.repo.join("index.redb"), &old_index).unwrap();
    env.run(["prune", "--max-unused", "0"]).success();
    fs::copy(&old_index, env.repo.join("index.redb")).unwrap();

    // Any writer brings the index up to date.
    env.run(["forget", "--keep-last", "2"]).success();
    env.run(["check", "--read-data"]).success();
    for (id, data) in &taken[3..] {
        let out = env.path(&format!("restored-{id}"));
        env.restore(id, &out);
        assert_eq!(&fs::read(out.join("data.db")).unwrap(), data);
    }
}
