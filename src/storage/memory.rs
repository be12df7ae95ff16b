//! A repository held in memory, for tests of backup, restore, check and prune without a
//! disk. Every finished operation is "durable" at once; `clone_objects` gives the state
//! a machine would find after a crash.

use super::{check_name, LockMode, NewObject, ObjectInfo, Storage, StorageLock};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Objects = BTreeMap<String, Arc<Vec<u8>>>;

#[derive(Default, Clone)]
pub struct MemoryStorage {
    objects: Arc<Mutex<Objects>>,
}

impl MemoryStorage {
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    /// An independent storage holding the objects this one holds now.
    pub fn clone_objects(&self) -> MemoryStorage {
        MemoryStorage { objects: Arc::new(Mutex::new(self.objects().clone())) }
    }

    /// Changes the bytes of an object in place, as damage would.
    pub fn corrupt(&self, name: &str, change: impl FnOnce(&mut Vec<u8>)) {
        let mut objects = self.objects();
        let object = objects.get_mut(name).expect("object to corrupt");
        change(Arc::make_mut(object));
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, Objects> {
        self.objects.lock().expect("memory storage lock")
    }

    fn get(&self, name: &str) -> Result<Arc<Vec<u8>>> {
        check_name(name).map_err(|e| Error::io(self.describe(name), e))?;
        self.objects().get(name).cloned().ok_or_else(|| self.not_found(name))
    }

    fn not_found(&self, name: &str) -> Error {
        Error::io(self.describe(name), io::ErrorKind::NotFound.into())
    }
}

struct MemoryObject<'a> {
    storage: &'a MemoryStorage,
    bytes: Vec<u8>,
}

impl Write for MemoryObject<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl NewObject for MemoryObject<'_> {
    fn finish(self: Box<Self>, name: &str) -> Result<()> {
        check_name(name).map_err(|e| Error::io(self.storage.describe(name), e))?;
        let mut objects = self.storage.objects();
        if objects.contains_key(name) {
            return Err(Error::io(self.storage.describe(name), io::ErrorKind::AlreadyExists.into()));
        }
        objects.insert(name.to_string(), Arc::new(self.bytes));
        Ok(())
    }
}

/// Reads an object without copying it.
struct SharedCursor {
    bytes: Arc<Vec<u8>>,
    pos: usize,
}

impl io::Read for SharedCursor {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.bytes.len() - self.pos);
        buf[..n].copy_from_slice(&self.bytes[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Storage for MemoryStorage {
    fn describe(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("memory:{name}"))
    }

    fn create(&self) -> Result<Box<dyn NewObject + '_>> {
        Ok(Box::new(MemoryObject { storage: self, bytes: Vec::new() }))
    }

    fn read_at(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let object = self.get(name)?;
        let start = (offset.min(object.len() as u64)) as usize;
        let end = start.saturating_add(len).min(object.len());
        Ok(object[start..end].to_vec())
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        Ok(self.get(name)?.as_ref().clone())
    }

    fn reader(&self, name: &str) -> Result<Box<dyn io::Read + Send>> {
        Ok(Box::new(SharedCursor { bytes: self.get(name)?, pos: 0 }))
    }

    fn size(&self, name: &str) -> Result<u64> {
        Ok(self.get(name)?.len() as u64)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let objects = self.objects();
        Ok(objects
            .range(prefix.to_string()..)
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(name, bytes)| ObjectInfo { name: name.clone(), size: bytes.len() as u64 })
            .collect())
    }

    fn delete(&self, name: &str) -> Result<()> {
        check_name(name).map_err(|e| Error::io(self.describe(name), e))?;
        self.objects().remove(name).map(drop).ok_or_else(|| self.not_found(name))
    }

    fn replace(&self, name: &str, bytes: &[u8]) -> Result<()> {
        check_name(name).map_err(|e| Error::io(self.describe(name), e))?;
        self.objects().insert(name.to_string(), Arc::new(bytes.to_vec()));
        Ok(())
    }

    /// One process, and tests that take turns: nothing to exclude.
    fn lock(&self, _mode: LockMode, _wait: Duration, _command: &str) -> Result<StorageLock> {
        Ok(Box::new(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_storage_contract() {
        super::super::tests::contract(&MemoryStorage::new());
    }

    #[test]
    fn a_clone_is_independent() {
        let storage = MemoryStorage::new();
        storage.put("a", b"1").unwrap();
        let copy = storage.clone_objects();
        storage.put("b", b"2").unwrap();
        assert_eq!(copy.list("").unwrap().len(), 1);
    }
}
