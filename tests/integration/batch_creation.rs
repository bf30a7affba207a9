//! Creating many jobs in one call (`CreateJobs`, `POST /api/v1/jobs/batch`, `jobhost jobs
//! create --batch`): one atomic, durable write of all the jobs, or none of them; creating
//! idempotently, with a key that makes a repeated create answer the first job; and completing
//! many jobs in one call (`CompleteJobs`), each answered on its own.

use std::process::{Command, Stdio};

use reqwest::Method;
use serde_json::json;
use tonic::Code;

use crate::harness::*;

fn batch(jobs: Vec<CreateJobRequest>) -> CreateJobsRequest {
    CreateJobsRequest { jobs }
}

async fn count_of_type(client: &mut Client, job_type: &str) -> usize {
    let listed = client
        .list_jobs(admin(ListJobsRequest {
            r#type: job_type.into(),
            page_size: 100,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    listed.pagination.map_or(0, |p| p.total_count as usize)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_jobs_answers_every_key_in_the_order_of_the_request() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let jobs = (0..50)
        .map(|n| create_request("batched", &format!(r#"{{"n":{n}}}"#)))
        .collect();
    let keys = client
        .create_jobs(admin(batch(jobs)))
        .await
        .unwrap()
        .into_inner()
        .job_keys;
    assert_eq!(keys.len(), 50);
    for (n, key) in keys.iter().enumerate() {
        let job = get(&mut client, key).await;
        assert_eq!(job.variables, format!(r#"{{"n":{n}}}"#));
        assert_eq!(job.state, "activatable");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_one_bad_job_creates_none_and_names_it_by_index() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut jobs: Vec<_> = (0..5)
        .map(|_| create_request("all-or-none", "{}"))
        .collect();
    jobs[3].variables = "[1, 2]".into();
    let refused = client.create_jobs(admin(batch(jobs))).await;
    assert_code(refused, Code::InvalidArgument, "job 3 of the batch");
    assert_eq!(count_of_type(&mut client, "all-or-none").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_naming_a_tenant_the_key_lacks_creates_none() {
    let server = TestServer::start().await;
    let key = server.key(&["jobs"], &["acme"]).await;
    let mut client = server.client().await;
    let mut jobs: Vec<_> = (0..3).map(|_| create_request("scoped", "{}")).collect();
    for job in &mut jobs {
        job.tenant_id = "acme".into();
    }
    jobs[1].tenant_id = "beta".into();
    let refused = client.create_jobs(with_key(batch(jobs), &key)).await;
    assert_code(refused, Code::PermissionDenied, "job 1 of the batch");
    assert_eq!(count_of_type(&mut client, "scoped").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_a_thousand_jobs_or_of_none_is_refused() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let too_many = (0..1001).map(|_| create_request("t", "{}")).collect();
    assert_code(
        client.create_jobs(admin(batch(too_many))).await,
        Code::InvalidArgument,
        "at most 1000 jobs",
    );
    assert_code(
        client.create_jobs(admin(batch(Vec::new()))).await,
        Code::InvalidArgument,
        "at least one job",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_jobs_batch_creates_the_jobs_of_its_body_in_order() {
    let server = TestServer::start().await;
    let rest = server.rest(ADMIN_KEY);
    let body = json!({ "jobs": [
        { "type": "rest-batch", "variables": { "n": 1 } },
        { "type": "rest-batch", "variables": { "n": 2 }, "priority": 5 },
    ]});
    let created = rest
        .call(Method::POST, "/api/v1/jobs/batch", Some(body))
        .await
        .unwrap();
    let keys = created["job_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let second = rest
        .call(
            Method::GET,
            &format!("/api/v1/jobs/{}", keys[1].as_str().unwrap()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(second["variables"]["n"], 2, "{second}");
}

#[tokio::test]
async fn jobs_create_batch_reads_json_lines_and_prints_each_key_in_order() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let process = ServerProcess::start(dir.path());
    let mut creating = Command::new(binary())
        .args(["jobs", "create", "--batch", "-"])
        .env("JOBHOST_SERVER", &process.http_url)
        .env("JOBHOST_API_KEY", ADMIN_KEY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = String::new();
    for n in 0..2500 {
        lines.push_str(&format!(
            "{{\"type\":\"cli-batch\",\"variables\":{{\"n\":{n}}}}}\n"
        ));
    }
    creating
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let output = creating.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let keys: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(keys.len(), 2500);
    let mut client = connect(&process.grpc_url).await;
    let last = get(&mut client, &keys[2499]).await;
    assert_eq!(last.variables, r#"{"n":2499}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_create_with_an_idempotency_key_answers_the_first_job() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request("charge", r#"{"amount":5}"#);
    request.idempotency_key = "order-17".into();
    let first = client
        .create_job(admin(request.clone()))
        .await
        .unwrap()
        .into_inner()
        .job_key;
    let again = client
        .create_job(admin(request.clone()))
        .await
        .unwrap()
        .into_inner()
        .job_key;
    assert_eq!(again, first);
    let in_batch = client
        .create_jobs(admin(batch(vec![request, create_request("charge", "{}")])))
        .await
        .unwrap()
        .into_inner()
        .job_keys;
    assert_eq!(in_batch[0], first);
    let rest = server.rest(ADMIN_KEY);
    let over_rest = rest
        .call(
            Method::POST,
            "/api/v1/jobs",
            Some(json!({ "type": "charge", "idempotency_key": "order-17" })),
        )
        .await
        .unwrap();
    assert_eq!(over_rest["job_key"], first.as_str());
    assert_eq!(count_of_type(&mut client, "charge").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_over_255_bytes_is_refused() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request("charge", "{}");
    request.idempotency_key = "k".repeat(256);
    assert_code(
        client.create_job(admin(request)).await,
        Code::InvalidArgument,
        "idempotency_key",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_jobs_answers_each_completion_on_its_own() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for _ in 0..3 {
        create(&mut client, "acked", "{}").await;
    }
    let leased = activate(&mut client, "acked", "w", 3, 60_000).await;
    let mut jobs: Vec<CompleteJobRequest> = leased
        .iter()
        .map(|job| CompleteJobRequest {
            job_key: job.job_key.clone(),
            variables: [("done".to_string(), "yes".to_string())].into(),
        })
        .collect();
    jobs.insert(
        1,
        CompleteJobRequest {
            job_key: "999999".into(),
            ..Default::default()
        },
    );
    let results = client
        .complete_jobs(admin(CompleteJobsRequest { jobs: jobs.clone() }))
        .await
        .unwrap()
        .into_inner()
        .results;
    let successes: Vec<bool> = results.iter().map(|r| r.success).collect();
    assert_eq!(successes, [true, false, true, true]);
    assert!(results[1].message.starts_with("NotFound"), "{results:?}");
    for job in &leased {
        assert_eq!(get(&mut client, &job.job_key).await.state, "completed");
    }
    let again = client
        .complete_jobs(admin(CompleteJobsRequest {
            jobs: vec![jobs[0].clone()],
        }))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(
        !again[0].success,
        "a second completion is refused: {again:?}"
    );
}
