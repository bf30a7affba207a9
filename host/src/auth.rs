//! API keys: who may call, with which permissions, on which tenants.
//!
//! A key reads `jh_<id>_<secret>`. Only the SHA-256 of the whole key is stored; presented keys
//! are found by id and compared by hash in constant time. The key in `JOBHOST_ADMIN_KEY`, if
//! set, may do everything on every tenant. Which keys exist, and their cache, is the service
//! core's business ([`crate::service`]).

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use crate::job::{EpochMs, TenantScope};
use crate::rate_limit::RateLimit;

/// Everything, on every tenant.
pub const ALL: &str = "*";
/// Create, work on and read jobs.
pub const JOBS: &str = "jobs";
/// Deploy and manage Wasm handlers.
pub const HANDLERS: &str = "handlers";
/// Manage triggers.
pub const TRIGGERS: &str = "triggers";
/// Create, list and revoke API keys.
pub const KEYS: &str = "keys";
/// Read the audit trail.
pub const AUDIT: &str = "audit";
/// Set, list and remove tenants' secrets (never read their values).
pub const SECRETS: &str = "secrets";
/// Read and edit tenants' key-value buckets.
pub const KV: &str = "kv";
/// The permissions a key may carry. `job` is accepted as another name of `jobs`.
pub const PERMISSIONS: [&str; 8] = [ALL, JOBS, HANDLERS, TRIGGERS, KEYS, AUDIT, SECRETS, KV];

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing API key: send it as x-api-key")]
    MissingKey,
    #[error("unknown or revoked API key")]
    UnknownKey,
    #[error("this API key lacks the permission '{0}'")]
    MissingPermission(&'static str),
    #[error("tenant '{0}' is not granted to this API key")]
    TenantNotGranted(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("this API key is over its rate limit; retry in {} ms", retry_after.as_millis().max(1))]
    RateLimited { retry_after: std::time::Duration },
}

/// An API key as stored: the secret itself is never kept, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub secret_sha256: [u8; 32],
    pub name: String,
    pub permissions: Vec<String>,
    /// `None`: every tenant.
    pub tenants: Option<Vec<String>>,
    pub created_at: EpochMs,
    /// `None`: the server's default rate limit.
    pub rate_limit: Option<RateLimit>,
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub permissions: BTreeSet<String>,
    pub tenants: TenantScope,
}

impl Principal {
    pub fn admin() -> Principal {
        Principal {
            key_id: "admin".into(),
            permissions: BTreeSet::from([ALL.to_string()]),
            tenants: TenantScope::All,
        }
    }

    pub fn has(&self, permission: &str) -> bool {
        self.permissions.contains(ALL) || self.permissions.contains(permission)
    }

    pub fn require(&self, permission: &'static str) -> Result<(), AuthError> {
        if self.has(permission) {
            Ok(())
        } else {
            Err(AuthError::MissingPermission(permission))
        }
    }

    pub fn require_tenant(&self, tenant: &str) -> Result<(), AuthError> {
        if self.tenants.contains(tenant) {
            Ok(())
        } else {
            Err(AuthError::TenantNotGranted(tenant.to_string()))
        }
    }

    /// Whether this caller holds every tenant and every permission of `key`: only then may it
    /// see or revoke the key, since it could have created it.
    pub fn covers(&self, key: &ApiKeyRecord) -> bool {
        let tenants_covered = match (&self.tenants, &key.tenants) {
            (TenantScope::All, _) => true,
            (TenantScope::Only(_), None) => false,
            (TenantScope::Only(mine), Some(theirs)) => theirs.iter().all(|t| mine.contains(t)),
        };
        tenants_covered && key.permissions.iter().all(|p| self.has(p))
    }
}

/// A request for a new key.
#[derive(Clone, Debug, Default)]
pub struct NewKey {
    pub name: String,
    pub permissions: Vec<String>,
    /// Empty: every tenant.
    pub tenants: Vec<String>,
    /// `None`: the server's default (or, for a rate-limited creator, the creator's limit).
    pub rate_limit: Option<RateLimit>,
}

/// A key as listed: never its secret.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub permissions: Vec<String>,
    /// `None`: every tenant.
    pub tenants: Option<Vec<String>>,
    pub created_at: i64,
    /// The limit in force; `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
}

/// The id inside `jh_<id>_<secret>`.
pub(crate) fn parse_key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("jh_")?;
    Some(rest.split_once('_').map_or(rest, |(id, _)| id))
}

pub(crate) fn key_digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

pub(crate) fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
