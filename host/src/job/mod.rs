//! Job domain types: what a job is, how it is addressed, and the limits on what it may hold.
//!
//! A job's mutable state lives in one small [`JobRecord`], rewritten on every transition; its
//! immutable inputs live beside it in a [`JobPayload`], written once at creation. Which
//! transitions are allowed is decided in [`state`] and nowhere else.

pub mod keys;
pub mod limits;
pub mod state;
#[cfg(test)]
pub(crate) mod state_properties;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

pub use keys::JobKey;

/// Internal job identity: unique, never reused, increasing with creation time.
pub type JobId = u64;

/// Milliseconds since the Unix epoch.
pub type EpochMs = i64;

/// The lifecycle of a job. Each state names the task that moves jobs out of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum JobState {
    /// Created but not due yet: scheduled (`run_at`/`delay`) or waiting out a failure's
    /// backoff. The store's due-time timer makes it activatable at `due_at`.
    Pending,
    /// Ready to be leased by `ActivateJobs` or a waiting long poll.
    Activatable,
    /// Leased to one worker until `deadline`; the timer makes it activatable again after that.
    Activated,
    /// Finished successfully, with its result. Final.
    Completed,
    /// Out of retries: an incident. `UpdateJobRetries` makes it activatable again.
    Failed,
    /// Cancelled by a user. Final.
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Pending,
        JobState::Activatable,
        JobState::Activated,
        JobState::Completed,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Activatable => "activatable",
            JobState::Activated => "activated",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses the API vocabulary; `running` is accepted as a synonym of `activated`.
    pub fn parse(text: &str) -> Option<JobState> {
        match text.to_ascii_lowercase().as_str() {
            "pending" => Some(JobState::Pending),
            "activatable" => Some(JobState::Activatable),
            "activated" | "running" => Some(JobState::Activated),
            "completed" => Some(JobState::Completed),
            "failed" => Some(JobState::Failed),
            "cancelled" | "canceled" => Some(JobState::Cancelled),
            _ => None,
        }
    }

    /// Whether the job still waits for, or is under, a worker (it is kept in memory then).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            JobState::Pending | JobState::Activatable | JobState::Activated
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed attempt, as kept in a job's failure history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// 1 for the first failure of the job.
    pub attempt: u32,
    pub failed_at: EpochMs,
    pub worker: String,
    pub error: String,
    /// The retries the failure left the job with.
    pub retries: i32,
}

/// Everything about a job that changes over its life. Small on purpose: it is rewritten on
/// every transition, so variables stay in the [`JobPayload`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub tenant: String,
    pub job_type: String,
    pub state: JobState,
    pub priority: i32,
    pub retries: i32,
    pub original_retries: i32,
    pub created_at: EpochMs,
    /// When a pending job becomes activatable; 0 in every other state.
    pub due_at: EpochMs,
    /// The worker holding the job, or that last held it.
    pub worker: String,
    pub activated_at: EpochMs,
    /// End of the current lease while activated; 0 in every other state.
    pub deadline: EpochMs,
    /// Lease length of the current or last activation.
    pub timeout_ms: i64,
    /// Number of the current (or last) lease: how many times the job was activated.
    pub lease: u32,
    /// Failed attempts so far.
    pub failures: u32,
    pub finished_at: EpochMs,
    pub error_message: String,
    /// The most recent failures (at most [`limits::FAILURE_HISTORY_KEPT`]), oldest first.
    pub failure_history: Vec<FailureRecord>,
    /// Result variables (JSON object text), once completed.
    pub result: Option<String>,
}

impl JobRecord {
    /// The due time the store's timer watches for this job, if any.
    pub fn timer_due(&self) -> Option<EpochMs> {
        match self.state {
            JobState::Pending => Some(self.due_at),
            JobState::Activated => Some(self.deadline),
            _ => None,
        }
    }
}

/// Optional workflow metadata that a job carries through to its workers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    pub process_instance_key: String,
    pub bpmn_process_id: String,
    pub process_definition_version: String,
    pub process_definition_key: String,
    pub element_id: String,
    pub element_instance_key: String,
}

/// A job's inputs, fixed at creation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPayload {
    /// JSON object text.
    pub variables: String,
    pub custom_headers: BTreeMap<String, String>,
    pub process: ProcessRef,
}

/// A whole job as read back: record and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub record: JobRecord,
    pub payload: JobPayload,
}

/// A validated request to create a job.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub tenant: String,
    pub job_type: String,
    pub priority: i32,
    pub retries: i32,
    /// Not activatable before this time; `None` or a past time means at once.
    pub run_at: Option<EpochMs>,
    pub payload: JobPayload,
    /// Unique per tenant and type while the job exists: a second job with the same key is
    /// not created, and its creator is answered the first job's id.
    pub idempotency_key: Option<String>,
}

/// The tenants a caller may touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantScope {
    All,
    Only(BTreeSet<String>),
}

impl TenantScope {
    pub fn contains(&self, tenant: &str) -> bool {
        match self {
            TenantScope::All => true,
            TenantScope::Only(tenants) => tenants.contains(tenant),
        }
    }

    pub fn only<I: IntoIterator<Item = S>, S: Into<String>>(tenants: I) -> TenantScope {
        TenantScope::Only(tenants.into_iter().map(Into::into).collect())
    }
}

/// The current wall-clock time in epoch milliseconds.
pub fn now_ms() -> EpochMs {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    since.as_millis() as EpochMs
}

/// Formats epoch ms as RFC 3339 UTC with milliseconds; `None` for 0.
pub fn format_time(ms: EpochMs) -> Option<String> {
    if ms == 0 {
        return None;
    }
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time.format(&format).ok()
}

/// One attempt run by the host's Wasm executor, kept with the job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptLog {
    /// The job's activation (lease) number the attempt ran under.
    pub attempt: u32,
    pub worker: String,
    pub handler_version: u32,
    pub started_at: EpochMs,
    pub duration_us: u64,
    /// `completed`, or the reason the attempt failed.
    pub outcome: String,
    /// Captured stdout, stderr and log lines (bounded).
    pub output: String,
}
