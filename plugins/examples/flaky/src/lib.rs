//! `flaky`: fails its first `fail_times` attempts (default 2), then completes. With
//! `"retryable": false` it rejects instead, and with `"backoff_ms"` it asks for that backoff.

use jobhost_plugin::{Handler, Job, Outcome, Result};
use serde_json::{Map, Value, json};

struct Flaky;

impl Handler for Flaky {
    fn handle(job: Job) -> Result<Outcome> {
        let variables: Map<String, Value> = job.variables()?;
        let fail_times = variables
            .get("fail_times")
            .and_then(Value::as_u64)
            .unwrap_or(2);
        let retryable = variables
            .get("retryable")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let backoff_ms = variables.get("backoff_ms").and_then(Value::as_u64);
        let attempt = u64::from(job.attempt());
        if attempt > fail_times {
            return Ok(Outcome::complete(
                json!({ "succeeded_on_attempt": attempt }),
            ));
        }
        let message = format!("attempt {attempt} of {} fails on purpose", fail_times + 1);
        jobhost_plugin::log::warn(&message);
        Ok(match (retryable, backoff_ms) {
            (false, _) => Outcome::reject(message),
            (true, Some(ms)) => Outcome::retry_after(message, ms),
            (true, None) => Outcome::retry(message),
        })
    }
}

jobhost_plugin::export_handler!(Flaky);
