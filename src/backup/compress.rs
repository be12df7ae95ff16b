//! Stage two of a backup: zstd every new chunk, or store a changed piece of a database
//! data file as a delta against the parent's piece at its offset, on the rayon pool.

use super::{Item, Payload};
use crate::chunk_reader::ChunkReader;
use crate::compress;
use crate::repo::Repository;
use crossbeam_channel::{Receiver, Sender};
use rayon::prelude::*;

/// Compresses the batches from `input` and passes them on, in order, to `output`; ends
/// when the producer closes `input` or the store stage closes `output`.
pub(super) fn run(repo: &Repository, input: Receiver<Vec<Item>>, output: Sender<Vec<Item>>) {
    let level = repo.config.compression.level;
    while let Ok(first) = input.recv() {
        // The next batch too when it is already waiting: a batch of a few large
        // chunks alone leaves a core idle while its last chunk compresses.
        let mut batches = vec![first];
        batches.extend(input.try_recv().ok());
        // A reader per batch, not per backup: a read view held for the whole
        // backup would keep every page its commits free from being reused, and
        // the index file would grow with each pack.
        let wants_reader = batches
            .iter()
            .flatten()
            .any(|item| matches!(item, Item::Chunk { payload: Payload::Raw { reference: Some(_), .. }, .. }));
        // Without a reader (the index unreadable, which the store stage
        // reports) chunks are stored whole: larger, never wrong.
        let reader = wants_reader.then(|| ChunkReader::new(repo).ok()).flatten();
        batches
            .par_iter_mut()
            .flat_map(|batch| batch.par_iter_mut())
            .for_each(|item| compress_item(item, level, reader.as_ref()));
        if batches.into_iter().any(|batch| output.send(batch).is_err()) {
            break;
        }
    }
}

fn compress_item(item: &mut Item, level: i32, reader: Option<&ChunkReader>) {
    if let Item::Chunk { id, payload, .. } = item {
        if let Payload::Raw { seq, bytes, reference } = std::mem::replace(payload, Payload::Known) {
            let whole =
                reader.zip(reference).and_then(|(reader, previous)| reader.whole_version_of(&previous));
            let frame = match whole {
                Some((reference, whole)) => compress::compress_against(*id, bytes, level, reference, &whole),
                None => compress::compress(*id, bytes, level),
            };
            *payload = Payload::Compressed { seq, frame };
        }
    }
}
