//! Tenant secrets: write-only values, sealed at rest, managed within the caller's tenants.

use jobhost::client::ClientError;
use reqwest::Method;
use serde_json::Value;

use crate::harness::*;

const VALUE: &str = "sk_live_9f8e7d6c5b4a";

fn refusal_code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> String {
    match result {
        Err(ClientError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn set(server: &TestServer, key: &str, tenant: &str, name: &str, value: &str) -> Value {
    server
        .rest(key)
        .put_bytes(
            &format!("/api/v1/secrets/{name}?tenant_id={tenant}"),
            value.as_bytes().to_vec(),
        )
        .await
        .expect("secret set")
}

fn data_files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(data_files_containing(&path, needle));
        } else if std::fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_is_listed_by_name_and_update_time_never_by_value() {
    let server = TestServer::start().await;
    let key = server.key(&["secrets"], &["acme"]).await;
    let created = set(&server, &key, "acme", "STRIPE_KEY", VALUE).await;
    assert_eq!(created["created"], true);
    assert_eq!(created["secret"]["name"], "STRIPE_KEY");
    let rest = server.rest(&key);
    let list = rest
        .call(Method::GET, "/api/v1/secrets?tenant_id=acme", None)
        .await
        .unwrap();
    let one = rest
        .call(
            Method::GET,
            "/api/v1/secrets/STRIPE_KEY?tenant_id=acme",
            None,
        )
        .await
        .unwrap();
    assert_eq!(list["secrets"][0]["name"], "STRIPE_KEY");
    assert!(list["secrets"][0]["updated_at"].is_string());
    assert_eq!(one["tenant_id"], "acme");
    for answer in [&created, &list, &one] {
        assert!(!answer.to_string().contains(VALUE), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setting_a_secret_again_replaces_its_value() {
    let server = TestServer::start().await;
    let key = server.key(&["secrets"], &["acme"]).await;
    set(&server, &key, "acme", "TOKEN", "first-value").await;
    let again = set(&server, &key, "acme", "TOKEN", "second-value").await;
    assert_eq!(again["created"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_secret_is_not_found() {
    let server = TestServer::start().await;
    let key = server.key(&["secrets"], &["acme"]).await;
    set(&server, &key, "acme", "TOKEN", VALUE).await;
    let rest = server.rest(&key);
    rest.call(Method::DELETE, "/api/v1/secrets/TOKEN?tenant_id=acme", None)
        .await
        .unwrap();
    let code = refusal_code(
        rest.call(Method::GET, "/api/v1/secrets/TOKEN?tenant_id=acme", None)
            .await,
    );
    assert_eq!(code, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_need_the_secrets_permission() {
    let server = TestServer::start().await;
    let key = server.key(&["jobs", "handlers"], &["acme"]).await;
    let code = refusal_code(
        server
            .rest(&key)
            .put_bytes("/api/v1/secrets/TOKEN?tenant_id=acme", VALUE.into())
            .await,
    );
    assert_eq!(code, "PERMISSION_DENIED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_sees_no_secret_of_a_tenant_it_was_not_given() {
    let server = TestServer::start().await;
    let acme = server.key(&["secrets"], &["acme"]).await;
    let beta = server.key(&["secrets"], &["beta"]).await;
    set(&server, &beta, "beta", "TOKEN", VALUE).await;
    let rest = server.rest(&acme);
    for (method, path) in [
        (Method::GET, "/api/v1/secrets?tenant_id=beta"),
        (Method::GET, "/api/v1/secrets/TOKEN?tenant_id=beta"),
        (Method::DELETE, "/api/v1/secrets/TOKEN?tenant_id=beta"),
    ] {
        let code = refusal_code(rest.call(method, path, None).await);
        assert_eq!(code, "PERMISSION_DENIED", "{path}");
    }
    let own = rest
        .call(Method::GET, "/api/v1/secrets?tenant_id=acme", None)
        .await
        .unwrap();
    assert_eq!(own["secrets"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_secret_names_and_values_are_refused_with_reasons() {
    let server = TestServer::start().await;
    let key = server.key(&["secrets"], &["acme"]).await;
    let rest = server.rest(&key);
    for (name, value) in [
        ("bad%20name", b"value".to_vec()),
        ("EMPTY", Vec::new()),
        ("BINARY", vec![0xff, 0xfe, 0x00]),
        ("HUGE", vec![b'x'; 65 * 1024]),
    ] {
        let result = rest
            .put_bytes(&format!("/api/v1/secrets/{name}?tenant_id=acme"), value)
            .await;
        match result {
            Err(ClientError::Refused { code, message }) => {
                assert_eq!(code, "INVALID_ARGUMENT", "{name}: {message}");
                assert!(!message.is_empty());
            }
            other => panic!("{name}: expected a refusal, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_value_is_in_no_data_file_in_plain_text() {
    let mut server = TestServer::start().await;
    let key = server.key(&["secrets"], &["acme"]).await;
    set(&server, &key, "acme", "STRIPE_KEY", VALUE).await;
    server.stop().await;
    let found = data_files_containing(server.dir.path(), VALUE.as_bytes());
    assert!(found.is_empty(), "plain text in {found:?}");
    server.restart().await;
    let list = server
        .rest(&key)
        .call(Method::GET, "/api/v1/secrets?tenant_id=acme", None)
        .await
        .unwrap();
    assert_eq!(list["secrets"][0]["name"], "STRIPE_KEY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_acts_are_audited_by_name_without_the_value() {
    let server = TestServer::start().await;
    let key = server.key(&["secrets", "audit"], &["acme"]).await;
    set(&server, &key, "acme", "STRIPE_KEY", VALUE).await;
    server
        .rest(&key)
        .call(
            Method::DELETE,
            "/api/v1/secrets/STRIPE_KEY?tenant_id=acme",
            None,
        )
        .await
        .unwrap();
    let trail = server
        .rest(&key)
        .call(Method::GET, "/api/v1/audit?tenant_id=acme", None)
        .await
        .unwrap();
    let actions: Vec<_> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].clone(), e["target"].clone()))
        .collect();
    assert!(actions.contains(&("secret.set".into(), "STRIPE_KEY".into())));
    assert!(actions.contains(&("secret.removed".into(), "STRIPE_KEY".into())));
    assert!(!trail.to_string().contains(VALUE));
}
