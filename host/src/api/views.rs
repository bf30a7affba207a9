//! What the REST API answers, as types: each is serialized into the response and described in
//! the OpenAPI document from the same definition, so the document cannot drift from the
//! answers.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::job::format_time;
use crate::job::{AttemptLog, Job, JobKey, JobState, now_ms};
use crate::service::JobsPage;
use crate::service::handlers::LoadedHandler;
use crate::store::index::{IndexStats, StateCounts};
use crate::trigger::schedule::format_duration;
use crate::trigger::{Schedule, TriggerRecord};

/// Every successful answer: `{"success": true, "data": …, "request_id": …}`.
#[derive(Serialize, ToSchema)]
pub struct Envelope<T: ToSchema> {
    pub success: bool,
    pub data: T,
    pub request_id: String,
}

/// Every failed answer, with a 4xx or 5xx status.
#[derive(Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// Always false.
    pub success: bool,
    pub error: ErrorBody,
    pub request_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND, FAILED_PRECONDITION,
    /// RESOURCE_EXHAUSTED, UNAVAILABLE or INTERNAL.
    pub code: String,
    pub message: String,
}

/// A job in the shape of the REST reference. Fields that belong to one state appear only in
/// that state.
#[derive(Serialize, ToSchema)]
pub struct JobView {
    /// The job's key; activation answers carry the leased key `<job>-<lease>`.
    pub job_key: String,
    #[serde(rename = "type")]
    pub job_type: String,
    /// pending, activatable, activated, completed, failed or cancelled.
    pub state: String,
    /// The reference's upper-case status: PENDING, ACTIVATABLE, ACTIVE, COMPLETED, FAILED,
    /// CANCELLED.
    pub status: String,
    pub tenant_id: String,
    pub worker_id: Option<String>,
    pub process_instance_id: Option<String>,
    pub bpmn_process_id: Option<String>,
    pub process_definition_key: Option<String>,
    pub process_definition_version: Option<String>,
    pub element_id: Option<String>,
    pub element_instance_id: Option<String>,
    pub created_at: Option<String>,
    pub activated_at: Option<String>,
    pub deadline: Option<String>,
    /// When a pending job becomes activatable.
    pub due_at: Option<String>,
    pub retries: i32,
    pub original_retries: i32,
    pub priority: i32,
    /// How many times the job was leased.
    pub activations: u32,
    #[schema(value_type = Object)]
    pub variables: Value,
    pub custom_headers: BTreeMap<String, String>,
    pub timeout_ms: i64,
    pub error_message: Option<String>,
    pub failure_history: Vec<FailureView>,
    /// Activated jobs: time since activation and until the deadline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_time_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_time_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_summary: Option<ExecutionSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<String>,
    /// Failed jobs are incidents; giving retries back resolves them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<String>,
    /// The Wasm attempts, on `GET /api/v1/jobs/{key}` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptView>>,
}

#[derive(Serialize, ToSchema)]
pub struct FailureView {
    pub attempt: u32,
    pub failed_at: Option<String>,
    pub error: String,
    pub worker_id: String,
    /// The retries the failure left.
    pub retries: i32,
}

#[derive(Serialize, ToSchema)]
pub struct ExecutionSummary {
    pub total_duration_ms: i64,
    pub retries_used: i32,
    #[schema(value_type = Object)]
    pub result_variables: Value,
}

#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    pub attempt: u32,
    pub worker_id: String,
    pub handler_version: u32,
    pub started_at: Option<String>,
    pub duration_us: u64,
    /// `completed`, or why the attempt failed.
    pub outcome: String,
    /// Captured stdout, stderr and log lines.
    pub output: String,
}

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn none_if_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

/// The upper-case status of the REST reference (`ACTIVE` for a leased job).
fn status_label(state: JobState) -> &'static str {
    match state {
        JobState::Pending => "PENDING",
        JobState::Activatable => "ACTIVATABLE",
        JobState::Activated => "ACTIVE",
        JobState::Completed => "COMPLETED",
        JobState::Failed => "FAILED",
        JobState::Cancelled => "CANCELLED",
    }
}

impl JobView {
    pub fn of(job: &Job) -> JobView {
        let record = &job.record;
        let process = &job.payload.process;
        let now = now_ms();
        let finished = format_time(record.finished_at);
        let in_state = |state: JobState| record.state == state;
        JobView {
            job_key: record.id.to_string(),
            job_type: record.job_type.clone(),
            state: record.state.as_str().to_string(),
            status: status_label(record.state).to_string(),
            tenant_id: record.tenant.clone(),
            worker_id: none_if_empty(&record.worker),
            process_instance_id: none_if_empty(&process.process_instance_key),
            bpmn_process_id: none_if_empty(&process.bpmn_process_id),
            process_definition_key: none_if_empty(&process.process_definition_key),
            process_definition_version: none_if_empty(&process.process_definition_version),
            element_id: none_if_empty(&process.element_id),
            element_instance_id: none_if_empty(&process.element_instance_key),
            created_at: format_time(record.created_at),
            activated_at: format_time(record.activated_at),
            deadline: format_time(record.deadline),
            due_at: format_time(record.due_at),
            retries: record.retries,
            original_retries: record.original_retries,
            priority: record.priority,
            activations: record.lease,
            variables: parse_json(&job.payload.variables),
            custom_headers: job.payload.custom_headers.clone(),
            timeout_ms: record.timeout_ms,
            error_message: none_if_empty(&record.error_message),
            failure_history: record
                .failure_history
                .iter()
                .map(|f| FailureView {
                    attempt: f.attempt,
                    failed_at: format_time(f.failed_at),
                    error: f.error.clone(),
                    worker_id: f.worker.clone(),
                    retries: f.retries,
                })
                .collect(),
            elapsed_time_ms: in_state(JobState::Activated).then(|| now - record.activated_at),
            remaining_time_ms: in_state(JobState::Activated)
                .then(|| (record.deadline - now).max(0)),
            completed_at: finished.clone().filter(|_| in_state(JobState::Completed)),
            execution_summary: in_state(JobState::Completed).then(|| ExecutionSummary {
                total_duration_ms: record.finished_at - record.created_at,
                retries_used: record.original_retries - record.retries,
                result_variables: parse_json(record.result.as_deref().unwrap_or("{}")),
            }),
            failed_at: finished.clone().filter(|_| in_state(JobState::Failed)),
            incident_id: in_state(JobState::Failed).then(|| format!("incident-{}", record.id)),
            cancelled_at: finished.filter(|_| in_state(JobState::Cancelled)),
            attempts: None,
        }
    }

    /// The job as handed to a worker: its key names the lease.
    pub fn leased(job: &Job) -> JobView {
        let mut view = JobView::of(job);
        view.job_key = JobKey::leased(job.record.id, job.record.lease).to_string();
        view
    }

    pub fn with_attempts(mut self, attempts: &[AttemptLog]) -> JobView {
        self.attempts = Some(
            attempts
                .iter()
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    worker_id: a.worker.clone(),
                    handler_version: a.handler_version,
                    started_at: format_time(a.started_at),
                    duration_us: a.duration_us,
                    outcome: a.outcome.clone(),
                    output: a.output.clone(),
                })
                .collect(),
        );
        self
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedJob {
    pub job_key: String,
    pub job: JobView,
}

/// The keys of jobs created in one batch, in the order of the request.
#[derive(Serialize, ToSchema)]
pub struct CreatedJobs {
    pub job_keys: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ActivatedJobs {
    pub jobs: Vec<JobView>,
}

/// One page of `GET /api/v1/jobs`.
#[derive(Serialize, ToSchema)]
pub struct JobsListing {
    pub jobs: Vec<JobView>,
    pub pagination: Pagination,
    pub summary: Summary,
    pub filters_applied: FiltersApplied,
}

#[derive(Serialize, ToSchema)]
pub struct Pagination {
    pub page: u32,
    pub page_size: u32,
    pub total_count: u64,
    pub total_pages: u32,
    pub has_next: bool,
    pub has_prev: bool,
}

/// Every job the filters select, not just the page.
#[derive(Serialize, ToSchema)]
pub struct Summary {
    pub total_jobs: u64,
    /// Pending, activatable and activated.
    pub active_jobs: u64,
    pub pending_jobs: u64,
    pub activatable_jobs: u64,
    pub activated_jobs: u64,
    pub completed_jobs: u64,
    pub failed_jobs: u64,
    pub cancelled_jobs: u64,
    /// Completed out of completed and failed; null when neither.
    pub success_rate_percent: Option<f64>,
    /// Mean time from creation to completion of the completed jobs.
    pub avg_duration_seconds: Option<f64>,
}

impl Summary {
    pub fn of(counts: &StateCounts) -> Summary {
        let completed = counts.get(JobState::Completed);
        let failed = counts.get(JobState::Failed);
        let finished = completed + failed;
        Summary {
            total_jobs: counts.total(),
            active_jobs: counts.get(JobState::Pending)
                + counts.get(JobState::Activatable)
                + counts.get(JobState::Activated),
            pending_jobs: counts.get(JobState::Pending),
            activatable_jobs: counts.get(JobState::Activatable),
            activated_jobs: counts.get(JobState::Activated),
            completed_jobs: completed,
            failed_jobs: failed,
            cancelled_jobs: counts.get(JobState::Cancelled),
            success_rate_percent: (finished > 0)
                .then(|| (completed as f64 * 1000.0 / finished as f64).round() / 10.0),
            avg_duration_seconds: (completed > 0).then(|| {
                (counts.completed_duration_sum_ms as f64 / completed as f64 / 10.0).round() / 100.0
            }),
        }
    }
}

/// The filters as the request gave them.
#[derive(Serialize, ToSchema, Default)]
pub struct FiltersApplied {
    pub status: Option<String>,
    pub state: Option<String>,
    #[serde(rename = "type")]
    pub job_type: Option<String>,
    pub worker: Option<String>,
    pub process_instance_id: Option<String>,
    pub element_id: Option<String>,
    pub tenant_id: Option<String>,
    pub created_after: Option<String>,
    pub created_before: Option<String>,
    /// 1h, 24h, 7d, 30d or all.
    pub period: String,
}

impl JobsListing {
    pub fn of(page: &JobsPage, filters: FiltersApplied) -> JobsListing {
        let total_pages = page.total_pages();
        JobsListing {
            jobs: page.jobs.iter().map(JobView::of).collect(),
            pagination: Pagination {
                page: page.page,
                page_size: page.page_size,
                total_count: page.total_count,
                total_pages,
                has_next: page.page < total_pages,
                has_prev: page.page > 1,
            },
            summary: Summary::of(&page.counts),
            filters_applied: filters,
        }
    }
}

/// Jobs by state, with their total.
#[derive(Serialize, ToSchema)]
pub struct StateCountsView {
    pub total: u64,
    pub pending: u64,
    pub activatable: u64,
    pub activated: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl StateCountsView {
    fn of(counts: &StateCounts) -> StateCountsView {
        StateCountsView {
            total: counts.total(),
            pending: counts.get(JobState::Pending),
            activatable: counts.get(JobState::Activatable),
            activated: counts.get(JobState::Activated),
            completed: counts.get(JobState::Completed),
            failed: counts.get(JobState::Failed),
            cancelled: counts.get(JobState::Cancelled),
        }
    }
}

/// `GET /api/v1/jobs/stats`.
#[derive(Serialize, ToSchema)]
pub struct JobStats {
    pub total_jobs: u64,
    pub by_state: StateCountsView,
    pub by_type: BTreeMap<String, StateCountsView>,
    pub by_tenant: BTreeMap<String, StateCountsView>,
    /// The last 60 minutes, oldest first.
    pub per_minute: Vec<MinuteView>,
    pub duration: DurationView,
}

#[derive(Serialize, ToSchema)]
pub struct MinuteView {
    pub minute: Option<String>,
    pub completed: u64,
    /// Jobs that became incidents.
    pub failed: u64,
}

/// Run times (creation to completion) of the last hour's completions.
#[derive(Serialize, ToSchema)]
pub struct DurationView {
    pub samples: u64,
    pub avg_ms: f64,
    pub p95_ms: f64,
}

impl JobStats {
    pub fn of(stats: &IndexStats) -> JobStats {
        let map = |groups: &std::collections::HashMap<String, StateCounts>| {
            groups
                .iter()
                .map(|(name, counts)| (name.clone(), StateCountsView::of(counts)))
                .collect()
        };
        JobStats {
            total_jobs: stats.by_state.total(),
            by_state: StateCountsView::of(&stats.by_state),
            by_type: map(&stats.by_type),
            by_tenant: map(&stats.by_tenant),
            per_minute: stats
                .per_minute
                .iter()
                .map(|(minute, completed, failed)| MinuteView {
                    minute: format_time(*minute),
                    completed: *completed,
                    failed: *failed,
                })
                .collect(),
            duration: DurationView {
                samples: stats.completions,
                avg_ms: stats.avg_duration_ms,
                p95_ms: stats.p95_duration_ms,
            },
        }
    }
}

/// `GET /api/v1/whoami`.
#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    pub key_id: String,
    pub permissions: Vec<String>,
    /// The tenants the key may act on; null: every tenant.
    pub tenants: Option<Vec<String>>,
    /// Tenants in the key's scope that have jobs, handlers or triggers.
    pub known_tenants: Vec<String>,
    /// What each tenant and key may hold at once.
    pub quotas: crate::quota::Quotas,
}

#[derive(Serialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub permissions: Vec<String>,
    /// null: every tenant.
    pub tenants: Option<Vec<String>>,
    pub created_at: i64,
    /// The request rate in force; null: unlimited.
    pub rate_limit: Option<crate::rate_limit::RateLimit>,
}

impl From<crate::auth::KeyInfo> for KeyView {
    fn from(info: crate::auth::KeyInfo) -> KeyView {
        KeyView {
            id: info.id,
            name: info.name,
            permissions: info.permissions,
            tenants: info.tenants,
            created_at: info.created_at,
            rate_limit: info.rate_limit,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key itself: shown this once, stored only as a hash.
    pub key: String,
    pub info: KeyView,
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// One administrative act.
#[derive(Serialize, ToSchema)]
pub struct AuditView {
    pub id: u64,
    /// RFC 3339.
    pub at: Option<String>,
    pub key_id: String,
    /// e.g. `key.created`, `handler.deployed`, `trigger.changed`, `job.cancelled`.
    pub action: String,
    /// The tenants the act touched; null: every tenant.
    pub tenants: Option<Vec<String>>,
    /// A key id, handler id, trigger id or job key.
    pub target: String,
    pub detail: String,
}

impl AuditView {
    pub fn of(entry: &crate::audit::AuditEntry) -> AuditView {
        AuditView {
            id: entry.id,
            at: format_time(entry.at),
            key_id: entry.key_id.clone(),
            action: entry.action.as_str().to_string(),
            tenants: Some(entry.tenants.clone()).filter(|t| !t.is_empty()),
            target: entry.target.clone(),
            detail: entry.detail.clone(),
        }
    }
}

/// A page of the audit trail, newest first.
#[derive(Serialize, ToSchema)]
pub struct AuditTrail {
    pub entries: Vec<AuditView>,
    /// Pass as `before` for older entries; null: no older ones match.
    pub next_before: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct RevokedKey {
    pub revoked: String,
}

#[derive(Serialize, ToSchema)]
pub struct HandlerView {
    pub id: String,
    pub tenant_id: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub created_at: Option<String>,
    pub current_version: u32,
    /// The worker name the executor activates this handler's jobs with.
    pub worker: String,
    pub load: LoadView,
    pub versions: Vec<HandlerVersionView>,
}

/// How the current version's code was made ready.
#[derive(Serialize, ToSchema)]
pub struct LoadView {
    /// `compiled` or `cache`.
    pub source: String,
    pub millis: f64,
}

#[derive(Serialize, ToSchema)]
pub struct HandlerVersionView {
    pub version: u32,
    pub sha256: String,
    pub bytes: u64,
    pub deployed_at: Option<String>,
    pub limits: LimitsView,
    pub retry: RetryView,
    pub grants: GrantsView,
}

/// What a handler version may reach beyond computing. Secret values are never shown.
#[derive(Serialize, ToSchema)]
pub struct GrantsView {
    /// Outbound HTTP rules.
    pub allow_http: Vec<String>,
    /// Names of the tenant secrets it may read.
    pub secrets: Vec<String>,
    /// Config values it may read.
    pub config: std::collections::BTreeMap<String, String>,
    /// Key-value buckets it may open.
    pub kv: Vec<String>,
    /// Headers the host adds to allowed requests (`HOST=Name: value`, secrets as placeholders).
    pub inject_headers: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LimitsView {
    pub memory_mb: u32,
    pub timeout_ms: u64,
    pub max_concurrency: u32,
    pub fuel: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct RetryView {
    pub max_retries: u32,
    pub backoff_ms: u64,
    pub backoff_cap_ms: u64,
}

impl HandlerView {
    pub fn of(handler: &LoadedHandler) -> HandlerView {
        let record = &handler.record;
        let current = record.current();
        HandlerView {
            id: record.id.clone(),
            tenant_id: record.tenant.clone(),
            job_type: record.job_type.clone(),
            created_at: format_time(record.created_at),
            current_version: current.version,
            worker: record.worker_name(current.version),
            load: LoadView {
                source: match handler.compiled.source {
                    crate::runtime::CodeSource::Compiled => "compiled".into(),
                    crate::runtime::CodeSource::Cache => "cache".into(),
                },
                millis: handler.compiled.load_time.as_secs_f64() * 1000.0,
            },
            versions: record
                .versions
                .iter()
                .map(|v| HandlerVersionView {
                    version: v.version,
                    sha256: hex::encode(v.component_sha256),
                    bytes: v.component_bytes,
                    deployed_at: format_time(v.deployed_at),
                    limits: LimitsView {
                        memory_mb: v.limits.memory_mb,
                        timeout_ms: v.limits.timeout_ms,
                        max_concurrency: v.limits.max_concurrency,
                        fuel: v.limits.fuel,
                    },
                    retry: RetryView {
                        max_retries: v.retry.max_retries,
                        backoff_ms: v.retry.backoff_base_ms,
                        backoff_cap_ms: v.retry.backoff_cap_ms,
                    },
                    grants: GrantsView {
                        allow_http: v.grants.http.clone(),
                        secrets: v.grants.secrets.clone(),
                        config: v.grants.config.clone(),
                        kv: v.grants.kv.clone(),
                        inject_headers: v.grants.inject_headers.clone(),
                    },
                })
                .collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct HandlerList {
    pub handlers: Vec<HandlerView>,
}

#[derive(Serialize, ToSchema)]
pub struct RemovedHandler {
    pub removed: String,
}

/// A trigger: its definition as given, its status, and what it has done.
#[derive(Serialize, ToSchema)]
pub struct TriggerView {
    pub id: String,
    pub name: String,
    pub tenant_id: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub cron: Option<String>,
    pub time_zone: Option<String>,
    pub interval: Option<String>,
    #[schema(value_type = Object)]
    pub variables: Value,
    pub custom_headers: BTreeMap<String, String>,
    pub retries: i32,
    pub priority: i32,
    /// The pattern of each fired job's idempotency key.
    pub idempotency_key: Option<String>,
    pub catch_up: bool,
    pub max_catch_up: u32,
    pub end_at: Option<String>,
    /// `allow` or `skip`.
    pub overlap: String,
    pub enabled: bool,
    /// `active`, `paused` or `ended`.
    pub status: String,
    pub next_fire_at: Option<String>,
    pub last_fire_at: Option<String>,
    pub last_job_key: Option<String>,
    pub fired_count: u64,
    pub skipped_count: u64,
    pub missed_count: u64,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl TriggerView {
    pub fn of(trigger: &TriggerRecord) -> TriggerView {
        let (cron, time_zone, interval) = match &trigger.schedule {
            Schedule::Cron {
                expression,
                time_zone,
            } => (Some(expression.clone()), Some(time_zone.clone()), None),
            Schedule::Interval { every_ms } => (None, None, Some(format_duration(*every_ms))),
        };
        TriggerView {
            id: trigger.id.to_string(),
            name: trigger.name.clone(),
            tenant_id: trigger.tenant.clone(),
            job_type: trigger.job_type.clone(),
            cron,
            time_zone,
            interval,
            variables: parse_json(&trigger.template.variables),
            custom_headers: trigger.template.custom_headers.clone(),
            retries: trigger.template.retries,
            priority: trigger.template.priority,
            idempotency_key: trigger.template.idempotency_key.clone(),
            catch_up: trigger.catch_up,
            max_catch_up: trigger.max_catch_up,
            end_at: trigger.end_at.and_then(format_time),
            overlap: trigger.overlap.as_str().to_string(),
            enabled: trigger.enabled,
            status: trigger.status().as_str().to_string(),
            next_fire_at: trigger.next_fire.and_then(format_time),
            last_fire_at: trigger.last_fire.and_then(format_time),
            last_job_key: trigger.last_job.map(|id| id.to_string()),
            fired_count: trigger.fired,
            skipped_count: trigger.skipped,
            missed_count: trigger.missed,
            created_at: format_time(trigger.created_at),
            updated_at: format_time(trigger.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TriggerList {
    pub triggers: Vec<TriggerView>,
    pub total_count: usize,
}

#[derive(Serialize, ToSchema)]
pub struct RemovedTrigger {
    pub removed: TriggerView,
}

/// A tenant's secret: its name and when it was last set, never its value.
#[derive(Serialize, ToSchema)]
pub struct SecretView {
    pub tenant_id: String,
    pub name: String,
    /// RFC 3339.
    pub updated_at: Option<String>,
}

impl From<crate::service::SecretInfo> for SecretView {
    fn from(info: crate::service::SecretInfo) -> SecretView {
        SecretView {
            tenant_id: info.tenant,
            name: info.name,
            updated_at: format_time(info.updated_at),
        }
    }
}

/// The answer to setting a secret.
#[derive(Serialize, ToSchema)]
pub struct SetSecret {
    /// False when an existing value was replaced.
    pub created: bool,
    pub secret: SecretView,
}

#[derive(Serialize, ToSchema)]
pub struct SecretList {
    pub secrets: Vec<SecretView>,
}

/// A key-value bucket with what it holds.
#[derive(Serialize, ToSchema)]
pub struct KvBucketView {
    pub name: String,
    pub keys: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

#[derive(Serialize, ToSchema)]
pub struct KvBucketList {
    pub tenant_id: String,
    pub buckets: Vec<KvBucketView>,
    /// The tenant's quotas over all its buckets.
    pub limits: crate::kv::KvLimits,
}

/// A page of a bucket's keys.
#[derive(Serialize, ToSchema)]
pub struct KvKeyList {
    pub keys: Vec<String>,
    /// Pass as `after` for the next page; null: no more.
    pub next: Option<String>,
}

/// One value: as text when it is UTF-8, else as hex.
#[derive(Serialize, ToSchema)]
pub struct KvValue {
    pub key: String,
    pub value: Option<String>,
    pub value_hex: Option<String>,
    pub bytes: usize,
}

#[derive(Serialize, ToSchema)]
pub struct KvWritten {
    pub key: String,
}

/// An upload compiled in the background.
#[derive(Serialize, ToSchema)]
pub struct UploadView {
    pub id: String,
    pub tenant_id: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub bytes: u64,
    /// compiling, ready or failed.
    pub state: String,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// The handler it became, when ready.
    pub handler_id: Option<String>,
    pub version: Option<u32>,
    /// RFC 3339.
    pub started_at: Option<String>,
    /// From the upload to now, or to when it finished.
    pub elapsed_ms: i64,
}

impl UploadView {
    pub fn of(status: &crate::service::handlers::UploadStatus) -> UploadView {
        use crate::service::handlers::UploadState;
        let (state, error, handler_id, version) = match &status.state {
            UploadState::Compiling => ("compiling", None, None, None),
            UploadState::Ready {
                handler_id,
                version,
            } => ("ready", None, Some(handler_id.clone()), Some(*version)),
            UploadState::Failed(error) => ("failed", Some(error.clone()), None, None),
        };
        let until = status.finished_at.unwrap_or_else(crate::job::now_ms);
        UploadView {
            id: status.id.clone(),
            tenant_id: status.tenant.clone(),
            job_type: status.job_type.clone(),
            bytes: status.bytes,
            state: state.to_string(),
            error,
            handler_id,
            version,
            started_at: format_time(status.started_at),
            elapsed_ms: until - status.started_at,
        }
    }
}
