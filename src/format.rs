//! The only home of the on-disk constants: magics, versions, limits and the bincode
//! configuration. `format-spec/` explains each; change them only together with it.

/// Each kind of file carries its own version, raised only when that kind changes so
/// that an older reader stops there and nowhere else. History:
/// - 1: first format (config, packs, snapshot manifests as specified in format-spec/).
/// - 2: manifests only: a component's placement, differential and logs-only snapshots,
///   the hooks around the copy and the quiesce window.
/// - 3: packs only: chunks stored as deltas against a reference chunk (codec 2, whose
///   table entries carry the reference's id).
/// - 4: manifests only: a component's file records moved into its file list, chunks in
///   packs that `FileList` records name, so that snapshots share unchanged stretches
///   (manifest version 3).
/// - 6: a new kind of file, index files (version 1), which say where the chunks of
///   packs are; nothing else changed, and a repository without them is still read.
pub const CONFIG_VERSION: u32 = 1;
pub const PACK_VERSION: u32 = 2;
pub const MANIFEST_VERSION: u32 = 3;
/// Index files (`index/<id>`), new in format history item 6.
pub const INDEX_FILE_VERSION: u32 = 1;

/// `config`: magic, then version, then the encoded `Config`, then BLAKE3 of all before.
pub const CONFIG_MAGIC: [u8; 8] = *b"CAIRNCFG";
/// First bytes of every pack file.
pub const PACK_MAGIC: [u8; 8] = *b"CAIRNPAK";
/// Last bytes of every pack file, so a truncated pack is recognised at once.
pub const PACK_FOOTER_MAGIC: [u8; 8] = *b"CAIRNEND";
/// First bytes of every snapshot manifest.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"CAIRNSNP";
/// First bytes of every index file.
pub const INDEX_FILE_MAGIC: [u8; 8] = *b"CAIRNIDX";

/// magic (8) + version (4) + reserved (4): the head of packs and manifests.
pub const FILE_HEADER_LEN: usize = 16;
/// One pack table entry: id (32) + offset (8) + stored length (4) + raw length (4) + codec (1),
/// followed in a delta's entry by its reference's id (32).
pub const PACK_ENTRY_LEN: usize = 32 + 8 + 4 + 4 + 1;
/// Pack footer: table hash (32) + table offset (8) + entry count (4) + magic (8).
pub const PACK_FOOTER_LEN: usize = 32 + 8 + 4 + 8;

/// Packs are closed once they reach this size; chunks never span packs.
pub const DEFAULT_PACK_TARGET: u64 = 32 << 20;
/// A writer closes a pack once it holds this many chunks, whatever its size: a writer
/// holds the open pack's table, and the chunks not yet indexed, in memory, and a pack
/// of 32 MiB of 25-byte files would hold over a million (221 MiB peak for a backup of
/// a million small files). 65,536 entries cost about 14 MiB in flight; each pack is one
/// index commit, which for small chunks rewrites most of the index's leaves, so fewer
/// and larger packs cost less time. A writer's choice, not a format limit: readers
/// accept any count.
pub const MAX_PACK_ENTRIES: usize = 1 << 16;
/// Upper bound of one encoded manifest record or config body; a decoder refuses more,
/// so a corrupt length cannot make it allocate without limit.
pub const MAX_RECORD_LEN: u32 = 1 << 30;
/// A chunk is never larger than this (the fastcdc crate's own maximum).
pub const MAX_CHUNK_LEN: u32 = 16 << 20;

/// Source files are read with plain `read()` calls of multiples of this size: the largest
/// page size Berkeley DB uses, so a hot copy never reads a page in two pieces.
pub const READ_UNIT: usize = 64 << 10;

/// The bincode configuration of every structure on disk: little-endian, fixed-width
/// integers, lengths as u64. format-spec/encoding.md restates what this produces.
pub fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<{ MAX_RECORD_LEN as usize }>()
}

pub fn encode<T: bincode::Encode>(value: &T) -> Vec<u8> {
    // Encoding into a Vec cannot fail except past the limit, which no value we build reaches.
    bincode::encode_to_vec(value, bincode_config()).expect("encoding into memory")
}

/// Decodes `bytes` completely: trailing bytes are corruption, not slack.
pub fn decode<T: bincode::Decode<()>>(bytes: &[u8]) -> Result<T, String> {
    let (value, used) = bincode::decode_from_slice(bytes, bincode_config()).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - used));
    }
    Ok(value)
}

/// The file head shared by packs and manifests: magic, version, reserved zero.
pub fn file_header(magic: [u8; 8], version: u32) -> [u8; FILE_HEADER_LEN] {
    let mut head = [0u8; FILE_HEADER_LEN];
    head[..8].copy_from_slice(&magic);
    head[8..12].copy_from_slice(&version.to_le_bytes());
    head
}

/// Checks a file head; returns the version it names, at most `newest`.
pub fn check_file_header(head: &[u8], magic: [u8; 8], newest: u32) -> Result<u32, String> {
    if head.len() < FILE_HEADER_LEN || head[..8] != magic {
        return Err(format!("bad magic (expected {:?})", String::from_utf8_lossy(&magic)));
    }
    let version = read_u32(&head[8..12]);
    if version == 0 || version > newest {
        return Err(format!(
            "format version {version} is not supported (this cairn reads 1..={newest}; a newer cairn wrote it)"
        ));
    }
    Ok(version)
}

pub fn read_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"))
}

pub fn read_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(bincode::Encode, bincode::Decode, Debug, PartialEq)]
    struct Sample {
        a: u32,
        b: Option<u64>,
        c: Vec<u8>,
        d: [u8; 2],
    }

    #[test]
    fn bincode_layout_is_what_the_spec_says() {
        let bytes = encode(&Sample { a: 1, b: Some(2), c: vec![9], d: [7, 8] });
        let expected: Vec<u8> =
            [&1u32.to_le_bytes()[..], &[1], &2u64.to_le_bytes(), &1u64.to_le_bytes(), &[9], &[7, 8]].concat();
        assert_eq!(bytes, expected);
        assert_eq!(decode::<Sample>(&bytes).unwrap().b, Some(2));
    }

    #[test]
    fn decode_rejects_trailing_and_short_bytes() {
        let mut bytes = encode(&Sample { a: 1, b: None, c: vec![], d: [0, 0] });
        assert!(decode::<Sample>(&bytes[..bytes.len() - 1]).is_err());
        bytes.push(0);
        assert!(decode::<Sample>(&bytes).is_err());
    }

    #[test]
    fn header_round_trip_and_rejects_future_versions() {
        let head = file_header(SNAPSHOT_MAGIC, 2);
        assert_eq!(check_file_header(&head, SNAPSHOT_MAGIC, MANIFEST_VERSION), Ok(2));
        assert!(check_file_header(&head, PACK_MAGIC, PACK_VERSION).is_err());
        let mut future = head;
        future[8] = MANIFEST_VERSION as u8 + 1;
        assert!(check_file_header(&future, SNAPSHOT_MAGIC, MANIFEST_VERSION).is_err());
    }
}
