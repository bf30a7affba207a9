//! Backup and restore: `jobhost backup` snapshots a running server's whole store through the
//! REST API, and `jobhost restore` writes it into a new data directory, where a server finds
//! every job, key, handler and trigger as it was.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use jobhost::backup::format::FormatError;
use jobhost::backup::{BackupError, SNAPSHOT_FILE};
use jobhost::clock::ManualClock;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

const MINUTE: i64 = 60_000;
/// 2026-01-01T00:00:00Z, a whole multiple of every interval used here.
const T0: i64 = 1_767_225_600_000;

/// Runs the `jobhost` binary against `server` (if any) with the admin key.
async fn jobhost(server: Option<&TestServer>, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(binary());
    command.args(args).env("JOBHOST_API_KEY", ADMIN_KEY);
    if let Some(server) = server {
        command.env("JOBHOST_SERVER", server.http_url());
    }
    let output = command.output().await.expect("jobhost runs");
    assert!(
        output.status.success(),
        "jobhost {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

async fn call(
    server: &TestServer,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    server
        .rest(key)
        .call(method, path, body)
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn get_json(server: &TestServer, path: &str) -> Value {
    call(server, ADMIN_KEY, Method::GET, path, None).await
}

/// A job as `GET /api/v1/jobs/{key}` shows it, without what depends on the time of asking.
async fn job(server: &TestServer, key: &str) -> Value {
    timeless(get_json(server, &format!("/api/v1/jobs/{key}")).await)
}

fn timeless(mut job: Value) -> Value {
    let fields = job.as_object_mut().expect("a job");
    fields.remove("elapsed_time_ms");
    fields.remove("remaining_time_ms");
    job
}

/// Every job of the listing, and its totals.
async fn listing(server: &TestServer) -> Value {
    let mut listing = get_json(server, "/api/v1/jobs?page_size=100").await;
    let jobs = listing["jobs"].as_array_mut().expect("jobs");
    for job in jobs.iter_mut() {
        *job = timeless(job.take());
    }
    listing
}

/// The handlers, without how their code was made ready on this start.
async fn handlers(server: &TestServer) -> Value {
    let mut handlers = get_json(server, "/api/v1/handlers").await;
    for handler in handlers["handlers"].as_array_mut().expect("handlers") {
        handler.as_object_mut().expect("a handler").remove("load");
    }
    handlers
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} never happened");
}

async fn wait_for_job_state(server: &TestServer, key: &str, state: &str) {
    wait_until(&format!("job {key} {state}"), async || {
        job(server, key).await["state"] == state
    })
    .await;
}

/// A server whose triggers run on `clock`.
async fn server_on(clock: &Arc<ManualClock>) -> TestServer {
    let clock = clock.clone();
    TestServer::start_with(move |config| config.clock = clock.clone()).await
}

/// What the seeded server holds besides its jobs.
struct Seeded {
    jobs: Vec<String>,
    /// A key with the permission `jobs` on the tenant `acme`.
    key: String,
    trigger: String,
}

/// Jobs in every state (with payloads, results, failure histories and a Wasm attempt log),
/// a key, the `echo` handler and a trigger that has fired once.
async fn seed(server: &TestServer, clock: &ManualClock) -> Seeded {
    let mut client = server.client().await;
    let mut later = create_request("later", r#"{"state":"pending"}"#);
    later.delay = 3_600_000;
    let pending = client
        .create_job(admin(later))
        .await
        .expect("created")
        .into_inner()
        .job_key;
    let activatable = create(&mut client, "waiting", r#"{"state":"activatable"}"#).await;
    let activated = create(&mut client, "leased", r#"{"state":"activated"}"#).await;
    activate(&mut client, "leased", "worker-1", 1, 600_000).await;
    let completed = create(&mut client, "done", r#"{"state":"completed"}"#).await;
    activate(&mut client, "done", "worker-1", 1, 0).await;
    client
        .complete_job(admin(CompleteJobRequest {
            job_key: completed.clone(),
            variables: [("answer".to_string(), "42".to_string())].into(),
        }))
        .await
        .expect("completed");
    let mut retried = create_request("shaky", r#"{"state":"failed"}"#);
    retried.retries = Some(2);
    let failed = client
        .create_job(admin(retried))
        .await
        .expect("created")
        .into_inner()
        .job_key;
    for retries in [1, 0] {
        activate(&mut client, "shaky", "worker-1", 1, 0).await;
        fail(&mut client, &failed, retries, 0).await;
    }
    let backoff = create(&mut client, "backoff", r#"{"state":"pending again"}"#).await;
    activate(&mut client, "backoff", "worker-1", 1, 0).await;
    fail(&mut client, &backoff, 2, 3_600_000).await;
    let cancelled = create(&mut client, "dropped", r#"{"state":"cancelled"}"#).await;
    client
        .cancel_job(admin(CancelJobRequest {
            job_key: cancelled.clone(),
        }))
        .await
        .expect("cancelled");
    server
        .deploy(ADMIN_KEY, "echo", "type=echo")
        .await
        .expect("echo deployed");
    let echoed = create(&mut client, "echo", r#"{"name":"Ada"}"#).await;
    wait_for_job_state(server, &echoed, "completed").await;
    let key = server.key(&["jobs"], &["acme"]).await;
    let definition = json!({"name": "tick", "type": "ticked", "interval": "1m"});
    let trigger = call(
        server,
        ADMIN_KEY,
        Method::POST,
        "/api/v1/triggers",
        Some(definition),
    )
    .await;
    let trigger = trigger["id"].as_str().expect("trigger id").to_string();
    clock.set(T0 + MINUTE);
    wait_until("the trigger's first fire", async || {
        get_json(server, &format!("/api/v1/triggers/{trigger}")).await["fired_count"] == 1
    })
    .await;
    let jobs = vec![
        pending,
        activatable,
        activated,
        completed,
        failed,
        backoff,
        cancelled,
        echoed,
    ];
    for (key, state) in jobs.iter().zip([
        "pending",
        "activatable",
        "activated",
        "completed",
        "failed",
        "pending",
        "cancelled",
        "completed",
    ]) {
        assert_eq!(job(server, key).await["state"], state, "job {key}");
    }
    Seeded { jobs, key, trigger }
}

async fn fail(client: &mut Client, key: &str, retries: i32, backoff_ms: i64) {
    client
        .fail_job(admin(FailJobRequest {
            job_key: key.into(),
            retries,
            error_message: format!("failed with {retries} retries left"),
            backoff_timeout: backoff_ms,
        }))
        .await
        .expect("failed");
}

/// Takes a backup of `server` through the library the command line uses.
async fn backup(server: &TestServer, dir: &Path) {
    jobhost::backup::download(&server.rest(ADMIN_KEY), dir, false)
        .await
        .expect("backup taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_server_holds_everything_the_running_server_held() {
    let clock = ManualClock::new(T0 + 30_000);
    let server = server_on(&clock).await;
    let seeded = seed(&server, &clock).await;
    let backups = tempfile::tempdir().unwrap();
    let to = backups.path().join("nightly");
    let to = to.to_str().unwrap();
    jobhost(Some(&server), &["backup", "--to", to, "--with-compiled"]).await;

    let data_dir = tempfile::tempdir().unwrap();
    let path = data_dir.path().to_str().unwrap();
    jobhost(None, &["restore", "--from", to, "--data-dir", path]).await;
    let restored_clock = ManualClock::new(T0 + MINUTE);
    let restored = {
        let clock = restored_clock.clone();
        TestServer::start_on(data_dir, move |config| config.clock = clock.clone()).await
    };

    for key in &seeded.jobs {
        assert_eq!(
            job(&restored, key).await,
            job(&server, key).await,
            "job {key}"
        );
    }
    assert_eq!(listing(&restored).await, listing(&server).await);
    assert_eq!(
        get_json(&restored, "/api/v1/keys").await,
        get_json(&server, "/api/v1/keys").await
    );
    assert_eq!(handlers(&restored).await, handlers(&server).await);
    let triggers = get_json(&server, "/api/v1/triggers").await;
    assert_eq!(get_json(&restored, "/api/v1/triggers").await, triggers);
    let whoami = call(&restored, &seeded.key, Method::GET, "/api/v1/whoami", None).await;
    assert_eq!(whoami["tenants"], json!(["acme"]));
    let loaded = get_json(&restored, "/api/v1/handlers").await;
    assert_eq!(loaded["handlers"][0]["load"]["source"], "cache");
    let mut client = restored.client().await;
    let echoed = create(&mut client, "echo", r#"{"name":"Grace"}"#).await;
    wait_for_job_state(&restored, &echoed, "completed").await;

    // The trigger goes on from its cursor: the fire already taken is not taken again.
    restored_clock.set(T0 + 2 * MINUTE);
    let path = format!("/api/v1/triggers/{}", seeded.trigger);
    wait_until("the trigger's second fire", async || {
        get_json(&restored, &path).await["fired_count"] == 2
    })
    .await;
    let ticks = get_json(&restored, "/api/v1/jobs?type=ticked").await;
    let mut scheduled: Vec<&str> = ticks["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| {
            job["custom_headers"]["jobhost-scheduled-at"]
                .as_str()
                .unwrap()
        })
        .collect();
    scheduled.sort();
    assert_eq!(scheduled.len(), 2, "{scheduled:?}");
    assert_ne!(scheduled[0], scheduled[1]);
}

#[tokio::test]
async fn a_key_without_every_permission_on_every_tenant_cannot_take_a_backup() {
    let server = TestServer::start().await;
    let one_tenant = server.key(&["*"], &["acme"]).await;
    let jobs_only = server.key(&["jobs"], &[]).await;
    for key in [one_tenant, jobs_only] {
        let response = reqwest::Client::new()
            .get(format!("{}/api/v1/backup", server.http_url()))
            .header("x-api-key", key)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 403);
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "PERMISSION_DENIED");
    }
}

#[tokio::test]
async fn restore_refuses_a_corrupted_snapshot_and_writes_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create(&mut client, "kept", "{}").await;
    let backups = tempfile::tempdir().unwrap();
    backup(&server, backups.path()).await;
    let file = backups.path().join(SNAPSHOT_FILE);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, bytes).unwrap();

    let target = tempfile::tempdir().unwrap();
    let data_dir = target.path().join("data");
    let refused = jobhost::backup::restore(backups.path(), &data_dir, false);
    assert!(
        matches!(refused, Err(BackupError::Format(FormatError::Corrupt(_)))),
        "{refused:?}"
    );
    assert!(!data_dir.exists());
}

#[tokio::test]
async fn restore_refuses_a_data_dir_that_is_not_empty() {
    let server = TestServer::start().await;
    let backups = tempfile::tempdir().unwrap();
    backup(&server, backups.path()).await;
    let data_dir = tempfile::tempdir().unwrap();
    let precious = data_dir.path().join("precious.txt");
    std::fs::write(&precious, "mine").unwrap();

    let refused = jobhost::backup::restore(backups.path(), data_dir.path(), false);
    assert!(
        matches!(refused, Err(BackupError::NotEmpty(_))),
        "{refused:?}"
    );
    let entries: Vec<_> = std::fs::read_dir(data_dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(std::fs::read_to_string(precious).unwrap(), "mine");
}

#[tokio::test]
async fn restore_with_force_replaces_the_store_with_the_snapshot() {
    let mut server = TestServer::start().await;
    let mut client = server.client().await;
    let before = create(&mut client, "t", r#"{"when":"before"}"#).await;
    let backups = tempfile::tempdir().unwrap();
    backup(&server, backups.path()).await;
    let after = create(&mut client, "t", r#"{"when":"after"}"#).await;
    server.stop().await;

    jobhost::backup::restore(backups.path(), server.dir.path(), true).expect("restored");
    server.restart().await;
    let mut client = server.client().await;
    assert_eq!(get(&mut client, &before).await.state, "activatable");
    let missing = client
        .get_job(admin(GetJobRequest { job_key: after }))
        .await;
    assert_code(missing, tonic::Code::NotFound, "not found");
}

#[tokio::test]
async fn the_backup_route_is_in_the_openapi_document() {
    let server = TestServer::start().await;
    let document: Value = reqwest::get(format!("{}/api/v1/openapi.json", server.http_url()))
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    let backup = &document["paths"]["/api/v1/backup"]["get"];
    assert!(
        backup["responses"]["200"]["content"]["application/octet-stream"].is_object(),
        "{backup}"
    );
}

#[tokio::test]
async fn a_restored_audit_trail_goes_on_without_overwriting_its_entries() {
    let mut server = TestServer::start().await;
    for _ in 0..3 {
        server.key(&["jobs"], &["acme"]).await;
    }
    let backups = tempfile::tempdir().unwrap();
    backup(&server, backups.path()).await;
    server.stop().await;
    let restored = tempfile::tempdir().unwrap();
    jobhost::backup::restore(backups.path(), &restored.path().join("data"), false)
        .expect("restored");
    std::fs::remove_dir_all(server.dir.path()).unwrap();
    std::fs::rename(restored.path().join("data"), server.dir.path()).unwrap();
    server.restart().await;
    server.key(&["jobs"], &["acme"]).await;

    let trail = get_json(&server, "/api/v1/audit").await;
    let entries = trail["entries"].as_array().unwrap();
    let actions: Vec<_> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    // The backup's own entry was written after its snapshot began, so it is not restored.
    assert_eq!(actions, vec!["key.created"; 4]);
    let ids: Vec<u64> = entries.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
}
