//! The audit trail: every administrative act is kept durably with who did it, and each
//! tenant reads only its own.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

async fn trail(server: &TestServer, key: &str, query: &str) -> Value {
    server
        .rest(key)
        .call(Method::GET, &format!("/api/v1/audit{query}"), None)
        .await
        .expect("audit read")
}

fn actions(trail: &Value) -> Vec<String> {
    trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

fn id_of(key: &str) -> String {
    key.split('_').nth(1).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_administrative_act_is_audited_with_the_acting_key() {
    let server = TestServer::start().await;
    let operator = server.key(&["*"], &["acme"]).await;
    let rest = server.rest(&operator);
    let trigger = rest
        .call(
            Method::POST,
            "/api/v1/triggers",
            Some(json!({ "name": "n", "tenant_id": "acme", "type": "t", "interval": "1h" })),
        )
        .await
        .unwrap();
    let trigger_id = trigger["id"].as_str().unwrap().to_string();
    rest.call(
        Method::PATCH,
        &format!("/api/v1/triggers/{trigger_id}"),
        Some(json!({ "enabled": false })),
    )
    .await
    .unwrap();
    rest.call(
        Method::DELETE,
        &format!("/api/v1/triggers/{trigger_id}"),
        None,
    )
    .await
    .unwrap();
    let handler = server
        .deploy(&operator, "echo", "type=e&tenant=acme")
        .await
        .unwrap();
    let handler_id = handler["id"].as_str().unwrap().to_string();
    rest.call(
        Method::DELETE,
        &format!("/api/v1/handlers/{handler_id}"),
        None,
    )
    .await
    .unwrap();
    let mut client = server.client().await;
    let cancelled = create_in(&mut client, "acme", "t", "{}").await;
    rest.call(
        Method::POST,
        &format!("/api/v1/jobs/{cancelled}/cancel"),
        None,
    )
    .await
    .unwrap();
    let retried = create_in(&mut client, "acme", "t", "{}").await;
    rest.call(
        Method::PUT,
        &format!("/api/v1/jobs/{retried}/retries"),
        Some(json!({ "retries": 5 })),
    )
    .await
    .unwrap();
    let created = rest
        .call(
            Method::POST,
            "/api/v1/keys",
            Some(json!({ "name": "ci", "permissions": ["jobs"], "tenants": ["acme"] })),
        )
        .await
        .unwrap();
    let created_id = created["info"]["id"].as_str().unwrap().to_string();
    rest.call(Method::DELETE, &format!("/api/v1/keys/{created_id}"), None)
        .await
        .unwrap();

    let read = trail(&server, &operator, "?limit=9").await;
    let mut expected = vec![
        "trigger.created",
        "trigger.changed",
        "trigger.removed",
        "handler.deployed",
        "handler.removed",
        "job.cancelled",
        "job.retries_updated",
        "key.created",
        "key.revoked",
    ];
    expected.reverse();
    assert_eq!(actions(&read), expected);
    let entries = read["entries"].as_array().unwrap();
    for entry in entries {
        assert_eq!(entry["key_id"], id_of(&operator), "{entry}");
        assert_eq!(entry["tenants"], json!(["acme"]), "{entry}");
        assert!(entry["at"].as_str().unwrap().ends_with('Z'), "{entry}");
    }
    assert_eq!(entries[0]["target"], created_id.as_str());
    assert_eq!(entries[3]["target"], cancelled.as_str());
    assert_eq!(entries[5]["target"], handler_id.as_str());
    assert_eq!(entries[8]["target"], trigger_id.as_str());
}

#[tokio::test]
async fn a_tenant_reads_only_the_acts_on_its_own_tenants() {
    let server = TestServer::start().await;
    server.key(&["jobs"], &["acme"]).await;
    server.key(&["jobs"], &["globex"]).await;
    server.key(&["jobs"], &[]).await;
    let acme_auditor = server.key(&["audit"], &["acme"]).await;

    let everything = trail(&server, ADMIN_KEY, "?action=key.created").await;
    assert_eq!(everything["entries"].as_array().unwrap().len(), 4);
    let acme = trail(&server, &acme_auditor, "").await;
    let entries = acme["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{acme}");
    assert!(entries.iter().all(|e| e["tenants"] == json!(["acme"])));
    let refused = server
        .rest(&acme_auditor)
        .call(Method::GET, "/api/v1/audit?tenant_id=globex", None)
        .await
        .expect_err("another tenant's trail")
        .to_string();
    assert!(refused.starts_with("PERMISSION_DENIED"), "{refused}");
}

#[tokio::test]
async fn reading_the_audit_trail_needs_the_audit_permission() {
    let server = TestServer::start().await;
    let key = server.key(&["jobs", "keys"], &["acme"]).await;
    let refused = server
        .rest(&key)
        .call(Method::GET, "/api/v1/audit", None)
        .await
        .expect_err("no audit permission")
        .to_string();
    assert!(refused.contains("'audit'"), "{refused}");
}

#[tokio::test]
async fn the_audit_trail_pages_newest_first_and_survives_a_restart() {
    let mut server = TestServer::start().await;
    for _ in 0..5 {
        server.key(&["jobs"], &["acme"]).await;
    }
    server.restart().await;
    let first = trail(&server, ADMIN_KEY, "?limit=3").await;
    assert_eq!(actions(&first).len(), 3);
    let before = first["next_before"].as_u64().expect("more pages");
    let second = trail(&server, ADMIN_KEY, &format!("?limit=3&before={before}")).await;
    assert_eq!(actions(&second).len(), 2);
    let ids: Vec<u64> = [&first, &second]
        .iter()
        .flat_map(|page| page["entries"].as_array().unwrap().clone())
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
}

#[tokio::test]
async fn a_bad_audit_query_is_refused_with_its_reason() {
    let server = TestServer::start().await;
    let rest = server.rest(ADMIN_KEY);
    for (query, reason) in [
        ("?action=key.stolen", "unknown action"),
        ("?limit=100000", "limit"),
        ("?before=soon", "before"),
    ] {
        let error = rest
            .call(Method::GET, &format!("/api/v1/audit{query}"), None)
            .await
            .expect_err("refused")
            .to_string();
        assert!(error.starts_with("INVALID_ARGUMENT"), "{query}: {error}");
        assert!(error.contains(reason), "{query}: {error}");
    }
}
