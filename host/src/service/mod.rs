//! The service core: every operation of every driver (the gRPC and REST APIs, the executor,
//! the trigger scheduler, retention) on jobs, triggers, handlers, keys, secrets and buckets,
//! validated, authorized and carried out here, so the drivers stay thin translators.
//!
//! The core checks requests against [`crate::job::limits`], scopes them to the caller's
//! tenants, and hands state changes to the [`JobStore`], which decides them through
//! [`crate::job::state`]. Long polls wait here, bounded in number and ended by shutdown.
//! Trigger management lives in the `triggers` submodule.

mod attempts;
mod audit;
mod backup;
pub mod capabilities;
pub mod handlers;
mod keys;
mod kv;
mod retention;
mod secrets;
mod triggers;

pub use attempts::AttemptEnd;
pub use audit::AuditRequest;
pub(crate) use audit::record_act;
pub use handlers::HandlerRegistry;
pub use keys::ApiKeys;
pub use secrets::{MAX_SECRETS_PER_TENANT, SecretInfo};
pub use triggers::{TimeInput, TriggerDefinition, TriggerFilter};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::audit::AuditAction;
use crate::auth::{self, AuthError, Principal};
use crate::clock::Clock;
use crate::job::limits::{self, valid_tenant_id};
use crate::job::state::Event;
use crate::job::{
    AttemptLog, EpochMs, Job, JobKey, JobPayload, JobRecord, JobState, NewJob, ProcessRef,
    TenantScope, now_ms,
};
use crate::quota::{Holdings, QuotaExceeded, Quotas};
use crate::secrets::SecretBox;
use crate::signals::{Signal, Signals};
use crate::store::index::{IndexStats, StateCounts};
use crate::store::{Activation, ApplyError, JobStore, ListPage, ListQuery, SortBy, StoreError};
use capabilities::CapabilitySource;

/// The tenant of a job created without one.
pub const DEFAULT_TENANT: &str = "default";

/// How a request failed; each API maps these to its own status codes.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ServiceError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// The caller's key is over its rate limit; it may retry after the given time.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Duration,
    },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<AuthError> for ServiceError {
    fn from(error: AuthError) -> ServiceError {
        let message = error.to_string();
        match error {
            AuthError::MissingKey | AuthError::UnknownKey => ServiceError::Unauthenticated(message),
            AuthError::MissingPermission(_) | AuthError::TenantNotGranted(_) => {
                ServiceError::PermissionDenied(message)
            }
            AuthError::InvalidRequest(_) => ServiceError::InvalidArgument(message),
            AuthError::RateLimited { retry_after } => ServiceError::RateLimited {
                message,
                retry_after,
            },
        }
    }
}

impl From<QuotaExceeded> for ServiceError {
    fn from(error: QuotaExceeded) -> ServiceError {
        ServiceError::ResourceExhausted(error.to_string())
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> ServiceError {
        match error {
            StoreError::Closed => ServiceError::Unavailable("the server is shutting down".into()),
            StoreError::Unavailable(why) => ServiceError::Unavailable(why),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<ApplyError> for ServiceError {
    fn from(error: ApplyError) -> ServiceError {
        match error {
            ApplyError::NotFound(id) => ServiceError::NotFound(format!("job {id} not found")),
            ApplyError::Refused(refusal) => ServiceError::FailedPrecondition(refusal.to_string()),
            ApplyError::Store(store) => store.into(),
        }
    }
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::InvalidArgument(message.into())
}

/// A request to create a job, as the APIs receive it.
#[derive(Clone, Debug, Default)]
pub struct CreateJob {
    pub job_type: String,
    /// JSON object text; empty means `{}`.
    pub variables: String,
    pub custom_headers: BTreeMap<String, String>,
    pub retries: Option<i32>,
    pub tenant_id: String,
    pub priority: i32,
    /// Epoch ms; 0 means none.
    pub run_at: EpochMs,
    /// Milliseconds; 0 means none.
    pub delay_ms: i64,
    pub process: ProcessRef,
    /// Empty means none; see [`NewJob::idempotency_key`].
    pub idempotency_key: String,
}

/// A request to lease jobs, as the APIs receive it (0 means "the default").
#[derive(Clone, Debug, Default)]
pub struct ActivateJobs {
    pub job_type: String,
    pub worker: String,
    pub timeout_ms: i64,
    pub max_jobs: i64,
    pub fetch_variables: Vec<String>,
    /// Comma-separated tenant ids; empty means all the caller's tenants.
    pub tenant_ids: String,
    /// Long-poll bound in ms: `None` or 0 means the default, negative means no wait.
    pub request_timeout_ms: Option<i64>,
}

/// A listing request, with the REST seed's parameters as text.
#[derive(Clone, Debug, Default)]
pub struct ListJobs {
    pub state: Option<String>,
    pub job_type: Option<String>,
    pub worker: Option<String>,
    pub process_instance_id: Option<String>,
    pub element_id: Option<String>,
    pub tenant_id: Option<String>,
    pub created_after: Option<String>,
    pub created_before: Option<String>,
    pub period: Option<String>,
    pub page: Option<i64>,
    pub page_size: Option<i64>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
}

/// One page of a listing.
#[derive(Clone, Debug)]
pub struct JobsPage {
    pub jobs: Vec<Job>,
    pub page: u32,
    pub page_size: u32,
    pub total_count: u64,
    /// Every matching job (not just this page's) by state.
    pub counts: StateCounts,
}

impl JobsPage {
    pub fn total_pages(&self) -> u32 {
        self.total_count.div_ceil(u64::from(self.page_size)) as u32
    }
}

pub struct JobService {
    store: Arc<dyn JobStore>,
    keys: Arc<ApiKeys>,
    handlers: Arc<HandlerRegistry>,
    shutdown: watch::Receiver<bool>,
    quotas: Quotas,
    /// Long polls waiting now, bounded by the quotas.
    waiting: Arc<Holdings>,
    creating_trigger: tokio::sync::Mutex<()>,
    /// The trigger scheduler's clock: trigger cursors are set by it.
    clock: Arc<dyn Clock>,
    /// Cancelled jobs and changed triggers are announced here.
    signals: Signals,
    /// Seals tenants' secrets under the server's key.
    secret_box: Arc<SecretBox>,
    /// What attempts of handlers may reach, by their grants.
    capabilities: CapabilitySource,
}

/// What the service needs besides the store.
pub struct ServiceParts {
    pub keys: Arc<ApiKeys>,
    pub handlers: Arc<HandlerRegistry>,
    /// Turning true ends every long poll at once, with no jobs.
    pub shutdown: watch::Receiver<bool>,
    pub clock: Arc<dyn Clock>,
    pub signals: Signals,
    pub quotas: Quotas,
    pub secret_box: Arc<SecretBox>,
    pub capabilities: CapabilitySource,
}

impl JobService {
    pub fn new(store: Arc<dyn JobStore>, parts: ServiceParts) -> JobService {
        JobService {
            store,
            keys: parts.keys,
            handlers: parts.handlers,
            shutdown: parts.shutdown,
            waiting: Arc::new(Holdings::new(
                "waiting long polls",
                parts.quotas.waiting_activations,
                parts.quotas.waiting_activations_per_tenant,
                parts.quotas.waiting_activations_per_key,
            )),
            quotas: parts.quotas,
            creating_trigger: tokio::sync::Mutex::new(()),
            clock: parts.clock,
            signals: parts.signals,
            secret_box: parts.secret_box,
            capabilities: parts.capabilities,
        }
    }

    pub fn authenticate(&self, api_key: Option<&str>) -> Result<Principal, ServiceError> {
        Ok(self.keys.authenticate(api_key)?)
    }

    /// Counts of the caller's jobs (in one tenant, if named) by state, type and tenant, with
    /// the last hour's completions and incidents per minute and run times.
    pub async fn job_stats(
        &self,
        caller: &Principal,
        tenant_id: Option<&str>,
    ) -> Result<IndexStats, ServiceError> {
        caller.require(auth::JOBS)?;
        let tenant = tenant_id.map(str::trim).filter(|t| !t.is_empty());
        if let Some(tenant) = tenant {
            if !valid_tenant_id(tenant) {
                return Err(invalid(format!("invalid tenant_id '{tenant}'")));
            }
            caller.require_tenant(tenant)?;
        }
        Ok(self.store.stats(&caller.tenants, tenant, now_ms()).await?)
    }

    /// Tenants in the caller's scope that have jobs, handlers or triggers, and every tenant the
    /// caller is granted by name.
    pub async fn known_tenants(&self, caller: &Principal) -> Result<Vec<String>, ServiceError> {
        let mut tenants = std::collections::BTreeSet::new();
        if let TenantScope::Only(granted) = &caller.tenants {
            tenants.extend(granted.iter().cloned());
        }
        tenants.extend(self.store.job_tenants().await?);
        tenants.extend(
            self.handlers
                .snapshot()
                .iter()
                .map(|h| h.record.tenant.clone()),
        );
        tenants.extend(self.store.triggers().await?.into_iter().map(|t| t.tenant));
        tenants.retain(|tenant| caller.tenants.contains(tenant));
        Ok(tenants.into_iter().collect())
    }

    /// Long polls waiting now.
    pub fn waiting_activations(&self) -> usize {
        self.waiting.total()
    }

    /// The quotas every tenant and key is held to.
    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    pub async fn create_job(
        &self,
        caller: &Principal,
        request: CreateJob,
    ) -> Result<JobKey, ServiceError> {
        caller.require(auth::JOBS)?;
        let job = self.validate_new_job(caller, request)?;
        let (job_type, tenant) = (job.job_type.clone(), job.tenant.clone());
        let ids = self.store.create(vec![job]).await?;
        tracing::debug!(job = ids[0], %job_type, %tenant, key_id = %caller.key_id, "job created");
        Ok(JobKey::job(ids[0]))
    }

    /// Creates many jobs in one atomic, durable write: all of them, or none when one is
    /// refused (the message names it by its index in the batch).
    pub async fn create_jobs(
        &self,
        caller: &Principal,
        requests: Vec<CreateJob>,
    ) -> Result<Vec<JobKey>, ServiceError> {
        caller.require(auth::JOBS)?;
        if requests.is_empty() {
            return Err(invalid("a batch needs at least one job"));
        }
        if requests.len() > limits::MAX_JOBS_PER_BATCH {
            return Err(invalid(format!(
                "a batch may carry at most {} jobs, got {}",
                limits::MAX_JOBS_PER_BATCH,
                requests.len()
            )));
        }
        let jobs = requests
            .into_iter()
            .enumerate()
            .map(|(index, request)| {
                self.validate_new_job(caller, request)
                    .map_err(|error| in_batch(index, error))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ids = self.store.create(jobs).await?;
        tracing::debug!(jobs = ids.len(), key_id = %caller.key_id, "jobs created in a batch");
        Ok(ids.into_iter().map(JobKey::job).collect())
    }

    fn validate_new_job(
        &self,
        caller: &Principal,
        request: CreateJob,
    ) -> Result<NewJob, ServiceError> {
        let job_type = required_name("type", &request.job_type)?;
        let tenant = tenant_or_default(&request.tenant_id)?;
        caller.require_tenant(&tenant)?;
        let variables = json_object("variables", &request.variables)?;
        limits::check_custom_headers(&request.custom_headers).map_err(invalid)?;
        let retries = request.retries.unwrap_or(limits::DEFAULT_RETRIES);
        if !(1..=limits::MAX_RETRIES).contains(&retries) {
            return Err(invalid(format!(
                "retries must be between 1 and {}, got {retries}",
                limits::MAX_RETRIES
            )));
        }
        let now = now_ms();
        let run_at = match (request.run_at, request.delay_ms) {
            (0, 0) => None,
            (at, 0) if at > 0 => Some(at),
            // Saturating: a delay past the largest time is refused below, never wrapped.
            (0, delay) if delay > 0 => Some(now.saturating_add(delay)),
            (at, 0) => {
                return Err(invalid(format!(
                    "run_at must be a positive epoch ms, got {at}"
                )));
            }
            (0, delay) => return Err(invalid(format!("delay must not be negative, got {delay}"))),
            _ => return Err(invalid("give run_at or delay, not both")),
        };
        if let Some(at) = run_at
            && at - now > limits::MAX_BACKOFF_MS
        {
            let field = if request.delay_ms > 0 {
                "delay"
            } else {
                "run_at"
            };
            return Err(invalid(format!(
                "{field} may schedule a job at most {} days ahead",
                limits::MAX_BACKOFF_MS / 86_400_000
            )));
        }
        let idempotency_key = match request.idempotency_key.as_str() {
            "" => None,
            key => {
                limits::check_idempotency_key(key).map_err(invalid)?;
                Some(key.to_string())
            }
        };
        Ok(NewJob {
            tenant,
            job_type,
            priority: request.priority,
            retries,
            run_at,
            payload: JobPayload {
                variables,
                custom_headers: request.custom_headers,
                process: request.process,
            },
            idempotency_key,
        })
    }

    /// Leases jobs, waiting for them as a long poll unless told not to.
    pub async fn activate_jobs(
        &self,
        caller: &Principal,
        request: ActivateJobs,
    ) -> Result<Vec<Job>, ServiceError> {
        caller.require(auth::JOBS)?;
        let job_type = required_name("type", &request.job_type)?;
        let worker = required_name("worker", &request.worker)?;
        let timeout_ms = match request.timeout_ms {
            0 => limits::DEFAULT_JOB_TIMEOUT_MS,
            t if t < 0 => return Err(invalid(format!("timeout must not be negative, got {t}"))),
            t if t > limits::MAX_JOB_TIMEOUT_MS => {
                return Err(invalid(format!(
                    "timeout must be at most {} ms, got {t}",
                    limits::MAX_JOB_TIMEOUT_MS
                )));
            }
            t => t,
        };
        let max_jobs = match request.max_jobs {
            0 => limits::DEFAULT_MAX_JOBS,
            n if n < 0 => {
                return Err(invalid(format!(
                    "max_jobs_to_activate must not be negative, got {n}"
                )));
            }
            n if n as usize > limits::MAX_JOBS_PER_ACTIVATION => {
                return Err(invalid(format!(
                    "max_jobs_to_activate must be at most {}, got {n}",
                    limits::MAX_JOBS_PER_ACTIVATION
                )));
            }
            n => n as usize,
        };
        let scope = requested_tenants(caller, &request.tenant_ids)?;
        let wait_ms = match request.request_timeout_ms {
            None | Some(0) => limits::DEFAULT_LONG_POLL_MS,
            Some(ms) => ms.min(limits::MAX_LONG_POLL_MS),
        };
        let mut activation = Activation {
            job_type,
            worker,
            scope,
            max_jobs,
            timeout_ms,
            wait: false,
            in_process: false,
        };
        // Ready jobs are served before a waiting slot is taken, so no quota stands between a
        // worker and a job that is already there.
        let mut jobs = self.store.activate(activation.clone()).await?;
        if jobs.is_empty() && wait_ms > 0 && !*self.shutdown.borrow() {
            let _slot = self
                .waiting
                .take(&caller.key_id, &activation.scope)
                .map_err(ServiceError::from)?;
            activation.wait = true;
            let mut shutdown = self.shutdown.clone();
            let wait = Duration::from_millis(wait_ms as u64);
            jobs = tokio::select! {
                result = tokio::time::timeout(wait, self.store.activate(activation)) => {
                    result.unwrap_or(Ok(Vec::new()))?
                }
                _ = shutdown.wait_for(|stopping| *stopping) => Vec::new(),
            };
        }
        if !request.fetch_variables.is_empty() {
            for job in &mut jobs {
                job.payload.variables =
                    only_variables(&job.payload.variables, &request.fetch_variables);
            }
        }
        Ok(jobs)
    }

    /// Hands back jobs that could not be delivered to their worker.
    pub async fn release(&self, jobs: &[Job]) -> Result<(), ServiceError> {
        let leases = jobs
            .iter()
            .map(|job| (job.record.id, job.record.lease))
            .collect();
        Ok(self.store.release(leases).await?)
    }

    /// Completes a job with result variables (JSON object text).
    pub async fn complete_job(
        &self,
        caller: &Principal,
        key: &str,
        result: String,
    ) -> Result<JobRecord, ServiceError> {
        let result = json_object("variables", &result)?;
        self.change(caller, key, |lease| Event::Complete { lease, result })
            .await
    }

    /// Completes many jobs, each decided on its own as [`JobService::complete_job`] would;
    /// the changes are sent to the store together, so they share its group commits.
    pub async fn complete_jobs(
        &self,
        caller: &Principal,
        completions: Vec<(String, String)>,
    ) -> Result<Vec<Result<JobRecord, ServiceError>>, ServiceError> {
        caller.require(auth::JOBS)?;
        if completions.len() > limits::MAX_JOBS_PER_BATCH {
            return Err(invalid(format!(
                "a batch may carry at most {} completions, got {}",
                limits::MAX_JOBS_PER_BATCH,
                completions.len()
            )));
        }
        let each = completions
            .into_iter()
            .map(|(key, result)| async move { self.complete_job(caller, &key, result).await });
        Ok(futures::future::join_all(each).await)
    }

    pub async fn fail_job(
        &self,
        caller: &Principal,
        key: &str,
        retries: i32,
        error_message: String,
        backoff_ms: i64,
    ) -> Result<JobRecord, ServiceError> {
        if retries > limits::MAX_RETRIES {
            return Err(invalid(format!(
                "retries must be at most {}, got {retries}",
                limits::MAX_RETRIES
            )));
        }
        if !(0..=limits::MAX_BACKOFF_MS).contains(&backoff_ms) {
            return Err(invalid(format!(
                "backoff_timeout must be between 0 and {} ms, got {backoff_ms}",
                limits::MAX_BACKOFF_MS
            )));
        }
        self.change(caller, key, |lease| Event::Fail {
            lease,
            retries,
            backoff_ms,
            error: error_message,
        })
        .await
    }

    /// Extends the lease of an activated job: new deadline = now + `timeout_ms`.
    pub async fn update_timeout(
        &self,
        caller: &Principal,
        key: &str,
        timeout_ms: i64,
    ) -> Result<JobRecord, ServiceError> {
        if !(1..=limits::MAX_JOB_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(invalid(format!(
                "timeout must be between 1 and {} ms, got {timeout_ms}",
                limits::MAX_JOB_TIMEOUT_MS
            )));
        }
        self.change(caller, key, |lease| Event::ExtendLease {
            lease,
            timeout_ms,
        })
        .await
    }

    pub async fn update_retries(
        &self,
        caller: &Principal,
        key: &str,
        retries: i32,
    ) -> Result<JobRecord, ServiceError> {
        if !(1..=limits::MAX_RETRIES).contains(&retries) {
            return Err(invalid(format!(
                "retries must be between 1 and {}, got {retries}",
                limits::MAX_RETRIES
            )));
        }
        let record = self
            .change(caller, key, |_| Event::UpdateRetries { retries })
            .await?;
        record_act(
            self.store.as_ref(),
            caller,
            AuditAction::JobRetriesUpdated,
            vec![record.tenant.clone()],
            record.id.to_string(),
            format!("retries set to {retries}; the job is {}", record.state),
        )
        .await?;
        Ok(record)
    }

    /// Cancels a job; an attempt of a Wasm handler running for it is interrupted.
    pub async fn cancel_job(
        &self,
        caller: &Principal,
        key: &str,
    ) -> Result<JobRecord, ServiceError> {
        let record = self.change(caller, key, |_| Event::Cancel).await?;
        self.signals.publish(Signal::JobCancelled(record.id));
        record_act(
            self.store.as_ref(),
            caller,
            AuditAction::JobCancelled,
            vec![record.tenant.clone()],
            record.id.to_string(),
            format!("type {}", record.job_type),
        )
        .await?;
        Ok(record)
    }

    /// The Wasm attempts logged for a job read with [`JobService::get_job`], oldest first.
    pub async fn attempts_of(&self, job: &Job) -> Result<Vec<AttemptLog>, ServiceError> {
        Ok(self.store.attempts(job.record.id).await?)
    }

    async fn change(
        &self,
        caller: &Principal,
        key: &str,
        event: impl FnOnce(Option<u32>) -> Event,
    ) -> Result<JobRecord, ServiceError> {
        caller.require(auth::JOBS)?;
        let key = parse_key(key)?;
        let scope = caller.tenants.clone();
        let record = self.store.apply(key.id, scope, event(key.lease)).await?;
        log_change(&record, &caller.key_id);
        Ok(record)
    }

    pub async fn get_job(&self, caller: &Principal, key: &str) -> Result<Job, ServiceError> {
        caller.require(auth::JOBS)?;
        let key = parse_key(key)?;
        match self.store.get(key.id).await? {
            Some(job) if caller.tenants.contains(&job.record.tenant) => Ok(job),
            _ => Err(ServiceError::NotFound(format!("job {} not found", key.id))),
        }
    }

    pub async fn list_jobs(
        &self,
        caller: &Principal,
        request: ListJobs,
    ) -> Result<JobsPage, ServiceError> {
        caller.require(auth::JOBS)?;
        let text = |value: Option<String>| {
            value
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let state = match text(request.state) {
            None => None,
            Some(state) => Some(JobState::parse(&state).ok_or_else(|| {
                invalid(format!(
                    "unknown state '{state}': expected pending, activatable, activated, running, completed, failed or cancelled"
                ))
            })?),
        };
        let tenant = text(request.tenant_id);
        if let Some(tenant) = &tenant {
            if !valid_tenant_id(tenant) {
                return Err(invalid(format!("invalid tenant_id '{tenant}'")));
            }
            caller.require_tenant(tenant)?;
        }
        let now = now_ms();
        let mut created_after = text(request.created_after)
            .map(|t| parse_time("created_after", &t))
            .transpose()?;
        let created_before = text(request.created_before)
            .map(|t| parse_time("created_before", &t))
            .transpose()?;
        if let Some(period) = text(request.period) {
            let span = match period.as_str() {
                "1h" => 3_600_000,
                "24h" => 86_400_000,
                "7d" => 7 * 86_400_000,
                "30d" => 30 * 86_400_000,
                "all" => 0,
                other => {
                    return Err(invalid(format!(
                        "unknown period '{other}': expected 1h, 24h, 7d or 30d"
                    )));
                }
            };
            if span > 0 {
                created_after = Some(created_after.unwrap_or(i64::MIN).max(now - span));
            }
        }
        let page = request.page.unwrap_or(1);
        if page < 1 || page > i64::from(u32::MAX) {
            return Err(invalid(format!("page must be at least 1, got {page}")));
        }
        let page_size = match request.page_size.unwrap_or(20) {
            0 => 20,
            n if (1..=100).contains(&n) => n,
            n => {
                return Err(invalid(format!(
                    "page_size must be between 1 and 100, got {n}"
                )));
            }
        };
        let sort_by = match text(request.sort_by).as_deref() {
            None | Some("created_at") => SortBy::CreatedAt,
            Some("activated_at") => SortBy::ActivatedAt,
            Some("deadline") => SortBy::Deadline,
            Some(other) => {
                return Err(invalid(format!(
                    "unknown sort_by '{other}': expected created_at, activated_at or deadline"
                )));
            }
        };
        let descending = match text(request.sort_order)
            .map(|o| o.to_ascii_uppercase())
            .as_deref()
        {
            None | Some("DESC") => true,
            Some("ASC") => false,
            Some(other) => {
                return Err(invalid(format!(
                    "unknown sort_order '{other}': expected ASC or DESC"
                )));
            }
        };
        let query = ListQuery {
            scope: caller.tenants.clone(),
            tenant,
            state,
            job_type: text(request.job_type),
            worker: text(request.worker),
            process_instance_key: text(request.process_instance_id),
            element_id: text(request.element_id),
            created_after,
            created_before,
            sort_by,
            descending,
            offset: ((page - 1) * page_size) as usize,
            limit: page_size as usize,
        };
        let ListPage {
            jobs,
            total,
            counts,
        } = self.store.list(&query).await?;
        Ok(JobsPage {
            jobs,
            page: page as u32,
            page_size: page_size as u32,
            total_count: total,
            counts,
        })
    }
}

/// Logs a change made through the API: incidents and cancellations always, the rest at debug.
fn log_change(record: &JobRecord, key_id: &str) {
    let (job, job_type, tenant) = (record.id, &record.job_type, &record.tenant);
    match record.state {
        JobState::Failed => tracing::warn!(
            job, %job_type, %tenant, worker = %record.worker, error = %record.error_message,
            "job failed without retries left: incident"
        ),
        JobState::Cancelled => tracing::info!(job, %job_type, %tenant, %key_id, "job cancelled"),
        state => tracing::debug!(job, %job_type, %tenant, state = state.as_str(), "job changed"),
    }
}

fn parse_key(key: &str) -> Result<JobKey, ServiceError> {
    if key.trim().is_empty() {
        return Err(invalid("job_key must not be empty"));
    }
    key.trim()
        .parse()
        .map_err(|e: crate::job::keys::InvalidJobKey| invalid(e.to_string()))
}

fn required_name(field: &str, value: &str) -> Result<String, ServiceError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(invalid(format!("{field} must not be blank")));
    }
    if value.len() > limits::MAX_NAME_BYTES {
        return Err(invalid(format!(
            "{field} must be at most {} bytes, got {}",
            limits::MAX_NAME_BYTES,
            value.len()
        )));
    }
    Ok(value.to_string())
}

/// A refusal of one job of a batch, naming it by its index.
fn in_batch(index: usize, error: ServiceError) -> ServiceError {
    let name = |message: String| format!("job {index} of the batch: {message}");
    match error {
        ServiceError::InvalidArgument(message) => ServiceError::InvalidArgument(name(message)),
        ServiceError::PermissionDenied(message) => ServiceError::PermissionDenied(name(message)),
        other => other,
    }
}

fn tenant_or_default(tenant: &str) -> Result<String, ServiceError> {
    let tenant = tenant.trim();
    if tenant.is_empty() {
        return Ok(DEFAULT_TENANT.to_string());
    }
    if !valid_tenant_id(tenant) {
        return Err(invalid(format!(
            "invalid tenant_id '{}': use 1-31 characters of A-Z a-z 0-9 . _ -",
            tenant.chars().take(40).collect::<String>()
        )));
    }
    Ok(tenant.to_string())
}

/// The tenants an activation may take jobs from: the named ones, all granted to the caller.
fn requested_tenants(caller: &Principal, tenant_ids: &str) -> Result<TenantScope, ServiceError> {
    let named: Vec<&str> = tenant_ids
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if named.is_empty() {
        return Ok(caller.tenants.clone());
    }
    for tenant in &named {
        if !valid_tenant_id(tenant) {
            return Err(invalid(format!(
                "invalid tenant id '{tenant}' in tenant_ids"
            )));
        }
        caller.require_tenant(tenant)?;
    }
    Ok(TenantScope::only(named))
}

/// Checks that `text` is a JSON object (empty means `{}`) and returns it compactly.
fn json_object(field: &str, text: &str) -> Result<String, ServiceError> {
    if text.trim().is_empty() {
        return Ok("{}".to_string());
    }
    limits::check_variables(field, text).map_err(invalid)?;
    // Stored compactly: what a client sent is read back without its layout.
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => Ok(value.to_string()),
        Err(error) => Err(invalid(format!("{field} is not valid JSON: {error}"))),
    }
}

/// Keeps only the named top-level variables.
fn only_variables(variables: &str, names: &[String]) -> String {
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(variables) {
        Ok(mut all) => {
            all.retain(|name, _| names.iter().any(|wanted| wanted == name));
            serde_json::Value::Object(all).to_string()
        }
        Err(_) => variables.to_string(),
    }
}

/// Parses an RFC 3339 time or epoch milliseconds.
pub fn parse_time(field: &str, text: &str) -> Result<EpochMs, ServiceError> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as EpochMs)
        .map_err(|_| {
            invalid(format!(
                "{field} must be an RFC 3339 time such as 2025-01-11T10:30:00Z, got '{text}'"
            ))
        })
}
