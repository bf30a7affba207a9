//! Quotas: one tenant or key holding its share of waiting long polls, handlers or triggers
//! never takes another tenant's.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tonic::Code;

use crate::harness::*;

fn long_poll(job_type: &str, tenant: &str, wait_ms: i64) -> ActivateJobsRequest {
    ActivateJobsRequest {
        tenant_ids: tenant.into(),
        request_timeout: Some(wait_ms),
        ..activate_request(job_type, "w")
    }
}

/// Starts `count` long polls with `key` that keep waiting (for jobs that never come) until the
/// test ends, each retrying while the quota has no room for it.
fn hold_long_polls(server: &TestServer, key: &str, tenant: &str, count: usize) {
    for _ in 0..count {
        let url = server.grpc_url();
        let (key, tenant) = (key.to_string(), tenant.to_string());
        tokio::spawn(async move {
            let mut client = connect(&url).await;
            loop {
                let request = long_poll("never-created", &tenant, 60_000);
                if activate_with(&mut client, with_key(request, &key))
                    .await
                    .is_err()
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
    }
}

/// Waits until a short long poll with `key` is refused for want of a waiting slot; answers
/// the refusal's message.
async fn until_refused(server: &TestServer, key: &str, tenant: &str) -> String {
    let mut client = server.client().await;
    for _ in 0..200 {
        let request = long_poll("never-created", tenant, 100);
        match activate_with(&mut client, with_key(request, key)).await {
            Err(status) if status.code() == Code::ResourceExhausted => {
                return status.message().to_string();
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    panic!("the waiting long polls never filled the quota");
}

#[tokio::test]
async fn a_ready_job_is_served_even_when_every_waiting_slot_is_taken() {
    let server = TestServer::start_with(|config| config.quotas.waiting_activations = 3).await;
    let acme = server.key(&["jobs"], &["acme"]).await;
    let globex = server.key(&["jobs"], &["globex"]).await;
    hold_long_polls(&server, &acme, "acme", 3);
    until_refused(&server, &globex, "globex").await;

    let mut client = server.client().await;
    let key = create_in(&mut client, "globex", "ready", "{}").await;
    let jobs = activate_with(
        &mut client,
        with_key(long_poll("ready", "globex", 5_000), &globex),
    )
    .await
    .expect("a ready job needs no waiting slot");
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].job_key.starts_with(&format!("{key}-")));
}

#[tokio::test]
async fn a_tenant_at_its_waiting_quota_leaves_room_for_another_tenant_to_wait() {
    let server =
        TestServer::start_with(|config| config.quotas.waiting_activations_per_tenant = 2).await;
    let acme = server.key(&["jobs"], &["acme"]).await;
    let globex = server.key(&["jobs"], &["globex"]).await;
    hold_long_polls(&server, &acme, "acme", 2);
    let refusal = until_refused(&server, &acme, "acme").await;
    assert!(refusal.contains("tenant 'acme'"), "{refusal}");

    let url = server.grpc_url();
    let waiting = tokio::spawn(async move {
        let mut client = connect(&url).await;
        activate_with(
            &mut client,
            with_key(long_poll("later", "globex", 30_000), &globex),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut client = server.client().await;
    create_in(&mut client, "globex", "later", "{}").await;
    let jobs = waiting.await.unwrap().expect("globex waits and is served");
    assert_eq!(jobs.len(), 1);
}

#[tokio::test]
async fn a_key_at_its_waiting_quota_is_refused_while_another_key_of_the_tenant_is_not() {
    let server =
        TestServer::start_with(|config| config.quotas.waiting_activations_per_key = 2).await;
    let greedy = server.key(&["jobs"], &["acme"]).await;
    let other = server.key(&["jobs"], &["acme"]).await;
    hold_long_polls(&server, &greedy, "acme", 2);
    let refusal = until_refused(&server, &greedy, "acme").await;
    assert!(refusal.contains("API key"), "{refusal}");
    let mut client = server.client().await;
    let result = activate_with(&mut client, with_key(long_poll("t", "acme", 50), &other)).await;
    assert_eq!(result.expect("another key still waits"), Vec::new());
}

fn trigger(tenant: &str, name: &str) -> serde_json::Value {
    json!({ "name": name, "tenant_id": tenant, "type": "t", "interval": "1h" })
}

#[tokio::test]
async fn a_tenant_at_its_trigger_quota_cannot_add_one_while_another_tenant_can() {
    let server = TestServer::start_with(|config| config.quotas.triggers_per_tenant = 1).await;
    let rest = server.rest(ADMIN_KEY);
    rest.call(Method::POST, "/api/v1/triggers", Some(trigger("acme", "a")))
        .await
        .expect("within the quota");
    let error = rest
        .call(Method::POST, "/api/v1/triggers", Some(trigger("acme", "b")))
        .await
        .expect_err("over the quota")
        .to_string();
    assert!(error.starts_with("RESOURCE_EXHAUSTED"), "{error}");
    assert!(error.contains("acme"), "{error}");
    rest.call(
        Method::POST,
        "/api/v1/triggers",
        Some(trigger("globex", "a")),
    )
    .await
    .expect("another tenant has its own quota");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_handler_quota_can_redeploy_but_not_add_a_type() {
    let server = TestServer::start_with(|config| config.quotas.handlers_per_tenant = 1).await;
    server
        .deploy(ADMIN_KEY, "echo", "type=first&tenant=acme")
        .await
        .expect("within the quota");
    server
        .deploy(ADMIN_KEY, "echo", "type=first&tenant=acme")
        .await
        .expect("a new version takes no more room");
    let error = server
        .deploy(ADMIN_KEY, "echo", "type=second&tenant=acme")
        .await
        .expect_err("over the quota")
        .to_string();
    assert!(error.starts_with("RESOURCE_EXHAUSTED"), "{error}");
    server
        .deploy(ADMIN_KEY, "echo", "type=second&tenant=globex")
        .await
        .expect("another tenant has its own quota");
}

#[tokio::test]
async fn whoami_shows_the_quotas() {
    let server = TestServer::start_with(|config| config.quotas.triggers_per_tenant = 7).await;
    let key = server.key(&["jobs"], &["acme"]).await;
    let me = server
        .rest(&key)
        .call(Method::GET, "/api/v1/whoami", None)
        .await
        .unwrap();
    assert_eq!(me["quotas"]["triggers_per_tenant"], 7);
    assert_eq!(me["quotas"]["waiting_activations_per_key"], 1_000);
}
