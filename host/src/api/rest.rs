//! The REST adapter (`/api/v1`, `/healthz`) over the service core: JSON in and out, with the
//! response envelope of the REST reference (`success`, `data`, `error`, `request_id`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::auth::{NewKey, Principal};
use crate::job::limits::MAX_MESSAGE_BYTES;
use crate::job::{Job, JobKey, JobState, ProcessRef, now_ms};
use crate::metrics::{MetricsRegistry, may_read};
use crate::registry::{Deployment, HandlerRegistry, LoadedHandler};
use crate::service::{
    self, JobService, ServiceError, TriggerDefinition, TriggerFilter, format_time, parse_time,
};
use crate::store::index::StateCounts;
use crate::trigger::schedule::format_duration;
use crate::trigger::{Schedule, TriggerRecord};

#[derive(Clone)]
struct Api {
    service: Arc<JobService>,
    registry: Arc<HandlerRegistry>,
    metrics: Arc<MetricsRegistry>,
}

pub fn router(
    service: Arc<JobService>,
    registry: Arc<HandlerRegistry>,
    metrics: Arc<MetricsRegistry>,
) -> Router {
    // Uploads up to twice the limit reach the handler, which explains the limit in a 400.
    let upload_limit = registry.maxima().component_bytes.saturating_mul(2);
    let handlers = Router::new()
        .route("/api/v1/handlers", post(deploy_handler).get(list_handlers))
        .route(
            "/api/v1/handlers/{id}",
            get(get_handler).delete(remove_handler),
        )
        .layer(DefaultBodyLimit::max(upload_limit));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/whoami", get(whoami))
        .route("/metrics", get(render_metrics))
        .route("/api/v1/jobs", post(create_job).get(list_jobs))
        .route("/api/v1/jobs/activate", post(activate_jobs))
        .route("/api/v1/jobs/stats", get(job_stats))
        .route("/api/v1/jobs/{key}", get(get_job))
        .route("/api/v1/jobs/{key}/complete", put(complete_job))
        .route("/api/v1/jobs/{key}/fail", post(fail_job))
        .route("/api/v1/jobs/{key}/cancel", post(cancel_job))
        .route("/api/v1/jobs/{key}/retries", put(update_retries))
        .route("/api/v1/jobs/{key}/timeout", put(update_timeout))
        .route("/api/v1/triggers", post(create_trigger).get(list_triggers))
        .route(
            "/api/v1/triggers/{id}",
            get(get_trigger)
                .patch(update_trigger)
                .delete(delete_trigger),
        )
        .route("/api/v1/keys", post(create_key).get(list_keys))
        .route("/api/v1/keys/{id}", axum::routing::delete(revoke_key))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .merge(handlers)
        .merge(super::dashboard::router())
        .with_state(Api {
            service,
            registry,
            metrics,
        })
}

/// A failed request, rendered as `{"success": false, "error": {code, message}}`.
pub struct ApiError(ServiceError);

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> ApiError {
        ApiError(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self.0 {
            ServiceError::InvalidArgument(_) => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
            ServiceError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            ServiceError::PermissionDenied(_) => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
            ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ServiceError::FailedPrecondition(_) => (StatusCode::CONFLICT, "FAILED_PRECONDITION"),
            ServiceError::ResourceExhausted(_) => {
                (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED")
            }
            ServiceError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            ServiceError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        };
        let body = json!({
            "success": false,
            "error": {"code": code, "message": self.0.to_string()},
            "request_id": request_id(),
        });
        (status, Json(body)).into_response()
    }
}

type Reply = Result<Json<Value>, ApiError>;

fn ok(data: Value) -> Reply {
    Ok(Json(
        json!({"success": true, "data": data, "request_id": request_id()}),
    ))
}

fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("req_{}_{}", now_ms(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The caller's key: the `X-API-Key` header, or an `Authorization: Bearer` token (which is
/// what Prometheus scrapers send).
fn caller(api: &Api, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or(bearer);
    Ok(api.service.authenticate(key)?)
}

/// Prometheus metrics, for a key granted every tenant (they name every tenant).
async fn render_metrics(State(api): State<Api>, headers: HeaderMap) -> Result<Response, ApiError> {
    let caller = caller(&api, &headers)?;
    if !may_read(&caller.tenants) {
        return Err(ApiError(ServiceError::PermissionDenied(
            "metrics cover every tenant: use a key granted every tenant".into(),
        )));
    }
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    Ok((
        [(axum::http::header::CONTENT_TYPE, content_type)],
        api.metrics.render(),
    )
        .into_response())
}

fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.is_empty() { b"{}" } else { bytes };
    serde_json::from_slice(text).map_err(|e| {
        ApiError(ServiceError::InvalidArgument(format!(
            "invalid JSON body: {e}"
        )))
    })
}

/// JSON object text of an optional JSON value (which must be an object if present).
fn object_text(field: &str, value: Option<Value>) -> Result<String, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(String::new()),
        Some(value @ Value::Object(_)) => Ok(value.to_string()),
        Some(_) => Err(ApiError(ServiceError::InvalidArgument(format!(
            "{field} must be a JSON object"
        )))),
    }
}

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
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

/// Counts by state as a JSON object, with their total.
fn counts_json(counts: &StateCounts) -> Value {
    let mut value = serde_json::Map::new();
    value.insert("total".into(), json!(counts.total()));
    for state in JobState::ALL {
        value.insert(state.as_str().into(), json!(counts.get(state)));
    }
    Value::Object(value)
}

/// The summary of a listing: every matching job, not just the page.
fn summary_json(counts: &StateCounts) -> Value {
    let completed = counts.get(JobState::Completed);
    let failed = counts.get(JobState::Failed);
    let active = counts.get(JobState::Pending)
        + counts.get(JobState::Activatable)
        + counts.get(JobState::Activated);
    let finished = completed + failed;
    let rate = if finished == 0 {
        Value::Null
    } else {
        json!((completed as f64 * 1000.0 / finished as f64).round() / 10.0)
    };
    let average = if completed == 0 {
        Value::Null
    } else {
        json!((counts.completed_duration_sum_ms as f64 / completed as f64 / 10.0).round() / 100.0)
    };
    json!({
        "total_jobs": counts.total(),
        "active_jobs": active,
        "pending_jobs": counts.get(JobState::Pending),
        "activatable_jobs": counts.get(JobState::Activatable),
        "activated_jobs": counts.get(JobState::Activated),
        "completed_jobs": completed,
        "failed_jobs": failed,
        "cancelled_jobs": counts.get(JobState::Cancelled),
        "success_rate_percent": rate,
        "avg_duration_seconds": average,
    })
}

async fn job_stats(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Reply {
    let caller = caller(&api, &headers)?;
    let stats = api
        .service
        .job_stats(&caller, params.get("tenant_id").map(String::as_str))?;
    let map = |groups: &HashMap<String, StateCounts>| {
        groups
            .iter()
            .map(|(name, counts)| (name.clone(), counts_json(counts)))
            .collect::<serde_json::Map<_, _>>()
    };
    let by_state = counts_json(&stats.by_state);
    ok(json!({
        "total_jobs": stats.by_state.total(),
        "by_state": by_state,
        "by_type": map(&stats.by_type),
        "by_tenant": map(&stats.by_tenant),
        "per_minute": stats.per_minute.iter().map(|(minute, completed, failed)| json!({
            "minute": format_time(*minute),
            "completed": completed,
            "failed": failed,
        })).collect::<Vec<_>>(),
        "duration": {
            "samples": stats.completions,
            "avg_ms": stats.avg_duration_ms,
            "p95_ms": stats.p95_duration_ms,
        },
    }))
}

/// A job in the shape of the REST reference.
pub fn job_json(job: &Job) -> Value {
    let record = &job.record;
    let process = &job.payload.process;
    let now = now_ms();
    let none_if_empty = |text: &str| (!text.is_empty()).then(|| text.to_string());
    let mut value = json!({
        "job_key": record.id.to_string(),
        "type": record.job_type,
        "state": record.state.as_str(),
        "status": status_label(record.state),
        "tenant_id": record.tenant,
        "worker_id": none_if_empty(&record.worker),
        "process_instance_id": none_if_empty(&process.process_instance_key),
        "bpmn_process_id": none_if_empty(&process.bpmn_process_id),
        "process_definition_key": none_if_empty(&process.process_definition_key),
        "process_definition_version": none_if_empty(&process.process_definition_version),
        "element_id": none_if_empty(&process.element_id),
        "element_instance_id": none_if_empty(&process.element_instance_key),
        "created_at": format_time(record.created_at),
        "activated_at": format_time(record.activated_at),
        "deadline": format_time(record.deadline),
        "due_at": format_time(record.due_at),
        "retries": record.retries,
        "original_retries": record.original_retries,
        "priority": record.priority,
        "activations": record.lease,
        "variables": parse_json(&job.payload.variables),
        "custom_headers": job.payload.custom_headers,
        "timeout_ms": record.timeout_ms,
        "error_message": none_if_empty(&record.error_message),
        "failure_history": record.failure_history.iter().map(|f| json!({
            "attempt": f.attempt,
            "failed_at": format_time(f.failed_at),
            "error": f.error,
            "worker_id": f.worker,
            "retries": f.retries,
        })).collect::<Vec<_>>(),
    });
    let fields = value.as_object_mut().expect("a JSON object");
    match record.state {
        JobState::Activated => {
            fields.insert("elapsed_time_ms".into(), json!(now - record.activated_at));
            fields.insert(
                "remaining_time_ms".into(),
                json!((record.deadline - now).max(0)),
            );
        }
        JobState::Completed => {
            fields.insert(
                "completed_at".into(),
                json!(format_time(record.finished_at)),
            );
            fields.insert(
                "execution_summary".into(),
                json!({
                    "total_duration_ms": record.finished_at - record.created_at,
                    "retries_used": record.original_retries - record.retries,
                    "result_variables": parse_json(record.result.as_deref().unwrap_or("{}")),
                }),
            );
        }
        JobState::Failed => {
            fields.insert("failed_at".into(), json!(format_time(record.finished_at)));
            fields.insert(
                "incident_id".into(),
                json!(format!("incident-{}", record.id)),
            );
        }
        JobState::Cancelled => {
            fields.insert(
                "cancelled_at".into(),
                json!(format_time(record.finished_at)),
            );
        }
        JobState::Pending | JobState::Activatable => {}
    }
    value
}

#[derive(Deserialize)]
struct CreateBody {
    #[serde(rename = "type")]
    job_type: Option<String>,
    variables: Option<Value>,
    #[serde(default)]
    custom_headers: BTreeMap<String, String>,
    retries: Option<i32>,
    #[serde(default)]
    tenant_id: String,
    #[serde(default)]
    priority: i32,
    /// RFC 3339 or epoch ms.
    run_at: Option<Value>,
    #[serde(default, alias = "delay")]
    delay_ms: i64,
    #[serde(flatten)]
    process: ProcessBody,
}

#[derive(Deserialize, Default)]
struct ProcessBody {
    #[serde(default, alias = "process_instance_id")]
    process_instance_key: String,
    #[serde(default)]
    bpmn_process_id: String,
    #[serde(default)]
    process_definition_version: String,
    #[serde(default)]
    process_definition_key: String,
    #[serde(default)]
    element_id: String,
    #[serde(default, alias = "element_instance_id")]
    element_instance_key: String,
}

async fn create_job(State(api): State<Api>, headers: HeaderMap, bytes: Bytes) -> Reply {
    let caller = caller(&api, &headers)?;
    let request: CreateBody = body(&bytes)?;
    let run_at = match request.run_at {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n.as_i64().unwrap_or(-1),
        Some(Value::String(text)) => parse_time("run_at", &text)?,
        Some(_) => {
            return Err(ApiError(ServiceError::InvalidArgument(
                "run_at must be an RFC 3339 time or epoch ms".into(),
            )));
        }
    };
    let create = service::CreateJob {
        job_type: request.job_type.unwrap_or_default(),
        variables: object_text("variables", request.variables)?,
        custom_headers: request.custom_headers,
        retries: request.retries,
        tenant_id: request.tenant_id,
        priority: request.priority,
        run_at,
        delay_ms: request.delay_ms,
        process: ProcessRef {
            process_instance_key: request.process.process_instance_key,
            bpmn_process_id: request.process.bpmn_process_id,
            process_definition_version: request.process.process_definition_version,
            process_definition_key: request.process.process_definition_key,
            element_id: request.process.element_id,
            element_instance_key: request.process.element_instance_key,
        },
    };
    let key = api.service.create_job(&caller, create).await?;
    let job = api.service.get_job(&caller, &key.to_string())?;
    ok(json!({"job_key": key.to_string(), "job": job_json(&job)}))
}

async fn get_job(State(api): State<Api>, headers: HeaderMap, Path(key): Path<String>) -> Reply {
    let caller = caller(&api, &headers)?;
    let job = api.service.get_job(&caller, &key)?;
    let attempts = api.service.attempts_of(&job)?;
    let mut value = job_json(&job);
    value["attempts"] = attempts
        .iter()
        .map(|a| {
            json!({
                "attempt": a.attempt,
                "worker_id": a.worker,
                "handler_version": a.handler_version,
                "started_at": format_time(a.started_at),
                "duration_us": a.duration_us,
                "outcome": a.outcome,
                "output": a.output,
            })
        })
        .collect();
    ok(value)
}

async fn list_jobs(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Reply {
    let caller = caller(&api, &headers)?;
    let text = |name: &str| params.get(name).cloned();
    let number = |name: &str| -> Result<Option<i64>, ApiError> {
        match params.get(name) {
            None => Ok(None),
            Some(text) => text.trim().parse().map(Some).map_err(|_| {
                ApiError(ServiceError::InvalidArgument(format!(
                    "{name} must be a whole number, got '{text}'"
                )))
            }),
        }
    };
    let request = service::ListJobs {
        state: text("state").or_else(|| text("status")),
        job_type: text("type"),
        worker: text("worker"),
        process_instance_id: text("process_instance_id"),
        element_id: text("element_id"),
        tenant_id: text("tenant_id"),
        created_after: text("created_after"),
        created_before: text("created_before"),
        period: text("period"),
        page: number("page")?,
        page_size: number("page_size")?,
        sort_by: text("sort_by"),
        sort_order: text("sort_order"),
    };
    let page = api.service.list_jobs(&caller, request)?;
    let total_pages = page.total_pages();
    ok(json!({
        "jobs": page.jobs.iter().map(job_json).collect::<Vec<_>>(),
        "pagination": {
            "page": page.page,
            "page_size": page.page_size,
            "total_count": page.total_count,
            "total_pages": total_pages,
            "has_next": page.page < total_pages,
            "has_prev": page.page > 1,
        },
        "summary": summary_json(&page.counts),
        "filters_applied": {
            "status": text("state").or_else(|| text("status")),
            "state": text("state").or_else(|| text("status")),
            "type": text("type"),
            "worker": text("worker"),
            "process_instance_id": text("process_instance_id"),
            "element_id": text("element_id"),
            "tenant_id": text("tenant_id"),
            "created_after": text("created_after"),
            "created_before": text("created_before"),
            "period": text("period").unwrap_or_else(|| "all".into()),
        },
    }))
}

#[derive(Deserialize)]
struct ActivateBody {
    #[serde(rename = "type", default)]
    job_type: String,
    #[serde(default)]
    worker: String,
    #[serde(default)]
    timeout: i64,
    #[serde(default)]
    max_jobs_to_activate: i64,
    #[serde(default)]
    fetch_variable: Vec<String>,
    #[serde(default)]
    tenant_ids: String,
    request_timeout: Option<i64>,
}

async fn activate_jobs(State(api): State<Api>, headers: HeaderMap, bytes: Bytes) -> Reply {
    let caller = caller(&api, &headers)?;
    let request: ActivateBody = body(&bytes)?;
    let activation = service::ActivateJobs {
        job_type: request.job_type,
        worker: request.worker,
        timeout_ms: request.timeout,
        max_jobs: request.max_jobs_to_activate,
        fetch_variables: request.fetch_variable,
        tenant_ids: request.tenant_ids,
        request_timeout_ms: request.request_timeout,
    };
    let jobs = api.service.activate_jobs(&caller, activation).await?;
    let jobs: Vec<Value> = jobs
        .iter()
        .map(|job| {
            let mut value = job_json(job);
            value["job_key"] = json!(JobKey::leased(job.record.id, job.record.lease).to_string());
            value
        })
        .collect();
    ok(json!({"jobs": jobs}))
}

#[derive(Deserialize)]
struct CompleteBody {
    variables: Option<Value>,
}

async fn complete_job(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
    bytes: Bytes,
) -> Reply {
    let caller = caller(&api, &headers)?;
    let request: CompleteBody = body(&bytes)?;
    let result = object_text("variables", request.variables)?;
    api.service.complete_job(&caller, &key, result).await?;
    changed(&api, &caller, &key)
}

#[derive(Deserialize)]
struct FailBody {
    retries: Option<i32>,
    #[serde(default)]
    error_message: String,
    #[serde(default)]
    backoff_timeout: i64,
}

async fn fail_job(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
    bytes: Bytes,
) -> Reply {
    let caller = caller(&api, &headers)?;
    let request: FailBody = body(&bytes)?;
    let retries = request.retries.ok_or_else(|| {
        ApiError(ServiceError::InvalidArgument(
            "retries is required: the retries left after this failure".into(),
        ))
    })?;
    api.service
        .fail_job(
            &caller,
            &key,
            retries,
            request.error_message,
            request.backoff_timeout,
        )
        .await?;
    changed(&api, &caller, &key)
}

async fn cancel_job(State(api): State<Api>, headers: HeaderMap, Path(key): Path<String>) -> Reply {
    let caller = caller(&api, &headers)?;
    api.service.cancel_job(&caller, &key).await?;
    changed(&api, &caller, &key)
}

#[derive(Deserialize)]
struct RetriesBody {
    retries: i32,
}

async fn update_retries(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
    bytes: Bytes,
) -> Reply {
    let caller = caller(&api, &headers)?;
    let request: RetriesBody = body(&bytes)?;
    api.service
        .update_retries(&caller, &key, request.retries)
        .await?;
    changed(&api, &caller, &key)
}

#[derive(Deserialize)]
struct TimeoutBody {
    timeout: i64,
}

async fn update_timeout(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
    bytes: Bytes,
) -> Reply {
    let caller = caller(&api, &headers)?;
    let request: TimeoutBody = body(&bytes)?;
    api.service
        .update_timeout(&caller, &key, request.timeout)
        .await?;
    changed(&api, &caller, &key)
}

/// Answers a change with the job as it now is.
fn changed(api: &Api, caller: &Principal, key: &str) -> Reply {
    let job = api.service.get_job(caller, key)?;
    ok(job_json(&job))
}

#[derive(Deserialize)]
struct KeyBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    tenants: Vec<String>,
}

async fn create_key(State(api): State<Api>, headers: HeaderMap, bytes: Bytes) -> Reply {
    let caller = caller(&api, &headers)?;
    let request: KeyBody = body(&bytes)?;
    let new_key = NewKey {
        name: request.name,
        permissions: request.permissions,
        tenants: request.tenants,
    };
    let (info, key) = api
        .service
        .auth()
        .create_key(&caller, new_key)
        .map_err(ServiceError::from)?;
    ok(json!({"key": key, "info": info}))
}

async fn list_keys(State(api): State<Api>, headers: HeaderMap) -> Reply {
    let caller = caller(&api, &headers)?;
    let keys = api
        .service
        .auth()
        .list_keys(&caller)
        .map_err(ServiceError::from)?;
    ok(json!({"keys": keys}))
}

async fn revoke_key(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Reply {
    let caller = caller(&api, &headers)?;
    if api
        .service
        .auth()
        .revoke_key(&caller, &id)
        .map_err(ServiceError::from)?
    {
        ok(json!({"revoked": id}))
    } else {
        Err(ApiError(ServiceError::NotFound(format!(
            "API key {id} not found"
        ))))
    }
}

/// The calling key: its permissions and tenants (`null`: every tenant), and the tenants in its
/// scope that have jobs, handlers or triggers.
async fn whoami(State(api): State<Api>, headers: HeaderMap) -> Reply {
    let caller = caller(&api, &headers)?;
    let tenants = match &caller.tenants {
        crate::job::TenantScope::All => None,
        crate::job::TenantScope::Only(tenants) => Some(tenants.iter().cloned().collect::<Vec<_>>()),
    };
    let known = api.service.known_tenants(&caller, &api.registry)?;
    ok(json!({
        "key_id": caller.key_id,
        "permissions": caller.permissions,
        "tenants": tenants,
        "known_tenants": known,
    }))
}

/// A trigger: its definition as given, its status, and what it has done.
pub fn trigger_json(trigger: &TriggerRecord) -> Value {
    let (cron, time_zone, interval) = match &trigger.schedule {
        Schedule::Cron {
            expression,
            time_zone,
        } => (Some(expression.clone()), Some(time_zone.clone()), None),
        Schedule::Interval { every_ms } => (None, None, Some(format_duration(*every_ms))),
    };
    json!({
        "id": trigger.id.to_string(),
        "name": trigger.name,
        "tenant_id": trigger.tenant,
        "type": trigger.job_type,
        "cron": cron,
        "time_zone": time_zone,
        "interval": interval,
        "variables": parse_json(&trigger.template.variables),
        "custom_headers": trigger.template.custom_headers,
        "retries": trigger.template.retries,
        "priority": trigger.template.priority,
        "catch_up": trigger.catch_up,
        "max_catch_up": trigger.max_catch_up,
        "end_at": trigger.end_at.and_then(format_time),
        "overlap": trigger.overlap.as_str(),
        "enabled": trigger.enabled,
        "status": trigger.status().as_str(),
        "next_fire_at": trigger.next_fire.and_then(format_time),
        "last_fire_at": trigger.last_fire.and_then(format_time),
        "last_job_key": trigger.last_job.map(|id| id.to_string()),
        "fired_count": trigger.fired,
        "skipped_count": trigger.skipped,
        "missed_count": trigger.missed,
        "created_at": format_time(trigger.created_at),
        "updated_at": format_time(trigger.updated_at),
    })
}

async fn create_trigger(State(api): State<Api>, headers: HeaderMap, bytes: Bytes) -> Reply {
    let caller = caller(&api, &headers)?;
    let definition: TriggerDefinition = body(&bytes)?;
    let trigger = api.service.create_trigger(&caller, definition).await?;
    ok(trigger_json(&trigger))
}

async fn list_triggers(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Reply {
    let caller = caller(&api, &headers)?;
    let filter = TriggerFilter {
        tenant_id: params.get("tenant_id").cloned(),
        name: params.get("name").cloned(),
        job_type: params.get("type").cloned(),
    };
    let triggers = api.service.list_triggers(&caller, &filter)?;
    let listed: Vec<Value> = triggers.iter().map(trigger_json).collect();
    ok(json!({"triggers": listed, "total_count": listed.len()}))
}

async fn get_trigger(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Reply {
    let caller = caller(&api, &headers)?;
    ok(trigger_json(&api.service.get_trigger(&caller, &id)?))
}

async fn update_trigger(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Reply {
    let caller = caller(&api, &headers)?;
    let change: TriggerDefinition = body(&bytes)?;
    let trigger = api.service.update_trigger(&caller, &id, change).await?;
    ok(trigger_json(&trigger))
}

async fn delete_trigger(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let caller = caller(&api, &headers)?;
    let removed = api.service.delete_trigger(&caller, &id).await?;
    ok(json!({"removed": trigger_json(&removed)}))
}

fn handler_json(handler: &LoadedHandler) -> Value {
    let record = &handler.record;
    let current = record.current();
    json!({
        "id": record.id,
        "tenant_id": record.tenant,
        "type": record.job_type,
        "created_at": format_time(record.created_at),
        "current_version": current.version,
        "worker": record.worker_name(current.version),
        "load": {
            "source": handler.compiled.source,
            "millis": handler.compiled.load_time.as_secs_f64() * 1000.0,
        },
        "versions": record.versions.iter().map(|v| json!({
            "version": v.version,
            "sha256": hex::encode(v.component_sha256),
            "bytes": v.component_bytes,
            "deployed_at": format_time(v.deployed_at),
            "limits": {
                "memory_mb": v.limits.memory_mb,
                "timeout_ms": v.limits.timeout_ms,
                "max_concurrency": v.limits.max_concurrency,
                "fuel": v.limits.fuel,
            },
            "retry": {
                "max_retries": v.retry.max_retries,
                "backoff_ms": v.retry.backoff_base_ms,
                "backoff_cap_ms": v.retry.backoff_cap_ms,
            },
        })).collect::<Vec<_>>(),
    })
}

async fn deploy_handler(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
    bytes: Bytes,
) -> Reply {
    let caller = caller(&api, &headers)?;
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        match params.get(name) {
            None => Ok(None),
            Some(text) => text.trim().parse().map(Some).map_err(|_| {
                ApiError(ServiceError::InvalidArgument(format!(
                    "{name} must be a whole number, got '{text}'"
                )))
            }),
        }
    };
    let small = |name: &str| -> Result<Option<u32>, ApiError> {
        number(name)?
            .map(|n| {
                u32::try_from(n).map_err(|_| {
                    ApiError(ServiceError::InvalidArgument(format!(
                        "{name} is too large"
                    )))
                })
            })
            .transpose()
    };
    let deployment = Deployment {
        job_type: params.get("type").cloned().unwrap_or_default(),
        tenant_id: params
            .get("tenant")
            .or_else(|| params.get("tenant_id"))
            .cloned()
            .unwrap_or_default(),
        memory_mb: small("memory_mb")?,
        timeout_ms: number("timeout_ms")?,
        max_concurrency: small("max_concurrency")?,
        max_retries: small("max_retries")?,
        backoff_ms: number("backoff_ms")?,
        backoff_cap_ms: number("backoff_cap_ms")?,
        fuel: number("fuel")?,
        component: bytes.to_vec(),
    };
    let handler = api.registry.deploy(&caller, deployment).await?;
    ok(handler_json(&handler))
}

async fn list_handlers(State(api): State<Api>, headers: HeaderMap) -> Reply {
    let caller = caller(&api, &headers)?;
    let handlers = api.registry.list(&caller)?;
    ok(json!({"handlers": handlers.iter().map(|h| handler_json(h)).collect::<Vec<_>>()}))
}

async fn get_handler(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Reply {
    let caller = caller(&api, &headers)?;
    let handler = api.registry.get(&caller, &id)?;
    ok(handler_json(&handler))
}

async fn remove_handler(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let caller = caller(&api, &headers)?;
    api.registry.remove(&caller, &id).await?;
    ok(json!({"removed": id}))
}
