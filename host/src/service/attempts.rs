//! In-process attempts in the service core: what the executor leases for a handler, what an
//! attempt may reach, and how its end is written: a completion's result and follow-ups are
//! checked by the same rules as an API's, a failure is retried by the handler's policy.

use std::hash::{Hash, Hasher};

use super::{JobService, ServiceError, required_name};
use crate::grants::Grants;
use crate::handler::RetryPolicy;
use crate::job::limits::{self, check_idempotency_key, check_variables};
use crate::job::state::Event;
use crate::job::{
    AttemptLog, Job, JobId, JobPayload, JobRecord, JobState, NewJob, TenantScope, now_ms,
};
use crate::runtime::{Capabilities, FollowUpRequest};
use crate::store::{Activation, Extras};

/// How an attempt ended, as far as the job is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptEnd {
    Completed {
        variables: String,
        status: Option<String>,
        follow_ups: Vec<FollowUpRequest>,
    },
    Failed {
        reason: String,
        /// False: no retry, whatever the policy allows.
        retryable: bool,
        /// The handler's own backoff, instead of the policy's.
        backoff_ms: Option<u64>,
    },
}

impl JobService {
    /// Leases jobs for a handler's attempts in this process (see [`Activation::in_process`]).
    pub async fn lease_for_attempts(
        &self,
        activation: Activation,
    ) -> Result<Vec<Job>, ServiceError> {
        Ok(self.store.activate(activation).await?)
    }

    /// Hands back leases whose attempts never ran.
    pub async fn hand_back(&self, leases: Vec<(JobId, u32)>) -> Result<(), ServiceError> {
        Ok(self.store.release(leases).await?)
    }

    /// What an attempt of a handler for `job_type` in `tenant` holding `grants` may reach.
    pub async fn capabilities_for(
        &self,
        tenant: &str,
        job_type: &str,
        grants: &Grants,
    ) -> Result<Capabilities, ServiceError> {
        Ok(self
            .capabilities
            .for_attempt(tenant, job_type, grants)
            .await?)
    }

    /// Writes how an attempt on `job` ended, with its log, in one atomic write. A completion
    /// that breaks the rules of job variables or follow-ups fails the job for good instead,
    /// with the reason in the log.
    pub async fn conclude_attempt(
        &self,
        job: &Job,
        retry: &RetryPolicy,
        end: AttemptEnd,
        mut log: AttemptLog,
    ) -> Result<JobRecord, ServiceError> {
        let record = &job.record;
        let lease = Some(record.lease);
        let (event, follow_ups) = match end {
            AttemptEnd::Completed {
                variables,
                status,
                follow_ups,
            } => match completion(&variables, status, follow_ups, &record.tenant) {
                Ok((result, follow_ups)) => {
                    log.outcome = "completed".into();
                    (Event::Complete { lease, result }, follow_ups)
                }
                Err(reason) => {
                    log.outcome = reason.clone();
                    (failure(record, retry, reason, false, None), Vec::new())
                }
            },
            AttemptEnd::Failed {
                reason,
                retryable,
                backoff_ms,
            } => {
                log.outcome = reason.clone();
                (
                    failure(record, retry, reason, retryable, backoff_ms),
                    Vec::new(),
                )
            }
        };
        let extras = Extras {
            follow_ups,
            attempt: Some(log),
        };
        let scope = TenantScope::only([record.tenant.clone()]);
        Ok(self
            .store
            .apply_with(record.id, scope, event, extras)
            .await?)
    }

    /// Whether a job is cancelled now (for attempts that may have missed the signal).
    pub async fn is_cancelled(&self, id: JobId) -> Result<bool, ServiceError> {
        let job = self.store.get(id).await?;
        Ok(job.is_some_and(|job| job.record.state == JobState::Cancelled))
    }
}

/// The result variables and follow-up jobs of a completion, or why they are unusable. The
/// result is kept as the handler wrote it (only a status is merged in).
fn completion(
    variables: &str,
    status: Option<String>,
    follow_ups: Vec<FollowUpRequest>,
    tenant: &str,
) -> Result<(String, Vec<NewJob>), String> {
    let text = if variables.trim().is_empty() {
        "{}"
    } else {
        variables
    };
    check_variables("the handler's result variables", text)?;
    let result = match status {
        None => text.to_string(),
        Some(status) => {
            let mut result: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(text).map_err(|e| e.to_string())?;
            result.insert("status".into(), serde_json::Value::String(status));
            serde_json::Value::Object(result).to_string()
        }
    };
    if follow_ups.len() > limits::MAX_FOLLOW_UPS {
        return Err(format!(
            "the handler asked for {} follow-up jobs; at most {} are created",
            follow_ups.len(),
            limits::MAX_FOLLOW_UPS
        ));
    }
    let now = now_ms();
    let mut jobs = Vec::with_capacity(follow_ups.len());
    for follow_up in follow_ups {
        let job_type = required_name("follow-up job type", &follow_up.job_type)
            .map_err(|error| error.to_string())?;
        check_variables(
            &format!("the variables of follow-up '{job_type}'"),
            &follow_up.variables,
        )?;
        if let Some(key) = &follow_up.idempotency_key {
            check_idempotency_key(key).map_err(|why| format!("follow-up '{job_type}': {why}"))?;
        }
        jobs.push(NewJob {
            tenant: tenant.to_string(),
            job_type,
            priority: 0,
            retries: limits::DEFAULT_RETRIES,
            run_at: (follow_up.delay_ms > 0).then(|| now + follow_up.delay_ms as i64),
            payload: JobPayload {
                variables: follow_up.variables,
                ..JobPayload::default()
            },
            idempotency_key: follow_up.idempotency_key,
        });
    }
    Ok((result, jobs))
}

/// The failure event the handler's retry policy makes of a failed attempt.
fn failure(
    record: &JobRecord,
    policy: &RetryPolicy,
    reason: String,
    retryable: bool,
    backoff_ms: Option<u64>,
) -> Event {
    let failures = record.failures + 1;
    let retries = if retryable {
        policy.retries_after_failure(record.retries, failures)
    } else {
        0
    };
    // Jitter that differs between jobs and attempts but is the same on a replay.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (record.id, record.lease).hash(&mut hasher);
    let backoff = backoff_ms.unwrap_or_else(|| policy.backoff_ms(failures, hasher.finish()));
    Event::Fail {
        lease: Some(record.lease),
        retries,
        backoff_ms: backoff.min(limits::MAX_BACKOFF_MS as u64) as i64,
        error: reason,
    }
}

#[cfg(test)]
mod tests {
    use super::completion;
    use crate::runtime::FollowUpRequest;

    fn follow_up(variables: &str, idempotency_key: Option<&str>) -> FollowUpRequest {
        FollowUpRequest {
            job_type: "next".into(),
            variables: variables.into(),
            delay_ms: 0,
            idempotency_key: idempotency_key.map(str::to_string),
        }
    }

    #[test]
    fn result_variables_are_kept_as_the_handler_wrote_them() {
        let (result, _) = completion(r#"{ "n": 1 }"#, None, Vec::new(), "t").unwrap();
        assert_eq!(result, r#"{ "n": 1 }"#);
    }

    #[test]
    fn empty_result_variables_are_an_empty_object() {
        let (result, _) = completion("  ", None, Vec::new(), "t").unwrap();
        assert_eq!(result, "{}");
    }

    #[test]
    fn a_status_is_added_to_the_result_variables() {
        let (result, _) =
            completion(r#"{"n":1}"#, Some("partial".into()), Vec::new(), "t").unwrap();
        let result: serde_json::Value = serde_json::from_str(&result).unwrap();
        assert_eq!(result, serde_json::json!({"n": 1, "status": "partial"}));
    }

    #[test]
    fn result_variables_that_are_not_one_json_object_are_refused() {
        for bad in ["[1]", "7", r#"{"n":1} {}"#, r#"{"n":"#] {
            assert!(completion(bad, None, Vec::new(), "t").is_err(), "{bad}");
        }
    }

    #[test]
    fn follow_ups_keep_their_variables_and_idempotency_keys() {
        let (_, jobs) = completion(
            "{}",
            None,
            vec![follow_up(r#"{"i":0}"#, Some("once-0"))],
            "acme",
        )
        .unwrap();
        assert_eq!(jobs[0].tenant, "acme");
        assert_eq!(jobs[0].payload.variables, r#"{"i":0}"#);
        assert_eq!(jobs[0].idempotency_key.as_deref(), Some("once-0"));
    }

    #[test]
    fn a_follow_up_whose_idempotency_key_is_unusable_fails_the_completion() {
        let long = "k".repeat(crate::job::limits::MAX_NAME_BYTES + 1);
        for key in ["", "a\0b", long.as_str()] {
            let error = completion("{}", None, vec![follow_up("{}", Some(key))], "t").unwrap_err();
            assert!(error.contains("idempotency_key"), "{error}");
        }
    }

    #[test]
    fn result_variables_beyond_the_message_limit_are_refused() {
        let big = format!(
            r#"{{"s":"{}"}}"#,
            "x".repeat(crate::job::limits::MAX_MESSAGE_BYTES)
        );
        let error = completion(&big, None, Vec::new(), "t").unwrap_err();
        assert!(error.contains("exceed"), "{error}");
    }

    #[test]
    fn a_follow_up_with_a_blank_type_fails_the_completion() {
        let blank = FollowUpRequest {
            job_type: " ".into(),
            ..follow_up("{}", None)
        };
        let error = completion("{}", None, vec![blank], "t").unwrap_err();
        assert!(error.contains("follow-up job type"), "{error}");
    }

    #[test]
    fn a_follow_up_whose_variables_are_not_an_object_fails_the_completion() {
        let error = completion("{}", None, vec![follow_up("[]", None)], "t").unwrap_err();
        assert!(error.contains("must be a JSON object"), "{error}");
    }
}
