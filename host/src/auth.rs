//! API keys: who may call, with which permissions, on which tenants.
//!
//! A key reads `jh_<id>_<secret>`. Only the SHA-256 of the whole key is stored; presented keys
//! are found by id and compared by hash in constant time. Keys are cached in memory, so an
//! RPC's authentication costs no disk read, and revocation takes effect at once. The key in
//! `JOBHOST_ADMIN_KEY`, if set, may do everything on every tenant.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use rand::Rng;
use sha2::{Digest, Sha256};

use crate::job::limits::valid_tenant_id;
use crate::job::{TenantScope, now_ms};
use crate::rate_limit::{RateBucket, RateLimit};
use crate::store::{ApiKeyRecord, JobStore, StoreError};

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
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// A stored key with the bucket that limits its rate.
struct KnownKey {
    record: ApiKeyRecord,
    limit: Option<RateLimit>,
    bucket: Option<RateBucket>,
}

impl KnownKey {
    fn new(record: ApiKeyRecord, default_limit: Option<RateLimit>) -> KnownKey {
        let limit = record.rate_limit.or(default_limit);
        KnownKey {
            record,
            limit,
            bucket: limit.map(RateBucket::new),
        }
    }
}

pub struct Auth {
    store: Arc<dyn JobStore>,
    admin_sha256: Option<[u8; 32]>,
    /// The limit of keys created without one; the admin key is never limited.
    default_limit: Option<RateLimit>,
    keys: RwLock<HashMap<String, KnownKey>>,
}

impl Auth {
    pub fn load(
        store: Arc<dyn JobStore>,
        admin_key: Option<&str>,
        default_limit: Option<RateLimit>,
    ) -> Result<Auth, AuthError> {
        let keys = store
            .api_keys()?
            .into_iter()
            .map(|key| (key.id.clone(), KnownKey::new(key, default_limit)))
            .collect();
        Ok(Auth {
            store,
            admin_sha256: admin_key.filter(|k| !k.is_empty()).map(sha256),
            default_limit,
            keys: RwLock::new(keys),
        })
    }

    /// Finds the principal behind a presented key.
    pub fn authenticate(&self, presented: Option<&str>) -> Result<Principal, AuthError> {
        let presented = presented
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(AuthError::MissingKey)?;
        let digest = sha256(presented);
        if let Some(admin) = &self.admin_sha256
            && constant_time_eq(admin, &digest)
        {
            return Ok(Principal::admin());
        }
        let id = parse_key_id(presented).ok_or(AuthError::UnknownKey)?;
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let known = keys.get(id).ok_or(AuthError::UnknownKey)?;
        let record = &known.record;
        if !constant_time_eq(&record.secret_sha256, &digest) {
            return Err(AuthError::UnknownKey);
        }
        if let Some(bucket) = &known.bucket {
            bucket
                .admit()
                .map_err(|retry_after| AuthError::RateLimited { retry_after })?;
        }
        Ok(Principal {
            key_id: record.id.clone(),
            permissions: record.permissions.iter().cloned().collect(),
            tenants: match &record.tenants {
                None => TenantScope::All,
                Some(tenants) => TenantScope::only(tenants.iter().cloned()),
            },
        })
    }

    /// Creates a key no more powerful than its creator's; returns it with the secret, the
    /// only time the secret is shown.
    pub fn create_key(
        &self,
        creator: &Principal,
        request: NewKey,
    ) -> Result<(KeyInfo, String), AuthError> {
        creator.require(KEYS)?;
        let mut permissions = BTreeSet::new();
        for permission in &request.permissions {
            let permission = match permission.trim() {
                "job" => JOBS,
                other => PERMISSIONS
                    .into_iter()
                    .find(|known| *known == other)
                    .ok_or_else(|| {
                        AuthError::InvalidRequest(format!(
                            "unknown permission '{other}': expected one of {}",
                            PERMISSIONS.join(", ")
                        ))
                    })?,
            };
            if !creator.has(permission) {
                return Err(AuthError::MissingPermission(permission));
            }
            permissions.insert(permission.to_string());
        }
        if permissions.is_empty() {
            return Err(AuthError::InvalidRequest(
                "a key needs at least one permission".into(),
            ));
        }
        let tenants = if request.tenants.is_empty() {
            if creator.tenants != TenantScope::All {
                return Err(AuthError::InvalidRequest(
                    "name the key's tenants: this API key is not granted every tenant".into(),
                ));
            }
            None
        } else {
            for tenant in &request.tenants {
                if !valid_tenant_id(tenant) {
                    return Err(AuthError::InvalidRequest(format!(
                        "invalid tenant id '{tenant}': use 1-31 characters of A-Z a-z 0-9 . _ -"
                    )));
                }
                creator.require_tenant(tenant)?;
            }
            let unique: BTreeSet<_> = request.tenants.iter().cloned().collect();
            Some(unique.into_iter().collect())
        };
        let rate_limit = self.rate_limit_for(creator, request.rate_limit)?;
        let mut rng = rand::rng();
        let id = hex::encode(rng.random::<[u8; 8]>());
        let secret = hex::encode(rng.random::<[u8; 24]>());
        let key = format!("jh_{id}_{secret}");
        let record = ApiKeyRecord {
            id: id.clone(),
            secret_sha256: sha256(&key),
            name: request.name,
            permissions: permissions.into_iter().collect(),
            tenants,
            created_at: now_ms(),
            rate_limit,
        };
        self.store.put_api_key(&record)?;
        let known = KnownKey::new(record, self.default_limit);
        let info = info(&known);
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, known);
        Ok((info, key))
    }

    /// The limit a new key is stored with: what was asked, no more than its creator's own.
    fn rate_limit_for(
        &self,
        creator: &Principal,
        asked: Option<RateLimit>,
    ) -> Result<Option<RateLimit>, AuthError> {
        if let Some(asked) = asked {
            RateLimit::checked(asked.per_second, asked.burst).map_err(AuthError::InvalidRequest)?;
        }
        let creators = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&creator.key_id)
            .and_then(|known| known.limit);
        match (asked, creators) {
            (Some(asked), Some(own)) if !asked.within(&own) => {
                Err(AuthError::InvalidRequest(format!(
                    "rate limit {}/s with burst {} exceeds this API key's own ({}/s with burst {})",
                    asked.per_second, asked.burst, own.per_second, own.burst
                )))
            }
            (Some(asked), _) => Ok(Some(asked)),
            // A limited creator cannot mint an unlimited key.
            (None, own) => Ok(own.filter(|own| {
                self.default_limit
                    .is_none_or(|default| !default.within(own))
            })),
        }
    }

    /// The keys the caller covers (see [`Principal::covers`]): never another tenant's.
    pub fn list_keys(&self, caller: &Principal) -> Result<Vec<KeyInfo>, AuthError> {
        caller.require(KEYS)?;
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let mut listed: Vec<_> = keys
            .values()
            .filter(|key| caller.covers(&key.record))
            .map(info)
            .collect();
        listed.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(listed)
    }

    /// Revokes a key at once and answers what it was; `None` if there is no such key the
    /// caller covers (a key beyond the caller's reach is reported as absent, not forbidden, so
    /// its existence is not disclosed).
    pub fn revoke_key(&self, caller: &Principal, id: &str) -> Result<Option<KeyInfo>, AuthError> {
        caller.require(KEYS)?;
        let id = parse_key_id(id).unwrap_or(id);
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        match keys.get(id) {
            Some(key) if caller.covers(&key.record) => {}
            _ => return Ok(None),
        }
        self.store.delete_api_key(id)?;
        Ok(keys.remove(id).as_ref().map(info))
    }
}

fn info(known: &KnownKey) -> KeyInfo {
    let record = &known.record;
    KeyInfo {
        id: record.id.clone(),
        name: record.name.clone(),
        permissions: record.permissions.clone(),
        tenants: record.tenants.clone(),
        created_at: record.created_at,
        rate_limit: known.limit,
    }
}

/// The id inside `jh_<id>_<secret>`.
fn parse_key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("jh_")?;
    Some(rest.split_once('_').map_or(rest, |(id, _)| id))
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
