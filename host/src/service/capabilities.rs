//! Turns a handler version's grants into what one of its attempts may reach: the config
//! values, the granted secrets opened for it, outbound HTTP within its rules and the server's,
//! the granted key-value buckets of its tenant, and nothing of another tenant.

use std::sync::Arc;

use crate::grants::{Grants, ServerHttpPolicy};
use crate::kv::{self, KvError, KvKey, KvKeys, KvLimits, KvOp, KvOutcome};
use crate::metrics::Metrics;
use crate::runtime::{Capabilities, HttpAccess, HttpLimits, KeyValue};
use crate::secrets::SecretBox;
use crate::store::{JobStore, KvWriteError, StoreError};

/// The server's settings for handlers' outbound HTTP.
#[derive(Clone, Debug, Default)]
pub struct HttpSettings {
    /// The ceiling over every handler's rules (`serve --http-allow`).
    pub policy: Arc<ServerHttpPolicy>,
    pub limits: HttpLimits,
    /// Certificates trusted for https; the system's roots when `None`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Assembles attempts' capabilities for the executor.
pub struct CapabilitySource {
    store: Arc<dyn JobStore>,
    secret_box: Arc<SecretBox>,
    http: HttpSettings,
    kv_limits: KvLimits,
    metrics: Arc<Metrics>,
}

impl CapabilitySource {
    pub fn new(
        store: Arc<dyn JobStore>,
        secret_box: Arc<SecretBox>,
        http: HttpSettings,
        kv_limits: KvLimits,
        metrics: Arc<Metrics>,
    ) -> CapabilitySource {
        CapabilitySource {
            store,
            secret_box,
            http,
            kv_limits,
            metrics,
        }
    }

    /// The values of the named secrets of `tenant` that exist, for an attempt of a handler
    /// granted them. A value that no longer opens (the key changed) is left out and logged.
    async fn open_secrets(
        &self,
        tenant: &str,
        names: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut values = Vec::with_capacity(names.len());
        for name in names {
            let Some(record) = self.store.secret(tenant, name).await? else {
                continue;
            };
            match self
                .secret_box
                .open(tenant, name, &record.sealed)
                .and_then(|bytes| String::from_utf8(bytes).ok())
            {
                Some(value) => values.push((name.clone(), value)),
                None => tracing::warn!(
                    %tenant, secret = %name,
                    "a stored secret does not open under the server's secret key; was the key changed?"
                ),
            }
        }
        Ok(values)
    }

    /// What an attempt of a handler for `job_type` in `tenant` holding `grants` may reach.
    /// Secrets are read at each attempt, so a changed or removed secret takes effect at the
    /// next one.
    pub async fn for_attempt(
        &self,
        tenant: &str,
        job_type: &str,
        grants: &Grants,
    ) -> Result<Capabilities, StoreError> {
        if grants.is_empty() {
            return Ok(Capabilities::default());
        }
        let secrets = self.open_secrets(tenant, &grants.secrets).await?;
        let mut config = grants.config.clone();
        config.extend(secrets.iter().cloned());
        let http = (!grants.http.is_empty())
            .then(|| Arc::new(self.http_access(tenant, job_type, grants, &secrets)));
        let kv = (!grants.kv.is_empty()).then(|| {
            Arc::new(TenantBuckets {
                store: self.store.clone(),
                tenant: tenant.to_string(),
                granted: grants.kv.clone(),
                limits: self.kv_limits,
            }) as Arc<dyn KeyValue>
        });
        Ok(Capabilities {
            config: Arc::new(config),
            secrets: Arc::new(secrets),
            http,
            kv,
        })
    }

    fn http_access(
        &self,
        tenant: &str,
        job_type: &str,
        grants: &Grants,
        secrets: &[(String, String)],
    ) -> HttpAccess {
        let secret = |name: &str| {
            secrets
                .iter()
                .find(|(granted, _)| granted == name)
                .map(|(_, value)| value.clone())
        };
        let injected_headers = grants
            .header_injections()
            .into_iter()
            .filter_map(|injection| match injection.render(secret) {
                Some(value) => Some((injection.host, injection.name, value)),
                None => {
                    tracing::warn!(
                        %tenant, %job_type, header = %injection.name, host = %injection.host,
                        "a secret of an injected header is not set; the header is left out"
                    );
                    None
                }
            })
            .collect();
        let metrics = self.metrics.clone();
        let (tenant, job_type) = (tenant.to_string(), job_type.to_string());
        HttpAccess {
            rules: grants.http_rules(),
            server: self.http.policy.clone(),
            injected_headers,
            limits: self.http.limits,
            observe: Arc::new(move |status| {
                metrics.count_handler_http_request(&job_type, &tenant, status)
            }),
            tls: self.http.tls.clone(),
        }
    }
}

/// Keys listed per page to a handler.
const KEYS_PER_PAGE: usize = 1000;

/// The buckets of one tenant that one handler was granted, over the store.
struct TenantBuckets {
    store: Arc<dyn JobStore>,
    tenant: String,
    granted: Vec<String>,
    limits: KvLimits,
}

impl TenantBuckets {
    fn key(&self, bucket: &str, key: &str) -> Result<KvKey, KvError> {
        if !self.may_open(bucket) {
            return Err(KvError::Invalid(format!(
                "bucket '{bucket}' is not granted"
            )));
        }
        kv::check_key(bucket, key)?;
        Ok(KvKey {
            tenant: self.tenant.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl KeyValue for TenantBuckets {
    fn may_open(&self, bucket: &str) -> bool {
        self.granted.iter().any(|granted| granted == bucket)
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.store
            .kv_get(&self.key(bucket, key)?)
            .await
            .map_err(unavailable)
    }

    async fn write(&self, bucket: &str, key: &str, op: KvOp) -> Result<KvOutcome, KvError> {
        let key = self.key(bucket, key)?;
        match self.store.kv_write(key, op, self.limits).await {
            Ok(outcome) => Ok(outcome),
            Err(KvWriteError::Refused(refused)) => Err(refused),
            Err(KvWriteError::Store(error)) => Err(unavailable(error)),
        }
    }

    async fn keys(&self, bucket: &str, after: Option<&str>) -> Result<KvKeys, KvError> {
        if !self.may_open(bucket) {
            return Err(KvError::Invalid(format!(
                "bucket '{bucket}' is not granted"
            )));
        }
        self.store
            .kv_keys(&self.tenant, bucket, after, KEYS_PER_PAGE)
            .await
            .map_err(unavailable)
    }
}

fn unavailable(error: StoreError) -> KvError {
    KvError::Unavailable(error.to_string())
}
