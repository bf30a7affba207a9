//! What every [`JobQueries`](crate::store::JobQueries) must do: listings and attempt logs.

use super::*;

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
