//! Turns a handler version's grants into what one of its attempts may reach: the config
//! values, the granted secrets opened for it, outbound HTTP within its rules and the server's,
//! and nothing of another tenant.

use std::sync::Arc;

use crate::grants::{Grants, ServerHttpPolicy};
use crate::metrics::Metrics;
use crate::runtime::{Capabilities, HttpAccess, HttpLimits};
use crate::secrets::SecretBox;
use crate::store::{JobStore, StoreError};

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
    metrics: Arc<Metrics>,
}

impl CapabilitySource {
    pub fn new(
        store: Arc<dyn JobStore>,
        secret_box: Arc<SecretBox>,
        http: HttpSettings,
        metrics: Arc<Metrics>,
    ) -> CapabilitySource {
        CapabilitySource {
            store,
            secret_box,
            http,
            metrics,
        }
    }

    /// What an attempt of a handler for `job_type` in `tenant` holding `grants` may reach.
    /// Secrets are read at each attempt, so a changed or removed secret takes effect at the
    /// next one.
    pub fn for_attempt(
        &self,
        tenant: &str,
        job_type: &str,
        grants: &Grants,
    ) -> Result<Capabilities, StoreError> {
        if grants.is_empty() {
            return Ok(Capabilities::default());
        }
        let secrets = self
            .secret_box
            .open_granted(self.store.as_ref(), tenant, &grants.secrets)?;
        let mut config = grants.config.clone();
        config.extend(secrets.iter().cloned());
        let http = (!grants.http.is_empty())
            .then(|| Arc::new(self.http_access(tenant, job_type, grants, &secrets)));
        Ok(Capabilities {
            config: Arc::new(config),
            secrets: Arc::new(secrets),
            http,
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
