//! The network edge: oversized requests are refused from their headers, before their bodies
//! are read, and each key is held to its request rate.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::harness::*;

/// Sends a request head announcing `length` body bytes, then only a few of them; answers the
/// status line and body of the reply.
async fn announce_body(server: &TestServer, path: &str, length: u64) -> String {
    let addr = server.running().http_addr;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: {ADMIN_KEY}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\nabc"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    let mut buffer = [0u8; 4096];
    // The reply must come while the client still owes almost all of the body.
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let n = stream.read(&mut buffer).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buffer[..n]);
            if String::from_utf8_lossy(&reply).contains("\"request_id\"") {
                break;
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "no answer while the announced body was unsent"
    );
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test]
async fn an_upload_announcing_an_oversized_body_is_refused_at_once_with_413() {
    let server = TestServer::start().await;
    let reply = announce_body(&server, "/api/v1/handlers?type=t", 209_715_200).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("at most 52428800"), "{reply}");
}

#[tokio::test]
async fn a_json_request_announcing_an_oversized_body_is_refused_at_once_with_413() {
    let server = TestServer::start().await;
    let reply = announce_body(&server, "/api/v1/jobs", 64 * 1024 * 1024).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("PAYLOAD_TOO_LARGE"), "{reply}");
}

/// Creates a key of tenant acme limited to one request a second after a burst of three.
async fn slow_key(server: &TestServer) -> String {
    let body = json!({
        "permissions": ["jobs"], "tenants": ["acme"],
        "rate_limit": { "per_second": 1, "burst": 3 },
    });
    let created = server
        .rest(ADMIN_KEY)
        .call(Method::POST, "/api/v1/keys", Some(body))
        .await
        .unwrap();
    assert_eq!(
        created["info"]["rate_limit"],
        json!({ "per_second": 1, "burst": 3 })
    );
    created["key"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_key_over_its_rate_gets_resource_exhausted_with_retry_after_over_grpc() {
    let server = TestServer::start().await;
    let key = slow_key(&server).await;
    let mut client = server.client().await;
    let mut refusals = Vec::new();
    for _ in 0..10 {
        let mut request = create_request("t", "{}");
        request.tenant_id = "acme".into();
        if let Err(status) = client.create_job(with_key(request, &key)).await {
            refusals.push(status);
        }
    }
    let refused = refusals
        .first()
        .expect("ten requests at once exceed the burst");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("rate limit"), "{refused:?}");
    assert!(
        refused.metadata().get("retry-after").is_some(),
        "{refused:?}"
    );
    assert!(refusals.len() <= 7, "the burst of three was admitted");
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_retry_after_over_rest() {
    let server = TestServer::start().await;
    let key = slow_key(&server).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/whoami", server.http_url());
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let response = http
            .get(&url)
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            let retry_after = response.headers().get("retry-after").cloned();
            assert_eq!(retry_after.expect("retry-after").to_str().unwrap(), "1");
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn the_server_default_rate_limits_keys_without_their_own_but_not_the_admin_key() {
    let server = TestServer::start_with(|config| {
        config.default_rate_limit = Some(jobhost::rate_limit::RateLimit {
            per_second: 1,
            burst: 2,
        })
    })
    .await;
    let key = server.key(&["jobs"], &["acme"]).await;
    let whoami = |key: String| {
        let rest = server.rest(&key);
        async move { rest.call(Method::GET, "/api/v1/whoami", None).await }
    };
    let mut refused = 0;
    for _ in 0..10 {
        if whoami(key.clone()).await.is_err() {
            refused += 1;
        }
    }
    assert!(refused > 0, "the default limit applies");
    for _ in 0..20 {
        whoami(ADMIN_KEY.to_string())
            .await
            .expect("the admin key is never limited");
    }
}

#[tokio::test]
async fn a_limited_key_cannot_create_a_key_faster_than_itself() {
    let server = TestServer::start().await;
    let body = json!({
        "permissions": ["keys", "jobs"], "tenants": ["acme"],
        "rate_limit": { "per_second": 100, "burst": 100 },
    });
    let created = server
        .rest(ADMIN_KEY)
        .call(Method::POST, "/api/v1/keys", Some(body))
        .await
        .unwrap();
    let limited = created["key"].as_str().unwrap().to_string();
    let faster = json!({
        "permissions": ["jobs"], "tenants": ["acme"],
        "rate_limit": { "per_second": 1000, "burst": 100 },
    });
    let error = server
        .rest(&limited)
        .call(Method::POST, "/api/v1/keys", Some(faster))
        .await
        .expect_err("faster than its creator")
        .to_string();
    assert!(error.starts_with("INVALID_ARGUMENT"), "{error}");
    let unnamed = json!({ "permissions": ["jobs"], "tenants": ["acme"] });
    let child = server
        .rest(&limited)
        .call(Method::POST, "/api/v1/keys", Some(unnamed))
        .await
        .unwrap();
    assert_eq!(
        child["info"]["rate_limit"],
        json!({ "per_second": 100, "burst": 100 }),
        "a limited creator's key inherits its limit"
    );
}
