//! Compression of single chunks, with no I/O: a chunk becomes a `Frame` (a standalone
//! zstd frame, raw bytes, or a delta against another chunk), and stored bytes decode
//! back into a chunk only once verified against its id.

use crate::error::ChunkError;
use crate::format::MAX_CHUNK_LEN;
use crate::id::ChunkId;

/// How a chunk's bytes are stored in its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Raw = 0,
    Zstd = 1,
    /// zstd with the bytes of another chunk, the reference, as a raw-content prefix:
    /// a new version of a database page range costs little more than its changes.
    /// A reference is always read from a whole copy, so decoding reads at most two
    /// chunks.
    Delta = 2,
}

impl Codec {
    pub fn from_byte(b: u8) -> Option<Codec> {
        match b {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            2 => Some(Codec::Delta),
            _ => None,
        }
    }
}

/// A chunk ready for a pack: compressed, or raw where compression did not help.
pub struct Frame {
    pub id: ChunkId,
    pub raw_len: u32,
    pub codec: Codec,
    /// The chunk a `Delta` frame is decoded against.
    pub reference: Option<ChunkId>,
    pub bytes: Vec<u8>,
}

/// This thread's compression context and the buffer it compresses into: making a
/// context per chunk cost 10% of compression, and a buffer of the chunk's compress bound
/// per chunk cost page faults and kept the slack of every frame in the queues.
struct Scratch {
    level: i32,
    compressor: zstd::bulk::Compressor<'static>,
    out: Vec<u8>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Option<Scratch>> = const { std::cell::RefCell::new(None) };
}

/// Compresses one chunk as a standalone zstd frame; keeps it raw when that is not
/// smaller, or without trying when it begins as a stream of a compressed format.
pub fn compress(id: ChunkId, raw: Vec<u8>, level: i32) -> Frame {
    let raw_len = raw.len() as u32;
    let compressed = if looks_compressed(&raw) { None } else { zstd_smaller(&raw, level) };
    match compressed {
        Some(bytes) => Frame { id, raw_len, codec: Codec::Zstd, reference: None, bytes },
        None => Frame { id, raw_len, codec: Codec::Raw, reference: None, bytes: raw },
    }
}

/// One zstd frame of `raw`, exactly as long as it is, when that is shorter than `raw`.
fn zstd_smaller(raw: &[u8], level: i32) -> Option<Vec<u8>> {
    SCRATCH.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().map(|s| s.level) != Some(level) {
            let compressor = zstd::bulk::Compressor::new(level).ok()?;
            *slot = Some(Scratch { level, compressor, out: Vec::new() });
        }
        let Scratch { compressor, out, .. } = slot.as_mut()?;
        out.clear();
        out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        let len = compressor.compress_to_buffer(raw, out).ok()?;
        (len < raw.len()).then(|| out[..len].to_vec())
    })
}

/// Whether `raw` begins as a gzip, xz, zstd or 7z stream. zstd gains almost nothing on
/// those (on a tree of system files: 0.4% of 76 MB of gzip files, mostly man pages and
/// changelogs, for 6% of all compression time), so they are stored raw untried. Formats
/// that compress only their parts (PNG, JPEG, zip) still gain 2 to 10% and are tried.
/// A chunk that only happens to begin like this is stored raw: larger, never wrong.
fn looks_compressed(raw: &[u8]) -> bool {
    const MAGICS: [&[u8]; 4] = [
        &[0x1f, 0x8b, 0x08],                   // gzip, deflate
        &[0xfd, b'7', b'z', b'X', b'Z', 0x00], // xz
        &[0x28, 0xb5, 0x2f, 0xfd],             // zstd frame
        &[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c], // 7z
    ];
    MAGICS.iter().any(|magic| raw.starts_with(magic))
}

/// Compresses one chunk against `reference` (the chunk `reference_id`, stored whole):
/// kept as a delta only where that is much smaller than compressing the chunk alone,
/// since every delta costs a second chunk to read at restore.
pub fn compress_against(
    id: ChunkId,
    raw: Vec<u8>,
    level: i32,
    reference_id: ChunkId,
    reference: &[u8],
) -> Frame {
    let Some(delta) = zstd_with_prefix(&raw, reference, level) else {
        return compress(id, raw, level);
    };
    // Under a sixty-fourth of the chunk: compressing it alone could save a few hundred
    // bytes at most, not worth a second compression.
    if delta.len() <= raw.len() / 64 {
        return Frame {
            id,
            raw_len: raw.len() as u32,
            codec: Codec::Delta,
            reference: Some(reference_id),
            bytes: delta,
        };
    }
    let whole = compress(id, raw, level);
    if delta.len() < whole.bytes.len() / 2 {
        Frame { codec: Codec::Delta, reference: Some(reference_id), bytes: delta, ..whole }
    } else {
        whole
    }
}

/// One zstd frame of `raw` with `prefix` as raw-content prefix (ZSTD_CCtx_refPrefix).
fn zstd_with_prefix(raw: &[u8], prefix: &[u8], level: i32) -> Option<Vec<u8>> {
    use zstd::zstd_safe::{CCtx, CParameter};
    let mut cctx = CCtx::try_create()?;
    cctx.set_parameter(CParameter::CompressionLevel(level)).ok()?;
    cctx.ref_prefix(prefix).ok()?;
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(raw.len()));
    cctx.compress2(&mut out, raw).ok()?;
    Some(out)
}

/// Decodes stored bytes back into the chunk and verifies them against `id`: nothing
/// unverified ever leaves this function. A `Delta` frame needs its reference's bytes.
pub fn decode_chunk(
    id: &ChunkId,
    codec: Codec,
    raw_len: u32,
    stored: Vec<u8>,
    reference: Option<&[u8]>,
) -> Result<Vec<u8>, ChunkError> {
    let corrupt = |what: String| ChunkError::corrupt(*id, what);
    if raw_len > MAX_CHUNK_LEN {
        return Err(corrupt(format!("{raw_len} bytes is more than any chunk")));
    }
    let raw = match codec {
        Codec::Raw => stored,
        Codec::Zstd => {
            unzstd(&stored, raw_len as usize).map_err(|e| corrupt(format!("cannot decompress: {e}")))?
        }
        Codec::Delta => {
            let reference = reference.ok_or_else(|| corrupt("its reference chunk is not at hand".into()))?;
            unzstd_with_prefix(&stored, reference, raw_len as usize)
                .map_err(|e| corrupt(format!("cannot decompress against its reference: {e}")))?
        }
    };
    if raw.len() != raw_len as usize {
        return Err(corrupt(format!("{} bytes, expected {raw_len}", raw.len())));
    }
    if ChunkId::of(&raw) != *id {
        return Err(corrupt("content does not match its id".into()));
    }
    Ok(raw)
}

thread_local! {
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// One zstd frame of at most `capacity` bytes, with this thread's decompression context
/// (making one per chunk cost 3.5% of a restore).
fn unzstd(stored: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decompressor = match slot.as_mut() {
            Some(decompressor) => decompressor,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        decompressor.decompress(stored, capacity)
    })
}

fn unzstd_with_prefix(stored: &[u8], prefix: &[u8], capacity: usize) -> Result<Vec<u8>, String> {
    use zstd::zstd_safe::{get_error_name, DCtx};
    let mut dctx = DCtx::try_create().ok_or("out of memory")?;
    dctx.ref_prefix(prefix).map_err(get_error_name)?;
    let mut out = Vec::with_capacity(capacity);
    dctx.decompress(&mut out, stored).map_err(get_error_name)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(seed: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; 32768];
        blake3::Hasher::new().update(seed).finalize_xof().fill(&mut bytes);
        bytes
    }

    #[test]
    fn a_delta_decodes_only_against_its_reference() {
        let old = noise(b"old");
        let mut new = old.clone();
        new[1000..1008].copy_from_slice(b"changed!");
        let (old_id, new_id) = (ChunkId::of(&old), ChunkId::of(&new));
        let frame = compress_against(new_id, new.clone(), 3, old_id, &old);
        assert_eq!((frame.codec, frame.reference), (Codec::Delta, Some(old_id)));
        assert!(frame.bytes.len() < 100, "{} bytes", frame.bytes.len());
        assert_eq!(
            decode_chunk(&new_id, Codec::Delta, frame.raw_len, frame.bytes.clone(), Some(&old)).unwrap(),
            new
        );
        assert!(decode_chunk(&new_id, Codec::Delta, frame.raw_len, frame.bytes.clone(), None).is_err());
        let wrong = vec![0u8; old.len()];
        assert!(
            decode_chunk(&new_id, Codec::Delta, frame.raw_len, frame.bytes.clone(), Some(&wrong)).is_err()
        );
        // Unrelated content is not worth a delta.
        let unrelated = noise(b"unrelated");
        let frame = compress_against(ChunkId::of(&unrelated), unrelated, 3, old_id, &old);
        assert_eq!((frame.codec, frame.reference), (Codec::Raw, None));
    }

    #[test]
    fn damaged_frames_are_detected() {
        let raw = vec![7u8; 5000];
        let id = ChunkId::of(&raw);
        let frame = compress(id, raw, 3);
        let mut stored = frame.bytes.clone();
        let last = stored.len() - 1;
        stored[last] ^= 1;
        let err = decode_chunk(&id, frame.codec, frame.raw_len, stored, None).unwrap_err();
        assert!(matches!(err.kind, crate::error::ChunkErrorKind::Corrupt { .. }), "{err}");
        assert_eq!(err.id, id);
    }

    fn round_trip(raw: &[u8], level: i32) -> Frame {
        let id = ChunkId::of(raw);
        let frame = compress(id, raw.to_vec(), level);
        assert_eq!(frame.raw_len as usize, raw.len());
        let back = decode_chunk(&id, frame.codec, frame.raw_len, frame.bytes.clone(), None).unwrap();
        assert_eq!(back, raw);
        frame
    }

    #[test]
    fn one_thread_compresses_chunks_of_any_size_and_level_in_turn() {
        // The thread's context and buffer serve every chunk: large, then small, then
        // large again, at another level, each frame exactly its own bytes.
        let text: Vec<u8> = (0..(4 << 20)).map(|i: u32| b"cairn packs chunks "[(i % 19) as usize]).collect();
        for (len, level) in [(4 << 20, 3), (100, 3), (70_000, 1), (1, 3), (2 << 20, 19), (5000, 3)] {
            let frame = round_trip(&text[..len], level);
            if len >= 100 {
                assert_eq!(frame.codec, Codec::Zstd, "{len} bytes");
                assert!(frame.bytes.len() < len / 2, "{len} bytes as {}", frame.bytes.len());
                assert_eq!(frame.bytes.len(), zstd::bulk::compress(&text[..len], level).unwrap().len());
            } else {
                assert_eq!(frame.codec, Codec::Raw, "{len} bytes");
            }
        }
        assert_eq!(round_trip(&noise(b"incompressible"), 3).codec, Codec::Raw);
    }

    #[test]
    fn compressed_streams_are_stored_raw_untried() {
        // Compressible after its magic, yet stored raw: zstd is not even tried.
        for magic in [&b"\x1f\x8b\x08"[..], b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd", b"7z\xbc\xaf\x27\x1c"] {
            let mut raw = magic.to_vec();
            raw.resize(10_000, b'a');
            let frame = round_trip(&raw, 3);
            assert_eq!((frame.codec, frame.bytes), (Codec::Raw, raw));
        }
        // Formats that compress only parts of themselves are tried.
        for other in [&b"\x1f\x8b\x07"[..], b"\x89PNG", b"PK\x03\x04", b"\xff\xd8\xff"] {
            let mut raw = other.to_vec();
            raw.resize(10_000, b'a');
            assert_eq!(round_trip(&raw, 3).codec, Codec::Zstd);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_chunk_decodes_to_itself(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20_000),
            repeat in 1usize..4,
        ) {
            // Repeated, so that zstd also finds matches.
            let raw = raw.repeat(repeat);
            round_trip(&raw, 3);
        }
    }
}
