//! What every [`JobQueue`](crate::store::JobQueue) must do: creating, leasing, changing and deleting jobs, and
//! what survives a reopen.

use super::*;

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
