//! The behaviour every store must show, as a suite of async checks in one part per port:
//! [`queue`], [`queries`], [`triggers`], [`key_value`], [`catalog`] and [`whole_store`].
//!
//! A backend runs it with [`store_conformance!`](crate::store_conformance), given an
//! [`Open`] that opens (or reopens) a store whose data lives in a directory; a backend whose
//! data lives elsewhere (a database) keys it by the directory. Outside this crate the suite
//! is built with the feature `conformance`.

pub mod catalog;
pub mod key_value;
pub mod queries;
pub mod queue;
pub mod triggers;
pub mod whole_store;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{AuditAction, AuditEntry, AuditPage, AuditQuery};
use crate::auth::ApiKeyRecord;
use crate::handler::{HandlerLimits, HandlerRecord, HandlerVersion, RetryPolicy};
use crate::job::AttemptLog;
use crate::job::state::{Event, Refusal};
use crate::job::{JobPayload, JobState, NewJob, TenantScope};
use crate::kv::{KvError, KvKey, KvLimits, KvOp, KvOutcome, KvUsage};
use crate::retention::RetentionPolicy;
use crate::store::{
    Activation, ApplyError, Catalog, DueFire, Extras, JobStore, KeyValueStore, KvWriteError,
    Lifecycle, ListQuery, SecretRecord, Snapshot, StoredRecord, TriggerError,
};
use crate::trigger::{Schedule, TriggerRecord};

/// Runs the conformance suite against a store: `store_conformance!(open)` for every port,
/// `store_conformance!(open, queue)` (or `queries`, `triggers`, `key_value`, `catalog`,
/// `whole_store`) for one port's part. `open` is a [`conformance::Open`](crate::store::conformance::Open).
/// Each check becomes one `#[tokio::test]`, so the caller needs tokio's `macros` feature.
#[macro_export]
macro_rules! store_conformance {
    ($open:expr) => {
        $crate::store_conformance!($open, queue);
        $crate::store_conformance!($open, queries);
        $crate::store_conformance!($open, triggers);
        $crate::store_conformance!($open, key_value);
        $crate::store_conformance!($open, catalog);
        $crate::store_conformance!($open, whole_store);
    };
    ($open:expr, queue) => {
        $crate::store_conformance!(@checks $open; queue;
            created_job_reads_back_with_its_payload,
            a_create_with_a_used_idempotency_key_answers_the_first_job_and_creates_nothing,
            idempotency_keys_are_unique_per_tenant_and_type,
            each_job_is_leased_to_one_of_many_concurrent_activations,
            activation_takes_higher_priority_then_older_jobs,
            activation_stays_within_its_tenant_scope,
            a_waiting_activation_is_woken_by_a_new_job,
            an_abandoned_wait_leases_nothing,
            an_expired_lease_makes_the_job_activatable_again,
            a_backoff_keeps_the_job_pending_until_due,
            a_scheduled_job_is_pending_until_its_time,
            a_job_outside_the_scope_is_not_found,
            a_refused_event_changes_nothing,
            a_released_lease_makes_the_job_activatable,
            everything_acknowledged_survives_a_reopen,
            leases_that_expired_while_closed_are_activatable_after_reopen,
            an_in_process_lease_is_seen_by_readers_and_listings,
            an_in_process_lease_ends_with_the_process,
            a_completion_under_an_in_process_lease_survives_a_reopen,
            job_ids_are_never_reused_after_a_reopen,
            follow_ups_and_attempt_logs_are_written_with_the_event,
            a_refused_event_writes_no_extras,
            an_expired_job_is_deleted_with_everything_stored_for_it,
            a_deleted_job_frees_its_idempotency_key,
            a_deletion_survives_a_reopen,
            a_job_that_changed_since_it_was_found_expired_is_not_deleted,
            an_open_job_is_never_deleted,
        );
    };
    ($open:expr, queries) => {
        $crate::store_conformance!(@checks $open; queries;
            listing_filters_sorts_and_pages,
            the_log_of_an_attempt_after_which_the_job_stays_open_is_listed,
            attempt_logs_survive_a_finished_job_being_reopened_and_the_store_reopened,
        );
    };
    ($open:expr, triggers) => {
        $crate::store_conformance!(@checks $open; triggers;
            a_trigger_fire_creates_its_job_and_advances_its_cursor_together,
            a_fire_with_a_stale_cursor_does_nothing,
            trigger_names_are_unique_within_a_tenant,
            a_trigger_change_from_a_stale_revision_is_refused,
            a_removed_trigger_no_longer_fires,
            triggers_and_their_cursors_survive_a_reopen,
        );
    };
    ($open:expr, key_value) => {
        $crate::store_conformance!(@checks $open; key_value;
            kv_entries_are_kept_per_tenant_and_bucket_and_survive_a_reopen,
            kv_increments_from_many_writers_are_all_counted,
            kv_compare_and_swap_applies_only_over_the_expected_value,
            kv_quotas_count_a_tenants_keys_across_buckets_and_a_reopen,
            kv_keys_are_listed_in_pages,
        );
    };
    ($open:expr, catalog) => {
        $crate::store_conformance!(@checks $open; catalog;
            api_keys_are_stored_and_removed,
            audit_entries_survive_a_reopen_and_read_newest_first,
            an_audit_reading_pages_and_filters_within_its_scope,
            handlers_and_components_are_stored_and_removed,
            secrets_are_kept_per_tenant_and_survive_a_reopen,
            catalog_writes_from_many_callers_at_once_all_complete,
        );
    };
    ($open:expr, whole_store) => {
        $crate::store_conformance!(@checks $open; whole_store;
            a_snapshot_shows_no_write_made_after_it_started,
        );
    };
    (@checks $open:expr; $port:ident; $($name:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let dir = $crate::store::conformance::scratch_dir();
                $crate::store::conformance::$port::$name($open, dir.path()).await;
            }
        )*
    };
}

/// Opens (or reopens) the store whose data lives in the directory given. A backend that
/// serves only some ports runs their parts with its own type as `S`.
pub type Open<S = dyn JobStore> = fn(&Path) -> Arc<S>;

/// A fresh directory for one check, removed when dropped.
pub fn scratch_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

fn new_job(job_type: &str, tenant: &str) -> NewJob {
    NewJob {
        tenant: tenant.into(),
        job_type: job_type.into(),
        priority: 0,
        retries: 3,
        run_at: None,
        payload: JobPayload {
            variables: r#"{"n":1}"#.into(),
            ..JobPayload::default()
        },
        idempotency_key: None,
    }
}

fn keyed_job(job_type: &str, tenant: &str, key: &str) -> NewJob {
    NewJob {
        idempotency_key: Some(key.into()),
        ..new_job(job_type, tenant)
    }
}

fn activation(job_type: &str, max_jobs: usize) -> Activation {
    Activation {
        job_type: job_type.into(),
        worker: "w".into(),
        scope: TenantScope::All,
        max_jobs,
        timeout_ms: 30_000,
        wait: false,
        in_process: false,
    }
}

async fn create(store: &Arc<dyn JobStore>, job: NewJob) -> u64 {
    store.create(vec![job]).await.expect("created")[0]
}

async fn state_of(store: &Arc<dyn JobStore>, id: u64) -> JobState {
    store
        .get(id)
        .await
        .unwrap()
        .expect("job exists")
        .record
        .state
}

fn in_process_activation(job_type: &str, max_jobs: usize) -> Activation {
    Activation {
        in_process: true,
        ..activation(job_type, max_jobs)
    }
}

fn audit_entry(tenant: &str, action: AuditAction, target: &str) -> AuditEntry {
    AuditEntry::new(
        &crate::auth::Principal::admin(),
        action,
        vec![tenant.to_string()],
        target,
        "",
    )
}

fn audit_query(scope: TenantScope, limit: usize) -> AuditQuery {
    AuditQuery {
        scope,
        tenant: None,
        action: None,
        before: None,
        limit,
    }
}

fn attempt_log(attempt: u32) -> AttemptLog {
    AttemptLog {
        attempt,
        worker: "wasm:t@v1".into(),
        handler_version: 1,
        started_at: 5,
        duration_us: 42,
        outcome: "completed".into(),
        output: "hello".into(),
    }
}

fn fail_with(lease: u32, retries: i32) -> Event {
    Event::Fail {
        lease: Some(lease),
        retries,
        backoff_ms: 0,
        error: "boom".into(),
    }
}

fn with_attempt(attempt: u32) -> Extras {
    Extras {
        follow_ups: Vec::new(),
        attempt: Some(attempt_log(attempt)),
    }
}

fn kv_key(tenant: &str, bucket: &str, key: &str) -> KvKey {
    KvKey {
        tenant: tenant.into(),
        bucket: bucket.into(),
        key: key.into(),
    }
}

async fn kv_set<S: KeyValueStore + ?Sized>(
    store: &Arc<S>,
    key: KvKey,
    value: &[u8],
) -> Result<(), KvWriteError> {
    store
        .kv_write(key, KvOp::Set(value.to_vec()), KvLimits::default())
        .await
        .map(drop)
}

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;

const MINUTE: i64 = 60_000;

fn every_minute(name: &str, tenant: &str) -> TriggerRecord {
    let schedule = Schedule::interval("1m").unwrap();
    let mut trigger = TriggerRecord::new(tenant.into(), name.into(), "tick".into(), schedule, T0);
    trigger.template.variables = r#"{"from":"trigger"}"#.into();
    trigger.template.retries = 2;
    trigger.next_fire = Some(T0 + MINUTE);
    trigger
}

/// Fires the trigger's first tick (at `T0 + MINUTE`, with the cursor it was given); returns
/// the trigger as it then stands (`None`: it no longer exists).
async fn fire_first(store: &Arc<dyn JobStore>, trigger: &TriggerRecord) -> Option<TriggerRecord> {
    let due = DueFire {
        trigger: trigger.id,
        next_fire: trigger.next_fire.expect("armed"),
    };
    let mut fired = store.fire_triggers(vec![due], T0 + MINUTE).await.unwrap();
    assert_eq!(fired.len(), 1);
    fired.remove(0).1
}

fn key_record(id: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        secret_sha256: [7; 32],
        name: String::new(),
        permissions: vec!["jobs".into()],
        tenants: None,
        created_at: 1,
        rate_limit: None,
    }
}

/// Every record of a snapshot, sorted so that two snapshots compare.
fn read_all(snapshot: Snapshot) -> Vec<StoredRecord> {
    let mut records: Vec<StoredRecord> = snapshot.map(|r| r.expect("readable")).collect();
    records.sort();
    records
}

/// A job of `job_type` completed by its worker now, with one attempt logged.
async fn completed_job(store: &Arc<dyn JobStore>, job: NewJob) -> u64 {
    let job_type = job.job_type.clone();
    let id = create(store, job).await;
    store.activate(activation(&job_type, 1)).await.unwrap();
    let extras = Extras {
        follow_ups: Vec::new(),
        attempt: Some(attempt_log(1)),
    };
    let complete = Event::Complete {
        lease: Some(1),
        result: "{}".into(),
    };
    store
        .apply_with(id, TenantScope::All, complete, extras)
        .await
        .unwrap();
    id
}

/// Every finished job, as retention finds it well after it finished.
async fn everything_expired(store: &Arc<dyn JobStore>) -> Vec<(u64, i64)> {
    let policy = RetentionPolicy {
        completed_ms: Some(1),
        failed_ms: Some(1),
        ..RetentionPolicy::default()
    };
    let later = crate::job::now_ms() + 60_000;
    store.expired(&policy, later, 100).await.unwrap()
}
