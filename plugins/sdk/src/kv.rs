//! The tenant's key-value buckets, through `wasi:keyvalue`. A handler opens only buckets it
//! was granted with `--kv BUCKET`; each write is durable when the call returns.
//!
//! ```ignore
//! let counters = jobhost_plugin::kv::open("counters")?;
//! let seen = counters.increment("jobs-seen", 1)?;
//! counters.set("last-job", job.key())?;
//! ```

use super::Result;
use super::bindings::wasi::keyvalue::{atomics, store};

fn describe(error: store::Error) -> String {
    match error {
        store::Error::NoSuchStore => {
            "no such bucket: the handler is not granted it (deploy with --kv BUCKET)".into()
        }
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(text) => text,
    }
}

/// An open bucket.
pub struct Bucket {
    inner: store::Bucket,
}

/// Opens a bucket of the tenant that the handler was granted.
pub fn open(name: &str) -> Result<Bucket> {
    let inner = store::open(name).map_err(|e| format!("bucket '{name}': {}", describe(e)))?;
    Ok(Bucket { inner })
}

impl Bucket {
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.get(key).map_err(describe)?)
    }

    /// The value as UTF-8 text.
    pub fn get_string(&self, key: &str) -> Result<Option<String>> {
        match self.get(key)? {
            Some(bytes) => Ok(Some(String::from_utf8(bytes)?)),
            None => Ok(None),
        }
    }

    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<()> {
        Ok(self.inner.set(key, value.as_ref()).map_err(describe)?)
    }

    pub fn delete(&self, key: &str) -> Result<()> {
        Ok(self.inner.delete(key).map_err(describe)?)
    }

    pub fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.inner.exists(key).map_err(describe)?)
    }

    /// Every key of the bucket, in byte order.
    pub fn keys(&self) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.inner.list_keys(cursor.as_deref()).map_err(describe)?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Adds `delta` to the counter under `key` (absent: 0) and answers its new value.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64> {
        Ok(atomics::increment(&self.inner, key, delta).map_err(describe)?)
    }

    /// Replaces the value under `key` with `change(current)`, atomically: if another writer
    /// changed it meanwhile, `change` is called again with the newer value.
    pub fn update(
        &self,
        key: &str,
        mut change: impl FnMut(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<Vec<u8>> {
        let mut read = atomics::Cas::new(&self.inner, key).map_err(describe)?;
        loop {
            let current = read.current().map_err(describe)?;
            let value = change(current.as_deref());
            match atomics::swap(read, &value) {
                Ok(()) => return Ok(value),
                Err(atomics::CasError::CasFailed(again)) => read = again,
                Err(atomics::CasError::StoreError(error)) => return Err(describe(error).into()),
            }
        }
    }
}
