//! The `qpid` store: an Apache Qpid Broker-J work directory (`${QPID_WORK}`). Each
//! virtualhost node keeps its configuration in `<node>/config` and each virtualhost its
//! messages in `<vhost>/messages` (their default places); each such store becomes a
//! component of its own type, placed where it was, so that restoring the snapshot gives
//! back the work directory:
//! - a Berkeley DB JE environment (`*.jdb`): `bdb-je`, copied hot like any JE store;
//! - a JSON store (`<name>.json`): `json`, the one file;
//! - Derby (`service.properties`, `seg0/`): no consistent hot copy exists, so it is
//!   refused unless `--offline` asserts that the broker is stopped, when it is copied
//!   as a plain tree.
//!
//! Everything else (the broker's `config.json`, preferences, logs) is the `broker`
//! component, placed at the work directory itself.

use super::dir::DirSource;
use super::offline::assert_no_open_files;
use super::{bdb_je, unsupported, Component, Planned, Source, SourceReport, Sourced, StoreType};
use crate::error::{Error, Hint, Result};
use crate::manifest::{Consistency, Excluded};
use crate::walk::Found;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The two kinds of store a work directory holds, by subdirectory name.
const STORE_DIRS: [&str; 2] = ["config", "messages"];

/// A work directory has the broker's `config.json`, a JSON object with a model version.
pub fn looks_like_work_dir(root: &Path) -> bool {
    let Ok(text) = fs::read_to_string(root.join("config.json")) else { return false };
    serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| v.get("modelVersion").is_some())
}

pub fn components(root: &Path, offline: bool) -> Result<Vec<Component>> {
    if !looks_like_work_dir(root) {
        return Err(unsupported(
            root,
            "not a Qpid broker work directory (no config.json with a modelVersion)".into(),
        ));
    }
    if offline {
        assert_no_open_files(root)?;
    }
    let mut stores = Vec::new();
    let mut names: Vec<_> =
        fs::read_dir(root).map_err(|e| Error::io(root, e))?.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for owner in names {
        let owner_dir = root.join(&owner);
        let Ok(meta) = fs::symlink_metadata(&owner_dir) else { continue };
        if meta.is_symlink() && STORE_DIRS.iter().any(|kind| owner_dir.join(kind).is_dir()) {
            let what = "a node or virtualhost directory is a symlink: cairn would keep only the link, not the stores behind it; back up its target with its own store type";
            return Err(unsupported(&owner_dir, what.into()));
        }
        if !meta.is_dir() {
            continue;
        }
        for kind in STORE_DIRS {
            let dir = owner_dir.join(kind);
            if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let placement = [owner.as_bytes(), b"/", kind.as_bytes()].concat();
            let owner = owner.to_string_lossy();
            let (store_type, files): (StoreType, Box<dyn Source>) = match classify(&dir)? {
                Kind::Je => (StoreType::BdbJe, Box::new(bdb_je::open(&dir, offline)?)),
                Kind::Json(file) => (StoreType::Json, Box::new(JsonStore::new(&dir, file)?)),
                Kind::Derby if offline => (StoreType::Dir, Box::new(DirSource::new(&dir)?)),
                Kind::Derby => {
                    let what = format!(
                        "{owner}'s {kind} store is Derby, which cannot be copied consistently while the broker runs; stop the broker and take an offline copy (or move the store to BDB)"
                    );
                    return Err(unsupported(&dir, what).with_hint(Hint::Offline));
                }
                // Not a store cairn knows (empty, or a JDBC node's leftovers): the
                // broker component keeps it as files.
                Kind::Unknown => continue,
            };
            debug_assert_eq!(files.store_type(), store_type);
            let name = format!("{owner}.{kind}");
            stores.push(Component { name, placement, root: dir, files });
        }
    }
    let skip = stores.iter().map(|s| s.placement.clone()).collect();
    let broker = Component {
        name: "broker".into(),
        placement: Vec::new(),
        root: root.to_path_buf(),
        files: Box::new(DirSource::skipping(root, skip)),
    };
    Ok(std::iter::once(broker).chain(stores).collect())
}

enum Kind {
    Je,
    /// The store's JSON file name.
    Json(Vec<u8>),
    Derby,
    Unknown,
}

fn classify(dir: &Path) -> Result<Kind> {
    if bdb_je::looks_like_environment(dir) {
        return Ok(Kind::Je);
    }
    let mut json = None;
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.flatten() {
        let name = entry.file_name().as_bytes().to_vec();
        // Derby puts its database in a subdirectory named after the node or host.
        if name == b"service.properties" || entry.path().join("service.properties").exists() {
            return Ok(Kind::Derby);
        }
        if name.ends_with(b".json") {
            json = Some(name);
        }
    }
    Ok(json.map_or(Kind::Unknown, Kind::Json))
}

/// A JSON store: its one file. The broker writes it whole to a temporary file and renames
/// that over it, so a copy of the file is always a complete version.
struct JsonStore {
    file: Option<Planned>,
    excluded: Vec<Excluded>,
}

impl JsonStore {
    fn new(dir: &Path, name: Vec<u8>) -> Result<JsonStore> {
        let abs = dir.join(std::ffi::OsStr::from_bytes(&name));
        let meta = fs::symlink_metadata(&abs).map_err(|e| Error::io(&abs, e))?;
        let mut excluded = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.flatten() {
            let other = entry.file_name().as_bytes().to_vec();
            if other != name {
                let reason = "not the store's file (its lock, or a save in progress)";
                excluded.push(Excluded { path: other, reason: reason.into() });
            }
        }
        excluded.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(JsonStore { file: Some(Planned::plain(Found { rel: name, abs, meta })), excluded })
    }
}

impl Iterator for JsonStore {
    type Item = Result<Sourced>;

    fn next(&mut self) -> Option<Result<Sourced>> {
        self.file.take().map(|f| Ok(Sourced::File(f)))
    }
}

impl Source for JsonStore {
    fn store_type(&self) -> StoreType {
        StoreType::Json
    }

    fn all_or_nothing(&self) -> bool {
        true
    }

    fn report(&self) -> SourceReport {
        SourceReport {
            consistency: Consistency::Unspecified,
            passes: 1,
            excluded: self.excluded.clone(),
            contiguous_logs: false,
            command: None,
        }
    }
}
