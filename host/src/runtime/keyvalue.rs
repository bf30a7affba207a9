//! `wasi:keyvalue` for attempts: a handler opens only the buckets of its tenant it was
//! granted; reads and durable writes go through the [`KeyValue`] the executor hands over,
//! and every refusal is written to the attempt's output.

use wasmtime::component::Resource;

use super::AttemptState;
use super::wasi::keyvalue::{atomics, store};
use crate::kv::{KvError, KvKeys, KvOp, KvOutcome};

/// A tenant's buckets as the attempts of one handler may reach them.
#[async_trait::async_trait]
pub trait KeyValue: Send + Sync {
    /// Whether the handler was granted the bucket.
    fn may_open(&self, bucket: &str) -> bool;
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Applies one write durably, within the tenant's quotas.
    async fn write(&self, bucket: &str, key: &str, op: KvOp) -> Result<KvOutcome, KvError>;
    /// A page of the bucket's keys after `after`.
    async fn keys(&self, bucket: &str, after: Option<&str>) -> Result<KvKeys, KvError>;
}

/// An opened bucket, as the guest holds it.
pub struct OpenBucket {
    name: String,
}

/// A key as read for a compare-and-swap.
pub struct ReadKey {
    bucket: String,
    key: String,
    current: Option<Vec<u8>>,
}

type Answer<T> = wasmtime::Result<Result<T, store::Error>>;

impl AttemptState {
    fn bucket_name(&self, bucket: &Resource<OpenBucket>) -> wasmtime::Result<String> {
        Ok(self.table.get(bucket)?.name.clone())
    }

    /// The buckets' access, which every opened bucket implies.
    fn key_value(&self) -> Result<&std::sync::Arc<dyn KeyValue>, store::Error> {
        self.capabilities
            .kv
            .as_ref()
            .ok_or(store::Error::NoSuchStore)
    }

    /// The guest's form of an error, noted in the attempt's output.
    fn kv_error(&self, bucket: &str, key: &str, error: KvError) -> store::Error {
        self.output
            .append(format!("[kv] {bucket}/{key}: {error}\n").as_bytes());
        store::Error::Other(error.to_string())
    }
}

impl store::Host for AttemptState {
    async fn open(&mut self, identifier: String) -> Answer<Resource<OpenBucket>> {
        let granted = self
            .capabilities
            .kv
            .as_ref()
            .is_some_and(|kv| kv.may_open(&identifier));
        if !granted {
            self.output.append(
                format!(
                    "[kv] refused to open bucket '{identifier}': the handler is not granted it (--kv {identifier})\n"
                )
                .as_bytes(),
            );
            return Ok(Err(store::Error::NoSuchStore));
        }
        Ok(Ok(self.table.push(OpenBucket { name: identifier })?))
    }
}

impl AttemptState {
    async fn kv_write(
        &mut self,
        bucket: &Resource<OpenBucket>,
        key: String,
        op: KvOp,
    ) -> wasmtime::Result<Result<KvOutcome, store::Error>> {
        let name = self.bucket_name(bucket)?;
        let kv = match self.key_value() {
            Ok(kv) => kv.clone(),
            Err(error) => return Ok(Err(error)),
        };
        Ok(kv
            .write(&name, &key, op)
            .await
            .map_err(|error| self.kv_error(&name, &key, error)))
    }
}

impl store::HostBucket for AttemptState {
    async fn get(&mut self, bucket: Resource<OpenBucket>, key: String) -> Answer<Option<Vec<u8>>> {
        let name = self.bucket_name(&bucket)?;
        let kv = match self.key_value() {
            Ok(kv) => kv.clone(),
            Err(error) => return Ok(Err(error)),
        };
        Ok(kv
            .get(&name, &key)
            .await
            .map_err(|error| self.kv_error(&name, &key, error)))
    }

    async fn set(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
        value: Vec<u8>,
    ) -> Answer<()> {
        Ok(self
            .kv_write(&bucket, key, KvOp::Set(value))
            .await?
            .map(drop))
    }

    async fn delete(&mut self, bucket: Resource<OpenBucket>, key: String) -> Answer<()> {
        Ok(self.kv_write(&bucket, key, KvOp::Delete).await?.map(drop))
    }

    async fn exists(&mut self, bucket: Resource<OpenBucket>, key: String) -> Answer<bool> {
        Ok(store::HostBucket::get(self, bucket, key)
            .await?
            .map(|value| value.is_some()))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<OpenBucket>,
        cursor: Option<String>,
    ) -> Answer<store::KeyResponse> {
        let name = self.bucket_name(&bucket)?;
        let kv = match self.key_value() {
            Ok(kv) => kv.clone(),
            Err(error) => return Ok(Err(error)),
        };
        Ok(kv
            .keys(&name, cursor.as_deref())
            .await
            .map(|page| store::KeyResponse {
                keys: page.keys,
                cursor: page.next,
            })
            .map_err(|error| self.kv_error(&name, "", error)))
    }

    async fn drop(&mut self, bucket: Resource<OpenBucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for AttemptState {
    async fn increment(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
        delta: i64,
    ) -> Answer<i64> {
        Ok(
            match self.kv_write(&bucket, key, KvOp::Increment(delta)).await? {
                Ok(KvOutcome::Counted(value)) => Ok(value),
                Ok(other) => Err(store::Error::Other(format!(
                    "unexpected answer to an increment: {other:?}"
                ))),
                Err(error) => Err(error),
            },
        )
    }

    async fn swap(
        &mut self,
        cas: Resource<ReadKey>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let read = self.table.delete(cas)?;
        let kv = match self.key_value() {
            Ok(kv) => kv.clone(),
            Err(error) => return Ok(Err(atomics::CasError::StoreError(error))),
        };
        let op = KvOp::Swap {
            expected: read.current.clone(),
            value,
        };
        match kv.write(&read.bucket, &read.key, op).await {
            Ok(KvOutcome::SwapConflict(current)) => {
                let again = self.table.push(ReadKey { current, ..read })?;
                Ok(Err(atomics::CasError::CasFailed(again)))
            }
            Ok(_) => Ok(Ok(())),
            Err(error) => Ok(Err(atomics::CasError::StoreError(self.kv_error(
                &read.bucket,
                &read.key,
                error,
            )))),
        }
    }
}

impl atomics::HostCas for AttemptState {
    async fn new(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
    ) -> Answer<Resource<ReadKey>> {
        let name = self.bucket_name(&bucket)?;
        let kv = match self.key_value() {
            Ok(kv) => kv.clone(),
            Err(error) => return Ok(Err(error)),
        };
        match kv.get(&name, &key).await {
            Ok(current) => Ok(Ok(self.table.push(ReadKey {
                bucket: name,
                key,
                current,
            })?)),
            Err(error) => Ok(Err(self.kv_error(&name, &key, error))),
        }
    }

    async fn current(&mut self, cas: Resource<ReadKey>) -> Answer<Option<Vec<u8>>> {
        Ok(Ok(self.table.get(&cas)?.current.clone()))
    }

    async fn drop(&mut self, cas: Resource<ReadKey>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}
