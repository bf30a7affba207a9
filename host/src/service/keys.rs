//! API keys in the service core: the keys that exist (cached, written through to the store),
//! who may create, see and revoke which of them, and who may read server-wide metrics.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use rand::Rng;
use tokio::sync::watch;

use super::audit::record_act;
use super::{JobService, ServiceError};
use crate::audit::AuditAction;
use crate::auth::{
    ApiKeyRecord, AuthError, JOBS, KEYS, KeyInfo, NewKey, PERMISSIONS, Principal, constant_time_eq,
    key_digest, parse_key_id,
};
use crate::job::limits::{MAX_NAME_BYTES, valid_tenant_id};
use crate::job::{TenantScope, now_ms};
use crate::rate_limit::{RateBucket, RateLimit};
use crate::signals::{Signal, Signals, Subscription};
use crate::store::{Catalog, StoreError};

impl JobService {
    /// Creates a key no more powerful than the caller: only its tenants, only its permissions.
    /// Answers the key's description and the key itself, shown this once.
    pub async fn create_key(
        &self,
        caller: &Principal,
        request: NewKey,
    ) -> Result<(KeyInfo, String), ServiceError> {
        let (info, key) = self.keys.create_key(caller, request).await?;
        record_act(
            self.store.as_ref(),
            caller,
            AuditAction::KeyCreated,
            info.tenants.clone().unwrap_or_default(),
            info.id.clone(),
            format!("'{}' with {}", info.name, info.permissions.join(", ")),
        )
        .await?;
        Ok((info, key))
    }

    /// The keys the caller could have created: none of another tenant's.
    pub fn list_keys(&self, caller: &Principal) -> Result<Vec<KeyInfo>, ServiceError> {
        self.keys.list_keys(caller)
    }

    /// Revokes a key the caller could have created; any other key is not found.
    pub async fn revoke_key(&self, caller: &Principal, id: &str) -> Result<KeyInfo, ServiceError> {
        let revoked = self
            .keys
            .revoke_key(caller, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("API key {id} not found")))?;
        record_act(
            self.store.as_ref(),
            caller,
            AuditAction::KeyRevoked,
            revoked.tenants.clone().unwrap_or_default(),
            revoked.id.clone(),
            format!("'{}'", revoked.name),
        )
        .await?;
        Ok(revoked)
    }

    /// Metrics name every tenant, so only a key granted every tenant may read them.
    pub fn authorize_metrics(&self, caller: &Principal) -> Result<(), ServiceError> {
        match caller.tenants {
            TenantScope::All => Ok(()),
            TenantScope::Only(_) => Err(ServiceError::PermissionDenied(
                "metrics cover every tenant: use a key granted every tenant".into(),
            )),
        }
    }
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

/// The API keys that exist, cached in memory so an RPC's authentication costs no disk read
/// and a revocation takes effect at once; every change is written to the store first.
pub struct ApiKeys {
    store: Arc<dyn Catalog>,
    admin_sha256: Option<[u8; 32]>,
    /// The limit of keys created without one; the admin key is never limited.
    default_limit: Option<RateLimit>,
    keys: RwLock<HashMap<String, KnownKey>>,
    /// Creations, revocations and reloads from the store take turns, so a reload that read
    /// the store before a revocation cannot put the revoked key back.
    changing: tokio::sync::Mutex<()>,
    /// Creations and revocations are announced here, for every node's cache.
    signals: Signals,
}

impl ApiKeys {
    pub async fn load(
        store: Arc<dyn Catalog>,
        admin_key: Option<&str>,
        default_limit: Option<RateLimit>,
        signals: Signals,
    ) -> Result<ApiKeys, StoreError> {
        let keys = store
            .api_keys()
            .await?
            .into_iter()
            .map(|key| (key.id.clone(), KnownKey::new(key, default_limit)))
            .collect();
        Ok(ApiKeys {
            store,
            admin_sha256: admin_key.filter(|k| !k.is_empty()).map(key_digest),
            default_limit,
            keys: RwLock::new(keys),
            changing: tokio::sync::Mutex::new(()),
            signals,
        })
    }

    /// Finds the principal behind a presented key.
    pub fn authenticate(&self, presented: Option<&str>) -> Result<Principal, AuthError> {
        let presented = presented
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(AuthError::MissingKey)?;
        let digest = key_digest(presented);
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
    pub async fn create_key(
        &self,
        creator: &Principal,
        request: NewKey,
    ) -> Result<(KeyInfo, String), ServiceError> {
        creator.require(KEYS)?;
        if request.name.len() > MAX_NAME_BYTES || request.name.chars().any(char::is_control) {
            return Err(AuthError::InvalidRequest(format!(
                "a key's name must be at most {MAX_NAME_BYTES} bytes, without control characters"
            ))
            .into());
        }
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
                return Err(AuthError::MissingPermission(permission).into());
            }
            permissions.insert(permission.to_string());
        }
        if permissions.is_empty() {
            return Err(
                AuthError::InvalidRequest("a key needs at least one permission".into()).into(),
            );
        }
        let tenants = if request.tenants.is_empty() {
            if creator.tenants != TenantScope::All {
                return Err(AuthError::InvalidRequest(
                    "name the key's tenants: this API key is not granted every tenant".into(),
                )
                .into());
            }
            None
        } else {
            for tenant in &request.tenants {
                if !valid_tenant_id(tenant) {
                    return Err(AuthError::InvalidRequest(format!(
                        "invalid tenant id '{tenant}': use 1-31 characters of A-Z a-z 0-9 . _ -"
                    ))
                    .into());
                }
                creator.require_tenant(tenant)?;
            }
            let unique: BTreeSet<_> = request.tenants.iter().cloned().collect();
            Some(unique.into_iter().collect())
        };
        let rate_limit = self.rate_limit_for(creator, request.rate_limit)?;
        let id = hex::encode(rand::rng().random::<[u8; 8]>());
        let secret = hex::encode(rand::rng().random::<[u8; 24]>());
        let key = format!("jh_{id}_{secret}");
        let record = ApiKeyRecord {
            id: id.clone(),
            secret_sha256: key_digest(&key),
            name: request.name,
            permissions: permissions.into_iter().collect(),
            tenants,
            created_at: now_ms(),
            rate_limit,
        };
        let _one_at_a_time = self.changing.lock().await;
        self.store.put_api_key(&record).await?;
        let known = KnownKey::new(record, self.default_limit);
        let info = info(&known);
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), known);
        self.signals.publish(Signal::KeyChanged(id));
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
    pub fn list_keys(&self, caller: &Principal) -> Result<Vec<KeyInfo>, ServiceError> {
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
    pub async fn revoke_key(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<Option<KeyInfo>, ServiceError> {
        caller.require(KEYS)?;
        let id = parse_key_id(id).unwrap_or(id);
        let _one_at_a_time = self.changing.lock().await;
        let covered = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .is_some_and(|key| caller.covers(&key.record));
        if !covered {
            return Ok(None);
        }
        // The key authenticates until it is gone from the store and then from the cache;
        // the revocation answers only after both.
        self.store.delete_api_key(id).await?;
        let removed = self
            .keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        self.signals.publish(Signal::KeyChanged(id.to_string()));
        Ok(removed.as_ref().map(info))
    }
}

/// Following what other nodes (or this one) created and revoked.
impl ApiKeys {
    /// Brings the keys named in signals up to date with the store until `stopping`, so that
    /// a key created on another node over the same store works here and one revoked there is
    /// refused here.
    pub async fn follow(self: Arc<Self>, signals: Subscription, stopping: watch::Receiver<bool>) {
        let pick = |signal| match signal {
            Signal::KeyChanged(id) => Some(id),
            _ => None,
        };
        let reload = |only: Option<String>| {
            let keys = self.clone();
            async move { keys.reload(only.as_deref()).await }
        };
        signals.follow(stopping, pick, reload).await;
    }

    /// Takes the key `only` names (or every key) as the store holds it: new ones are added,
    /// changed ones replaced, and ones no longer stored are dropped. A key unchanged keeps
    /// its place in its rate limit.
    pub async fn reload(&self, only: Option<&str>) -> Result<(), StoreError> {
        let wanted = |id: &str| only.is_none_or(|only| only == id);
        let _one_at_a_time = self.changing.lock().await;
        let stored: HashMap<String, ApiKeyRecord> = self
            .store
            .api_keys()
            .await?
            .into_iter()
            .filter(|key| wanted(&key.id))
            .map(|key| (key.id.clone(), key))
            .collect();
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        keys.retain(|id, _| !wanted(id) || stored.contains_key(id));
        for (id, record) in stored {
            if keys.get(&id).is_none_or(|known| known.record != record) {
                keys.insert(id, KnownKey::new(record, self.default_limit));
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::SledStore;
    use crate::store::postgres::{PgStore, relayed_bus};

    /// Two nodes' key caches over one store, their signals relayed between them.
    struct TwoNodes {
        here: Arc<ApiKeys>,
        there: Arc<ApiKeys>,
        store: Arc<dyn Catalog>,
        signals: Signals,
        _stop: watch::Sender<bool>,
        _dir: tempfile::TempDir,
    }

    /// A node's key cache over `store`, following `signals` until `stopping`.
    async fn follower(
        store: Arc<dyn Catalog>,
        signals: &Signals,
        stopping: &watch::Receiver<bool>,
    ) -> Arc<ApiKeys> {
        let keys = ApiKeys::load(store, None, None, signals.clone()).await;
        let keys = Arc::new(keys.expect("keys"));
        tokio::spawn(keys.clone().follow(signals.subscribe(), stopping.clone()));
        keys
    }

    /// Two caches in one process over the embedded store, sharing one bus.
    async fn two_nodes() -> TwoNodes {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Catalog> = Arc::new(SledStore::open(dir.path()).expect("store"));
        let signals = Signals::default();
        let (stop, stopping) = watch::channel(false);
        let mut nodes = Vec::new();
        for _ in 0..2 {
            nodes.push(follower(store.clone(), &signals, &stopping).await);
        }
        TwoNodes {
            there: nodes.pop().expect("node"),
            here: nodes.pop().expect("node"),
            store,
            signals,
            _stop: stop,
            _dir: dir,
        }
    }

    /// Two nodes over one PostgreSQL database, each with its own connections and its own bus,
    /// their signals relayed by the database.
    async fn two_nodes_over_postgres(database: &str) -> (Arc<ApiKeys>, Arc<ApiKeys>, Keep) {
        let url = crate::local_postgres::test_database(database);
        let (stop, stopping) = watch::channel(false);
        let mut nodes = Vec::new();
        for _ in 0..2 {
            let store = Arc::new(PgStore::connect(&url).await.expect("connects"));
            let signals = relayed_bus(&store, stopping.clone()).await;
            nodes.push(follower(store, &signals, &stopping).await);
        }
        let there = nodes.pop().expect("node");
        (nodes.pop().expect("node"), there, Keep(stop))
    }

    /// Keeps the nodes' tasks running while it lives.
    struct Keep(#[allow(dead_code)] watch::Sender<bool>);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_created_on_another_node_over_postgres_authenticates_here() {
        let (here, there, _keep) = two_nodes_over_postgres("keys_created").await;
        let (_, key) = there
            .create_key(&Principal::admin(), new_key())
            .await
            .expect("created");
        assert!(until_authenticates(&here, &key, true).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_revoked_on_another_node_over_postgres_is_refused_here() {
        let (here, there, _keep) = two_nodes_over_postgres("keys_revoked").await;
        let (info, key) = here
            .create_key(&Principal::admin(), new_key())
            .await
            .expect("created");
        assert!(until_authenticates(&there, &key, true).await);
        there
            .revoke_key(&Principal::admin(), &info.id)
            .await
            .expect("revoked");
        assert!(until_authenticates(&here, &key, false).await);
    }

    #[tokio::test]
    async fn a_key_name_with_control_characters_or_too_many_bytes_is_refused() {
        let nodes = two_nodes().await;
        for name in [
            "tab\there".to_string(),
            "nul\0".into(),
            "k".repeat(MAX_NAME_BYTES + 1),
        ] {
            let request = NewKey { name, ..new_key() };
            let refused = nodes.here.create_key(&Principal::admin(), request).await;
            assert!(
                matches!(&refused, Err(ServiceError::InvalidArgument(m)) if m.contains("name")),
                "{refused:?}"
            );
        }
    }

    fn new_key() -> NewKey {
        NewKey {
            name: "worker".into(),
            permissions: vec![JOBS.into()],
            ..NewKey::default()
        }
    }

    /// Waits (up to seconds) until the key authenticates, or is refused, as `wanted`.
    async fn until_authenticates(keys: &ApiKeys, key: &str, wanted: bool) -> bool {
        for _ in 0..500 {
            if keys.authenticate(Some(key)).is_ok() == wanted {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_key_created_on_another_node_authenticates_here() {
        let nodes = two_nodes().await;
        let (_, key) = nodes
            .there
            .create_key(&Principal::admin(), new_key())
            .await
            .expect("created");
        assert!(until_authenticates(&nodes.here, &key, true).await);
    }

    #[tokio::test]
    async fn a_key_revoked_on_another_node_is_refused_here() {
        let nodes = two_nodes().await;
        let (info, key) = nodes
            .here
            .create_key(&Principal::admin(), new_key())
            .await
            .expect("created");
        assert!(until_authenticates(&nodes.there, &key, true).await);
        nodes
            .there
            .revoke_key(&Principal::admin(), &info.id)
            .await
            .expect("revoked");
        assert!(until_authenticates(&nodes.here, &key, false).await);
    }

    #[tokio::test]
    async fn after_missed_signals_every_key_is_read_again() {
        let nodes = two_nodes().await;
        let (info, key) = nodes
            .here
            .create_key(&Principal::admin(), new_key())
            .await
            .expect("created");
        assert!(until_authenticates(&nodes.there, &key, true).await);
        // Revoked in the store behind both caches, the news lost in a flood of signals.
        nodes.store.delete_api_key(&info.id).await.expect("deleted");
        for id in 0..=2_000 {
            nodes.signals.publish(Signal::JobCancelled(id));
        }
        assert!(until_authenticates(&nodes.here, &key, false).await);
        assert!(until_authenticates(&nodes.there, &key, false).await);
    }
}
