//! Where a restore writes: the target directory, made or checked to be empty, and each
//! component's place below it.

use crate::error::{Error, Hint, IoContext, Result};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The target must be an empty directory (any directory with `overwrite`), or is made.
pub(super) fn prepare_target(target: &Path, overwrite: bool) -> Result<()> {
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => {
            let empty = fs::read_dir(target).at(target)?.next().is_none();
            if !empty && !overwrite {
                let what = format!("target {} is not empty", target.display());
                return Err(Error::Restore(what).with_hint(Hint::Overwrite));
            }
            Ok(())
        }
        Ok(_) => Err(Error::Restore(format!("target {} exists and is not a directory", target.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir_all(target).at(target),
        Err(e) => Err(Error::io(target, e)),
    }
}

/// Descends `base` to `placement` (relative, '/'-separated, checked by the manifest
/// reader), making each missing directory; a non-directory in the way fails it. On
/// failure `base` is left where the descent stopped.
pub(super) fn make_place(base: &mut PathBuf, placement: &[u8]) -> Result<()> {
    let mut made = Ok(());
    for part in placement.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
        base.push(OsStr::from_bytes(part));
        made = match fs::symlink_metadata(&*base) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(Error::Restore(format!("{} exists and is not a directory", base.display()))),
            Err(_) => fs::create_dir(&*base).at(&*base),
        };
        if made.is_err() {
            break;
        }
    }
    made
}

/// The places of the components in `placed_apart` (all non-empty placements) that lie
/// inside `placement`, relative to it: a component placed at the target itself holds
/// every other one's place.
pub(super) fn reserved_within(placed_apart: &[Vec<u8>], placement: &[u8]) -> Vec<Vec<u8>> {
    placed_apart
        .iter()
        .filter(|p| **p != placement)
        .filter_map(|p| match placement.is_empty() {
            true => Some(p.clone()),
            false => p.strip_prefix(placement)?.strip_prefix(b"/").map(<[u8]>::to_vec),
        })
        .collect()
}
