//! Job variables and the rest of a new job: JSON object text is stored, compacted; anything
//! else is refused naming what is wrong.

use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::job::ProcessRef;
use crate::service::ActivateJobs;

/// Text that might be JSON variables: objects, other JSON, damaged JSON, very deep nesting,
/// blanks and anything at all.
fn variables_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => object_text(),
        2 => json_value().prop_map(|value| value.to_string()),
        3 => (object_text(), mutations(3)).prop_map(|(text, damage)| mutate_text(&text, &damage)),
        1 => (0usize..600, prop::bool::ANY).prop_map(|(depth, arrays)| if arrays {
            format!("{}{}", "[".repeat(depth), "]".repeat(depth))
        } else {
            format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
        }),
        1 => "[ \t\r\n]{0,4}",
        1 => any::<String>(),
    ]
}

fn object_text() -> impl Strategy<Value = String> {
    prop::collection::btree_map(any::<String>(), json_value(), 0..6)
        .prop_map(|fields| Value::Object(fields.into_iter().collect()).to_string())
}

/// What the service must have stored for `text`, if it is acceptable at all.
fn expected_variables(text: &str) -> Option<String> {
    if text.trim().is_empty() {
        return Some("{}".into());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => Some(value.to_string()),
        _ => None,
    }
}

#[test]
fn variables_are_stored_when_a_json_object_and_refused_otherwise() {
    let fixture = Fixture::new();
    fuzz(256, variables_text(), |text| {
        let request = CreateJob {
            job_type: "t".into(),
            variables: text.clone(),
            ..CreateJob::default()
        };
        let created = fixture.block_on(fixture.service.create_job(&Principal::admin(), request));
        match (expected_variables(&text), created) {
            (Some(expected), Ok(key)) => {
                let job = fixture
                    .block_on(
                        fixture
                            .service
                            .get_job(&Principal::admin(), &key.to_string()),
                    )
                    .expect("the created job");
                prop_assert_eq!(job.payload.variables, expected);
            }
            (None, Err(ServiceError::InvalidArgument(message))) => {
                prop_assert!(message.starts_with("variables "), "{message:?}");
            }
            (expected, answer) => {
                return Err(TestCaseError::fail(format!(
                    "expected {expected:?}, got {answer:?}"
                )));
            }
        }
        Ok(())
    });
}

#[test]
fn completion_results_are_stored_when_a_json_object_and_refused_otherwise() {
    let fixture = Fixture::new();
    fuzz(64, variables_text(), |text| {
        let admin = Principal::admin();
        fixture.create("{}");
        let activation = ActivateJobs {
            job_type: "t".into(),
            worker: "w".into(),
            max_jobs: 1,
            request_timeout_ms: Some(-1),
            ..ActivateJobs::default()
        };
        let leased = fixture.block_on(fixture.service.activate_jobs(&admin, activation));
        let job = leased.expect("activated").pop().expect("one job");
        let key = crate::job::JobKey::leased(job.record.id, job.record.lease).to_string();
        let completed = fixture.block_on(fixture.service.complete_job(&admin, &key, text.clone()));
        match (expected_variables(&text), completed) {
            (Some(expected), Ok(record)) => prop_assert_eq!(record.result, Some(expected)),
            (None, Err(ServiceError::InvalidArgument(message))) => {
                prop_assert!(message.starts_with("variables "), "{message:?}");
            }
            (expected, answer) => {
                return Err(TestCaseError::fail(format!(
                    "expected {expected:?}, got {answer:?}"
                )));
            }
        }
        Ok(())
    });
}

fn process_ref() -> impl Strategy<Value = ProcessRef> {
    prop::collection::vec("\\PC{0,8}", 6).prop_map(|mut texts| ProcessRef {
        element_instance_key: texts.pop().unwrap_or_default(),
        element_id: texts.pop().unwrap_or_default(),
        process_definition_key: texts.pop().unwrap_or_default(),
        process_definition_version: texts.pop().unwrap_or_default(),
        bpmn_process_id: texts.pop().unwrap_or_default(),
        process_instance_key: texts.pop().unwrap_or_default(),
    })
}

/// Epoch ms or a delay: none, the plausible, the edges and anything.
fn moment() -> impl Strategy<Value = i64> {
    prop_oneof![
        2 => Just(0),
        2 => -5i64..5,
        2 => 0i64..4_000_000_000_000,
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        2 => any::<i64>(),
    ]
}

fn create_request() -> impl Strategy<Value = CreateJob> {
    let job_type = prop_oneof![text_around(&["t", " email ", ""]), "x{250,260}",];
    let tenant = prop_oneof![
        text_around(&["", "default", "acme", "a.b_c-d"]),
        "[A-Za-z0-9._-]{28,34}",
    ];
    let retries = prop::option::of(prop_oneof![-2i32..1003, any::<i32>()]);
    let headers = prop::collection::btree_map(any::<String>(), any::<String>(), 0..4);
    (
        (job_type, variables_text(), headers, retries),
        (tenant, any::<i32>(), moment(), moment(), process_ref()),
    )
        .prop_map(
            |(
                (job_type, variables, custom_headers, retries),
                (tenant_id, priority, run_at, delay_ms, process),
            )| {
                CreateJob {
                    job_type,
                    variables,
                    custom_headers,
                    retries,
                    tenant_id,
                    priority,
                    run_at,
                    delay_ms,
                    process,
                    idempotency_key: String::new(),
                }
            },
        )
}

#[test]
fn new_jobs_are_stored_or_refused_naming_what_is_wrong() {
    let fixture = Fixture::new();
    fuzz(256, create_request(), |request| {
        let created = fixture.block_on(fixture.service.create_job(&Principal::admin(), request));
        assert_ok_or_invalid(
            &created,
            &[
                "type",
                "tenant",
                "variables",
                "header",
                "retries",
                "run_at",
                "delay",
            ],
        )
    });
}

/// Creates a job that is to run at `run_at` or after `delay_ms`; returns the refusal.
fn refusal_of_schedule(run_at: i64, delay_ms: i64) -> String {
    let fixture = Fixture::new();
    let request = CreateJob {
        job_type: "t".into(),
        run_at,
        delay_ms,
        ..CreateJob::default()
    };
    match fixture.block_on(fixture.service.create_job(&Principal::admin(), request)) {
        Err(ServiceError::InvalidArgument(message)) => message,
        other => panic!("expected an invalid argument, got {other:?}"),
    }
}

#[test]
fn a_delay_too_large_for_a_time_is_refused_naming_the_delay() {
    assert!(refusal_of_schedule(0, i64::MAX).starts_with("delay "));
}

#[test]
fn a_delay_beyond_the_scheduling_horizon_is_refused_naming_the_delay() {
    let horizon = crate::job::limits::MAX_BACKOFF_MS;
    assert!(refusal_of_schedule(0, horizon + 1_000).starts_with("delay "));
}

#[test]
fn a_run_at_beyond_the_scheduling_horizon_is_refused_naming_run_at() {
    assert!(refusal_of_schedule(i64::MAX, 0).starts_with("run_at "));
}
