//! The one place that decides job state transitions.
//!
//! [`apply`] is pure: given a job record, an [`Event`] and the time, it returns the record as it
//! must be stored next, or a [`Refusal`] saying why the event does not apply. Stores persist
//! and index what it returns; they never change a record's state themselves.

use super::limits::{FAILURE_HISTORY_KEPT, MAX_ERROR_BYTES, truncate};
use super::{EpochMs, FailureRecord, JobKey, JobRecord, JobState};

/// Something that happens to a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A worker takes the job for `timeout_ms`.
    Activate { worker: String, timeout_ms: i64 },
    /// The holder reports success with result variables (JSON object text).
    Complete { lease: Option<u32>, result: String },
    /// The holder reports a failed attempt, leaving the job `retries` more.
    Fail {
        lease: Option<u32>,
        retries: i32,
        backoff_ms: i64,
        error: String,
    },
    /// The holder extends its lease to now + `timeout_ms` (heartbeat).
    ExtendLease { lease: Option<u32>, timeout_ms: i64 },
    /// A lease is handed back unused: the worker went away before receiving the job, or the
    /// host is shutting down its own attempt. No retry is spent.
    ReleaseLease { lease: u32 },
    /// Timer: the lease deadline passed. No retry is spent.
    LeaseExpired,
    /// Timer: a pending job's due time arrived.
    BecameDue,
    /// An operator sets the retries; a failed job with retries becomes activatable again.
    UpdateRetries { retries: i32 },
    /// A user cancels the job.
    Cancel,
}

/// Why an event does not apply. The messages are shown to API clients as they are.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("job {key} is not activated: it is {state}")]
    NotActivated { key: JobKey, state: JobState },
    #[error(
        "job {key} is not activated: its lease expired and it is {state} again, so a worker must activate it anew"
    )]
    LeaseLapsed { key: JobKey, state: JobState },
    #[error(
        "the lease on job {key} expired at {deadline} (epoch ms); the job will be handed out again"
    )]
    LeaseExpired { key: JobKey, deadline: EpochMs },
    #[error(
        "lease {stale} on job {id} is no longer valid: the job was activated again (lease {current}) by worker '{worker}'"
    )]
    LeaseSuperseded {
        id: u64,
        stale: u32,
        current: u32,
        worker: String,
    },
    #[error("job {key} was cancelled")]
    Cancelled { key: JobKey },
    #[error("job {key} is already completed")]
    Completed { key: JobKey },
    #[error("job {key} has failed (no retries left); give it retries to run it again")]
    Failed { key: JobKey },
    #[error("job {key} is {state}, not activatable")]
    NotActivatable { key: JobKey, state: JobState },
    /// A timer or lease release that no longer matches the job (it moved on meanwhile).
    #[error("job {key} has moved on; nothing to do")]
    Stale { key: JobKey },
}

/// The result of an applied event.
pub fn apply(job: &JobRecord, event: Event, now: EpochMs) -> Result<JobRecord, Refusal> {
    let mut next = job.clone();
    let key = JobKey::job(job.id);
    match event {
        Event::Activate { worker, timeout_ms } => {
            if job.state != JobState::Activatable {
                return Err(Refusal::NotActivatable {
                    key,
                    state: job.state,
                });
            }
            next.state = JobState::Activated;
            next.worker = worker;
            next.activated_at = now;
            next.timeout_ms = timeout_ms;
            next.deadline = now.saturating_add(timeout_ms);
            next.lease = job.lease + 1;
        }
        Event::Complete { lease, result } => {
            check_holder(job, lease, now)?;
            next.state = JobState::Completed;
            next.deadline = 0;
            next.finished_at = now;
            next.result = Some(result);
        }
        Event::Fail {
            lease,
            retries,
            backoff_ms,
            error,
        } => {
            check_holder(job, lease, now)?;
            let retries = retries.max(0);
            let error = truncate(error, MAX_ERROR_BYTES);
            next.failures = job.failures + 1;
            next.failure_history.push(FailureRecord {
                attempt: next.failures,
                failed_at: now,
                worker: job.worker.clone(),
                error: error.clone(),
                retries,
            });
            let excess = next
                .failure_history
                .len()
                .saturating_sub(FAILURE_HISTORY_KEPT);
            next.failure_history.drain(..excess);
            next.error_message = error;
            next.retries = retries;
            next.deadline = 0;
            if retries == 0 {
                next.state = JobState::Failed;
                next.finished_at = now;
            } else if backoff_ms > 0 {
                next.state = JobState::Pending;
                next.due_at = now.saturating_add(backoff_ms);
            } else {
                next.state = JobState::Activatable;
            }
        }
        Event::ExtendLease { lease, timeout_ms } => {
            check_holder(job, lease, now)?;
            next.deadline = now.saturating_add(timeout_ms);
        }
        Event::ReleaseLease { lease } => {
            if job.state != JobState::Activated || job.lease != lease {
                return Err(Refusal::Stale { key });
            }
            next.state = JobState::Activatable;
            next.deadline = 0;
        }
        Event::LeaseExpired => {
            if job.state != JobState::Activated || job.deadline > now {
                return Err(Refusal::Stale { key });
            }
            next.state = JobState::Activatable;
            next.deadline = 0;
        }
        Event::BecameDue => {
            if job.state != JobState::Pending || job.due_at > now {
                return Err(Refusal::Stale { key });
            }
            next.state = JobState::Activatable;
            next.due_at = 0;
        }
        Event::UpdateRetries { retries } => {
            refuse_finished(job)?;
            // Clamped as a failure's are; only retries it can spend revive a failed job.
            next.retries = retries.max(0);
            if job.state == JobState::Failed && next.retries > 0 {
                next.state = JobState::Activatable;
                next.finished_at = 0;
            }
        }
        Event::Cancel => {
            match job.state {
                JobState::Completed => return Err(Refusal::Completed { key }),
                JobState::Cancelled => return Err(Refusal::Cancelled { key }),
                _ => {}
            }
            next.state = JobState::Cancelled;
            next.deadline = 0;
            next.due_at = 0;
            next.finished_at = now;
        }
    }
    Ok(next)
}

/// Refuses changes to jobs that can never run again.
fn refuse_finished(job: &JobRecord) -> Result<(), Refusal> {
    let key = JobKey::job(job.id);
    match job.state {
        JobState::Completed => Err(Refusal::Completed { key }),
        JobState::Cancelled => Err(Refusal::Cancelled { key }),
        _ => Ok(()),
    }
}

/// Checks that the caller holds the job now: it is activated, under the named lease (if one is
/// named), and its deadline has not passed.
fn check_holder(job: &JobRecord, lease: Option<u32>, now: EpochMs) -> Result<(), Refusal> {
    let key = JobKey { id: job.id, lease };
    refuse_finished(job)?;
    match job.state {
        JobState::Failed => Err(Refusal::Failed { key }),
        JobState::Activated => match lease {
            Some(stale) if stale != job.lease => Err(Refusal::LeaseSuperseded {
                id: job.id,
                stale,
                current: job.lease,
                worker: job.worker.clone(),
            }),
            _ if job.deadline <= now => Err(Refusal::LeaseExpired {
                key,
                deadline: job.deadline,
            }),
            _ => Ok(()),
        },
        state if job.lease > 0 && lease.is_none_or(|held| held == job.lease) => {
            Err(Refusal::LeaseLapsed { key, state })
        }
        state => Err(Refusal::NotActivated { key, state }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: JobState) -> JobRecord {
        JobRecord {
            id: 7,
            tenant: "default".into(),
            job_type: "t".into(),
            state,
            priority: 0,
            retries: 3,
            original_retries: 3,
            created_at: 1_000,
            due_at: 0,
            worker: String::new(),
            activated_at: 0,
            deadline: 0,
            timeout_ms: 0,
            lease: 0,
            failures: 0,
            finished_at: 0,
            error_message: String::new(),
            failure_history: Vec::new(),
            result: None,
        }
    }

    fn activated(now: EpochMs) -> JobRecord {
        let event = Event::Activate {
            worker: "w1".into(),
            timeout_ms: 1_000,
        };
        apply(&job(JobState::Activatable), event, now).unwrap()
    }

    fn fail(lease: Option<u32>, retries: i32, backoff_ms: i64) -> Event {
        Event::Fail {
            lease,
            retries,
            backoff_ms,
            error: "boom".into(),
        }
    }

    #[test]
    fn activation_leases_the_job_until_its_deadline() {
        let job = activated(5_000);
        assert_eq!(job.state, JobState::Activated);
        assert_eq!(
            (job.lease, job.deadline, job.worker.as_str()),
            (1, 6_000, "w1")
        );
    }

    #[test]
    fn only_activatable_jobs_can_be_activated() {
        for state in [JobState::Pending, JobState::Activated, JobState::Failed] {
            let event = Event::Activate {
                worker: "w".into(),
                timeout_ms: 1,
            };
            assert!(apply(&job(state), event, 0).is_err());
        }
    }

    #[test]
    fn completion_under_the_current_lease_stores_the_result() {
        let event = Event::Complete {
            lease: Some(1),
            result: "{}".into(),
        };
        let done = apply(&activated(0), event, 10).unwrap();
        assert_eq!(done.state, JobState::Completed);
        assert_eq!(done.result.as_deref(), Some("{}"));
    }

    #[test]
    fn a_superseded_lease_cannot_complete() {
        let mut job = activated(0);
        job.lease = 2;
        let event = Event::Complete {
            lease: Some(1),
            result: "{}".into(),
        };
        let refusal = apply(&job, event, 10).unwrap_err();
        assert!(matches!(
            refusal,
            Refusal::LeaseSuperseded { current: 2, .. }
        ));
    }

    #[test]
    fn completion_after_the_deadline_is_refused_before_the_timer_fires() {
        let event = Event::Complete {
            lease: Some(1),
            result: "{}".into(),
        };
        let refusal = apply(&activated(0), event, 1_000).unwrap_err();
        assert!(matches!(refusal, Refusal::LeaseExpired { .. }));
    }

    #[test]
    fn failure_with_retries_and_backoff_is_pending_until_due() {
        let job = apply(&activated(0), fail(None, 2, 500), 100).unwrap();
        assert_eq!(
            (job.state, job.due_at, job.retries),
            (JobState::Pending, 600, 2)
        );
        assert_eq!(job.failure_history.len(), 1);
        assert_eq!(
            apply(&job, Event::BecameDue, 599),
            Err(Refusal::Stale {
                key: JobKey::job(7)
            })
        );
        let due = apply(&job, Event::BecameDue, 600).unwrap();
        assert_eq!(due.state, JobState::Activatable);
    }

    #[test]
    fn failure_without_backoff_is_activatable_at_once() {
        let job = apply(&activated(0), fail(Some(1), 1, 0), 100).unwrap();
        assert_eq!(job.state, JobState::Activatable);
    }

    #[test]
    fn failure_without_retries_is_an_incident_that_retries_revive() {
        let job = apply(&activated(0), fail(Some(1), 0, 0), 100).unwrap();
        assert_eq!(
            (job.state, job.error_message.as_str()),
            (JobState::Failed, "boom")
        );
        let revived = apply(&job, Event::UpdateRetries { retries: 2 }, 200).unwrap();
        assert_eq!((revived.state, revived.retries), (JobState::Activatable, 2));
    }

    #[test]
    fn negative_retries_fail_the_job() {
        let job = apply(&activated(0), fail(None, -4, 0), 100).unwrap();
        assert_eq!((job.state, job.retries), (JobState::Failed, 0));
    }

    #[test]
    fn failure_history_keeps_the_latest_entries() {
        let mut job = activated(0);
        for n in 0..(FAILURE_HISTORY_KEPT as i64 + 5) {
            job = apply(&job, fail(None, 5, 0), n).unwrap();
            job = apply(
                &job,
                Event::Activate {
                    worker: "w".into(),
                    timeout_ms: 1_000,
                },
                n,
            )
            .unwrap();
        }
        assert_eq!(job.failure_history.len(), FAILURE_HISTORY_KEPT);
        assert_eq!(job.failure_history.last().unwrap().attempt, job.failures);
    }

    #[test]
    fn an_expired_lease_makes_the_job_activatable_without_spending_a_retry() {
        let job = apply(&activated(0), Event::LeaseExpired, 1_000).unwrap();
        assert_eq!((job.state, job.retries), (JobState::Activatable, 3));
        assert!(apply(&activated(0), Event::LeaseExpired, 999).is_err());
    }

    #[test]
    fn a_lapsed_lease_cannot_fail_the_job() {
        let lapsed = apply(&activated(0), Event::LeaseExpired, 1_000).unwrap();
        let refusal = apply(&lapsed, fail(Some(1), 1, 0), 1_001).unwrap_err();
        assert!(matches!(refusal, Refusal::LeaseLapsed { .. }));
    }

    #[test]
    fn a_released_lease_returns_the_job_only_if_still_current() {
        let job = activated(0);
        assert!(apply(&job, Event::ReleaseLease { lease: 0 }, 1).is_err());
        let released = apply(&job, Event::ReleaseLease { lease: 1 }, 1).unwrap();
        assert_eq!(released.state, JobState::Activatable);
    }

    #[test]
    fn cancelled_jobs_refuse_completion_heartbeats_and_failure() {
        let cancelled = apply(&activated(0), Event::Cancel, 10).unwrap();
        let events = [
            Event::Complete {
                lease: Some(1),
                result: "{}".into(),
            },
            Event::ExtendLease {
                lease: None,
                timeout_ms: 10,
            },
            fail(None, 1, 0),
            Event::UpdateRetries { retries: 1 },
        ];
        for event in events {
            let refusal = apply(&cancelled, event, 11).unwrap_err();
            assert!(matches!(refusal, Refusal::Cancelled { .. }), "{refusal:?}");
        }
    }

    #[test]
    fn completed_jobs_cannot_be_cancelled() {
        let done = apply(
            &activated(0),
            Event::Complete {
                lease: None,
                result: "{}".into(),
            },
            1,
        )
        .unwrap();
        assert!(matches!(
            apply(&done, Event::Cancel, 2),
            Err(Refusal::Completed { .. })
        ));
    }

    #[test]
    fn heartbeat_moves_the_deadline() {
        let job = apply(
            &activated(0),
            Event::ExtendLease {
                lease: Some(1),
                timeout_ms: 5_000,
            },
            900,
        )
        .unwrap();
        assert_eq!(job.deadline, 5_900);
    }
}
