//! The deployed Wasm handlers: uploading (validated, compiled, stored), listing and removing
//! them, each scoped to the caller's tenants, and the compiled code of each current version,
//! kept in memory for the executor. Changes reach this node's executor on a watch channel and
//! every registry as signals, which each follows by re-reading the store.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::{DEFAULT_TENANT, JobService, ServiceError, record_act};
use crate::audit::AuditAction;
use crate::auth::{self, Principal};
use crate::grants::{GrantRequest, Grants};
use crate::handler::{HandlerLimits, HandlerRecord, HandlerVersion, RetryPolicy};
use crate::job::limits::{MAX_NAME_BYTES, valid_tenant_id};
use crate::job::{TenantScope, now_ms};
use crate::quota::{Holdings, Quotas};
use crate::runtime::{CompiledHandler, Runtime};
use crate::signals::{Signal, Signals, Subscription};
use crate::store::Catalog;

/// What the server allows a handler to ask for.
#[derive(Clone, Debug)]
pub struct HandlerMaxima {
    pub component_bytes: usize,
    pub memory_mb: u32,
    pub timeout_ms: u64,
    pub concurrency: u32,
    pub retries: u32,
}

impl Default for HandlerMaxima {
    fn default() -> HandlerMaxima {
        HandlerMaxima {
            component_bytes: 50 * 1024 * 1024,
            memory_mb: 256,
            timeout_ms: 15 * 60 * 1000,
            concurrency: 64,
            retries: 100,
        }
    }
}

/// Defaults of a deployment that does not name a limit.
pub const DEFAULT_MEMORY_MB: u32 = 64;
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_CONCURRENCY: u32 = 8;
pub const DEFAULT_MAX_RETRIES: u32 = 3;
pub const DEFAULT_BACKOFF_MS: u64 = 1_000;
pub const DEFAULT_BACKOFF_CAP_MS: u64 = 60_000;

/// An upload, as the APIs receive it.
#[derive(Clone, Debug, Default)]
pub struct Deployment {
    pub job_type: String,
    pub tenant_id: String,
    pub memory_mb: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub max_concurrency: Option<u32>,
    pub max_retries: Option<u32>,
    pub backoff_ms: Option<u64>,
    pub backoff_cap_ms: Option<u64>,
    pub fuel: Option<u64>,
    pub grants: GrantRequest,
    pub component: Vec<u8>,
}

/// Finished uploads remembered for their uploaders to ask about.
const UPLOADS_KEPT: usize = 1000;

/// Where an upload compiled in the background stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadState {
    Compiling,
    Ready { handler_id: String, version: u32 },
    Failed(String),
}

/// An upload compiled in the background, as its uploader may follow it.
#[derive(Clone, Debug)]
pub struct UploadStatus {
    pub id: String,
    pub tenant: String,
    pub job_type: String,
    pub bytes: u64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub state: UploadState,
}

/// An upload that passed every check short of compiling it; it holds its place under the
/// tenant's upload quota until it is installed or dropped.
struct PreparedUpload {
    id: String,
    tenant: String,
    job_type: String,
    limits: HandlerLimits,
    retry: RetryPolicy,
    grants: Grants,
    sha: [u8; 32],
    /// Shared with the compile, which runs on another thread: a component may be 50 MB.
    bytes: Arc<Vec<u8>>,
    _held: crate::quota::Held,
}

/// A handler with the compiled code of its current version.
pub struct LoadedHandler {
    pub record: HandlerRecord,
    pub compiled: Arc<CompiledHandler>,
}

pub struct HandlerRegistry {
    store: Arc<dyn Catalog>,
    runtime: Arc<Runtime>,
    /// Deploys and removals are announced here, for every node's registry.
    signals: Signals,
    maxima: HandlerMaxima,
    handlers: RwLock<BTreeMap<String, Arc<LoadedHandler>>>,
    changes: watch::Sender<u64>,
    deploying: tokio::sync::Mutex<()>,
    /// Uploads compiled in the background, and recently finished ones.
    background: std::sync::Mutex<BTreeMap<String, UploadStatus>>,
    /// Uploads being validated and compiled now, bounded per tenant.
    uploads: Arc<Holdings>,
    handlers_per_tenant: usize,
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::InvalidArgument(message.into())
}

fn internal(error: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(error.to_string())
}

impl HandlerRegistry {
    /// Loads every stored handler's current version, from the compiled-code cache if it can.
    pub async fn open(
        store: Arc<dyn Catalog>,
        runtime: Arc<Runtime>,
        maxima: HandlerMaxima,
        quotas: &Quotas,
        signals: Signals,
    ) -> Result<HandlerRegistry, ServiceError> {
        let mut handlers = BTreeMap::new();
        for record in store.handlers().await? {
            if let Some(loaded) = load_stored(store.as_ref(), &runtime, record).await? {
                handlers.insert(loaded.record.id.clone(), Arc::new(loaded));
            }
        }
        Ok(HandlerRegistry {
            store,
            runtime,
            signals,
            maxima,
            handlers: RwLock::new(handlers),
            changes: watch::channel(0).0,
            deploying: tokio::sync::Mutex::new(()),
            background: std::sync::Mutex::default(),
            // Compiling is the costly part of an upload: bound it per tenant, not per key,
            // and server-wide by what the tenants may hold together.
            uploads: Arc::new(Holdings::new(
                "handler uploads in progress",
                usize::MAX,
                quotas.uploads_per_tenant,
                usize::MAX,
            )),
            handlers_per_tenant: quotas.handlers_per_tenant,
        })
    }

    pub fn maxima(&self) -> &HandlerMaxima {
        &self.maxima
    }

    /// Where the compiled code of the handlers is cached, if anywhere (for backups).
    pub fn compiled_cache_dir(&self) -> Option<&std::path::Path> {
        self.runtime.cache_dir()
    }

    /// The version new attempts of a handler must use; `None` once it is removed.
    pub fn current_version(&self, id: &str) -> Option<u32> {
        self.read().get(id).map(|h| h.record.current().version)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Every loaded handler, for the executor.
    pub fn snapshot(&self) -> Vec<Arc<LoadedHandler>> {
        self.read().values().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<LoadedHandler>>> {
        self.handlers.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells this node's executor, and (as a signal) every registry, that a handler changed.
    fn announce_change(&self, id: &str) {
        self.announce();
        self.signals.publish(Signal::HandlerChanged(id.to_string()));
    }

    fn announce(&self) {
        self.changes.send_modify(|generation| *generation += 1);
    }

    /// Validates, compiles and stores an upload: a new handler, or a new version of the type's.
    pub async fn deploy(
        &self,
        caller: &Principal,
        deployment: Deployment,
    ) -> Result<Arc<LoadedHandler>, ServiceError> {
        let upload = self.prepare(caller, deployment)?;
        let compiled = self.compile(&upload).await?;
        self.install(caller, upload, compiled).await
    }

    /// Validates an upload at once (refusals take milliseconds) and compiles and stores it in
    /// the background; [`HandlerRegistry::upload`] tells how it stands.
    pub fn deploy_in_background(
        self: &Arc<Self>,
        caller: &Principal,
        deployment: Deployment,
    ) -> Result<UploadStatus, ServiceError> {
        let upload = self.prepare(caller, deployment)?;
        let status = UploadStatus {
            id: format!("u{}", hex::encode(rand::random::<[u8; 8]>())),
            tenant: upload.tenant.clone(),
            job_type: upload.job_type.clone(),
            bytes: upload.bytes.len() as u64,
            started_at: now_ms(),
            finished_at: None,
            state: UploadState::Compiling,
        };
        self.record_upload(status.clone());
        let registry = self.clone();
        let caller = caller.clone();
        let id = status.id.clone();
        tokio::spawn(async move {
            let installed = match registry.compile(&upload).await {
                Ok(compiled) => registry.install(&caller, upload, compiled).await,
                Err(error) => Err(error),
            };
            let state = match installed {
                Ok(handler) => UploadState::Ready {
                    handler_id: handler.record.id.clone(),
                    version: handler.record.current().version,
                },
                Err(error) => UploadState::Failed(error.to_string()),
            };
            registry.finish_upload(&id, state);
        });
        Ok(status)
    }

    /// How an upload made with [`HandlerRegistry::deploy_in_background`] stands.
    pub fn upload(&self, caller: &Principal, id: &str) -> Result<UploadStatus, ServiceError> {
        caller.require(auth::HANDLERS)?;
        self.uploads_lock()
            .get(id)
            .filter(|status| caller.tenants.contains(&status.tenant))
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("upload {id} not found")))
    }

    fn uploads_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, UploadStatus>> {
        self.background.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record_upload(&self, status: UploadStatus) {
        let mut uploads = self.uploads_lock();
        // Finished uploads are kept for a while to be asked about; the oldest go first.
        if uploads.len() >= UPLOADS_KEPT
            && let Some(oldest) = uploads
                .values()
                .filter(|u| u.finished_at.is_some())
                .min_by_key(|u| u.started_at)
                .map(|u| u.id.clone())
        {
            uploads.remove(&oldest);
        }
        uploads.insert(status.id.clone(), status);
    }

    fn finish_upload(&self, id: &str, state: UploadState) {
        if let Some(status) = self.uploads_lock().get_mut(id) {
            status.state = state;
            status.finished_at = Some(now_ms());
        }
    }

    /// Everything about an upload that is checked without compiling it.
    fn prepare(
        &self,
        caller: &Principal,
        deployment: Deployment,
    ) -> Result<PreparedUpload, ServiceError> {
        caller.require(auth::HANDLERS)?;
        let job_type = deployment.job_type.trim().to_string();
        if job_type.is_empty() || job_type.len() > MAX_NAME_BYTES {
            return Err(invalid(format!(
                "type must be 1-{MAX_NAME_BYTES} bytes: the job type the handler runs"
            )));
        }
        let tenant = match deployment.tenant_id.trim() {
            "" => DEFAULT_TENANT.to_string(),
            tenant if valid_tenant_id(tenant) => tenant.to_string(),
            tenant => return Err(invalid(format!("invalid tenant id '{tenant}'"))),
        };
        caller.require_tenant(&tenant)?;
        let (limits, retry) = self.check_limits(&deployment)?;
        let grants = Grants::from_request(deployment.grants).map_err(invalid)?;
        let id = handler_id(&tenant, &job_type);
        self.check_handler_quota(&tenant, &id)?;
        let held = self
            .uploads
            .take(&caller.key_id, &TenantScope::only([tenant.as_str()]))?;
        let bytes = deployment.component;
        if bytes.is_empty() {
            return Err(invalid("the request body must be the component's bytes"));
        }
        if bytes.len() > self.maxima.component_bytes {
            return Err(invalid(format!(
                "the component has {} bytes; at most {} are accepted",
                bytes.len(),
                self.maxima.component_bytes
            )));
        }
        // Refused before the compile, which takes seconds for a large component.
        let imports =
            crate::runtime::interface_imports(&bytes).map_err(|e| invalid(e.to_string()))?;
        for import in &imports {
            grants.check_import(import).map_err(invalid)?;
        }
        Ok(PreparedUpload {
            id,
            tenant,
            job_type,
            limits,
            retry,
            grants,
            sha: Sha256::digest(&bytes).into(),
            bytes: Arc::new(bytes),
            _held: held,
        })
    }

    /// Compiles an upload (or loads it from the compiled-code cache) off the async threads.
    async fn compile(&self, upload: &PreparedUpload) -> Result<CompiledHandler, ServiceError> {
        let loader = self.runtime.clone();
        let sha_hex = hex::encode(upload.sha);
        let bytes = Arc::clone(&upload.bytes);
        tokio::task::spawn_blocking(move || loader.load(&sha_hex, &bytes))
            .await
            .map_err(internal)?
            .map_err(|error| invalid(error.to_string()))
    }

    /// Stores a compiled upload as the handler's new current version and announces it.
    async fn install(
        &self,
        caller: &Principal,
        upload: PreparedUpload,
        compiled: CompiledHandler,
    ) -> Result<Arc<LoadedHandler>, ServiceError> {
        let PreparedUpload {
            id,
            tenant,
            job_type,
            limits,
            retry,
            grants,
            sha,
            bytes,
            _held,
        } = upload;
        let _one_at_a_time = self.deploying.lock().await;
        self.check_handler_quota(&tenant, &id)?;
        let now = now_ms();
        let mut record = match self.read().get(&id) {
            Some(existing) => existing.record.clone(),
            None => HandlerRecord {
                id: id.clone(),
                tenant,
                job_type,
                created_at: now,
                versions: Vec::new(),
            },
        };
        let version = HandlerVersion {
            version: record.versions.last().map_or(1, |v| v.version + 1),
            component_sha256: sha,
            component_bytes: bytes.len() as u64,
            limits,
            retry,
            deployed_at: now,
            grants,
        };
        record.versions.push(version);
        self.store.put_component(&sha, &bytes).await?;
        self.store.put_handler(&record).await?;
        let current = record.current();
        record_act(
            self.store.as_ref(),
            caller,
            AuditAction::HandlerDeployed,
            vec![record.tenant.clone()],
            record.id.clone(),
            format!(
                "type {} version {} ({} bytes, sha256 {})",
                record.job_type,
                current.version,
                current.component_bytes,
                hex::encode(current.component_sha256)
            ),
        )
        .await?;
        let loaded = Arc::new(LoadedHandler {
            record,
            compiled: Arc::new(compiled),
        });
        self.handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), loaded.clone());
        self.announce_change(&id);
        Ok(loaded)
    }

    /// A new job type needs room under the tenant's handler quota; a new version does not.
    fn check_handler_quota(&self, tenant: &str, id: &str) -> Result<(), ServiceError> {
        let handlers = self.read();
        if handlers.contains_key(id) {
            return Ok(());
        }
        let deployed = handlers
            .values()
            .filter(|h| h.record.tenant == tenant)
            .count();
        if deployed >= self.handlers_per_tenant {
            return Err(ServiceError::ResourceExhausted(format!(
                "tenant '{tenant}' has {deployed} handlers, its quota: remove one first"
            )));
        }
        Ok(())
    }

    fn check_limits(&self, d: &Deployment) -> Result<(HandlerLimits, RetryPolicy), ServiceError> {
        let m = &self.maxima;
        let within = |name: &str, value: u64, max: u64| {
            if value == 0 || value > max {
                Err(invalid(format!(
                    "{name} must be between 1 and {max}, got {value}"
                )))
            } else {
                Ok(())
            }
        };
        let memory_mb = d.memory_mb.unwrap_or(DEFAULT_MEMORY_MB);
        within(
            "memory_mb",
            memory_mb.into(),
            m.memory_mb.min(self.runtime.max_memory_mb()).into(),
        )?;
        let timeout_ms = d.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        within("timeout_ms", timeout_ms, m.timeout_ms)?;
        let max_concurrency = d.max_concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        within(
            "max_concurrency",
            max_concurrency.into(),
            m.concurrency.into(),
        )?;
        let max_retries = d.max_retries.unwrap_or(DEFAULT_MAX_RETRIES);
        if max_retries > m.retries {
            return Err(invalid(format!(
                "max_retries must be at most {}, got {max_retries}",
                m.retries
            )));
        }
        let backoff_cap_ms = d.backoff_cap_ms.unwrap_or(DEFAULT_BACKOFF_CAP_MS);
        let backoff_base_ms = d
            .backoff_ms
            .unwrap_or(DEFAULT_BACKOFF_MS.min(backoff_cap_ms));
        within(
            "backoff_cap_ms",
            backoff_cap_ms,
            crate::job::limits::MAX_BACKOFF_MS as u64,
        )?;
        if backoff_base_ms > backoff_cap_ms {
            return Err(invalid(format!(
                "backoff_ms ({backoff_base_ms}) must not exceed backoff_cap_ms ({backoff_cap_ms})"
            )));
        }
        if d.fuel == Some(0) {
            return Err(invalid("fuel must be positive when given"));
        }
        Ok((
            HandlerLimits {
                memory_mb,
                timeout_ms,
                max_concurrency,
                fuel: d.fuel,
            },
            RetryPolicy {
                max_retries,
                backoff_base_ms,
                backoff_cap_ms,
            },
        ))
    }

    pub fn list(&self, caller: &Principal) -> Result<Vec<Arc<LoadedHandler>>, ServiceError> {
        caller.require(auth::HANDLERS)?;
        Ok(self
            .read()
            .values()
            .filter(|h| caller.tenants.contains(&h.record.tenant))
            .cloned()
            .collect())
    }

    pub fn get(&self, caller: &Principal, id: &str) -> Result<Arc<LoadedHandler>, ServiceError> {
        caller.require(auth::HANDLERS)?;
        self.read()
            .get(id)
            .filter(|h| caller.tenants.contains(&h.record.tenant))
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("handler {id} not found")))
    }

    /// Removes a handler: no new attempts start; running ones finish.
    pub async fn remove(&self, caller: &Principal, id: &str) -> Result<(), ServiceError> {
        let handler = self.get(caller, id)?;
        let _one_at_a_time = self.deploying.lock().await;
        self.store.delete_handler(id).await?;
        self.handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        self.announce_change(id);
        record_act(
            self.store.as_ref(),
            caller,
            AuditAction::HandlerRemoved,
            vec![handler.record.tenant.clone()],
            id,
            format!("type {}", handler.record.job_type),
        )
        .await
    }
}

/// Following what other nodes (or this one) deployed and removed.
impl HandlerRegistry {
    /// Brings the handlers named in signals up to date with the store until `stopping`, so
    /// that a deploy or removal on another node over the same store takes effect here.
    pub async fn follow(self: Arc<Self>, signals: Subscription, stopping: watch::Receiver<bool>) {
        let pick = |signal| match signal {
            Signal::HandlerChanged(id) => Some(id),
            _ => None,
        };
        let reload = |only: Option<String>| {
            let registry = self.clone();
            async move { registry.reload(only.as_deref()).await }
        };
        signals.follow(stopping, pick, reload).await;
    }

    /// Loads the current version of the handler `only` names (or of every handler) from the
    /// store where it differs from the one loaded here (by its content and deploy time, not
    /// only its number), and drops what the store no longer holds.
    pub async fn reload(&self, only: Option<&str>) -> Result<(), ServiceError> {
        let wanted = |id: &str| only.is_none_or(|only| only == id);
        let differs = |record: &HandlerRecord| {
            self.read()
                .get(&record.id)
                .is_none_or(|loaded| loaded.record.current() != record.current())
        };
        // Compiled outside the deploy lock: it may take seconds.
        let mut compiled = Vec::new();
        for record in self.store.handlers().await? {
            if wanted(&record.id)
                && differs(&record)
                && let Some(loaded) =
                    load_stored(self.store.as_ref(), &self.runtime, record).await?
            {
                compiled.push(Arc::new(loaded));
            }
        }
        let _one_at_a_time = self.deploying.lock().await;
        // Read again under the lock: a deploy here may have finished meanwhile.
        let stored: Vec<HandlerRecord> = self
            .store
            .handlers()
            .await?
            .into_iter()
            .filter(|record| wanted(&record.id))
            .collect();
        let mut handlers = self.handlers.write().unwrap_or_else(|e| e.into_inner());
        let before = handlers.len();
        handlers.retain(|id, _| !wanted(id) || stored.iter().any(|record| &record.id == id));
        let mut changed = handlers.len() != before;
        for record in &stored {
            let loaded_differs = handlers
                .get(&record.id)
                .is_none_or(|loaded| loaded.record.current() != record.current());
            let fresh = compiled.iter().find(|loaded| {
                loaded.record.id == record.id && loaded.record.current() == record.current()
            });
            if loaded_differs && let Some(fresh) = fresh {
                handlers.insert(record.id.clone(), fresh.clone());
                changed = true;
            }
        }
        drop(handlers);
        if changed {
            self.announce();
        }
        Ok(())
    }
}

/// A stored handler with the compiled code of its current version (from the compiled-code
/// cache, by content hash, if there); `None` if it cannot be loaded, which is logged.
async fn load_stored(
    store: &dyn Catalog,
    runtime: &Arc<Runtime>,
    record: HandlerRecord,
) -> Result<Option<LoadedHandler>, ServiceError> {
    let version = record.current().clone();
    let Some(bytes) = store.component(&version.component_sha256).await? else {
        tracing::error!(handler = %record.id, "component bytes missing; handler not loaded");
        return Ok(None);
    };
    let loader = runtime.clone();
    let sha = hex::encode(version.component_sha256);
    let compiled = tokio::task::spawn_blocking(move || loader.load(&sha, &bytes))
        .await
        .map_err(internal)?;
    match compiled {
        Ok(compiled) => {
            tracing::info!(
                handler = %record.id, tenant = %record.tenant, job_type = %record.job_type,
                version = version.version, source = ?compiled.source,
                millis = compiled.load_time.as_secs_f64() * 1000.0,
                "handler loaded"
            );
            Ok(Some(LoadedHandler {
                record,
                compiled: Arc::new(compiled),
            }))
        }
        Err(error) => {
            tracing::error!(handler = %record.id, %error, "handler cannot be loaded");
            Ok(None)
        }
    }
}

/// The service's front door to handlers: every API deploys, lists and removes them here.
impl JobService {
    /// What the server allows a handler to ask for.
    pub fn handler_maxima(&self) -> &HandlerMaxima {
        self.handlers.maxima()
    }

    /// Validates, compiles and stores an upload: a new handler, or a new version of the type's.
    pub async fn deploy_handler(
        &self,
        caller: &Principal,
        deployment: Deployment,
    ) -> Result<Arc<LoadedHandler>, ServiceError> {
        self.handlers.deploy(caller, deployment).await
    }

    /// Validates an upload at once and compiles and stores it in the background;
    /// [`JobService::upload`] tells how it stands.
    pub fn deploy_handler_in_background(
        &self,
        caller: &Principal,
        deployment: Deployment,
    ) -> Result<UploadStatus, ServiceError> {
        self.handlers.deploy_in_background(caller, deployment)
    }

    /// How an upload made in the background stands.
    pub fn upload(&self, caller: &Principal, id: &str) -> Result<UploadStatus, ServiceError> {
        self.handlers.upload(caller, id)
    }

    /// The handlers of the caller's tenants.
    pub fn list_handlers(
        &self,
        caller: &Principal,
    ) -> Result<Vec<Arc<LoadedHandler>>, ServiceError> {
        self.handlers.list(caller)
    }

    pub fn get_handler(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<Arc<LoadedHandler>, ServiceError> {
        self.handlers.get(caller, id)
    }

    /// Removes a handler: no new attempts start; running ones finish.
    pub async fn remove_handler(&self, caller: &Principal, id: &str) -> Result<(), ServiceError> {
        self.handlers.remove(caller, id).await
    }
}

/// A handler's id follows from its tenant and type, so redeploying finds it again.
fn handler_id(tenant: &str, job_type: &str) -> String {
    let digest = Sha256::digest(format!("{tenant}\0{job_type}").as_bytes());
    format!("h{}", &hex::encode(digest)[..15])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::runtime::RuntimeConfig;
    use crate::store::SledStore;
    use crate::store::postgres::{PgStore, relayed_bus};

    /// Two nodes' registries over one store, their signals relayed between them.
    struct TwoNodes {
        here: Arc<HandlerRegistry>,
        there: Arc<HandlerRegistry>,
        _stop: watch::Sender<bool>,
        _dir: tempfile::TempDir,
    }

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
            _stop: stop,
            _dir: dir,
        }
    }

    /// A node's registry over `store`, following `signals` until `stopping`.
    async fn follower(
        store: Arc<dyn Catalog>,
        signals: &Signals,
        stopping: &watch::Receiver<bool>,
    ) -> Arc<HandlerRegistry> {
        let registry = HandlerRegistry::open(
            store,
            sandbox(),
            HandlerMaxima::default(),
            &Quotas::default(),
            signals.clone(),
        )
        .await
        .expect("registry");
        let registry = Arc::new(registry);
        tokio::spawn(
            registry
                .clone()
                .follow(signals.subscribe(), stopping.clone()),
        );
        registry
    }

    fn sandbox() -> Arc<Runtime> {
        let config = RuntimeConfig {
            max_memory_mb: 64,
            max_concurrent_attempts: 2,
            cache_dir: None,
        };
        Arc::new(Runtime::new(config).expect("runtime"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handler_deployed_then_removed_on_another_node_over_postgres_is_followed_here() {
        let url = crate::local_postgres::test_database("handlers_deployed");
        let (_stop, stopping) = watch::channel(false);
        let mut nodes = Vec::new();
        for _ in 0..2 {
            let store = Arc::new(PgStore::connect(&url).await.expect("connects"));
            let signals = relayed_bus(&store, stopping.clone()).await;
            nodes.push(follower(store, &signals, &stopping).await);
        }
        let (there, here) = (&nodes[1], &nodes[0]);
        let deployed = there.deploy(&Principal::admin(), echo()).await;
        let id = deployed.expect("deployed").record.id.clone();
        assert!(until_version(here, &id, Some(1)).await);
        there
            .remove(&Principal::admin(), &id)
            .await
            .expect("removed");
        assert!(until_version(here, &id, None).await);
    }

    fn echo() -> Deployment {
        let (job_type, component) = crate::examples::EXAMPLES[0];
        Deployment {
            job_type: job_type.into(),
            component: component.to_vec(),
            ..Deployment::default()
        }
    }

    /// Waits (up to seconds) until the registry has the handler at `version` (`None`: not at
    /// all).
    async fn until_version(registry: &HandlerRegistry, id: &str, version: Option<u32>) -> bool {
        // Loading compiles the component (no cache here), which a busy machine makes slow.
        for _ in 0..6000 {
            if registry.current_version(id) == version {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_handler_deployed_on_another_node_is_loaded_here() {
        let nodes = two_nodes().await;
        let deployed = nodes.there.deploy(&Principal::admin(), echo()).await;
        let id = deployed.expect("deployed").record.id.clone();
        assert!(until_version(&nodes.here, &id, Some(1)).await);
        let again = nodes.there.deploy(&Principal::admin(), echo()).await;
        assert_eq!(again.expect("deployed").record.current().version, 2);
        assert!(until_version(&nodes.here, &id, Some(2)).await);
    }

    #[tokio::test]
    async fn a_handler_removed_on_another_node_is_dropped_here() {
        let nodes = two_nodes().await;
        let deployed = nodes.here.deploy(&Principal::admin(), echo()).await;
        let id = deployed.expect("deployed").record.id.clone();
        assert!(until_version(&nodes.there, &id, Some(1)).await);
        nodes
            .there
            .remove(&Principal::admin(), &id)
            .await
            .expect("removed");
        assert!(until_version(&nodes.here, &id, None).await);
    }
}
