//! Operating the server: Prometheus metrics and structured logs.

use std::time::Duration;

use reqwest::StatusCode;

use crate::harness::*;

async fn scrape(server: &TestServer, key: Option<&str>) -> (StatusCode, String) {
    let mut request = reqwest::Client::new().get(format!("{}/metrics", server.http_url()));
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = request.send().await.expect("answered");
    (response.status(), response.text().await.expect("text"))
}

/// The value of the sample whose name and labels start the line as given.
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_job_transitions_queue_depth_and_wasm_attempts() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (_, done) = create_and_activate(&mut client, "billing", "w").await;
    complete(&mut client, &done).await.unwrap();
    let (_, doomed) = create_and_activate(&mut client, "billing", "w").await;
    let fail = FailJobRequest {
        job_key: doomed,
        retries: 0,
        error_message: "card declined".into(),
        backoff_timeout: 0,
    };
    client.fail_job(admin(fail)).await.unwrap();
    let slow = create(&mut client, "billing", "{}").await;
    activate(&mut client, "billing", "w", 1, 50).await;
    wait_for_state(&mut client, &slow, "activatable").await;
    server
        .deploy(ADMIN_KEY, "echo", "type=echoed")
        .await
        .unwrap();
    let echoed = create(&mut client, "echoed", r#"{"a":1}"#).await;
    wait_for_state(&mut client, &echoed, "completed").await;

    let (status, text) = scrape(&server, Some(ADMIN_KEY)).await;
    assert_eq!(status, StatusCode::OK);
    let billing = r#"{job_type="billing",tenant="default"}"#;
    assert_eq!(
        sample(&text, &format!("jobhost_jobs_created_total{billing}")),
        3.0
    );
    assert_eq!(
        sample(&text, &format!("jobhost_jobs_activated_total{billing}")),
        3.0
    );
    assert_eq!(
        sample(&text, &format!("jobhost_jobs_completed_total{billing}")),
        1.0
    );
    assert_eq!(
        sample(&text, &format!("jobhost_jobs_failed_total{billing}")),
        1.0
    );
    assert_eq!(
        sample(&text, &format!("jobhost_jobs_timed_out_total{billing}")),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"jobhost_jobs{job_type="billing",tenant="default",state="activatable"}"#
        ),
        1.0
    );
    assert!(sample(&text, "jobhost_activation_latency_seconds_count") >= 4.0);
    assert_eq!(
        sample(
            &text,
            r#"jobhost_wasm_attempt_duration_seconds_count{job_type="echoed",tenant="default"}"#
        ),
        1.0
    );
    assert_eq!(sample(&text, "jobhost_handler_compiles_total"), 1.0);
    assert_eq!(sample(&text, "jobhost_handler_cache_loads_total"), 0.0);
    assert!(sample(&text, "jobhost_long_poll_waiters") >= 0.0);
    assert_eq!(sample(&text, r#"jobhost_triggers{status="active"}"#), 0.0);
    assert_eq!(sample(&text, "jobhost_trigger_jobs_created_total"), 0.0);
    assert!(text.trim_end().ends_with("# EOF"));
}

#[tokio::test]
async fn metrics_need_a_key_granted_every_tenant() {
    let server = TestServer::start().await;
    assert_eq!(scrape(&server, None).await.0, StatusCode::UNAUTHORIZED);
    let narrow = server.key(&["*"], &["acme"]).await;
    assert_eq!(
        scrape(&server, Some(&narrow)).await.0,
        StatusCode::FORBIDDEN
    );
    let wide = server.key(&["jobs"], &[]).await;
    assert_eq!(scrape(&server, Some(&wide)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn json_logs_carry_the_job_key_type_and_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let process = ServerProcess::start(dir.path());
    let mut client = connect(&process.grpc_url).await;
    let job = create(&mut client, "audited", "{}").await;
    let leased = activate(&mut client, "audited", "w", 1, 0).await.remove(0);
    let fail = FailJobRequest {
        job_key: leased.job_key,
        retries: 0,
        error_message: "broken".into(),
        backoff_timeout: 0,
    };
    client.fail_job(admin(fail)).await.unwrap();
    for _ in 0..250 {
        let found = process.log.lock().unwrap().iter().find_map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).ok()?;
            (entry["fields"]["job"].as_u64()? == job.parse::<u64>().ok()?).then_some(entry)
        });
        if let Some(entry) = found {
            assert_eq!(entry["level"], "WARN");
            assert_eq!(entry["fields"]["job_type"], "audited");
            assert_eq!(entry["fields"]["tenant"], "default");
            assert_eq!(entry["fields"]["error"], "broken");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no log line names job {job}");
}
