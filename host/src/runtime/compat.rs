//! Components built against an earlier contract (`wit/compat/`): the 0.1.0 world, whose
//! follow-ups carry no idempotency key, served by the current host functions and read as
//! current outcomes, so that a handler deployed before 0.2.0 keeps running unchanged.

use wasmtime::component::{HasSelf, Linker};

use super::AttemptState;
use super::jobhost::plugin::host as current_host;
use super::jobhost::plugin::types as current;

wasmtime::component::bindgen!({
    world: "jobhost:plugin/job-handler@0.1.0",
    path: ["../wit/deps/config", "../wit/deps/keyvalue", "../wit/compat/0.1.0"],
    imports: { default: async },
    exports: { default: async },
    // The capabilities are the same interfaces in both contracts: one implementation.
    with: {
        "wasi:config/store": super::wasi::config::store,
        "wasi:keyvalue/store": super::wasi::keyvalue::store,
        "wasi:keyvalue/atomics": super::wasi::keyvalue::atomics,
    },
});

use self::jobhost::plugin::host::{Host, Level};
use self::jobhost::plugin::types as v0_1;

/// Adds the 0.1.0 `jobhost:plugin` interfaces to a linker that offers the current ones (and
/// the shared capabilities) already.
pub(super) fn add_to_linker(linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
    v0_1::add_to_linker::<AttemptState, HasSelf<AttemptState>>(linker, |state| state)?;
    self::jobhost::plugin::host::add_to_linker::<AttemptState, HasSelf<AttemptState>>(
        linker,
        |state| state,
    )
}

impl Host for AttemptState {
    async fn log(&mut self, level: Level, message: String) {
        let level = match level {
            Level::Trace => current_host::Level::Trace,
            Level::Debug => current_host::Level::Debug,
            Level::Info => current_host::Level::Info,
            Level::Warn => current_host::Level::Warn,
            Level::Error => current_host::Level::Error,
        };
        current_host::Host::log(self, level, message).await
    }

    async fn remaining_ms(&mut self) -> i64 {
        current_host::Host::remaining_ms(self).await
    }

    async fn is_cancelled(&mut self) -> bool {
        current_host::Host::is_cancelled(self).await
    }
}

impl v0_1::Host for AttemptState {}

/// The job as a 0.1.0 handler receives it: the record did not change.
pub(super) fn job(job: current::Job) -> v0_1::Job {
    v0_1::Job {
        key: job.key,
        job_type: job.job_type,
        tenant_id: job.tenant_id,
        retries: job.retries,
        attempt: job.attempt,
        variables: job.variables,
        custom_headers: job.custom_headers,
        deadline_ms: job.deadline_ms,
    }
}

/// A 0.1.0 outcome as the current contract's: follow-ups without an idempotency key.
pub(super) fn outcome(outcome: v0_1::Outcome) -> current::Outcome {
    match outcome {
        v0_1::Outcome::Complete(variables) => current::Outcome::Complete(variables),
        v0_1::Outcome::Completed(completion) => current::Outcome::Completed(current::Completion {
            variables: completion.variables,
            follow_ups: completion
                .follow_ups
                .into_iter()
                .map(|follow_up| current::FollowUp {
                    job_type: follow_up.job_type,
                    variables: follow_up.variables,
                    delay_ms: follow_up.delay_ms,
                    idempotency_key: None,
                })
                .collect(),
            status: completion.status,
        }),
        v0_1::Outcome::Fail(failure) => current::Outcome::Fail(current::Failure {
            message: failure.message,
            retryable: failure.retryable,
            backoff_ms: failure.backoff_ms,
        }),
    }
}
