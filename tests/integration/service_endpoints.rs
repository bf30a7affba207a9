//! What the server offers besides the job RPCs: health, reflection, REST, shutdown.

use std::process::Command;
use std::time::Duration;

use crate::harness::*;

#[tokio::test]
async fn the_grpc_health_service_reports_serving() {
    let server = TestServer::start().await;
    let channel = server.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let request = tonic_health::pb::HealthCheckRequest {
        service: "atom.jobs.v1.JobsService".into(),
    };
    let response = health.check(request).await.unwrap().into_inner();
    assert_eq!(
        response.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[tokio::test]
async fn server_reflection_lists_the_jobs_service() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = TestServer::start().await;
    let channel = server.channel().await;
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"atom.jobs.v1.JobsService"), "{names:?}");
}

#[tokio::test]
async fn healthz_answers_once_the_server_is_ready() {
    let server = TestServer::start().await;
    let response = reqwest::get(format!("{}/healthz", server.http_url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn rest_errors_use_the_error_envelope() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let response = http
        .get(format!("{}/api/v1/jobs?page_size=500", server.http_url()))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["code"], "INVALID_ARGUMENT");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("page_size")
    );

    let response = http
        .get(format!("{}/api/v1/jobs", server.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn a_job_created_over_rest_is_read_over_grpc() {
    let server = TestServer::start().await;
    let rest = jobhost::client::RestClient::new(&server.http_url(), Some(ADMIN_KEY.into()));
    let body = serde_json::json!({"type": "rest", "variables": {"x": 1}, "tenant_id": "acme", "retries": 5});
    let data = rest
        .call(reqwest::Method::POST, "/api/v1/jobs", Some(body))
        .await
        .unwrap();
    let key = data["job_key"].as_str().unwrap().to_string();
    let mut client = server.client().await;
    let job = get(&mut client, &key).await;
    assert_eq!(
        (job.tenant_id.as_str(), job.retries, job.variables.as_str()),
        ("acme", 5, r#"{"x":1}"#)
    );
}

#[tokio::test]
async fn sigterm_ends_waiting_polls_flushes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = ServerProcess::start(dir.path());
    let mut client = connect(&process.grpc_url).await;
    let key = create(&mut client, "t", "{}").await;
    let mut request = activate_request("idle", "w");
    request.request_timeout = Some(60_000);
    let mut poller = client.clone();
    let waiting = tokio::spawn(async move { activate_with(&mut poller, admin(request)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = process.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = process.child.wait().unwrap();
        (status, process)
    });
    let (status, _process) = tokio::time::timeout(Duration::from_secs(20), status)
        .await
        .expect("exits promptly")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let polled = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("poll ended")
        .unwrap();
    assert!(polled.map(|jobs| jobs.is_empty()).unwrap_or(true));

    let process = ServerProcess::start(dir.path());
    let mut client = connect(&process.grpc_url).await;
    assert_eq!(get(&mut client, &key).await.state, "activatable");
}

#[test]
fn serve_refuses_a_store_cache_of_zero() {
    let stderr = serve_refusal(&["--store-cache-mb", "0"]);
    assert!(stderr.contains("--store-cache-mb"), "{stderr}");
}
