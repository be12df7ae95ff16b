//! Regular files of a restore, a batch at a time: created private and sized, their
//! chunks read, verified and written with positioned writes on all cores, then their
//! owner, mode and times set.

use crate::chunk_reader::ChunkReader;
use crate::error::{Error, IoContext, Result};
use crate::index::{ChunkTable, Location};
use crate::manifest::FileEntry;
use crate::Progress;
use rayon::prelude::*;
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Mutex;

/// Files restored together: their chunks are spread over the cores.
pub const BATCH_FILES: usize = 512;
pub const BATCH_BYTES: u64 = 256 << 20;
/// Chunks of one file handled by one task; large files are split across tasks.
const TASK_CHUNKS: usize = 4;

/// A regular file being restored: created, sized, waiting for its chunks.
pub struct Pending {
    pub entry: FileEntry,
    pub path: PathBuf,
    pub file: File,
    locations: Vec<Location>,
    error: Mutex<Option<Error>>,
}

/// A file whose data is written; `result` says whether it is complete and verified.
pub struct Written {
    pub entry: FileEntry,
    pub path: PathBuf,
    pub file: File,
    pub result: Result<()>,
}

/// Creates the file (mode 0600 until its data is complete: nobody reads a secret
/// half-restored) and finds every chunk. `path` must not exist.
pub fn create(entry: FileEntry, path: PathBuf, chunks: &ChunkTable) -> Result<Pending> {
    let file = File::options().write(true).create_new(true).mode(0o600).open(&path).at(&path)?;
    let prepared = (|| {
        file.set_len(entry.size).at(&path)?;
        let mut locations = Vec::with_capacity(entry.chunks.len());
        for chunk in &entry.chunks {
            let location = chunks.get(&chunk.id)?.ok_or_else(|| {
                Error::Restore(format!(
                    "{}: chunk {} is missing from the repository",
                    path.display(),
                    chunk.id
                ))
            })?;
            if location.raw_len != chunk.len {
                let what =
                    format!("{}: chunk {} has the wrong length in the index", path.display(), chunk.id);
                return Err(Error::Restore(what));
            }
            locations.push(location);
        }
        Ok(locations)
    })();
    match prepared {
        Ok(locations) => Ok(Pending { entry, path, file, locations, error: Mutex::new(None) }),
        Err(e) => {
            let _ = fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Writes the chunks of every file in `batch`, in parallel.
pub fn write_all(reader: &ChunkReader, batch: Vec<Pending>, progress: &dyn Progress) -> Vec<Written> {
    let mut tasks = Vec::new();
    for (file_index, pending) in batch.iter().enumerate() {
        let mut offset = 0u64;
        let mut first = 0;
        while first < pending.locations.len() {
            let end = (first + TASK_CHUNKS).min(pending.locations.len());
            tasks.push((file_index, first..end, offset));
            offset += pending.locations[first..end].iter().map(|l| l.raw_len as u64).sum::<u64>();
            first = end;
        }
    }
    tasks.par_iter().for_each(|(file_index, range, offset)| {
        let pending = &batch[*file_index];
        if let Err(e) = write_chunks(reader, pending, range.clone(), *offset, progress) {
            pending.error.lock().expect("error slot").get_or_insert(e);
        }
    });
    batch
        .into_iter()
        .map(|p| {
            let result = match p.error.into_inner().expect("error slot") {
                Some(e) => Err(e),
                None => Ok(()),
            };
            Written { entry: p.entry, path: p.path, file: p.file, result }
        })
        .collect()
}

fn write_chunks(
    reader: &ChunkReader,
    pending: &Pending,
    range: std::ops::Range<usize>,
    mut offset: u64,
    progress: &dyn Progress,
) -> Result<()> {
    for (location, chunk) in pending.locations[range.clone()].iter().zip(&pending.entry.chunks[range]) {
        let raw = reader.read_at(&chunk.id, location)?;
        // The file was sized up front: runs of zeros stay holes.
        if raw.iter().any(|&b| b != 0) {
            pending.file.write_all_at(&raw, offset).map_err(|e| Error::Restore(format!("write: {e}")))?;
        }
        offset += raw.len() as u64;
        progress.advance(0, raw.len() as u64);
    }
    Ok(())
}
