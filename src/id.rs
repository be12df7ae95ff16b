//! Typed BLAKE3 ids: a chunk is named by the hash of its uncompressed bytes, a pack and a
//! snapshot manifest by the hash of their file bytes.

use std::fmt;
use std::str::FromStr;

macro_rules! blake3_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, bincode::Encode, bincode::Decode)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub fn of(bytes: &[u8]) -> Self {
                Self(*blake3::hash(bytes).as_bytes())
            }

            pub fn to_hex(&self) -> String {
                to_hex(&self.0)
            }
        }

        impl From<blake3::Hash> for $name {
            fn from(hash: blake3::Hash) -> Self {
                Self(*hash.as_bytes())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.to_hex()[..12])
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                parse_hex32(s).map(Self)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }
    };
}

blake3_id!(
    /// BLAKE3-256 of a chunk's uncompressed bytes.
    ChunkId
);
blake3_id!(
    /// BLAKE3-256 of a pack file's bytes; also its file name.
    PackId
);
blake3_id!(
    /// BLAKE3-256 of a manifest file's bytes; also its file name.
    SnapshotId
);
blake3_id!(
    /// BLAKE3-256 of an index file's bytes; also its file name.
    IndexFileId
);

pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

fn parse_hex32(s: &str) -> Result<[u8; 32], String> {
    if s.len() != 64 {
        return Err(format!("{s:?} is not a 64-digit hex id"));
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).map_err(|_| format!("{s:?} is not hex"))?;
        out[i] = u8::from_str_radix(text, 16).map_err(|_| format!("{s:?} is not hex"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blake3_of_known_input_is_pinned() {
        // The BLAKE3 reference value for the empty input and for "abc".
        assert_eq!(
            ChunkId::of(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(
            ChunkId::of(b"abc").to_hex(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }

    #[test]
    fn hex_round_trip() {
        let id = PackId::of(b"pack");
        assert_eq!(id.to_hex().parse::<PackId>().unwrap(), id);
        assert!("zz".parse::<PackId>().is_err());
        assert!("g".repeat(64).parse::<PackId>().is_err());
    }
}
