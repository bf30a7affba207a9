//! Durable storage behind a few narrow ports: [`JobQueue`] (creating, leasing, changing and
//! deleting jobs), [`JobQueries`] (reading them), [`TriggerStore`], [`KeyValueStore`] and
//! [`Catalog`] (keys, handlers, secrets, the audit trail); [`JobStore`] is all of them with
//! what concerns the whole store (snapshots, closing).
//!
//! The ports speak only of domain types. Their contract, checked for every implementation by
//! the shared [`conformance`] suite:
//! - every change is decided by [`crate::job::state::apply`] and is durable before its future
//!   resolves; concurrent changes may share one flush (group commit);
//! - a job and everything that indexes it change in one atomic write;
//! - an activatable job is leased to at most one activation, highest priority first, then
//!   oldest; an activation that waits is woken as soon as a matching job becomes activatable;
//! - due times (backoffs, scheduled jobs) and lease deadlines are acted on by the store itself,
//!   within milliseconds, from an ordered due-time index;
//! - a job outside the caller's [`TenantScope`] is reported as not found;
//! - a trigger's fire creates its jobs and advances its cursor in one atomic write, and only
//!   if the cursor is still where the scheduler saw it, so no fire happens twice;
//! - a finished job is deleted only by retention, with everything stored for it, and only if
//!   it is still finished as it was found;
//! - a snapshot holds every record as of one moment between two atomic writes, however long
//!   it takes to read and whatever is written meanwhile.
//!
//! [`sled_store::SledStore`] is the embedded implementation.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod index;
pub mod postgres;
#[cfg(test)]
mod properties;
mod sled_store;

pub use sled_store::{DEFAULT_CACHE_BYTES, SledLoader, SledStore};

use crate::kv::{KvBucket, KvError, KvKey, KvKeys, KvLimits, KvOp, KvOutcome};
use crate::retention::RetentionPolicy;

use async_trait::async_trait;

use crate::audit::{AuditEntry, AuditPage, AuditQuery};
use crate::auth::ApiKeyRecord;
use crate::handler::HandlerRecord;
use crate::job::state::{Event, Refusal};
use crate::job::{AttemptLog, EpochMs, Job, JobId, JobRecord, JobState, NewJob, TenantScope};
use crate::trigger::{TriggerId, TriggerRecord};
use index::{IndexStats, StateCounts};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("storage failure: {0}")]
    Io(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is shut down")]
    Closed,
    /// The store cannot be reached now (a database that went away); the request may be
    /// retried once it is back.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

/// A tenant's secret as stored: the value only sealed (see [`crate::secrets`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecretRecord {
    pub tenant: String,
    pub name: String,
    pub sealed: Vec<u8>,
    pub updated_at: EpochMs,
}

/// Why an event on one job was not applied.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ApplyError {
    #[error("job {0} not found")]
    NotFound(JobId),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a key-value write was not stored.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KvWriteError {
    #[error(transparent)]
    Refused(#[from] KvError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a trigger change was not stored.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TriggerError {
    #[error("a trigger named '{name}' already exists in tenant '{tenant}'")]
    NameTaken { tenant: String, name: String },
    #[error("trigger {0} not found")]
    NotFound(TriggerId),
    #[error("trigger {0} was changed meanwhile")]
    Conflict(TriggerId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A trigger fire the scheduler found due: the trigger and the cursor it saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DueFire {
    pub trigger: TriggerId,
    pub next_fire: EpochMs,
}

/// A request to lease jobs of one type.
#[derive(Clone, Debug)]
pub struct Activation {
    pub job_type: String,
    pub worker: String,
    /// Tenants to take jobs from.
    pub scope: TenantScope,
    pub max_jobs: usize,
    pub timeout_ms: i64,
    /// Whether to wait for a job when none is ready. The wait ends when the future is
    /// dropped; a job leased for a dropped activation is handed back at once.
    pub wait: bool,
    /// The lease is for an attempt in this process, which dies with it: the lease is kept in
    /// memory only (readers see it; nothing is written for it), and after a restart the job
    /// is activatable again at once instead of after its lease would have expired.
    pub in_process: bool,
}

/// Which timestamp orders a listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortBy {
    #[default]
    CreatedAt,
    ActivatedAt,
    Deadline,
}

/// Filters and one page of a listing.
#[derive(Clone, Debug)]
pub struct ListQuery {
    pub scope: TenantScope,
    pub tenant: Option<String>,
    pub state: Option<JobState>,
    pub job_type: Option<String>,
    pub worker: Option<String>,
    pub process_instance_key: Option<String>,
    pub element_id: Option<String>,
    pub created_after: Option<EpochMs>,
    pub created_before: Option<EpochMs>,
    pub sort_by: SortBy,
    pub descending: bool,
    pub offset: usize,
    pub limit: usize,
}

impl ListQuery {
    /// Every job in `scope`, newest first, `limit` at a time.
    pub fn all(scope: TenantScope, limit: usize) -> ListQuery {
        ListQuery {
            scope,
            tenant: None,
            state: None,
            job_type: None,
            worker: None,
            process_instance_key: None,
            element_id: None,
            created_after: None,
            created_before: None,
            sort_by: SortBy::CreatedAt,
            descending: true,
            offset: 0,
            limit,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ListPage {
    pub jobs: Vec<Job>,
    /// Jobs matching the filters, on all pages.
    pub total: u64,
    /// The same jobs by state, with the run time of the completed ones.
    pub counts: StateCounts,
}

/// One stored record as a snapshot carries it: the part of the store it belongs to, its key and
/// its value, opaque outside the implementation that wrote them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StoredRecord {
    pub section: String,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// The records of a snapshot, read as they are consumed; dropping it ends the snapshot.
pub type Snapshot = Box<dyn Iterator<Item = Result<StoredRecord, StoreError>> + Send>;

/// What is written together with an applied event, if (and only if) it applies.
#[derive(Clone, Debug, Default)]
pub struct Extras {
    /// Jobs to create in the job's tenant (their `tenant` is overridden).
    pub follow_ups: Vec<NewJob>,
    /// The log of the attempt the event ends.
    pub attempt: Option<AttemptLog>,
}

/// Jobs as a queue: creating, leasing and changing them, handing back leases, and deleting
/// finished ones. Every job operation on the hot path goes through this port.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Stores new jobs; they are pending or activatable by their `run_at`.
    async fn create(&self, jobs: Vec<NewJob>) -> Result<Vec<JobId>, StoreError>;

    /// Leases up to `max_jobs` activatable jobs, waiting for one if asked to.
    async fn activate(&self, request: Activation) -> Result<Vec<Job>, StoreError>;

    /// Applies one event to one job of the scope, returning the stored record.
    async fn apply(
        &self,
        id: JobId,
        scope: TenantScope,
        event: Event,
    ) -> Result<JobRecord, ApplyError> {
        self.apply_with(id, scope, event, Extras::default()).await
    }

    /// Applies one event and, in the same atomic write, stores its extras.
    async fn apply_with(
        &self,
        id: JobId,
        scope: TenantScope,
        event: Event,
        extras: Extras,
    ) -> Result<JobRecord, ApplyError>;

    /// Hands back leases that never reached their worker; stale ones are ignored.
    async fn release(&self, leases: Vec<(JobId, u32)>) -> Result<(), StoreError>;

    /// Up to `limit` finished jobs that `policy` lets go as of `now` (see
    /// [`crate::retention`]), each with the finish time it was found with, from indexes.
    async fn expired(
        &self,
        policy: &RetentionPolicy,
        now: EpochMs,
        limit: usize,
    ) -> Result<Vec<(JobId, EpochMs)>, StoreError>;

    /// Deletes finished jobs with everything stored for them (payload, attempt logs, the
    /// idempotency key they hold), each only if it is still finished at the time given, in
    /// one atomic write; answers how many were deleted.
    async fn purge(&self, jobs: Vec<(JobId, EpochMs)>) -> Result<usize, StoreError>;
}

/// Reading jobs: one job, listings and statistics from indexes, attempt logs.
#[async_trait]
pub trait JobQueries: Send + Sync {
    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError>;

    /// One page of the jobs matching the query, from indexes (no scan of the jobs).
    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError>;

    /// Counts by state, type and tenant, and the last hour's completions, from indexes.
    async fn stats(
        &self,
        scope: &TenantScope,
        tenant: Option<&str>,
        now: EpochMs,
    ) -> Result<IndexStats, StoreError>;

    /// Every tenant that has jobs.
    async fn job_tenants(&self) -> Result<Vec<String>, StoreError>;

    /// The Wasm attempts logged for a job, oldest first.
    async fn attempts(&self, id: JobId) -> Result<Vec<AttemptLog>, StoreError>;
}

/// Triggers and their cursors; a fire and the jobs it creates are one write.
#[async_trait]
pub trait TriggerStore: Send + Sync {
    /// Stores a new trigger under a fresh id (revision 1); its name must be free in its
    /// tenant.
    async fn create_trigger(&self, trigger: TriggerRecord) -> Result<TriggerRecord, TriggerError>;

    /// Replaces a trigger if it is still at `expected_revision`, bumping the revision.
    async fn replace_trigger(
        &self,
        trigger: TriggerRecord,
        expected_revision: u64,
    ) -> Result<TriggerRecord, TriggerError>;

    /// Removes a trigger of the scope; the jobs it created stay.
    async fn delete_trigger(
        &self,
        id: TriggerId,
        scope: TenantScope,
    ) -> Result<TriggerRecord, TriggerError>;

    /// Fires the due triggers whose cursor is still the one given, as of `now`: creates their
    /// jobs and advances their cursors atomically. Answers each trigger's record as it now
    /// stands (`None`: it no longer exists), fired or not.
    async fn fire_triggers(
        &self,
        due: Vec<DueFire>,
        now: EpochMs,
    ) -> Result<Vec<(TriggerId, Option<TriggerRecord>)>, StoreError>;

    async fn triggers(&self) -> Result<Vec<TriggerRecord>, StoreError>;

    async fn trigger(&self, id: TriggerId) -> Result<Option<TriggerRecord>, StoreError>;
}

/// Tenants' key-value buckets, within each tenant's quota.
#[async_trait]
pub trait KeyValueStore: Send + Sync {
    /// Applies one write to one key-value entry, atomically with its tenant's usage and
    /// durably.
    async fn kv_write(
        &self,
        key: KvKey,
        op: KvOp,
        limits: KvLimits,
    ) -> Result<KvOutcome, KvWriteError>;

    async fn kv_get(&self, key: &KvKey) -> Result<Option<Vec<u8>>, StoreError>;

    /// Up to `limit` keys of a bucket after `after`, in byte order.
    async fn kv_keys(
        &self,
        tenant: &str,
        bucket: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KvKeys, StoreError>;

    /// A tenant's buckets that hold keys, by name.
    async fn kv_buckets(&self, tenant: &str) -> Result<Vec<KvBucket>, StoreError>;
}

/// What the server is set up with: API keys, handlers and their components, tenants'
/// secrets, and the audit trail of who changed them. Each change is durable on return.
#[async_trait]
pub trait Catalog: Send + Sync {
    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Stores (or replaces) an API key.
    async fn put_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;

    /// Removes an API key; false if there was none.
    async fn delete_api_key(&self, id: &str) -> Result<bool, StoreError>;

    async fn handlers(&self) -> Result<Vec<HandlerRecord>, StoreError>;

    /// Stores (or replaces) a handler.
    async fn put_handler(&self, handler: &HandlerRecord) -> Result<(), StoreError>;

    /// Removes a handler; false if there was none.
    async fn delete_handler(&self, id: &str) -> Result<bool, StoreError>;

    /// Stores component bytes under their SHA-256.
    async fn put_component(&self, sha256: &[u8; 32], bytes: &[u8]) -> Result<(), StoreError>;

    async fn component(&self, sha256: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores (or replaces) a tenant's sealed secret.
    async fn put_secret(&self, secret: &SecretRecord) -> Result<(), StoreError>;

    async fn secret(&self, tenant: &str, name: &str) -> Result<Option<SecretRecord>, StoreError>;

    /// A tenant's secrets, by name.
    async fn secrets(&self, tenant: &str) -> Result<Vec<SecretRecord>, StoreError>;

    /// Removes a secret; false if there was none.
    async fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool, StoreError>;

    /// Appends an entry to the audit trail, under an id larger than every earlier entry's;
    /// answers the entry with its id.
    async fn record_audit(&self, entry: AuditEntry) -> Result<AuditEntry, StoreError>;

    /// The entries of the audit trail matching the query, newest first.
    async fn audit_trail(&self, query: &AuditQuery) -> Result<AuditPage, StoreError>;
}

/// Ending a store's use: every backend has it, whatever ports it serves.
#[async_trait]
pub trait Lifecycle: Send + Sync {
    /// Flushes everything and stops; later calls fail with [`StoreError::Closed`].
    async fn close(&self) -> Result<(), StoreError>;
}

/// A whole store: every port, and what concerns all of them at once.
#[async_trait]
pub trait JobStore:
    JobQueue + JobQueries + TriggerStore + KeyValueStore + Catalog + Lifecycle + 'static
{
    /// Every stored record as of this moment, for a backup. Reading it holds up no write and
    /// shows none made after this call; it stops at the first error. It is read on a thread
    /// that may block.
    async fn snapshot(&self) -> Result<Snapshot, StoreError>;
}
