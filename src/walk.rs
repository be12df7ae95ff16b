//! Walking a tree: every entry below a root, depth first, each directory's children
//! sorted by their name bytes (`path_order`, which lets a backup walk its parent's file
//! list side by side with the tree), and the manifest entry of each entry walked.

use crate::error::{Error, Result};
use crate::manifest::{Excluded, FileEntry, FileKind, FileRole};
use crate::time::Timestamp;
use std::cmp::Ordering;
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Component-wise byte order of relative paths: the order in which `Walker` yields them.
pub fn path_order(a: &[u8], b: &[u8]) -> Ordering {
    a.split(|&c| c == b'/').cmp(b.split(|&c| c == b'/'))
}

/// One walked entry: its manifest path, where it is on disk, and its metadata.
pub struct Found {
    pub rel: Vec<u8>,
    pub abs: PathBuf,
    pub meta: Metadata,
}

pub enum Walked {
    Entry(Found),
    /// An entry or a directory listing that could not be read.
    Error {
        rel: Vec<u8>,
        message: String,
    },
}

struct Frame {
    rel: Vec<u8>,
    abs: PathBuf,
    /// Children still to visit, in reverse order so `pop` yields the next; with their
    /// directory entry while the directory is open (see `OPEN_LEVELS`).
    pending: Vec<(OsString, Option<fs::DirEntry>)>,
}

/// Directory levels kept open while their children are visited: an entry of an open
/// directory is stat'ed relative to it (`fstatat`), not by a path the kernel resolves
/// from the root each time (a third of a no-change backup of a million files went to
/// path lookups). Each open level holds a file descriptor, so deeper levels fall back to
/// paths rather than run out of descriptors.
const OPEN_LEVELS: usize = 32;

/// Walks a tree without following symlinks, yielding the root's descendants (not the
/// root itself) in `path_order`. Memory: one sorted name list per open directory level.
pub struct Walker {
    stack: Vec<Frame>,
    queued: Option<Walked>,
    /// Directories yielded but not entered (other components' places).
    skip: Vec<Vec<u8>>,
    /// Entries neither yielded nor entered (a plan's excludes), and those it met.
    exclude: Option<Exclude>,
}

/// Glob patterns, relative to the root (`*` stays within one path element, `**` spans
/// any number), and the paths they left out with the pattern that did.
struct Exclude {
    patterns: Vec<String>,
    set: globset::GlobSet,
    excluded: Vec<Excluded>,
}

impl Walker {
    pub fn new(root: &Path) -> Walker {
        Walker::skipping(root, Vec::new())
    }

    pub fn skipping(root: &Path, skip: Vec<Vec<u8>>) -> Walker {
        let mut walker = Walker { stack: Vec::new(), queued: None, skip, exclude: None };
        walker.queued = walker.enter(Vec::new(), root.to_path_buf());
        walker
    }

    /// A walker that leaves out what `patterns` match (globs relative to the root).
    pub fn excluding(root: &Path, patterns: &[String]) -> Result<Walker> {
        let mut builder = globset::GlobSetBuilder::new();
        for pattern in patterns {
            let glob = globset::GlobBuilder::new(pattern).literal_separator(true).build().map_err(|e| {
                Error::Invalid(format!("{}: exclude pattern {pattern:?}: {e}", root.display()))
            })?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|e| Error::Invalid(format!("{}: {e}", root.display())))?;
        let mut walker = Walker::new(root);
        walker.exclude = Some(Exclude { patterns: patterns.to_vec(), set, excluded: Vec::new() });
        Ok(walker)
    }

    /// The entries left out so far by the walker's exclude patterns, with the pattern.
    pub fn excluded(&self) -> &[Excluded] {
        self.exclude.as_ref().map_or(&[], |e| &e.excluded)
    }

    fn enter(&mut self, rel: Vec<u8>, abs: PathBuf) -> Option<Walked> {
        let keep_open = self.stack.len() < OPEN_LEVELS;
        let names = fs::read_dir(&abs).and_then(|entries| {
            entries.map(|e| e.map(|e| (e.file_name(), keep_open.then_some(e)))).collect::<Result<Vec<_>, _>>()
        });
        match names {
            Ok(mut names) => {
                names.sort_by(|(a, _), (b, _)| b.as_bytes().cmp(a.as_bytes()));
                self.stack.push(Frame { rel, abs, pending: names });
                None
            }
            Err(e) => Some(Walked::Error { rel, message: format!("cannot list {}: {e}", abs.display()) }),
        }
    }
}

impl Iterator for Walker {
    type Item = Walked;

    fn next(&mut self) -> Option<Walked> {
        if let Some(queued) = self.queued.take() {
            return Some(queued);
        }
        loop {
            let frame = self.stack.last_mut()?;
            let Some((name, entry)) = frame.pending.pop() else {
                self.stack.pop();
                continue;
            };
            let abs = frame.abs.join(&name);
            let mut rel = frame.rel.clone();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            // Both as `lstat`: a symlink is described, not followed.
            let meta = match entry.map_or_else(|| fs::symlink_metadata(&abs), |e| e.metadata()) {
                Ok(meta) => meta,
                // Gone between listing and stat: it was never part of this snapshot.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Some(Walked::Error { rel, message: format!("{}: {e}", abs.display()) }),
            };
            if let Some(exclude) = &mut self.exclude {
                if let Some(&k) = exclude.set.matches(Path::new(OsStr::from_bytes(&rel))).first() {
                    let reason = format!("excluded by pattern {:?}", exclude.patterns[k]);
                    exclude.excluded.push(Excluded { path: rel, reason });
                    continue;
                }
            }
            if meta.is_dir() && !self.skip.contains(&rel) {
                self.queued = self.enter(rel.clone(), abs.clone());
            }
            return Some(Walked::Entry(Found { rel, abs, meta }));
        }
    }
}

/// A walk run on a thread of its own, a few batches ahead of its reader: a backup of
/// small files spends as long in `lstat` and `getdents` as in everything else it does,
/// and this lets the two share the cores. Memory: `AHEAD` batches of `BATCH` entries.
pub struct Prefetched {
    batches: crossbeam_channel::Receiver<Vec<Walked>>,
    current: std::vec::IntoIter<Walked>,
    walker: Option<std::thread::JoinHandle<Walker>>,
    excluded: Vec<Excluded>,
}

const BATCH: usize = 256;
const AHEAD: usize = 4;

impl Prefetched {
    pub fn new(mut walker: Walker) -> Prefetched {
        let (send, batches) = crossbeam_channel::bounded(AHEAD);
        let thread = std::thread::spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            for walked in &mut walker {
                batch.push(walked);
                if batch.len() == BATCH {
                    // The reader went away (the backup stopped): so does the walk.
                    if send.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))).is_err() {
                        return walker;
                    }
                }
            }
            let _ = send.send(batch);
            walker
        });
        Prefetched { batches, current: Vec::new().into_iter(), walker: Some(thread), excluded: Vec::new() }
    }

    /// The entries the walk's exclude patterns left out; complete once it has ended.
    pub fn excluded(&self) -> &[Excluded] {
        &self.excluded
    }
}

impl Iterator for Prefetched {
    type Item = Walked;

    fn next(&mut self) -> Option<Walked> {
        loop {
            if let Some(walked) = self.current.next() {
                return Some(walked);
            }
            match self.batches.recv() {
                Ok(batch) => self.current = batch.into_iter(),
                Err(_) => {
                    let walker = self.walker.take()?.join().expect("walker thread panicked");
                    self.excluded = walker.excluded().to_vec();
                    return None;
                }
            }
        }
    }
}

/// The manifest entry for a walked file, without chunks.
pub fn entry_from(found: &Found) -> std::io::Result<FileEntry> {
    let meta = &found.meta;
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        FileKind::Regular
    } else if ft.is_dir() {
        FileKind::Directory
    } else if ft.is_symlink() {
        FileKind::Symlink { target: fs::read_link(&found.abs)?.as_os_str().as_bytes().to_vec() }
    } else if ft.is_fifo() {
        FileKind::Fifo
    } else if ft.is_socket() {
        FileKind::Socket
    } else if ft.is_char_device() {
        FileKind::CharDevice { rdev: meta.rdev() }
    } else {
        FileKind::BlockDevice { rdev: meta.rdev() }
    };
    Ok(FileEntry {
        path: found.rel.clone(),
        size: if kind == FileKind::Regular { meta.size() } else { 0 },
        kind,
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: Timestamp { secs: meta.mtime(), nanos: meta.mtime_nsec() as u32 },
        ctime: Timestamp { secs: meta.ctime(), nanos: meta.ctime_nsec() as u32 },
        inode: meta.ino(),
        device: meta.dev(),
        links: meta.nlink(),
        role: FileRole::Plain,
        log_number: None,
        chunker: crate::config::CHUNKER_DEFAULT,
        chunks: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_order_is_component_wise() {
        let mut paths: Vec<&[u8]> = vec![b"a0", b"a/x", b"a.b", b"a", b"b/c/d", b"b"];
        paths.sort_by(|a, b| path_order(a, b));
        assert_eq!(paths, vec![&b"a"[..], b"a/x", b"a.b", b"a0", b"b", b"b/c/d"]);
    }

    #[test]
    fn walker_yields_path_order_and_skips_root() {
        let dir = tempfile::tempdir().unwrap();
        for p in ["a/x", "a.b", "a0", "b/c/d"] {
            let path = dir.path().join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, p).unwrap();
        }
        let rels: Vec<Vec<u8>> = Walker::new(dir.path())
            .map(|w| match w {
                Walked::Entry(f) => f.rel,
                Walked::Error { message, .. } => panic!("{message}"),
            })
            .collect();
        let mut sorted = rels.clone();
        sorted.sort_by(|a, b| path_order(a, b));
        assert_eq!(rels, sorted);
        assert_eq!(rels.len(), 7);
        assert_eq!(rels[0], b"a");
    }

    #[test]
    fn entries_below_the_open_levels_and_symlinks_are_described_as_lstat_does() {
        let dir = tempfile::tempdir().unwrap();
        let mut deep = dir.path().to_path_buf();
        for level in 0..OPEN_LEVELS + 3 {
            deep.push(format!("d{level}"));
            fs::create_dir(&deep).unwrap();
            fs::write(deep.join("file"), level.to_string()).unwrap();
            std::os::unix::fs::symlink("file", deep.join("link")).unwrap();
        }
        let mut seen = 0;
        for walked in Walker::new(dir.path()) {
            let Walked::Entry(found) = walked else { panic!("walk error") };
            let expected = fs::symlink_metadata(&found.abs).unwrap();
            assert_eq!(
                (found.meta.ino(), found.meta.size(), found.meta.file_type().is_symlink()),
                (expected.ino(), expected.size(), expected.file_type().is_symlink()),
                "{}",
                found.abs.display()
            );
            seen += 1;
        }
        assert_eq!(seen, 3 * (OPEN_LEVELS + 3));
    }

    #[test]
    fn a_prefetched_walk_yields_what_the_walk_does_and_its_exclusions() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..1000 {
            let path = dir.path().join(format!("d{}/f{i}", i % 7));
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "x").unwrap();
        }
        let rels = |walk: &mut dyn Iterator<Item = Walked>| -> Vec<Vec<u8>> {
            walk.map(|w| match w {
                Walked::Entry(f) => f.rel,
                Walked::Error { message, .. } => panic!("{message}"),
            })
            .collect()
        };
        let patterns = vec!["d3".to_string()];
        let mut prefetched = Prefetched::new(Walker::excluding(dir.path(), &patterns).unwrap());
        let got = rels(&mut prefetched);
        assert_eq!(got, rels(&mut Walker::excluding(dir.path(), &patterns).unwrap()));
        assert_eq!(got.len(), 6 + 1000 - 143);
        assert_eq!(prefetched.excluded().len(), 1);
        assert!(prefetched.next().is_none(), "stays ended");
    }
}
