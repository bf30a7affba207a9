//! API-key management stays inside the caller's tenants and powers: a key administrator of
//! one tenant can neither see, revoke nor out-grant anything beyond them.

use reqwest::Method;
use serde_json::{Value, json};
use tonic::Code;

use crate::harness::*;

/// Creates a key with `creator`; answers the key, or the refusal's code.
async fn create_key_as(
    server: &TestServer,
    creator: &str,
    permissions: &[&str],
    tenants: &[&str],
) -> Result<Value, String> {
    let body = json!({ "name": "k", "permissions": permissions, "tenants": tenants });
    server
        .rest(creator)
        .call(Method::POST, "/api/v1/keys", Some(body))
        .await
        .map_err(|error| error.to_string())
}

fn key_ids(listing: &Value) -> Vec<String> {
    listing["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["id"].as_str().unwrap().to_string())
        .collect()
}

fn id_of(key: &str) -> String {
    key.split('_').nth(1).unwrap().to_string()
}

#[tokio::test]
async fn a_tenant_key_administrator_lists_only_keys_within_its_tenants_and_powers() {
    let server = TestServer::start().await;
    let acme_admin = server.key(&["keys", "jobs"], &["acme"]).await;
    let acme_worker = server.key(&["jobs"], &["acme"]).await;
    let acme_superuser = server.key(&["*"], &["acme"]).await;
    let globex_worker = server.key(&["jobs"], &["globex"]).await;
    let both_tenants = server.key(&["jobs"], &["acme", "globex"]).await;
    let every_tenant = server.key(&["jobs"], &[]).await;

    let listing = server
        .rest(&acme_admin)
        .call(Method::GET, "/api/v1/keys", None)
        .await
        .unwrap();
    let mut listed = key_ids(&listing);
    listed.sort();
    let mut expected = vec![id_of(&acme_admin), id_of(&acme_worker)];
    expected.sort();
    assert_eq!(listed, expected);
    for hidden in [acme_superuser, globex_worker, both_tenants, every_tenant] {
        assert!(!listed.contains(&id_of(&hidden)));
    }
}

#[tokio::test]
async fn a_tenant_key_administrator_cannot_revoke_another_tenants_key() {
    let server = TestServer::start().await;
    let acme_admin = server.key(&["keys"], &["acme"]).await;
    let globex_worker = server.key(&["jobs"], &["globex"]).await;

    let revoked = server
        .rest(&acme_admin)
        .call(
            Method::DELETE,
            &format!("/api/v1/keys/{}", id_of(&globex_worker)),
            None,
        )
        .await;
    let error = revoked
        .expect_err("another tenant's key is out of reach")
        .to_string();
    assert!(error.starts_with("NOT_FOUND"), "{error}");

    let mut client = server.client().await;
    let mut request = create_request("t", "{}");
    request.tenant_id = "globex".into();
    client
        .create_job(with_key(request, &globex_worker))
        .await
        .expect("the globex key still works");
}

#[tokio::test]
async fn a_key_administrator_cannot_revoke_a_key_more_powerful_than_itself() {
    let server = TestServer::start().await;
    let acme_admin = server.key(&["keys"], &["acme"]).await;
    let acme_superuser = server.key(&["*"], &["acme"]).await;
    let every_tenant = server.key(&["keys"], &[]).await;
    for target in [&acme_superuser, &every_tenant] {
        let error = server
            .rest(&acme_admin)
            .call(
                Method::DELETE,
                &format!("/api/v1/keys/{}", id_of(target)),
                None,
            )
            .await
            .expect_err("a stronger key is out of reach")
            .to_string();
        assert!(error.starts_with("NOT_FOUND"), "{error}");
    }
    server
        .rest(&acme_superuser)
        .call(Method::GET, "/api/v1/whoami", None)
        .await
        .expect("the stronger key still works");
}

#[tokio::test]
async fn a_tenant_key_administrator_revokes_keys_of_its_own_tenant() {
    let server = TestServer::start().await;
    let acme_admin = server.key(&["keys", "jobs"], &["acme"]).await;
    let created = create_key_as(&server, &acme_admin, &["jobs"], &["acme"])
        .await
        .unwrap();
    let worker = created["key"].as_str().unwrap().to_string();
    server
        .rest(&acme_admin)
        .call(
            Method::DELETE,
            &format!("/api/v1/keys/{}", id_of(&worker)),
            None,
        )
        .await
        .expect("its own tenant's key is revoked");
    let mut client = server.client().await;
    let result = client
        .create_job(with_key(create_request("t", "{}"), &worker))
        .await;
    assert_code(result, Code::Unauthenticated, "unknown");
}

#[tokio::test]
async fn a_key_never_grants_a_tenant_or_permission_its_creator_lacks() {
    let server = TestServer::start().await;
    let acme_admin = server.key(&["keys", "jobs"], &["acme"]).await;
    let cases: [(&[&str], &[&str], &str); 4] = [
        (&["jobs"], &["globex"], "PERMISSION_DENIED"),
        (&["jobs"], &["acme", "globex"], "PERMISSION_DENIED"),
        (&["jobs"], &[], "INVALID_ARGUMENT"),
        (&["handlers"], &["acme"], "PERMISSION_DENIED"),
    ];
    for (permissions, tenants, code) in cases {
        let error = create_key_as(&server, &acme_admin, permissions, tenants)
            .await
            .expect_err("refused");
        assert!(
            error.starts_with(code),
            "{permissions:?} {tenants:?}: {error}"
        );
    }
    let error = create_key_as(&server, &acme_admin, &["*"], &["acme"])
        .await
        .expect_err("refused");
    assert!(error.starts_with("PERMISSION_DENIED"), "{error}");
}

#[tokio::test]
async fn metrics_are_refused_to_a_key_of_some_tenants_only() {
    let server = TestServer::start().await;
    let acme = server.key(&["*"], &["acme"]).await;
    let error = server
        .rest(&acme)
        .call(Method::GET, "/metrics", None)
        .await
        .expect_err("refused")
        .to_string();
    assert!(error.contains("every tenant"), "{error}");
}
