//! API keys, permissions and tenant isolation.

use tonic::{Code, Request};

use crate::harness::*;

#[tokio::test]
async fn a_call_without_a_key_is_unauthenticated() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let result = client
        .create_job(Request::new(create_request("t", "{}")))
        .await;
    assert_code(result, Code::Unauthenticated, "x-api-key");
}

#[tokio::test]
async fn a_call_with_an_unknown_key_is_unauthenticated() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let result = client
        .create_job(with_key(create_request("t", "{}"), "jh_0000_nope"))
        .await;
    assert_code(result, Code::Unauthenticated, "unknown");
    let result = activate_with(&mut client, with_key(activate_request("t", "w"), "wrong")).await;
    assert_code(result, Code::Unauthenticated, "unknown");
}

#[tokio::test]
async fn a_key_without_the_jobs_permission_is_denied() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = server.key(&["handlers"], &[]).await;
    let result = client
        .create_job(with_key(create_request("t", "{}"), &key))
        .await;
    assert_code(result, Code::PermissionDenied, "jobs");
}

#[tokio::test]
async fn a_key_with_the_jobs_permission_works_and_revocation_is_immediate() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = server.key(&["jobs"], &[]).await;
    client
        .create_job(with_key(create_request("t", "{}"), &key))
        .await
        .expect("allowed");
    let revoker = jobhost::client::RestClient::new(&server.http_url(), Some(ADMIN_KEY.into()));
    revoker
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/keys/{key}"),
            None,
        )
        .await
        .expect("revoked");
    let result = client
        .create_job(with_key(create_request("t", "{}"), &key))
        .await;
    assert_code(result, Code::Unauthenticated, "unknown");
}

#[tokio::test]
async fn keys_are_stored_hashed_and_survive_a_restart() {
    let mut server = TestServer::start().await;
    let key = server.key(&["jobs"], &["acme"]).await;
    server.restart().await;
    let mut client = server.client().await;
    let mut request = create_request("t", "{}");
    request.tenant_id = "acme".into();
    client
        .create_job(with_key(request, &key))
        .await
        .expect("key still valid");
    let secret = key.rsplit('_').next().unwrap().to_string();
    server.stop().await;
    for entry in walk(server.dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the key's secret",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Creates one job in each of two tenants; returns (acme key, acme job, globex job).
async fn two_tenants(server: &TestServer, client: &mut Client) -> (String, String, String) {
    let mut keys = Vec::new();
    for tenant in ["acme", "globex"] {
        let mut request = create_request("shared-type", "{}");
        request.tenant_id = tenant.into();
        keys.push(
            client
                .create_job(admin(request))
                .await
                .unwrap()
                .into_inner()
                .job_key,
        );
    }
    let acme_key = server.key(&["jobs"], &["acme"]).await;
    (acme_key, keys.remove(0), keys.remove(0))
}

#[tokio::test]
async fn a_tenant_activates_only_its_own_jobs() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (acme, acme_job, _) = two_tenants(&server, &mut client).await;
    let mut request = activate_request("shared-type", "w");
    request.max_jobs_to_activate = 10;
    let jobs = activate_with(&mut client, with_key(request, &acme))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job_key, format!("{acme_job}-1"));
    assert_eq!(jobs[0].tenant_id, "acme");
}

#[tokio::test]
async fn activating_from_a_tenant_not_granted_is_denied() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (acme, _, _) = two_tenants(&server, &mut client).await;
    let mut request = activate_request("shared-type", "w");
    request.tenant_ids = "acme,globex".into();
    let result = activate_with(&mut client, with_key(request, &acme)).await;
    assert_code(result, Code::PermissionDenied, "globex");
}

#[tokio::test]
async fn another_tenants_job_is_not_found_for_every_operation() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (acme, _, globex_job) = two_tenants(&server, &mut client).await;
    let get = client
        .get_job(with_key(
            GetJobRequest {
                job_key: globex_job.clone(),
            },
            &acme,
        ))
        .await;
    assert_code(get, Code::NotFound, "not found");
    let cancel = client
        .cancel_job(with_key(
            CancelJobRequest {
                job_key: globex_job.clone(),
            },
            &acme,
        ))
        .await;
    assert_code(cancel, Code::NotFound, "not found");
    let complete = CompleteJobRequest {
        job_key: globex_job.clone(),
        variables: Default::default(),
    };
    assert_code(
        client.complete_job(with_key(complete, &acme)).await,
        Code::NotFound,
        "not found",
    );
    let retries = UpdateJobRetriesRequest {
        job_key: globex_job.clone(),
        retries: 5,
    };
    assert_code(
        client.update_job_retries(with_key(retries, &acme)).await,
        Code::NotFound,
        "not found",
    );
    assert_eq!(
        crate::harness::get(&mut client, &globex_job).await.state,
        "activatable"
    );
}

#[tokio::test]
async fn a_tenant_lists_only_its_own_jobs() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (acme, acme_job, _) = two_tenants(&server, &mut client).await;
    let response = client
        .list_jobs(with_key(ListJobsRequest::default(), &acme))
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<_> = response
        .jobs
        .iter()
        .map(|job| job.job_key.clone())
        .collect();
    assert_eq!(keys, vec![acme_job]);
    let other = ListJobsRequest {
        tenant_id: "globex".into(),
        ..Default::default()
    };
    assert_code(
        client.list_jobs(with_key(other, &acme)).await,
        Code::PermissionDenied,
        "globex",
    );
}

#[tokio::test]
async fn a_tenant_cannot_create_jobs_in_another_tenant() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let acme = server.key(&["jobs"], &["acme"]).await;
    let mut request = create_request("t", "{}");
    request.tenant_id = "globex".into();
    assert_code(
        client.create_job(with_key(request, &acme)).await,
        Code::PermissionDenied,
        "globex",
    );
}
