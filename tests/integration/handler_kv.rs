//! Key-value buckets: a handler opens only its tenant's buckets it was granted; writes are
//! durable when acknowledged and held to the tenant's quotas; operators read and edit them
//! over REST.

use jobhost::client::ClientError;
use jobhost::client::RestClient;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

/// Runs one job of type `kv` in `tenant` (one attempt only) to its end.
async fn run_job(rest: &RestClient, tenant: &str, variables: Value) -> Value {
    let body = json!({ "type": "kv", "tenant_id": tenant, "variables": variables, "retries": 1 });
    run_rest_job(rest, body).await
}

fn result(job: &Value) -> &Value {
    &job["execution_summary"]["result_variables"]
}

async fn deploy(server: &TestServer, query: &str) {
    server
        .deploy(ADMIN_KEY, "uses-kv", &format!("type=kv&{query}"))
        .await
        .expect("deployed");
}

fn refusal<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (String, String) {
    match result {
        Err(ClientError::Refused { code, message }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_counts_in_a_granted_bucket() {
    let server = TestServer::start().await;
    deploy(&server, "kv=counters").await;
    let rest = server.rest(ADMIN_KEY);
    let increment = json!({ "bucket": "counters", "op": "increment", "key": "seen", "delta": 2 });
    for expected in [2, 4, 6] {
        let job = run_job(&rest, "default", increment.clone()).await;
        assert_eq!(result(&job)["value"], expected, "{job}");
    }
    let value = rest
        .call(Method::GET, "/api/v1/kv/counters/seen", None)
        .await
        .unwrap();
    assert_eq!(value["value"], "6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_cannot_open_a_bucket_it_was_not_granted() {
    let server = TestServer::start().await;
    deploy(&server, "kv=counters").await;
    let rest = server.rest(ADMIN_KEY);
    let job = run_job(
        &rest,
        "default",
        json!({ "bucket": "other", "op": "get", "key": "k" }),
    )
    .await;
    assert_eq!(job["state"], "failed", "{job}");
    let output = job["attempts"][0]["output"].as_str().unwrap();
    assert!(
        output.contains("refused to open bucket 'other'"),
        "{output}"
    );
    assert!(job.to_string().contains("--kv BUCKET"), "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_reads_no_bucket_of_another_tenant() {
    let server = TestServer::start().await;
    server
        .deploy(ADMIN_KEY, "uses-kv", "type=kv&tenant=acme&kv=shared")
        .await
        .unwrap();
    let rest = server.rest(ADMIN_KEY);
    rest.put_bytes("/api/v1/kv/shared/k?tenant_id=beta", b"beta's".to_vec())
        .await
        .unwrap();
    let job = run_job(
        &rest,
        "acme",
        json!({ "bucket": "shared", "op": "get", "key": "k" }),
    )
    .await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(result(&job)["value"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_compare_and_swap_updates_lose_nothing() {
    let server = TestServer::start().await;
    deploy(&server, "kv=lists&max_concurrency=8").await;
    let rest = server.rest(ADMIN_KEY);
    let appends = (0..12).map(|n| {
        let rest = rest.clone();
        tokio::spawn(async move {
            let append =
                json!({ "bucket": "lists", "op": "append", "key": "l", "value": n.to_string() });
            run_job(&rest, "default", append).await
        })
    });
    for append in appends.collect::<Vec<_>>() {
        let job = append.await.unwrap();
        assert_eq!(job["state"], "completed", "{job}");
    }
    let list = rest
        .call(Method::GET, "/api/v1/kv/lists/l", None)
        .await
        .unwrap();
    let mut items: Vec<u32> = list["value"]
        .as_str()
        .unwrap()
        .split(',')
        .map(|n| n.parse().unwrap())
        .collect();
    items.sort();
    assert_eq!(items, (0..12).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_over_the_tenants_key_quota_fails_with_a_reason() {
    let server = TestServer::start_with(|config| config.quotas.kv.keys_per_tenant = 2).await;
    deploy(&server, "kv=b").await;
    let rest = server.rest(ADMIN_KEY);
    for key in ["one", "two"] {
        let set = json!({ "bucket": "b", "op": "set", "key": key, "value": "v" });
        assert_eq!(run_job(&rest, "default", set).await["state"], "completed");
    }
    let over = json!({ "bucket": "b", "op": "set", "key": "three", "value": "v" });
    let job = run_job(&rest, "default", over).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(job.to_string().contains("quota of 2 keys"), "{job}");
    let (code, message) = refusal(rest.put_bytes("/api/v1/kv/b/four", b"v".to_vec()).await);
    assert_eq!(code, "RESOURCE_EXHAUSTED", "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_over_the_size_limit_is_refused() {
    let server = TestServer::start_with(|config| config.quotas.kv.value_bytes = 8).await;
    let (code, message) = refusal(
        server
            .rest(ADMIN_KEY)
            .put_bytes("/api/v1/kv/b/k", b"123456789".to_vec())
            .await,
    );
    assert_eq!(code, "RESOURCE_EXHAUSTED");
    assert!(message.contains("at most 8 bytes"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_read_set_and_delete_keys_over_rest() {
    let server = TestServer::start().await;
    let key = server.key(&["kv"], &["acme"]).await;
    let rest = server.rest(&key);
    rest.put_bytes("/api/v1/kv/cfg/a/b?tenant_id=acme", b"x".to_vec())
        .await
        .unwrap();
    rest.put_bytes("/api/v1/kv/cfg/c?tenant_id=acme", vec![0xff, 0x00])
        .await
        .unwrap();
    let buckets = rest
        .call(Method::GET, "/api/v1/kv?tenant_id=acme", None)
        .await
        .unwrap();
    assert_eq!(
        buckets["buckets"],
        json!([{ "name": "cfg", "keys": 2, "bytes": 7 }])
    );
    let keys = rest
        .call(Method::GET, "/api/v1/kv/cfg?tenant_id=acme", None)
        .await
        .unwrap();
    assert_eq!(keys["keys"], json!(["a/b", "c"]));
    let binary = rest
        .call(Method::GET, "/api/v1/kv/cfg/c?tenant_id=acme", None)
        .await
        .unwrap();
    assert_eq!(binary["value_hex"], "ff00");
    rest.call(Method::DELETE, "/api/v1/kv/cfg/a/b?tenant_id=acme", None)
        .await
        .unwrap();
    let (code, _) = refusal(
        rest.call(Method::GET, "/api/v1/kv/cfg/a/b?tenant_id=acme", None)
            .await,
    );
    assert_eq!(code, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_need_the_kv_permission_within_the_keys_tenants() {
    let server = TestServer::start().await;
    let jobs_only = server.key(&["jobs"], &["acme"]).await;
    let (code, _) = refusal(
        server
            .rest(&jobs_only)
            .call(Method::GET, "/api/v1/kv?tenant_id=acme", None)
            .await,
    );
    assert_eq!(code, "PERMISSION_DENIED");
    let acme = server.key(&["kv"], &["acme"]).await;
    let (code, _) = refusal(
        server
            .rest(&acme)
            .put_bytes("/api/v1/kv/b/k?tenant_id=beta", b"v".to_vec())
            .await,
    );
    assert_eq!(code, "PERMISSION_DENIED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_using_key_value_without_a_grant_is_refused_at_upload() {
    let server = TestServer::start().await;
    let (code, message) = refusal(server.deploy(ADMIN_KEY, "uses-kv", "type=kv").await);
    assert_eq!(code, "INVALID_ARGUMENT");
    assert!(message.contains("--kv BUCKET"), "{message}");
}

#[tokio::test]
async fn key_value_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let process = ServerProcess::start(dir.path());
    let rest = RestClient::new(&process.http_url, Some(ADMIN_KEY.into()));
    let component = plugin("uses-kv");
    rest.upload("/api/v1/handlers?type=kv&kv=counters", component)
        .await
        .unwrap();
    let increment = json!({ "bucket": "counters", "op": "increment", "key": "n" });
    for expected in 1..=5 {
        let job = run_job(&rest, "default", increment.clone()).await;
        assert_eq!(result(&job)["value"], expected, "{job}");
    }
    rest.put_bytes("/api/v1/kv/counters/operator", b"set".to_vec())
        .await
        .unwrap();
    process.kill_9();

    let process = ServerProcess::start(dir.path());
    let rest = RestClient::new(&process.http_url, Some(ADMIN_KEY.into()));
    for (key, value) in [("n", "5"), ("operator", "set")] {
        let read = rest
            .call(Method::GET, &format!("/api/v1/kv/counters/{key}"), None)
            .await
            .unwrap();
        assert_eq!(read["value"], value);
    }
}
