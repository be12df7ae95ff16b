//! Crash tests at every durable operation: a backup, a prune that repacks, a forget, a
//! repair of the index and an index compaction, each run once to count its N durable
//! operations (objects written, deleted or replaced; index syncs), then once per k in
//! 1..=N with a fault at k: failing before it takes effect, failing after it did, and
//! as a power cut. After each, on what the machine would find: a reader (with an index
//! of its own, as readers have) finds `check --read-data` clean, every snapshot listed
//! restores byte-exact and the earlier ones are all listed; then the next backup, on
//! the writers' index as the fault left it, succeeds, and its snapshot restores.

mod support;

use cairn::backup::{self, BackupOptions, Input};
use cairn::check;
use cairn::config::Config;
use cairn::index::Index;
use cairn::prune::{self, PruneOptions};
use cairn::repo::{OpenOptions, Repository};
use cairn::restore::{self, RestoreOptions};
use cairn::storage::{CrashableFile, Fault, FaultCounter, FaultyStorage, LockMode, MemoryStorage, Storage};
use cairn::{NoProgress, SnapshotId};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::*;

/// What a machine holds durably: the repository's objects and its index file.
#[derive(Clone)]
struct Machine {
    objects: MemoryStorage,
    index: Vec<u8>,
}

/// An index file's durable bytes, as a `CrashableFile` keeps them.
type IndexFile = Arc<std::sync::Mutex<Vec<u8>>>;

/// A process on a machine; `finish` gives what the machine holds after it ended (or
/// crashed).
struct Process {
    repo: Option<Repository>,
    objects: MemoryStorage,
    index: IndexFile,
}

impl Machine {
    /// A new repository whose packs close at 96 KiB, so a small tree makes several.
    fn new() -> Machine {
        let objects = MemoryStorage::new();
        let mut config = Config::new([3; 32]);
        config.pack_target = 96 << 10;
        objects.put("config", &config.encode()).unwrap();
        Machine { objects, index: Vec::new() }
    }

    /// Starts a process on a copy of this machine; opening may itself hit the fault.
    fn start(&self, mode: LockMode, counter: Arc<FaultCounter>) -> (Process, cairn::Result<()>) {
        let objects = self.objects.clone_objects();
        let storage = Arc::new(FaultyStorage::new(Arc::new(objects.clone()), counter.clone()));
        let file = CrashableFile::new(counter.clone(), self.index.clone());
        let index = file.durable();
        let opened =
            Index::with_backend(file, "index").and_then(|i| Repository::open_with_index(storage, mode, i));
        let (repo, result) = match opened {
            Ok(repo) => (Some(repo), Ok(())),
            Err(e) => (None, Err(e)),
        };
        (Process { repo, objects, index }, result)
    }

    /// Runs a writer on the writers' index; gives the machine after it.
    fn run<T>(&self, mode: LockMode, f: impl FnOnce(&Repository) -> cairn::Result<T>) -> (Machine, T) {
        let (mut process, opened) = self.start(mode, FaultCounter::counting());
        opened.unwrap();
        let out = f(process.repo.as_ref().unwrap()).unwrap();
        (process.finish(), out)
    }

    /// Runs a reader, which builds an index of its own and changes nothing.
    fn read<T>(&self, f: impl FnOnce(&Repository) -> cairn::Result<T>) -> T {
        let options = OpenOptions {
            mode: LockMode::Shared,
            lock_wait: Duration::ZERO,
            command: "reader".into(),
            cache_dir: None,
        };
        let repo = Repository::open(Arc::new(self.objects.clone_objects()), &options).unwrap();
        f(&repo).unwrap()
    }
}

impl Process {
    fn finish(&mut self) -> Machine {
        drop(self.repo.take());
        Machine { objects: self.objects.clone_objects(), index: self.index.lock().unwrap().clone() }
    }
}

fn backup_of(repo: &Repository, tree: &Path) -> cairn::Result<SnapshotId> {
    let options = BackupOptions::new("tree", "test");
    Ok(backup::backup(repo, &[Input::path(tree)], &options, &NoProgress)?.id())
}

/// The tree a snapshot must restore to, by snapshot.
type Expected = Vec<(SnapshotId, PathBuf)>;

/// Restores `id` and compares it with `tree`.
fn assert_restores(repo: &Repository, id: &SnapshotId, tree: &Path, scratch: &Path, what: &str) {
    let target = scratch.join(format!("restore-{id}"));
    let options = RestoreOptions { target: target.clone(), overwrite: false, component: None };
    let report = restore::restore(repo, id, &options, &NoProgress).unwrap();
    assert!(report.errors.is_empty(), "{what}: restore of {id}: {:?}", report.errors);
    assert_trees_equal(tree, &target);
    std::fs::remove_dir_all(&target).unwrap();
}

/// Checks what a crash left, as a reader: sound on `check --read-data`, every expected
/// snapshot listed, every listed snapshot restores to its tree. Then the next backup,
/// a writer on the index the fault left, works, and a reader restores its snapshot.
fn assert_sound(machine: &Machine, expected: &Expected, next_tree: &Path, scratch: &Path, what: &str) {
    let listed = machine.read(|repo| {
        let report = check::check(repo, true, &NoProgress)?;
        assert!(report.is_sound(), "{what}: check finds {:?}", report.problems);
        repo.snapshots()
    });
    assert!(listed.unreadable.is_empty(), "{what}: unreadable {:?}", listed.unreadable);
    let listed: Vec<SnapshotId> = listed.readable.iter().map(|s| s.id).collect();
    for (id, _) in expected {
        assert!(listed.contains(id), "{what}: snapshot {id} lost");
    }
    machine.read(|repo| {
        for id in &listed {
            let tree = match expected.iter().find(|(e, _)| e == id) {
                Some((_, tree)) => tree.as_path(),
                // The snapshot the interrupted backup was making: of the next tree.
                None => next_tree,
            };
            assert_restores(repo, id, tree, scratch, what);
        }
        Ok(())
    });
    let (machine, next) = machine.run(LockMode::Append, |repo| backup_of(repo, next_tree));
    machine.read(|repo| {
        let report = check::check(repo, true, &NoProgress)?;
        assert!(report.is_sound(), "{what}, then a backup: check finds {:?}", report.problems);
        assert_restores(repo, &next, next_tree, scratch, &format!("{what}, then a backup"));
        Ok(())
    });
}

/// An operation under test. It may replace the index file whole, as `repair index`
/// renames a new one over the old: it then returns the new file, which the machine
/// keeps from then on.
type Operation<'a> = &'a dyn Fn(&mut Repository, &Arc<FaultCounter>) -> cairn::Result<Option<IndexFile>>;

/// Runs `operation` on `before` once counting, then at every k with each fault;
/// returns N and the machine after the run without a fault. The last few durable
/// operations may come after the operation returned, when the index is closed (redb
/// records a clean shutdown).
fn at_every_point(
    before: &Machine,
    mode: LockMode,
    operation: Operation,
    sound: &dyn Fn(&Machine, &str),
) -> (u64, Machine) {
    // Gives the operation's result, how many durable operations it made before it
    // returned, and the machine after the process ended.
    let run = |counter: &Arc<FaultCounter>| {
        let (mut process, opened) = before.start(mode, counter.clone());
        let result = opened.and_then(|_| operation(process.repo.as_mut().unwrap(), counter));
        let in_operation = counter.count();
        let mut after = process.finish();
        if let Ok(Some(swapped)) = &result {
            after.index = swapped.lock().unwrap().clone();
        }
        (result.map(drop), in_operation, after)
    };
    let counter = FaultCounter::counting();
    let (result, in_operation, clean) = run(&counter);
    result.unwrap();
    let n = counter.count();
    sound(&clean, "without a fault");
    assert!(in_operation > 0);
    for k in 1..=n {
        for fault in Fault::ALL {
            let counter = FaultCounter::failing_at(k, fault);
            let (result, _, after) = run(&counter);
            assert!(counter.fired(), "fault {k} of {n} was never reached");
            // Past `in_operation` the fault hits the closing of the index, which nobody
            // sees; before, a power cut must not leave the operation reporting success.
            if fault == Fault::PowerCut && k <= in_operation {
                assert!(result.is_err(), "{fault:?} at {k} of {n}: the operation reported success");
            }
            sound(&after, &format!("{fault:?} at durable operation {k} of {n}"));
        }
    }
    (n, clean)
}

fn packs(machine: &Machine) -> Vec<String> {
    machine.objects.list("packs/").unwrap().into_iter().map(|o| o.name).collect()
}

fn small_tree(root: &Path, seed: u64) -> Tree {
    generate_tree(
        root,
        &TreeSpec {
            seed,
            small_files: 30,
            large_files: vec![(300 << 10, false), (200 << 10, true), (150 << 10, false)],
            deep_levels: 3,
        },
    )
}

/// A first tree, and a copy of it at `v2/tree` that the caller changes.
fn two_trees(env: &TestEnv, seed: u64) -> (Tree, PathBuf) {
    let first = small_tree(&env.path("v1/tree"), seed);
    let second = env.path("v2/tree");
    std::fs::create_dir(env.path("v2")).unwrap();
    copy_tree(&first.root, &second);
    (first, second)
}

#[test]
fn a_backup_survives_a_fault_at_every_durable_operation() {
    let env = TestEnv::new();
    let (first, second) = two_trees(&env, 1);
    modify_file(&second.join(&first.large[0]), 7);
    // New files larger than the pack target: a pack each.
    for k in 0..4 {
        std::fs::write(second.join(format!("added-{k}.bin")), Rng::new(5 + k).random_bytes(100 << 10))
            .unwrap();
    }

    let (machine, s1) = Machine::new().run(LockMode::Append, |repo| backup_of(repo, &first.root));
    let expected = vec![(s1, first.root.clone())];
    let (n, after) = at_every_point(
        &machine,
        LockMode::Append,
        &|repo, _| backup_of(repo, &second).map(|_| None),
        &|after, what| assert_sound(after, &expected, &second, &env.path("scratch"), what),
    );
    let added = packs(&after).len() - packs(&machine).len();
    assert!(added >= 3, "the backup wrote {added} packs, not several");
    eprintln!("backup: {n} durable operations ({added} packs), a fault at each passed");
}

#[test]
fn a_prune_that_repacks_survives_a_fault_at_every_durable_operation() {
    let env = TestEnv::new();
    let (first, second) = two_trees(&env, 2);
    for (k, large) in first.large.iter().enumerate() {
        modify_file(&second.join(large), 20 + k as u64);
    }
    let (machine, old) = Machine::new().run(LockMode::Append, |repo| backup_of(repo, &first.root));
    let (machine, s2) = machine.run(LockMode::Append, |repo| backup_of(repo, &second));
    let (machine, _) = machine.run(LockMode::Exclusive, |repo| repo.remove_snapshot(&old));
    let expected = vec![(s2, second.clone())];
    let options = PruneOptions { max_unused_percent: 0.0, dry_run: false };
    let (_, dry) = machine.run(LockMode::Exclusive, |repo| {
        prune::prune(repo, &PruneOptions { dry_run: true, ..options }, &NoProgress)
    });
    assert!(dry.packs_repacked > 0 && dry.packs_deleted > 0, "the prune must repack and delete: {dry:?}");
    let (n, after) = at_every_point(
        &machine,
        LockMode::Exclusive,
        &|repo, _| prune::prune(repo, &options, &NoProgress).map(|_| None),
        &|after, what| assert_sound(after, &expected, &second, &env.path("scratch"), what),
    );
    let (before, after) = (packs(&machine), packs(&after));
    let written = after.iter().filter(|p| !before.contains(p)).count();
    let deleted = before.iter().filter(|p| !after.contains(p)).count();
    assert!(written >= 1 && deleted >= 2, "the prune wrote {written} packs and deleted {deleted}");
    eprintln!(
        "prune: {n} durable operations ({written} packs written, {deleted} deleted), a fault at each passed"
    );
}

#[test]
fn forget_repair_and_compaction_survive_a_fault_at_every_durable_operation() {
    let env = TestEnv::new();
    let (first, second) = two_trees(&env, 3);
    modify_file(&second.join(&first.large[1]), 9);
    let (machine, s1) = Machine::new().run(LockMode::Append, |repo| backup_of(repo, &first.root));
    let (machine, s2) = machine.run(LockMode::Append, |repo| backup_of(repo, &second));
    let scratch = env.path("scratch");

    // Forget: afterwards s2 is always there, s1 there or not.
    let kept = vec![(s2, second.clone())];
    let (forget, _) = at_every_point(
        &machine,
        LockMode::Exclusive,
        &|repo, _| repo.remove_snapshot(&s1).map(|_| None),
        &|after, what| assert_sound(after, &kept, &first.root, &scratch, what),
    );

    // Repair index fills a new index file, swapped in whole once it is complete and
    // closed (a local repository renames it over the old one): a fault before leaves
    // the old one. Compaction rewrites the index in place. Both snapshots stay.
    let both = vec![(s1, first.root.clone()), (s2, second.clone())];
    let (repair, _) = at_every_point(
        &machine,
        LockMode::Exclusive,
        &|repo, counter| {
            let file = CrashableFile::new(counter.clone(), Vec::new());
            let durable = file.durable();
            let fresh = Index::with_backend(file, "new index")?;
            cairn::reindex::fill(repo.storage(), &fresh, &NoProgress)?;
            // Closing syncs the new file; a local repair then fsyncs it before the
            // rename and fails when that does.
            drop(fresh);
            match counter.fired() {
                true => Err(cairn::Error::Invalid("the new index could not be closed".into())),
                false => Ok(Some(durable)),
            }
        },
        &|after, what| assert_sound(after, &both, &second, &scratch, what),
    );
    let (compact, _) = at_every_point(
        &machine,
        LockMode::Exclusive,
        &|repo, _| repo.index.compact().map(|_| None),
        &|after, what| assert_sound(after, &both, &second, &scratch, what),
    );
    eprintln!("forget: {forget}, repair index: {repair}, compaction: {compact} durable operations");
}
