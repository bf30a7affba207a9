//! The web dashboard: its embedded assets as served, and the page itself driven in real headless
//! Chromium (Debian's `chromium` and `chromium-driver`, installed with apt when missing) by the
//! Selenium script `tests/browser/dashboard_e2e.py`, whose pinned requirements are installed
//! into `target/browser-venv`.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The whole browser scenario; a healthy run takes well under a minute, a loaded machine
/// several. Past this the browser is stuck, not slow.
const SCENARIO_LIMIT: Duration = Duration::from_secs(900);

#[tokio::test]
async fn dashboard_assets_are_served_embedded_with_types_and_cache_headers() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", server.http_url())).send();

    let page = get("/").await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let policy = header(&page, "content-security-policy");
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    let html = page.text().await.unwrap();
    let tag = html
        .split("/dashboard/app.js?v=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page loads its script with a version tag")
        .to_string();
    assert_eq!(tag.len(), 16, "{tag}");
    assert!(html.contains(&format!("/dashboard/app.css?v={tag}")));
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"),
        "the page must load nothing from elsewhere"
    );

    for (path, content_type, needle) in [
        (
            "/dashboard/app.js",
            "text/javascript; charset=utf-8",
            "X-API-Key",
        ),
        (
            "/dashboard/app.css",
            "text/css; charset=utf-8",
            ".throughput",
        ),
    ] {
        let asset = get(&format!("{path}?v={tag}")).await.unwrap();
        assert_eq!(asset.status(), 200, "{path}");
        assert_eq!(header(&asset, "content-type"), content_type, "{path}");
        assert!(
            header(&asset, "cache-control").contains("immutable"),
            "{path}"
        );
        assert_eq!(header(&asset, "x-content-type-options"), "nosniff");
        assert!(asset.text().await.unwrap().contains(needle), "{path}");
    }
    // The page needs no key; the API behind it still does.
    let whoami = get("/api/v1/whoami").await.unwrap();
    assert_eq!(whoami.status(), 401);
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium_lists_shows_and_retries_jobs() {
    let started = Instant::now();
    let python = tokio::task::spawn_blocking(|| {
        ensure_chromium();
        python_venv("browser-venv", "tests/browser/requirements.txt")
    })
    .await
    .unwrap();
    let set_up = started.elapsed();

    let server = TestServer::start().await;
    let rest = server.rest(ADMIN_KEY);
    let call = |method: Method, path: String, body: Option<Value>| {
        let rest = &rest;
        async move {
            rest.call(method, &path, body)
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"))
        }
    };
    let create = |body: Value| {
        let call = &call;
        async move {
            call(Method::POST, "/api/v1/jobs".into(), Some(body)).await["job_key"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };

    // Twelve jobs of one type, enough for two pages of ten; their variables hold markup that
    // must stay text.
    let markup = "<img src=x onerror='window.__injected=1'>";
    let mut bulk_jobs = Vec::new();
    for n in 0..12 {
        let variables = json!({ "n": n, "note": markup });
        bulk_jobs.push(create(json!({ "type": "dash-report", "variables": variables })).await);
    }
    let tenant_job = create(json!({ "type": "dash-tenant", "tenant_id": "acme" })).await;

    // One job run by the echo handler, for the result and the attempt's log.
    server
        .deploy(ADMIN_KEY, "echo", "type=echo")
        .await
        .expect("echo deployed");
    let echo_job = create(json!({ "type": "echo", "variables": { "name": "Grace Hopper" } })).await;
    let mut done = false;
    for _ in 0..1500 {
        let job = call(Method::GET, format!("/api/v1/jobs/{echo_job}"), None).await;
        if job["state"] == "completed" {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(done, "the echo job never completed");

    // One incident: leased by an external worker and failed without retries.
    let mut client = server.client().await;
    let incident = create(json!({ "type": "dash-incident", "retries": 1 })).await;
    let leased = activate(&mut client, "dash-incident", "dash-worker", 1, 60_000)
        .await
        .remove(0)
        .job_key;
    let incident_error = "disk <b>full</b> on node-7";
    client
        .fail_job(admin(FailJobRequest {
            job_key: leased,
            retries: 0,
            error_message: incident_error.into(),
            backoff_timeout: 0,
        }))
        .await
        .expect("job failed");

    let tenant_key = server.key(&["jobs"], &["acme"]).await;
    let mut all_jobs = bulk_jobs.clone();
    all_jobs.extend([tenant_job.clone(), echo_job.clone(), incident.clone()]);
    let artifacts = workspace().join("target/browser-artifacts/dashboard");
    let _ = std::fs::remove_dir_all(&artifacts);
    let scenario = json!({
        "chromium": CHROMIUM,
        "chromedriver": CHROMEDRIVER,
        "artifacts": artifacts,
        "url": format!("{}/", server.http_url()),
        "admin_key": ADMIN_KEY,
        "bad_key": "not-a-key",
        "tenant_key": tenant_key,
        "tenant": "acme",
        "tenant_job": tenant_job,
        "counts": {
            "total": all_jobs.len(),
            "pending": 0,
            "activatable": bulk_jobs.len() + 1,
            "activated": 0,
            "completed": 1,
            "failed": 1,
            "cancelled": 0,
        },
        "all_jobs": all_jobs,
        "bulk_type": "dash-report",
        "bulk_jobs": bulk_jobs,
        "echo_job": echo_job,
        "echo_variable": "Grace Hopper",
        "markup_variable": markup,
        "incident": incident,
        "incident_error": incident_error,
        "retries": 2,
    });

    let mut driver = tokio::process::Command::new(&python);
    driver
        .arg(workspace().join("tests/browser/dashboard_e2e.py"))
        .arg(scenario.to_string())
        .kill_on_drop(true);
    let output = tokio::time::timeout(SCENARIO_LIMIT, driver.output())
        .await
        .expect("the browser scenario hung")
        .expect("the browser driver starts");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the dashboard scenario failed (set-up {set_up:?}):\n{log}"
    );
    assert!(log.contains("dashboard end-to-end: ok"), "{log}");
    println!("set-up {set_up:?}\n{log}");

    // What the browser did, seen through the API.
    let retried = call(Method::GET, format!("/api/v1/jobs/{incident}"), None).await;
    assert_eq!(retried["state"], "activatable", "{retried}");
    assert_eq!(retried["retries"], 2, "{retried}");
    let failed = call(Method::GET, "/api/v1/jobs?state=failed".into(), None).await;
    assert_eq!(failed["pagination"]["total_count"], 0, "{failed}");
}

/// Installs Chromium and its driver from Debian when they are missing. Tests run in parallel
/// and apt allows one run at a time, so installs take a lock file first.
fn ensure_chromium() {
    let present = || Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if present() {
        return;
    }
    let lock = File::create(std::env::temp_dir().join("jobhost-chromium-install.lock"))
        .expect("lock file");
    lock.lock().expect("install lock");
    if present() {
        return;
    }
    let install = || {
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "-o",
                "DPkg::Lock::Timeout=600",
                "chromium",
                "chromium-driver",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("apt-get runs")
    };
    let mut output = install();
    if !output.status.success() {
        // A fresh machine has no package lists yet.
        run(Command::new("apt-get")
            .args(["update", "-q", "-o", "DPkg::Lock::Timeout=600"])
            .env("DEBIAN_FRONTEND", "noninteractive"));
        output = install();
    }
    assert!(
        output.status.success() && present(),
        "installing chromium and chromium-driver failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
