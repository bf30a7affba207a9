//! Wasm handlers: upload, execution through the job lifecycle, sandbox limits, isolation.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// The REST view of a job (with its attempts).
async fn job_json(server: &TestServer, key: &str) -> Value {
    server
        .rest(ADMIN_KEY)
        .call(reqwest::Method::GET, &format!("/api/v1/jobs/{key}"), None)
        .await
        .unwrap()
}

/// Polls the REST view until `done` holds (bounded; generous for loaded machines).
async fn wait_json(server: &TestServer, key: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..750 {
        let job = job_json(server, key).await;
        if done(&job) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {key} never got there: {}", job_json(server, key).await);
}

async fn finished(server: &TestServer, key: &str) -> Value {
    wait_json(server, key, |job| {
        matches!(
            job["state"].as_str(),
            Some("completed" | "failed" | "cancelled")
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_deployed_over_rest_completes_jobs_of_its_type() {
    let server = TestServer::start().await;
    let handler = server
        .deploy(ADMIN_KEY, "echo", "type=greet")
        .await
        .unwrap();
    assert_eq!(handler["current_version"], 1);
    assert_eq!(handler["worker"], "wasm:greet@v1");
    let mut client = server.client().await;
    let key = create(&mut client, "greet", r#"{"name":"Ada"}"#).await;
    let job = finished(&server, &key).await;
    assert_eq!(job["state"], "completed");
    let result = &job["execution_summary"]["result_variables"];
    assert_eq!(
        (result["name"].as_str(), result["echoed_by"].as_str()),
        (Some("Ada"), Some("echo"))
    );
    let attempt = &job["attempts"][0];
    assert_eq!(attempt["worker_id"], "wasm:greet@v1");
    assert!(
        attempt["output"]
            .as_str()
            .unwrap()
            .contains("echo handled job")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_deployed_with_the_cli_is_listed_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let process = ServerProcess::start(dir.path());
    let output = Command::new(binary())
        .args(["handlers", "deploy"])
        .arg(plugin_path("echo"))
        .args([
            "--type",
            "cli-echo",
            "--tenant",
            "acme",
            "--memory-mb",
            "32",
            "--timeout-ms",
            "5000",
            "--max-concurrency",
            "2",
            "--max-retries",
            "1",
        ])
        .env("JOBHOST_SERVER", &process.http_url)
        .env("JOBHOST_API_KEY", ADMIN_KEY)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("version 1"));
    let listed = Command::new(binary())
        .args(["handlers", "list"])
        .env("JOBHOST_SERVER", &process.http_url)
        .env("JOBHOST_API_KEY", ADMIN_KEY)
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let handler = &list["handlers"][0];
    assert_eq!(
        (handler["type"].as_str(), handler["tenant_id"].as_str()),
        (Some("cli-echo"), Some("acme"))
    );
    assert_eq!(handler["versions"][0]["limits"]["memory_mb"], 32);
    let mut client = connect(&process.grpc_url).await;
    let key = create_in(&mut client, "acme", "cli-echo", "{}").await;
    assert_eq!(
        wait_for_state(&mut client, &key, "completed").await.state,
        "completed"
    );
}

async fn jobs_of_type(client: &mut Client, job_type: &str) -> Vec<Job> {
    let request = ListJobsRequest {
        r#type: job_type.into(),
        ..Default::default()
    };
    let listed = client.list_jobs(admin(request)).await.unwrap();
    listed.into_inner().jobs
}

/// A server with `fanout` deployed for type `split` in tenant `acme`, and a client of it.
async fn fanout_in_acme() -> (TestServer, Client) {
    let server = TestServer::start().await;
    server
        .deploy(ADMIN_KEY, "fanout", "type=split&tenant=acme")
        .await
        .unwrap();
    let client = server.client().await;
    (server, client)
}

/// The `parent` variable each follow-up was created with.
fn parents_of(jobs: &[Job]) -> Vec<Value> {
    jobs.iter()
        .map(|job| serde_json::from_str::<Value>(&job.variables).unwrap()["parent"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_up_jobs_appear_with_the_completion() {
    let (server, mut client) = fanout_in_acme().await;
    let key = create_in(
        &mut client,
        "acme",
        "split",
        r#"{"next_type":"part","count":3}"#,
    )
    .await;
    let job = finished(&server, &key).await;
    assert_eq!(
        job["execution_summary"]["result_variables"]["status"],
        "fanned-out"
    );
    let parts = jobs_of_type(&mut client, "part").await;
    assert_eq!(parts.len(), 3);
    assert!(
        parts
            .iter()
            .all(|p| p.tenant_id == "acme" && p.state == "activatable")
    );
    assert!(
        parents_of(&parts)
            .iter()
            .all(|parent| parent == key.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_with_one_idempotency_key_are_created_once_across_parents() {
    let (server, mut client) = fanout_in_acme().await;
    let variables = r#"{"next_type":"part","count":2,"once":"report-9"}"#;
    let first = create_in(&mut client, "acme", "split", variables).await;
    assert_eq!(finished(&server, &first).await["state"], "completed");
    let second = create_in(&mut client, "acme", "split", variables).await;
    assert_eq!(finished(&server, &second).await["state"], "completed");
    let parts = jobs_of_type(&mut client, "part").await;
    assert_eq!(parts.len(), 2, "the second parent created no follow-up");
    assert_eq!(parents_of(&parts), [first.as_str(), first.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_failure_is_retried_with_backoff_then_succeeds() {
    let server = TestServer::start().await;
    server
        .deploy(
            ADMIN_KEY,
            "flaky",
            "type=flaky&backoff_ms=50&backoff_cap_ms=100",
        )
        .await
        .unwrap();
    let mut client = server.client().await;
    let key = create(&mut client, "flaky", r#"{"fail_times":2}"#).await;
    let job = finished(&server, &key).await;
    assert_eq!(job["state"], "completed");
    assert_eq!(
        job["execution_summary"]["result_variables"]["succeeded_on_attempt"],
        3
    );
    assert_eq!(job["failure_history"].as_array().unwrap().len(), 2);
    let outcomes: Vec<_> = job["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[2], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handlers_retry_policy_bounds_the_retries() {
    let server = TestServer::start().await;
    server
        .deploy(ADMIN_KEY, "flaky", "type=flaky&max_retries=1&backoff_ms=10")
        .await
        .unwrap();
    let mut client = server.client().await;
    let key = create(&mut client, "flaky", r#"{"fail_times":5}"#).await;
    let job = finished(&server, &key).await;
    assert_eq!(job["state"], "failed");
    assert_eq!(job["failure_history"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_retryable_failure_fails_the_job_at_once() {
    let server = TestServer::start().await;
    server
        .deploy(ADMIN_KEY, "flaky", "type=flaky")
        .await
        .unwrap();
    let mut client = server.client().await;
    let key = create(
        &mut client,
        "flaky",
        r#"{"fail_times":1,"retryable":false}"#,
    )
    .await;
    let job = finished(&server, &key).await;
    assert_eq!(job["state"], "failed");
    assert_eq!(job["error_message"], "attempt 1 of 2 fails on purpose");
    assert_eq!(job["retries"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_handlers_fail_their_own_jobs_while_others_keep_completing() {
    let server = TestServer::start_with(|config| config.max_attempts = 16).await;
    let fixtures = [
        ("spin", "timeout_ms=400", "deadline of 400 ms exceeded"),
        ("leak", "memory_mb=32", "memory limit of 32 MiB exceeded"),
        ("trap", "", "trap: unreachable"),
        ("recursion", "", "trap: stack overflow"),
    ];
    for (fixture, limits, _) in fixtures {
        let query = format!("type={fixture}&tenant=evil&max_retries=0&{limits}");
        server.deploy(ADMIN_KEY, fixture, &query).await.unwrap();
    }
    server
        .deploy(ADMIN_KEY, "huge-output", "type=noisy&tenant=evil")
        .await
        .unwrap();
    server
        .deploy(ADMIN_KEY, "echo", "type=work&tenant=good")
        .await
        .unwrap();
    let mut client = server.client().await;
    let mut attacks = Vec::new();
    for (fixture, _, reason) in fixtures {
        for _ in 0..2 {
            attacks.push((create_in(&mut client, "evil", fixture, "{}").await, reason));
        }
    }
    let noisy = create_in(&mut client, "evil", "noisy", "{}").await;
    let mut good = Vec::new();
    for n in 0..20 {
        good.push(create_in(&mut client, "good", "work", &format!(r#"{{"n":{n}}}"#)).await);
    }
    for key in &good {
        assert_eq!(finished(&server, key).await["state"], "completed");
    }
    for (key, reason) in attacks {
        let job = finished(&server, &key).await;
        assert_eq!(job["state"], "failed", "{job}");
        assert_eq!(job["error_message"], reason, "{job}");
    }
    let noisy = finished(&server, &noisy).await;
    assert_eq!(noisy["state"], "completed");
    let output = noisy["attempts"][0]["output"].as_str().unwrap();
    assert!(output.len() <= 64 * 1024 + 200 && output.contains("output truncated"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_job_interrupts_its_running_attempt() {
    let server = TestServer::start().await;
    server
        .deploy(
            ADMIN_KEY,
            "spin",
            "type=spin&timeout_ms=120000&max_concurrency=1",
        )
        .await
        .unwrap();
    let mut client = server.client().await;
    let first = create(&mut client, "spin", "{}").await;
    wait_for_state(&mut client, &first, "activated").await;
    client
        .cancel_job(admin(CancelJobRequest {
            job_key: first.clone(),
        }))
        .await
        .unwrap();
    // With one slot, the next job can only start once the cancelled attempt is gone.
    let second = create(&mut client, "spin", "{}").await;
    let started = tokio::time::Instant::now();
    wait_for_state(&mut client, &second, "activated").await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the cancelled attempt kept its slot"
    );
    assert_eq!(get(&mut client, &first).await.state, "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploying_makes_a_new_version_that_new_attempts_use() {
    let server = TestServer::start().await;
    server
        .deploy(ADMIN_KEY, "echo", "type=evolving")
        .await
        .unwrap();
    let mut client = server.client().await;
    let before = create(&mut client, "evolving", "{}").await;
    assert_eq!(
        finished(&server, &before).await["attempts"][0]["handler_version"],
        1
    );
    let v2 = server
        .deploy(ADMIN_KEY, "flaky", "type=evolving")
        .await
        .unwrap();
    assert_eq!(v2["current_version"], 2);
    assert_eq!(v2["versions"].as_array().unwrap().len(), 2);
    let after = create(&mut client, "evolving", r#"{"fail_times":0}"#).await;
    let job = finished(&server, &after).await;
    assert_eq!(job["attempts"][0]["handler_version"], 2);
    assert_eq!(job["attempts"][0]["worker_id"], "wasm:evolving@v2");
    assert_eq!(
        job["execution_summary"]["result_variables"]["succeeded_on_attempt"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_survive_a_restart_and_load_from_the_compiled_code_cache() {
    let mut server = TestServer::start().await;
    let deployed = server.deploy(ADMIN_KEY, "echo", "type=kept").await.unwrap();
    assert_eq!(deployed["load"]["source"], "compiled");
    let id = deployed["id"].as_str().unwrap().to_string();
    server.restart().await;
    let handler = server
        .rest(ADMIN_KEY)
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/handlers/{id}"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(handler["load"]["source"], "cache");
    eprintln!(
        "compile {:.1} ms, cache load {:.1} ms",
        deployed["load"]["millis"], handler["load"]["millis"]
    );
    let mut client = server.client().await;
    let key = create(&mut client, "kept", "{}").await;
    assert_eq!(finished(&server, &key).await["state"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_rejected_with_precise_messages_and_register_nothing() {
    let server =
        TestServer::start_with(|config| config.handler_maxima.component_bytes = 300_000).await;
    let rest = server.rest(ADMIN_KEY);
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            b"definitely not wasm".to_vec(),
            "type=t",
            "not a WebAssembly component",
        ),
        (
            b"\0asm\x01\0\0\0".to_vec(),
            "type=t",
            "core WebAssembly module",
        ),
        (plugin("bad-import"), "type=t", "imports acme:evil/backdoor"),
        (plugin("wrong-world"), "type=t", "job-handler world"),
        (
            plugin("echo"),
            "type=t&memory_mb=100000",
            "memory_mb must be between 1 and",
        ),
        (
            plugin("echo"),
            "type=t&timeout_ms=0",
            "timeout_ms must be between 1 and",
        ),
        (
            plugin("echo"),
            "type=t&max_concurrency=1000",
            "max_concurrency",
        ),
        (plugin("echo"), "tenant=acme", "type must be"),
        (plugin("echo"), "type=t&tenant=bad/tenant", "invalid tenant"),
        (Vec::new(), "type=t", "component's bytes"),
    ];
    for (bytes, query, message) in cases {
        let error = rest
            .upload(&format!("/api/v1/handlers?{query}"), bytes)
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("INVALID_ARGUMENT") && text.contains(message),
            "{query}: {text}"
        );
    }
    let oversized = rest
        .upload("/api/v1/handlers?type=t", vec![0u8; 400_000])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        oversized.starts_with("PAYLOAD_TOO_LARGE") && oversized.contains("at most 300000"),
        "{oversized}"
    );
    let list = rest
        .call(reqwest::Method::GET, "/api/v1/handlers", None)
        .await
        .unwrap();
    assert!(list["handlers"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_see_replace_remove_or_run_another_tenants_handler() {
    let server = TestServer::start().await;
    let theirs = server
        .deploy(ADMIN_KEY, "echo", "type=shared&tenant=beta")
        .await
        .unwrap();
    let their_id = theirs["id"].as_str().unwrap().to_string();
    let alpha = server.key(&["handlers", "jobs"], &["alpha"]).await;
    let rest = server.rest(&alpha);

    let replace = server
        .deploy(&alpha, "flaky", "type=shared&tenant=beta")
        .await
        .unwrap_err();
    assert!(
        replace.to_string().starts_with("PERMISSION_DENIED"),
        "{replace}"
    );
    let seen = rest
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/handlers/{their_id}"),
            None,
        )
        .await
        .unwrap_err();
    assert!(seen.to_string().starts_with("NOT_FOUND"), "{seen}");
    let removed = rest
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/handlers/{their_id}"),
            None,
        )
        .await
        .unwrap_err();
    assert!(removed.to_string().starts_with("NOT_FOUND"), "{removed}");
    let listed = rest
        .call(reqwest::Method::GET, "/api/v1/handlers", None)
        .await
        .unwrap();
    assert!(listed["handlers"].as_array().unwrap().is_empty());

    let mut client = server.client().await;
    let mine = create_in(&mut client, "alpha", "shared", "{}").await;
    let theirs_job = create_in(&mut client, "beta", "shared", "{}").await;
    assert_eq!(finished(&server, &theirs_job).await["state"], "completed");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        get(&mut client, &mine).await.state,
        "activatable",
        "beta's handler ran alpha's job"
    );
    let other_key = server.key(&["jobs"], &["alpha"]).await;
    let denied = server
        .deploy(&other_key, "echo", "type=x&tenant=alpha")
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("handlers"), "{denied}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_backlog_does_not_starve_another_tenant() {
    let server = TestServer::start_with(|config| config.max_attempts = 1).await;
    let mut client = server.client().await;
    for _ in 0..100 {
        create_in(&mut client, "busy", "work", "{}").await;
    }
    // Each of the busy tenant's jobs occupies the only slot for 40 ms.
    server
        .deploy(
            ADMIN_KEY,
            "spin",
            "type=work&tenant=busy&timeout_ms=40&max_retries=0",
        )
        .await
        .unwrap();
    server
        .deploy(ADMIN_KEY, "echo", "type=work&tenant=quiet")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let busy_done = |client: &mut Client| {
        let request = ListJobsRequest {
            tenant_id: "busy".into(),
            state: "failed".into(),
            ..Default::default()
        };
        let mut client = client.clone();
        async move {
            client
                .list_jobs(admin(request))
                .await
                .unwrap()
                .into_inner()
                .pagination
                .unwrap()
                .total_count
        }
    };
    let before = busy_done(&mut client).await;
    let quiet = create_in(&mut client, "quiet", "work", "{}").await;
    wait_for_state(&mut client, &quiet, "completed").await;
    let during = busy_done(&mut client).await - before;
    eprintln!("the busy tenant ran {during} jobs while the quiet tenant's one waited");
    let total = busy_done(&mut client).await;
    eprintln!("busy jobs done: {before} before, {during} while waiting, {total} in all");
    assert!(total < 90, "the backlog ended too soon to tell anything");
    assert!(
        during <= 5,
        "{during} busy jobs ran before the quiet tenant's job"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_running_attempts_back_without_spending_a_retry() {
    let mut server =
        TestServer::start_with(|config| config.shutdown_grace = Duration::from_millis(200)).await;
    server
        .deploy(ADMIN_KEY, "spin", "type=spin&timeout_ms=120000")
        .await
        .unwrap();
    let mut client = server.client().await;
    let key = create(&mut client, "spin", "{}").await;
    wait_for_state(&mut client, &key, "activated").await;
    let stopping = tokio::time::Instant::now();
    server.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(30));
    // After the restart the handler may take the job again; what matters is that the
    // interrupted attempt cost no retry and left no failure.
    server.restart().await;
    let mut client = server.client().await;
    let job = get(&mut client, &key).await;
    assert_eq!(job.retries, 3, "{job:?}");
    assert!(job.failure_history.is_empty());
}
