//! Property tests of the sled store: random sequences of calls (creating, activating,
//! completing, failing, cancelling, releasing, heartbeating, reopening), after each of which the
//! store must agree with a plain model of its jobs, hold every job under at most one lease, and
//! answer listings and statistics that agree with its records.
//!
//! 32 sequences of up to 40 calls run under `./test`; `JOBHOST_PROPTEST_CASES` and
//! `JOBHOST_PROPTEST_SEED` set the cases and seed (see [`crate::job::state_properties`]).

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::job::state::{Event, Refusal};
use crate::job::state_properties::{Lease, config};
use crate::job::{Job, JobId, JobPayload, JobRecord, JobState, NewJob, TenantScope, now_ms};
use crate::store::{Activation, ApplyError, JobQueries, JobQueue, Lifecycle, ListQuery, SledStore};

const TENANTS: [&str; 3] = ["acme", "beta", "gamma"];
const TYPES: [&str; 2] = ["resize", "mail"];
/// Leases, backoffs and schedules that outlast any run, so that only the brief ones lapse.
const LONG_MS: i64 = 10 * 60_000;
/// Leases and backoffs that lapse within a step; the step waits for them.
const BRIEF_MS: i64 = 15;
/// A job id no run reaches.
const UNKNOWN: JobId = 1 << 40;

/// A job to create.
#[derive(Clone, Debug)]
struct Spec {
    tenant: usize,
    job_type: usize,
    priority: i32,
    retries: i32,
    scheduled: bool,
}

/// Which job an event is sent to, by position: one of those the model has activated (any, if
/// none is), one of those created so far, or none.
#[derive(Clone, Copy, Debug)]
enum Target {
    Held(usize),
    Known(usize),
    Unknown,
}

#[derive(Clone, Copy, Debug)]
enum Backoff {
    None,
    Brief,
    Long,
}

/// The tenants a caller may touch: `None` all, else those of the mask's bits.
type Scope = Option<u8>;

fn tenant_scope(scope: Scope) -> TenantScope {
    match scope {
        None => TenantScope::All,
        Some(mask) => TenantScope::only(
            TENANTS
                .iter()
                .enumerate()
                .filter(|(bit, _)| mask & (1 << bit) != 0)
                .map(|(_, tenant)| *tenant),
        ),
    }
}

#[derive(Clone, Debug)]
enum Op {
    Create(Vec<Spec>),
    Activate {
        job_type: usize,
        max_jobs: usize,
        scope: Scope,
        brief: bool,
    },
    /// Two activations of one type sent at once, for every tenant.
    ActivateTogether {
        job_type: usize,
        max_jobs: [usize; 2],
    },
    Complete {
        target: Target,
        lease: Lease,
        scope: Scope,
    },
    Fail {
        target: Target,
        lease: Lease,
        retries: i32,
        backoff: Backoff,
    },
    Extend {
        target: Target,
        lease: Lease,
    },
    /// A release names a lease always; a bare choice releases the current one.
    Release {
        target: Target,
        lease: Lease,
    },
    Cancel {
        target: Target,
        scope: Scope,
    },
    UpdateRetries {
        target: Target,
        retries: i32,
    },
    Reopen,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..TENANTS.len(),
        0..TYPES.len(),
        -1i32..=2,
        1i32..=3,
        prop::bool::weighted(0.15),
    )
        .prop_map(|(tenant, job_type, priority, retries, scheduled)| Spec {
            tenant,
            job_type,
            priority,
            retries,
            scheduled,
        })
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        5 => (0usize..64).prop_map(Target::Held),
        4 => (0usize..64).prop_map(Target::Known),
        1 => Just(Target::Unknown),
    ]
}

fn lease() -> impl Strategy<Value = Lease> {
    prop_oneof![
        2 => Just(Lease::Current),
        1 => Just(Lease::Bare),
        1 => Just(Lease::Previous),
        1 => Just(Lease::Next),
    ]
}

fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![3 => Just(None), 1 => (0u8..8).prop_map(Some)]
}

fn op() -> impl Strategy<Value = Op> {
    let backoff = prop_oneof![
        2 => Just(Backoff::None),
        1 => Just(Backoff::Brief),
        1 => Just(Backoff::Long),
    ];
    prop_oneof![
        5 => prop::collection::vec(spec(), 1..=3).prop_map(Op::Create),
        4 => (0..TYPES.len(), 0usize..=4, scope(), prop::bool::weighted(0.15)).prop_map(
            |(job_type, max_jobs, scope, brief)| Op::Activate {
                job_type,
                max_jobs,
                scope,
                brief,
            }
        ),
        1 => (0..TYPES.len(), 1usize..=3, 1usize..=3).prop_map(|(job_type, first, second)| {
            Op::ActivateTogether {
                job_type,
                max_jobs: [first, second],
            }
        }),
        3 => (target(), lease(), scope())
            .prop_map(|(target, lease, scope)| Op::Complete { target, lease, scope }),
        3 => (target(), lease(), -1i32..=2, backoff).prop_map(|(target, lease, retries, backoff)| {
            Op::Fail {
                target,
                lease,
                retries,
                backoff,
            }
        }),
        1 => (target(), lease()).prop_map(|(target, lease)| Op::Extend { target, lease }),
        1 => (target(), lease()).prop_map(|(target, lease)| Op::Release { target, lease }),
        1 => (target(), scope()).prop_map(|(target, scope)| Op::Cancel { target, scope }),
        1 => (target(), 1i32..=3)
            .prop_map(|(target, retries)| Op::UpdateRetries { target, retries }),
        1 => Just(Op::Reopen),
    ]
}

/// What the model knows of a job, from the answers the store gave.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expected {
    tenant: String,
    job_type: String,
    priority: i32,
    retries: i32,
    state: JobState,
    lease: u32,
    worker: String,
    failures: u32,
    variables: String,
}

impl Expected {
    fn of(record: &JobRecord, variables: &str) -> Expected {
        Expected {
            tenant: record.tenant.clone(),
            job_type: record.job_type.clone(),
            priority: record.priority,
            retries: record.retries,
            state: record.state,
            lease: record.lease,
            worker: record.worker.clone(),
            failures: record.failures,
            variables: variables.to_string(),
        }
    }

    fn held_under(&self, lease: Option<u32>) -> bool {
        self.state == JobState::Activated && lease.is_none_or(|lease| lease == self.lease)
    }

    fn is_final(&self) -> bool {
        matches!(self.state, JobState::Completed | JobState::Cancelled)
    }
}

/// How the store answered an event, once checked against the model's scope.
#[derive(Debug)]
enum Answer {
    NotFound,
    Refused(Refusal),
    Applied(JobRecord),
}

fn failure(error: impl Debug) -> TestCaseError {
    TestCaseError::fail(format!("{error:?}"))
}

/// Jobs counted by state, in the order of [`JobState::ALL`].
type Counts = [u64; 6];

fn slot(state: JobState) -> usize {
    JobState::ALL
        .iter()
        .position(|s| *s == state)
        .expect("listed")
}

/// A store on a temporary directory, and the model of its jobs.
struct Run {
    dir: tempfile::TempDir,
    /// Always open, but for the moment of a reopen: the directory is free only once the
    /// closed store is dropped.
    store: Option<SledStore>,
    jobs: BTreeMap<JobId, Expected>,
    /// Jobs seen completed or cancelled, in that state.
    finished: HashMap<JobId, JobState>,
    /// Completions and incidents the statistics of the last hour must show: those counted when
    /// the store was opened (one per completed or failed record) and those since.
    completions: u64,
    incidents: u64,
    steps: usize,
}

impl Run {
    fn new() -> Run {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path()).expect("store opens");
        Run {
            dir,
            store: Some(store),
            jobs: BTreeMap::new(),
            finished: HashMap::new(),
            completions: 0,
            incidents: 0,
            steps: 0,
        }
    }

    fn id_of(&self, target: Target) -> JobId {
        let held: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, job)| job.state == JobState::Activated)
            .map(|(id, _)| *id)
            .collect();
        let all: Vec<JobId> = self.jobs.keys().copied().collect();
        let (ids, n) = match target {
            Target::Held(n) if !held.is_empty() => (held, n),
            Target::Held(n) | Target::Known(n) => (all, n),
            Target::Unknown => return UNKNOWN,
        };
        ids.get(n % ids.len().max(1)).copied().unwrap_or(UNKNOWN)
    }

    /// The model's job `id` if a caller with `scope` may see it.
    fn visible(&self, id: JobId, scope: &TenantScope) -> Option<&Expected> {
        self.jobs.get(&id).filter(|job| scope.contains(&job.tenant))
    }

    async fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        self.steps += 1;
        match op {
            Op::Create(specs) => self.create(specs).await,
            Op::Activate {
                job_type,
                max_jobs,
                scope,
                brief,
            } => self.activate(job_type, max_jobs, scope, brief).await,
            Op::ActivateTogether { job_type, max_jobs } => {
                self.activate_together(job_type, max_jobs).await
            }
            Op::Complete {
                target,
                lease,
                scope,
            } => self.complete(target, lease, scope).await,
            Op::Fail {
                target,
                lease,
                retries,
                backoff,
            } => self.fail(target, lease, retries, backoff).await,
            Op::Extend { target, lease } => self.extend(target, lease).await,
            Op::Release { target, lease } => self.release(target, lease).await,
            Op::Cancel { target, scope } => self.cancel(target, scope).await,
            Op::UpdateRetries { target, retries } => self.update_retries(target, retries).await,
            Op::Reopen => self.reopen().await,
        }
    }

    async fn create(&mut self, specs: Vec<Spec>) -> Result<(), TestCaseError> {
        let jobs: Vec<NewJob> = specs
            .iter()
            .enumerate()
            .map(|(n, spec)| NewJob {
                tenant: TENANTS[spec.tenant].into(),
                job_type: TYPES[spec.job_type].into(),
                priority: spec.priority,
                retries: spec.retries,
                run_at: spec.scheduled.then(|| now_ms() + LONG_MS),
                payload: JobPayload {
                    variables: format!(r#"{{"step":"{}","n":"{n}"}}"#, self.steps),
                    ..JobPayload::default()
                },
                idempotency_key: None,
            })
            .collect();
        let ids = self.store().create(jobs.clone()).await.map_err(failure)?;
        prop_assert_eq!(ids.len(), jobs.len());
        let newest = self.jobs.keys().next_back().copied().unwrap_or(0);
        prop_assert!(
            ids.first().is_none_or(|first| *first > newest),
            "ids are never reused"
        );
        prop_assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
        for (id, job) in ids.into_iter().zip(jobs) {
            let state = if job.run_at.is_some() {
                JobState::Pending
            } else {
                JobState::Activatable
            };
            let expected = Expected {
                tenant: job.tenant,
                job_type: job.job_type,
                priority: job.priority,
                retries: job.retries,
                state,
                lease: 0,
                worker: String::new(),
                failures: 0,
                variables: job.payload.variables,
            };
            self.jobs.insert(id, expected);
        }
        Ok(())
    }

    async fn activate(
        &mut self,
        job_type: usize,
        max_jobs: usize,
        scope: Scope,
        brief: bool,
    ) -> Result<(), TestCaseError> {
        let scope = tenant_scope(scope);
        let worker = format!("w{}", self.steps);
        let request = Activation {
            job_type: TYPES[job_type].into(),
            worker: worker.clone(),
            scope: scope.clone(),
            max_jobs,
            timeout_ms: if brief { BRIEF_MS } else { LONG_MS },
            wait: false,
            in_process: false,
        };
        let predicted: Vec<JobId> = self.ready(job_type, &scope).take(max_jobs).collect();
        let leased = self.store().activate(request).await.map_err(failure)?;
        let ids: Vec<JobId> = leased.iter().map(|job| job.record.id).collect();
        prop_assert_eq!(&ids, &predicted, "activated jobs");
        self.lease_out(&leased, &worker)?;
        if brief {
            for id in ids {
                self.wait_while(id, JobState::Activated).await?;
                self.model(id).state = JobState::Activatable;
            }
        }
        Ok(())
    }

    async fn activate_together(
        &mut self,
        job_type: usize,
        max_jobs: [usize; 2],
    ) -> Result<(), TestCaseError> {
        let request = |n: usize| Activation {
            job_type: TYPES[job_type].into(),
            worker: format!("w{}-{n}", self.steps),
            scope: TenantScope::All,
            max_jobs: max_jobs[n],
            timeout_ms: LONG_MS,
            wait: false,
            in_process: false,
        };
        let (first, second) = (request(0), request(1));
        let predicted: Vec<JobId> = self
            .ready(job_type, &TenantScope::All)
            .take(max_jobs[0] + max_jobs[1])
            .collect();
        let (first_leased, second_leased) =
            tokio::join!(self.store().activate(first), self.store().activate(second));
        let (first_leased, second_leased) = (
            first_leased.map_err(failure)?,
            second_leased.map_err(failure)?,
        );
        let ids = |jobs: &[Job]| jobs.iter().map(|job| job.record.id).collect::<Vec<_>>();
        let (first_ids, second_ids) = (ids(&first_leased), ids(&second_leased));
        // Whichever the store served first took the best jobs; the other took the next best.
        let mut together = first_ids.clone();
        together.extend(&second_ids);
        let mut other_way = second_ids.clone();
        other_way.extend(&first_ids);
        prop_assert!(
            together == predicted || other_way == predicted,
            "{first_ids:?} and {second_ids:?} leased together, {predicted:?} expected"
        );
        self.lease_out(&first_leased, &format!("w{}-0", self.steps))?;
        self.lease_out(&second_leased, &format!("w{}-1", self.steps))
    }

    /// The model's activatable jobs of a type in a scope, best first: highest priority, then
    /// oldest.
    fn ready(&self, job_type: usize, scope: &TenantScope) -> impl Iterator<Item = JobId> {
        let mut ready: Vec<(Reverse<i32>, JobId)> = self
            .jobs
            .iter()
            .filter(|(_, job)| {
                job.state == JobState::Activatable
                    && job.job_type == TYPES[job_type]
                    && scope.contains(&job.tenant)
            })
            .map(|(id, job)| (Reverse(job.priority), *id))
            .collect();
        ready.sort_unstable();
        ready.into_iter().map(|(_, id)| id)
    }

    /// Checks jobs an activation leased to `worker` and records their leases: each was
    /// activatable (under no live lease) and is now held under its next lease.
    fn lease_out(&mut self, leased: &[Job], worker: &str) -> Result<(), TestCaseError> {
        for job in leased {
            let record = &job.record;
            let expected = self.jobs.get_mut(&record.id).expect("a job of the model");
            prop_assert_eq!(
                expected.state,
                JobState::Activatable,
                "job {} leased twice",
                record.id
            );
            prop_assert_eq!(&job.payload.variables, &expected.variables);
            expected.state = JobState::Activated;
            expected.lease += 1;
            expected.worker = worker.to_string();
            prop_assert_eq!(&Expected::of(record, &expected.variables), &*expected);
        }
        Ok(())
    }

    async fn complete(
        &mut self,
        target: Target,
        lease: Lease,
        scope: Scope,
    ) -> Result<(), TestCaseError> {
        let id = self.id_of(target);
        let scope = tenant_scope(scope);
        let lease = self.jobs.get(&id).and_then(|job| lease.resolve(job.lease));
        let accepted = self
            .visible(id, &scope)
            .is_some_and(|job| job.held_under(lease));
        let event = Event::Complete {
            lease,
            result: r#"{"ok":"yes"}"#.into(),
        };
        if let Answer::Applied(_) = self.apply(id, scope, event, accepted).await? {
            self.model(id).state = JobState::Completed;
            self.completions += 1;
        }
        Ok(())
    }

    async fn fail(
        &mut self,
        target: Target,
        lease: Lease,
        retries: i32,
        backoff: Backoff,
    ) -> Result<(), TestCaseError> {
        let id = self.id_of(target);
        let lease = self.jobs.get(&id).and_then(|job| lease.resolve(job.lease));
        let accepted = self.jobs.get(&id).is_some_and(|job| job.held_under(lease));
        let event = Event::Fail {
            lease,
            retries,
            backoff_ms: match backoff {
                Backoff::None => 0,
                Backoff::Brief => BRIEF_MS,
                Backoff::Long => LONG_MS,
            },
            error: "boom".into(),
        };
        if let Answer::Applied(_) = self.apply(id, TenantScope::All, event, accepted).await? {
            let retries = retries.max(0);
            let state = match backoff {
                _ if retries == 0 => JobState::Failed,
                Backoff::Long => JobState::Pending,
                Backoff::Brief => {
                    self.wait_while(id, JobState::Pending).await?;
                    JobState::Activatable
                }
                Backoff::None => JobState::Activatable,
            };
            let job = self.model(id);
            (job.state, job.retries) = (state, retries);
            job.failures += 1;
            if state == JobState::Failed {
                self.incidents += 1;
            }
        }
        Ok(())
    }

    async fn extend(&mut self, target: Target, lease: Lease) -> Result<(), TestCaseError> {
        let id = self.id_of(target);
        let lease = self.jobs.get(&id).and_then(|job| lease.resolve(job.lease));
        let accepted = self.jobs.get(&id).is_some_and(|job| job.held_under(lease));
        let event = Event::ExtendLease {
            lease,
            timeout_ms: LONG_MS,
        };
        self.apply(id, TenantScope::All, event, accepted).await?;
        Ok(())
    }

    async fn release(&mut self, target: Target, lease: Lease) -> Result<(), TestCaseError> {
        let id = self.id_of(target);
        let current = self.jobs.get(&id).map_or(0, |job| job.lease);
        let lease = lease.resolve(current).unwrap_or(current);
        self.store()
            .release(vec![(id, lease)])
            .await
            .map_err(failure)?;
        if let Some(job) = self.jobs.get_mut(&id)
            && job.held_under(Some(lease))
        {
            job.state = JobState::Activatable;
        }
        Ok(())
    }

    async fn cancel(&mut self, target: Target, scope: Scope) -> Result<(), TestCaseError> {
        let id = self.id_of(target);
        let scope = tenant_scope(scope);
        let accepted = self.visible(id, &scope).is_some_and(|job| !job.is_final());
        if let Answer::Applied(_) = self.apply(id, scope, Event::Cancel, accepted).await? {
            self.model(id).state = JobState::Cancelled;
        }
        Ok(())
    }

    async fn update_retries(&mut self, target: Target, retries: i32) -> Result<(), TestCaseError> {
        let id = self.id_of(target);
        let accepted = self.jobs.get(&id).is_some_and(|job| !job.is_final());
        let event = Event::UpdateRetries { retries };
        if let Answer::Applied(_) = self.apply(id, TenantScope::All, event, accepted).await? {
            let job = self.model(id);
            job.retries = retries;
            if job.state == JobState::Failed {
                job.state = JobState::Activatable;
            }
        }
        Ok(())
    }

    /// Closes the store and opens it again; nothing acknowledged may change.
    async fn reopen(&mut self) -> Result<(), TestCaseError> {
        let closed = self.store.take().expect("open");
        closed.close().await.map_err(failure)?;
        drop(closed);
        self.store = Some(SledStore::open(self.dir.path()).map_err(failure)?);
        let counted = |state| self.jobs.values().filter(|job| job.state == state).count();
        self.completions = counted(JobState::Completed) as u64;
        self.incidents = counted(JobState::Failed) as u64;
        Ok(())
    }

    fn store(&self) -> &SledStore {
        self.store.as_ref().expect("open")
    }

    fn model(&mut self, id: JobId) -> &mut Expected {
        self.jobs.get_mut(&id).expect("a job of the model")
    }

    /// Sends an event and checks the answer against the model: not found outside the scope,
    /// applied exactly when `accepted`, and a refusal changes nothing.
    async fn apply(
        &mut self,
        id: JobId,
        scope: TenantScope,
        event: Event,
        accepted: bool,
    ) -> Result<Answer, TestCaseError> {
        let before = self.store().get(id).await.map_err(failure)?;
        let visible = self.visible(id, &scope).is_some();
        let answer = match self.store().apply(id, scope, event.clone()).await {
            Err(ApplyError::NotFound(missing)) if missing == id => Answer::NotFound,
            Err(ApplyError::Refused(refusal)) => Answer::Refused(refusal),
            Ok(record) => Answer::Applied(record),
            Err(other) => return Err(failure(other)),
        };
        let after = self.store().get(id).await.map_err(failure)?;
        match &answer {
            Answer::NotFound => prop_assert!(!visible, "{event:?}: job {id} not found"),
            Answer::Refused(refusal) => {
                prop_assert!(visible && !accepted, "{event:?} refused: {refusal}");
                prop_assert_eq!(&after, &before, "a refused {:?} changed the job", event);
            }
            Answer::Applied(record) => {
                prop_assert!(visible && accepted, "{event:?} applied: {record:?}");
                let stored = after.map(|job| job.record);
                // A brief backoff may lapse between the answer and the read; the store's
                // timer making the job activatable then is no mismatch.
                let mut lapsed = record.clone();
                if lapsed.state == JobState::Pending && lapsed.due_at <= crate::job::now_ms() {
                    (lapsed.state, lapsed.due_at) = (JobState::Activatable, 0);
                }
                prop_assert!(
                    stored.as_ref() == Some(record) || stored.as_ref() == Some(&lapsed),
                    "the answer is what is stored: answered {:?}, stored {:?}",
                    record,
                    stored
                );
            }
        }
        Ok(answer)
    }

    /// Waits (a few seconds at most) until the store's timer moves the job out of `state`.
    async fn wait_while(&self, id: JobId, state: JobState) -> Result<(), TestCaseError> {
        for _ in 0..2_500 {
            let job = self
                .store()
                .get(id)
                .await
                .map_err(failure)?
                .expect("stored");
            if job.record.state != state {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Err(failure(format!("job {id} stayed {state}")))
    }

    /// Everything the store answers agrees with the model and with its own records.
    async fn check(&mut self) -> Result<(), TestCaseError> {
        let records = self.check_records().await?;
        self.check_listings(&records).await?;
        self.check_stats(&records).await
    }

    /// Every job reads back as the model has it; final states stay final.
    async fn check_records(&mut self) -> Result<BTreeMap<JobId, JobRecord>, TestCaseError> {
        let mut records = BTreeMap::new();
        let store = self.store.as_ref().expect("open");
        for (id, expected) in &self.jobs {
            let job = store.get(*id).await.map_err(failure)?;
            let job = job.ok_or_else(|| failure(format!("job {id} is gone")))?;
            prop_assert_eq!(&Expected::of(&job.record, &job.payload.variables), expected);
            prop_assert!(job.record.retries >= 0, "{:?}", job.record);
            if let Some(state) = self.finished.get(id) {
                prop_assert_eq!(job.record.state, *state, "job {} left a final state", id);
            } else if expected.is_final() {
                self.finished.insert(*id, expected.state);
            }
            records.insert(*id, job.record);
        }
        prop_assert!(store.get(UNKNOWN).await.map_err(failure)?.is_none());
        Ok(records)
    }

    /// Listings by every state, tenant and type hold exactly the matching records.
    async fn check_listings(
        &self,
        records: &BTreeMap<JobId, JobRecord>,
    ) -> Result<(), TestCaseError> {
        for state in JobState::ALL.map(Some).into_iter().chain([None]) {
            let mut query = ListQuery::all(TenantScope::All, records.len() + 1);
            query.state = state;
            let page = self.store().list(&query).await.map_err(failure)?;
            let listed: Vec<JobId> = page.jobs.iter().map(|job| job.record.id).collect();
            let matching: Vec<JobId> = records
                .values()
                .rev()
                .filter(|record| state.is_none_or(|state| record.state == state))
                .map(|record| record.id)
                .collect();
            prop_assert_eq!(&listed, &matching, "listing {:?}, newest first", state);
            prop_assert_eq!(page.total, matching.len() as u64);
            for job in &page.jobs {
                prop_assert_eq!(&job.record, &records[&job.record.id]);
            }
            let in_state = |record: &JobRecord| state.is_none_or(|state| record.state == state);
            prop_assert_eq!(page.counts.by_state, counts(records.values(), in_state));
        }
        let tenants = TENANTS.map(Some).into_iter().chain([None]);
        for tenant in tenants {
            for job_type in TYPES.map(Some).into_iter().chain([None]) {
                let mut query = ListQuery::all(TenantScope::All, 0);
                query.tenant = tenant.map(String::from);
                query.job_type = job_type.map(String::from);
                let selected = |record: &JobRecord| {
                    tenant.is_none_or(|t| record.tenant == t)
                        && job_type.is_none_or(|t| record.job_type == t)
                };
                let expected = counts(records.values(), selected);
                let page = self.store().list(&query).await.map_err(failure)?;
                prop_assert_eq!(
                    page.counts.by_state,
                    expected,
                    "{:?} {:?}",
                    tenant,
                    job_type
                );
                for state in JobState::ALL {
                    query.state = Some(state);
                    let total = self.store().list(&query).await.map_err(failure)?.total;
                    prop_assert_eq!(total, expected[slot(state)]);
                }
            }
        }
        let mut tenants: Vec<String> = records.values().map(|r| r.tenant.clone()).collect();
        tenants.sort_unstable();
        tenants.dedup();
        prop_assert_eq!(self.store().job_tenants().await.map_err(failure)?, tenants);
        Ok(())
    }

    /// Statistics count the records: by state, type, tenant and group, and the last hour's
    /// completions and incidents.
    async fn check_stats(&self, records: &BTreeMap<JobId, JobRecord>) -> Result<(), TestCaseError> {
        let now = now_ms();
        let stats = self
            .store()
            .stats(&TenantScope::All, None, now)
            .await
            .map_err(failure)?;
        prop_assert_eq!(stats.by_state.by_state, counts(records.values(), |_| true));
        prop_assert_eq!(stats.by_state.total(), records.len() as u64);
        let run_time: i64 = records
            .values()
            .filter(|r| r.state == JobState::Completed)
            .map(|r| r.finished_at - r.created_at)
            .sum();
        prop_assert_eq!(stats.by_state.completed_duration_sum_ms, run_time);
        let mut by_type = HashMap::new();
        let mut by_tenant = HashMap::new();
        let mut by_group = BTreeMap::new();
        for record in records.values() {
            let type_counts: &mut Counts = by_type.entry(record.job_type.clone()).or_default();
            type_counts[slot(record.state)] += 1;
            let tenant_counts: &mut Counts = by_tenant.entry(record.tenant.clone()).or_default();
            tenant_counts[slot(record.state)] += 1;
            let group = (record.tenant.clone(), record.job_type.clone(), record.state);
            *by_group.entry(group).or_insert(0u64) += 1;
        }
        let of = |map: &HashMap<String, crate::store::index::StateCounts>| {
            map.iter()
                .map(|(name, counts)| (name.clone(), counts.by_state))
                .collect::<HashMap<_, _>>()
        };
        prop_assert_eq!(of(&stats.by_type), by_type);
        prop_assert_eq!(of(&stats.by_tenant), by_tenant);
        let groups: BTreeMap<_, _> = stats
            .by_group
            .iter()
            .map(|(tenant, job_type, state, count)| {
                ((tenant.clone(), job_type.clone(), *state), *count)
            })
            .collect();
        prop_assert_eq!(groups, by_group);
        let completed: u64 = stats.per_minute.iter().map(|m| m.1).sum();
        let failed: u64 = stats.per_minute.iter().map(|m| m.2).sum();
        prop_assert_eq!(
            (stats.completions, completed, failed),
            (self.completions, self.completions, self.incidents)
        );
        for tenant in TENANTS {
            let in_tenant = |record: &JobRecord| record.tenant == tenant;
            let expected = counts(records.values(), in_tenant);
            let named = self
                .store()
                .stats(&TenantScope::All, Some(tenant), now)
                .await;
            let scoped = self
                .store()
                .stats(&TenantScope::only([tenant]), None, now)
                .await;
            prop_assert_eq!(named.map_err(failure)?.by_state.by_state, expected);
            prop_assert_eq!(scoped.map_err(failure)?.by_state.by_state, expected);
        }
        Ok(())
    }
}

fn counts<'a>(
    records: impl Iterator<Item = &'a JobRecord>,
    selected: impl Fn(&JobRecord) -> bool,
) -> Counts {
    let mut counts = Counts::default();
    for record in records.filter(|record| selected(record)) {
        counts[slot(record.state)] += 1;
    }
    counts
}

/// Runs the operations on a fresh store, checking everything after each.
fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let mut run = Run::new();
        for op in ops {
            let described = format!("{op:?}");
            run.step(op).await?;
            run.check()
                .await
                .map_err(|error| TestCaseError::fail(format!("after {described}: {error}")))?;
        }
        run.store().close().await.map_err(failure)
    })
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn any_sequence_of_calls_keeps_the_store_consistent(
        ops in prop::collection::vec(op(), 1..=40)
    ) {
        run(ops)?;
    }
}
