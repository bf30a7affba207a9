//! The behaviour every [`JobStore`] must show, as one suite of async checks.
//!
//! An implementation runs the whole suite with `conformance::suite!(open)`, where
//! `open(&Path) -> Arc<dyn JobStore>` opens (or reopens) a store whose data lives in that
//! directory.

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
    Activation, ApplyError, DueFire, Extras, JobStore, KvWriteError, ListQuery, SecretRecord,
    Snapshot, StoredRecord, TriggerError,
};
use crate::trigger::{Schedule, TriggerRecord};

pub type Open = fn(&Path) -> Arc<dyn JobStore>;

macro_rules! suite {
    ($open:expr) => {
        $crate::store::conformance::suite!(@tests $open;
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
            listing_filters_sorts_and_pages,
            api_keys_are_stored_and_removed,
            audit_entries_survive_a_reopen_and_read_newest_first,
            an_audit_reading_pages_and_filters_within_its_scope,
            follow_ups_and_attempt_logs_are_written_with_the_event,
            a_refused_event_writes_no_extras,
            the_log_of_an_attempt_after_which_the_job_stays_open_is_listed,
            attempt_logs_survive_a_finished_job_being_reopened_and_the_store_reopened,
            handlers_and_components_are_stored_and_removed,
            secrets_are_kept_per_tenant_and_survive_a_reopen,
            kv_entries_are_kept_per_tenant_and_bucket_and_survive_a_reopen,
            kv_increments_from_many_writers_are_all_counted,
            kv_compare_and_swap_applies_only_over_the_expected_value,
            kv_quotas_count_a_tenants_keys_across_buckets_and_a_reopen,
            kv_keys_are_listed_in_pages,
            a_trigger_fire_creates_its_job_and_advances_its_cursor_together,
            a_fire_with_a_stale_cursor_does_nothing,
            trigger_names_are_unique_within_a_tenant,
            a_trigger_change_from_a_stale_revision_is_refused,
            a_removed_trigger_no_longer_fires,
            triggers_and_their_cursors_survive_a_reopen,
            a_snapshot_shows_no_write_made_after_it_started,
            an_expired_job_is_deleted_with_everything_stored_for_it,
            a_deleted_job_frees_its_idempotency_key,
            a_deletion_survives_a_reopen,
            a_job_that_changed_since_it_was_found_expired_is_not_deleted,
            an_open_job_is_never_deleted,
        );
    };
    (@tests $open:expr; $($name:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let dir = tempfile::tempdir().expect("temp dir");
                $crate::store::conformance::$name($open, dir.path()).await;
            }
        )*
    };
}
pub(crate) use suite;

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

pub async fn a_create_with_a_used_idempotency_key_answers_the_first_job_and_creates_nothing(
    open: Open,
    dir: &Path,
) {
    let first = {
        let store = open(dir);
        let ids = store
            .create(vec![
                keyed_job("mail", "acme", "order-1"),
                keyed_job("mail", "acme", "order-1"),
            ])
            .await
            .unwrap();
        assert_eq!(ids[0], ids[1], "a repeat within one batch");
        store.close().await.unwrap();
        ids[0]
    };
    let store = open(dir);
    let again = store
        .create(vec![keyed_job("mail", "acme", "order-1")])
        .await
        .unwrap();
    assert_eq!(again, [first], "a repeat after a reopen");
    let page = store
        .list(&ListQuery {
            job_type: Some("mail".into()),
            ..ListQuery::all(TenantScope::All, 10)
        })
        .await
        .unwrap();
    assert_eq!(page.total, 1);
}

pub async fn idempotency_keys_are_unique_per_tenant_and_type(open: Open, dir: &Path) {
    let store = open(dir);
    let ids = store
        .create(vec![
            keyed_job("mail", "acme", "k"),
            keyed_job("mail", "beta", "k"),
            keyed_job("sms", "acme", "k"),
            new_job("mail", "acme"),
        ])
        .await
        .unwrap();
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 4);
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

pub async fn created_job_reads_back_with_its_payload(open: Open, dir: &Path) {
    let store = open(dir);
    let mut job = new_job("t", "acme");
    job.payload.custom_headers.insert("h".into(), "v".into());
    let id = create(&store, job).await;
    let read = store.get(id).await.unwrap().unwrap();
    assert_eq!(read.record.state, JobState::Activatable);
    assert_eq!(
        (read.record.tenant.as_str(), read.record.retries),
        ("acme", 3)
    );
    assert_eq!(read.payload.variables, r#"{"n":1}"#);
    assert_eq!(read.payload.custom_headers["h"], "v");
    assert!(store.get(id + 1000).await.unwrap().is_none());
}

pub async fn each_job_is_leased_to_one_of_many_concurrent_activations(open: Open, dir: &Path) {
    let store = open(dir);
    let jobs = (0..200).map(|_| new_job("t", "default")).collect();
    store.create(jobs).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let jobs = store.activate(activation("t", 7)).await.unwrap();
                if jobs.is_empty() {
                    return got;
                }
                got.extend(jobs.into_iter().map(|job| job.record.id));
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let count = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!((count, all.len()), (200, 200));
}

pub async fn activation_takes_higher_priority_then_older_jobs(open: Open, dir: &Path) {
    let store = open(dir);
    let old_low = create(&store, new_job("t", "a")).await;
    let mut high = new_job("t", "b");
    high.priority = 5;
    let high = create(&store, high).await;
    let new_low = create(&store, new_job("t", "a")).await;
    let order: Vec<_> = store.activate(activation("t", 3)).await.unwrap();
    let order: Vec<_> = order.iter().map(|job| job.record.id).collect();
    assert_eq!(order, vec![high, old_low, new_low]);
}

pub async fn activation_stays_within_its_tenant_scope(open: Open, dir: &Path) {
    let store = open(dir);
    create(&store, new_job("t", "a")).await;
    let theirs = create(&store, new_job("t", "b")).await;
    let mut request = activation("t", 10);
    request.scope = TenantScope::only(["b"]);
    let jobs = store.activate(request).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].record.id, theirs);
}

pub async fn a_waiting_activation_is_woken_by_a_new_job(open: Open, dir: &Path) {
    let store = open(dir);
    let mut request = activation("t", 10);
    request.wait = true;
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.activate(request).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished());
    let id = create(&store, new_job("t", "default")).await;
    let jobs = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken")
        .unwrap()
        .unwrap();
    assert_eq!(jobs[0].record.id, id);
    assert_eq!(jobs[0].record.state, JobState::Activated);
}

pub async fn an_abandoned_wait_leases_nothing(open: Open, dir: &Path) {
    let store = open(dir);
    let mut request = activation("t", 10);
    request.wait = true;
    let abandoned = tokio::time::timeout(Duration::from_millis(30), store.activate(request)).await;
    assert!(abandoned.is_err());
    let id = create(&store, new_job("t", "default")).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(state_of(&store, id).await, JobState::Activatable);
}

pub async fn an_expired_lease_makes_the_job_activatable_again(open: Open, dir: &Path) {
    let store = open(dir);
    let id = create(&store, new_job("t", "default")).await;
    let mut request = activation("t", 1);
    request.timeout_ms = 100;
    let first = store.activate(request.clone()).await.unwrap();
    assert_eq!(first.len(), 1);
    request.wait = true;
    let again = tokio::time::timeout(Duration::from_secs(5), store.activate(request))
        .await
        .expect("re-activated after the deadline")
        .unwrap();
    assert_eq!(again[0].record.id, id);
    assert_eq!(again[0].record.lease, 2);
    assert_eq!(again[0].record.retries, 3);
}

pub async fn a_backoff_keeps_the_job_pending_until_due(open: Open, dir: &Path) {
    let store = open(dir);
    let id = create(&store, new_job("t", "default")).await;
    store.activate(activation("t", 1)).await.unwrap();
    let fail = Event::Fail {
        lease: Some(1),
        retries: 2,
        backoff_ms: 150,
        error: "later".into(),
    };
    store.apply(id, TenantScope::All, fail).await.unwrap();
    assert_eq!(state_of(&store, id).await, JobState::Pending);
    assert!(store.activate(activation("t", 1)).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(state_of(&store, id).await, JobState::Activatable);
}

pub async fn a_scheduled_job_is_pending_until_its_time(open: Open, dir: &Path) {
    let store = open(dir);
    let mut job = new_job("t", "default");
    job.run_at = Some(crate::job::now_ms() + 150);
    let id = create(&store, job).await;
    assert_eq!(state_of(&store, id).await, JobState::Pending);
    let mut request = activation("t", 1);
    request.wait = true;
    let jobs = tokio::time::timeout(Duration::from_secs(5), store.activate(request))
        .await
        .expect("activated when due")
        .unwrap();
    assert_eq!(jobs[0].record.id, id);
}

pub async fn a_job_outside_the_scope_is_not_found(open: Open, dir: &Path) {
    let store = open(dir);
    let id = create(&store, new_job("t", "a")).await;
    let result = store
        .apply(id, TenantScope::only(["b"]), Event::Cancel)
        .await;
    assert_eq!(result, Err(ApplyError::NotFound(id)));
    assert_eq!(state_of(&store, id).await, JobState::Activatable);
}

pub async fn a_refused_event_changes_nothing(open: Open, dir: &Path) {
    let store = open(dir);
    let id = create(&store, new_job("t", "default")).await;
    let before = store.get(id).await.unwrap().unwrap();
    let complete = Event::Complete {
        lease: None,
        result: "{}".into(),
    };
    let result = store.apply(id, TenantScope::All, complete).await;
    assert!(matches!(
        result,
        Err(ApplyError::Refused(Refusal::NotActivated { .. }))
    ));
    assert_eq!(store.get(id).await.unwrap().unwrap(), before);
}

pub async fn a_released_lease_makes_the_job_activatable(open: Open, dir: &Path) {
    let store = open(dir);
    let id = create(&store, new_job("t", "default")).await;
    let jobs = store.activate(activation("t", 1)).await.unwrap();
    store
        .release(vec![(id, jobs[0].record.lease)])
        .await
        .unwrap();
    assert_eq!(state_of(&store, id).await, JobState::Activatable);
    store.release(vec![(id, 99)]).await.unwrap();
}

pub async fn everything_acknowledged_survives_a_reopen(open: Open, dir: &Path) {
    let (done, failed, cancelled, waiting);
    {
        let store = open(dir);
        let ids = store
            .create((0..4).map(|_| new_job("t", "default")).collect())
            .await
            .unwrap();
        (done, failed, cancelled, waiting) = (ids[0], ids[1], ids[2], ids[3]);
        store.activate(activation("t", 2)).await.unwrap();
        let complete = Event::Complete {
            lease: Some(1),
            result: r#"{"ok":"yes"}"#.into(),
        };
        store.apply(done, TenantScope::All, complete).await.unwrap();
        let fail = Event::Fail {
            lease: Some(1),
            retries: 0,
            backoff_ms: 0,
            error: "bad".into(),
        };
        store.apply(failed, TenantScope::All, fail).await.unwrap();
        store
            .apply(cancelled, TenantScope::All, Event::Cancel)
            .await
            .unwrap();
        store.close().await.unwrap();
    }
    let store = open(dir);
    let job = store.get(done).await.unwrap().unwrap();
    assert_eq!(job.record.state, JobState::Completed);
    assert_eq!(job.record.result.as_deref(), Some(r#"{"ok":"yes"}"#));
    let job = store.get(failed).await.unwrap().unwrap();
    assert_eq!(job.record.state, JobState::Failed);
    assert_eq!(job.record.failure_history[0].error, "bad");
    assert_eq!(state_of(&store, cancelled).await, JobState::Cancelled);
    let jobs = store.activate(activation("t", 10)).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].record.id, waiting);
}

pub async fn leases_that_expired_while_closed_are_activatable_after_reopen(open: Open, dir: &Path) {
    let id;
    {
        let store = open(dir);
        id = create(&store, new_job("t", "default")).await;
        let mut request = activation("t", 1);
        request.timeout_ms = 50;
        store.activate(request).await.unwrap();
        store.close().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let store = open(dir);
    let mut request = activation("t", 1);
    request.wait = true;
    let jobs = tokio::time::timeout(Duration::from_secs(5), store.activate(request))
        .await
        .expect("activatable again")
        .unwrap();
    assert_eq!(jobs[0].record.id, id);
}

fn in_process_activation(job_type: &str, max_jobs: usize) -> Activation {
    Activation {
        in_process: true,
        ..activation(job_type, max_jobs)
    }
}

pub async fn an_in_process_lease_is_seen_by_readers_and_listings(open: Open, dir: &Path) {
    let store = open(dir);
    let id = create(&store, new_job("t", "default")).await;
    let leased = store.activate(in_process_activation("t", 1)).await.unwrap();
    assert_eq!(leased[0].record.id, id);
    let read = store.get(id).await.unwrap().expect("job exists").record;
    assert_eq!(read.state, JobState::Activated);
    assert_eq!(read.lease, leased[0].record.lease);
    let page = store
        .list(&ListQuery {
            state: Some(JobState::Activated),
            ..ListQuery::all(TenantScope::All, 10)
        })
        .await
        .unwrap();
    assert_eq!(page.jobs.len(), 1);
    assert_eq!(page.jobs[0].record.state, JobState::Activated);
    assert!(
        store.activate(activation("t", 1)).await.unwrap().is_empty(),
        "a job leased in memory is leased to no one else"
    );
}

pub async fn an_in_process_lease_ends_with_the_process(open: Open, dir: &Path) {
    let id;
    {
        let store = open(dir);
        id = create(&store, new_job("t", "default")).await;
        let mut request = in_process_activation("t", 1);
        request.timeout_ms = 600_000;
        assert_eq!(store.activate(request).await.unwrap().len(), 1);
        store.close().await.unwrap();
    }
    let store = open(dir);
    // At once, not after the lease's timeout: no attempt outlived the process.
    assert_eq!(state_of(&store, id).await, JobState::Activatable);
    let jobs = store.activate(activation("t", 1)).await.unwrap();
    assert_eq!(jobs[0].record.id, id);
}

pub async fn a_completion_under_an_in_process_lease_survives_a_reopen(open: Open, dir: &Path) {
    let id;
    {
        let store = open(dir);
        id = create(&store, new_job("t", "default")).await;
        let leased = store.activate(in_process_activation("t", 1)).await.unwrap();
        let event = Event::Complete {
            lease: Some(leased[0].record.lease),
            result: r#"{"done":true}"#.into(),
        };
        store
            .apply_with(id, TenantScope::All, event, Extras::default())
            .await
            .unwrap();
        store.close().await.unwrap();
    }
    let store = open(dir);
    assert_eq!(state_of(&store, id).await, JobState::Completed);
}

pub async fn job_ids_are_never_reused_after_a_reopen(open: Open, dir: &Path) {
    let first;
    {
        let store = open(dir);
        first = create(&store, new_job("t", "default")).await;
        store.close().await.unwrap();
    }
    let store = open(dir);
    let second = create(&store, new_job("t", "default")).await;
    assert!(second > first);
}

pub async fn listing_filters_sorts_and_pages(open: Open, dir: &Path) {
    let store = open(dir);
    let mut ids = Vec::new();
    for n in 0..5 {
        let mut job = new_job(if n % 2 == 0 { "even" } else { "odd" }, "a");
        job.payload.process.element_id = format!("el-{n}");
        ids.push(create(&store, job).await);
    }
    create(&store, new_job("even", "b")).await;
    let scope = TenantScope::only(["a"]);

    let all = store.list(&ListQuery::all(scope.clone(), 2)).await.unwrap();
    assert_eq!(all.total, 5);
    let newest: Vec<_> = all.jobs.iter().map(|job| job.record.id).collect();
    assert_eq!(newest, vec![ids[4], ids[3]]);

    let mut query = ListQuery::all(scope.clone(), 10);
    query.job_type = Some("even".into());
    query.descending = false;
    query.offset = 1;
    let page = store.list(&query).await.unwrap();
    assert_eq!(page.total, 3);
    let ids_seen: Vec<_> = page.jobs.iter().map(|job| job.record.id).collect();
    assert_eq!(ids_seen, vec![ids[2], ids[4]]);

    let mut query = ListQuery::all(scope, 10);
    query.element_id = Some("el-3".into());
    let page = store.list(&query).await.unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.jobs[0].record.id, ids[3]);

    store.activate(activation("odd", 1)).await.unwrap();
    let mut query = ListQuery::all(TenantScope::All, 10);
    query.state = Some(JobState::Activated);
    assert_eq!(store.list(&query).await.unwrap().jobs[0].record.id, ids[1]);
}

pub async fn api_keys_are_stored_and_removed(open: Open, dir: &Path) {
    let key = ApiKeyRecord {
        id: "k1".into(),
        secret_sha256: [7; 32],
        name: "ci".into(),
        permissions: vec!["jobs".into()],
        tenants: Some(vec!["acme".into()]),
        created_at: 1,
        rate_limit: Some(crate::rate_limit::RateLimit {
            per_second: 5,
            burst: 10,
        }),
    };
    {
        let store = open(dir);
        store.put_api_key(&key).await.unwrap();
        store.close().await.unwrap();
    }
    let store = open(dir);
    assert_eq!(store.api_keys().await.unwrap(), vec![key]);
    assert!(store.delete_api_key("k1").await.unwrap());
    assert!(!store.delete_api_key("k1").await.unwrap());
    assert!(store.api_keys().await.unwrap().is_empty());
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

pub async fn audit_entries_survive_a_reopen_and_read_newest_first(open: Open, dir: &Path) {
    let recorded = {
        let store = open(dir);
        let first = store
            .record_audit(audit_entry("acme", AuditAction::KeyCreated, "k1"))
            .await
            .unwrap();
        let second = store
            .record_audit(audit_entry("acme", AuditAction::KeyRevoked, "k1"))
            .await
            .unwrap();
        assert!(second.id > first.id);
        store.close().await.unwrap();
        vec![second, first]
    };
    let store = open(dir);
    let third = store
        .record_audit(audit_entry("acme", AuditAction::JobCancelled, "7"))
        .await
        .unwrap();
    assert!(
        third.id > recorded[0].id,
        "ids keep increasing after a reopen"
    );
    let page = store
        .audit_trail(&audit_query(TenantScope::All, 10))
        .await
        .unwrap();
    let mut expected = vec![third];
    expected.extend(recorded);
    assert_eq!(page.entries, expected);
}

pub async fn an_audit_reading_pages_and_filters_within_its_scope(open: Open, dir: &Path) {
    let store = open(dir);
    for i in 0..5 {
        let tenant = if i % 2 == 0 { "acme" } else { "globex" };
        store
            .record_audit(audit_entry(
                tenant,
                AuditAction::TriggerCreated,
                &i.to_string(),
            ))
            .await
            .unwrap();
    }
    store
        .record_audit(audit_entry("acme", AuditAction::HandlerDeployed, "h"))
        .await
        .unwrap();
    let targets = |page: &AuditPage| {
        page.entries
            .iter()
            .map(|e| e.target.clone())
            .collect::<Vec<_>>()
    };

    let acme = TenantScope::only(["acme"]);
    let first = store
        .audit_trail(&audit_query(acme.clone(), 2))
        .await
        .unwrap();
    assert_eq!(targets(&first), vec!["h", "4"]);
    let mut next = audit_query(acme.clone(), 2);
    next.before = first.next_before;
    let second = store.audit_trail(&next).await.unwrap();
    assert_eq!(targets(&second), vec!["2", "0"]);

    let mut deploys = audit_query(TenantScope::All, 10);
    deploys.action = Some(AuditAction::TriggerCreated);
    deploys.tenant = Some("globex".into());
    assert_eq!(
        targets(&store.audit_trail(&deploys).await.unwrap()),
        vec!["3", "1"]
    );
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

pub async fn follow_ups_and_attempt_logs_are_written_with_the_event(open: Open, dir: &Path) {
    let store = open(dir);
    let id = create(&store, new_job("t", "acme")).await;
    store.activate(activation("t", 1)).await.unwrap();
    let extras = Extras {
        follow_ups: vec![new_job("next", "someone-else"), new_job("next", "x")],
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
    assert_eq!(store.attempts(id).await.unwrap(), vec![attempt_log(1)]);
    let mut request = activation("next", 10);
    request.scope = TenantScope::only(["acme"]);
    let follow_ups = store.activate(request).await.unwrap();
    assert_eq!(follow_ups.len(), 2, "follow-ups belong to the job's tenant");
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

pub async fn the_log_of_an_attempt_after_which_the_job_stays_open_is_listed(
    open: Open,
    dir: &Path,
) {
    let store = open(dir);
    let id = create(&store, new_job("t", "default")).await;
    store.activate(activation("t", 1)).await.unwrap();
    store
        .apply_with(id, TenantScope::All, fail_with(1, 2), with_attempt(1))
        .await
        .unwrap();
    assert_eq!(state_of(&store, id).await, JobState::Activatable);
    assert_eq!(store.attempts(id).await.unwrap(), vec![attempt_log(1)]);
}

pub async fn attempt_logs_survive_a_finished_job_being_reopened_and_the_store_reopened(
    open: Open,
    dir: &Path,
) {
    let id = {
        let store = open(dir);
        let id = create(&store, new_job("t", "default")).await;
        store.activate(activation("t", 1)).await.unwrap();
        store
            .apply_with(id, TenantScope::All, fail_with(1, 0), with_attempt(1))
            .await
            .unwrap();
        assert_eq!(state_of(&store, id).await, JobState::Failed);
        assert_eq!(store.attempts(id).await.unwrap(), vec![attempt_log(1)]);
        let revive = Event::UpdateRetries { retries: 1 };
        store.apply(id, TenantScope::All, revive).await.unwrap();
        assert_eq!(store.attempts(id).await.unwrap(), vec![attempt_log(1)]);
        store.activate(activation("t", 1)).await.unwrap();
        let complete = Event::Complete {
            lease: Some(2),
            result: "{}".into(),
        };
        store
            .apply_with(id, TenantScope::All, complete, with_attempt(2))
            .await
            .unwrap();
        store.close().await.unwrap();
        id
    };
    let store = open(dir);
    assert_eq!(state_of(&store, id).await, JobState::Completed);
    assert_eq!(
        store.attempts(id).await.unwrap(),
        vec![attempt_log(1), attempt_log(2)]
    );
}

pub async fn a_refused_event_writes_no_extras(open: Open, dir: &Path) {
    let store = open(dir);
    let id = create(&store, new_job("t", "default")).await;
    let extras = Extras {
        follow_ups: vec![new_job("next", "default")],
        attempt: Some(attempt_log(1)),
    };
    let complete = Event::Complete {
        lease: None,
        result: "{}".into(),
    };
    assert!(
        store
            .apply_with(id, TenantScope::All, complete, extras)
            .await
            .is_err()
    );
    assert!(store.attempts(id).await.unwrap().is_empty());
    assert!(
        store
            .activate(activation("next", 10))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn handlers_and_components_are_stored_and_removed(open: Open, dir: &Path) {
    let handler = HandlerRecord {
        id: "h1".into(),
        tenant: "acme".into(),
        job_type: "resize".into(),
        created_at: 1,
        versions: vec![HandlerVersion {
            version: 1,
            component_sha256: [9; 32],
            component_bytes: 3,
            limits: HandlerLimits {
                memory_mb: 64,
                timeout_ms: 5_000,
                max_concurrency: 4,
                fuel: None,
            },
            retry: RetryPolicy {
                max_retries: 3,
                backoff_base_ms: 1_000,
                backoff_cap_ms: 60_000,
            },
            deployed_at: 1,
            grants: crate::grants::Grants {
                http: vec!["https://api.example.com".into()],
                secrets: vec!["TOKEN".into()],
                config: [("region".to_string(), "eu".to_string())].into(),
                kv: vec!["counters".into()],
                inject_headers: Vec::new(),
            },
        }],
    };
    {
        let store = open(dir);
        store.put_handler(&handler).await.unwrap();
        store.put_component(&[9; 32], b"abc").await.unwrap();
        store.close().await.unwrap();
    }
    let store = open(dir);
    assert_eq!(store.handlers().await.unwrap(), vec![handler]);
    assert_eq!(
        store.component(&[9; 32]).await.unwrap().as_deref(),
        Some(&b"abc"[..])
    );
    assert!(store.component(&[1; 32]).await.unwrap().is_none());
    assert!(store.delete_handler("h1").await.unwrap());
    assert!(store.handlers().await.unwrap().is_empty());
}

pub async fn secrets_are_kept_per_tenant_and_survive_a_reopen(open: Open, dir: &Path) {
    let secret = |tenant: &str, name: &str, sealed: &[u8]| SecretRecord {
        tenant: tenant.into(),
        name: name.into(),
        sealed: sealed.to_vec(),
        updated_at: 5,
    };
    {
        let store = open(dir);
        store.put_secret(&secret("acme", "B", b"1")).await.unwrap();
        store.put_secret(&secret("acme", "A", b"2")).await.unwrap();
        store.put_secret(&secret("acme2", "A", b"3")).await.unwrap();
        store.put_secret(&secret("acme", "B", b"4")).await.unwrap();
        store.close().await.unwrap();
    }
    let store = open(dir);
    let names = async |tenant: &str| -> Vec<String> {
        store
            .secrets(tenant)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect()
    };
    assert_eq!(names("acme").await, ["A", "B"]);
    assert_eq!(names("acme2").await, ["A"]);
    assert_eq!(
        store.secret("acme", "B").await.unwrap().map(|s| s.sealed),
        Some(b"4".to_vec())
    );
    assert_eq!(store.secret("other", "A").await.unwrap(), None);
    assert!(store.delete_secret("acme", "B").await.unwrap());
    assert!(!store.delete_secret("acme", "B").await.unwrap());
    assert_eq!(names("acme").await, ["A"]);
}

fn kv_key(tenant: &str, bucket: &str, key: &str) -> KvKey {
    KvKey {
        tenant: tenant.into(),
        bucket: bucket.into(),
        key: key.into(),
    }
}

async fn kv_set(store: &Arc<dyn JobStore>, key: KvKey, value: &[u8]) -> Result<(), KvWriteError> {
    store
        .kv_write(key, KvOp::Set(value.to_vec()), KvLimits::default())
        .await
        .map(drop)
}

pub async fn kv_entries_are_kept_per_tenant_and_bucket_and_survive_a_reopen(
    open: Open,
    dir: &Path,
) {
    {
        let store = open(dir);
        kv_set(&store, kv_key("acme", "a", "k"), b"1")
            .await
            .unwrap();
        kv_set(&store, kv_key("acme", "b", "k"), b"2")
            .await
            .unwrap();
        kv_set(&store, kv_key("beta", "a", "k"), b"3")
            .await
            .unwrap();
        kv_set(&store, kv_key("acme", "a", "gone"), b"x")
            .await
            .unwrap();
        let deleted = store
            .kv_write(
                kv_key("acme", "a", "gone"),
                KvOp::Delete,
                KvLimits::default(),
            )
            .await
            .unwrap();
        assert_eq!(deleted, KvOutcome::Deleted(true));
        store.close().await.unwrap();
    }
    let store = open(dir);
    let get = async |tenant, bucket, key| store.kv_get(&kv_key(tenant, bucket, key)).await.unwrap();
    assert_eq!(get("acme", "a", "k").await, Some(b"1".to_vec()));
    assert_eq!(get("acme", "b", "k").await, Some(b"2".to_vec()));
    assert_eq!(get("beta", "a", "k").await, Some(b"3".to_vec()));
    assert_eq!(get("acme", "a", "gone").await, None);
    assert_eq!(get("acme", "c", "k").await, None);
    let buckets = store.kv_buckets("acme").await.unwrap();
    let names: Vec<_> = buckets.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(buckets[0].usage, KvUsage { keys: 1, bytes: 2 });
}

pub async fn kv_increments_from_many_writers_are_all_counted(open: Open, dir: &Path) {
    let store = open(dir);
    let writers = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..25 {
                store
                    .kv_write(
                        kv_key("acme", "counters", "n"),
                        KvOp::Increment(2),
                        KvLimits::default(),
                    )
                    .await
                    .unwrap();
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    assert_eq!(
        store
            .kv_get(&kv_key("acme", "counters", "n"))
            .await
            .unwrap(),
        Some(b"400".to_vec())
    );
}

pub async fn kv_compare_and_swap_applies_only_over_the_expected_value(open: Open, dir: &Path) {
    let store = open(dir);
    let key = kv_key("acme", "b", "k");
    let swap = |expected: Option<&[u8]>, value: &[u8]| KvOp::Swap {
        expected: expected.map(<[u8]>::to_vec),
        value: value.to_vec(),
    };
    let limits = KvLimits::default();
    let first = store.kv_write(key.clone(), swap(None, b"v1"), limits).await;
    assert_eq!(first, Ok(KvOutcome::Swapped));
    let stale = store.kv_write(key.clone(), swap(None, b"v2"), limits).await;
    assert_eq!(stale, Ok(KvOutcome::SwapConflict(Some(b"v1".to_vec()))));
    let current = store
        .kv_write(key.clone(), swap(Some(b"v1"), b"v3"), limits)
        .await;
    assert_eq!(current, Ok(KvOutcome::Swapped));
    assert_eq!(store.kv_get(&key).await.unwrap(), Some(b"v3".to_vec()));
}

pub async fn kv_quotas_count_a_tenants_keys_across_buckets_and_a_reopen(open: Open, dir: &Path) {
    let limits = KvLimits {
        keys_per_tenant: 2,
        ..KvLimits::default()
    };
    let set = |store: &Arc<dyn JobStore>, bucket: &str, key: &str| {
        let store = store.clone();
        let key = kv_key("acme", bucket, key);
        async move { store.kv_write(key, KvOp::Set(b"v".to_vec()), limits).await }
    };
    {
        let store = open(dir);
        set(&store, "a", "1").await.unwrap();
        set(&store, "b", "2").await.unwrap();
        store.close().await.unwrap();
    }
    let store = open(dir);
    assert!(matches!(
        set(&store, "c", "3").await,
        Err(KvWriteError::Refused(KvError::QuotaExceeded(_)))
    ));
    // Another tenant has a quota of its own.
    let other = store
        .kv_write(kv_key("beta", "a", "1"), KvOp::Set(b"v".to_vec()), limits)
        .await;
    assert_eq!(other, Ok(KvOutcome::Set));
    store
        .kv_write(kv_key("acme", "a", "1"), KvOp::Delete, limits)
        .await
        .unwrap();
    assert_eq!(set(&store, "c", "3").await, Ok(KvOutcome::Set));
}

pub async fn kv_keys_are_listed_in_pages(open: Open, dir: &Path) {
    let store = open(dir);
    for key in ["b", "a", "c", "a/b"] {
        kv_set(&store, kv_key("acme", "x", key), b"v")
            .await
            .unwrap();
    }
    kv_set(&store, kv_key("acme", "xy", "z"), b"v")
        .await
        .unwrap();
    let first = store.kv_keys("acme", "x", None, 2).await.unwrap();
    assert_eq!(first.keys, ["a", "a/b"]);
    let rest = store
        .kv_keys("acme", "x", first.next.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!(rest.keys, ["b", "c"]);
    assert_eq!(rest.next, None);
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

pub async fn a_trigger_fire_creates_its_job_and_advances_its_cursor_together(
    open: Open,
    dir: &Path,
) {
    let store = open(dir);
    let trigger = store
        .create_trigger(every_minute("t", "acme"))
        .await
        .unwrap();
    let after = fire_first(&store, &trigger).await.expect("still exists");
    assert_eq!(after.next_fire, Some(T0 + 2 * MINUTE));
    assert_eq!((after.fired, after.last_fire), (1, Some(T0 + MINUTE)));
    let job = store
        .get(after.last_job.expect("a job"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.record.tenant, "acme");
    assert_eq!(job.record.retries, 2);
    assert_eq!(job.payload.variables, r#"{"from":"trigger"}"#);
    assert_eq!(
        job.payload
            .custom_headers
            .get("jobhost-trigger")
            .map(String::as_str),
        Some("t")
    );
    assert_eq!(store.trigger(trigger.id).await.unwrap(), Some(after));
}

pub async fn a_fire_with_a_stale_cursor_does_nothing(open: Open, dir: &Path) {
    let store = open(dir);
    let trigger = store
        .create_trigger(every_minute("t", "acme"))
        .await
        .unwrap();
    fire_first(&store, &trigger).await;
    let again = fire_first(&store, &trigger).await.expect("still exists");
    assert_eq!(again.fired, 1);
    let jobs = store
        .list(&ListQuery::all(TenantScope::All, 10))
        .await
        .unwrap();
    assert_eq!(jobs.total, 1);
}

pub async fn trigger_names_are_unique_within_a_tenant(open: Open, dir: &Path) {
    let store = open(dir);
    store
        .create_trigger(every_minute("t", "acme"))
        .await
        .unwrap();
    let taken = store.create_trigger(every_minute("t", "acme")).await;
    assert_eq!(
        taken,
        Err(TriggerError::NameTaken {
            tenant: "acme".into(),
            name: "t".into()
        })
    );
    let other = store
        .create_trigger(every_minute("t", "beta"))
        .await
        .unwrap();
    assert_eq!(other.tenant, "beta");
}

pub async fn a_trigger_change_from_a_stale_revision_is_refused(open: Open, dir: &Path) {
    let store = open(dir);
    let trigger = store
        .create_trigger(every_minute("t", "acme"))
        .await
        .unwrap();
    fire_first(&store, &trigger).await;
    let mut paused = trigger.clone();
    paused.enabled = false;
    let refused = store
        .replace_trigger(paused.clone(), trigger.revision)
        .await;
    assert_eq!(refused, Err(TriggerError::Conflict(trigger.id)));
    let current = store.trigger(trigger.id).await.unwrap().unwrap();
    paused.revision = current.revision;
    let stored = store
        .replace_trigger(paused, current.revision)
        .await
        .unwrap();
    assert_eq!(stored.revision, current.revision + 1);
    assert!(!store.trigger(trigger.id).await.unwrap().unwrap().enabled);
}

pub async fn a_removed_trigger_no_longer_fires(open: Open, dir: &Path) {
    let store = open(dir);
    let trigger = store
        .create_trigger(every_minute("t", "acme"))
        .await
        .unwrap();
    let outside = store
        .delete_trigger(trigger.id, TenantScope::only(["beta"]))
        .await;
    assert_eq!(outside, Err(TriggerError::NotFound(trigger.id)));
    store
        .delete_trigger(trigger.id, TenantScope::All)
        .await
        .unwrap();
    assert_eq!(fire_first(&store, &trigger).await, None);
    assert!(store.triggers().await.unwrap().is_empty());
    // The name is free again.
    store
        .create_trigger(every_minute("t", "acme"))
        .await
        .unwrap();
}

pub async fn triggers_and_their_cursors_survive_a_reopen(open: Open, dir: &Path) {
    let fired;
    {
        let store = open(dir);
        let trigger = store
            .create_trigger(every_minute("t", "acme"))
            .await
            .unwrap();
        fired = fire_first(&store, &trigger).await.expect("still exists");
        store.close().await.unwrap();
    }
    let store = open(dir);
    assert_eq!(store.triggers().await.unwrap(), vec![fired.clone()]);
    let taken = store.create_trigger(every_minute("t", "acme")).await;
    assert!(matches!(taken, Err(TriggerError::NameTaken { .. })));
    let next = store
        .create_trigger(every_minute("u", "acme"))
        .await
        .unwrap();
    assert!(next.id > fired.id, "trigger ids are never reused");
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

pub async fn a_snapshot_shows_no_write_made_after_it_started(open: Open, dir: &Path) {
    let store = open(dir);
    let ids = store
        .create((0..3).map(|_| new_job("t", "acme")).collect())
        .await
        .unwrap();
    store.put_api_key(&key_record("k1")).await.unwrap();
    store.put_component(&[9; 32], b"abc").await.unwrap();
    let trigger = store
        .create_trigger(every_minute("t", "acme"))
        .await
        .unwrap();
    let before = read_all(store.snapshot().await.unwrap());
    assert!(!before.is_empty());

    let mut snapshot = store.snapshot().await.unwrap();
    let first = snapshot.next().expect("a record").expect("readable");
    // Writes of every kind, both to what the snapshot has read and to what it has not.
    store.activate(activation("t", 1)).await.unwrap();
    let complete = Event::Complete {
        lease: Some(1),
        result: "{}".into(),
    };
    store
        .apply(ids[0], TenantScope::All, complete)
        .await
        .unwrap();
    store
        .apply(ids[1], TenantScope::All, Event::Cancel)
        .await
        .unwrap();
    store.create(vec![new_job("t", "beta")]).await.unwrap();
    fire_first(&store, &trigger).await.expect("fired");
    assert!(store.delete_api_key("k1").await.unwrap());
    store.put_api_key(&key_record("k2")).await.unwrap();
    store.put_component(&[8; 32], b"def").await.unwrap();
    let mut during = vec![first];
    during.extend(snapshot.map(|r| r.expect("readable")));
    during.sort();
    assert_eq!(during, before);
    assert_ne!(read_all(store.snapshot().await.unwrap()), before);
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

pub async fn an_expired_job_is_deleted_with_everything_stored_for_it(open: Open, dir: &Path) {
    let store = open(dir);
    let mut job = new_job("t", "acme");
    job.payload.process.process_instance_key = "instance-1".into();
    let id = completed_job(&store, job).await;
    let expired = everything_expired(&store).await;
    assert_eq!(expired.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [id]);
    assert_eq!(store.purge(expired).await.unwrap(), 1);
    assert!(store.get(id).await.unwrap().is_none());
    assert!(store.attempts(id).await.unwrap().is_empty());
    let everything = ListQuery::all(TenantScope::All, 10);
    assert_eq!(store.list(&everything).await.unwrap().total, 0);
    let by_instance = ListQuery {
        process_instance_key: Some("instance-1".into()),
        ..ListQuery::all(TenantScope::All, 10)
    };
    assert_eq!(store.list(&by_instance).await.unwrap().total, 0);
    assert!(everything_expired(&store).await.is_empty());
    let stats = store
        .stats(&TenantScope::All, None, crate::job::now_ms())
        .await
        .unwrap();
    assert_eq!(stats.by_state.total(), 0);
}

pub async fn a_deleted_job_frees_its_idempotency_key(open: Open, dir: &Path) {
    let store = open(dir);
    let first = completed_job(&store, keyed_job("t", "acme", "order-1")).await;
    store.purge(everything_expired(&store).await).await.unwrap();
    let again = create(&store, keyed_job("t", "acme", "order-1")).await;
    assert_ne!(
        again, first,
        "the key names a new job once the first is gone"
    );
}

pub async fn a_deletion_survives_a_reopen(open: Open, dir: &Path) {
    let (deleted, kept) = {
        let store = open(dir);
        let deleted = completed_job(&store, new_job("t", "acme")).await;
        store.purge(everything_expired(&store).await).await.unwrap();
        let kept = completed_job(&store, new_job("t", "acme")).await;
        store.close().await.unwrap();
        (deleted, kept)
    };
    let store = open(dir);
    assert!(store.get(deleted).await.unwrap().is_none());
    assert!(store.get(kept).await.unwrap().is_some());
    let everything = ListQuery::all(TenantScope::All, 10);
    assert_eq!(store.list(&everything).await.unwrap().total, 1);
}

pub async fn a_job_that_changed_since_it_was_found_expired_is_not_deleted(open: Open, dir: &Path) {
    let store = open(dir);
    let mut job = new_job("t", "acme");
    job.retries = 1;
    let id = create(&store, job).await;
    store.activate(activation("t", 1)).await.unwrap();
    let fail = Event::Fail {
        lease: Some(1),
        retries: 0,
        backoff_ms: 0,
        error: "boom".into(),
    };
    store.apply(id, TenantScope::All, fail).await.unwrap();
    let expired = everything_expired(&store).await;
    assert_eq!(expired.len(), 1, "the incident is found expired");
    // The incident is resolved before retention comes to it.
    store
        .apply(id, TenantScope::All, Event::UpdateRetries { retries: 1 })
        .await
        .unwrap();
    assert_eq!(store.purge(expired).await.unwrap(), 0);
    assert_eq!(state_of(&store, id).await, JobState::Activatable);
}

pub async fn an_open_job_is_never_deleted(open: Open, dir: &Path) {
    let store = open(dir);
    let id = create(&store, new_job("t", "acme")).await;
    assert!(everything_expired(&store).await.is_empty());
    // Even when asked to by name.
    assert_eq!(store.purge(vec![(id, 0)]).await.unwrap(), 0);
    assert_eq!(state_of(&store, id).await, JobState::Activatable);
}
