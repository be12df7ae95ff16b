//! Where a repository is, as the user names it: a local directory, or
//! `s3:http://HOST:PORT/BUCKET/PREFIX` for a bucket of an S3-compatible store.

use super::{LocalStorage, ReadCache, S3Location, S3Storage, Storage};
use crate::error::{Error, Result};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3(S3Location),
}

impl Location {
    /// `s3:...` is a bucket; anything else a path (`./s3:x` names a directory).
    pub fn parse(arg: &OsStr) -> Result<Location> {
        match arg.as_bytes().strip_prefix(b"s3:") {
            Some(rest) => {
                let rest = std::str::from_utf8(rest)
                    .map_err(|_| Error::Invalid(format!("{}: not UTF-8", arg.to_string_lossy())))?;
                S3Location::parse(rest).map(Location::S3).map_err(Error::Invalid)
            }
            None => Ok(Location::Local(PathBuf::from(arg))),
        }
    }

    pub fn open(&self) -> Result<Arc<dyn Storage>> {
        Ok(match self {
            Location::Local(root) => Arc::new(LocalStorage::new(root)),
            // Each request is a round trip: chunk-sized reads are served from larger ones.
            Location::S3(location) => Arc::new(ReadCache::new(S3Storage::new(location.clone())?)),
        })
    }

    /// As the user would write it.
    pub fn display(&self) -> String {
        match self {
            Location::Local(root) => root.display().to_string(),
            Location::S3(location) => location.url(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_are_buckets_and_the_rest_paths() {
        let s3 = Location::parse(OsStr::new("s3:http://127.0.0.1:3900/b/p")).unwrap();
        assert!(matches!(&s3, Location::S3(l) if l.bucket == "b" && l.prefix == "p"));
        assert_eq!(s3.display(), "s3:http://127.0.0.1:3900/b/p");
        assert_eq!(Location::parse(OsStr::new("./s3:x")).unwrap(), Location::Local("./s3:x".into()));
        assert!(Location::parse(OsStr::new("s3:ftp://h/b")).is_err());
    }
}
