//! The `dir` store: every entry of a tree in `path_order` (see `crate::walk`), or a
//! single file.

use crate::walk::{Found, Prefetched, Walked, Walker};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The `dir` store as a `Source`: a tree in `path_order`, or a single file.
pub struct DirSource {
    walker: Option<Prefetched>,
    single: Option<Found>,
}

impl DirSource {
    pub fn new(root: &Path) -> crate::error::Result<DirSource> {
        let meta = fs::metadata(root).map_err(|e| crate::error::Error::io(root, e))?;
        if meta.is_dir() {
            return Ok(DirSource { walker: Some(Prefetched::new(Walker::new(root))), single: None });
        }
        // A single file: a component holding just that file under its own name.
        let rel = root.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default();
        Ok(DirSource { walker: None, single: Some(Found { rel, abs: root.to_path_buf(), meta }) })
    }
}

impl DirSource {
    /// A tree without what `patterns` match (globs relative to the root).
    pub fn excluding(root: &Path, patterns: &[String]) -> crate::error::Result<DirSource> {
        Ok(DirSource { walker: Some(Prefetched::new(Walker::excluding(root, patterns)?)), single: None })
    }

    /// A tree without the contents of the directories at `skip` (relative paths).
    pub fn skipping(root: &Path, skip: Vec<Vec<u8>>) -> DirSource {
        DirSource { walker: Some(Prefetched::new(Walker::skipping(root, skip))), single: None }
    }
}

impl Iterator for DirSource {
    type Item = crate::error::Result<super::Sourced>;

    fn next(&mut self) -> Option<Self::Item> {
        let walked = match self.single.take() {
            Some(found) => Walked::Entry(found),
            None => self.walker.as_mut()?.next()?,
        };
        Some(Ok(match walked {
            Walked::Entry(found) => super::Sourced::File(super::Planned::plain(found)),
            Walked::Error { rel, message } => super::Sourced::Unreadable { rel, message },
        }))
    }
}

impl super::Source for DirSource {
    fn store_type(&self) -> super::StoreType {
        super::StoreType::Dir
    }

    fn all_or_nothing(&self) -> bool {
        false
    }

    fn report(&self) -> super::SourceReport {
        super::SourceReport {
            consistency: crate::manifest::Consistency::Unspecified,
            passes: 1,
            excluded: self.walker.as_ref().map_or_else(Vec::new, |w| w.excluded().to_vec()),
            contiguous_logs: false,
            command: None,
        }
    }
}
