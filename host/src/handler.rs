//! Deployed Wasm handlers as data: which component runs the jobs of a type in a tenant, under
//! which limits and retry policy. Versions accumulate; the newest one takes new attempts.
//! (Compiling and running components is [`crate::runtime`]'s business.)

use serde::{Deserialize, Serialize};

use crate::grants::Grants;
use crate::job::EpochMs;

/// Sandbox limits of one handler version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerLimits {
    /// Linear memory an attempt may use.
    pub memory_mb: u32,
    /// Lease of each attempt: the wall-clock time it may run.
    pub timeout_ms: u64,
    /// Attempts of this handler running at once.
    pub max_concurrency: u32,
    /// Wasm fuel per attempt (roughly instructions); `None`: unmetered.
    pub fuel: Option<u64>,
}

/// What happens after a retryable failure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt, at most (the job's own retries may be fewer).
    pub max_retries: u32,
    /// Backoff before the first retry; doubled for each further one, with jitter.
    pub backoff_base_ms: u64,
    /// Longest backoff.
    pub backoff_cap_ms: u64,
}

impl RetryPolicy {
    /// Retries left (attempts still allowed, as a job's `retries` counts them) after the
    /// `failures`-th failure of a job that had `job_retries` before it: the lower of the job's
    /// count and the policy's, which allows `max_retries + 1` attempts in all.
    pub fn retries_after_failure(&self, job_retries: i32, failures: u32) -> i32 {
        let by_job = job_retries.saturating_sub(1).max(0);
        let by_policy = i64::from(self.max_retries) + 1 - i64::from(failures);
        by_job.min(by_policy.clamp(0, i64::from(i32::MAX)) as i32)
    }

    /// Exponential backoff before retry number `failures`, with up to 25% jitter taken from
    /// `jitter` (any number; a hash of the job and attempt keeps it reproducible).
    pub fn backoff_ms(&self, failures: u32, jitter: u64) -> u64 {
        let exponent = failures.saturating_sub(1).min(32);
        let base = self.backoff_base_ms.saturating_mul(1u64 << exponent);
        let capped = base.min(self.backoff_cap_ms);
        let spread = capped / 4;
        let jittered = capped - spread + if spread > 0 { jitter % (spread + 1) } else { 0 };
        jittered.min(self.backoff_cap_ms)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerVersion {
    /// 1 for the first deployment of the type.
    pub version: u32,
    /// SHA-256 of the component's bytes, which are stored once under it.
    pub component_sha256: [u8; 32],
    pub component_bytes: u64,
    pub limits: HandlerLimits,
    pub retry: RetryPolicy,
    pub deployed_at: EpochMs,
    /// What the version may reach beyond computing.
    pub grants: Grants,
}

/// A job type's handler in one tenant, with every version deployed so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerRecord {
    pub id: String,
    pub tenant: String,
    pub job_type: String,
    pub created_at: EpochMs,
    /// Oldest first; never empty.
    pub versions: Vec<HandlerVersion>,
}

impl HandlerRecord {
    /// The version new attempts use.
    pub fn current(&self) -> &HandlerVersion {
        self.versions
            .last()
            .expect("a handler has at least one version")
    }

    /// The worker name its attempts record, e.g. `wasm:resize@v3`.
    pub fn worker_name(&self, version: u32) -> String {
        format!("wasm:{}@v{version}", self.job_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            backoff_base_ms: 100,
            backoff_cap_ms: 1_000,
        }
    }

    #[test]
    fn retries_are_bounded_by_the_job_and_the_policy() {
        assert_eq!(policy().retries_after_failure(10, 1), 3);
        assert_eq!(policy().retries_after_failure(2, 1), 1);
        assert_eq!(policy().retries_after_failure(1, 1), 0);
        assert_eq!(policy().retries_after_failure(10, 3), 1);
        assert_eq!(policy().retries_after_failure(10, 4), 0);
        assert_eq!(policy().retries_after_failure(10, 7), 0);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let p = policy();
        for jitter in [0, 7, 1_000_003] {
            let first = p.backoff_ms(1, jitter);
            assert!((75..=100).contains(&first), "{first}");
            let third = p.backoff_ms(3, jitter);
            assert!((300..=400).contains(&third), "{third}");
            assert!(p.backoff_ms(30, jitter) <= 1_000);
        }
    }
}
