//! The trigger scheduler: sleeps until the earliest trigger is due, then asks the service core
//! to fire everything due.
//!
//! It keeps a due-time index of the active triggers (rebuilt from the store at start-up and
//! kept current by re-reading each trigger a [`Signal::TriggerChanged`] names), so it wakes only when a fire is due or
//! a trigger changes: idle triggers cost nothing. The store decides each fire against the
//! trigger's stored cursor, so a stale entry here can at worst cause a fire request that does
//! nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::job::EpochMs;
use crate::service::{JobService, ServiceError};
use crate::signals::{Received, Signal, Subscription};
use crate::store::DueFire;
use crate::trigger::{TriggerId, TriggerRecord};

/// Most triggers fired in one store request, so one request (with up to this many times the
/// catch-up limit of jobs) never holds the store's writer for long.
const MAX_FIRES_PER_REQUEST: usize = 64;
/// Store requests in one round at most; what is left is fired in the next round.
const MAX_REQUESTS_PER_ROUND: usize = 1_000;
/// Pause before retrying after the store failed to fire.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Counts kept for tests and metrics.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    /// Times the scheduler woke, for any reason (a due fire or a trigger change).
    pub wakeups: AtomicU64,
    /// Times the scheduler woke because a fire was due.
    pub rounds: AtomicU64,
    /// Jobs created by fires.
    pub jobs_created: AtomicU64,
}

pub struct TriggerScheduler {
    service: Arc<JobService>,
    clock: Arc<dyn Clock>,
    changes: Subscription,
    stats: Arc<SchedulerStats>,
    index: DueIndex,
}

impl TriggerScheduler {
    pub async fn new(
        service: Arc<JobService>,
        clock: Arc<dyn Clock>,
        changes: Subscription,
        stats: Arc<SchedulerStats>,
    ) -> Result<TriggerScheduler, ServiceError> {
        let index = DueIndex::of(service.all_triggers().await?);
        Ok(TriggerScheduler {
            service,
            clock,
            changes,
            stats,
            index,
        })
    }

    /// Runs until `stopping` turns true.
    pub async fn run(mut self, mut stopping: watch::Receiver<bool>) {
        loop {
            let next_due = self.index.first();
            let clock = self.clock.clone();
            let due = async move {
                match next_due {
                    Some(at) => clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = stopped(&mut stopping) => return,
                change = self.changes.recv() => {
                    match change {
                        Some(Received::Signal(Signal::TriggerChanged(id))) => {
                            self.stats.wakeups.fetch_add(1, Ordering::Relaxed);
                            self.reread(id).await;
                        }
                        // Signals about other things are not the scheduler's wake-ups.
                        Some(Received::Signal(_)) => {}
                        Some(Received::Missed) => {
                            self.stats.wakeups.fetch_add(1, Ordering::Relaxed);
                            self.reread_all().await;
                        }
                        None => return,
                    }
                }
                () = due => {
                    self.stats.wakeups.fetch_add(1, Ordering::Relaxed);
                    self.stats.rounds.fetch_add(1, Ordering::Relaxed);
                    if let Err(error) = self.fire_due().await {
                        if *stopping.borrow() {
                            return;
                        }
                        tracing::error!(%error, "firing triggers failed; retrying");
                        tokio::select! {
                            () = stopped(&mut stopping) => return,
                            () = tokio::time::sleep(RETRY_AFTER) => {}
                        }
                    }
                }
            }
        }
    }

    /// Brings one trigger's entry up to date with the store.
    async fn reread(&mut self, id: TriggerId) {
        match self.service.trigger_now(id).await {
            Ok(Some(trigger)) => self.index.put(&trigger),
            Ok(None) => self.index.remove(id),
            // The old entry stays: at worst it asks for a fire the store then refuses.
            Err(error) => tracing::error!(%error, trigger = id, "cannot read a changed trigger"),
        }
    }

    /// Rebuilds the index from the store, after changes were missed. Until the store answers,
    /// the old index stays: at worst it asks for fires the store then refuses.
    async fn reread_all(&mut self) {
        match self.service.all_triggers().await {
            Ok(triggers) => self.index = DueIndex::of(triggers),
            Err(error) => tracing::error!(%error, "cannot reread the triggers"),
        }
    }

    /// Fires everything due as of the moment the scheduler woke: one moment for all the
    /// requests of the round, so that triggers fired in a later request are not judged late.
    async fn fire_due(&mut self) -> Result<(), ServiceError> {
        let now = self.clock.now();
        // Bounded, so that a store answering with cursors that do not move cannot spin here.
        for _ in 0..MAX_REQUESTS_PER_ROUND {
            let due = self.index.due(now, MAX_FIRES_PER_REQUEST);
            if due.is_empty() {
                break;
            }
            self.fire(due, now).await?;
        }
        Ok(())
    }

    async fn fire(&mut self, due: Vec<DueFire>, now: EpochMs) -> Result<(), ServiceError> {
        let results = self.service.fire_triggers(due, now).await?;
        for (id, trigger) in results {
            match trigger {
                Some(trigger) => {
                    let before = self.index.fired(id);
                    if trigger.fired > before {
                        self.stats
                            .jobs_created
                            .fetch_add(trigger.fired - before, Ordering::Relaxed);
                        tracing::debug!(
                            trigger = id,
                            tenant = %trigger.tenant,
                            job_type = %trigger.job_type,
                            job = ?trigger.last_job,
                            "trigger fired"
                        );
                    }
                    self.index.put(&trigger);
                }
                None => self.index.remove(id),
            }
        }
        Ok(())
    }
}

async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Active triggers by next fire time.
#[derive(Default)]
struct DueIndex {
    by_time: BTreeSet<(EpochMs, TriggerId)>,
    /// Per trigger: its entry in `by_time` (if active), the revision it came from, and how
    /// many jobs it had created.
    entries: HashMap<TriggerId, (Option<EpochMs>, u64, u64)>,
}

impl DueIndex {
    fn of(triggers: impl IntoIterator<Item = TriggerRecord>) -> DueIndex {
        let mut index = DueIndex::default();
        for trigger in triggers {
            index.put(&trigger);
        }
        index
    }

    /// Indexes a trigger as stored, unless an entry from a newer revision is already here.
    fn put(&mut self, trigger: &TriggerRecord) {
        if let Some((_, revision, _)) = self.entries.get(&trigger.id)
            && *revision > trigger.revision
        {
            return;
        }
        self.remove(trigger.id);
        let next = trigger.next_fire.filter(|_| trigger.enabled);
        if let Some(at) = next {
            self.by_time.insert((at, trigger.id));
        }
        self.entries
            .insert(trigger.id, (next, trigger.revision, trigger.fired));
    }

    fn remove(&mut self, id: TriggerId) {
        if let Some((Some(at), _, _)) = self.entries.remove(&id) {
            self.by_time.remove(&(at, id));
        }
    }

    fn first(&self) -> Option<EpochMs> {
        self.by_time.first().map(|(at, _)| *at)
    }

    fn fired(&self, id: TriggerId) -> u64 {
        self.entries.get(&id).map_or(0, |(_, _, fired)| *fired)
    }

    fn due(&self, now: EpochMs, limit: usize) -> Vec<DueFire> {
        self.by_time
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .map(|(at, id)| DueFire {
                trigger: *id,
                next_fire: *at,
            })
            .collect()
    }
}
