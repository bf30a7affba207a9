//! The guest SDK of jobhost: write a job handler in a few lines of Rust.
//!
//! ```ignore
//! use jobhost_plugin::{Handler, Job, Outcome, Result};
//!
//! struct Greet;
//!
//! impl Handler for Greet {
//!     fn handle(job: Job) -> Result<Outcome> {
//!         let name: String = job.variable("name")?;
//!         jobhost_plugin::log::info(&format!("greeting {name}"));
//!         Ok(Outcome::complete(serde_json::json!({ "greeting": format!("Hello, {name}!") })))
//!     }
//! }
//!
//! jobhost_plugin::export_handler!(Greet);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` file is the
//! component to deploy. An `Err` from `handle` is a retryable failure carrying the error's
//! message; a panic is one too.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub mod http;
pub mod kv;

/// Bindings generated from `wit/job-handler.wit`.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "job-handler",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_job_handler",
        default_bindings_module: "jobhost_plugin::bindings",
        generate_all,
    });
}

use bindings::jobhost::plugin::{host, types};

/// Any error a handler returns; it becomes a retryable failure.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A job handler: called once per attempt.
pub trait Handler {
    fn handle(job: Job) -> Result<Outcome>;
}

/// Exports a [`Handler`] as the component's `handle` function.
#[macro_export]
macro_rules! export_handler {
    ($handler:ty) => {
        #[doc(hidden)]
        pub struct __JobhostExport;

        impl $crate::bindings::Guest for __JobhostExport {
            fn handle(
                job: $crate::bindings::jobhost::plugin::types::Job,
            ) -> $crate::bindings::jobhost::plugin::types::Outcome {
                $crate::run::<$handler>(job)
            }
        }

        $crate::bindings::__export_job_handler!(__JobhostExport);
    };
}

#[doc(hidden)]
pub fn run<H: Handler>(job: types::Job) -> types::Outcome {
    match H::handle(Job { inner: job }) {
        Ok(outcome) => outcome.inner,
        Err(error) => Outcome::retry(error.to_string()).inner,
    }
}

/// The job an attempt works on.
pub struct Job {
    inner: types::Job,
}

impl Job {
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    pub fn job_type(&self) -> &str {
        &self.inner.job_type
    }

    pub fn tenant_id(&self) -> &str {
        &self.inner.tenant_id
    }

    /// 1 for the first attempt.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// Retries left, counting this attempt.
    pub fn retries(&self) -> i32 {
        self.inner.retries
    }

    /// When the attempt is cut off, in epoch milliseconds.
    pub fn deadline_ms(&self) -> i64 {
        self.inner.deadline_ms
    }

    /// The variables as JSON object text.
    pub fn variables_json(&self) -> &str {
        &self.inner.variables
    }

    /// All variables, deserialized into `T`.
    pub fn variables<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_str(&self.inner.variables)?)
    }

    /// One variable, deserialized into `T`; an error if it is missing or of another shape.
    pub fn variable<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let all: serde_json::Map<String, serde_json::Value> = self.variables()?;
        let value = all
            .get(name)
            .cloned()
            .ok_or_else(|| format!("variable '{name}' is missing"))?;
        Ok(serde_json::from_value(value)?)
    }

    /// A custom header, if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner
            .custom_headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// How an attempt ends.
pub struct Outcome {
    inner: types::Outcome,
}

fn json_text(value: impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(map)) => serde_json::Value::Object(map).to_string(),
        Ok(serde_json::Value::Null) => "{}".to_string(),
        Ok(other) => serde_json::json!({ "result": other }).to_string(),
        Err(error) => serde_json::json!({ "result_error": error.to_string() }).to_string(),
    }
}

impl Outcome {
    /// Success (Ack) with result variables; a non-object value is stored as `result`.
    pub fn complete(variables: impl Serialize) -> Outcome {
        Outcome {
            inner: types::Outcome::Complete(json_text(variables)),
        }
    }

    /// Success with follow-up jobs or a custom status: see [`Completion`].
    pub fn completion(variables: impl Serialize) -> Completion {
        Completion {
            inner: types::Completion {
                variables: json_text(variables),
                follow_ups: Vec::new(),
                status: None,
            },
        }
    }

    /// A failure the retry policy may retry (Fail).
    pub fn retry(message: impl Into<String>) -> Outcome {
        Outcome::fail(message.into(), true, None)
    }

    /// A failure to retry after `backoff_ms` (Retry).
    pub fn retry_after(message: impl Into<String>, backoff_ms: u64) -> Outcome {
        Outcome::fail(message.into(), true, Some(backoff_ms))
    }

    /// A failure never to retry (Reject): the job fails at once.
    pub fn reject(message: impl Into<String>) -> Outcome {
        Outcome::fail(message.into(), false, None)
    }

    fn fail(message: String, retryable: bool, backoff_ms: Option<u64>) -> Outcome {
        Outcome {
            inner: types::Outcome::Fail(types::Failure {
                message,
                retryable,
                backoff_ms,
            }),
        }
    }
}

/// A successful outcome with follow-up jobs, created atomically with the completion, and/or a
/// custom status.
pub struct Completion {
    inner: types::Completion,
}

impl Completion {
    /// Creates a job of `job_type` in the same tenant when this one completes.
    pub fn follow_up(self, job_type: impl Into<String>, variables: impl Serialize) -> Completion {
        self.with(FollowUp::new(job_type, variables))
    }

    /// Like [`Completion::follow_up`], activatable `delay_ms` after the completion.
    pub fn follow_up_after(
        self,
        job_type: impl Into<String>,
        variables: impl Serialize,
        delay_ms: u64,
    ) -> Completion {
        self.with(FollowUp::new(job_type, variables).delay_ms(delay_ms))
    }

    /// Creates `follow_up` when this job completes.
    pub fn with(mut self, follow_up: FollowUp) -> Completion {
        self.inner.follow_ups.push(follow_up.inner);
        self
    }

    /// Records a custom status word with the result (as the result variable `status`).
    pub fn status(mut self, status: impl Into<String>) -> Completion {
        self.inner.status = Some(status.into());
        self
    }
}

/// A job created together with a completion, in the completed job's tenant.
pub struct FollowUp {
    inner: types::FollowUp,
}

impl FollowUp {
    pub fn new(job_type: impl Into<String>, variables: impl Serialize) -> FollowUp {
        FollowUp {
            inner: types::FollowUp {
                job_type: job_type.into(),
                variables: json_text(variables),
                delay_ms: 0,
                idempotency_key: None,
            },
        }
    }

    /// Not activatable before `delay_ms` after the completion.
    pub fn delay_ms(mut self, delay_ms: u64) -> FollowUp {
        self.inner.delay_ms = delay_ms;
        self
    }

    /// Created only if no job of its type in the tenant holds `key` (while that job or its
    /// record exists): a follow-up that several jobs ask for is created once.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> FollowUp {
        self.inner.idempotency_key = Some(key.into());
        self
    }
}

impl From<Completion> for Outcome {
    fn from(completion: Completion) -> Outcome {
        Outcome {
            inner: types::Outcome::Completed(completion.inner),
        }
    }
}

/// Log lines kept with the attempt.
pub mod log {
    use super::host::{self, Level};

    pub fn trace(message: &str) {
        host::log(Level::Trace, message);
    }

    pub fn debug(message: &str) {
        host::log(Level::Debug, message);
    }

    pub fn info(message: &str) {
        host::log(Level::Info, message);
    }

    pub fn warn(message: &str) {
        host::log(Level::Warn, message);
    }

    pub fn error(message: &str) {
        host::log(Level::Error, message);
    }
}

/// The config values and secrets the handler was granted at deploy (`--config KEY=VALUE`,
/// `--secret NAME`). Using any of these makes the component import `wasi:config/store`,
/// which is refused at upload unless the handler is granted a config value or a secret.
pub mod config {
    use super::Result;
    use super::bindings::wasi::config::store;

    fn describe(error: store::Error) -> String {
        match error {
            store::Error::Upstream(text) | store::Error::Io(text) => text,
        }
    }

    /// The value granted under `key`, if any.
    pub fn get(key: &str) -> Result<Option<String>> {
        Ok(store::get(key).map_err(describe)?)
    }

    /// The value granted under `key`; an error naming the grant to add when there is none.
    pub fn require(key: &str) -> Result<String> {
        get(key)?.ok_or_else(|| {
            format!("no config value or secret '{key}': deploy with --config {key}=... or --secret {key}").into()
        })
    }

    /// Every granted key with its value.
    pub fn all() -> Result<Vec<(String, String)>> {
        Ok(store::get_all().map_err(describe)?)
    }
}

/// The value of the tenant's secret `name`, granted with `--secret NAME`. Values that appear
/// in the attempt's output or failure message are redacted before they are stored.
pub fn secret(name: &str) -> Result<String> {
    config::require(name)
}

/// Milliseconds left before the attempt is cut off.
pub fn remaining_ms() -> i64 {
    host::remaining_ms()
}

/// Whether the job was cancelled while this attempt runs.
pub fn is_cancelled() -> bool {
    host::is_cancelled()
}
