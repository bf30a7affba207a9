//! Property tests of the job state machine: random sequences of events against one job, each
//! step checked against the rules of [`super::state`] and the README's "Job states".
//!
//! Each property tries 128 sequences under `./test`, from a fixed seed. `JOBHOST_PROPTEST_CASES`
//! sets the number of cases (of these and of the store's properties) and
//! `JOBHOST_PROPTEST_SEED` the seed (a number, or `random`).

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use super::limits::FAILURE_HISTORY_KEPT;
use super::state::{Event, Refusal, apply};
use super::{EpochMs, JobRecord, JobState};

/// The seed of the short runs, so that `./test` tries the same sequences every time.
const DEFAULT_SEED: u64 = 0x6a6f_6273_7461_7465;

/// Settings of a property: `default_cases` cases unless `JOBHOST_PROPTEST_CASES` says how
/// many, from a fixed seed unless `JOBHOST_PROPTEST_SEED` names one (a number, or `random`).
pub(crate) fn config(default_cases: u32) -> Config {
    let cases = std::env::var("JOBHOST_PROPTEST_CASES")
        .ok()
        .map(|text| text.parse().expect("JOBHOST_PROPTEST_CASES is a number"))
        .unwrap_or(default_cases);
    let rng_seed = match std::env::var("JOBHOST_PROPTEST_SEED").as_deref() {
        Err(_) => RngSeed::Fixed(DEFAULT_SEED),
        Ok("random") => RngSeed::Random,
        Ok(seed) => RngSeed::Fixed(
            seed.parse()
                .expect("JOBHOST_PROPTEST_SEED is a number or `random`"),
        ),
    };
    Config {
        cases,
        rng_seed,
        // A failing sequence is kept as a named test, not in a file of seeds.
        failure_persistence: None,
        ..Config::default()
    }
}

/// When the job is created (epoch ms).
const T0: EpochMs = 1_767_225_600_000;

/// Which lease an event names, relative to the job's current one when the event is sent.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Lease {
    /// The bare key: whatever the lease.
    Bare,
    Current,
    Previous,
    Next,
}

impl Lease {
    pub(crate) fn resolve(self, current: u32) -> Option<u32> {
        match self {
            Lease::Bare => None,
            Lease::Current => Some(current),
            Lease::Previous => Some(current.saturating_sub(1)),
            Lease::Next => Some(current + 1),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Action {
    Activate {
        timeout_ms: i64,
    },
    Complete(Lease),
    Fail {
        lease: Lease,
        retries: i32,
        backoff_ms: i64,
    },
    Extend {
        lease: Lease,
        timeout_ms: i64,
    },
    /// A release names a lease always; a bare choice releases the current one.
    Release(Lease),
    LeaseExpired,
    BecameDue,
    UpdateRetries(i32),
    Cancel,
}

impl Action {
    /// The event as sent to a job that is `job`; the `n`th event's worker is `w<n>`.
    fn event(self, job: &JobRecord, n: usize) -> Event {
        match self {
            Action::Activate { timeout_ms } => Event::Activate {
                worker: format!("w{n}"),
                timeout_ms,
            },
            Action::Complete(lease) => Event::Complete {
                lease: lease.resolve(job.lease),
                result: format!(r#"{{"step":"{n}"}}"#),
            },
            Action::Fail {
                lease,
                retries,
                backoff_ms,
            } => Event::Fail {
                lease: lease.resolve(job.lease),
                retries,
                backoff_ms,
                error: format!("failure {n}"),
            },
            Action::Extend { lease, timeout_ms } => Event::ExtendLease {
                lease: lease.resolve(job.lease),
                timeout_ms,
            },
            Action::Release(lease) => Event::ReleaseLease {
                lease: lease.resolve(job.lease).unwrap_or(job.lease),
            },
            Action::LeaseExpired => Event::LeaseExpired,
            Action::BecameDue => Event::BecameDue,
            Action::UpdateRetries(retries) => Event::UpdateRetries { retries },
            Action::Cancel => Event::Cancel,
        }
    }
}

/// How time moves before an event: by some milliseconds, or exactly to the lease deadline or
/// due time (the boundaries), if the job has one later than now.
#[derive(Clone, Copy, Debug)]
enum Advance {
    By(i64),
    ToDeadline,
    ToDueTime,
}

impl Advance {
    fn from(self, now: EpochMs, job: &JobRecord) -> EpochMs {
        match self {
            Advance::By(ms) => now + ms,
            Advance::ToDeadline => now.max(job.deadline),
            Advance::ToDueTime => now.max(job.due_at),
        }
    }
}

/// A job as created, and what happens to it.
#[derive(Clone, Debug)]
struct Journey {
    start: JobRecord,
    steps: Vec<(Advance, Action)>,
}

/// A job created at `T0` with `retries`, due `delay_ms` later (0: activatable at once).
fn created(retries: i32, delay_ms: i64) -> JobRecord {
    JobRecord {
        id: 7,
        tenant: "acme".into(),
        job_type: "t".into(),
        state: if delay_ms > 0 {
            JobState::Pending
        } else {
            JobState::Activatable
        },
        priority: 0,
        retries,
        original_retries: retries,
        created_at: T0,
        due_at: if delay_ms > 0 { T0 + delay_ms } else { 0 },
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

fn lease() -> impl Strategy<Value = Lease> {
    prop_oneof![
        Just(Lease::Bare),
        Just(Lease::Current),
        Just(Lease::Previous),
        Just(Lease::Next),
    ]
}

/// Lease lengths and time steps of the same size, so that about half the leases lapse.
fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (1i64..=1_500).prop_map(|timeout_ms| Action::Activate { timeout_ms }),
        2 => lease().prop_map(Action::Complete),
        4 => (lease(), -2i32..=4, prop_oneof![Just(0i64), 1i64..=1_000]).prop_map(
            |(lease, retries, backoff_ms)| Action::Fail {
                lease,
                retries,
                backoff_ms,
            }
        ),
        2 => (lease(), 1i64..=1_500)
            .prop_map(|(lease, timeout_ms)| Action::Extend { lease, timeout_ms }),
        2 => lease().prop_map(Action::Release),
        2 => Just(Action::LeaseExpired),
        2 => Just(Action::BecameDue),
        2 => (-2i32..=4).prop_map(Action::UpdateRetries),
        1 => Just(Action::Cancel),
    ]
}

fn advance() -> impl Strategy<Value = Advance> {
    prop_oneof![
        6 => (0i64..=1_200).prop_map(Advance::By),
        1 => Just(Advance::ToDeadline),
        1 => Just(Advance::ToDueTime),
    ]
}

fn journey() -> impl Strategy<Value = Journey> {
    let delay = prop_oneof![Just(0i64), 1i64..=2_000];
    let steps = proptest::collection::vec((advance(), action()), 1..=60);
    (0i32..=5, delay, steps).prop_map(|(retries, delay_ms, steps)| Journey {
        start: created(retries, delay_ms),
        steps,
    })
}

/// One event of a journey: the job before it, the event, when, and what `apply` answered.
struct Step<'a> {
    before: &'a JobRecord,
    event: &'a Event,
    now: EpochMs,
    outcome: &'a Result<JobRecord, Refusal>,
}

impl Step<'_> {
    /// The job after the event: the new record, or the old one if the event was refused.
    fn after(&self) -> &JobRecord {
        self.outcome.as_ref().unwrap_or(self.before)
    }
}

/// Applies the journey's events in order, checking each step.
fn walk(
    journey: &Journey,
    mut check: impl FnMut(&Step<'_>) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let mut job = journey.start.clone();
    let mut now = T0;
    for (n, (advance, action)) in journey.steps.iter().enumerate() {
        now = advance.from(now, &job);
        let event = action.event(&job, n);
        let outcome = apply(&job, event.clone(), now);
        check(&Step {
            before: &job,
            event: &event,
            now,
            outcome: &outcome,
        })?;
        if let Ok(next) = outcome {
            job = next;
        }
    }
    Ok(())
}

fn is_final(state: JobState) -> bool {
    matches!(state, JobState::Completed | JobState::Cancelled)
}

/// Whether the event names a lease that is not the job's current one.
fn names_a_stale_lease(event: &Event, job: &JobRecord) -> bool {
    let named = match event {
        Event::Complete { lease, .. }
        | Event::Fail { lease, .. }
        | Event::ExtendLease { lease, .. } => *lease,
        Event::ReleaseLease { lease } => Some(*lease),
        _ => None,
    };
    named.is_some_and(|lease| lease != job.lease)
}

/// The rule of each event: when it applies to a job, as the event's and the state's docs say.
fn applies(job: &JobRecord, event: &Event, now: EpochMs) -> bool {
    let held_under = |lease: &Option<u32>| {
        job.state == JobState::Activated
            && lease.is_none_or(|lease| lease == job.lease)
            && job.deadline > now
    };
    match event {
        Event::Activate { .. } => job.state == JobState::Activatable,
        Event::Complete { lease, .. }
        | Event::Fail { lease, .. }
        | Event::ExtendLease { lease, .. } => held_under(lease),
        Event::ReleaseLease { lease } => job.state == JobState::Activated && *lease == job.lease,
        Event::LeaseExpired => job.state == JobState::Activated && job.deadline <= now,
        Event::BecameDue => job.state == JobState::Pending && job.due_at <= now,
        Event::UpdateRetries { .. } | Event::Cancel => !is_final(job.state),
    }
}

/// The state an applied event leaves the job in.
fn documented_state(job: &JobRecord, event: &Event) -> JobState {
    match event {
        Event::Activate { .. } => JobState::Activated,
        Event::Complete { .. } => JobState::Completed,
        Event::Fail { retries, .. } if *retries <= 0 => JobState::Failed,
        Event::Fail { backoff_ms, .. } if *backoff_ms > 0 => JobState::Pending,
        Event::Fail { .. }
        | Event::ReleaseLease { .. }
        | Event::LeaseExpired
        | Event::BecameDue => JobState::Activatable,
        Event::ExtendLease { .. } => job.state,
        Event::UpdateRetries { retries } if job.state == JobState::Failed && *retries > 0 => {
            JobState::Activatable
        }
        Event::UpdateRetries { .. } => job.state,
        Event::Cancel => JobState::Cancelled,
    }
}

/// The README's picture: pending → activatable → activated → completed, failed (revived by
/// retries) or cancelled; an activated job goes back to activatable or pending.
fn documented_transition(from: JobState, to: JobState) -> bool {
    use JobState::*;
    from == to && !is_final(from)
        || matches!(
            (from, to),
            (Pending, Activatable)
                | (Activatable, Activated)
                | (Activated, Activatable | Pending | Completed | Failed)
                | (Failed, Activatable)
                | (Pending | Activatable | Activated | Failed, Cancelled)
        )
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn an_event_applies_exactly_when_its_rule_allows(journey in journey()) {
        walk(&journey, |step| {
            prop_assert_eq!(
                step.outcome.is_ok(),
                applies(step.before, step.event, step.now),
                "{:?} at {} on {:?}: {:?}", step.event, step.now, step.before, step.outcome
            );
            Ok(())
        })?;
    }

    #[test]
    fn an_applied_event_leaves_the_job_in_its_documented_state(journey in journey()) {
        walk(&journey, |step| {
            if let Ok(after) = step.outcome {
                prop_assert_eq!(
                    after.state,
                    documented_state(step.before, step.event),
                    "{:?} on {:?}", step.event, step.before
                );
            }
            Ok(())
        })?;
    }

    #[test]
    fn transitions_follow_the_documented_states(journey in journey()) {
        walk(&journey, |step| {
            if let Ok(after) = step.outcome {
                let (from, to) = (step.before.state, after.state);
                prop_assert!(documented_transition(from, to), "{from} -> {to} by {:?}", step.event);
            }
            Ok(())
        })?;
    }

    #[test]
    fn final_states_never_change(journey in journey()) {
        walk(&journey, |step| {
            if is_final(step.before.state) {
                prop_assert!(
                    step.outcome.is_err(),
                    "{:?} changed a {} job", step.event, step.before.state
                );
            }
            Ok(())
        })?;
    }

    #[test]
    fn retries_never_go_negative(journey in journey()) {
        walk(&journey, |step| {
            let after = step.after();
            prop_assert!(after.retries >= 0, "{} retries after {:?}", after.retries, step.event);
            for failure in &after.failure_history {
                prop_assert!(failure.retries >= 0, "{failure:?}");
            }
            Ok(())
        })?;
    }

    #[test]
    fn a_failed_job_has_no_retries_left(journey in journey()) {
        walk(&journey, |step| {
            let after = step.after();
            if after.state == JobState::Failed {
                prop_assert_eq!(after.retries, 0, "after {:?}", step.event);
            }
            Ok(())
        })?;
    }

    #[test]
    fn only_a_failure_or_an_operator_changes_the_retries(journey in journey()) {
        walk(&journey, |step| {
            let spends = matches!(step.event, Event::Fail { .. } | Event::UpdateRetries { .. });
            if !spends {
                prop_assert_eq!(step.after().retries, step.before.retries, "by {:?}", step.event);
            }
            Ok(())
        })?;
    }

    #[test]
    fn each_activation_takes_the_next_lease_and_nothing_else_changes_it(journey in journey()) {
        walk(&journey, |step| {
            let expected = match (step.event, step.outcome) {
                (Event::Activate { .. }, Ok(_)) => step.before.lease + 1,
                _ => step.before.lease,
            };
            prop_assert_eq!(step.after().lease, expected, "by {:?}", step.event);
            Ok(())
        })?;
    }

    #[test]
    fn an_event_under_a_stale_lease_is_refused(journey in journey()) {
        walk(&journey, |step| {
            if names_a_stale_lease(step.event, step.before) {
                prop_assert!(
                    step.outcome.is_err(),
                    "{:?} applied to {:?}", step.event, step.before
                );
            }
            Ok(())
        })?;
    }

    #[test]
    fn a_stale_worker_of_an_activated_job_learns_the_current_lease(journey in journey()) {
        walk(&journey, |step| {
            let holder_event = !matches!(step.event, Event::ReleaseLease { .. });
            if holder_event
                && step.before.state == JobState::Activated
                && names_a_stale_lease(step.event, step.before)
            {
                let superseded = matches!(
                    step.outcome,
                    Err(Refusal::LeaseSuperseded { current, worker, .. })
                        if *current == step.before.lease && *worker == step.before.worker
                );
                prop_assert!(
                    superseded,
                    "{:?} on {:?}: {:?}", step.event, step.before, step.outcome
                );
            }
            Ok(())
        })?;
    }

    #[test]
    fn only_activation_changes_the_worker(journey in journey()) {
        walk(&journey, |step| {
            if !matches!(step.event, Event::Activate { .. }) {
                prop_assert_eq!(&step.after().worker, &step.before.worker, "by {:?}", step.event);
            }
            Ok(())
        })?;
    }

    #[test]
    fn a_deadline_is_set_exactly_while_activated(journey in journey()) {
        walk(&journey, |step| {
            let after = step.after();
            prop_assert_eq!(after.deadline != 0, after.state == JobState::Activated, "{:?}", after);
            if let (Event::ExtendLease { timeout_ms, .. }, Ok(after)) = (step.event, step.outcome) {
                prop_assert_eq!(after.deadline, step.now + timeout_ms);
            }
            Ok(())
        })?;
    }

    #[test]
    fn a_due_time_is_set_exactly_while_pending(journey in journey()) {
        walk(&journey, |step| {
            let after = step.after();
            prop_assert_eq!(after.due_at != 0, after.state == JobState::Pending, "{:?}", after);
            Ok(())
        })?;
    }

    #[test]
    fn a_finish_time_is_set_exactly_in_the_finished_states(journey in journey()) {
        walk(&journey, |step| {
            let after = step.after();
            let finished = matches!(
                after.state,
                JobState::Completed | JobState::Failed | JobState::Cancelled
            );
            prop_assert_eq!(after.finished_at != 0, finished, "{:?}", after);
            Ok(())
        })?;
    }

    #[test]
    fn a_result_is_kept_exactly_when_completed(journey in journey()) {
        walk(&journey, |step| {
            let after = step.after();
            prop_assert_eq!(after.result.is_some(), after.state == JobState::Completed);
            Ok(())
        })?;
    }

    #[test]
    fn every_failure_is_counted_and_the_latest_are_kept(journey in journey()) {
        walk(&journey, |step| {
            let failed = matches!((step.event, step.outcome), (Event::Fail { .. }, Ok(_)));
            let after = step.after();
            prop_assert_eq!(after.failures, step.before.failures + u32::from(failed));
            let kept = (after.failures as usize).min(FAILURE_HISTORY_KEPT);
            prop_assert_eq!(after.failure_history.len(), kept);
            if let Some(last) = after.failure_history.last() {
                prop_assert_eq!(last.attempt, after.failures);
            }
            if failed {
                let last = after.failure_history.last().expect("the failure is kept");
                prop_assert_eq!((last.retries, last.failed_at), (after.retries, step.now));
                prop_assert_eq!(&last.worker, &step.before.worker);
            }
            Ok(())
        })?;
    }

    #[test]
    fn a_job_keeps_its_identity_and_inputs(journey in journey()) {
        walk(&journey, |step| {
            let (before, after) = (step.before, step.after());
            prop_assert_eq!(
                (after.id, &after.tenant, &after.job_type, after.priority),
                (before.id, &before.tenant, &before.job_type, before.priority)
            );
            prop_assert_eq!(
                (after.created_at, after.original_retries),
                (before.created_at, before.original_retries)
            );
            Ok(())
        })?;
    }
}

/// A failed job, out of retries after its first attempt.
fn failed() -> JobRecord {
    let activate = Event::Activate {
        worker: "w".into(),
        timeout_ms: 1_000,
    };
    let activated = apply(&created(1, 0), activate, T0).unwrap();
    let fail = Event::Fail {
        lease: Some(1),
        retries: 0,
        backoff_ms: 0,
        error: "boom".into(),
    };
    apply(&activated, fail, T0 + 1).unwrap()
}

#[test]
fn negative_retries_given_by_an_operator_are_stored_as_none() {
    let job = apply(&created(3, 0), Event::UpdateRetries { retries: -1 }, T0).unwrap();
    assert_eq!((job.state, job.retries), (JobState::Activatable, 0));
}

#[test]
fn a_failed_job_given_no_retries_stays_failed() {
    for retries in [0, -1] {
        let job = apply(&failed(), Event::UpdateRetries { retries }, T0 + 2).unwrap();
        assert_eq!((job.state, job.retries), (JobState::Failed, 0), "{retries}");
        assert_ne!(job.finished_at, 0);
    }
}
