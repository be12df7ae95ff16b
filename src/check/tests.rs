//! Check's tests: damage in packs, in file lists, and packs gone since an index saw them.

use super::*;
use crate::storage::{LockMode, Storage};
use crate::testing::{backup_tree, memory_storage, open, write_tree};

#[test]
fn a_damaged_frame_is_found_by_reading_the_data_only() {
    let dir = tempfile::tempdir().unwrap();
    let storage = memory_storage();
    let repo = open(&storage, LockMode::Append, None);
    backup_tree(&repo, &write_tree(dir.path(), 1));
    // Byte 100 of the data pack lies inside its first frame, before the table.
    let pack = layout::pack(&crate::testing::data_packs(&repo)[0].0);
    drop(repo);
    storage.corrupt(&pack, |bytes| bytes[100] ^= 0x10);
    let repo = open(&storage, LockMode::Shared, None);
    assert!(check(&repo, false, &crate::NoProgress).unwrap().is_sound());
    let report = check(&repo, true, &crate::NoProgress).unwrap();
    assert!(!report.is_sound());
    let id = layout::pack_id(&pack).unwrap();
    assert!(report.problems.iter().any(|p| p.pack == Some(id)), "{:?}", report.problems);
}

/// A damaged chunk of a file list damages its whole component: check names it, and
/// restore refuses.
#[test]
fn a_damaged_file_list_is_its_whole_components_damage() {
    let dir = tempfile::tempdir().unwrap();
    let storage = memory_storage();
    let id = backup_tree(&open(&storage, LockMode::Append, None), &write_tree(&dir.path().join("t"), 1));
    let list = crate::manifest::ManifestReader::file_lists(&storage, &id).unwrap().remove(0).1;
    let repo = open(&storage, LockMode::Shared, None);
    let location = repo.index.view().unwrap().chunks().unwrap().get(&list[0].id).unwrap().unwrap();
    drop(repo);
    let at = location.offset as usize + location.stored_len as usize / 2;
    storage.corrupt(&layout::pack(&location.pack), |bytes| bytes[at] ^= 0x10);
    let repo = open(&storage, LockMode::Shared, None);
    let report = check(&repo, true, &crate::NoProgress).unwrap();
    let problem = report.problems.iter().find(|p| p.pack == Some(location.pack)).expect("the pack is named");
    assert!(problem.affected.iter().any(|a| a.snapshot == id && a.path.contains("file list")), "{problem:?}");
    let err = crate::testing::restore_to(&repo, &id, &dir.path().join("out")).unwrap_err();
    assert!(err.to_string().contains("file list"), "{err}");
}

#[test]
fn a_pack_gone_since_the_index_saw_it_is_named_with_the_files_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let storage = memory_storage();
    let id = backup_tree(&open(&storage, LockMode::Append, None), &write_tree(&dir.path().join("t"), 1));
    // A reader with a cache sees the pack, then it disappears.
    drop(open(&storage, LockMode::Shared, Some(&cache)));
    let pack = storage.list(layout::PACKS).unwrap().remove(0).name;
    storage.delete(&pack).unwrap();
    let report = check(&open(&storage, LockMode::Shared, Some(&cache)), false, &crate::NoProgress).unwrap();
    let gone = layout::pack_id(&pack).unwrap();
    let problem = report.problems.iter().find(|p| p.pack == Some(gone)).expect("the gone pack is named");
    assert!(problem.what.contains("missing"), "{}", problem.what);
    assert!(problem.affected.iter().any(|a| a.snapshot == id), "{problem:?}");
}

/// Regression: a reader's cache that saw packs which a prune (or a copy of the
/// repository put back) has since replaced took their chunks for lost.
#[test]
fn packs_replaced_since_the_cache_saw_them_are_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let storage = memory_storage();
    let writer = open(&storage, LockMode::Exclusive, None);
    let old = backup_tree(&writer, &write_tree(&dir.path().join("t1"), 1));
    backup_tree(&writer, &write_tree(&dir.path().join("t2"), 2));
    drop(open(&storage, LockMode::Shared, Some(&cache)));
    writer.remove_snapshot(&old).unwrap();
    let options = crate::prune::PruneOptions { max_unused_percent: 0.0, dry_run: false };
    let pruned = crate::prune::prune(&writer, &options, &crate::NoProgress).unwrap();
    assert!(pruned.packs_repacked + pruned.packs_deleted > 0, "{pruned:?}");
    let reader = open(&storage, LockMode::Shared, Some(&cache));
    assert!(!reader.gone_packs().is_empty());
    let report = check(&reader, true, &crate::NoProgress).unwrap();
    assert!(report.is_sound(), "{:?}", report.problems);
}
