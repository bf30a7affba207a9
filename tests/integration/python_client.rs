//! The seed's Python `JobWorker`, unchanged but for address and key, against a real server.
//! Its grpcio-tools are installed into `target/python-venv` on first use; stubs are generated
//! from `proto/jobs.proto` for every run.

use std::process::Command;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_python_worker_completes_and_fails_jobs_unchanged() {
    let (python, generated) = python_grpc_stubs().await;
    let root = workspace();

    let server = TestServer::start().await;
    let mut client = server.client().await;
    let with_url = create(
        &mut client,
        "http-request",
        r#"{"url":"http://example.invalid/x","method":"POST"}"#,
    )
    .await;
    let mut no_url = create_request("http-request", "{}");
    no_url.retries = Some(1);
    let no_url = client
        .create_job(admin(no_url))
        .await
        .unwrap()
        .into_inner()
        .job_key;

    let address = server.grpc_url().trim_start_matches("http://").to_string();
    let python_path = format!(
        "{}:{}",
        generated.path().display(),
        root.join("tests/python").display()
    );
    let mut driver = Command::new(&python);
    driver
        .arg(root.join("tests/python/run_seed_worker.py"))
        .arg(format!("{with_url}=completed"))
        .arg(format!("{no_url}=failed"))
        .env("JOBHOST_GRPC_ADDR", address)
        .env("JOBHOST_API_KEY", ADMIN_KEY)
        .env("PYTHONPATH", python_path);
    tokio::task::spawn_blocking(move || run(&mut driver))
        .await
        .unwrap();

    let done = get(&mut client, &with_url).await;
    assert_eq!(done.state, "completed");
    let result: serde_json::Value = serde_json::from_str(&done.result_variables).unwrap();
    assert_eq!(result["httpStatus"], "200");
    let failed = get(&mut client, &no_url).await;
    assert_eq!(failed.state, "failed");
    assert_eq!(failed.error_message, "URL is required");
    assert_eq!(failed.failure_history.len(), 1);
}
