//! The embedded store: sled 0.34 on local disk, one process per data directory.
//!
//! Changes go through the single [`writer`] thread and its group-committing flusher; reads
//! (`get`, `list`, API keys) go straight to sled from the caller's thread. Every write, the
//! writer's batches and the rare direct ones alike, passes the [`snapshot`] gate, so that a
//! backup sees one point in time.

mod codec;
mod snapshot;
mod writer;

use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use tokio::sync::oneshot;

use self::codec::{ATTEMPT_PREFIX, TRIGGER_PREFIX, io, payload_key, record_key};
pub use self::snapshot::SledLoader;
use self::snapshot::Snapshots;
use self::writer::{Command, MemoryRecords, Poison, Writer};
use super::index::{IndexStats, JobIndex, ListPlan};
use super::{
    Activation, ApplyError, Catalog, DueFire, Extras, JobQueries, JobQueue, JobStore,
    KeyValueStore, KvWriteError, Lifecycle, ListPage, ListQuery, SecretRecord, Snapshot,
    StoreError, TriggerError, TriggerStore,
};
use crate::audit::{AuditEntry, AuditPage, AuditQuery};
use crate::auth::ApiKeyRecord;
use crate::handler::HandlerRecord;
use crate::job::state::Event;
use crate::job::{AttemptLog, EpochMs, Job, JobId, JobPayload, JobRecord, NewJob, TenantScope};
use crate::kv::{KvBucket, KvKey, KvKeys, KvLimits, KvOp, KvOutcome, KvUsage};
use crate::metrics::Metrics;
use crate::retention::RetentionPolicy;
use crate::trigger::{TriggerId, TriggerRecord};

/// Memory sled may use for its page cache, unless the server is told otherwise.
pub const DEFAULT_CACHE_BYTES: u64 = 512 * 1024 * 1024;

/// sled's own tree, which the store does not use.
const SLED_DEFAULT_TREE: &[u8] = b"__sled__default";

pub struct SledStore {
    db: sled::Db,
    jobs: sled::Tree,
    api_keys: sled::Tree,
    handlers: sled::Tree,
    components: sled::Tree,
    secrets: sled::Tree,
    audit: sled::Tree,
    /// The next audit entry's id: one past the last stored, so a restored store goes on
    /// from its trail rather than from sled's id counter, which a snapshot does not carry.
    next_audit_id: std::sync::atomic::AtomicU64,
    commands: Sender<Command>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Listing and statistics indexes, kept by the writer.
    index: Arc<RwLock<JobIndex>>,
    snapshots: Arc<Snapshots>,
    /// Records of leases held in memory only, read in place of the stored ones.
    memory_records: MemoryRecords,
}

impl Drop for SledStore {
    /// Stops the writer even without `close`: the flusher holds a command sender of its own,
    /// so the channel alone would never tell the writer to stop.
    fn drop(&mut self) {
        let (reply, _) = oneshot::channel();
        let _ = self.commands.send(Command::Close { reply });
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir` and rebuilds its indexes.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        SledStore::open_with(dir, Arc::default(), DEFAULT_CACHE_BYTES)
    }

    /// Opens the store with a page cache of `cache_bytes`, counting job transitions into
    /// `metrics`.
    pub fn open_with(
        dir: &Path,
        metrics: Arc<Metrics>,
        cache_bytes: u64,
    ) -> Result<SledStore, StoreError> {
        let db = open_when_free(dir, cache_bytes)?;
        let jobs = db.open_tree("jobs").map_err(io)?;
        let api_keys = db.open_tree("api_keys").map_err(io)?;
        let handlers = db.open_tree("handlers").map_err(io)?;
        let components = db.open_tree("components").map_err(io)?;
        let secrets = db.open_tree("secrets").map_err(io)?;
        let audit = db.open_tree("audit").map_err(io)?;
        let last_audit_id = match audit.last().map_err(io)? {
            Some((key, _)) => u64::from_be_bytes(
                key.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("malformed audit key".into()))?,
            ),
            None => 0,
        };
        let poison: Poison = Arc::new(Mutex::new(None));
        let index = Arc::new(RwLock::new(JobIndex::default()));
        let snapshots = Arc::new(Snapshots::default());
        let memory_records = MemoryRecords::default();
        let writer = Writer::recover(
            jobs.clone(),
            poison.clone(),
            index.clone(),
            metrics,
            snapshots.clone(),
            memory_records.clone(),
        )?;
        let (commands, command_queue) = mpsc::channel();
        let (groups, group_queue) = mpsc::channel();
        let flusher_db = db.clone();
        let release_to = commands.clone();
        let flusher = std::thread::Builder::new()
            .name("jobhost-store-flusher".into())
            .spawn(move || writer::run_flusher(flusher_db, group_queue, release_to, poison))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        let writer = std::thread::Builder::new()
            .name("jobhost-store-writer".into())
            .spawn(move || writer.run(command_queue, groups))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(SledStore {
            db,
            jobs,
            api_keys,
            handlers,
            components,
            secrets,
            audit,
            next_audit_id: std::sync::atomic::AtomicU64::new(last_audit_id + 1),
            commands,
            threads: Mutex::new(vec![writer, flusher]),
            index,
            snapshots,
            memory_records,
        })
    }

    fn send(&self, command: Command) -> Result<(), StoreError> {
        self.commands.send(command).map_err(|_| StoreError::Closed)
    }

    /// Sends a trigger command built around its reply channel and waits for the answer.
    async fn trigger_command(
        &self,
        command: impl FnOnce(writer::TriggerReply) -> Command,
    ) -> Result<TriggerRecord, TriggerError> {
        let (reply, answer) = oneshot::channel();
        self.send(command(reply))?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Flushes everything written so far, on a thread that may block: sled's own
    /// `flush_async` can deadlock its thread pool when several flushes run at once.
    async fn flush(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| StoreError::Io(e.to_string()))?
            .map_err(io)?;
        Ok(())
    }

    /// Writes outside the job writer (rare changes: keys, handlers), flushed before returning.
    async fn insert_durably(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StoreError> {
        let gate = self.snapshots.before_write(tree, [key]);
        tree.insert(key, value).map_err(io)?;
        drop(gate);
        self.flush().await?;
        Ok(())
    }

    async fn remove_durably(&self, tree: &sled::Tree, key: &[u8]) -> Result<bool, StoreError> {
        let gate = self.snapshots.before_write(tree, [key]);
        let existed = tree.remove(key).map_err(io)?.is_some();
        drop(gate);
        self.flush().await?;
        Ok(existed)
    }

    /// A job as stored now: its record (from memory while an in-process lease holds it)
    /// and its payload.
    fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let in_memory = self
            .memory_records
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned();
        let record = match in_memory {
            Some(record) => record,
            None => {
                let Some(bytes) = self.jobs.get(record_key(id)).map_err(io)? else {
                    return Ok(None);
                };
                codec::decode(&bytes)?
            }
        };
        match self.payload(id) {
            Ok(payload) => Ok(Some(Job { record, payload })),
            // Retention deleted the job between the two reads: it is gone, not corrupt.
            Err(_) if !self.jobs.contains_key(record_key(id)).map_err(io)? => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn payload(&self, id: JobId) -> Result<JobPayload, StoreError> {
        match self.jobs.get(payload_key(id)).map_err(io)? {
            Some(bytes) => codec::decode(&bytes),
            None => Err(StoreError::Corrupt(format!("job {id} has no payload"))),
        }
    }

    fn read_index(&self) -> Result<std::sync::RwLockReadGuard<'_, JobIndex>, StoreError> {
        self.index
            .read()
            .map_err(|_| StoreError::Corrupt("job index lock poisoned".into()))
    }
}

/// How long opening waits for a previous server on the same directory to let go of it.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the database, waiting a little while another server (one that is just stopping)
/// still holds the directory's lock.
fn open_when_free(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open();
        match opened {
            Ok(db) => return Ok(db),
            Err(error) if error.to_string().contains("could not acquire lock") => {
                if started.elapsed() > LOCK_WAIT {
                    return Err(StoreError::Io(format!(
                        "the data directory {} is in use by another jobhost server",
                        dir.display()
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(error) => {
                return Err(StoreError::Io(format!(
                    "cannot open the data directory {}: {error}",
                    dir.display()
                )));
            }
        }
    }
}

/// Secrets sort by tenant, then name; tenant ids hold no NUL, so no tenant's prefix is
/// another's.
fn secret_key(tenant: &str, name: &str) -> Vec<u8> {
    format!("{tenant}\0{name}").into_bytes()
}

/// An API key as stored before keys had rate limits.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct ApiKeyRecordWithoutRate {
    id: String,
    secret_sha256: [u8; 32],
    name: String,
    permissions: Vec<String>,
    tenants: Option<Vec<String>>,
    created_at: EpochMs,
}

/// Decodes a key in the current layout, or in the one before rate limits (postcard is not
/// self-describing, so a record without the trailing field fails the current layout).
fn decode_api_key(bytes: &[u8]) -> Result<ApiKeyRecord, StoreError> {
    codec::decode(bytes).or_else(|error| {
        let old: ApiKeyRecordWithoutRate = codec::decode(bytes).map_err(|_| error)?;
        Ok(ApiKeyRecord {
            id: old.id,
            secret_sha256: old.secret_sha256,
            name: old.name,
            permissions: old.permissions,
            tenants: old.tenants,
            created_at: old.created_at,
            rate_limit: None,
        })
    })
}

/// A handler as stored before versions had grants.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct HandlerRecordWithoutGrants {
    id: String,
    tenant: String,
    job_type: String,
    created_at: EpochMs,
    versions: Vec<HandlerVersionWithoutGrants>,
}

#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct HandlerVersionWithoutGrants {
    version: u32,
    component_sha256: [u8; 32],
    component_bytes: u64,
    limits: crate::handler::HandlerLimits,
    retry: crate::handler::RetryPolicy,
    deployed_at: EpochMs,
}

/// Decodes a handler in the current layout, or in the one before grants (granted nothing).
fn decode_handler(bytes: &[u8]) -> Result<HandlerRecord, StoreError> {
    codec::decode(bytes).or_else(|error| {
        let old: HandlerRecordWithoutGrants = codec::decode(bytes).map_err(|_| error)?;
        Ok(HandlerRecord {
            id: old.id,
            tenant: old.tenant,
            job_type: old.job_type,
            created_at: old.created_at,
            versions: old
                .versions
                .into_iter()
                .map(|v| crate::handler::HandlerVersion {
                    version: v.version,
                    component_sha256: v.component_sha256,
                    component_bytes: v.component_bytes,
                    limits: v.limits,
                    retry: v.retry,
                    deployed_at: v.deployed_at,
                    grants: Default::default(),
                })
                .collect(),
        })
    })
}

/// Hands back the leases of an activation whose caller stopped waiting after the store had
/// already answered it.
struct PendingActivation {
    answer: oneshot::Receiver<Result<Vec<JobRecord>, StoreError>>,
    commands: Sender<Command>,
    received: bool,
}

impl Drop for PendingActivation {
    fn drop(&mut self) {
        if !self.received
            && let Ok(Ok(jobs)) = self.answer.try_recv()
        {
            let leases = jobs.iter().map(|job| (job.id, job.lease)).collect();
            let _ = self.commands.send(Command::Release {
                leases,
                reply: None,
            });
        }
    }
}

#[async_trait]
impl JobQueue for SledStore {
    async fn create(&self, jobs: Vec<NewJob>) -> Result<Vec<JobId>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Create { jobs, reply })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn activate(&self, request: Activation) -> Result<Vec<Job>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Activate { request, reply })?;
        let mut pending = PendingActivation {
            answer,
            commands: self.commands.clone(),
            received: false,
        };
        let records = (&mut pending.answer).await;
        pending.received = true;
        let records = records.map_err(|_| StoreError::Closed)??;
        let mut jobs = Vec::with_capacity(records.len());
        for record in &records {
            match self.payload(record.id) {
                Ok(payload) => jobs.push(Job {
                    record: record.clone(),
                    payload,
                }),
                Err(error) => {
                    let leases = records.iter().map(|job| (job.id, job.lease)).collect();
                    self.release(leases).await?;
                    return Err(error);
                }
            }
        }
        Ok(jobs)
    }

    async fn apply_with(
        &self,
        id: JobId,
        scope: TenantScope,
        event: Event,
        extras: Extras,
    ) -> Result<JobRecord, ApplyError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Apply {
            id,
            scope,
            event,
            extras,
            reply,
        })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn release(&self, leases: Vec<(JobId, u32)>) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Release {
            leases,
            reply: Some(reply),
        })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn expired(
        &self,
        policy: &RetentionPolicy,
        now: EpochMs,
        limit: usize,
    ) -> Result<Vec<(JobId, EpochMs)>, StoreError> {
        Ok(self.read_index()?.expired(policy, now, limit))
    }

    async fn purge(&self, jobs: Vec<(JobId, EpochMs)>) -> Result<usize, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Purge { jobs, reply })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

#[async_trait]
impl JobQueries for SledStore {
    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.job(id)
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        // The records of a page cut from the index are read under its lock, so they are the
        // ones the index counted. A page ordered by activation time or deadline is cut after
        // the lock is released, so the writer never waits for that selection; a job that
        // left the state asked for meanwhile is left out of the page.
        let index = self.read_index()?;
        let (page, index) = match index.plan(query) {
            ListPlan::Cut(page) => (page, Some(index)),
            to_cut => {
                drop(index);
                (to_cut.page(query), None)
            }
        };
        let mut jobs = Vec::with_capacity(page.ids.len());
        for id in page.ids {
            if let Some(job) = self.job(id)?
                && (index.is_some() || query.state.is_none_or(|state| job.record.state == state))
            {
                jobs.push(job);
            }
        }
        drop(index);
        Ok(ListPage {
            jobs,
            total: page.counts.total(),
            counts: page.counts,
        })
    }

    async fn stats(
        &self,
        scope: &TenantScope,
        tenant: Option<&str>,
        now: EpochMs,
    ) -> Result<IndexStats, StoreError> {
        Ok(self.read_index()?.stats(scope, tenant, now))
    }

    async fn job_tenants(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.read_index()?.tenants())
    }

    async fn attempts(&self, id: JobId) -> Result<Vec<AttemptLog>, StoreError> {
        self.jobs
            .scan_prefix(codec::prefixed(ATTEMPT_PREFIX, id))
            .map(|entry| codec::decode(&entry.map_err(io)?.1))
            .collect()
    }
}

#[async_trait]
impl TriggerStore for SledStore {
    async fn create_trigger(&self, trigger: TriggerRecord) -> Result<TriggerRecord, TriggerError> {
        self.trigger_command(|reply| Command::CreateTrigger {
            trigger: Box::new(trigger),
            reply,
        })
        .await
    }

    async fn replace_trigger(
        &self,
        trigger: TriggerRecord,
        expected_revision: u64,
    ) -> Result<TriggerRecord, TriggerError> {
        self.trigger_command(|reply| Command::ReplaceTrigger {
            trigger: Box::new(trigger),
            expected_revision,
            reply,
        })
        .await
    }

    async fn delete_trigger(
        &self,
        id: TriggerId,
        scope: TenantScope,
    ) -> Result<TriggerRecord, TriggerError> {
        self.trigger_command(|reply| Command::DeleteTrigger { id, scope, reply })
            .await
    }

    async fn fire_triggers(
        &self,
        due: Vec<DueFire>,
        now: EpochMs,
    ) -> Result<Vec<(TriggerId, Option<TriggerRecord>)>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::FireTriggers {
            due,
            as_of: now,
            reply,
        })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn triggers(&self) -> Result<Vec<TriggerRecord>, StoreError> {
        self.jobs
            .scan_prefix([TRIGGER_PREFIX])
            .map(|entry| codec::decode_trigger(&entry.map_err(io)?.1))
            .collect()
    }

    async fn trigger(&self, id: TriggerId) -> Result<Option<TriggerRecord>, StoreError> {
        match self.jobs.get(codec::trigger_key(id)).map_err(io)? {
            Some(bytes) => Ok(Some(codec::decode_trigger(&bytes)?)),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl KeyValueStore for SledStore {
    async fn kv_write(
        &self,
        key: KvKey,
        op: KvOp,
        limits: KvLimits,
    ) -> Result<KvOutcome, KvWriteError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::KvWrite {
            key,
            op,
            limits,
            reply,
        })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn kv_get(&self, key: &KvKey) -> Result<Option<Vec<u8>>, StoreError> {
        let stored = codec::kv_key(&key.tenant, &key.bucket, &key.key);
        Ok(self.jobs.get(stored).map_err(io)?.map(|v| v.to_vec()))
    }

    async fn kv_keys(
        &self,
        tenant: &str,
        bucket: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KvKeys, StoreError> {
        let prefix = codec::kv_key(tenant, bucket, "");
        let start = match after {
            // Just past `after`: the same bytes with a NUL appended.
            Some(after) => {
                let mut start = codec::kv_key(tenant, bucket, after);
                start.push(0);
                start
            }
            None => prefix.clone(),
        };
        let mut keys = Vec::new();
        for entry in self.jobs.range(start..) {
            let (stored, _) = entry.map_err(io)?;
            if !stored.starts_with(&prefix) {
                break;
            }
            if keys.len() == limit {
                let next = keys.last().cloned();
                return Ok(KvKeys { keys, next });
            }
            keys.push(codec::kv_parts(&stored)?.2.to_string());
        }
        Ok(KvKeys { keys, next: None })
    }

    async fn kv_buckets(&self, tenant: &str) -> Result<Vec<KvBucket>, StoreError> {
        let mut buckets: Vec<KvBucket> = Vec::new();
        for entry in self.jobs.scan_prefix(codec::kv_tenant_prefix(tenant)) {
            let (stored, value) = entry.map_err(io)?;
            let (_, bucket, key) = codec::kv_parts(&stored)?;
            if buckets.last().is_none_or(|last| last.name != bucket) {
                buckets.push(KvBucket {
                    name: bucket.to_string(),
                    usage: KvUsage::default(),
                });
            }
            let usage = &mut buckets.last_mut().expect("pushed above").usage;
            usage.keys += 1;
            usage.bytes += (key.len() + value.len()) as u64;
        }
        Ok(buckets)
    }
}

#[async_trait]
impl Catalog for SledStore {
    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.api_keys
            .iter()
            .map(|entry| decode_api_key(&entry.map_err(io)?.1))
            .collect()
    }

    async fn put_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        self.insert_durably(&self.api_keys, key.id.as_bytes(), &codec::encode(key))
            .await
    }

    async fn delete_api_key(&self, id: &str) -> Result<bool, StoreError> {
        self.remove_durably(&self.api_keys, id.as_bytes()).await
    }

    async fn handlers(&self) -> Result<Vec<HandlerRecord>, StoreError> {
        self.handlers
            .iter()
            .map(|entry| decode_handler(&entry.map_err(io)?.1))
            .collect()
    }

    async fn put_handler(&self, handler: &HandlerRecord) -> Result<(), StoreError> {
        let bytes = codec::encode(handler);
        self.insert_durably(&self.handlers, handler.id.as_bytes(), &bytes)
            .await
    }

    async fn delete_handler(&self, id: &str) -> Result<bool, StoreError> {
        self.remove_durably(&self.handlers, id.as_bytes()).await
    }

    async fn put_component(&self, sha256: &[u8; 32], bytes: &[u8]) -> Result<(), StoreError> {
        self.insert_durably(&self.components, sha256, bytes).await
    }

    async fn component(&self, sha256: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.components.get(sha256).map_err(io)?.map(|b| b.to_vec()))
    }

    async fn put_secret(&self, secret: &SecretRecord) -> Result<(), StoreError> {
        let key = secret_key(&secret.tenant, &secret.name);
        self.insert_durably(&self.secrets, &key, &codec::encode(secret))
            .await
    }

    async fn secret(&self, tenant: &str, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        self.secrets
            .get(secret_key(tenant, name))
            .map_err(io)?
            .map(|bytes| codec::decode(&bytes))
            .transpose()
    }

    async fn secrets(&self, tenant: &str) -> Result<Vec<SecretRecord>, StoreError> {
        self.secrets
            .scan_prefix(secret_key(tenant, ""))
            .map(|entry| codec::decode(&entry.map_err(io)?.1))
            .collect()
    }

    async fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        self.remove_durably(&self.secrets, &secret_key(tenant, name))
            .await
    }

    async fn record_audit(&self, mut entry: AuditEntry) -> Result<AuditEntry, StoreError> {
        entry.id = self
            .next_audit_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.insert_durably(&self.audit, &entry.id.to_be_bytes(), &codec::encode(&entry))
            .await?;
        Ok(entry)
    }

    async fn audit_trail(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let older = match query.before {
            Some(before) => self.audit.range(..before.to_be_bytes()),
            None => self.audit.iter(),
        };
        query.page(
            older
                .rev()
                .map(|item| codec::decode::<AuditEntry>(&item.map_err(io)?.1)),
        )
    }
}

#[async_trait]
impl JobStore for SledStore {
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        // Every tree, so a tree added by a later feature is never left out of a backup.
        let mut names = self.db.tree_names();
        names.retain(|name| name != SLED_DEFAULT_TREE);
        names.sort();
        let trees = names
            .iter()
            .map(|name| self.db.open_tree(name).map_err(io))
            .collect::<Result<_, _>>()?;
        let snapshot = self.snapshots.start(trees);
        // What the snapshot holds was applied; once flushed it is also what a crash would keep.
        self.flush().await?;
        Ok(Box::new(snapshot))
    }
}

#[async_trait]
impl Lifecycle for SledStore {
    async fn close(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Close { reply })?;
        answer.await.map_err(|_| StoreError::Closed)??;
        self.flush().await?;
        // The threads hold the database open; the directory is free once they are gone.
        let threads = std::mem::take(&mut *self.threads.lock().map_err(|_| StoreError::Closed)?);
        tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| drop(t.join())))
            .await
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Arc<dyn JobStore> {
        Arc::new(SledStore::open(dir).expect("store opens"))
    }

    crate::store_conformance!(open);

    #[test]
    fn a_key_stored_before_rate_limits_reads_back_unlimited() {
        let old = ApiKeyRecordWithoutRate {
            id: "k".into(),
            secret_sha256: [3; 32],
            name: "ci".into(),
            permissions: vec!["jobs".into()],
            tenants: Some(vec!["acme".into()]),
            created_at: 7,
        };
        let key = decode_api_key(&codec::encode(&old)).unwrap();
        assert_eq!(key.id, "k");
        assert_eq!(key.tenants, Some(vec!["acme".to_string()]));
        assert_eq!(key.rate_limit, None);
    }

    #[test]
    fn a_handler_stored_before_grants_reads_back_granted_nothing() {
        let old = HandlerRecordWithoutGrants {
            id: "h1".into(),
            tenant: "acme".into(),
            job_type: "resize".into(),
            created_at: 5,
            versions: vec![HandlerVersionWithoutGrants {
                version: 1,
                component_sha256: [9; 32],
                component_bytes: 100,
                limits: crate::handler::HandlerLimits {
                    memory_mb: 64,
                    timeout_ms: 1_000,
                    max_concurrency: 2,
                    fuel: None,
                },
                retry: crate::handler::RetryPolicy {
                    max_retries: 3,
                    backoff_base_ms: 10,
                    backoff_cap_ms: 100,
                },
                deployed_at: 6,
            }],
        };
        let handler = decode_handler(&codec::encode(&old)).unwrap();
        assert_eq!(handler.job_type, "resize");
        assert_eq!(handler.current().limits.max_concurrency, 2);
        assert!(handler.current().grants.is_empty());
    }
}
