//! Backup's tests through the whole pipeline: what an unchanged tree and scattered
//! changes cost, and a failed pack write.

use crate::storage::{LockMode, Storage};
use crate::testing::{backup_tree, memory_storage, open, write_tree};

#[test]
fn an_unchanged_tree_costs_a_manifest_and_no_pack() {
    let dir = tempfile::tempdir().unwrap();
    let storage = memory_storage();
    let repo = open(&storage, LockMode::Append, None);
    let tree = write_tree(dir.path(), 1);
    let first = backup_tree(&repo, &tree);
    let packs = storage.list(crate::layout::PACKS).unwrap().len();
    // Files must be older than the quiet period to be taken from the parent unread.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let second = backup_tree(&repo, &tree);
    let summary = repo.summary(&second).unwrap();
    assert_eq!(summary.header.parent, Some(first));
    assert_eq!(summary.trailer.stats.stored_bytes, 0);
    assert_eq!(storage.list(crate::layout::PACKS).unwrap().len(), packs);
}

/// Times changed on every hundredth file touch every chunk of the file list; each
/// changed chunk is stored as a delta against the parent's, so the snapshot costs
/// a small part of its list.
#[test]
fn scattered_changes_cost_deltas_of_the_file_list() {
    use crate::compress::Codec;
    use crate::manifest::ManifestReader;
    let dir = tempfile::tempdir().unwrap();
    let storage = memory_storage();
    let repo = open(&storage, LockMode::Append, None);
    let files: Vec<_> = (0..3000).map(|i| dir.path().join(format!("d{:02}/f{i:04}", i / 100))).collect();
    for (i, file) in files.iter().enumerate() {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, format!("file {i}")).unwrap();
    }
    let first = backup_tree(&repo, dir.path());
    let list_of = |id| ManifestReader::file_lists(&storage, &id).unwrap().remove(0).1;
    let chunks = repo.index.view().unwrap().chunks().unwrap();
    let first_list = list_of(first);
    assert!(first_list.len() > 10, "{} chunks", first_list.len());
    let whole: u64 = first_list.iter().map(|c| chunks.get(&c.id).unwrap().unwrap().stored_len as u64).sum();
    drop(chunks);
    for file in files.iter().step_by(100) {
        let mtime = std::fs::metadata(file).unwrap().modified().unwrap();
        let handle = std::fs::File::options().write(true).open(file).unwrap();
        handle.set_modified(mtime + std::time::Duration::from_secs(1)).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let second = backup_tree(&repo, dir.path());
    let stored = repo.summary(&second).unwrap().trailer.stats.stored_bytes;
    assert!(stored * 4 < whole, "{stored} bytes stored for a list of {whole}");
    let chunks = repo.index.view().unwrap().chunks().unwrap();
    let second_list = list_of(second);
    let deltas = second_list.iter().filter(|c| chunks.get(&c.id).unwrap().unwrap().codec == Codec::Delta);
    assert!(deltas.count() > 10);
    let target = dir.path().join("restored");
    crate::testing::restore_to(&repo, &second, &target).unwrap();
    crate::testing::assert_same_files(dir.path().join("d07").as_path(), &target.join("d07"));
}

#[test]
fn a_failed_pack_write_leaves_no_snapshot() {
    use crate::storage::{Fault, FaultCounter, FaultyStorage};
    let dir = tempfile::tempdir().unwrap();
    let storage = memory_storage();
    let faulty =
        FaultyStorage::new(std::sync::Arc::new(storage.clone()), FaultCounter::failing_at(1, Fault::Fail));
    let options = crate::repo::OpenOptions {
        mode: LockMode::Append,
        lock_wait: std::time::Duration::ZERO,
        command: "test".into(),
        cache_dir: None,
    };
    let repo = crate::repo::Repository::open(std::sync::Arc::new(faulty), &options).unwrap();
    let input = super::Input::path(&write_tree(dir.path(), 1));
    let options = super::BackupOptions::new("tree", "h");
    let err = super::backup(&repo, &[input], &options, &crate::NoProgress).err().unwrap();
    assert!(err.to_string().contains("injected fault"), "{err}");
    assert!(storage.list(crate::layout::SNAPSHOTS).unwrap().is_empty());
}
