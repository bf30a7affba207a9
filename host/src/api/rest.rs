//! The REST adapter (`/api/v1`, `/healthz`) over the service core: JSON in and out, with the
//! response envelope of the REST reference (`success`, `data`, `error`, `request_id`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::{NewKey, Principal};
use crate::grants::GrantRequest;
use crate::job::limits::MAX_MESSAGE_BYTES;
use crate::job::{ProcessRef, now_ms};
use crate::metrics::MetricsRegistry;
use crate::rate_limit::{RateLimit, retry_after_seconds};
use crate::service::handlers::Deployment;
use crate::service::{
    self, JobService, ServiceError, TriggerDefinition, TriggerFilter, parse_time,
};

use super::views::{
    ActivatedJobs, AuditTrail, AuditView, CreatedJob, CreatedJobs, CreatedKey, Envelope, ErrorBody,
    ErrorEnvelope, FiltersApplied, HandlerList, HandlerView, JobStats, JobView, JobsListing,
    KeyList, KeyView, RemovedHandler, RemovedTrigger, RevokedKey, TriggerList, TriggerView,
    UploadView, WhoAmI,
};

#[derive(Clone)]
struct Api {
    service: Arc<JobService>,
    metrics: Arc<MetricsRegistry>,
}

pub fn router(service: Arc<JobService>, metrics: Arc<MetricsRegistry>) -> Router {
    // A body that announces more than the limit is refused from its header; one sent without
    // a length may run to twice the limit, so the handler can explain the limit in a 400.
    let component_limit = service.handler_maxima().component_bytes;
    let handlers = Router::new()
        .route("/api/v1/handlers", post(deploy_handler).get(list_handlers))
        .route("/api/v1/handlers/uploads", post(start_upload))
        .route("/api/v1/handlers/uploads/{id}", get(get_upload))
        .route(
            "/api/v1/handlers/{id}",
            get(get_handler).delete(remove_handler),
        )
        .layer(DefaultBodyLimit::max(component_limit.saturating_mul(2)))
        .layer(from_fn_with_state(
            component_limit,
            refuse_announced_oversize,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/openapi.json", get(openapi_document))
        .route("/metrics", get(render_metrics))
        .route("/api/v1/jobs", post(create_job).get(list_jobs))
        .route("/api/v1/jobs/batch", post(create_jobs))
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
        .route("/api/v1/audit", get(audit_trail))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .layer(from_fn_with_state(
            MAX_MESSAGE_BYTES,
            refuse_announced_oversize,
        ))
        .merge(handlers)
        .merge(super::backup::router(service.clone()))
        .merge(super::secrets::router(service.clone()))
        .merge(super::kv::router(service.clone()))
        .merge(super::dashboard::router())
        .with_state(Api { service, metrics })
}

/// The OpenAPI document of this API, generated from the handlers and the answer types.
#[derive(OpenApi)]
#[openapi(
    info(title = "jobhost REST API", description = "Jobs, triggers, handlers and API keys. \
        Send the API key as X-API-Key (or Authorization: Bearer)."),
    paths(
        create_job, create_jobs, list_jobs, get_job, job_stats, activate_jobs, complete_job, fail_job,
        cancel_job, update_retries, update_timeout, create_trigger, list_triggers, get_trigger,
        update_trigger, delete_trigger, deploy_handler, start_upload, get_upload, list_handlers, get_handler,
        remove_handler, create_key, list_keys, revoke_key, whoami, audit_trail,
        super::backup::download_backup, super::secrets::set_secret,
        super::secrets::list_secrets, super::secrets::get_secret, super::secrets::remove_secret,
        super::kv::list_buckets, super::kv::list_keys, super::kv::get_value, super::kv::set_value,
        super::kv::delete_value,
    ),
    modifiers(&ApiKeyAuth),
    security(("api_key" = [])),
)]
pub struct ApiDoc;

struct ApiKeyAuth;

impl utoipa::Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

async fn openapi_document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The query parameters of `GET /api/v1/jobs`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ListParams {
    /// pending, activatable, activated (or running), completed, failed, cancelled.
    state: Option<String>,
    /// Same as `state`.
    status: Option<String>,
    #[param(rename = "type")]
    job_type: Option<String>,
    worker: Option<String>,
    process_instance_id: Option<String>,
    element_id: Option<String>,
    tenant_id: Option<String>,
    /// RFC 3339.
    created_after: Option<String>,
    /// RFC 3339.
    created_before: Option<String>,
    /// 1h, 24h, 7d or 30d.
    period: Option<String>,
    /// From 1.
    page: Option<u32>,
    /// 1 to 100; 20 by default.
    page_size: Option<u32>,
    /// created_at, activated_at or deadline.
    sort_by: Option<String>,
    /// ASC or DESC (default).
    sort_order: Option<String>,
}

/// The query parameters of `POST /api/v1/handlers`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct DeployParams {
    /// The job type the handler runs.
    #[param(rename = "type")]
    job_type: String,
    tenant_id: Option<String>,
    memory_mb: Option<u32>,
    timeout_ms: Option<u64>,
    max_concurrency: Option<u32>,
    max_retries: Option<u32>,
    backoff_ms: Option<u64>,
    backoff_cap_ms: Option<u64>,
    fuel: Option<u64>,
    /// Repeatable: an outbound HTTP rule, `[METHODS ]SCHEME://HOST[:PORT]`.
    allow_http: Option<Vec<String>>,
    /// Repeatable: the name of a tenant secret the handler may read.
    secret: Option<Vec<String>>,
    /// Repeatable: `KEY=VALUE`, a config value the handler may read.
    config: Option<Vec<String>>,
    /// Repeatable: a key-value bucket of the tenant the handler may open.
    kv: Option<Vec<String>>,
    /// Repeatable: `HOST=Name: value` with `{{secret:NAME}}` placeholders, a header the host
    /// adds to allowed requests to that host.
    inject_header: Option<Vec<String>>,
}

/// Refuses a request whose `Content-Length` exceeds `limit` before reading a byte of its body,
/// so a client that announces gigabytes and sends a trickle cannot hold a connection open.
async fn refuse_announced_oversize(
    State(limit): State<usize>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let announced = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    match announced {
        Some(length) if length > limit as u64 => {
            let mut response = error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("the body announces {length} bytes; at most {limit} are accepted here"),
            );
            // The unread body would otherwise keep the connection busy.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            response
        }
        _ => next.run(request).await,
    }
}

/// The error envelope, `{"success": false, "error": {code, message}, "request_id"}`.
fn error_response(status: StatusCode, code: &str, message: String) -> Response {
    let body = ErrorEnvelope {
        success: false,
        error: ErrorBody {
            code: code.to_string(),
            message,
        },
        request_id: request_id(),
    };
    (status, Json(body)).into_response()
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
            ServiceError::ResourceExhausted(_) | ServiceError::RateLimited { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED")
            }
            ServiceError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            ServiceError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        };
        let mut response = error_response(status, code, self.0.to_string());
        if let ServiceError::RateLimited { retry_after, .. } = &self.0 {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_seconds(*retry_after)),
            );
        }
        response
    }
}

pub(super) type Reply<T> = Result<Json<Envelope<T>>, ApiError>;

pub(super) fn ok<T: ToSchema>(data: T) -> Reply<T> {
    Ok(Json(Envelope {
        success: true,
        data,
        request_id: request_id(),
    }))
}

fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("req_{}_{}", now_ms(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The caller's key: the `X-API-Key` header, or an `Authorization: Bearer` token (which is
/// what Prometheus scrapers send).
fn caller(api: &Api, headers: &HeaderMap) -> Result<Principal, ApiError> {
    Ok(api.service.authenticate(presented_key(headers))?)
}

pub(super) fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or(bearer)
}

/// Prometheus metrics, for a key granted every tenant (they name every tenant).
async fn render_metrics(State(api): State<Api>, headers: HeaderMap) -> Result<Response, ApiError> {
    let caller = caller(&api, &headers)?;
    api.service.authorize_metrics(&caller)?;
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    Ok((
        [(axum::http::header::CONTENT_TYPE, content_type)],
        api.metrics.render().await,
    )
        .into_response())
}

/// A whole-number query parameter, if given.
fn query_number<T: std::str::FromStr>(
    params: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, ApiError> {
    params
        .get(name)
        .map(|text| {
            text.trim().parse().map_err(|_| {
                ApiError(ServiceError::InvalidArgument(format!(
                    "{name} must be a whole number in range, got '{text}'"
                )))
            })
        })
        .transpose()
}

/// The `tenant_id` query parameter; empty when absent (the service reads it as the default).
pub(super) fn tenant_param(params: &HashMap<String, String>) -> &str {
    params.get("tenant_id").map_or("", String::as_str)
}

/// A stored value sent as the body itself, or as `{"value": "…"}` with a JSON content type.
/// A JSON parse error is not quoted back, since the body may be a secret.
pub(super) fn value_body(headers: &HeaderMap, bytes: Bytes) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ValueBody {
        value: String,
    }
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Ok(bytes.to_vec());
    }
    serde_json::from_slice::<ValueBody>(&bytes)
        .map(|body| body.value.into_bytes())
        .map_err(|_| {
            ApiError(ServiceError::InvalidArgument(
                "a JSON body must be {\"value\": \"...\"} and nothing else".into(),
            ))
        })
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

#[utoipa::path(get, path = "/api/v1/jobs/stats", tag = "jobs",
    params(("tenant_id" = Option<String>, Query, description = "Only this tenant")),
    responses((status = 200, body = Envelope<JobStats>), (status = "4XX", body = ErrorEnvelope)))]
async fn job_stats(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Reply<JobStats> {
    let caller = caller(&api, &headers)?;
    let stats = api
        .service
        .job_stats(&caller, params.get("tenant_id").map(String::as_str))
        .await?;
    ok(JobStats::of(&stats))
}

#[derive(Deserialize, ToSchema)]
struct CreateBody {
    #[serde(rename = "type")]
    job_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    variables: Option<Value>,
    #[serde(default)]
    custom_headers: BTreeMap<String, String>,
    retries: Option<i32>,
    #[serde(default)]
    tenant_id: String,
    #[serde(default)]
    priority: i32,
    /// RFC 3339 or epoch ms.
    #[schema(value_type = Option<String>)]
    run_at: Option<Value>,
    #[serde(default, alias = "delay")]
    delay_ms: i64,
    /// Unique per tenant and type while the job exists: a second create with the same key
    /// creates nothing and answers the first job.
    #[serde(default)]
    idempotency_key: String,
    #[serde(flatten)]
    process: ProcessBody,
}

#[derive(Deserialize, Default, ToSchema)]
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

#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", request_body = CreateBody,
    responses((status = 200, body = Envelope<CreatedJob>), (status = "4XX", body = ErrorEnvelope)))]
async fn create_job(State(api): State<Api>, headers: HeaderMap, bytes: Bytes) -> Reply<CreatedJob> {
    let caller = caller(&api, &headers)?;
    let create = create_request(body(&bytes)?)?;
    let key = api.service.create_job(&caller, create).await?;
    let job = api.service.get_job(&caller, &key.to_string()).await?;
    ok(CreatedJob {
        job_key: key.to_string(),
        job: JobView::of(&job),
    })
}

/// Up to 1,000 jobs to create together.
#[derive(Deserialize, ToSchema)]
struct CreateBatchBody {
    jobs: Vec<CreateBody>,
}

/// Creates up to 1,000 jobs in one atomic, durable write: all of them, or none when one is
/// refused (the message names it by its index).
#[utoipa::path(post, path = "/api/v1/jobs/batch", tag = "jobs", request_body = CreateBatchBody,
    responses((status = 200, body = Envelope<CreatedJobs>), (status = "4XX", body = ErrorEnvelope)))]
async fn create_jobs(
    State(api): State<Api>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Reply<CreatedJobs> {
    let caller = caller(&api, &headers)?;
    let batch: CreateBatchBody = body(&bytes)?;
    let creates = batch
        .jobs
        .into_iter()
        .enumerate()
        .map(|(index, job)| {
            create_request(job).map_err(|ApiError(error)| {
                ApiError(ServiceError::InvalidArgument(format!(
                    "job {index} of the batch: {error}"
                )))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let keys = api.service.create_jobs(&caller, creates).await?;
    ok(CreatedJobs {
        job_keys: keys.iter().map(ToString::to_string).collect(),
    })
}

/// A creation request as the service core takes it.
fn create_request(request: CreateBody) -> Result<service::CreateJob, ApiError> {
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
    Ok(service::CreateJob {
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
        idempotency_key: request.idempotency_key,
    })
}

#[utoipa::path(get, path = "/api/v1/jobs/{key}", tag = "jobs",
    params(("key" = String, Path, description = "The job key")),
    responses((status = 200, body = Envelope<JobView>), (status = "4XX", body = ErrorEnvelope)))]
async fn get_job(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Reply<JobView> {
    let caller = caller(&api, &headers)?;
    let job = api.service.get_job(&caller, &key).await?;
    let attempts = api.service.attempts_of(&job).await?;
    ok(JobView::of(&job).with_attempts(&attempts))
}

#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(ListParams),
    responses((status = 200, body = Envelope<JobsListing>), (status = "4XX", body = ErrorEnvelope)))]
async fn list_jobs(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Reply<JobsListing> {
    let caller = caller(&api, &headers)?;
    let text = |name: &str| params.get(name).cloned();
    let number = |name: &str| query_number::<i64>(&params, name);
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
    let page = api.service.list_jobs(&caller, request).await?;
    let state = text("state").or_else(|| text("status"));
    let filters = FiltersApplied {
        status: state.clone(),
        state,
        job_type: text("type"),
        worker: text("worker"),
        process_instance_id: text("process_instance_id"),
        element_id: text("element_id"),
        tenant_id: text("tenant_id"),
        created_after: text("created_after"),
        created_before: text("created_before"),
        period: text("period").unwrap_or_else(|| "all".into()),
    };
    ok(JobsListing::of(&page, filters))
}

#[derive(Deserialize, ToSchema)]
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

#[utoipa::path(post, path = "/api/v1/jobs/activate", tag = "jobs", request_body = ActivateBody,
    responses((status = 200, body = Envelope<ActivatedJobs>), (status = "4XX", body = ErrorEnvelope)))]
async fn activate_jobs(
    State(api): State<Api>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Reply<ActivatedJobs> {
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
    ok(ActivatedJobs {
        jobs: jobs.iter().map(JobView::leased).collect(),
    })
}

#[derive(Deserialize, ToSchema)]
struct CompleteBody {
    variables: Option<Value>,
}

#[utoipa::path(put, path = "/api/v1/jobs/{key}/complete", tag = "jobs", request_body = CompleteBody,
    params(("key" = String, Path, description = "The job key; a leased key names the lease")),
    responses((status = 200, body = Envelope<JobView>), (status = "4XX", body = ErrorEnvelope)))]
async fn complete_job(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
    bytes: Bytes,
) -> Reply<JobView> {
    let caller = caller(&api, &headers)?;
    let request: CompleteBody = body(&bytes)?;
    let result = object_text("variables", request.variables)?;
    api.service.complete_job(&caller, &key, result).await?;
    changed(&api, &caller, &key).await
}

#[derive(Deserialize, ToSchema)]
struct FailBody {
    retries: Option<i32>,
    #[serde(default)]
    error_message: String,
    #[serde(default)]
    backoff_timeout: i64,
}

#[utoipa::path(post, path = "/api/v1/jobs/{key}/fail", tag = "jobs", request_body = FailBody,
    params(("key" = String, Path, description = "The job key; a leased key names the lease")),
    responses((status = 200, body = Envelope<JobView>), (status = "4XX", body = ErrorEnvelope)))]
async fn fail_job(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
    bytes: Bytes,
) -> Reply<JobView> {
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
    changed(&api, &caller, &key).await
}

#[utoipa::path(post, path = "/api/v1/jobs/{key}/cancel", tag = "jobs",
    params(("key" = String, Path, description = "The job key")),
    responses((status = 200, body = Envelope<JobView>), (status = "4XX", body = ErrorEnvelope)))]
async fn cancel_job(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Reply<JobView> {
    let caller = caller(&api, &headers)?;
    api.service.cancel_job(&caller, &key).await?;
    changed(&api, &caller, &key).await
}

#[derive(Deserialize, ToSchema)]
struct RetriesBody {
    retries: i32,
}

#[utoipa::path(put, path = "/api/v1/jobs/{key}/retries", tag = "jobs", request_body = RetriesBody,
    params(("key" = String, Path, description = "The job key; a leased key names the lease")),
    responses((status = 200, body = Envelope<JobView>), (status = "4XX", body = ErrorEnvelope)))]
async fn update_retries(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
    bytes: Bytes,
) -> Reply<JobView> {
    let caller = caller(&api, &headers)?;
    let request: RetriesBody = body(&bytes)?;
    api.service
        .update_retries(&caller, &key, request.retries)
        .await?;
    changed(&api, &caller, &key).await
}

#[derive(Deserialize, ToSchema)]
struct TimeoutBody {
    timeout: i64,
}

#[utoipa::path(put, path = "/api/v1/jobs/{key}/timeout", tag = "jobs", request_body = TimeoutBody,
    params(("key" = String, Path, description = "The job key; a leased key names the lease")),
    responses((status = 200, body = Envelope<JobView>), (status = "4XX", body = ErrorEnvelope)))]
async fn update_timeout(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
    bytes: Bytes,
) -> Reply<JobView> {
    let caller = caller(&api, &headers)?;
    let request: TimeoutBody = body(&bytes)?;
    api.service
        .update_timeout(&caller, &key, request.timeout)
        .await?;
    changed(&api, &caller, &key).await
}

/// Answers a change with the job as it now is.
async fn changed(api: &Api, caller: &Principal, key: &str) -> Reply<JobView> {
    let job = api.service.get_job(caller, key).await?;
    ok(JobView::of(&job))
}

#[derive(Deserialize, ToSchema)]
struct KeyBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    tenants: Vec<String>,
    /// Requests per second and burst; absent: the server's default.
    rate_limit: Option<RateLimit>,
}

#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", request_body = KeyBody,
    responses((status = 200, body = Envelope<CreatedKey>), (status = "4XX", body = ErrorEnvelope)))]
async fn create_key(State(api): State<Api>, headers: HeaderMap, bytes: Bytes) -> Reply<CreatedKey> {
    let caller = caller(&api, &headers)?;
    let request: KeyBody = body(&bytes)?;
    let new_key = NewKey {
        name: request.name,
        permissions: request.permissions,
        tenants: request.tenants,
        rate_limit: request.rate_limit,
    };
    let (info, key) = api.service.create_key(&caller, new_key).await?;
    ok(CreatedKey {
        key,
        info: info.into(),
    })
}

#[utoipa::path(get, path = "/api/v1/keys", tag = "keys",
    responses((status = 200, body = Envelope<KeyList>), (status = "4XX", body = ErrorEnvelope)))]
async fn list_keys(State(api): State<Api>, headers: HeaderMap) -> Reply<KeyList> {
    let caller = caller(&api, &headers)?;
    let keys = api.service.list_keys(&caller)?;
    ok(KeyList {
        keys: keys.into_iter().map(KeyView::from).collect(),
    })
}

#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "The key's id, or the key itself")),
    responses((status = 200, body = Envelope<RevokedKey>), (status = "4XX", body = ErrorEnvelope)))]
async fn revoke_key(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply<RevokedKey> {
    let caller = caller(&api, &headers)?;
    api.service.revoke_key(&caller, &id).await?;
    ok(RevokedKey { revoked: id })
}

/// Administrative acts on the caller's tenants, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "keys",
    params(
        ("tenant_id" = Option<String>, Query, description = "Only acts touching this tenant"),
        ("action" = Option<String>, Query, description = "Only this action, e.g. key.revoked"),
        ("before" = Option<u64>, Query, description = "Only entries older than this id"),
        ("limit" = Option<u32>, Query, description = "1 to 500; 50 by default"),
    ),
    responses((status = 200, body = Envelope<AuditTrail>), (status = "4XX", body = ErrorEnvelope)))]
async fn audit_trail(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Reply<AuditTrail> {
    let caller = caller(&api, &headers)?;
    let number = |name: &str| query_number::<u64>(&params, name);
    let request = service::AuditRequest {
        tenant_id: params.get("tenant_id").cloned(),
        action: params.get("action").cloned(),
        before: number("before")?,
        limit: number("limit")?.map(|n| n.min(usize::MAX as u64) as usize),
    };
    let page = api.service.audit_trail(&caller, request).await?;
    ok(AuditTrail {
        entries: page.entries.iter().map(AuditView::of).collect(),
        next_before: page.next_before,
    })
}

/// The calling key: its permissions and tenants (`null`: every tenant), and the tenants in its
/// scope that have jobs, handlers or triggers.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "keys",
    responses((status = 200, body = Envelope<WhoAmI>), (status = "4XX", body = ErrorEnvelope)))]
async fn whoami(State(api): State<Api>, headers: HeaderMap) -> Reply<WhoAmI> {
    let caller = caller(&api, &headers)?;
    let tenants = match &caller.tenants {
        crate::job::TenantScope::All => None,
        crate::job::TenantScope::Only(tenants) => Some(tenants.iter().cloned().collect::<Vec<_>>()),
    };
    let known = api.service.known_tenants(&caller).await?;
    ok(WhoAmI {
        key_id: caller.key_id.clone(),
        permissions: caller.permissions.iter().cloned().collect(),
        tenants,
        known_tenants: known,
        quotas: api.service.quotas().clone(),
    })
}

#[utoipa::path(post, path = "/api/v1/triggers", tag = "triggers", request_body = TriggerDefinition,
    responses((status = 200, body = Envelope<TriggerView>), (status = "4XX", body = ErrorEnvelope)))]
async fn create_trigger(
    State(api): State<Api>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Reply<TriggerView> {
    let caller = caller(&api, &headers)?;
    let definition: TriggerDefinition = body(&bytes)?;
    let trigger = api.service.create_trigger(&caller, definition).await?;
    ok(TriggerView::of(&trigger))
}

#[utoipa::path(get, path = "/api/v1/triggers", tag = "triggers",
    params(
        ("tenant_id" = Option<String>, Query, description = "Only this tenant"),
        ("name" = Option<String>, Query, description = "Only the trigger of this name"),
        ("type" = Option<String>, Query, description = "Only triggers of this job type"),
    ),
    responses((status = 200, body = Envelope<TriggerList>), (status = "4XX", body = ErrorEnvelope)))]
async fn list_triggers(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Reply<TriggerList> {
    let caller = caller(&api, &headers)?;
    let filter = TriggerFilter {
        tenant_id: params.get("tenant_id").cloned(),
        name: params.get("name").cloned(),
        job_type: params.get("type").cloned(),
    };
    let triggers = api.service.list_triggers(&caller, &filter).await?;
    ok(TriggerList {
        total_count: triggers.len(),
        triggers: triggers.iter().map(TriggerView::of).collect(),
    })
}

#[utoipa::path(get, path = "/api/v1/triggers/{id}", tag = "triggers",
    params(("id" = String, Path, description = "The trigger id")),
    responses((status = 200, body = Envelope<TriggerView>), (status = "4XX", body = ErrorEnvelope)))]
async fn get_trigger(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply<TriggerView> {
    let caller = caller(&api, &headers)?;
    ok(TriggerView::of(
        &api.service.get_trigger(&caller, &id).await?,
    ))
}

#[utoipa::path(patch, path = "/api/v1/triggers/{id}", tag = "triggers",
    request_body = TriggerDefinition,
    params(("id" = String, Path, description = "The trigger id")),
    responses((status = 200, body = Envelope<TriggerView>), (status = "4XX", body = ErrorEnvelope)))]
async fn update_trigger(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Reply<TriggerView> {
    let caller = caller(&api, &headers)?;
    let change: TriggerDefinition = body(&bytes)?;
    let trigger = api.service.update_trigger(&caller, &id, change).await?;
    ok(TriggerView::of(&trigger))
}

#[utoipa::path(delete, path = "/api/v1/triggers/{id}", tag = "triggers",
    params(("id" = String, Path, description = "The trigger id")),
    responses((status = 200, body = Envelope<RemovedTrigger>), (status = "4XX", body = ErrorEnvelope)))]
async fn delete_trigger(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply<RemovedTrigger> {
    let caller = caller(&api, &headers)?;
    let removed = api.service.delete_trigger(&caller, &id).await?;
    ok(RemovedTrigger {
        removed: TriggerView::of(&removed),
    })
}

#[utoipa::path(post, path = "/api/v1/handlers", tag = "handlers",
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component"),
    params(DeployParams),
    responses((status = 200, body = Envelope<HandlerView>), (status = "4XX", body = ErrorEnvelope)))]
async fn deploy_handler(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
    bytes: Bytes,
) -> Reply<HandlerView> {
    let caller = caller(&api, &headers)?;
    let deployment = deployment(&pairs, bytes)?;
    let handler = api.service.deploy_handler(&caller, deployment).await?;
    ok(HandlerView::of(&handler))
}

/// Checks an upload at once and compiles it in the background (large components take
/// seconds); follow it at `GET /api/v1/handlers/uploads/{id}`.
#[utoipa::path(post, path = "/api/v1/handlers/uploads", tag = "handlers",
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component"),
    params(DeployParams),
    responses((status = 200, body = Envelope<UploadView>), (status = "4XX", body = ErrorEnvelope)))]
async fn start_upload(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
    bytes: Bytes,
) -> Reply<UploadView> {
    let caller = caller(&api, &headers)?;
    let deployment = deployment(&pairs, bytes)?;
    let status = api
        .service
        .deploy_handler_in_background(&caller, deployment)?;
    ok(UploadView::of(&status))
}

/// How an upload compiled in the background stands: compiling, ready (with its handler's
/// id and version) or failed (with the reason).
#[utoipa::path(get, path = "/api/v1/handlers/uploads/{id}", tag = "handlers",
    params(("id" = String, Path, description = "The upload id")),
    responses((status = 200, body = Envelope<UploadView>), (status = "4XX", body = ErrorEnvelope)))]
async fn get_upload(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply<UploadView> {
    let caller = caller(&api, &headers)?;
    ok(UploadView::of(&api.service.upload(&caller, &id)?))
}

/// A deployment from the query parameters of an upload and its body.
fn deployment(pairs: &[(String, String)], bytes: Bytes) -> Result<Deployment, ApiError> {
    let every = |name: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .collect()
    };
    let params: HashMap<String, String> = pairs.iter().cloned().collect();
    let number = |name: &str| query_number::<u64>(&params, name);
    let small = |name: &str| query_number::<u32>(&params, name);
    Ok(Deployment {
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
        grants: GrantRequest {
            http: every("allow_http"),
            secrets: every("secret"),
            config: every("config"),
            kv: every("kv"),
            inject_headers: every("inject_header"),
        },
        component: bytes.to_vec(),
    })
}

#[utoipa::path(get, path = "/api/v1/handlers", tag = "handlers",
    responses((status = 200, body = Envelope<HandlerList>), (status = "4XX", body = ErrorEnvelope)))]
async fn list_handlers(State(api): State<Api>, headers: HeaderMap) -> Reply<HandlerList> {
    let caller = caller(&api, &headers)?;
    let handlers = api.service.list_handlers(&caller)?;
    ok(HandlerList {
        handlers: handlers.iter().map(|h| HandlerView::of(h)).collect(),
    })
}

#[utoipa::path(get, path = "/api/v1/handlers/{id}", tag = "handlers",
    params(("id" = String, Path, description = "The handler id")),
    responses((status = 200, body = Envelope<HandlerView>), (status = "4XX", body = ErrorEnvelope)))]
async fn get_handler(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply<HandlerView> {
    let caller = caller(&api, &headers)?;
    let handler = api.service.get_handler(&caller, &id)?;
    ok(HandlerView::of(&handler))
}

#[utoipa::path(delete, path = "/api/v1/handlers/{id}", tag = "handlers",
    params(("id" = String, Path, description = "The handler id")),
    responses((status = 200, body = Envelope<RemovedHandler>), (status = "4XX", body = ErrorEnvelope)))]
async fn remove_handler(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply<RemovedHandler> {
    let caller = caller(&api, &headers)?;
    api.service.remove_handler(&caller, &id).await?;
    ok(RemovedHandler { removed: id })
}
