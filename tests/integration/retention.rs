//! Retention: finished jobs are deleted once the policy lets them go, and nothing else is.

use std::time::Duration;

use tonic::Code;

use crate::harness::*;

async fn exists(client: &mut Client, key: &str) -> bool {
    let request = GetJobRequest {
        job_key: key.into(),
    };
    match client.get_job(admin(request)).await {
        Ok(_) => true,
        Err(status) if status.code() == Code::NotFound => false,
        Err(status) => panic!("reading job {key}: {status}"),
    }
}

/// Polls until the job is gone (retention runs every second; the bound is generous for
/// loaded machines).
async fn wait_until_deleted(client: &mut Client, key: &str) {
    for _ in 0..300 {
        if !exists(client, key).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {key} was never deleted");
}

async fn completed(client: &mut Client, job_type: &str) -> String {
    let (key, leased) = create_and_activate(client, job_type, "w").await;
    assert!(complete(client, &leased).await.unwrap().success);
    key
}

#[tokio::test]
async fn a_completed_job_is_deleted_once_past_the_retention_age() {
    let server = TestServer::start_with(|config| {
        config.retention.completed_ms = Some(100);
    })
    .await;
    let mut client = server.client().await;
    let key = completed(&mut client, "t").await;
    wait_until_deleted(&mut client, &key).await;
    let metrics = server
        .rest(ADMIN_KEY)
        .download("/metrics")
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains(r#"jobhost_jobs_deleted_total{job_type="t",tenant="default"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_incident_outlives_the_completed_age() {
    let server = TestServer::start_with(|config| {
        config.retention.completed_ms = Some(100);
    })
    .await;
    let mut client = server.client().await;
    let (incident, leased) = create_and_activate(&mut client, "t", "w").await;
    let fail = FailJobRequest {
        job_key: leased,
        retries: 0,
        error_message: "upstream down".into(),
        backoff_timeout: 0,
    };
    client.fail_job(admin(fail)).await.unwrap();
    let done = completed(&mut client, "t").await;
    wait_until_deleted(&mut client, &done).await;
    assert_eq!(get(&mut client, &incident).await.state, "failed");
}

#[tokio::test]
async fn a_type_age_keeps_that_type_longer() {
    let server = TestServer::start_with(|config| {
        config.retention.completed_ms = Some(100);
        config
            .retention
            .add_type_age("reports=1d")
            .expect("valid age");
    })
    .await;
    let mut client = server.client().await;
    let report = completed(&mut client, "reports").await;
    let mail = completed(&mut client, "mail").await;
    wait_until_deleted(&mut client, &mail).await;
    assert_eq!(get(&mut client, &report).await.state, "completed");
}

#[tokio::test]
async fn open_jobs_are_kept_whatever_the_policy() {
    let server = TestServer::start_with(|config| {
        config.retention.completed_ms = Some(1);
        config.retention.failed_ms = Some(1);
        config.retention.max_finished_per_tenant = Some(0);
    })
    .await;
    let mut client = server.client().await;
    let waiting = create(&mut client, "waits", "{}").await;
    let done = completed(&mut client, "t").await;
    wait_until_deleted(&mut client, &done).await;
    assert_eq!(get(&mut client, &waiting).await.state, "activatable");
}

#[test]
fn serve_refuses_a_malformed_retention_age() {
    let stderr = serve_refusal(&["--retain-completed", "soon"]);
    assert!(stderr.contains("--retain-completed"), "{stderr}");
}
