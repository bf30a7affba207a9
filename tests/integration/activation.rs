//! ActivateJobs: long polls, lease exclusivity, timeouts, variables and ordering.

use std::collections::HashSet;
use std::time::Duration;

use crate::harness::*;

#[tokio::test]
async fn a_waiting_worker_is_woken_when_a_job_arrives() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = activate_request("wake", "w1");
    request.request_timeout = Some(30_000);
    let mut worker = client.clone();
    let waiting = tokio::spawn(async move { activate_with(&mut worker, admin(request)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the long poll must wait for a job");
    let key = create(&mut client, "wake", "{}").await;
    let jobs = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("delivered long before the request timeout")
        .unwrap()
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job_key, format!("{key}-1"));
    assert_eq!(jobs[0].worker, "w1");
}

#[tokio::test]
async fn a_long_poll_without_jobs_closes_cleanly_at_its_request_timeout() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = activate_request("idle", "w1");
    request.request_timeout = Some(200);
    let jobs = activate_with(&mut client, admin(request))
        .await
        .expect("clean close");
    assert!(jobs.is_empty());
}

#[tokio::test]
async fn a_long_poll_ends_before_the_clients_own_grpc_deadline() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = admin(activate_request("idle", "w1"));
    request.get_mut().request_timeout = Some(60_000);
    request.set_timeout(Duration::from_millis(500));
    let jobs = activate_with(&mut client, request)
        .await
        .expect("closed cleanly, not DEADLINE_EXCEEDED");
    assert!(jobs.is_empty());
}

#[tokio::test]
async fn each_job_is_leased_to_exactly_one_of_many_concurrent_workers() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut created = HashSet::new();
    for _ in 0..120 {
        created.insert(create(&mut client, "shared", "{}").await);
    }
    let mut workers = Vec::new();
    for n in 0..8 {
        let mut client = client.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let mut request = activate_request("shared", &format!("w{n}"));
                request.max_jobs_to_activate = 5;
                request.request_timeout = Some(300);
                let jobs = activate_with(&mut client, admin(request)).await.unwrap();
                if jobs.is_empty() {
                    return mine;
                }
                mine.extend(jobs.into_iter().map(|job| job.job_key));
            }
        }));
    }
    let mut delivered = Vec::new();
    for worker in workers {
        delivered.extend(worker.await.unwrap());
    }
    let unique: HashSet<_> = delivered
        .iter()
        .map(|key| key.split('-').next().unwrap().to_string())
        .collect();
    assert_eq!(delivered.len(), 120, "no job may be delivered twice");
    assert_eq!(unique, created);
}

#[tokio::test]
async fn a_job_whose_lease_expires_is_activatable_again_with_its_retries() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = create(&mut client, "slow", "{}").await;
    let first = activate(&mut client, "slow", "w1", 1, 200).await;
    assert_eq!(first[0].retries, 3);
    let job = wait_for_state(&mut client, &key, "activatable").await;
    assert_eq!(job.retries, 3);
    let again = activate(&mut client, "slow", "w2", 1, 10_000).await;
    assert_eq!(again[0].job_key, format!("{key}-2"));
    assert_eq!(again[0].worker, "w2");
}

#[tokio::test]
async fn jobs_sent_to_a_worker_that_went_away_are_activatable_at_once() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = activate_request("gone", "w1");
    request.request_timeout = Some(30_000);
    let mut worker = client.clone();
    let waiting = tokio::spawn(async move { activate_with(&mut worker, admin(request)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    waiting.abort();
    let _ = waiting.await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let key = create(&mut client, "gone", "{}").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let job = get(&mut client, &key).await;
    assert_eq!(
        job.state, "activatable",
        "the abandoned poll must not hold the job"
    );
}

#[tokio::test]
async fn fetch_variable_limits_the_variables_sent() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create(
        &mut client,
        "vars",
        r#"{"url":"u","method":"GET","secret":"s"}"#,
    )
    .await;
    let mut request = activate_request("vars", "w1");
    request.fetch_variable = vec!["url".into(), "method".into(), "absent".into()];
    let jobs = activate_with(&mut client, admin(request)).await.unwrap();
    let variables: serde_json::Value = serde_json::from_str(&jobs[0].variables).unwrap();
    assert_eq!(variables, serde_json::json!({"url": "u", "method": "GET"}));
}

#[tokio::test]
async fn activated_jobs_carry_headers_metadata_deadline_and_tenant() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request("meta", r#"{"a":1}"#);
    request
        .custom_headers
        .insert("priority".into(), "high".into());
    request.bpmn_process_id = "order".into();
    request.element_id = "pay".into();
    client.create_job(admin(request)).await.unwrap();
    let before = jobhost::job::now_ms();
    let jobs = activate(&mut client, "meta", "w1", 1, 5_000).await;
    let job = &jobs[0];
    assert_eq!(job.custom_headers["priority"], "high");
    assert_eq!(
        (job.bpmn_process_id.as_str(), job.element_id.as_str()),
        ("order", "pay")
    );
    assert_eq!(job.tenant_id, "default");
    assert!(job.deadline >= before + 5_000 && job.deadline <= jobhost::job::now_ms() + 5_000);
    assert_eq!(job.variables, r#"{"a":1}"#);
}

#[tokio::test]
async fn higher_priority_jobs_are_activated_first_then_older_ones() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let old = create(&mut client, "prio", "{}").await;
    let mut urgent = create_request("prio", "{}");
    urgent.priority = 10;
    let urgent = client
        .create_job(admin(urgent))
        .await
        .unwrap()
        .into_inner()
        .job_key;
    let new = create(&mut client, "prio", "{}").await;
    let jobs = activate(&mut client, "prio", "w1", 3, 0).await;
    let order: Vec<_> = jobs
        .iter()
        .map(|job| job.job_key.split('-').next().unwrap().to_string())
        .collect();
    assert_eq!(order, vec![urgent, old, new]);
}

#[tokio::test]
async fn max_jobs_to_activate_defaults_to_ten() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for _ in 0..12 {
        create(&mut client, "many", "{}").await;
    }
    assert_eq!(activate(&mut client, "many", "w1", 0, 0).await.len(), 10);
}
