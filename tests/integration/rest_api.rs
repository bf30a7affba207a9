//! The REST API in the shape of its reference: job listings with every filter, sort, page and
//! summary, and job statistics.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

async fn list(server: &TestServer, key: &str, query: &str) -> Value {
    server
        .rest(key)
        .call(Method::GET, &format!("/api/v1/jobs?{query}"), None)
        .await
        .unwrap_or_else(|e| panic!("listing {query}: {e}"))
}

async fn create_rest(server: &TestServer, body: Value) -> String {
    let data = server
        .rest(ADMIN_KEY)
        .call(Method::POST, "/api/v1/jobs", Some(body))
        .await
        .expect("job created");
    data["job_key"].as_str().unwrap().to_string()
}

fn keys(listing: &Value) -> Vec<String> {
    listing["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["job_key"].as_str().unwrap().to_string())
        .collect()
}

/// Three `mail` jobs (one completed, one failed, one activatable) and one `sms` job in tenant
/// `beta`; returns the keys in creation order.
async fn seed_jobs(server: &TestServer) -> Vec<String> {
    let mut client = server.client().await;
    let first = create_rest(
        server,
        json!({"type": "mail", "variables": {"n": 1}, "process_instance_id": "p-1", "element_id": "send"}),
    )
    .await;
    let second = create_rest(
        server,
        json!({"type": "mail", "process_instance_id": "p-2"}),
    )
    .await;
    let third = create_rest(server, json!({"type": "mail"})).await;
    let fourth = create_rest(server, json!({"type": "sms", "tenant_id": "beta"})).await;
    let leased = activate(&mut client, "mail", "mailer-1", 2, 0).await;
    complete(&mut client, &leased[0].job_key).await.unwrap();
    let fail = FailJobRequest {
        job_key: leased[1].job_key.clone(),
        retries: 0,
        error_message: "smtp down".into(),
        backoff_timeout: 0,
    };
    client.fail_job(admin(fail)).await.unwrap();
    vec![first, second, third, fourth]
}

#[tokio::test]
async fn a_listing_has_the_reference_shape_with_summary_and_filters_applied() {
    let server = TestServer::start().await;
    let keys_created = seed_jobs(&server).await;
    let listing = list(&server, ADMIN_KEY, "page_size=2").await;
    assert_eq!(
        listing["pagination"],
        json!({"page": 1, "page_size": 2, "total_count": 4, "total_pages": 2, "has_next": true, "has_prev": false})
    );
    let summary = &listing["summary"];
    assert_eq!(summary["total_jobs"], 4);
    assert_eq!(summary["active_jobs"], 2);
    assert_eq!(summary["completed_jobs"], 1);
    assert_eq!(summary["failed_jobs"], 1);
    assert_eq!(summary["cancelled_jobs"], 0);
    assert_eq!(summary["success_rate_percent"], 50.0);
    assert!(summary["avg_duration_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(listing["filters_applied"]["period"], "all");
    assert!(listing["filters_applied"]["status"].is_null());
    assert_eq!(
        keys(&listing),
        vec![keys_created[3].clone(), keys_created[2].clone()]
    );

    let completed = list(&server, ADMIN_KEY, "state=completed").await;
    let job = &completed["jobs"][0];
    assert_eq!(job["status"], "COMPLETED");
    assert_eq!(job["worker_id"], "mailer-1");
    assert_eq!(job["process_instance_id"], "p-1");
    assert!(job["execution_summary"]["total_duration_ms"].is_number());
    assert_eq!(job["execution_summary"]["retries_used"], 0);
    assert!(job["completed_at"].is_string());

    let failed = list(&server, ADMIN_KEY, "state=failed").await;
    let job = &failed["jobs"][0];
    assert_eq!(job["status"], "FAILED");
    assert_eq!(job["error_message"], "smtp down");
    assert_eq!(job["failure_history"][0]["error"], "smtp down");
    assert_eq!(job["failure_history"][0]["attempt"], 1);
    assert!(job["failed_at"].is_string());
    assert!(job["incident_id"].is_string());
    assert_eq!(failed["filters_applied"]["status"], "failed");
}

/// Asserts that a listing selects exactly the expected jobs, newest first.
async fn only(server: &TestServer, query: &str, expected: Vec<&String>) {
    let listing = list(server, ADMIN_KEY, query).await;
    let expected: Vec<String> = expected.into_iter().cloned().collect();
    assert_eq!(keys(&listing), expected, "{query}");
    assert_eq!(
        listing["pagination"]["total_count"],
        expected.len(),
        "{query}"
    );
}

#[tokio::test]
async fn a_listing_filters_by_every_reference_parameter() {
    let server = TestServer::start().await;
    let created = seed_jobs(&server).await;
    only(&server, "type=sms", vec![&created[3]]).await;
    only(&server, "tenant_id=beta", vec![&created[3]]).await;
    only(&server, "state=activatable&type=mail", vec![&created[2]]).await;
    only(&server, "status=failed", vec![&created[1]]).await;
    only(
        &server,
        "worker=mailer-1&sort_order=ASC",
        vec![&created[0], &created[1]],
    )
    .await;
    only(&server, "process_instance_id=p-1", vec![&created[0]]).await;
    only(&server, "element_id=send", vec![&created[0]]).await;
    only(&server, "process_instance_id=p-2&element_id=send", vec![]).await;
    only(&server, "period=1h&type=sms", vec![&created[3]]).await;
    only(&server, "created_before=2001-01-01T00:00:00Z", vec![]).await;
    only(
        &server,
        "period=1h&created_before=2001-01-01T00:00:00Z",
        vec![],
    )
    .await;
    only(
        &server,
        "created_after=2001-01-01T00:00:00Z&type=sms",
        vec![&created[3]],
    )
    .await;
}

#[tokio::test]
async fn a_listing_sorts_by_activation_time_and_deadline() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let first = create(&mut client, "sorted", "{}").await;
    let second = create(&mut client, "sorted", "{}").await;
    // The second job is leased first, with the later deadline.
    let mut request = activate_request("sorted", "w");
    request.max_jobs_to_activate = 1;
    request.timeout = 60_000;
    let leased_second = activate_with(&mut client, admin(request)).await.unwrap();
    assert_eq!(leased_second[0].job_key.split('-').next().unwrap(), first);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    activate(&mut client, "sorted", "w", 1, 30_000).await;
    let by_activation = list(
        &server,
        ADMIN_KEY,
        "type=sorted&sort_by=activated_at&sort_order=ASC",
    )
    .await;
    assert_eq!(keys(&by_activation), vec![first.clone(), second.clone()]);
    let by_deadline = list(
        &server,
        ADMIN_KEY,
        "type=sorted&sort_by=deadline&sort_order=ASC",
    )
    .await;
    assert_eq!(keys(&by_deadline), vec![second.clone(), first.clone()]);
    let by_deadline_desc = list(&server, ADMIN_KEY, "type=sorted&sort_by=deadline").await;
    assert_eq!(keys(&by_deadline_desc), vec![first, second]);
}

#[tokio::test]
async fn bad_listing_parameters_are_refused_with_400_and_a_message() {
    let server = TestServer::start().await;
    let cases = [
        ("page=0", "page must be at least 1"),
        ("page=x", "page must be a whole number"),
        ("page_size=101", "page_size must be between 1 and 100"),
        ("state=sleeping", "unknown state 'sleeping'"),
        ("period=2h", "unknown period '2h'"),
        ("sort_by=name", "unknown sort_by 'name'"),
        ("sort_order=UP", "unknown sort_order 'UP'"),
        (
            "created_after=yesterday",
            "created_after must be an RFC 3339 time",
        ),
        ("tenant_id=bad%20tenant", "invalid tenant_id"),
    ];
    for (query, message) in cases {
        let response = reqwest::Client::new()
            .get(format!("{}/api/v1/jobs?{query}", server.http_url()))
            .header("x-api-key", ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "INVALID_ARGUMENT");
        let got = body["error"]["message"].as_str().unwrap();
        assert!(got.starts_with(message), "{query}: {got}");
    }
}

#[tokio::test]
async fn stats_count_jobs_by_state_type_and_tenant_with_the_last_hour_per_minute() {
    let server = TestServer::start().await;
    seed_jobs(&server).await;
    let stats = server
        .rest(ADMIN_KEY)
        .call(Method::GET, "/api/v1/jobs/stats", None)
        .await
        .unwrap();
    assert_eq!(stats["total_jobs"], 4);
    assert_eq!(
        stats["by_state"],
        json!({"total": 4, "pending": 0, "activatable": 2, "activated": 0, "completed": 1, "failed": 1, "cancelled": 0})
    );
    assert_eq!(stats["by_type"]["mail"]["total"], 3);
    assert_eq!(stats["by_type"]["sms"]["activatable"], 1);
    assert_eq!(stats["by_tenant"]["default"]["total"], 3);
    assert_eq!(stats["by_tenant"]["beta"]["total"], 1);
    let minutes = stats["per_minute"].as_array().unwrap();
    assert_eq!(minutes.len(), 60);
    let last = minutes.last().unwrap();
    assert_eq!(
        (&last["completed"], &last["failed"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(stats["duration"]["samples"], 1);
    assert!(stats["duration"]["p95_ms"].as_f64().unwrap() >= 0.0);
}

#[tokio::test]
async fn listings_and_stats_stay_within_the_keys_tenants() {
    let server = TestServer::start().await;
    seed_jobs(&server).await;
    let beta = server.key(&["jobs"], &["beta"]).await;
    let listing = list(&server, &beta, "").await;
    assert_eq!(listing["pagination"]["total_count"], 1);
    assert_eq!(listing["jobs"][0]["tenant_id"], "beta");
    let stats = server
        .rest(&beta)
        .call(Method::GET, "/api/v1/jobs/stats", None)
        .await
        .unwrap();
    assert_eq!(stats["total_jobs"], 1);
    assert!(stats["by_tenant"].get("default").is_none());
    let denied = server
        .rest(&beta)
        .call(Method::GET, "/api/v1/jobs/stats?tenant_id=default", None)
        .await;
    assert!(matches!(
        denied,
        Err(jobhost::client::ClientError::Refused { ref code, .. }) if code == "PERMISSION_DENIED"
    ));
}

/// Makes every described object refuse properties it does not describe, so a validation also
/// catches answers that carry more than the document says.
fn close_objects(schema: &mut Value) {
    match schema {
        Value::Object(fields) => {
            if fields.contains_key("properties") && !fields.contains_key("additionalProperties") {
                fields.insert("additionalProperties".into(), Value::Bool(false));
            }
            fields.values_mut().for_each(close_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// Checks a real answer against the schema the document gives for it.
fn assert_matches(document: &Value, path: &str, method: &str, status: &str, answer: &Value) {
    let errors = schema_errors(document, path, method, status, answer);
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:#?}\n{answer:#}"
    );
}

/// How an answer departs from the schema the document gives for it.
fn schema_errors(
    document: &Value,
    path: &str,
    method: &str,
    status: &str,
    answer: &Value,
) -> Vec<String> {
    let pointer = format!(
        "/paths/{}/{method}/responses/{status}/content/application~1json/schema",
        path.replace('~', "~0").replace('/', "~1")
    );
    assert!(
        document.pointer(&pointer).is_some(),
        "the document describes no {status} answer of {method} {path}"
    );
    let mut root = document.clone();
    close_objects(&mut root);
    let fragment = pointer.replace('{', "%7B").replace('}', "%7D");
    root["$ref"] = json!(format!("#{fragment}"));
    let validator = jsonschema::validator_for(&root).expect("the document is a valid schema");
    validator
        .iter_errors(answer)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

/// Calls the API and returns the status and the whole JSON answer (envelope included).
async fn raw(server: &TestServer, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", server.http_url()))
        .header("x-api-key", ADMIN_KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let server = TestServer::start().await;
    let (status, document) = raw(&server, Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let routes = [
        ("/api/v1/jobs", "get"),
        ("/api/v1/jobs", "post"),
        ("/api/v1/jobs/stats", "get"),
        ("/api/v1/jobs/activate", "post"),
        ("/api/v1/jobs/{key}", "get"),
        ("/api/v1/jobs/{key}/complete", "put"),
        ("/api/v1/jobs/{key}/fail", "post"),
        ("/api/v1/jobs/{key}/cancel", "post"),
        ("/api/v1/jobs/{key}/retries", "put"),
        ("/api/v1/jobs/{key}/timeout", "put"),
        ("/api/v1/triggers", "get"),
        ("/api/v1/triggers", "post"),
        ("/api/v1/triggers/{id}", "get"),
        ("/api/v1/triggers/{id}", "patch"),
        ("/api/v1/triggers/{id}", "delete"),
        ("/api/v1/handlers", "get"),
        ("/api/v1/handlers", "post"),
        ("/api/v1/handlers/{id}", "get"),
        ("/api/v1/handlers/{id}", "delete"),
        ("/api/v1/keys", "get"),
        ("/api/v1/keys", "post"),
        ("/api/v1/keys/{id}", "delete"),
        ("/api/v1/whoami", "get"),
        ("/api/v1/audit", "get"),
    ];
    for (path, method) in routes {
        assert!(
            document["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    assert_eq!(
        document["components"]["securitySchemes"]["api_key"]["name"],
        "X-API-Key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_match_the_openapi_document() {
    let server = TestServer::start().await;
    seed_jobs(&server).await;
    let (_, document) = raw(&server, Method::GET, "/api/v1/openapi.json", None).await;
    let check = |path: &'static str, method: &'static str, answer: (u16, Value)| {
        let document = &document;
        move || assert_matches(document, path, method, &answer.0.to_string(), &answer.1)
    };
    let created = raw(
        &server,
        Method::POST,
        "/api/v1/jobs",
        Some(json!({"type": "doc", "variables": {"a": 1}})),
    )
    .await;
    check("/api/v1/jobs", "post", created.clone())();
    let mut spoiled = created.1.clone();
    spoiled["data"]["job"]["undocumented"] = json!(1);
    assert!(!schema_errors(&document, "/api/v1/jobs", "post", "200", &spoiled).is_empty());
    spoiled = created.1.clone();
    spoiled["data"]["job"]["retries"] = json!("three");
    assert!(!schema_errors(&document, "/api/v1/jobs", "post", "200", &spoiled).is_empty());
    let key = created.1["data"]["job_key"].as_str().unwrap().to_string();
    check(
        "/api/v1/jobs",
        "get",
        raw(&server, Method::GET, "/api/v1/jobs", None).await,
    )();
    check(
        "/api/v1/jobs",
        "get",
        raw(&server, Method::GET, "/api/v1/jobs?state=completed", None).await,
    )();
    check(
        "/api/v1/jobs",
        "get",
        raw(&server, Method::GET, "/api/v1/jobs?state=failed", None).await,
    )();
    check(
        "/api/v1/jobs/stats",
        "get",
        raw(&server, Method::GET, "/api/v1/jobs/stats", None).await,
    )();
    let activated = raw(
        &server,
        Method::POST,
        "/api/v1/jobs/activate",
        Some(json!({"type": "doc", "worker": "w", "timeout": 60000, "max_jobs_to_activate": 1})),
    )
    .await;
    check("/api/v1/jobs/activate", "post", activated.clone())();
    let leased = activated.1["data"]["jobs"][0]["job_key"]
        .as_str()
        .unwrap()
        .to_string();
    check(
        "/api/v1/jobs/{key}",
        "get",
        raw(&server, Method::GET, &format!("/api/v1/jobs/{key}"), None).await,
    )();
    let timeout = raw(
        &server,
        Method::PUT,
        &format!("/api/v1/jobs/{leased}/timeout"),
        Some(json!({"timeout": 30000})),
    )
    .await;
    check("/api/v1/jobs/{key}/timeout", "put", timeout)();
    let failed = raw(
        &server,
        Method::POST,
        &format!("/api/v1/jobs/{leased}/fail"),
        Some(json!({"retries": 0, "error_message": "no"})),
    )
    .await;
    check("/api/v1/jobs/{key}/fail", "post", failed)();
    let retried = raw(
        &server,
        Method::PUT,
        &format!("/api/v1/jobs/{key}/retries"),
        Some(json!({"retries": 1})),
    )
    .await;
    check("/api/v1/jobs/{key}/retries", "put", retried)();
    let cancelled = raw(
        &server,
        Method::POST,
        &format!("/api/v1/jobs/{key}/cancel"),
        None,
    )
    .await;
    check("/api/v1/jobs/{key}/cancel", "post", cancelled)();
    let refused = raw(
        &server,
        Method::PUT,
        &format!("/api/v1/jobs/{key}/complete"),
        Some(json!({})),
    )
    .await;
    assert_eq!(refused.0, 409);
    assert_matches(
        &document,
        "/api/v1/jobs/{key}/complete",
        "put",
        "4XX",
        &refused.1,
    );

    let trigger = raw(
        &server,
        Method::POST,
        "/api/v1/triggers",
        Some(json!({"name": "t", "type": "doc", "cron": "0 9 * * *", "lifetime": "1d"})),
    )
    .await;
    check("/api/v1/triggers", "post", trigger.clone())();
    let id = trigger.1["data"]["id"].as_str().unwrap().to_string();
    check(
        "/api/v1/triggers",
        "get",
        raw(&server, Method::GET, "/api/v1/triggers", None).await,
    )();
    check(
        "/api/v1/triggers/{id}",
        "get",
        raw(
            &server,
            Method::GET,
            &format!("/api/v1/triggers/{id}"),
            None,
        )
        .await,
    )();
    check(
        "/api/v1/triggers/{id}",
        "patch",
        raw(
            &server,
            Method::PATCH,
            &format!("/api/v1/triggers/{id}"),
            Some(json!({"enabled": false})),
        )
        .await,
    )();
    check(
        "/api/v1/triggers/{id}",
        "delete",
        raw(
            &server,
            Method::DELETE,
            &format!("/api/v1/triggers/{id}"),
            None,
        )
        .await,
    )();

    let deployed = server
        .deploy(ADMIN_KEY, "echo", "type=doc-echo")
        .await
        .unwrap();
    let handler = deployed["id"].as_str().unwrap().to_string();
    check(
        "/api/v1/handlers",
        "get",
        raw(&server, Method::GET, "/api/v1/handlers", None).await,
    )();
    check(
        "/api/v1/handlers/{id}",
        "get",
        raw(
            &server,
            Method::GET,
            &format!("/api/v1/handlers/{handler}"),
            None,
        )
        .await,
    )();
    check(
        "/api/v1/handlers/{id}",
        "delete",
        raw(
            &server,
            Method::DELETE,
            &format!("/api/v1/handlers/{handler}"),
            None,
        )
        .await,
    )();

    let key_created = raw(
        &server,
        Method::POST,
        "/api/v1/keys",
        Some(json!({"permissions": ["jobs"], "tenants": ["a"]})),
    )
    .await;
    check("/api/v1/keys", "post", key_created.clone())();
    check(
        "/api/v1/keys",
        "get",
        raw(&server, Method::GET, "/api/v1/keys", None).await,
    )();
    let key_id = key_created.1["data"]["info"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    check(
        "/api/v1/keys/{id}",
        "delete",
        raw(
            &server,
            Method::DELETE,
            &format!("/api/v1/keys/{key_id}"),
            None,
        )
        .await,
    )();
    check(
        "/api/v1/whoami",
        "get",
        raw(&server, Method::GET, "/api/v1/whoami", None).await,
    )();
    check(
        "/api/v1/audit",
        "get",
        raw(&server, Method::GET, "/api/v1/audit", None).await,
    )();

    let bad = raw(&server, Method::GET, "/api/v1/jobs?page=0", None).await;
    assert_eq!(bad.0, 400);
    assert_matches(&document, "/api/v1/jobs", "get", "4XX", &bad.1);
}
