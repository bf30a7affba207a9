//! Uploads compiled in the background: checked at once, compiled while the uploader follows
//! them, and then ready (with the handler they became) or failed (with the reason).

use std::time::Duration;

use jobhost::client::ClientError;
use reqwest::Method;
use serde_json::Value;

use crate::harness::*;

async fn start(server: &TestServer, key: &str, plugin_name: &str, query: &str) -> Value {
    server
        .rest(key)
        .upload(
            &format!("/api/v1/handlers/uploads?{query}"),
            plugin(plugin_name),
        )
        .await
        .expect("upload accepted")
}

/// Polls an upload until it is no longer compiling.
async fn settled(server: &TestServer, key: &str, id: &str) -> Value {
    for _ in 0..1500 {
        let status = server
            .rest(key)
            .call(Method::GET, &format!("/api/v1/handlers/uploads/{id}"), None)
            .await
            .unwrap();
        if status["state"] != "compiling" {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("upload {id} never finished compiling");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_upload_becomes_ready_as_the_handler_it_names() {
    let server = TestServer::start().await;
    let upload = start(&server, ADMIN_KEY, "echo", "type=greet").await;
    assert_eq!(upload["type"], "greet");
    let id = upload["id"].as_str().unwrap();
    let status = settled(&server, ADMIN_KEY, id).await;
    assert_eq!(status["state"], "ready", "{status}");
    assert_eq!(status["version"], 1);
    let handler = server
        .rest(ADMIN_KEY)
        .call(
            Method::GET,
            &format!(
                "/api/v1/handlers/{}",
                status["handler_id"].as_str().unwrap()
            ),
            None,
        )
        .await
        .unwrap();
    assert_eq!(handler["type"], "greet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_upload_that_does_not_compile_fails_with_the_reason() {
    let server = TestServer::start().await;
    let upload = start(&server, ADMIN_KEY, "wrong-world", "type=w").await;
    let status = settled(&server, ADMIN_KEY, upload["id"].as_str().unwrap()).await;
    assert_eq!(status["state"], "failed", "{status}");
    assert!(
        status["error"].as_str().unwrap().contains("job-handler"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_upload_missing_a_grant_is_refused_before_compiling() {
    let server = TestServer::start().await;
    let refused = server
        .rest(ADMIN_KEY)
        .upload("/api/v1/handlers/uploads?type=c", plugin("reads-config"))
        .await;
    match refused {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, "INVALID_ARGUMENT");
            assert!(message.contains("--config KEY=VALUE"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_not_found_outside_the_keys_tenants() {
    let server = TestServer::start().await;
    let acme = server.key(&["handlers"], &["acme"]).await;
    let beta = server.key(&["handlers"], &["beta"]).await;
    let upload = start(&server, &acme, "echo", "type=e&tenant=acme").await;
    let id = upload["id"].as_str().unwrap();
    let seen = server
        .rest(&beta)
        .call(Method::GET, &format!("/api/v1/handlers/uploads/{id}"), None)
        .await;
    assert!(
        matches!(seen, Err(ClientError::Refused { ref code, .. }) if code == "NOT_FOUND"),
        "{seen:?}"
    );
    settled(&server, &acme, id).await;
}
