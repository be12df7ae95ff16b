//! A repository in an S3-compatible bucket, under a prefix: `s3:http://HOST:PORT/BUCKET/PREFIX`
//! (or https; `s3:HOST/BUCKET/PREFIX` means https). The protocol is Apache OpenDAL's,
//! with its retry layer; this file maps the storage contract onto it.
//!
//! Durability: a PUT that returned is durable and whole (S3 never shows a partial
//! object). A new object is buffered in memory and sent by `finish`; names are content
//! hashes, so a PUT over an existing object writes the same bytes. Credentials come from
//! the usual variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_DEFAULT_REGION` or `AWS_REGION`, `AWS_PROFILE` and the files it names).

use super::{check_name, object_lock, LockMode, NewObject, ObjectInfo, Storage, StorageLock};
use crate::error::{Error, Result};
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator};
use std::future::IntoFuture;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where a repository is: endpoint, bucket and prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    /// `http://host:port` or `https://host`.
    pub endpoint: String,
    pub bucket: String,
    /// Without leading or trailing `/`; may be empty.
    pub prefix: String,
}

impl S3Location {
    /// Parses what follows `s3:` in a repository argument.
    pub fn parse(spec: &str) -> std::result::Result<S3Location, String> {
        let (scheme, rest) = match spec.split_once("://") {
            Some((scheme @ ("http" | "https"), rest)) => (scheme, rest),
            Some((other, _)) => return Err(format!("s3:{spec}: unknown scheme {other:?} (http or https)")),
            None => ("https", spec),
        };
        let mut parts = rest.splitn(3, '/');
        let host = parts.next().unwrap_or_default();
        let bucket = parts.next().unwrap_or_default();
        let prefix = parts.next().unwrap_or_default().trim_matches('/');
        if host.is_empty() || bucket.is_empty() {
            return Err(format!("s3:{spec}: expected s3:http://HOST[:PORT]/BUCKET[/PREFIX]"));
        }
        if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
            return Err(format!("s3:{spec}: the prefix {prefix:?} is not a plain path"));
        }
        Ok(S3Location {
            endpoint: format!("{scheme}://{host}"),
            bucket: bucket.into(),
            prefix: prefix.into(),
        })
    }

    pub fn url(&self) -> String {
        match self.prefix.is_empty() {
            true => format!("s3:{}/{}", self.endpoint, self.bucket),
            false => format!("s3:{}/{}/{}", self.endpoint, self.bucket, self.prefix),
        }
    }
}

/// How many times a failed request is tried again, with exponential backoff from
/// `RETRY_MIN_DELAY` up to `RETRY_MAX_DELAY`: about 15 s before a store that is down
/// is reported.
const RETRIES: usize = 4;
const RETRY_MIN_DELAY: Duration = Duration::from_millis(500);
const RETRY_MAX_DELAY: Duration = Duration::from_secs(8);
/// A request that makes no progress for this long has failed (and is retried).
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Packs sent at once by a backup (storage::Storage::parallel_writes).
const PARALLEL_PUTS: usize = 3;

#[derive(Clone)]
pub struct S3Storage {
    location: S3Location,
    operator: Operator,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl S3Storage {
    /// The repository at `location`, with credentials and region from the environment.
    pub fn new(location: S3Location) -> Result<S3Storage> {
        let env = |names: &[&str]| names.iter().find_map(|v| std::env::var(v).ok().filter(|r| !r.is_empty()));
        let region = env(&["AWS_DEFAULT_REGION", "AWS_REGION"]).unwrap_or_else(|| "us-east-1".into());
        let mut builder = S3Storage::builder(&location, &region);
        if let Some(profile) = env(&["AWS_PROFILE"]) {
            builder = builder.profile(&profile);
        }
        S3Storage::with_builder(location, builder)
    }

    /// The repository at `location` with the credentials given, not the environment's.
    pub fn with_keys(location: S3Location, region: &str, key_id: &str, secret: &str) -> Result<S3Storage> {
        let builder = S3Storage::builder(&location, region)
            .disable_config_load()
            .access_key_id(key_id)
            .secret_access_key(secret);
        S3Storage::with_builder(location, builder)
    }

    fn builder(location: &S3Location, region: &str) -> opendal::services::S3 {
        opendal::services::S3::default()
            .endpoint(&location.endpoint)
            .bucket(&location.bucket)
            .region(region)
            .root(&format!("/{}", location.prefix))
    }

    fn with_builder(location: S3Location, builder: opendal::services::S3) -> Result<S3Storage> {
        // The HTTP transport (reqwest with rustls); installing it twice is harmless.
        opendal::install_default();
        let describe =
            |e: opendal::Error| Error::Repository { path: location.url().into(), what: one_line(&e) };
        let operator = Operator::new(builder)
            .map_err(describe)?
            .layer(TimeoutLayer::new().with_io_timeout(IO_TIMEOUT))
            .layer(
                RetryLayer::new()
                    .with_max_times(RETRIES)
                    .with_min_delay(RETRY_MIN_DELAY)
                    .with_max_delay(RETRY_MAX_DELAY)
                    .with_jitter(),
            );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::io(location.url(), e))?;
        Ok(S3Storage { location, operator, runtime: Arc::new(runtime) })
    }

    fn run<T>(&self, name: &str, op: impl IntoFuture<Output = opendal::Result<T>>) -> Result<T> {
        self.runtime.block_on(op.into_future()).map_err(|e| Error::io(self.describe(name), io_error(&e)))
    }
}

/// One line for an error: the store's own code and message when it answered (`S3Error
/// { code: "AccessDenied", message: "Forbidden: Invalid signature", .. }` becomes
/// `AccessDenied: Forbidden: Invalid signature`), else opendal's message and the
/// innermost cause (`send http request: Connection refused`). The caller names the
/// object.
fn one_line(e: &opendal::Error) -> String {
    let text = e.to_string();
    let field = |name: &str| {
        let start = text.find(&format!("{name}: \""))? + name.len() + 3;
        let len = text[start..].find('"')?;
        Some(&text[start..start + len])
    };
    if let (Some(code), Some(message)) = (field("code"), field("message")) {
        return format!("{code}: {message}");
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let message = e.message().lines().next().unwrap_or_default().trim();
    match (message.is_empty(), std::ptr::addr_eq(cause, e as &dyn std::error::Error)) {
        (true, true) => e.kind().to_string(),
        (false, true) => message.to_string(),
        (true, false) => cause.to_string(),
        (false, false) => format!("{message}: {cause}"),
    }
}

fn io_error(e: &opendal::Error) -> io::Error {
    let kind = match e.kind() {
        ErrorKind::NotFound => io::ErrorKind::NotFound,
        ErrorKind::AlreadyExists | ErrorKind::ConditionNotMatch => io::ErrorKind::AlreadyExists,
        ErrorKind::PermissionDenied => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, one_line(e))
}

struct S3Object<'a> {
    storage: &'a S3Storage,
    bytes: Vec<u8>,
}

impl Write for S3Object<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl NewObject for S3Object<'_> {
    /// One PUT that creates the object only if it is not there (`If-None-Match: *`).
    fn finish(self: Box<Self>, name: &str) -> Result<()> {
        let path = self.storage.describe(name);
        check_name(name).map_err(|e| Error::io(&path, e))?;
        let S3Object { storage, bytes } = *self;
        storage.run(name, storage.operator.write_with(name, bytes).if_not_exists(true)).map(drop)
    }
}

impl Storage for S3Storage {
    fn describe(&self, name: &str) -> PathBuf {
        format!("{}/{name}", self.location.url()).into()
    }

    fn create(&self) -> Result<Box<dyn NewObject + '_>> {
        Ok(Box::new(S3Object { storage: self, bytes: Vec::new() }))
    }

    fn read_at(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        check_name(name).map_err(|e| Error::io(self.describe(name), e))?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let read = |len: u64| self.operator.read_with(name).range(offset..offset + len).into_future();
        match self.runtime.block_on(read(len as u64)) {
            Ok(buffer) => Ok(buffer.to_vec()),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::PermissionDenied) => {
                Err(Error::io(self.describe(name), io_error(&e)))
            }
            // A range past the object's end fails; the contract gives what there is.
            Err(e) => match self.size(name)? {
                size if offset >= size => Ok(Vec::new()),
                size if offset + len as u64 > size => self.run(name, read(size - offset)).map(|b| b.to_vec()),
                _ => Err(Error::io(self.describe(name), io_error(&e))),
            },
        }
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        check_name(name).map_err(|e| Error::io(self.describe(name), e))?;
        self.run(name, self.operator.read(name)).map(|b| b.to_vec())
    }

    /// Manifests are small (their file lists are chunks in packs): read whole.
    fn reader(&self, name: &str) -> Result<Box<dyn io::Read + Send>> {
        Ok(Box::new(io::Cursor::new(self.read(name)?)))
    }

    fn size(&self, name: &str) -> Result<u64> {
        check_name(name).map_err(|e| Error::io(self.describe(name), e))?;
        self.run(name, self.operator.stat(name)).map(|m| m.content_length())
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let entries = self.run(prefix, self.operator.list_with(prefix).recursive(true))?;
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| ObjectInfo { name: e.path().to_string(), size: e.metadata().content_length() })
            .collect())
    }

    /// S3 deletes a missing object without complaint; the contract says `NotFound`, so
    /// it is looked up first (deletes are few: packs prune replaced, forgotten
    /// snapshots, lock objects).
    fn delete(&self, name: &str) -> Result<()> {
        self.size(name)?;
        self.run(name, self.operator.delete(name))
    }

    /// A PUT replaces an object whole.
    fn replace(&self, name: &str, bytes: &[u8]) -> Result<()> {
        check_name(name).map_err(|e| Error::io(self.describe(name), e))?;
        self.run(name, self.operator.write(name, bytes.to_vec())).map(drop)
    }

    /// Three packs in flight keep a PUT going while a pack fills, within 128 MiB of
    /// packs in memory (benches/s3-compare.sh).
    fn parallel_writes(&self) -> usize {
        PARALLEL_PUTS
    }

    /// Lock objects (object_lock.rs). A reader whose credentials may not write goes on
    /// unlocked, as a reader of read-only media does.
    fn lock(&self, mode: LockMode, wait: Duration, command: &str) -> Result<StorageLock> {
        match object_lock::acquire(Arc::new(self.clone()), mode, wait, command) {
            Ok(guard) => Ok(Box::new(guard)),
            Err(Error::Io { error, .. })
                if mode == LockMode::Shared && error.kind() == io::ErrorKind::PermissionDenied =>
            {
                Ok(Box::new(()))
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_bad_ones_are_named() {
        let loc = S3Location::parse("http://127.0.0.1:3900/bucket/some/prefix/").unwrap();
        assert_eq!(loc.endpoint, "http://127.0.0.1:3900");
        assert_eq!((loc.bucket.as_str(), loc.prefix.as_str()), ("bucket", "some/prefix"));
        assert_eq!(loc.url(), "s3:http://127.0.0.1:3900/bucket/some/prefix");
        let bare = S3Location::parse("s3.example.com/b").unwrap();
        assert_eq!((bare.endpoint.as_str(), bare.prefix.as_str()), ("https://s3.example.com", ""));
        for bad in ["http://host", "ftp://h/b", "http:///b", "http://h/b/../x"] {
            let err = S3Location::parse(bad).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }
}
