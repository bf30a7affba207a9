//! The `jobhost` command line as a client of a running server.

use std::process::{Command, Output};

use crate::harness::*;

fn jobhost(process: &ServerProcess, key: &str, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("JOBHOST_SERVER", &process.http_url)
        .env("JOBHOST_API_KEY", key)
        .output()
        .expect("jobhost runs")
}

fn last_line(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn keys_create_prints_a_working_key_on_its_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let process = ServerProcess::start(dir.path());
    let output = jobhost(
        &process,
        ADMIN_KEY,
        &[
            "keys",
            "create",
            "--permissions",
            "jobs",
            "--tenant",
            "acme",
        ],
    );
    let key = last_line(&output);
    assert!(key.starts_with("jh_"), "{key}");
    let created = jobhost(
        &process,
        &key,
        &["jobs", "create", "--type", "t", "--tenant", "acme"],
    );
    let job = last_line(&created);
    let denied = jobhost(
        &process,
        &key,
        &["jobs", "create", "--type", "t", "--tenant", "globex"],
    );
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("PERMISSION_DENIED"));

    let listed = last_line(&jobhost(&process, ADMIN_KEY, &["keys", "list"]));
    assert!(!listed.is_empty());
    let id = key.split('_').nth(1).unwrap();
    jobhost(&process, ADMIN_KEY, &["keys", "revoke", id]);
    let revoked = jobhost(&process, &key, &["jobs", "get", &job]);
    assert!(String::from_utf8_lossy(&revoked.stderr).contains("UNAUTHENTICATED"));
}

#[tokio::test]
async fn jobs_commands_create_read_list_cancel_and_retry() {
    let dir = tempfile::tempdir().unwrap();
    let process = ServerProcess::start(dir.path());
    let created = jobhost(
        &process,
        ADMIN_KEY,
        &[
            "jobs",
            "create",
            "--type",
            "cli",
            "--variables",
            r#"{"a":1}"#,
        ],
    );
    let key = last_line(&created);
    let shown = jobhost(&process, ADMIN_KEY, &["jobs", "get", &key]);
    assert!(shown.status.success());
    let job: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(job["variables"]["a"], 1);
    assert_eq!(job["state"], "activatable");

    let listed = jobhost(&process, ADMIN_KEY, &["jobs", "list", "--type", "cli"]);
    let list: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(list["pagination"]["total_count"], 1);

    let mut client = connect(&process.grpc_url).await;
    let leased = activate(&mut client, "cli", "w", 1, 0)
        .await
        .remove(0)
        .job_key;
    let fail = FailJobRequest {
        job_key: leased,
        retries: 0,
        error_message: "bad".into(),
        backoff_timeout: 0,
    };
    client.fail_job(admin(fail)).await.unwrap();
    let retried = last_line(&jobhost(
        &process,
        ADMIN_KEY,
        &["jobs", "retries", &key, "2"],
    ));
    assert!(retried.contains("activatable"), "{retried}");
    let cancelled = last_line(&jobhost(&process, ADMIN_KEY, &["jobs", "cancel", &key]));
    assert!(cancelled.contains("cancelled"), "{cancelled}");
}

#[tokio::test]
async fn triggers_commands_add_list_pause_resume_and_remove_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let process = ServerProcess::start(dir.path());
    let added = last_line(&jobhost(
        &process,
        ADMIN_KEY,
        &[
            "triggers",
            "add",
            "nightly",
            "--type",
            "report",
            "--cron",
            "0 2 * * *",
            "--tz",
            "Europe/Berlin",
            "--tenant",
            "acme",
            "--variables",
            r#"{"kind":"daily"}"#,
            "--no-catch-up",
            "--end-at",
            "2099-01-01T00:00:00Z",
            "--overlap",
            "skip",
        ],
    ));
    assert!(
        added.starts_with("added trigger 1 (nightly) in tenant acme"),
        "{added}"
    );

    let listed = jobhost(
        &process,
        ADMIN_KEY,
        &["triggers", "list", "--tenant", "acme"],
    );
    let list: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let trigger = &list["triggers"][0];
    assert_eq!(list["total_count"], 1);
    assert_eq!(
        (&trigger["cron"], &trigger["time_zone"], &trigger["overlap"]),
        (
            &serde_json::json!("0 2 * * *"),
            &serde_json::json!("Europe/Berlin"),
            &serde_json::json!("skip")
        )
    );
    assert_eq!(trigger["catch_up"], false);
    assert_eq!(trigger["variables"]["kind"], "daily");
    assert_eq!(trigger["end_at"], "2099-01-01T00:00:00.000Z");
    assert!(trigger["next_fire_at"].is_string());

    let paused = last_line(&jobhost(
        &process,
        ADMIN_KEY,
        &["triggers", "pause", "nightly"],
    ));
    assert_eq!(paused, "trigger 1 is paused; next fire none");
    let resumed = last_line(&jobhost(
        &process,
        ADMIN_KEY,
        &["triggers", "resume", "nightly"],
    ));
    assert!(
        resumed.starts_with("trigger 1 is active; next fire 20"),
        "{resumed}"
    );

    let bad = jobhost(
        &process,
        ADMIN_KEY,
        &["triggers", "add", "x", "--type", "t", "--interval", "0s"],
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("invalid interval '0s': it must be positive")
    );

    let removed = last_line(&jobhost(
        &process,
        ADMIN_KEY,
        &["triggers", "remove", "nightly"],
    ));
    assert_eq!(removed, "removed trigger 1");
    let missing = jobhost(&process, ADMIN_KEY, &["triggers", "get", "nightly"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no trigger named 'nightly'"));
}

#[tokio::test]
async fn audit_prints_the_acts_of_a_key_newest_first_one_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let process = ServerProcess::start(dir.path());
    let created = jobhost(
        &process,
        ADMIN_KEY,
        &[
            "keys",
            "create",
            "--permissions",
            "jobs",
            "--tenant",
            "acme",
        ],
    );
    let key = last_line(&created);
    let id = key.split('_').nth(1).unwrap().to_string();
    last_line(&jobhost(&process, ADMIN_KEY, &["keys", "revoke", &id]));
    let audit = jobhost(&process, ADMIN_KEY, &["audit", "--tenant", "acme"]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&audit.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let acts: Vec<_> = lines
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(acts, vec!["key.revoked", "key.created"]);
    assert!(lines.iter().all(|e| e["target"] == id.as_str()));
}

#[tokio::test]
async fn a_handler_deployed_from_a_manifest_carries_its_type_limits_and_grants() {
    let dir = tempfile::tempdir().unwrap();
    let process = ServerProcess::start(dir.path());
    let manifest = dir.path().join("handler.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"type = "cfg"
tenant = "acme"
component = "{}"

[limits]
timeout_ms = 5000

[grants]
secrets = ["API_TOKEN"]
config = {{ REGION = "eu" }}
"#,
            plugin_path("reads-config").display()
        ),
    )
    .unwrap();
    let manifest = manifest.to_str().unwrap();
    let deployed = jobhost(
        &process,
        ADMIN_KEY,
        &[
            "handlers",
            "deploy",
            "--manifest",
            manifest,
            "--kv",
            "extra",
        ],
    );
    let line = last_line(&deployed);
    assert!(line.contains("for type cfg in tenant acme"), "{line}");
    let id = line.split_whitespace().nth(1).unwrap().to_string();
    let shown = jobhost(&process, ADMIN_KEY, &["handlers", "get", &id]);
    assert!(shown.status.success());
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let version = &shown["versions"][0];
    assert_eq!(version["limits"]["timeout_ms"], 5000, "{shown}");
    assert_eq!(
        version["grants"]["secrets"],
        serde_json::json!(["API_TOKEN"])
    );
    assert_eq!(version["grants"]["config"]["REGION"], "eu");
    assert_eq!(version["grants"]["kv"], serde_json::json!(["extra"]));
}

#[tokio::test]
async fn secrets_set_reads_the_value_from_stdin_and_list_shows_only_names() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let process = ServerProcess::start(dir.path());
    let mut setting = Command::new(binary())
        .args(["secrets", "set", "API_TOKEN", "--tenant", "acme"])
        .env("JOBHOST_SERVER", &process.http_url)
        .env("JOBHOST_API_KEY", ADMIN_KEY)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    setting
        .stdin
        .take()
        .unwrap()
        .write_all(b"tok_from_stdin_42\n")
        .unwrap();
    let set = setting.wait_with_output().unwrap();
    assert_eq!(last_line(&set), "created secret API_TOKEN in tenant acme");
    let listed = jobhost(
        &process,
        ADMIN_KEY,
        &["secrets", "list", "--tenant", "acme"],
    );
    assert!(listed.status.success());
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("API_TOKEN"), "{text}");
    assert!(!text.contains("tok_from_stdin_42"), "{text}");
}

#[tokio::test]
async fn kv_set_get_and_rm_edit_a_tenants_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let process = ServerProcess::start(dir.path());
    let key = |args: &[&str]| jobhost(&process, ADMIN_KEY, args);
    last_line(&key(&["kv", "set", "b", "a/k", "v1", "--tenant", "acme"]));
    assert_eq!(
        last_line(&key(&["kv", "get", "b", "a/k", "--tenant", "acme"])),
        "v1"
    );
    let listed = key(&["kv", "list", "b", "--tenant", "acme"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("a/k"));
    last_line(&key(&["kv", "rm", "b", "a/k", "--tenant", "acme"]));
    let gone = key(&["kv", "get", "b", "a/k", "--tenant", "acme"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NOT_FOUND"));
}

#[tokio::test]
async fn a_reader_that_goes_away_ends_the_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let process = ServerProcess::start(dir.path());
    let created = jobhost(&process, ADMIN_KEY, &["jobs", "create", "--type", "t"]);
    let key = last_line(&created);
    // As `jobhost jobs get KEY | head -0`: the reader is gone before anything is written.
    let mut child = Command::new(binary())
        .args(["jobs", "get", &key])
        .env("JOBHOST_SERVER", &process.http_url)
        .env("JOBHOST_API_KEY", ADMIN_KEY)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("jobhost runs");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("jobhost ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
