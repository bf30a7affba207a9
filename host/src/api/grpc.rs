//! The gRPC adapter: `atom.jobs.v1.JobsService` over the service core. It translates messages
//! and errors, and nothing else.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::auth::Principal;
use crate::job::{Job, JobKey};
use crate::service::{self, JobService, ServiceError};

pub mod pb {
    tonic::include_proto!("atom.jobs.v1");

    /// The encoded descriptors of `jobs.proto`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/jobs_descriptor.bin"));
}

use pb::jobs_service_server::JobsService;

/// How much sooner than the client's own gRPC deadline a long poll ends, so that it closes
/// cleanly instead of with DEADLINE_EXCEEDED.
const DEADLINE_MARGIN: Duration = Duration::from_millis(100);

pub struct GrpcJobs {
    service: Arc<JobService>,
}

impl GrpcJobs {
    pub fn new(service: Arc<JobService>) -> GrpcJobs {
        GrpcJobs { service }
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let key = request
            .metadata()
            .get("x-api-key")
            .and_then(|value| value.to_str().ok());
        self.service.authenticate(key).map_err(status)
    }
}

pub fn status(error: ServiceError) -> Status {
    match error {
        ServiceError::InvalidArgument(m) => Status::invalid_argument(m),
        ServiceError::NotFound(m) => Status::not_found(m),
        ServiceError::FailedPrecondition(m) => Status::failed_precondition(m),
        ServiceError::PermissionDenied(m) => Status::permission_denied(m),
        ServiceError::Unauthenticated(m) => Status::unauthenticated(m),
        ServiceError::ResourceExhausted(m) => Status::resource_exhausted(m),
        ServiceError::RateLimited {
            message,
            retry_after,
        } => {
            let mut status = Status::resource_exhausted(message);
            let metadata = status.metadata_mut();
            // Whole seconds, as HTTP's Retry-After; milliseconds as gRPC's retry pushback.
            let seconds = crate::rate_limit::retry_after_seconds(retry_after);
            if let Ok(value) = seconds.to_string().parse() {
                metadata.insert("retry-after", value);
            }
            let millis = retry_after.as_millis().max(1);
            if let Ok(value) = millis.to_string().parse() {
                metadata.insert("grpc-retry-pushback-ms", value);
            }
            status
        }
        ServiceError::Unavailable(m) => Status::unavailable(m),
        ServiceError::Internal(m) => Status::internal(m),
    }
}

/// The client's deadline from the `grpc-timeout` header, if it sent one.
fn client_deadline(metadata: &MetadataMap) -> Option<Duration> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (amount, unit) = text.split_at(text.len().checked_sub(1)?);
    let amount: u64 = amount.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

fn activated_job(job: Job) -> pb::ActivatedJob {
    let Job { record, payload } = job;
    let process = payload.process;
    pb::ActivatedJob {
        job_key: JobKey::leased(record.id, record.lease).to_string(),
        r#type: record.job_type,
        process_instance_key: process.process_instance_key,
        bpmn_process_id: process.bpmn_process_id,
        process_definition_version: process.process_definition_version,
        process_definition_key: process.process_definition_key,
        element_id: process.element_id,
        element_instance_key: process.element_instance_key,
        custom_headers: payload.custom_headers.into_iter().collect(),
        worker: record.worker,
        retries: record.retries,
        deadline: record.deadline,
        variables: payload.variables,
        tenant_id: record.tenant,
    }
}

pub fn job_message(job: Job) -> pb::Job {
    let Job { record, payload } = job;
    let process = payload.process;
    pb::Job {
        job_key: record.id.to_string(),
        r#type: record.job_type,
        state: record.state.as_str().to_string(),
        retries: record.retries,
        variables: payload.variables,
        result_variables: record.result.unwrap_or_default(),
        error_message: record.error_message,
        worker: record.worker,
        tenant_id: record.tenant,
        deadline: record.deadline,
        created_at: record.created_at,
        failure_history: record
            .failure_history
            .into_iter()
            .map(|f| pb::FailureRecord {
                attempt: f.attempt,
                failed_at: f.failed_at,
                worker: f.worker,
                error: f.error,
                retries: f.retries,
            })
            .collect(),
        custom_headers: payload.custom_headers.into_iter().collect(),
        priority: record.priority,
        original_retries: record.original_retries,
        due_at: record.due_at,
        activated_at: record.activated_at,
        finished_at: record.finished_at,
        activations: record.lease,
        timeout_ms: record.timeout_ms,
        process_instance_key: process.process_instance_key,
        bpmn_process_id: process.bpmn_process_id,
        process_definition_version: process.process_definition_version,
        process_definition_key: process.process_definition_key,
        element_id: process.element_id,
        element_instance_key: process.element_instance_key,
        attempts: Vec::new(),
    }
}

/// Result variables of CompleteJob: a JSON object of strings.
fn result_json(variables: HashMap<String, String>) -> String {
    let object: serde_json::Map<String, serde_json::Value> = variables
        .into_iter()
        .map(|(name, value)| (name, serde_json::Value::String(value)))
        .collect();
    serde_json::Value::Object(object).to_string()
}

type ActivateStream = Pin<Box<dyn Stream<Item = Result<pb::ActivateJobsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl JobsService for GrpcJobs {
    type ActivateJobsStream = ActivateStream;

    async fn activate_jobs(
        &self,
        request: Request<pb::ActivateJobsRequest>,
    ) -> Result<Response<ActivateStream>, Status> {
        let caller = self.caller(&request)?;
        let deadline = client_deadline(request.metadata());
        let message = request.into_inner();
        let mut request_timeout_ms = message.request_timeout;
        if let Some(deadline) = deadline {
            let room = deadline.saturating_sub(DEADLINE_MARGIN).as_millis() as i64;
            let asked = match request_timeout_ms {
                None | Some(0) => crate::job::limits::DEFAULT_LONG_POLL_MS,
                Some(ms) => ms,
            };
            request_timeout_ms = Some(if room > 0 { asked.min(room) } else { -1 });
        }
        let activation = service::ActivateJobs {
            job_type: message.r#type,
            worker: message.worker,
            timeout_ms: i64::from(message.timeout),
            max_jobs: i64::from(message.max_jobs_to_activate),
            fetch_variables: message.fetch_variable,
            tenant_ids: message.tenant_ids,
            request_timeout_ms,
        };
        let service = self.service.clone();
        // The poll runs inside the response stream: a client that goes away drops it, and the
        // store hands back whatever the dropped poll had leased.
        let poll = async move {
            let jobs = service
                .activate_jobs(&caller, activation)
                .await
                .map_err(status)?;
            Ok::<_, Status>(jobs)
        };
        let stream = futures::stream::once(poll).filter_map(|result| async move {
            match result {
                Ok(jobs) if jobs.is_empty() => None,
                Ok(jobs) => Some(Ok(pb::ActivateJobsResponse {
                    jobs: jobs.into_iter().map(activated_job).collect(),
                    success: true,
                    error_message: String::new(),
                })),
                Err(status) => Some(Err(status)),
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn complete_job(
        &self,
        request: Request<pb::CompleteJobRequest>,
    ) -> Result<Response<pb::CompleteJobResponse>, Status> {
        let caller = self.caller(&request)?;
        let message = request.into_inner();
        let result = result_json(message.variables);
        self.service
            .complete_job(&caller, &message.job_key, result)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CompleteJobResponse {
            success: true,
            message: format!("job {} completed", message.job_key),
        }))
    }

    async fn complete_jobs(
        &self,
        request: Request<pb::CompleteJobsRequest>,
    ) -> Result<Response<pb::CompleteJobsResponse>, Status> {
        let caller = self.caller(&request)?;
        let completions = request
            .into_inner()
            .jobs
            .into_iter()
            .map(|m| (m.job_key, result_json(m.variables)))
            .collect::<Vec<_>>();
        let keys: Vec<String> = completions.iter().map(|(key, _)| key.clone()).collect();
        let outcomes = self
            .service
            .complete_jobs(&caller, completions)
            .await
            .map_err(status)?;
        let results = keys
            .iter()
            .zip(outcomes)
            .map(|(key, outcome)| match outcome {
                Ok(_) => pb::CompleteJobResponse {
                    success: true,
                    message: format!("job {key} completed"),
                },
                Err(error) => {
                    let refusal = status(error);
                    pb::CompleteJobResponse {
                        success: false,
                        message: format!("{:?}: {}", refusal.code(), refusal.message()),
                    }
                }
            })
            .collect();
        Ok(Response::new(pb::CompleteJobsResponse { results }))
    }

    async fn fail_job(
        &self,
        request: Request<pb::FailJobRequest>,
    ) -> Result<Response<pb::FailJobResponse>, Status> {
        let caller = self.caller(&request)?;
        let message = request.into_inner();
        let record = self
            .service
            .fail_job(
                &caller,
                &message.job_key,
                message.retries,
                message.error_message,
                message.backoff_timeout,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::FailJobResponse {
            success: true,
            message: format!("job {} failed; it is {}", message.job_key, record.state),
        }))
    }

    async fn create_job(
        &self,
        request: Request<pb::CreateJobRequest>,
    ) -> Result<Response<pb::CreateJobResponse>, Status> {
        let caller = self.caller(&request)?;
        let create = create_request(request.into_inner());
        let key = self
            .service
            .create_job(&caller, create)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateJobResponse {
            success: true,
            message: format!("job {key} created"),
            job_key: key.to_string(),
        }))
    }

    async fn create_jobs(
        &self,
        request: Request<pb::CreateJobsRequest>,
    ) -> Result<Response<pb::CreateJobsResponse>, Status> {
        let caller = self.caller(&request)?;
        let creates = request
            .into_inner()
            .jobs
            .into_iter()
            .map(create_request)
            .collect();
        let keys = self
            .service
            .create_jobs(&caller, creates)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateJobsResponse {
            job_keys: keys.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::GetJobResponse>, Status> {
        let caller = self.caller(&request)?;
        let key = &request.get_ref().job_key;
        let job = self.service.get_job(&caller, key).await.map_err(status)?;
        let attempts = self.service.attempts_of(&job).await.map_err(status)?;
        let mut message = job_message(job);
        message.attempts = attempts
            .into_iter()
            .map(|a| pb::AttemptRecord {
                attempt: a.attempt,
                worker: a.worker,
                handler_version: a.handler_version,
                started_at: a.started_at,
                duration_us: a.duration_us,
                outcome: a.outcome,
                output: a.output,
            })
            .collect();
        Ok(Response::new(pb::GetJobResponse {
            success: true,
            job: Some(message),
        }))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let caller = self.caller(&request)?;
        let m = request.into_inner();
        let some = |text: String| Some(text).filter(|t| !t.is_empty());
        let list = service::ListJobs {
            state: some(m.state),
            job_type: some(m.r#type),
            worker: some(m.worker),
            process_instance_id: some(m.process_instance_id),
            element_id: some(m.element_id),
            tenant_id: some(m.tenant_id),
            created_after: some(m.created_after),
            created_before: some(m.created_before),
            period: some(m.period),
            page: Some(i64::from(m.page)).filter(|p| *p != 0),
            page_size: Some(i64::from(m.page_size)),
            sort_by: some(m.sort_by),
            sort_order: some(m.sort_order),
        };
        let page = self
            .service
            .list_jobs(&caller, list)
            .await
            .map_err(status)?;
        let pagination = pb::Pagination {
            page: page.page as i32,
            page_size: page.page_size as i32,
            total_count: page.total_count as i64,
            total_pages: page.total_pages() as i32,
            has_next: page.page < page.total_pages(),
            has_prev: page.page > 1,
        };
        Ok(Response::new(pb::ListJobsResponse {
            success: true,
            jobs: page.jobs.into_iter().map(job_message).collect(),
            pagination: Some(pagination),
        }))
    }

    async fn update_job_retries(
        &self,
        request: Request<pb::UpdateJobRetriesRequest>,
    ) -> Result<Response<pb::UpdateJobRetriesResponse>, Status> {
        let caller = self.caller(&request)?;
        let m = request.into_inner();
        let record = self
            .service
            .update_retries(&caller, &m.job_key, m.retries)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UpdateJobRetriesResponse {
            success: true,
            message: format!(
                "job {} has {} retries; it is {}",
                m.job_key, record.retries, record.state
            ),
        }))
    }

    async fn update_job_timeout(
        &self,
        request: Request<pb::UpdateJobTimeoutRequest>,
    ) -> Result<Response<pb::UpdateJobTimeoutResponse>, Status> {
        let caller = self.caller(&request)?;
        let m = request.into_inner();
        let record = self
            .service
            .update_timeout(&caller, &m.job_key, m.timeout)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UpdateJobTimeoutResponse {
            success: true,
            message: format!("job {} is leased until {}", m.job_key, record.deadline),
            deadline: record.deadline,
        }))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let caller = self.caller(&request)?;
        let m = request.into_inner();
        self.service
            .cancel_job(&caller, &m.job_key)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CancelJobResponse {
            success: true,
            message: format!("job {} cancelled", m.job_key),
        }))
    }
}

/// A creation request as the service core takes it.
fn create_request(m: pb::CreateJobRequest) -> service::CreateJob {
    service::CreateJob {
        job_type: m.r#type,
        variables: m.variables,
        custom_headers: m.custom_headers.into_iter().collect(),
        retries: m.retries,
        tenant_id: m.tenant_id,
        priority: m.priority,
        run_at: m.run_at,
        delay_ms: m.delay,
        process: crate::job::ProcessRef {
            process_instance_key: m.process_instance_key,
            bpmn_process_id: m.bpmn_process_id,
            process_definition_version: m.process_definition_version,
            process_definition_key: m.process_definition_key,
            element_id: m.element_id,
            element_instance_key: m.element_instance_key,
        },
        idempotency_key: m.idempotency_key,
    }
}
