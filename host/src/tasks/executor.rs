//! The Wasm executor: an internal worker for every deployed handler.
//!
//! Each handler version has one loop that leases jobs of its type in its tenant through the
//! service core, as `ActivateJobs` does (worker `wasm:<type>@v<version>`), one at a time,
//! and starts an attempt for each. Attempts are bounded per handler, per tenant and globally;
//! the global bound is a FIFO semaphore, so loops of different tenants take turns and one
//! tenant's backlog delays another's new job by at most a few executions. Guest code runs on
//! the [`Lanes`], which hand CPU slices to tenants in turn. An attempt's result
//! goes through the state machine like any worker's: completion (with its follow-up jobs and
//! attempt log, atomically), or a failure that the handler's retry policy turns into a retry
//! with backoff or an incident.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::job::{AttemptLog, Job, JobId, TenantScope, now_ms};
use crate::metrics::Metrics;
use crate::runtime::{
    AttemptInput, AttemptLimits, AttemptOutcome, AttemptResult, Interrupt, InterruptReason, Runtime,
};
use crate::service::handlers::{HandlerRegistry, LoadedHandler};
use crate::service::{AttemptEnd, JobService, ServiceError};
use crate::signals::{Received, Signal, Subscription};
use crate::store::Activation;
use crate::tasks::lanes::Lanes;

/// How much longer a Wasm job's lease lasts than its attempt may run, so that the attempt is
/// stopped and its result recorded before the job could be handed out again.
const LEASE_MARGIN_MS: u64 = 2_000;
/// Pause before a handler loop asks again after its lease request failed.
const LEASE_RETRY: Duration = Duration::from_secs(1);
/// Most jobs one handler loop leases at once.
const MAX_BATCH: usize = 32;

/// Attempts running now, by job, so that cancelling a job can interrupt its attempt.
#[derive(Default)]
struct RunningAttempts {
    running: Mutex<HashMap<JobId, Arc<Interrupt>>>,
    changed: tokio::sync::Notify,
}

impl RunningAttempts {
    fn start(self: &Arc<Self>, id: JobId) -> AttemptGuard {
        let interrupt = Arc::new(Interrupt::default());
        self.lock().insert(id, interrupt.clone());
        AttemptGuard {
            attempts: self.clone(),
            id,
            interrupt,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Arc<Interrupt>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Interrupts the attempt running for a job, if there is one.
    fn interrupt(&self, id: JobId, reason: InterruptReason) {
        if let Some(interrupt) = self.lock().get(&id) {
            interrupt.trigger(reason);
        }
    }

    fn count(&self) -> usize {
        self.lock().len()
    }

    fn jobs(&self) -> Vec<JobId> {
        self.lock().keys().copied().collect()
    }

    fn interrupt_all(&self, reason: InterruptReason) {
        for interrupt in self.lock().values() {
            interrupt.trigger(reason);
        }
    }

    /// Waits until no attempt runs, or `limit` passes; true if none runs.
    async fn drained(&self, limit: Duration) -> bool {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.changed.notified();
            if self.count() == 0 {
                return true;
            }
            if tokio::time::timeout_at(until, changed).await.is_err() {
                return self.count() == 0;
            }
        }
    }
}

struct AttemptGuard {
    attempts: Arc<RunningAttempts>,
    id: JobId,
    interrupt: Arc<Interrupt>,
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        self.attempts.lock().remove(&self.id);
        self.attempts.changed.notify_waiters();
    }
}

#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    /// Attempts running at once on this server.
    pub max_attempts: usize,
    /// Attempts running at once for one tenant.
    pub max_attempts_per_tenant: usize,
    /// How long running attempts may go on after shutdown begins.
    pub shutdown_grace: Duration,
    /// Where attempt durations are recorded.
    pub metrics: Arc<Metrics>,
}

pub struct Executor {
    service: Arc<JobService>,
    runtime: Arc<Runtime>,
    registry: Arc<HandlerRegistry>,
    attempts: Arc<RunningAttempts>,
    lanes: Lanes,
    config: ExecutorConfig,
    global: Arc<Semaphore>,
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
    metrics: Arc<Metrics>,
}

impl Executor {
    pub fn new(
        service: Arc<JobService>,
        runtime: Arc<Runtime>,
        registry: Arc<HandlerRegistry>,
        lanes: Lanes,
        config: ExecutorConfig,
    ) -> Executor {
        Executor {
            service,
            runtime,
            registry,
            attempts: Arc::default(),
            lanes,
            global: Arc::new(Semaphore::new(config.max_attempts.max(1))),
            metrics: config.metrics.clone(),
            config,
            tenants: Mutex::default(),
        }
    }

    fn tenant_slots(&self, tenant: &str) -> Arc<Semaphore> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        tenants
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.max_attempts_per_tenant.max(1))))
            .clone()
    }

    /// Runs handler loops as handlers come and go, until `shutdown`; then lets running
    /// attempts finish within the grace period, interrupts the rest and hands their jobs back.
    /// Attempts of jobs `signals` announce as cancelled are interrupted.
    pub async fn run(self: Arc<Self>, signals: Subscription, mut shutdown: watch::Receiver<bool>) {
        let cancellations = tokio::spawn(interrupt_cancelled(
            self.attempts.clone(),
            self.service.clone(),
            signals,
        ));
        let mut changes = self.registry.subscribe();
        // One loop per handler version; a new version replaces its loop.
        let mut loops: HashMap<String, (u32, watch::Sender<bool>)> = HashMap::new();
        loop {
            let handlers = self.registry.snapshot();
            let current: HashMap<_, _> = handlers
                .iter()
                .map(|h| (h.record.id.clone(), h.clone()))
                .collect();
            loops.retain(|id, (version, stop)| {
                let keep = current
                    .get(id)
                    .is_some_and(|h| h.record.current().version == *version);
                if !keep {
                    let _ = stop.send(true);
                }
                keep
            });
            for (id, handler) in current {
                if loops.contains_key(&id) {
                    continue;
                }
                let (stop, stopped) = watch::channel(false);
                loops.insert(id, (handler.record.current().version, stop));
                tokio::spawn(self.clone().handler_loop(handler, stopped));
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        for (_, stop) in loops.values() {
            let _ = stop.send(true);
        }
        if !self.attempts.drained(self.config.shutdown_grace).await {
            tracing::info!(
                running = self.attempts.count(),
                "grace period over; interrupting running attempts"
            );
            self.attempts.interrupt_all(InterruptReason::Shutdown);
            self.attempts.drained(Duration::from_secs(30)).await;
        }
        cancellations.abort();
    }

    async fn handler_loop(
        self: Arc<Self>,
        handler: Arc<LoadedHandler>,
        mut stop: watch::Receiver<bool>,
    ) {
        let record = &handler.record;
        let version = record.current().clone();
        let worker = record.worker_name(version.version);
        let own_slots = Arc::new(Semaphore::new(
            version.limits.max_concurrency.max(1) as usize
        ));
        let tenant_slots = self.tenant_slots(&record.tenant);
        let activation = Activation {
            job_type: record.job_type.clone(),
            worker: worker.clone(),
            scope: TenantScope::only([record.tenant.clone()]),
            max_jobs: 1,
            timeout_ms: (version.limits.timeout_ms + LEASE_MARGIN_MS) as i64,
            wait: true,
            in_process: true,
        };
        tracing::info!(handler = %record.id, tenant = %record.tenant, job_type = %record.job_type, version = version.version, "executor serving handler");
        loop {
            let batch = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                batch = self.lease_batch(&own_slots, activation.clone()) => batch,
            };
            let (mut own, jobs) = match batch {
                Ok(batch) => batch,
                // Shutdown ends the loop through `stop`; anything else (a store out of reach
                // for a while) is retried after a pause.
                Err(error) => {
                    tracing::warn!(handler = %record.id, %error, "cannot lease jobs; retrying");
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => return,
                        () = tokio::time::sleep(LEASE_RETRY) => continue,
                    }
                }
            };
            // A loop parked in a long poll can be handed jobs after its version was replaced
            // or removed; those go back at once to whatever serves the type now.
            if self.registry.current_version(&record.id) != Some(version.version) {
                let leases = jobs
                    .iter()
                    .map(|job| (job.record.id, job.record.lease))
                    .collect();
                let _ = self.service.hand_back(leases).await;
                return;
            }
            let mut jobs = jobs.into_iter();
            while let Some(job) = jobs.next() {
                let Some(own) = own.split(1) else { break };
                let turn = tokio::select! {
                    _ = stop.wait_for(|s| *s) => None,
                    turn = take_turn(&tenant_slots, &self.global) => turn,
                };
                let Some((tenant, global)) = turn else {
                    // Stopped while waiting for a turn: the jobs go back at once.
                    let leases = std::iter::once(job)
                        .chain(jobs)
                        .map(|job| (job.record.id, job.record.lease))
                        .collect();
                    let _ = self.service.hand_back(leases).await;
                    return;
                };
                let executor = self.clone();
                let handler = handler.clone();
                let worker = worker.clone();
                tokio::spawn(async move {
                    executor.attempt(&handler, job, &worker).await;
                    drop((own, tenant, global));
                });
            }
        }
    }

    /// Takes at least one of the handler's slots (more if the server has room to run them)
    /// and leases as many jobs as slots were taken.
    async fn lease_batch(
        &self,
        own_slots: &Arc<Semaphore>,
        mut activation: Activation,
    ) -> Result<(OwnedSemaphorePermit, Vec<Job>), ServiceError> {
        let mut own = own_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        // When the server is busy only one job is leased at a time, so that a loop never
        // holds many leased jobs while other tenants wait for their turn.
        let extra = own_slots
            .available_permits()
            .min(self.global.available_permits())
            .min(MAX_BATCH - 1);
        if extra > 0
            && let Ok(more) = own_slots.clone().try_acquire_many_owned(extra as u32)
        {
            own.merge(more);
        }
        activation.max_jobs = own.num_permits();
        let jobs = self.service.lease_for_attempts(activation).await?;
        Ok((own, jobs))
    }

    async fn attempt(&self, handler: &LoadedHandler, job: Job, worker: &str) {
        let record = &job.record;
        let version = handler.record.current();
        let guard = self.attempts.start(record.id);
        let now = now_ms();
        // Normally the whole timeout; less only if the job waited long for a free slot.
        let before_lease_ends = (record.deadline - now - LEASE_MARGIN_MS as i64 / 2).max(1) as u64;
        let timeout = Duration::from_millis(before_lease_ends.min(version.limits.timeout_ms));
        let input = AttemptInput {
            key: record.id.to_string(),
            job_type: record.job_type.clone(),
            tenant_id: record.tenant.clone(),
            retries: record.retries,
            // Leases handed back unused do not count: this is the attempt number of the job.
            attempt: record.failures + 1,
            variables: job.payload.variables.clone(),
            custom_headers: job.payload.custom_headers.clone().into_iter().collect(),
            deadline_ms: now + timeout.as_millis() as i64,
        };
        let limits = AttemptLimits {
            memory_mb: version.limits.memory_mb,
            timeout,
            fuel: version.limits.fuel,
        };
        let started = std::time::Instant::now();
        let failed = |reason: String| AttemptResult {
            outcome: AttemptOutcome::Failed {
                reason,
                retryable: true,
                backoff_ms: None,
            },
            output: String::new(),
            duration: started.elapsed(),
        };
        let result = match self
            .service
            .capabilities_for(&record.tenant, &record.job_type, &version.grants)
            .await
        {
            Ok(capabilities) => {
                let runtime = self.runtime.clone();
                let compiled = handler.compiled.clone();
                let interrupt = guard.interrupt.clone();
                let run = async move {
                    runtime
                        .run(&compiled, &input, limits, capabilities, interrupt)
                        .await
                };
                // The lanes outlive every attempt of their executor, so no answer means the
                // attempt panicked in the host: a failure like any other, retried by the
                // handler's policy.
                self.lanes
                    .run(&record.tenant, run)
                    .await
                    .unwrap_or_else(|| failed("the host failed while running the attempt".into()))
            }
            Err(error) => failed(format!("cannot read the handler's secrets: {error}")),
        };
        self.metrics.observe_attempt(
            &record.job_type,
            &record.tenant,
            result.duration.as_secs_f64(),
        );
        let log = AttemptLog {
            attempt: record.lease,
            worker: worker.to_string(),
            handler_version: version.version,
            started_at: now,
            duration_us: result.duration.as_micros() as u64,
            outcome: String::new(),
            output: result.output,
        };
        let end = match result.outcome {
            AttemptOutcome::Interrupted(InterruptReason::Shutdown) => {
                let lease = vec![(record.id, record.lease)];
                if let Err(error) = self.service.hand_back(lease).await {
                    tracing::warn!(job = record.id, %error, "could not hand back an interrupted job");
                }
                return;
            }
            AttemptOutcome::Interrupted(InterruptReason::Cancelled) => {
                tracing::info!(
                    job = record.id,
                    "attempt interrupted: the job was cancelled"
                );
                return;
            }
            AttemptOutcome::Completed {
                variables,
                follow_ups,
                status,
            } => AttemptEnd::Completed {
                variables,
                status,
                follow_ups,
            },
            AttemptOutcome::Failed {
                reason,
                retryable,
                backoff_ms,
            } => AttemptEnd::Failed {
                reason,
                retryable,
                backoff_ms,
            },
        };
        let concluded = self
            .service
            .conclude_attempt(&job, &version.retry, end, log)
            .await;
        if let Err(error) = concluded {
            tracing::warn!(job = record.id, tenant = %record.tenant, job_type = %record.job_type, %error, "attempt result not applied");
        }
        drop(guard);
    }
}

/// Interrupts the attempt of every job announced as cancelled. After missed signals it asks
/// the store which of the running attempts' jobs are cancelled.
async fn interrupt_cancelled(
    attempts: Arc<RunningAttempts>,
    service: Arc<JobService>,
    mut signals: Subscription,
) {
    while let Some(received) = signals.recv().await {
        match received {
            Received::Signal(Signal::JobCancelled(id)) => {
                attempts.interrupt(id, InterruptReason::Cancelled);
            }
            Received::Signal(_) => {}
            Received::Missed => {
                for id in attempts.jobs() {
                    if service.is_cancelled(id).await.unwrap_or(false) {
                        attempts.interrupt(id, InterruptReason::Cancelled);
                    }
                }
            }
        }
    }
}

/// Waits for a tenant slot, then a global one (a FIFO queue shared by every handler loop,
/// which is what makes tenants take turns).
async fn take_turn(
    tenant: &Arc<Semaphore>,
    global: &Arc<Semaphore>,
) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
    let tenant = tenant.clone().acquire_owned().await.ok()?;
    let global = global.clone().acquire_owned().await.ok()?;
    Some((tenant, global))
}
