//! Index files (format-spec/repository.md, "Index files"): each backup writes one for the
//! packs it added, prune replaces them all, and a client without an index cache learns
//! where chunks are from them instead of reading every pack's table.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use support::*;

/// One index file, decoded here from the spec alone: each pack it names with its size
/// and the chunk ids it places there.
struct IndexFile {
    packs: BTreeMap<String, (u64, Vec<String>)>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_index_file(path: &Path) -> IndexFile {
    let bytes = fs::read(path).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    assert_eq!(hex(blake3::hash(&bytes).as_bytes()), name, "an index file is named by its bytes");
    assert_eq!(&bytes[..8], b"CAIRNIDX");
    assert_eq!(bytes[8..16], [1, 0, 0, 0, 0, 0, 0, 0], "version 1, reserved 0");
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let pack_count = u32_at(16);
    let mut order = Vec::new();
    let mut packs = BTreeMap::new();
    for n in 0..pack_count {
        let at = 20 + n * 40;
        order.push(hex(&bytes[at..at + 32]));
        packs.insert(hex(&bytes[at..at + 32]), (u64_at(at + 32), Vec::new()));
    }
    let mut at = 20 + pack_count * 40;
    let entry_count = u32_at(at);
    at += 4;
    for _ in 0..entry_count {
        let pack = &order[u32_at(at)];
        let id = hex(&bytes[at + 4..at + 36]);
        let codec = bytes[at + 4 + 48];
        at += 4 + 49 + if codec == 2 { 32 } else { 0 };
        packs.get_mut(pack).unwrap().1.push(id);
    }
    assert_eq!(at, bytes.len(), "{}: entries use up the file", path.display());
    IndexFile { packs }
}

fn index_files(env: &TestEnv) -> Vec<PathBuf> {
    let dir = env.repo.join("index");
    let mut files: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

fn pack_ids(env: &TestEnv) -> BTreeSet<String> {
    env.packs().iter().map(|p| p.file_name().unwrap().to_str().unwrap().to_string()).collect()
}

/// The packs all index files name, each with the chunk ids they place in it.
fn named_packs(env: &TestEnv) -> BTreeMap<String, BTreeSet<String>> {
    let mut named: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in index_files(env) {
        for (pack, (size, chunks)) in decode_index_file(&file).packs {
            let path = env.repo.join("packs").join(&pack[..2]).join(&pack);
            assert_eq!(
                fs::metadata(&path).map(|m| m.len()).ok(),
                Some(size),
                "{pack} as {} names it",
                file.display()
            );
            named.entry(pack).or_default().extend(chunks);
        }
    }
    named
}

/// Makes every pack's table unreadable (its footer magic zeroed), leaving the frames.
fn break_pack_tables(env: &TestEnv) {
    for pack in env.packs() {
        let n = fs::metadata(&pack).unwrap().len();
        for at in n - 8..n {
            flip_byte(&pack, at);
        }
    }
}

/// Runs `args` as a client that has never seen the repository (a new cache directory).
fn new_client(env: &TestEnv, args: &[&str]) -> Run {
    static CLIENTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CLIENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cache = env.path(&format!("cache-{n}"));
    let mut all = vec!["--cache-dir", cache.to_str().unwrap()];
    all.extend_from_slice(args);
    env.run(all)
}

fn restore_as_new_client(env: &TestEnv, snapshot: &str, target: &Path) {
    new_client(env, &["restore", snapshot, "--target", target.to_str().unwrap()]).success();
}

#[test]
fn a_client_without_a_cache_reads_index_files_not_pack_tables() {
    let env = TestEnv::new();
    let tree = generate_tree(&env.path("src"), &TreeSpec::small(11));
    let first = env.backup(&tree.root, &[]);
    let as_first = env.path("as-first");
    copy_tree(&tree.root, &as_first);
    modify_file(&tree.root.join(&tree.large[0]), 5);
    let second = env.backup(&tree.root, &[]);
    // One file per backup, naming every pack with every chunk of its table.
    assert_eq!(index_files(&env).len(), 2);
    let named = named_packs(&env);
    assert_eq!(named.keys().cloned().collect::<BTreeSet<_>>(), pack_ids(&env));
    for pack in env.packs() {
        let table: BTreeSet<String> = pack_table(&pack).into_iter().map(|e| e.id).collect();
        assert_eq!(named[pack.file_name().unwrap().to_str().unwrap()], table);
    }

    // With no pack table readable, only the index files can say where chunks are.
    break_pack_tables(&env);
    let (out_first, out_second) = (env.path("out-first"), env.path("out-second"));
    restore_as_new_client(&env, &first, &out_first);
    restore_as_new_client(&env, &second, &out_second);
    assert_trees_equal(&as_first, &out_first);
    assert_trees_equal(&tree.root, &out_second);
    // check still reads the tables, and says they are broken.
    new_client(&env, &["check"]).failure().mentions("no pack footer");
}

#[test]
fn a_repository_from_before_index_files_is_read_and_the_next_backup_names_its_packs() {
    let env = TestEnv::new();
    let tree = generate_tree(&env.path("src"), &TreeSpec::small(12));
    let first = env.backup(&tree.root, &[]);
    let as_first = env.path("as-first");
    copy_tree(&tree.root, &as_first);
    // As a repository written before index files existed.
    fs::remove_dir_all(env.repo.join("index")).unwrap();
    fs::remove_file(env.repo.join("index.redb")).unwrap();
    new_client(&env, &["ls", &first]).success();

    modify_file(&tree.root.join(&tree.small[0]), 9);
    env.backup(&tree.root, &[]);
    assert_eq!(named_packs(&env).keys().cloned().collect::<BTreeSet<_>>(), pack_ids(&env));
    break_pack_tables(&env);
    let out = env.path("out");
    restore_as_new_client(&env, &first, &out);
    assert_trees_equal(&as_first, &out);
}

#[test]
fn prune_replaces_every_index_file_and_none_names_a_pack_it_deleted() {
    let env = TestEnv::new();
    let tree = generate_tree(&env.path("src"), &TreeSpec::small(13));
    for round in 0..4 {
        for large in &tree.large {
            modify_file(&tree.root.join(large), 40 + round);
        }
        env.backup(&tree.root, &[]);
    }
    let before: BTreeSet<PathBuf> = index_files(&env).into_iter().collect();
    assert_eq!(before.len(), 4);
    env.run(["forget", "--keep-last", "1"]).success();
    let report = env.run(["--json", "prune", "--max-unused", "0"]).success().json();
    assert!(report["packs_deleted"].as_u64().unwrap() > 0, "{report}");
    let after: BTreeSet<PathBuf> = index_files(&env).into_iter().collect();
    assert_eq!(after.len() as u64, report["index_files_written"].as_u64().unwrap(), "{report}");
    assert!(after.is_disjoint(&before), "old index files are removed");
    // The new files name exactly the packs that stay, with exactly their live chunks.
    assert_eq!(named_packs(&env).keys().cloned().collect::<BTreeSet<_>>(), pack_ids(&env));

    break_pack_tables(&env);
    let out = env.path("out");
    restore_as_new_client(&env, "latest", &out);
    assert_trees_equal(&tree.root, &out);
}

#[test]
fn a_pack_that_an_index_file_names_and_the_repository_lost_is_reported() {
    let env = TestEnv::new();
    let tree = generate_tree(&env.path("src"), &TreeSpec::small(14));
    env.backup(&tree.root, &[]);
    // The largest pack holds file data (the file list has a small pack of its own).
    let data_pack = env.packs().into_iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap();
    let id = data_pack.file_name().unwrap().to_str().unwrap().to_string();
    fs::remove_file(&data_pack).unwrap();
    // A client that never saw the pack learns of it from the index file.
    let check = new_client(&env, &["check"]);
    check.failure().mentions(&id).mentions("missing");
    // And a damaged index file is passed over, not trusted: the packs are read instead.
    for file in index_files(&env) {
        flip_byte(&file, 30);
    }
    new_client(&env, &["ls", "latest"]).success();
    new_client(&env, &["check"]).failure().mentions("index").mentions("does not match its name");
}
