//! Operators' access to tenants' key-value buckets in the service core: listing buckets and
//! keys, reading, setting and deleting values, within the caller's tenants and the tenant's
//! quotas. Handlers reach the same buckets through their grants, not through here.

use super::audit::record_act;
use super::{JobService, ServiceError, invalid, tenant_or_default};
use crate::audit::AuditAction;
use crate::auth::{self, Principal};
use crate::kv::{self, KvBucket, KvError, KvKey, KvKeys, KvOp, KvOutcome};
use crate::store::KvWriteError;

/// Keys per page when the request names no number, and at most.
const DEFAULT_KEYS_PAGE: usize = 100;
const MAX_KEYS_PAGE: usize = 1000;

impl From<KvError> for ServiceError {
    fn from(error: KvError) -> ServiceError {
        match error {
            KvError::QuotaExceeded(message) => ServiceError::ResourceExhausted(message),
            KvError::NotACounter(_) | KvError::Overflow(_) => {
                ServiceError::FailedPrecondition(error.to_string())
            }
            KvError::Invalid(message) => ServiceError::InvalidArgument(message),
            KvError::Unavailable(message) => ServiceError::Unavailable(message),
        }
    }
}

impl From<KvWriteError> for ServiceError {
    fn from(error: KvWriteError) -> ServiceError {
        match error {
            KvWriteError::Refused(refused) => refused.into(),
            KvWriteError::Store(store) => store.into(),
        }
    }
}

impl JobService {
    fn kv_tenant(&self, caller: &Principal, tenant: &str) -> Result<String, ServiceError> {
        caller.require(auth::KV)?;
        let tenant = tenant_or_default(tenant)?;
        caller.require_tenant(&tenant)?;
        Ok(tenant)
    }

    fn kv_key(
        &self,
        caller: &Principal,
        tenant: &str,
        bucket: &str,
        key: &str,
    ) -> Result<KvKey, ServiceError> {
        let tenant = self.kv_tenant(caller, tenant)?;
        kv::check_key(bucket, key)?;
        Ok(KvKey {
            tenant,
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// A tenant's buckets that hold keys, with what each holds.
    pub async fn kv_buckets(
        &self,
        caller: &Principal,
        tenant: &str,
    ) -> Result<Vec<KvBucket>, ServiceError> {
        let tenant = self.kv_tenant(caller, tenant)?;
        Ok(self.store.kv_buckets(&tenant).await?)
    }

    /// A page of a bucket's keys after `after`, in byte order.
    pub async fn kv_keys(
        &self,
        caller: &Principal,
        tenant: &str,
        bucket: &str,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<KvKeys, ServiceError> {
        let tenant = self.kv_tenant(caller, tenant)?;
        crate::grants::check_name("bucket", bucket).map_err(invalid)?;
        let limit = limit.unwrap_or(DEFAULT_KEYS_PAGE);
        if !(1..=MAX_KEYS_PAGE).contains(&limit) {
            return Err(invalid(format!(
                "limit must be between 1 and {MAX_KEYS_PAGE}"
            )));
        }
        Ok(self.store.kv_keys(&tenant, bucket, after, limit).await?)
    }

    /// The value under a key.
    pub async fn kv_get(
        &self,
        caller: &Principal,
        tenant: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Vec<u8>, ServiceError> {
        let key = self.kv_key(caller, tenant, bucket, key)?;
        self.store
            .kv_get(&key)
            .await?
            .ok_or_else(|| not_found(&key))
    }

    /// Sets the value under a key, durably, within the tenant's quotas.
    pub async fn kv_set(
        &self,
        caller: &Principal,
        tenant: &str,
        bucket: &str,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), ServiceError> {
        let key = self.kv_key(caller, tenant, bucket, key)?;
        let bytes = value.len();
        self.store
            .kv_write(key.clone(), KvOp::Set(value), self.quotas.kv)
            .await?;
        record_act(
            self.store.as_ref(),
            caller,
            AuditAction::KvSet,
            vec![key.tenant.clone()],
            format!("{}/{}", key.bucket, key.key),
            format!("{bytes} bytes"),
        )
        .await
    }

    /// Deletes a key; not found if it holds nothing.
    pub async fn kv_delete(
        &self,
        caller: &Principal,
        tenant: &str,
        bucket: &str,
        key: &str,
    ) -> Result<(), ServiceError> {
        let key = self.kv_key(caller, tenant, bucket, key)?;
        let outcome = self
            .store
            .kv_write(key.clone(), KvOp::Delete, self.quotas.kv)
            .await?;
        if outcome != KvOutcome::Deleted(true) {
            return Err(not_found(&key));
        }
        record_act(
            self.store.as_ref(),
            caller,
            AuditAction::KvDeleted,
            vec![key.tenant.clone()],
            format!("{}/{}", key.bucket, key.key),
            "deleted",
        )
        .await
    }
}

fn not_found(key: &KvKey) -> ServiceError {
    ServiceError::NotFound(format!(
        "key '{}' not found in bucket {} of tenant {}",
        key.key, key.bucket, key.tenant
    ))
}
