//! Triggers: cron and interval schedules that create jobs exactly once per fire time, across
//! restarts and crashes. Tests that would wait for minutes move a manual clock instead.

use std::sync::Arc;
use std::time::Duration;

use jobhost::clock::ManualClock;
use serde_json::{Value, json};

use crate::harness::*;

const MINUTE: i64 = 60_000;
/// 2026-01-01T00:00:00Z, a whole multiple of every interval used here.
const T0: i64 = 1_767_225_600_000;

/// A server whose triggers run on a manual clock that starts half a minute after `T0`.
async fn server_on_manual_clock() -> (TestServer, Arc<ManualClock>) {
    let clock = ManualClock::new(T0 + 30_000);
    let shared = clock.clone();
    let server = TestServer::start_with(move |config| config.clock = shared.clone()).await;
    (server, clock)
}

async fn add_trigger(server: &TestServer, definition: Value) -> Value {
    server
        .rest(ADMIN_KEY)
        .call(reqwest::Method::POST, "/api/v1/triggers", Some(definition))
        .await
        .expect("trigger created")
}

async fn trigger(server: &TestServer, id: &Value) -> Value {
    let path = format!("/api/v1/triggers/{}", id.as_str().expect("id"));
    server
        .rest(ADMIN_KEY)
        .call(reqwest::Method::GET, &path, None)
        .await
        .expect("trigger read")
}

async fn patch_trigger(server: &TestServer, id: &Value, change: Value) -> Value {
    let path = format!("/api/v1/triggers/{}", id.as_str().expect("id"));
    server
        .rest(ADMIN_KEY)
        .call(reqwest::Method::PATCH, &path, Some(change))
        .await
        .expect("trigger changed")
}

/// Polls the trigger until `done` holds for it.
async fn wait_for_trigger(server: &TestServer, id: &Value, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..500 {
        let current = trigger(server, id).await;
        if done(&current) {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("trigger never got there: {}", trigger(server, id).await);
}

async fn wait_for_fired(server: &TestServer, id: &Value, count: u64) -> Value {
    wait_for_trigger(server, id, |t| t["fired_count"].as_u64() >= Some(count)).await
}

/// The scheduled times (from the `jobhost-scheduled-at` header) of every job of a type, oldest
/// first.
async fn scheduled_times(http_url: &str, job_type: &str) -> Vec<String> {
    jobs_of_type(http_url, job_type)
        .await
        .iter()
        .map(|job| {
            job["custom_headers"]["jobhost-scheduled-at"]
                .as_str()
                .expect("a fired job names its scheduled time")
                .to_string()
        })
        .collect()
}

fn epoch_ms(rfc3339: &str) -> i64 {
    jobhost::service::parse_time("t", rfc3339).expect("RFC 3339")
}

/// Asserts that the times are distinct and `step` apart, with no gap.
fn assert_consecutive(times: &[String], step: i64) {
    let ms: Vec<i64> = times.iter().map(|t| epoch_ms(t)).collect();
    for pair in ms.windows(2) {
        assert_eq!(pair[1] - pair[0], step, "fires not consecutive: {times:?}");
    }
}

#[tokio::test]
async fn an_interval_trigger_fires_at_each_multiple_of_its_interval() {
    let server = TestServer::start().await;
    let created = add_trigger(
        &server,
        json!({"name": "tick", "type": "tick", "interval": "1s", "variables": {"n": 1}}),
    )
    .await;
    assert_eq!(created["status"], "active");
    let next = epoch_ms(created["next_fire_at"].as_str().unwrap());
    assert_eq!(next % 1000, 0, "intervals fire on multiples of themselves");
    let fired = wait_for_fired(&server, &created["id"], 2).await;
    let times = scheduled_times(&server.http_url(), "tick").await;
    assert!(times.len() >= 2);
    assert_eq!(epoch_ms(&times[0]), next);
    assert_consecutive(&times, 1000);
    assert!(fired["last_job_key"].is_string());
    assert!(fired["last_fire_at"].is_string());
    let mut client = server.client().await;
    let job = activate(&mut client, "tick", "w", 1, 0).await.remove(0);
    assert_eq!(job.variables, r#"{"n":1}"#);
    assert_eq!(job.custom_headers["jobhost-trigger"], "tick");
}

#[tokio::test]
async fn a_fired_job_is_created_no_earlier_than_its_scheduled_time() {
    let server = TestServer::start().await;
    let created = add_trigger(
        &server,
        json!({"name": "t", "type": "punctual", "interval": "1s"}),
    )
    .await;
    let fired = wait_for_fired(&server, &created["id"], 1).await;
    let key = fired["last_job_key"].as_str().unwrap();
    let client = server.rest(ADMIN_KEY);
    let job = client
        .call(reqwest::Method::GET, &format!("/api/v1/jobs/{key}"), None)
        .await
        .unwrap();
    let scheduled = epoch_ms(
        job["custom_headers"]["jobhost-scheduled-at"]
            .as_str()
            .unwrap(),
    );
    let created_at = epoch_ms(job["created_at"].as_str().unwrap());
    assert!(created_at >= scheduled, "{created_at} < {scheduled}");
}

#[tokio::test]
async fn a_cron_trigger_with_seconds_fires_on_the_named_seconds() {
    let server = TestServer::start().await;
    let created = add_trigger(
        &server,
        json!({"name": "every-second", "type": "cron-tick", "cron": "* * * * * *"}),
    )
    .await;
    assert_eq!(created["cron"], "* * * * * *");
    assert_eq!(created["time_zone"], "UTC");
    wait_for_fired(&server, &created["id"], 2).await;
    let times = scheduled_times(&server.http_url(), "cron-tick").await;
    assert!(times.iter().all(|t| epoch_ms(t) % 1000 == 0));
    assert_consecutive(&times, 1000);
}

#[tokio::test]
async fn a_cron_trigger_computes_its_next_fire_in_its_time_zone() {
    let (server, clock) = server_on_manual_clock().await;
    // 2026-03-28T12:00Z: the next 09:00 in Berlin is on 2026-03-29, after the switch to CEST.
    clock.set(epoch_ms("2026-03-28T12:00:00Z"));
    let created = add_trigger(
        &server,
        json!({"name": "nine", "type": "t", "cron": "0 9 * * *", "time_zone": "Europe/Berlin"}),
    )
    .await;
    assert_eq!(created["next_fire_at"], "2026-03-29T07:00:00.000Z");
}

#[tokio::test]
async fn missed_fires_are_created_after_a_restart_with_catch_up() {
    let (mut server, clock) = server_on_manual_clock().await;
    let created = add_trigger(
        &server,
        json!({"name": "c", "type": "caught", "interval": "1m"}),
    )
    .await;
    server.stop().await;
    clock.set(T0 + 10 * MINUTE + 30_000);
    server.restart().await;
    let after = wait_for_fired(&server, &created["id"], 10).await;
    assert_eq!(after["fired_count"], 10);
    assert_eq!(after["missed_count"], 0);
    assert_eq!(
        epoch_ms(after["next_fire_at"].as_str().unwrap()),
        T0 + 11 * MINUTE
    );
    let times = scheduled_times(&server.http_url(), "caught").await;
    assert_eq!(times.len(), 10);
    assert_eq!(epoch_ms(&times[0]), T0 + MINUTE);
    assert_consecutive(&times, MINUTE);
}

#[tokio::test]
async fn catch_up_creates_at_most_its_limit_of_missed_fires() {
    let (mut server, clock) = server_on_manual_clock().await;
    let created = add_trigger(
        &server,
        json!({"name": "c", "type": "capped", "interval": "1m", "max_catch_up": 3}),
    )
    .await;
    server.stop().await;
    clock.set(T0 + 10 * MINUTE + 30_000);
    server.restart().await;
    let after = wait_for_trigger(&server, &created["id"], |t| t["missed_count"] == 7).await;
    assert_eq!(after["fired_count"], 3);
    let times = scheduled_times(&server.http_url(), "capped").await;
    let expected: Vec<i64> = (1..=3).map(|k| T0 + k * MINUTE).collect();
    assert_eq!(
        times.iter().map(|t| epoch_ms(t)).collect::<Vec<_>>(),
        expected
    );
}

#[tokio::test]
async fn missed_fires_are_skipped_after_a_restart_without_catch_up() {
    let (mut server, clock) = server_on_manual_clock().await;
    let created = add_trigger(
        &server,
        json!({"name": "s", "type": "skipped", "interval": "1m", "catch_up": false}),
    )
    .await;
    server.stop().await;
    clock.set(T0 + 10 * MINUTE + 30_000);
    server.restart().await;
    let after = wait_for_trigger(&server, &created["id"], |t| t["missed_count"] == 10).await;
    assert_eq!(after["fired_count"], 0);
    assert_eq!(
        epoch_ms(after["next_fire_at"].as_str().unwrap()),
        T0 + 11 * MINUTE
    );
    clock.set(T0 + 11 * MINUTE);
    wait_for_fired(&server, &created["id"], 1).await;
    let times = scheduled_times(&server.http_url(), "skipped").await;
    assert_eq!(times.len(), 1);
    assert_eq!(epoch_ms(&times[0]), T0 + 11 * MINUTE);
}

#[tokio::test]
async fn no_fire_is_repeated_or_lost_across_a_graceful_restart() {
    let mut server = TestServer::start().await;
    let created = add_trigger(
        &server,
        json!({"name": "r", "type": "restarted", "interval": "1s"}),
    )
    .await;
    wait_for_fired(&server, &created["id"], 2).await;
    server.restart().await;
    let before = trigger(&server, &created["id"]).await["fired_count"]
        .as_u64()
        .unwrap();
    let after = wait_for_fired(&server, &created["id"], before + 2).await;
    let times = scheduled_times(&server.http_url(), "restarted").await;
    assert!(times.len() as u64 >= after["fired_count"].as_u64().unwrap());
    assert_consecutive(&times, 1000);
}

/// How many jobs a trigger of a server process has created.
async fn fired_count(http_url: &str, trigger_path: &str) -> u64 {
    let client = jobhost::client::RestClient::new(http_url, Some(ADMIN_KEY.into()));
    let data = client
        .call(reqwest::Method::GET, trigger_path, None)
        .await
        .expect("trigger read");
    data["fired_count"].as_u64().expect("count")
}

async fn wait_for_fired_count(http_url: &str, trigger_path: &str, count: u64) {
    for _ in 0..500 {
        if fired_count(http_url, trigger_path).await >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("trigger never fired {count} times");
}

#[tokio::test]
async fn no_fire_is_repeated_or_lost_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let process = ServerProcess::start(dir.path());
    let client = jobhost::client::RestClient::new(&process.http_url, Some(ADMIN_KEY.into()));
    let definition = json!({"name": "k", "type": "killed", "interval": "1s"});
    let created = client
        .call(reqwest::Method::POST, "/api/v1/triggers", Some(definition))
        .await
        .unwrap();
    let path = format!("/api/v1/triggers/{}", created["id"].as_str().unwrap());
    wait_for_fired_count(&process.http_url, &path, 2).await;
    process.kill_9();
    // Down across at least one fire time, which catch-up must then create, once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let process = ServerProcess::start(dir.path());
    let restarted_with = fired_count(&process.http_url, &path).await;
    wait_for_fired_count(&process.http_url, &path, restarted_with + 2).await;
    let total = fired_count(&process.http_url, &path).await;
    let times = scheduled_times(&process.http_url, "killed").await;
    assert!(
        times.len() as u64 >= total,
        "{} jobs, {total} fires",
        times.len()
    );
    assert!(
        times.len() >= 5,
        "fires before, during and after the outage: {times:?}"
    );
    assert_consecutive(&times, 1000);
}

#[tokio::test]
async fn a_trigger_ends_when_its_lifetime_is_over() {
    let (server, clock) = server_on_manual_clock().await;
    // Created at T0+30s: a 3m lifetime ends at T0+3m30s, after the fires at 1m, 2m and 3m.
    let created = add_trigger(
        &server,
        json!({"name": "l", "type": "mortal", "interval": "1m", "lifetime": "3m"}),
    )
    .await;
    assert_eq!(
        epoch_ms(created["end_at"].as_str().unwrap()),
        T0 + 3 * MINUTE + 30_000
    );
    for minute in 1..=3 {
        clock.set(T0 + minute * MINUTE);
        wait_for_fired(&server, &created["id"], minute as u64).await;
    }
    let ended = trigger(&server, &created["id"]).await;
    assert_eq!(ended["status"], "ended");
    assert!(ended["next_fire_at"].is_null());
    clock.set(T0 + 10 * MINUTE);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(trigger(&server, &created["id"]).await["fired_count"], 3);
}

#[tokio::test]
async fn overlap_skip_skips_fires_while_the_previous_job_is_unfinished() {
    let (server, clock) = server_on_manual_clock().await;
    let created = add_trigger(
        &server,
        json!({"name": "o", "type": "lonely", "interval": "1m", "overlap": "skip"}),
    )
    .await;
    clock.set(T0 + MINUTE);
    wait_for_fired(&server, &created["id"], 1).await;
    clock.set(T0 + 2 * MINUTE);
    let skipped = wait_for_trigger(&server, &created["id"], |t| t["skipped_count"] == 1).await;
    assert_eq!(skipped["fired_count"], 1);
    let mut client = server.client().await;
    let job = activate(&mut client, "lonely", "w", 1, 0).await.remove(0);
    complete(&mut client, &job.job_key).await.unwrap();
    clock.set(T0 + 3 * MINUTE);
    let fired = wait_for_fired(&server, &created["id"], 2).await;
    assert_eq!(fired["skipped_count"], 1);
    assert_eq!(
        epoch_ms(fired["last_fire_at"].as_str().unwrap()),
        T0 + 3 * MINUTE
    );
}

#[tokio::test]
async fn a_fire_whose_idempotency_key_a_job_holds_creates_nothing() {
    let (server, clock) = server_on_manual_clock().await;
    let rest = server.rest(ADMIN_KEY);
    let first_fire_key = "report-2026-01-01T00:01:00.000Z";
    let made_by_hand = rest
        .call(
            reqwest::Method::POST,
            "/api/v1/jobs",
            Some(json!({"type": "report", "idempotency_key": first_fire_key})),
        )
        .await
        .expect("job created");
    let created = add_trigger(
        &server,
        json!({"name": "r", "type": "report", "interval": "1m",
               "idempotency_key": "report-{scheduled_at}"}),
    )
    .await;
    assert_eq!(created["idempotency_key"], "report-{scheduled_at}");
    clock.set(T0 + MINUTE);
    let fired = wait_for_fired(&server, &created["id"], 1).await;
    assert_eq!(fired["last_job_key"], made_by_hand["job_key"]);
    assert_eq!(
        job_keys(&server, "report").await,
        [made_by_hand["job_key"].clone()]
    );
    clock.set(T0 + 2 * MINUTE);
    let fired = wait_for_fired(&server, &created["id"], 2).await;
    assert_eq!(
        job_keys(&server, "report").await,
        [
            made_by_hand["job_key"].clone(),
            fired["last_job_key"].clone()
        ]
    );
}

/// The keys of every job of a type, oldest first.
async fn job_keys(server: &TestServer, job_type: &str) -> Vec<Value> {
    jobs_of_type(&server.http_url(), job_type)
        .await
        .iter()
        .map(|job| job["job_key"].clone())
        .collect()
}

/// Every job of a type (up to 100), oldest first, as the REST listing shows them.
async fn jobs_of_type(http_url: &str, job_type: &str) -> Vec<Value> {
    let client = jobhost::client::RestClient::new(http_url, Some(ADMIN_KEY.into()));
    let path = format!("/api/v1/jobs?type={job_type}&page_size=100&sort_order=asc");
    let data = client
        .call(reqwest::Method::GET, &path, None)
        .await
        .expect("jobs listed");
    data["jobs"].as_array().expect("jobs").clone()
}

#[tokio::test]
async fn a_paused_trigger_does_not_fire_and_resumes_from_now() {
    let (server, clock) = server_on_manual_clock().await;
    let created = add_trigger(
        &server,
        json!({"name": "p", "type": "paused", "interval": "1m"}),
    )
    .await;
    let paused = patch_trigger(&server, &created["id"], json!({"enabled": false})).await;
    assert_eq!(paused["status"], "paused");
    assert!(paused["next_fire_at"].is_null());
    clock.set(T0 + 5 * MINUTE + 30_000);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(trigger(&server, &created["id"]).await["fired_count"], 0);
    let resumed = patch_trigger(&server, &created["id"], json!({"enabled": true})).await;
    assert_eq!(resumed["status"], "active");
    assert_eq!(
        epoch_ms(resumed["next_fire_at"].as_str().unwrap()),
        T0 + 6 * MINUTE
    );
    clock.set(T0 + 6 * MINUTE);
    let fired = wait_for_fired(&server, &created["id"], 1).await;
    assert_eq!(fired["fired_count"], 1);
    assert_eq!(
        fired["missed_count"], 0,
        "fires while paused are not missed fires"
    );
}

#[tokio::test]
async fn a_removed_trigger_stops_and_keeps_its_jobs() {
    let (server, clock) = server_on_manual_clock().await;
    let created = add_trigger(
        &server,
        json!({"name": "gone", "type": "gone", "interval": "1m"}),
    )
    .await;
    clock.set(T0 + MINUTE);
    wait_for_fired(&server, &created["id"], 1).await;
    let path = format!("/api/v1/triggers/{}", created["id"].as_str().unwrap());
    let rest = server.rest(ADMIN_KEY);
    rest.call(reqwest::Method::DELETE, &path, None)
        .await
        .unwrap();
    let missing = rest.call(reqwest::Method::GET, &path, None).await;
    assert!(matches!(
        missing,
        Err(jobhost::client::ClientError::Refused { ref code, .. }) if code == "NOT_FOUND"
    ));
    clock.set(T0 + 5 * MINUTE);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(scheduled_times(&server.http_url(), "gone").await.len(), 1);
}

#[tokio::test]
async fn idle_triggers_do_not_wake_the_scheduler() {
    // On the wall clock: a scheduler that polled would wake while it waits here.
    let server = TestServer::start().await;
    for n in 0..50 {
        add_trigger(
            &server,
            json!({"name": format!("idle-{n}"), "type": "idle", "cron": "0 0 1 1 *"}),
        )
        .await;
    }
    let stats = server.running().scheduler_stats();
    let wakeups = || stats.wakeups.load(std::sync::atomic::Ordering::Relaxed);
    // Every creation woke it once, to index the trigger.
    for _ in 0..250 {
        if wakeups() >= 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settled = wakeups();
    assert_eq!(settled, 50);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(wakeups(), settled, "the scheduler woke with nothing due");
    assert_eq!(stats.rounds.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// Posts a trigger definition; returns the HTTP status and the body.
async fn post_definition(server: &TestServer, key: &str, definition: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/triggers", server.http_url()))
        .header("x-api-key", key)
        .json(&definition)
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

#[tokio::test]
async fn bad_trigger_definitions_are_refused_with_precise_messages() {
    let server = TestServer::start().await;
    add_trigger(
        &server,
        json!({"name": "taken", "type": "t", "interval": "1h"}),
    )
    .await;
    let cases = [
        (
            json!({"name": "a", "type": "t", "cron": "* * *"}),
            "invalid cron expression '* * *': expected 5 fields (minute hour day-of-month month \
             day-of-week) or 6 with seconds first, got 3",
        ),
        (
            json!({"name": "a", "type": "t", "cron": "99 * * * *"}),
            "invalid cron expression '99 * * * *'",
        ),
        (
            json!({"name": "a", "type": "t", "interval": "0s"}),
            "invalid interval '0s': it must be positive",
        ),
        (
            json!({"name": "a", "type": "t", "interval": "-5m"}),
            "invalid interval '-5m': it must be positive",
        ),
        (
            json!({"name": "a", "type": "t", "cron": "0 9 * * *", "time_zone": "Mars/Olympus"}),
            "unknown time zone 'Mars/Olympus': use an IANA name such as UTC or Europe/Berlin",
        ),
        (
            json!({"name": "taken", "type": "t", "interval": "1m"}),
            "a trigger named 'taken' already exists in tenant 'default'",
        ),
        (
            json!({"name": "a", "type": "t"}),
            "a trigger needs a schedule: give cron",
        ),
        (
            json!({"name": "a", "type": "t", "cron": "* * * * *", "interval": "1m"}),
            "give either cron or interval, not both",
        ),
        (
            json!({"name": "a", "type": "t", "interval": "1m", "overlap": "sometimes"}),
            "overlap must be 'allow' or 'skip', got 'sometimes'",
        ),
        (
            json!({"name": "a", "type": "t", "interval": "1m", "end_at": "2001-01-01T00:00:00Z"}),
            "end_at must be in the future",
        ),
        (
            json!({"name": "a", "type": "t", "interval": "1m", "catchup": false}),
            "invalid JSON body: unknown field `catchup`",
        ),
        (
            json!({"name": "a", "type": "t", "interval": "1m", "custom_headers": {"jobhost-trigger": "x"}}),
            "custom header 'jobhost-trigger' is reserved",
        ),
        (
            json!({"name": " ", "type": "t", "interval": "1m"}),
            "name must not be blank",
        ),
        (
            json!({"name": "a", "type": "t", "interval": "1m", "idempotency_key": "r-{date}"}),
            "idempotency_key may hold only the placeholders {scheduled_at} and {scheduled_at_ms}",
        ),
    ];
    for (definition, message) in cases {
        let (status, body) = post_definition(&server, ADMIN_KEY, definition.clone()).await;
        assert_eq!(status, 400, "{definition}: {body}");
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "INVALID_ARGUMENT");
        let got = body["error"]["message"].as_str().unwrap();
        assert!(
            got.starts_with(message),
            "{definition}: {got:?} does not start with {message:?}"
        );
    }
    let listed = server
        .rest(ADMIN_KEY)
        .call(reqwest::Method::GET, "/api/v1/triggers", None)
        .await
        .unwrap();
    assert_eq!(
        listed["total_count"], 1,
        "nothing was stored by a refused definition"
    );
}

#[tokio::test]
async fn managing_triggers_needs_the_triggers_permission_within_the_keys_tenants() {
    let server = TestServer::start().await;
    let jobs_only = server.key(&["jobs"], &[]).await;
    let (status, body) = post_definition(
        &server,
        &jobs_only,
        json!({"name": "a", "type": "t", "interval": "1m"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("PERMISSION_DENIED"))
    );
    let acme = server.key(&["triggers"], &["acme"]).await;
    let (status, _) = post_definition(
        &server,
        &acme,
        json!({"name": "a", "type": "t", "interval": "1m", "tenant_id": "beta"}),
    )
    .await;
    assert_eq!(status, 403);
    let theirs = add_trigger(
        &server,
        json!({"name": "b", "type": "t", "interval": "1m", "tenant_id": "beta"}),
    )
    .await;
    let (status, _) = post_definition(
        &server,
        &acme,
        json!({"name": "a", "type": "t", "interval": "1m", "tenant_id": "acme"}),
    )
    .await;
    assert_eq!(status, 200);
    let rest = server.rest(&acme);
    let listed = rest
        .call(reqwest::Method::GET, "/api/v1/triggers", None)
        .await
        .unwrap();
    assert_eq!(listed["total_count"], 1);
    assert_eq!(listed["triggers"][0]["tenant_id"], "acme");
    let path = format!("/api/v1/triggers/{}", theirs["id"].as_str().unwrap());
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let hidden = rest.call(method, &path, None).await;
        assert!(matches!(
            hidden,
            Err(jobhost::client::ClientError::Refused { ref code, .. }) if code == "NOT_FOUND"
        ));
    }
}
