//! The sandbox against the example handlers and misbehaving fixtures built from `plugins/`.

use std::sync::Arc;
use std::time::Duration;

use super::*;

fn plugin(name: &str) -> Vec<u8> {
    let path = Path::new(env!("JOBHOST_PLUGINS_DIR")).join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn runtime(cache_dir: Option<PathBuf>) -> Runtime {
    Runtime::new(RuntimeConfig {
        max_memory_mb: 128,
        max_concurrent_attempts: 16,
        cache_dir,
    })
    .expect("runtime")
}

fn input(variables: &str) -> AttemptInput {
    AttemptInput {
        key: "7".into(),
        job_type: "t".into(),
        tenant_id: "default".into(),
        retries: 3,
        attempt: 1,
        variables: variables.into(),
        custom_headers: vec![("h".into(), "v".into())],
        deadline_ms: 0,
    }
}

fn limits(timeout_ms: u64) -> AttemptLimits {
    AttemptLimits {
        memory_mb: 32,
        timeout: Duration::from_millis(timeout_ms),
        fuel: None,
    }
}

async fn run(name: &str, variables: &str, limits: AttemptLimits) -> AttemptResult {
    let runtime = runtime(None);
    let handler = runtime.compile(&plugin(name)).expect("compiles");
    runtime
        .run(
            &handler,
            &input(variables),
            limits,
            Capabilities::default(),
            Arc::default(),
        )
        .await
}

fn failure(result: &AttemptResult) -> &str {
    match &result.outcome {
        AttemptOutcome::Failed { reason, .. } => reason,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_handler_completes_with_its_result_and_output() {
    let result = run("echo", r#"{"a":1}"#, limits(5_000)).await;
    let AttemptOutcome::Completed { variables, .. } = &result.outcome else {
        panic!("{:?}", result.outcome);
    };
    let variables: serde_json::Value = serde_json::from_str(variables).unwrap();
    assert_eq!(variables["a"], 1);
    assert_eq!(variables["echoed_by"], "echo");
    assert!(
        result.output.contains("[info] echoing 1 variables"),
        "{}",
        result.output
    );
    assert!(
        result.output.contains("echo handled job 7"),
        "{}",
        result.output
    );
}

#[tokio::test]
async fn an_attempt_finds_nothing_an_earlier_attempt_left_in_memory() {
    let runtime = runtime(None);
    let handler = runtime.compile(&plugin("remembers")).expect("compiles");
    for _ in 0..3 {
        let result = runtime
            .run(
                &handler,
                &input("{}"),
                limits(5_000),
                Capabilities::default(),
                Arc::default(),
            )
            .await;
        let AttemptOutcome::Completed { variables, .. } = &result.outcome else {
            panic!("{:?} {}", result.outcome, result.output);
        };
        let seen: serde_json::Value = serde_json::from_str(variables).unwrap();
        assert_eq!(
            seen,
            serde_json::json!({"calls": 1, "static_marked": false, "heap_marked": false})
        );
    }
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_at_its_deadline() {
    let result = run("spin", "{}", limits(300)).await;
    assert_eq!(failure(&result), "deadline of 300 ms exceeded");
}

#[tokio::test]
async fn unbounded_memory_growth_hits_the_memory_limit() {
    let result = run("leak", "{}", limits(10_000)).await;
    assert_eq!(failure(&result), "memory limit of 32 MiB exceeded");
}

#[tokio::test]
async fn a_panic_is_a_trap_with_its_message_in_the_output() {
    let result = run("trap", "{}", limits(5_000)).await;
    assert_eq!(failure(&result), "trap: unreachable");
    assert!(
        result.output.contains("panics on purpose"),
        "{}",
        result.output
    );
}

#[tokio::test]
async fn deep_recursion_is_a_stack_overflow() {
    let result = run("recursion", "{}", limits(5_000)).await;
    assert_eq!(failure(&result), "trap: stack overflow");
}

#[tokio::test]
async fn huge_output_is_bounded_and_the_attempt_still_completes() {
    let result = run("huge_output", "{}", limits(20_000)).await;
    assert!(
        matches!(result.outcome, AttemptOutcome::Completed { .. }),
        "{:?}",
        result.outcome
    );
    assert!(result.output.len() < OUTPUT_LIMIT + 200);
    assert!(result.output.contains("output truncated"));
}

#[tokio::test]
async fn fuel_limits_computation() {
    let mut limits = limits(10_000);
    limits.fuel = Some(1_000_000);
    let result = run("spin", "{}", limits).await;
    assert_eq!(failure(&result), "fuel limit of 1000000 exceeded");
}

#[tokio::test]
async fn an_interrupt_stops_a_running_attempt_promptly() {
    let runtime = runtime(None);
    let handler = runtime.compile(&plugin("spin")).unwrap();
    let interrupt = Arc::new(Interrupt::default());
    let trigger = interrupt.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        trigger.trigger(InterruptReason::Cancelled);
    });
    let result = runtime
        .run(
            &handler,
            &input("{}"),
            limits(30_000),
            Capabilities::default(),
            interrupt,
        )
        .await;
    assert_eq!(
        result.outcome,
        AttemptOutcome::Interrupted(InterruptReason::Cancelled)
    );
    assert!(result.duration < Duration::from_secs(10));
}

#[tokio::test]
async fn follow_ups_and_status_come_back_with_the_completion() {
    let result = run(
        "fanout",
        r#"{"next_type":"child","count":2}"#,
        limits(5_000),
    )
    .await;
    let AttemptOutcome::Completed {
        follow_ups, status, ..
    } = result.outcome
    else {
        panic!("not completed");
    };
    assert_eq!(follow_ups.len(), 2);
    assert_eq!(follow_ups[0].job_type, "child");
    assert_eq!(status.as_deref(), Some("fanned-out"));
}

#[tokio::test]
async fn follow_ups_carry_the_idempotency_keys_the_handler_gave_them() {
    let result = run(
        "fanout",
        r#"{"next_type":"child","count":2,"once":"batch-7"}"#,
        limits(5_000),
    )
    .await;
    let AttemptOutcome::Completed { follow_ups, .. } = result.outcome else {
        panic!("not completed: {:?}", result.outcome);
    };
    let keys: Vec<_> = follow_ups
        .iter()
        .map(|f| f.idempotency_key.as_deref())
        .collect();
    assert_eq!(keys, [Some("batch-7-0"), Some("batch-7-1")]);
}

#[tokio::test]
async fn a_handler_built_against_the_0_1_contract_still_runs() {
    let result = run("contract_0_1", "{}", limits(5_000)).await;
    let AttemptOutcome::Completed {
        variables,
        follow_ups,
        status,
    } = result.outcome
    else {
        panic!("not completed: {:?}", result.outcome);
    };
    assert_eq!(variables, r#"{"contract":"0.1.0"}"#);
    assert_eq!(status.as_deref(), Some("old"));
    assert_eq!(
        follow_ups,
        [FollowUpRequest {
            job_type: "next".into(),
            variables: r#"{"parent":"7"}"#.into(),
            delay_ms: 0,
            idempotency_key: None,
        }]
    );
    assert!(
        result.output.contains("[info] job 7 on the 0.1.0 contract"),
        "{}",
        result.output
    );
}

#[test]
fn uploads_that_are_not_handlers_are_rejected_precisely() {
    let runtime = runtime(None);
    let error = |bytes: &[u8]| runtime.compile(bytes).err().expect("rejected").to_string();
    assert!(error(b"hello").starts_with("not a WebAssembly component"));
    assert!(error(b"\0asm\x01\0\0\0").contains("core WebAssembly module"));
    assert!(error(&plugin("bad_import")).contains("acme:evil/backdoor"));
    assert!(error(&plugin("wrong_world")).contains("job-handler world"));
}

/// Why `fixture`, followed by a section whose length runs past the end (which no compiler
/// accepts), is refused.
fn refusal_with_undecodable_tail(fixture: &str) -> ComponentError {
    let mut bytes = plugin(fixture);
    bytes.extend_from_slice(&[0x00, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    runtime(None).compile(&bytes).err().expect("rejected")
}

#[test]
fn an_import_not_offered_is_refused_before_the_component_is_compiled() {
    // Only a check that reads the imports before compiling can name the import.
    assert_eq!(
        refusal_with_undecodable_tail("bad_import"),
        ComponentError::UnknownImport("acme:evil/backdoor".into())
    );
}

#[test]
fn a_malformed_component_is_reported_by_the_compiler() {
    let error = refusal_with_undecodable_tail("echo");
    assert!(matches!(error, ComponentError::NotAComponent(_)), "{error}");
}

#[test]
fn a_second_load_comes_from_the_compiled_code_cache() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = plugin("echo");
    let first = runtime(Some(dir.path().into()))
        .load("abc", &bytes)
        .unwrap();
    assert_eq!(first.source, CodeSource::Compiled);
    let second = runtime(Some(dir.path().into()))
        .load("abc", &bytes)
        .unwrap();
    assert_eq!(second.source, CodeSource::Cache);
}
