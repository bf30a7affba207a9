//! Handlers' outbound HTTP: only to hosts their grants and the server's ceiling allow, only to
//! checked addresses, bounded in count, bytes and time, and recorded with the attempt.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use jobhost::client::ClientError;
use jobhost::grants::{HttpRule, ServerHttpPolicy};
use jobhost::runtime::HttpLimits;
use jobhost::service::capabilities::HttpSettings;
use serde_json::{Value, json};

use crate::harness::*;

/// A loopback HTTP server standing in for the APIs handlers call.
struct Endpoint {
    addr: SocketAddr,
    /// The Authorization header of each request to `/seen`.
    authorizations: Arc<Mutex<Vec<String>>>,
}

impl Endpoint {
    async fn start() -> Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let seen = authorizations.clone();
        let app = Router::new()
            .route("/hello", get(|| async { "hello from the endpoint" }))
            .route(
                "/seen",
                get(move |headers: HeaderMap| {
                    let seen = seen.clone();
                    async move {
                        let value = headers
                            .get(header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        seen.lock().unwrap().push(value);
                        "seen"
                    }
                }),
            )
            .route(
                "/elsewhere",
                get(move || async move {
                    // Same server, another name: a host the handler was not granted.
                    let to = format!("http://localhost:{}/hello", addr.port());
                    (StatusCode::FOUND, [(header::LOCATION, to)])
                }),
            )
            .route(
                "/hang",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    "never"
                }),
            )
            .route(
                "/big",
                get(|| async { vec![b'x'; 256 * 1024].into_response() }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Endpoint {
            addr,
            authorizations,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.addr.port())
    }

    /// The grant of this endpoint, URL-encoded for a deploy query.
    fn grant(&self) -> String {
        format!("allow_http=http%3A%2F%2F127.0.0.1%3A{}", self.addr.port())
    }
}

/// A server whose ceiling names the endpoint's loopback host, with small limits.
async fn server_allowing(endpoint: &Endpoint) -> TestServer {
    let rule = HttpRule::parse(&endpoint.url("")).unwrap();
    TestServer::start_with(move |config| {
        config.http = HttpSettings {
            policy: Arc::new(ServerHttpPolicy {
                rules: vec![rule.clone()],
            }),
            limits: HttpLimits {
                max_requests: 3,
                max_response_bytes: 64 * 1024,
                ..HttpLimits::default()
            },
            tls: None,
        };
    })
    .await
}

/// Runs one job of `job_type` (one attempt only) to its end.
async fn run_job(server: &TestServer, job_type: &str, variables: Value) -> Value {
    let body = json!({ "type": job_type, "variables": variables, "retries": 1 });
    run_rest_job(&server.rest(ADMIN_KEY), body).await
}

fn output(job: &Value) -> String {
    job["attempts"][0]["output"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

async fn deploy(server: &TestServer, query: &str) {
    server
        .deploy(ADMIN_KEY, "calls-http", &format!("type=call&{query}"))
        .await
        .expect("deployed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_request_reaches_its_host_and_is_recorded_without_its_query() {
    let endpoint = Endpoint::start().await;
    let server = server_allowing(&endpoint).await;
    deploy(&server, &endpoint.grant()).await;
    let job = run_job(
        &server,
        "call",
        json!({ "url": endpoint.url("/hello?token=abc") }),
    )
    .await;
    assert_eq!(job["state"], "completed", "{job}");
    let result = &job["execution_summary"]["result_variables"];
    assert_eq!(result["status"], 200);
    assert_eq!(result["body"], "hello from the endpoint");
    let output = output(&job);
    let line = format!("[http] GET {} -> 200, 23 bytes", endpoint.url("/hello"));
    assert!(output.contains(&line), "{output}");
    assert!(!output.contains("token=abc"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_a_host_not_granted_is_refused_with_the_url_and_rule_logged() {
    let endpoint = Endpoint::start().await;
    let server = server_allowing(&endpoint).await;
    deploy(&server, &endpoint.grant()).await;
    let other = format!("http://127.0.0.1:{}/hello", endpoint.addr.port() ^ 1);
    let job = run_job(&server, "call", json!({ "url": other })).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(job.to_string().contains("HttpRequestDenied"), "{job}");
    let output = output(&job);
    assert!(
        output.contains(&format!("[http] refused GET {other}")),
        "{output}"
    );
    assert!(output.contains("no --allow-http rule"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_is_refused_by_default_even_when_granted() {
    let endpoint = Endpoint::start().await;
    let server = TestServer::start().await;
    deploy(&server, &endpoint.grant()).await;
    let job = run_job(&server, "call", json!({ "url": endpoint.url("/hello") })).await;
    assert_eq!(job["state"], "failed", "{job}");
    let output = output(&job);
    assert!(output.contains("resolves to 127.0.0.1"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_host_not_granted_is_refused() {
    let endpoint = Endpoint::start().await;
    let server = server_allowing(&endpoint).await;
    deploy(&server, &endpoint.grant()).await;
    let job = run_job(
        &server,
        "call",
        json!({ "url": endpoint.url("/elsewhere") }),
    )
    .await;
    assert_eq!(job["state"], "failed", "{job}");
    let output = output(&job);
    assert!(output.contains("-> 302"), "{output}");
    let refused = format!(
        "[http] refused GET http://localhost:{}/hello",
        endpoint.addr.port()
    );
    assert!(output.contains(&refused), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_endpoint_is_cut_by_the_attempts_deadline() {
    let endpoint = Endpoint::start().await;
    let server = server_allowing(&endpoint).await;
    deploy(&server, &format!("{}&timeout_ms=1000", endpoint.grant())).await;
    let job = run_job(&server, "call", json!({ "url": endpoint.url("/hang") })).await;
    assert_eq!(job["state"], "failed", "{job}");
    let text = job.to_string();
    assert!(
        text.contains("HttpResponseTimeout") || text.contains("deadline of 1000 ms exceeded"),
        "{job}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_over_the_byte_limit_is_cut() {
    let endpoint = Endpoint::start().await;
    let server = server_allowing(&endpoint).await;
    deploy(&server, &endpoint.grant()).await;
    let job = run_job(&server, "call", json!({ "url": endpoint.url("/big") })).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(job.to_string().contains("HttpResponseBodySize"), "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_attempts_limit_are_refused() {
    let endpoint = Endpoint::start().await;
    let server = server_allowing(&endpoint).await;
    deploy(&server, &endpoint.grant()).await;
    let job = run_job(
        &server,
        "call",
        json!({ "url": endpoint.url("/hello"), "count": 4 }),
    )
    .await;
    assert_eq!(job["state"], "failed", "{job}");
    let output = output(&job);
    assert_eq!(output.matches("-> 200").count(), 3, "{output}");
    assert!(output.contains("already sent its 3 requests"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_header_carries_a_secret_the_guest_never_sees() {
    let endpoint = Endpoint::start().await;
    let server = server_allowing(&endpoint).await;
    server
        .rest(ADMIN_KEY)
        .put_bytes("/api/v1/secrets/API_TOKEN", b"tok_injected_1234".to_vec())
        .await
        .unwrap();
    // The handler is granted the secret only for the header; it reads no config.
    let injection = "127.0.0.1%3DAuthorization%3A%20Bearer%20%7B%7Bsecret%3AAPI_TOKEN%7D%7D";
    deploy(
        &server,
        &format!(
            "{}&secret=API_TOKEN&inject_header={injection}",
            endpoint.grant()
        ),
    )
    .await;
    let job = run_job(&server, "call", json!({ "url": endpoint.url("/seen") })).await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(
        *endpoint.authorizations.lock().unwrap(),
        vec!["Bearer tok_injected_1234".to_string()]
    );
    assert!(!job.to_string().contains("tok_injected_1234"), "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_requests_are_counted_in_metrics_by_status() {
    let endpoint = Endpoint::start().await;
    let server = server_allowing(&endpoint).await;
    deploy(&server, &endpoint.grant()).await;
    run_job(&server, "call", json!({ "url": endpoint.url("/hello") })).await;
    run_job(&server, "call", json!({ "url": "http://localhost:1/x" })).await;
    let text = server
        .rest(ADMIN_KEY)
        .download("/metrics")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for status in ["200", "refused"] {
        let line = format!(
            "jobhost_handler_http_requests_total{{job_type=\"call\",tenant=\"default\",status=\"{status}\"}} 1"
        );
        assert!(text.contains(&line), "{line} not in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_calling_http_without_a_grant_is_refused_at_upload() {
    let server = TestServer::start().await;
    match server.deploy(ADMIN_KEY, "calls-http", "type=call").await {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, "INVALID_ARGUMENT");
            assert!(message.contains("--allow-http"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
