//! The repository `config` file: what every client must agree on to write compatible
//! data (chunker profiles, compression) plus the repository's identity.
//!
//! ```text
//! magic "CAIRNCFG" | version u32 | reserved u32 | bincode(Config) | BLAKE3(all before) [32]
//! ```

use crate::chunker::ChunkerParams;
use crate::error::{Error, Hint, Result};
use crate::format::{self, CONFIG_MAGIC, FILE_HEADER_LEN};
use crate::layout;
use crate::storage::{self, Storage};
use crate::time::Timestamp;
use bincode::{Decode, Encode};
use std::path::Path;

pub const COMPRESSION_ZSTD: u8 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, serde::Serialize)]
pub struct Compression {
    /// 1 = zstd (the only one in version 1).
    pub algorithm: u8,
    pub level: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, serde::Serialize)]
pub struct Config {
    pub repository_id: [u8; 32],
    pub created: Timestamp,
    /// Chunker profiles, referred to by index from each manifest file entry.
    /// A new repository has DEFAULT, FINE, MEDIUM and PAGES, in that order (one made
    /// before PAGES existed has the first three).
    pub chunkers: Vec<ChunkerParams>,
    pub compression: Compression,
    /// Packs are closed when they reach this size.
    pub pack_target: u64,
}

/// The chunker profiles of a manifest entry's `chunker` field.
pub const CHUNKER_DEFAULT: u8 = 0;
pub const CHUNKER_FINE: u8 = 1;
pub const CHUNKER_MEDIUM: u8 = 2;
pub const CHUNKER_PAGES: u8 = 3;

impl Config {
    pub fn new(repository_id: [u8; 32]) -> Config {
        Config {
            repository_id,
            created: Timestamp::now(),
            chunkers: vec![
                ChunkerParams::DEFAULT,
                ChunkerParams::FINE,
                ChunkerParams::MEDIUM,
                ChunkerParams::PAGES,
            ],
            compression: Compression { algorithm: COMPRESSION_ZSTD, level: 3 },
            pack_target: format::DEFAULT_PACK_TARGET,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = format::file_header(CONFIG_MAGIC, format::CONFIG_VERSION).to_vec();
        bytes.extend(format::encode(self));
        let sum = blake3::hash(&bytes);
        bytes.extend_from_slice(sum.as_bytes());
        bytes
    }

    pub fn decode(bytes: &[u8], path: &Path) -> Result<Config> {
        let bad = |what: String| Error::corrupt(path, what);
        if bytes.len() < FILE_HEADER_LEN + 32 {
            return Err(bad(format!("{} bytes is too short for a config", bytes.len())));
        }
        format::check_file_header(bytes, CONFIG_MAGIC, format::CONFIG_VERSION).map_err(bad)?;
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if blake3::hash(body).as_bytes() != sum {
            return Err(bad("config checksum mismatch".into()));
        }
        let config: Config = format::decode(&body[FILE_HEADER_LEN..]).map_err(bad)?;
        config.validate().map_err(bad)?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.chunkers.len() < 3 {
            return Err("config lacks the default chunker profiles".into());
        }
        for params in &self.chunkers {
            params.validate()?;
        }
        if self.compression.algorithm != COMPRESSION_ZSTD {
            return Err(format!("unknown compression algorithm {}", self.compression.algorithm));
        }
        if !zstd::compression_level_range().contains(&self.compression.level) {
            return Err(format!("zstd level {} is out of range", self.compression.level));
        }
        Ok(())
    }

    pub fn chunker(&self, profile: u8) -> Option<&ChunkerParams> {
        self.chunkers.get(profile as usize)
    }

    /// The profile to cut with where a store asks for `wanted`: a repository made before
    /// the pages profile existed cuts database containers with the fine one, as then.
    pub fn profile_for(&self, wanted: u8) -> u8 {
        match wanted {
            CHUNKER_PAGES if self.chunker(CHUNKER_PAGES).is_none() => CHUNKER_FINE,
            _ => wanted,
        }
    }
}

/// Reads and checks the config; the error says when `storage` holds no repository.
pub fn read(storage: &dyn Storage) -> Result<Config> {
    let path = storage.describe(layout::CONFIG);
    let bytes = storage.read(layout::CONFIG).map_err(|e| match storage::is_not_found(&e) {
        true => Error::Repository {
            path: path.parent().unwrap_or(&path).to_path_buf(),
            what: "is not a cairn repository (no config file)".into(),
        }
        .with_hint(Hint::Init),
        false => e,
    })?;
    Config::decode(&bytes, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trip_and_checksum() {
        let config = Config::new([7; 32]);
        let mut bytes = config.encode();
        let path = Path::new("config");
        assert_eq!(Config::decode(&bytes, path).unwrap(), config);
        bytes[20] ^= 1;
        assert!(Config::decode(&bytes, path).unwrap_err().to_string().contains("checksum"));
    }
}
