//! Completing, failing, retrying, cancelling and fencing jobs.

use tonic::Code;

use crate::harness::*;

fn fail_request(key: &str, retries: i32, backoff_ms: i64) -> FailJobRequest {
    FailJobRequest {
        job_key: key.into(),
        retries,
        error_message: "upstream down".into(),
        backoff_timeout: backoff_ms,
    }
}

#[tokio::test]
async fn completing_an_activated_job_stores_its_result() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (key, leased) = create_and_activate(&mut client, "t", "w1").await;
    let mut request = CompleteJobRequest {
        job_key: leased,
        variables: Default::default(),
    };
    request.variables.insert("httpStatus".into(), "200".into());
    let response = client
        .complete_job(admin(request))
        .await
        .unwrap()
        .into_inner();
    assert!(response.success);
    let job = get(&mut client, &key).await;
    assert_eq!(job.state, "completed");
    assert_eq!(job.result_variables, r#"{"httpStatus":"200"}"#);
    assert!(job.finished_at >= job.created_at);
}

#[tokio::test]
async fn completing_an_unknown_job_is_not_found() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    assert_code(
        complete(&mut client, "999999").await,
        Code::NotFound,
        "999999",
    );
}

#[tokio::test]
async fn completing_a_job_twice_is_refused() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create(&mut client, "t", "{}").await;
    let key = activate(&mut client, "t", "w1", 1, 0)
        .await
        .remove(0)
        .job_key;
    complete(&mut client, &key).await.unwrap();
    assert_code(
        complete(&mut client, &key).await,
        Code::FailedPrecondition,
        "already completed",
    );
}

#[tokio::test]
async fn completing_a_job_that_is_not_activated_is_refused() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = create(&mut client, "t", "{}").await;
    assert_code(
        complete(&mut client, &key).await,
        Code::FailedPrecondition,
        "not activated",
    );
    assert_eq!(get(&mut client, &key).await.state, "activatable");
}

#[tokio::test]
async fn a_failure_with_retries_and_backoff_waits_then_is_activatable() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (key, leased) = create_and_activate(&mut client, "t", "w1").await;
    let response = client
        .fail_job(admin(fail_request(&leased, 2, 300)))
        .await
        .unwrap()
        .into_inner();
    assert!(response.success);
    let job = get(&mut client, &key).await;
    assert_eq!((job.state.as_str(), job.retries), ("pending", 2));
    assert!(job.due_at > 0);
    assert!(activate(&mut client, "t", "w1", 1, 0).await.is_empty());
    wait_for_state(&mut client, &key, "activatable").await;
    let again = activate(&mut client, "t", "w1", 1, 0).await;
    assert_eq!(again[0].retries, 2);
}

#[tokio::test]
async fn a_failure_without_backoff_is_activatable_at_once() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (key, leased) = create_and_activate(&mut client, "t", "w1").await;
    client
        .fail_job(admin(fail_request(&leased, 1, 0)))
        .await
        .unwrap();
    assert_eq!(get(&mut client, &key).await.state, "activatable");
}

#[tokio::test]
async fn a_failure_without_retries_is_an_incident_that_new_retries_revive() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (key, leased) = create_and_activate(&mut client, "t", "w1").await;
    client
        .fail_job(admin(fail_request(&leased, 0, 0)))
        .await
        .unwrap();
    let job = get(&mut client, &key).await;
    assert_eq!(job.state, "failed");
    assert_eq!(job.error_message, "upstream down");
    assert_eq!(job.failure_history.len(), 1);
    let failure = &job.failure_history[0];
    assert_eq!((failure.attempt, failure.worker.as_str()), (1, "w1"));
    assert!(failure.failed_at > 0);

    let revive = UpdateJobRetriesRequest {
        job_key: key.clone(),
        retries: 2,
    };
    assert!(
        client
            .update_job_retries(admin(revive))
            .await
            .unwrap()
            .into_inner()
            .success
    );
    let job = get(&mut client, &key).await;
    assert_eq!((job.state.as_str(), job.retries), ("activatable", 2));
    assert_eq!(activate(&mut client, "t", "w2", 1, 0).await.len(), 1);
}

#[tokio::test]
async fn every_failure_is_appended_to_the_history() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = create(&mut client, "t", "{}").await;
    for retries in [2, 1] {
        let leased = activate(&mut client, "t", "w1", 1, 0)
            .await
            .remove(0)
            .job_key;
        client
            .fail_job(admin(fail_request(&leased, retries, 0)))
            .await
            .unwrap();
    }
    let job = get(&mut client, &key).await;
    let attempts: Vec<_> = job
        .failure_history
        .iter()
        .map(|f| (f.attempt, f.retries))
        .collect();
    assert_eq!(attempts, vec![(1, 2), (2, 1)]);
}

#[tokio::test]
async fn a_worker_whose_lease_passed_to_another_cannot_complete_or_fail_the_job() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = create(&mut client, "t", "{}").await;
    let stale = activate(&mut client, "t", "slow-worker", 1, 150)
        .await
        .remove(0)
        .job_key;
    wait_for_state(&mut client, &key, "activatable").await;
    let current = activate(&mut client, "t", "fast-worker", 1, 30_000)
        .await
        .remove(0)
        .job_key;
    assert_ne!(stale, current);
    assert_code(
        complete(&mut client, &stale).await,
        Code::FailedPrecondition,
        "fast-worker",
    );
    let failed = client.fail_job(admin(fail_request(&stale, 0, 0))).await;
    assert_code(failed, Code::FailedPrecondition, "no longer valid");
    assert_eq!(get(&mut client, &key).await.state, "activated");
    complete(&mut client, &current)
        .await
        .expect("the current holder completes");
}

#[tokio::test]
async fn a_worker_whose_lease_expired_cannot_complete_the_job() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = create(&mut client, "t", "{}").await;
    let stale = activate(&mut client, "t", "w1", 1, 100)
        .await
        .remove(0)
        .job_key;
    wait_for_state(&mut client, &key, "activatable").await;
    assert_code(
        complete(&mut client, &stale).await,
        Code::FailedPrecondition,
        "lease expired",
    );
}

#[tokio::test]
async fn a_heartbeat_extends_the_lease() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = create(&mut client, "t", "{}").await;
    let leased = activate(&mut client, "t", "w1", 1, 1_000).await.remove(0);
    let request = UpdateJobTimeoutRequest {
        job_key: leased.job_key.clone(),
        timeout: 60_000,
    };
    let response = client
        .update_job_timeout(admin(request))
        .await
        .unwrap()
        .into_inner();
    assert!(response.deadline >= leased.deadline + 50_000);
    assert_eq!(get(&mut client, &key).await.deadline, response.deadline);
}

#[tokio::test]
async fn a_cancelled_job_tells_its_worker_to_stop() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (key, leased) = create_and_activate(&mut client, "t", "w1").await;
    let cancel = CancelJobRequest {
        job_key: key.clone(),
    };
    assert!(
        client
            .cancel_job(admin(cancel))
            .await
            .unwrap()
            .into_inner()
            .success
    );

    let heartbeat = UpdateJobTimeoutRequest {
        job_key: leased.clone(),
        timeout: 1_000,
    };
    assert_code(
        client.update_job_timeout(admin(heartbeat)).await,
        Code::FailedPrecondition,
        "cancelled",
    );
    assert_code(
        complete(&mut client, &leased).await,
        Code::FailedPrecondition,
        "cancelled",
    );
    let failed = client.fail_job(admin(fail_request(&leased, 1, 0))).await;
    assert_code(failed, Code::FailedPrecondition, "cancelled");
    assert_eq!(get(&mut client, &key).await.state, "cancelled");
}

#[tokio::test]
async fn a_completed_job_cannot_be_cancelled() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (key, leased) = create_and_activate(&mut client, "t", "w1").await;
    complete(&mut client, &leased).await.unwrap();
    let cancel = CancelJobRequest { job_key: key };
    assert_code(
        client.cancel_job(admin(cancel)).await,
        Code::FailedPrecondition,
        "completed",
    );
}

#[tokio::test]
async fn a_delayed_job_is_pending_until_due() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request("later", "{}");
    request.delay = 300;
    let key = client
        .create_job(admin(request))
        .await
        .unwrap()
        .into_inner()
        .job_key;
    assert_eq!(get(&mut client, &key).await.state, "pending");
    wait_for_state(&mut client, &key, "activatable").await;
}

#[tokio::test]
async fn a_job_created_over_rest_with_run_at_is_not_activatable_before_its_time() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let run_at = jobhost::job::now_ms() + 400;
    let body = serde_json::json!({"type": "at-time", "run_at": run_at});
    let created = server
        .rest(ADMIN_KEY)
        .call(reqwest::Method::POST, "/api/v1/jobs", Some(body))
        .await
        .expect("job created");
    let key = created["job_key"].as_str().unwrap().to_string();
    assert_eq!(created["job"]["state"], "pending");
    assert!(activate(&mut client, "at-time", "w", 1, 0).await.is_empty());
    wait_for_state(&mut client, &key, "activatable").await;
    assert!(jobhost::job::now_ms() >= run_at);
    assert_eq!(activate(&mut client, "at-time", "w", 1, 0).await.len(), 1);
}

#[tokio::test]
async fn listing_filters_by_state_and_type_with_pages() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for _ in 0..3 {
        create(&mut client, "a", "{}").await;
    }
    create(&mut client, "b", "{}").await;
    activate(&mut client, "a", "w1", 1, 0).await;
    let request = ListJobsRequest {
        r#type: "a".into(),
        state: "activatable".into(),
        page_size: 1,
        page: 2,
        ..Default::default()
    };
    let response = client.list_jobs(admin(request)).await.unwrap().into_inner();
    let pagination = response.pagination.unwrap();
    assert_eq!((pagination.total_count, pagination.total_pages), (2, 2));
    assert!(pagination.has_prev && !pagination.has_next);
    assert_eq!(response.jobs.len(), 1);
    assert_eq!(response.jobs[0].state, "activatable");
}
