//! How long finished jobs are kept: the retention policy, its per-type overrides and its
//! per-tenant count, as data. The store finds what the policy lets go
//! ([`crate::store::JobQueue::expired`]) and [`crate::tasks::retention`] deletes it.
//!
//! Completed and cancelled jobs are kept for `completed` (or their type's own age) and, per
//! tenant, at most `max_finished_per_tenant` of them, oldest finished deleted first. Failed
//! jobs are incidents an operator may still resolve: only their own grace, `failed`, removes
//! them, never the count. Nothing is deleted unless asked for.

use std::collections::HashMap;

use crate::job::JobState;
use crate::trigger::schedule::parse_duration;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// How long completed and cancelled jobs are kept after they finished, in ms.
    pub completed_ms: Option<i64>,
    /// How long failed jobs (incidents) are kept after they failed, in ms.
    pub failed_ms: Option<i64>,
    /// Ages of completed and cancelled jobs of these types, instead of `completed_ms`.
    pub by_type_ms: HashMap<String, i64>,
    /// Completed and cancelled jobs kept per tenant at most.
    pub max_finished_per_tenant: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RetentionError(String);

impl RetentionPolicy {
    /// Whether the policy deletes anything at all.
    pub fn is_off(&self) -> bool {
        self.completed_ms.is_none()
            && self.failed_ms.is_none()
            && self.by_type_ms.is_empty()
            && self.max_finished_per_tenant.is_none()
    }

    /// How long a finished job of `job_type` in `state` is kept; `None`: as long as the count
    /// allows (or for ever). Open jobs are never deleted.
    pub fn max_age_ms(&self, job_type: &str, state: JobState) -> Option<i64> {
        match state {
            JobState::Completed | JobState::Cancelled => {
                self.by_type_ms.get(job_type).copied().or(self.completed_ms)
            }
            JobState::Failed => self.failed_ms,
            JobState::Pending | JobState::Activatable | JobState::Activated => None,
        }
    }

    /// Whether the per-tenant count covers jobs in `state`.
    pub fn counts(state: JobState) -> bool {
        matches!(state, JobState::Completed | JobState::Cancelled)
    }

    /// Adds a per-type age written as `TYPE=AGE`, e.g. `reports=30d`.
    pub fn add_type_age(&mut self, text: &str) -> Result<(), RetentionError> {
        let (job_type, age) = text.split_once('=').ok_or_else(|| {
            RetentionError(format!(
                "'{text}' is not TYPE=AGE (e.g. reports=30d): the '=' is missing"
            ))
        })?;
        let job_type = job_type.trim();
        if job_type.is_empty() {
            return Err(RetentionError(format!("'{text}' names no job type")));
        }
        let age = parse_age(age)?;
        self.by_type_ms.insert(job_type.to_string(), age);
        Ok(())
    }
}

/// Parses a retention age such as `7d`, `12h` or `90s` into milliseconds.
pub fn parse_age(text: &str) -> Result<i64, RetentionError> {
    parse_duration("retention", text).map_err(|error| RetentionError(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetentionPolicy {
        let mut policy = RetentionPolicy {
            completed_ms: Some(7 * 86_400_000),
            failed_ms: Some(30 * 86_400_000),
            ..RetentionPolicy::default()
        };
        policy.add_type_age("reports=1h").unwrap();
        policy
    }

    #[test]
    fn completed_and_cancelled_jobs_keep_the_completed_age() {
        let policy = policy();
        assert_eq!(
            policy.max_age_ms("mail", JobState::Completed),
            Some(7 * 86_400_000)
        );
        assert_eq!(
            policy.max_age_ms("mail", JobState::Cancelled),
            Some(7 * 86_400_000)
        );
    }

    #[test]
    fn a_type_age_overrides_the_completed_age_of_that_type_only() {
        let policy = policy();
        assert_eq!(
            policy.max_age_ms("reports", JobState::Completed),
            Some(3_600_000)
        );
        assert_eq!(
            policy.max_age_ms("reports", JobState::Failed),
            Some(30 * 86_400_000)
        );
    }

    #[test]
    fn open_jobs_have_no_age() {
        let policy = policy();
        for state in [
            JobState::Pending,
            JobState::Activatable,
            JobState::Activated,
        ] {
            assert_eq!(policy.max_age_ms("reports", state), None);
        }
    }

    #[test]
    fn the_count_covers_completed_and_cancelled_jobs_but_not_incidents() {
        assert!(RetentionPolicy::counts(JobState::Completed));
        assert!(RetentionPolicy::counts(JobState::Cancelled));
        assert!(!RetentionPolicy::counts(JobState::Failed));
        assert!(!RetentionPolicy::counts(JobState::Activated));
    }

    #[test]
    fn a_default_policy_is_off() {
        assert!(RetentionPolicy::default().is_off());
        assert!(!policy().is_off());
    }

    #[test]
    fn a_type_age_without_equals_sign_is_refused_with_the_form_expected() {
        let error = RetentionPolicy::default()
            .add_type_age("reports")
            .unwrap_err();
        assert!(error.to_string().contains("TYPE=AGE"), "{error}");
    }

    #[test]
    fn a_type_age_with_a_bad_duration_is_refused() {
        let error = RetentionPolicy::default()
            .add_type_age("reports=soon")
            .unwrap_err();
        assert!(error.to_string().contains("soon"), "{error}");
    }
}
