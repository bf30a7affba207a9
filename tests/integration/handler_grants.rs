//! What a handler may reach beyond its sandbox: only what its deployed version was granted,
//! only within its tenant; secrets it reads are redacted from what its attempts leave behind.

use jobhost::client::ClientError;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

const TOKEN: &str = "tok_5ec7e7_value";

async fn set_secret(server: &TestServer, tenant: &str, name: &str, value: &str) {
    server
        .rest(ADMIN_KEY)
        .put_bytes(
            &format!("/api/v1/secrets/{name}?tenant_id={tenant}"),
            value.as_bytes().to_vec(),
        )
        .await
        .expect("secret set");
}

/// Runs one job of `job_type` in `tenant` to its end.
async fn run_job(server: &TestServer, tenant: &str, job_type: &str, variables: Value) -> Value {
    let body = json!({ "type": job_type, "tenant_id": tenant, "variables": variables });
    run_rest_job(&server.rest(ADMIN_KEY), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_reads_the_config_values_and_secrets_it_was_granted() {
    let server = TestServer::start().await;
    set_secret(&server, "acme", "API_TOKEN", TOKEN).await;
    set_secret(&server, "acme", "OTHER", "not-granted-value").await;
    server
        .deploy(
            ADMIN_KEY,
            "reads-config",
            "type=cfg&tenant=acme&config=REGION%3Deu-west&secret=API_TOKEN",
        )
        .await
        .unwrap();
    let job = run_job(&server, "acme", "cfg", json!({})).await;
    assert_eq!(job["state"], "completed", "{job}");
    let result = &job["execution_summary"]["result_variables"];
    assert_eq!(
        result["granted"],
        json!({ "REGION": "eu-west", "API_TOKEN": "[redacted:API_TOKEN]" })
    );
    assert_eq!(result["lengths"]["API_TOKEN"], TOKEN.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_reads_no_secret_of_another_tenant() {
    let server = TestServer::start().await;
    set_secret(&server, "beta", "API_TOKEN", TOKEN).await;
    server
        .deploy(
            ADMIN_KEY,
            "reads-config",
            "type=cfg&tenant=acme&secret=API_TOKEN",
        )
        .await
        .unwrap();
    let job = run_job(&server, "acme", "cfg", json!({})).await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(
        job["execution_summary"]["result_variables"]["lengths"],
        json!({})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_secret_is_read_by_the_next_attempt() {
    let server = TestServer::start().await;
    set_secret(&server, "acme", "API_TOKEN", "first").await;
    server
        .deploy(
            ADMIN_KEY,
            "reads-config",
            "type=cfg&tenant=acme&secret=API_TOKEN",
        )
        .await
        .unwrap();
    run_job(&server, "acme", "cfg", json!({})).await;
    set_secret(&server, "acme", "API_TOKEN", "the-second").await;
    let job = run_job(&server, "acme", "cfg", json!({})).await;
    assert_eq!(
        job["execution_summary"]["result_variables"]["lengths"]["API_TOKEN"],
        "the-second".len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_an_attempts_output_log_or_failure_is_redacted() {
    let server = TestServer::start().await;
    set_secret(&server, "acme", "API_TOKEN", TOKEN).await;
    server
        .deploy(
            ADMIN_KEY,
            "reads-config",
            "type=cfg&tenant=acme&secret=API_TOKEN",
        )
        .await
        .unwrap();
    let job = run_job(&server, "acme", "cfg", json!({ "leak": "API_TOKEN" })).await;
    assert_eq!(job["state"], "failed", "{job}");
    let text = job.to_string();
    assert!(!text.contains(TOKEN), "{text}");
    let output = job["attempts"][0]["output"].as_str().unwrap();
    assert!(
        output.contains("stdout: API_TOKEN is [redacted:API_TOKEN]"),
        "{output}"
    );
    assert!(
        output.contains("log: API_TOKEN is [redacted:API_TOKEN]"),
        "{output}"
    );
    assert!(
        text.contains("failure: API_TOKEN is [redacted:API_TOKEN]"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_reading_config_without_a_grant_is_refused_naming_the_grant() {
    let server = TestServer::start().await;
    let refused = server
        .deploy(ADMIN_KEY, "reads-config", "type=cfg&tenant=acme")
        .await;
    match refused {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, "INVALID_ARGUMENT");
            assert!(message.contains("wasi:config/store"), "{message}");
            assert!(message.contains("--secret NAME"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handlers_grants_are_shown_with_its_version() {
    let server = TestServer::start().await;
    let handler = server
        .deploy(
            ADMIN_KEY,
            "reads-config",
            "type=cfg&tenant=acme&config=REGION%3Deu&secret=API_TOKEN&kv=counters\
             &allow_http=https%3A%2F%2Fapi.example.com",
        )
        .await
        .unwrap();
    let id = handler["id"].as_str().unwrap();
    let shown = server
        .rest(ADMIN_KEY)
        .call(Method::GET, &format!("/api/v1/handlers/{id}"), None)
        .await
        .unwrap();
    let grants = &shown["versions"][0]["grants"];
    assert_eq!(grants["secrets"], json!(["API_TOKEN"]), "{shown}");
    assert_eq!(grants["config"]["REGION"], "eu", "{shown}");
    assert_eq!(grants["kv"], json!(["counters"]), "{shown}");
    assert_eq!(
        grants["allow_http"],
        json!(["https://api.example.com"]),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_grants_are_refused_at_deploy_with_reasons() {
    let server = TestServer::start().await;
    for query in [
        "type=cfg&allow_http=ftp%3A%2F%2Fexample.com",
        "type=cfg&secret=bad%20name",
        "type=cfg&config=NOEQUALS",
        "type=cfg&secret=T&config=T%3Dx",
        "type=cfg&inject_header=api.example.com%3DAuthorization%3A%20Bearer%20%7B%7Bsecret%3AT%7D%7D",
    ] {
        match server.deploy(ADMIN_KEY, "reads-config", query).await {
            Err(ClientError::Refused { code, message }) => {
                assert_eq!(code, "INVALID_ARGUMENT", "{query}: {message}");
            }
            other => panic!("{query}: expected a refusal, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_value_is_in_no_server_log_metric_or_dashboard_page() {
    let dir = tempfile::tempdir().unwrap();
    let process = ServerProcess::start(dir.path());
    let rest = jobhost::client::RestClient::new(&process.http_url, Some(ADMIN_KEY.into()));
    rest.put_bytes("/api/v1/secrets/API_TOKEN", TOKEN.as_bytes().to_vec())
        .await
        .unwrap();
    rest.upload(
        "/api/v1/handlers?type=cfg&secret=API_TOKEN",
        plugin("reads-config"),
    )
    .await
    .unwrap();
    for variables in [json!({}), json!({ "leak": "API_TOKEN" })] {
        let body = json!({ "type": "cfg", "variables": variables, "retries": 1 });
        run_rest_job(&rest, body).await;
    }
    let mut pages = Vec::new();
    for path in [
        "/metrics",
        "/",
        "/dashboard/app.js",
        "/api/v1/handlers",
        "/api/v1/audit",
        "/api/v1/jobs",
        "/api/v1/secrets",
    ] {
        let response = rest.download(path).await.unwrap();
        pages.push((path, response.text().await.unwrap()));
    }
    for (path, text) in &pages {
        assert!(!text.contains(TOKEN), "{path} shows the secret");
    }
    let log = process.log.lock().unwrap().join("\n");
    assert!(log.contains("handler"), "the log was captured");
    assert!(!log.contains(TOKEN), "the server log shows the secret");
}
