//! The single writer of the sled store, and its flusher.
//!
//! All job changes go through one thread that owns the in-memory indexes: the open jobs, the
//! ready sets per type and tenant, the due-time timers and the waiting activations. It takes
//! every command that is queued (up to [`MAX_GROUP`]), applies their transitions to memory and
//! to one sled batch, fires due timers, hands newly ready jobs to waiting activations, and
//! applies the batch atomically. The flusher thread then makes the batch durable with one
//! `flush` shared by everything that arrived meanwhile (group commit), and only then answers
//! the callers. Being the only writer makes lease exclusivity a plain fact, not a race.
//!
//! Only open jobs (pending, activatable, activated) are held in memory; they are rebuilt from
//! the records at start-up, so the indexes cost no writes. Triggers are held in memory too, so
//! their names are checked for uniqueness and their fires are decided here, in the same batch
//! as the jobs they create.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::oneshot;

use super::codec::{
    self, ATTEMPT_PREFIX, ID_RESERVATION_KEY, KV_PREFIX, NEXT_TRIGGER_ID_KEY, PROCESS_PREFIX,
    RECORD_PREFIX, TRIGGER_PREFIX, attempt_key, idempotency_of_key, payload_key, record_key,
    trigger_key,
};
use super::snapshot::{BatchKeys, Snapshots};
use crate::job::state::{self, Event};
use crate::job::{EpochMs, JobId, JobRecord, JobState, NewJob, TenantScope, now_ms};
use crate::kv::{self, KvKey, KvLimits, KvOp, KvOutcome, KvUsage};
use crate::metrics::{Metrics, Transition};
use crate::store::index::{IndexedJob, JobIndex};
use crate::store::{
    Activation, ApplyError, DueFire, Extras, KvWriteError, StoreError, TriggerError,
};
use crate::trigger::plan::plan;
use crate::trigger::{TriggerId, TriggerRecord};

/// Most commands taken into one group commit.
const MAX_GROUP: usize = 4096;
/// Job ids are reserved durably this many at a time, so creating a job writes no counter.
const ID_BLOCK: JobId = 1 << 20;

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;
pub(super) type TriggerReply = oneshot::Sender<Result<TriggerRecord, TriggerError>>;
pub(super) type Fired = Vec<(TriggerId, Option<TriggerRecord>)>;

pub(super) enum Command {
    Create {
        jobs: Vec<NewJob>,
        reply: Reply<Vec<JobId>>,
    },
    Activate {
        request: Activation,
        reply: Reply<Vec<JobRecord>>,
    },
    Apply {
        id: JobId,
        scope: TenantScope,
        event: Event,
        extras: Extras,
        reply: oneshot::Sender<Result<JobRecord, ApplyError>>,
    },
    Release {
        leases: Vec<(JobId, u32)>,
        reply: Option<Reply<()>>,
    },
    CreateTrigger {
        trigger: Box<TriggerRecord>,
        reply: TriggerReply,
    },
    ReplaceTrigger {
        trigger: Box<TriggerRecord>,
        expected_revision: u64,
        reply: TriggerReply,
    },
    DeleteTrigger {
        id: TriggerId,
        scope: TenantScope,
        reply: TriggerReply,
    },
    FireTriggers {
        due: Vec<DueFire>,
        /// The scheduler's time, which decides what is due and what is late.
        as_of: EpochMs,
        reply: Reply<Fired>,
    },
    KvWrite {
        key: KvKey,
        op: KvOp,
        limits: KvLimits,
        reply: KvReply,
    },
    Purge {
        /// Jobs with the finish time they were found expired with.
        jobs: Vec<(JobId, EpochMs)>,
        reply: Reply<usize>,
    },
    Close {
        reply: Reply<()>,
    },
}

pub(super) type KvReply = oneshot::Sender<Result<KvOutcome, KvWriteError>>;

/// An answer held back until the changes it observed are durable.
enum Answer {
    Created(Reply<Vec<JobId>>, Vec<JobId>),
    Activated(Reply<Vec<JobRecord>>, Vec<JobRecord>),
    Applied(
        oneshot::Sender<Result<JobRecord, ApplyError>>,
        Result<JobRecord, ApplyError>,
    ),
    Done(Reply<()>),
    Trigger(TriggerReply, Result<TriggerRecord, TriggerError>),
    Fired(Reply<Fired>, Fired),
    Kv(KvReply, Result<KvOutcome, KvWriteError>),
    Purged(Reply<usize>, usize),
}

impl Answer {
    /// Sends the answer; returns the leases of activated jobs whose caller has gone.
    fn deliver(self) -> Vec<(JobId, u32)> {
        match self {
            Answer::Created(reply, ids) => {
                let _ = reply.send(Ok(ids));
            }
            Answer::Activated(reply, jobs) => {
                if let Err(Ok(jobs)) = reply.send(Ok(jobs)) {
                    return jobs.iter().map(|job| (job.id, job.lease)).collect();
                }
            }
            Answer::Applied(reply, result) => {
                let _ = reply.send(result);
            }
            Answer::Done(reply) => {
                let _ = reply.send(Ok(()));
            }
            Answer::Trigger(reply, result) => {
                let _ = reply.send(result);
            }
            Answer::Fired(reply, fired) => {
                let _ = reply.send(Ok(fired));
            }
            Answer::Kv(reply, result) => {
                let _ = reply.send(result);
            }
            Answer::Purged(reply, count) => {
                let _ = reply.send(Ok(count));
            }
        }
        Vec::new()
    }

    fn fail(self, error: StoreError) {
        match self {
            Answer::Created(reply, _) => drop(reply.send(Err(error))),
            Answer::Activated(reply, _) => drop(reply.send(Err(error))),
            Answer::Applied(reply, _) => drop(reply.send(Err(error.into()))),
            Answer::Done(reply) => drop(reply.send(Err(error))),
            Answer::Trigger(reply, _) => drop(reply.send(Err(error.into()))),
            Answer::Fired(reply, _) => drop(reply.send(Err(error))),
            Answer::Kv(reply, _) => drop(reply.send(Err(error.into()))),
            Answer::Purged(reply, _) => drop(reply.send(Err(error))),
        }
    }
}

/// The answers of one applied batch, for the flusher.
pub(super) struct Group {
    wrote: bool,
    answers: Vec<Answer>,
}

struct Waiter {
    request: Activation,
    reply: Reply<Vec<JobRecord>>,
}

/// Ready jobs of one type, per tenant, best first: highest priority, then oldest.
type ReadyByTenant = HashMap<String, BTreeSet<(Reverse<i32>, JobId)>>;

/// Set once a write or flush failed: memory and disk may disagree, so nothing more is accepted.
pub(super) type Poison = Arc<Mutex<Option<StoreError>>>;

pub(super) struct Writer {
    tree: sled::Tree,
    open: HashMap<JobId, JobRecord>,
    /// Records closed by this group, readable until the batch is applied.
    closed_in_group: HashMap<JobId, JobRecord>,
    ready: HashMap<String, ReadyByTenant>,
    timers: BTreeSet<(EpochMs, JobId)>,
    waiters: HashMap<String, VecDeque<Waiter>>,
    next_id: JobId,
    reserved_until: JobId,
    triggers: HashMap<TriggerId, TriggerRecord>,
    /// Trigger ids by tenant and name.
    trigger_names: HashMap<(String, String), TriggerId>,
    next_trigger_id: TriggerId,
    batch: sled::Batch,
    writes: usize,
    /// The keys `batch` writes, and the snapshots that may need their old values.
    batch_keys: BatchKeys,
    snapshots: Arc<Snapshots>,
    /// The listing indexes, and this group's changes to them (applied once the batch is).
    index: Arc<RwLock<JobIndex>>,
    index_changes: Vec<IndexedJob>,
    process_changes: Vec<(JobId, String, String)>,
    metrics: Arc<Metrics>,
    /// When each activatable job became so, for the activation latency.
    ready_since: HashMap<JobId, EpochMs>,
    /// Jobs whose lease expired in this group.
    timed_out: HashSet<JobId>,
    newly_ready: Vec<String>,
    answers: Vec<Answer>,
    poison: Poison,
    /// Keys and bytes each tenant's key-value buckets hold.
    kv_usage: HashMap<String, KvUsage>,
    /// Key-value entries this group wrote (`None`: deleted), readable until the batch is
    /// applied.
    kv_in_group: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Idempotency keys this group wrote, readable until the batch is applied.
    idempotency_in_group: HashMap<Vec<u8>, JobId>,
    /// Jobs this group deleted, gone for later commands though still in the tree until the
    /// batch is applied; with their workflow names, for the index.
    purged_in_group: HashMap<JobId, Option<(String, String)>>,
    /// Jobs leased for an attempt in this process, whose lease is held in memory only.
    leased_in_memory: HashSet<JobId>,
    /// This group's changes to the records readers see in place of the stored ones (`None`:
    /// the stored record is current again), applied with the batch.
    memory_changes: HashMap<JobId, Option<JobRecord>>,
    /// What readers see: the records of leases held in memory only.
    memory_records: MemoryRecords,
    /// Answers to activations for attempts in this process, given as soon as the group is
    /// applied: their leases are not written, so there is nothing to wait for.
    early_answers: Vec<Answer>,
    /// Leases of early answers whose caller had gone, handed back in the next group.
    to_release: Vec<(JobId, u32)>,
}

/// Records newer than the stored ones, held in memory only: the leases of attempts in this
/// process, which end with it.
pub(super) type MemoryRecords = Arc<RwLock<HashMap<JobId, JobRecord>>>;

impl Writer {
    /// Rebuilds the in-memory indexes from the stored records.
    pub(super) fn recover(
        tree: sled::Tree,
        poison: Poison,
        index: Arc<RwLock<JobIndex>>,
        metrics: Arc<Metrics>,
        snapshots: Arc<Snapshots>,
        memory_records: MemoryRecords,
    ) -> Result<Writer, StoreError> {
        let reserved_until = match tree.get(ID_RESERVATION_KEY).map_err(codec::io)? {
            Some(bytes) => u64::from_be_bytes(
                bytes
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("job id reservation".into()))?,
            ),
            None => 0,
        };
        let next_trigger_id = match tree.get(NEXT_TRIGGER_ID_KEY).map_err(codec::io)? {
            Some(bytes) => u64::from_be_bytes(
                bytes
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("next trigger id".into()))?,
            ),
            None => 1,
        };
        let mut writer = Writer {
            tree: tree.clone(),
            open: HashMap::new(),
            closed_in_group: HashMap::new(),
            ready: HashMap::new(),
            timers: BTreeSet::new(),
            waiters: HashMap::new(),
            next_id: reserved_until.max(1),
            reserved_until,
            triggers: HashMap::new(),
            trigger_names: HashMap::new(),
            next_trigger_id,
            batch: sled::Batch::default(),
            writes: 0,
            batch_keys: BatchKeys::default(),
            snapshots,
            index: index.clone(),
            index_changes: Vec::new(),
            process_changes: Vec::new(),
            metrics,
            purged_in_group: HashMap::new(),
            ready_since: HashMap::new(),
            timed_out: HashSet::new(),
            newly_ready: Vec::new(),
            answers: Vec::new(),
            poison,
            kv_usage: HashMap::new(),
            kv_in_group: HashMap::new(),
            idempotency_in_group: HashMap::new(),
            leased_in_memory: HashSet::new(),
            memory_changes: HashMap::new(),
            memory_records,
            early_answers: Vec::new(),
            to_release: Vec::new(),
        };
        let mut rebuilt = JobIndex::default();
        for entry in tree.scan_prefix([RECORD_PREFIX]) {
            let (_, bytes) = entry.map_err(codec::io)?;
            let record: JobRecord = codec::decode(&bytes)?;
            rebuilt.put(&IndexedJob::from(&record));
            writer.next_id = writer.next_id.max(record.id + 1);
            if record.state.is_open() {
                writer.index(&record);
                writer.open.insert(record.id, record);
            }
        }
        for entry in tree.scan_prefix([PROCESS_PREFIX]) {
            let (key, bytes) = entry.map_err(codec::io)?;
            let id = codec::id_of(&key)?;
            let (instance, element): (String, String) = codec::decode(&bytes)?;
            rebuilt.put_process(id, &instance, &element);
        }
        *index
            .write()
            .map_err(|_| StoreError::Corrupt("job index lock".into()))? = rebuilt;
        for entry in tree.scan_prefix([TRIGGER_PREFIX]) {
            let (_, bytes) = entry.map_err(codec::io)?;
            let trigger = codec::decode_trigger(&bytes)?;
            writer.next_trigger_id = writer.next_trigger_id.max(trigger.id + 1);
            writer
                .trigger_names
                .insert((trigger.tenant.clone(), trigger.name.clone()), trigger.id);
            writer.triggers.insert(trigger.id, trigger);
        }
        for entry in tree.scan_prefix([KV_PREFIX]) {
            let (key, value) = entry.map_err(codec::io)?;
            let (tenant, _, name) = codec::kv_parts(&key)?;
            let usage = writer.kv_usage.entry(tenant.to_string()).or_default();
            usage.keys += 1;
            usage.bytes += (name.len() + value.len()) as u64;
        }
        writer.newly_ready.clear();
        Ok(writer)
    }

    pub(super) fn run(mut self, commands: Receiver<Command>, flusher: Sender<Group>) {
        loop {
            let first = if !self.to_release.is_empty() {
                commands.try_recv().ok()
            } else {
                match self.until_next_timer() {
                    Some(wait) => match commands.recv_timeout(wait) {
                        Ok(command) => Some(command),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => return,
                    },
                    None => match commands.recv() {
                        Ok(command) => Some(command),
                        Err(_) => return,
                    },
                }
            };
            let now = now_ms();
            if !self.to_release.is_empty() {
                let leases = std::mem::take(&mut self.to_release);
                self.handle(
                    Command::Release {
                        leases,
                        reply: None,
                    },
                    now,
                );
            }
            let mut closing = None;
            let queued = std::iter::from_fn(|| commands.try_recv().ok());
            for command in first.into_iter().chain(queued).take(MAX_GROUP) {
                if let Command::Close { reply } = command {
                    closing = Some(reply);
                    break;
                }
                self.handle(command, now);
            }
            self.fire_timers(now);
            self.serve_waiters(now);
            let group = self.commit();
            if flusher.send(group).is_err() {
                return;
            }
            if let Some(reply) = closing {
                self.waiters.clear();
                let last = Group {
                    wrote: true,
                    answers: vec![Answer::Done(reply)],
                };
                let _ = flusher.send(last);
                return;
            }
        }
    }

    fn until_next_timer(&self) -> Option<Duration> {
        let (due, _) = self.timers.first()?;
        Some(Duration::from_millis((due - now_ms()).max(0) as u64))
    }

    fn poisoned(&self) -> Option<StoreError> {
        self.poison.lock().ok().and_then(|p| p.clone())
    }

    fn handle(&mut self, command: Command, now: EpochMs) {
        if let Some(error) = self.poisoned() {
            match command {
                Command::Create { reply, .. } => drop(reply.send(Err(error))),
                Command::Activate { reply, .. } => drop(reply.send(Err(error))),
                Command::Apply { reply, .. } => drop(reply.send(Err(error.into()))),
                Command::Release { reply, .. } => drop(reply.map(|r| r.send(Err(error)))),
                Command::CreateTrigger { reply, .. }
                | Command::ReplaceTrigger { reply, .. }
                | Command::DeleteTrigger { reply, .. } => drop(reply.send(Err(error.into()))),
                Command::FireTriggers { reply, .. } => drop(reply.send(Err(error))),
                Command::KvWrite { reply, .. } => drop(reply.send(Err(error.into()))),
                Command::Purge { reply, .. } => drop(reply.send(Err(error))),
                Command::Close { reply } => drop(reply.send(Err(error))),
            }
            return;
        }
        match command {
            Command::Create { jobs, reply } => {
                let ids = jobs.into_iter().map(|job| self.create(job, now)).collect();
                self.answers.push(Answer::Created(reply, ids));
            }
            Command::Activate { request, reply } => {
                let jobs = self.take_ready(&request, now);
                if jobs.is_empty() && request.wait {
                    self.park(Waiter { request, reply });
                } else {
                    self.answer_activation(&request, reply, jobs);
                }
            }
            Command::Apply {
                id,
                scope,
                event,
                extras,
                reply,
            } => {
                let result = self.apply(id, &scope, event, now);
                if let Ok(record) = &result {
                    self.write_extras(record, extras, now);
                }
                self.answers.push(Answer::Applied(reply, result));
            }
            Command::Release { leases, reply } => {
                for (id, lease) in leases {
                    let _ = self.apply(id, &TenantScope::All, Event::ReleaseLease { lease }, now);
                }
                if let Some(reply) = reply {
                    self.answers.push(Answer::Done(reply));
                }
            }
            Command::CreateTrigger { trigger, reply } => {
                let result = self.create_trigger(*trigger);
                self.answers.push(Answer::Trigger(reply, result));
            }
            Command::ReplaceTrigger {
                trigger,
                expected_revision,
                reply,
            } => {
                let result = self.replace_trigger(*trigger, expected_revision);
                self.answers.push(Answer::Trigger(reply, result));
            }
            Command::DeleteTrigger { id, scope, reply } => {
                let result = self.delete_trigger(id, &scope);
                self.answers.push(Answer::Trigger(reply, result));
            }
            Command::FireTriggers { due, as_of, reply } => {
                let fired = due
                    .into_iter()
                    .map(|fire| (fire.trigger, self.fire_trigger(fire, as_of, now)))
                    .collect();
                self.answers.push(Answer::Fired(reply, fired));
            }
            Command::KvWrite {
                key,
                op,
                limits,
                reply,
            } => {
                let result = self.kv_write(&key, op, &limits);
                self.answers.push(Answer::Kv(reply, result));
            }
            Command::Purge { jobs, reply } => {
                let mut purged = 0;
                for (id, finished_at) in jobs {
                    match self.purge(id, finished_at) {
                        Ok(true) => purged += 1,
                        Ok(false) => {}
                        Err(error) => {
                            tracing::warn!(job = id, %error, "cannot delete an expired job");
                        }
                    }
                }
                self.answers.push(Answer::Purged(reply, purged));
            }
            Command::Close { .. } => unreachable!("handled by the loop"),
        }
    }

    /// The job created under an idempotency key, in this group or before.
    fn created_under(&self, stored: &[u8]) -> Result<Option<JobId>, StoreError> {
        if let Some(id) = self.idempotency_in_group.get(stored) {
            return Ok(Some(*id));
        }
        match self.tree.get(stored).map_err(codec::io)? {
            Some(bytes) => Ok(Some(JobId::from_be_bytes(
                bytes
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("malformed idempotency entry".into()))?,
            ))),
            None => Ok(None),
        }
    }

    /// Decides a key-value write against the entry's value as of this group, within the
    /// tenant's quota, and adds it to the batch.
    fn kv_write(
        &mut self,
        key: &KvKey,
        op: KvOp,
        limits: &KvLimits,
    ) -> Result<KvOutcome, KvWriteError> {
        let stored = codec::kv_key(&key.tenant, &key.bucket, &key.key);
        let current = match self.kv_in_group.get(&stored) {
            Some(value) => value.clone(),
            None => self
                .tree
                .get(&stored)
                .map_err(codec::io)?
                .map(|v| v.to_vec()),
        };
        let (new, outcome) = kv::decide(&key.key, op, current.as_deref())?;
        if new == current {
            return Ok(outcome);
        }
        let usage = self.kv_usage.get(&key.tenant).copied().unwrap_or_default();
        let usage = kv::check_quota(usage, &key.key, current.as_deref(), new.as_deref(), limits)?;
        match &new {
            Some(value) => self.write(&stored, value.as_slice()),
            None => {
                self.batch_keys.push(&stored);
                self.batch.remove(stored.as_slice());
                self.writes += 1;
            }
        }
        self.kv_usage.insert(key.tenant.clone(), usage);
        self.kv_in_group.insert(stored, new);
        Ok(outcome)
    }

    fn create_trigger(
        &mut self,
        mut trigger: TriggerRecord,
    ) -> Result<TriggerRecord, TriggerError> {
        let name = (trigger.tenant.clone(), trigger.name.clone());
        if self.trigger_names.contains_key(&name) {
            return Err(TriggerError::NameTaken {
                tenant: name.0,
                name: name.1,
            });
        }
        trigger.id = self.next_trigger_id;
        trigger.revision = 1;
        self.next_trigger_id += 1;
        let next_trigger_id = self.next_trigger_id.to_be_bytes();
        self.write(NEXT_TRIGGER_ID_KEY, &next_trigger_id);
        self.trigger_names.insert(name, trigger.id);
        self.put_trigger(trigger.clone());
        Ok(trigger)
    }

    fn replace_trigger(
        &mut self,
        mut trigger: TriggerRecord,
        expected_revision: u64,
    ) -> Result<TriggerRecord, TriggerError> {
        let current = self
            .triggers
            .get(&trigger.id)
            .ok_or(TriggerError::NotFound(trigger.id))?;
        if current.revision != expected_revision {
            return Err(TriggerError::Conflict(trigger.id));
        }
        let old_name = (current.tenant.clone(), current.name.clone());
        let new_name = (trigger.tenant.clone(), trigger.name.clone());
        if new_name != old_name {
            if self.trigger_names.contains_key(&new_name) {
                return Err(TriggerError::NameTaken {
                    tenant: new_name.0,
                    name: new_name.1,
                });
            }
            self.trigger_names.remove(&old_name);
            self.trigger_names.insert(new_name, trigger.id);
        }
        trigger.revision = expected_revision + 1;
        self.put_trigger(trigger.clone());
        Ok(trigger)
    }

    fn delete_trigger(
        &mut self,
        id: TriggerId,
        scope: &TenantScope,
    ) -> Result<TriggerRecord, TriggerError> {
        match self.triggers.get(&id) {
            Some(trigger) if scope.contains(&trigger.tenant) => {}
            _ => return Err(TriggerError::NotFound(id)),
        }
        let trigger = self
            .triggers
            .remove(&id)
            .ok_or(TriggerError::NotFound(id))?;
        self.trigger_names
            .remove(&(trigger.tenant.clone(), trigger.name.clone()));
        self.batch_keys.push(&trigger_key(id));
        self.batch.remove(&trigger_key(id));
        self.writes += 1;
        Ok(trigger)
    }

    /// Fires one trigger if its cursor is still `fire.next_fire`: its jobs and its advanced
    /// cursor go into the same batch.
    fn fire_trigger(
        &mut self,
        fire: DueFire,
        as_of: EpochMs,
        now: EpochMs,
    ) -> Option<TriggerRecord> {
        let trigger = self.triggers.get(&fire.trigger)?;
        if !trigger.enabled || trigger.next_fire != Some(fire.next_fire) {
            return Some(trigger.clone());
        }
        let mut trigger = trigger.clone();
        let schedule = match trigger.schedule.compile() {
            Ok(schedule) => schedule,
            Err(error) => {
                // Definitions are checked before they are stored, so this is a stored
                // definition that a newer parser refuses: stop it rather than loop.
                tracing::error!(trigger = trigger.id, %error, "trigger schedule no longer compiles; ending it");
                trigger.next_fire = None;
                trigger.revision += 1;
                self.put_trigger(trigger.clone());
                return Some(trigger);
            }
        };
        let previous_unfinished = trigger
            .last_job
            .is_some_and(|job| self.open.contains_key(&job));
        let plan = plan(&trigger, &schedule, as_of, previous_unfinished);
        if plan.missed > 0 {
            tracing::warn!(
                trigger = trigger.id,
                tenant = %trigger.tenant,
                name = %trigger.name,
                missed = plan.missed,
                "trigger dropped missed fires"
            );
        }
        for scheduled_at in &plan.fires {
            let job = trigger.job_for(*scheduled_at);
            let id = self.create(job, now);
            trigger.last_job = Some(id);
            trigger.last_fire = Some(*scheduled_at);
        }
        trigger.fired += plan.fires.len() as u64;
        trigger.skipped += plan.skipped;
        trigger.missed += plan.missed;
        trigger.next_fire = plan.next_fire;
        trigger.revision += 1;
        self.put_trigger(trigger.clone());
        Some(trigger)
    }

    fn put_trigger(&mut self, trigger: TriggerRecord) {
        self.write(&trigger_key(trigger.id), codec::encode_trigger(&trigger));
        self.triggers.insert(trigger.id, trigger);
    }

    fn create(&mut self, job: NewJob, now: EpochMs) -> JobId {
        let idempotency = job
            .idempotency_key
            .as_deref()
            .map(|key| codec::idempotency_key(&job.tenant, &job.job_type, key));
        if let Some(stored) = &idempotency {
            match self.created_under(stored) {
                Ok(Some(existing)) => return existing,
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(%error, "cannot read an idempotency key; creating the job")
                }
            }
        }
        if self.next_id >= self.reserved_until {
            self.reserved_until = self.next_id + ID_BLOCK;
            let reserved_until = self.reserved_until.to_be_bytes();
            self.write(ID_RESERVATION_KEY, &reserved_until);
        }
        let id = self.next_id;
        self.next_id += 1;
        let due_at = job.run_at.filter(|at| *at > now).unwrap_or(0);
        let record = JobRecord {
            id,
            tenant: job.tenant,
            job_type: job.job_type,
            state: if due_at > 0 {
                JobState::Pending
            } else {
                JobState::Activatable
            },
            priority: job.priority,
            retries: job.retries,
            original_retries: job.retries,
            created_at: now,
            due_at,
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
        };
        self.write(&payload_key(id), codec::encode(&job.payload));
        if let Some(stored) = idempotency {
            self.write(&stored, &id.to_be_bytes());
            // Found again when the job is deleted, so the key is free once the job is gone.
            self.write(&idempotency_of_key(id), stored.as_slice());
            self.idempotency_in_group.insert(stored, id);
        }
        let process = &job.payload.process;
        if !process.process_instance_key.is_empty() || !process.element_id.is_empty() {
            let names = (
                process.process_instance_key.clone(),
                process.element_id.clone(),
            );
            self.write(&codec::prefixed(PROCESS_PREFIX, id), codec::encode(&names));
            self.process_changes.push((id, names.0, names.1));
        }
        self.put(record);
        id
    }

    fn write_extras(&mut self, record: &JobRecord, extras: Extras, now: EpochMs) {
        for mut job in extras.follow_ups {
            job.tenant = record.tenant.clone();
            self.create(job, now);
        }
        if let Some(attempt) = extras.attempt {
            self.write(
                &attempt_key(record.id, attempt.attempt),
                codec::encode(&attempt),
            );
        }
    }

    fn apply(
        &mut self,
        id: JobId,
        scope: &TenantScope,
        event: Event,
        now: EpochMs,
    ) -> Result<JobRecord, ApplyError> {
        self.apply_as(id, scope, event, now, Keep::Stored)
    }

    fn apply_as(
        &mut self,
        id: JobId,
        scope: &TenantScope,
        event: Event,
        now: EpochMs,
        keep: Keep,
    ) -> Result<JobRecord, ApplyError> {
        if self.purged_in_group.contains_key(&id) {
            return Err(ApplyError::NotFound(id));
        }
        let current = match self.open.get(&id).or_else(|| self.closed_in_group.get(&id)) {
            Some(record) => record.clone(),
            None => match self.tree.get(record_key(id)).map_err(codec::io)? {
                Some(bytes) => codec::decode(&bytes)?,
                None => return Err(ApplyError::NotFound(id)),
            },
        };
        if !scope.contains(&current.tenant) {
            return Err(ApplyError::NotFound(id));
        }
        let next = state::apply(&current, event, now)?;
        self.put_as(next.clone(), keep);
        Ok(next)
    }

    /// Writes a record to the batch and moves it in the indexes.
    fn put(&mut self, record: JobRecord) {
        self.put_as(record, Keep::Stored);
    }

    /// Moves a record in the indexes, and writes it to the batch or holds it in memory.
    fn put_as(&mut self, record: JobRecord, keep: Keep) {
        let old = self.open.remove(&record.id);
        if let Some(old) = &old {
            self.unindex(old);
        }
        self.closed_in_group.remove(&record.id);
        let was_in_memory = self.leased_in_memory.remove(&record.id);
        match keep {
            Keep::Stored => {
                self.write(&record_key(record.id), codec::encode(&record));
                if was_in_memory {
                    self.memory_changes.insert(record.id, None);
                }
            }
            Keep::InMemory => {
                self.leased_in_memory.insert(record.id);
                self.memory_changes.insert(record.id, Some(record.clone()));
            }
        }
        // An open job's tenant and type are known to the index already.
        self.index_changes.push(IndexedJob {
            id: record.id,
            state: record.state,
            names: old
                .is_none()
                .then(|| (record.tenant.clone(), record.job_type.clone())),
            worker: match &old {
                Some(old) if old.worker == record.worker => None,
                _ => Some(record.worker.clone()),
            },
            created_at: record.created_at,
            activated_at: record.activated_at,
            deadline: record.deadline,
            finished_at: record.finished_at,
        });
        if record.state.is_open() {
            self.index(&record);
            self.open.insert(record.id, record);
        } else {
            self.closed_in_group.insert(record.id, record);
        }
    }

    /// Deletes a finished job with everything stored for it, if it is still finished at
    /// `finished_at`; true if it was deleted.
    fn purge(&mut self, id: JobId, finished_at: EpochMs) -> Result<bool, StoreError> {
        if self.open.contains_key(&id) || self.purged_in_group.contains_key(&id) {
            return Ok(false);
        }
        let record: JobRecord = match self.closed_in_group.get(&id) {
            Some(record) => record.clone(),
            None => match self.tree.get(record_key(id)).map_err(codec::io)? {
                Some(bytes) => codec::decode(&bytes)?,
                None => return Ok(false),
            },
        };
        if record.state.is_open() || record.finished_at != finished_at {
            return Ok(false);
        }
        let process_key = codec::prefixed(PROCESS_PREFIX, id);
        let process: Option<(String, String)> =
            match self.tree.get(process_key).map_err(codec::io)? {
                Some(bytes) => {
                    self.delete(&process_key);
                    Some(codec::decode(&bytes)?)
                }
                None => None,
            };
        let reverse = idempotency_of_key(id);
        if let Some(stored) = self.tree.get(reverse).map_err(codec::io)? {
            let still_ours = self
                .tree
                .get(&stored)
                .map_err(codec::io)?
                .is_some_and(|bytes| bytes.as_ref() == id.to_be_bytes());
            if still_ours {
                self.delete(&stored);
            }
            self.delete(&reverse);
        }
        let attempts: Vec<sled::IVec> = self
            .tree
            .scan_prefix(codec::prefixed(ATTEMPT_PREFIX, id))
            .keys()
            .collect::<Result<_, _>>()
            .map_err(codec::io)?;
        for attempt in attempts {
            self.delete(&attempt);
        }
        self.delete(&payload_key(id));
        self.delete(&record_key(id));
        self.closed_in_group.remove(&id);
        self.purged_in_group.insert(id, process);
        Ok(true)
    }

    /// Adds a deletion to the group's batch.
    fn delete(&mut self, key: &[u8]) {
        self.batch_keys.push(key);
        self.batch.remove(key);
        self.writes += 1;
    }

    /// Adds a write to the group's batch.
    fn write(&mut self, key: &[u8], value: impl Into<sled::IVec>) {
        self.batch_keys.push(key);
        self.batch.insert(key, value);
        self.writes += 1;
    }

    fn index(&mut self, record: &JobRecord) {
        if record.state == JobState::Activatable {
            let by_tenant = match self.ready.get_mut(&record.job_type) {
                Some(by_tenant) => by_tenant,
                None => self.ready.entry(record.job_type.clone()).or_default(),
            };
            let ready = match by_tenant.get_mut(&record.tenant) {
                Some(ready) => ready,
                None => by_tenant.entry(record.tenant.clone()).or_default(),
            };
            ready.insert((Reverse(record.priority), record.id));
            self.newly_ready.push(record.job_type.clone());
            self.ready_since.insert(record.id, now_ms());
        }
        if let Some(due) = record.timer_due() {
            self.timers.insert((due, record.id));
        }
    }

    fn unindex(&mut self, record: &JobRecord) {
        if record.state == JobState::Activatable {
            self.ready_since.remove(&record.id);
        }
        if record.state == JobState::Activatable
            && let Some(by_tenant) = self.ready.get_mut(&record.job_type)
        {
            if let Some(ready) = by_tenant.get_mut(&record.tenant) {
                ready.remove(&(Reverse(record.priority), record.id));
                if ready.is_empty() {
                    by_tenant.remove(&record.tenant);
                }
            }
            if by_tenant.is_empty() {
                self.ready.remove(&record.job_type);
            }
        }
        if let Some(due) = record.timer_due() {
            self.timers.remove(&(due, record.id));
        }
    }

    /// Leases the best ready jobs the request may take.
    fn take_ready(&mut self, request: &Activation, now: EpochMs) -> Vec<JobRecord> {
        let mut ids = Vec::new();
        if let Some(by_tenant) = self.ready.get_mut(&request.job_type) {
            while ids.len() < request.max_jobs {
                let best = by_tenant
                    .iter()
                    .filter(|(tenant, _)| request.scope.contains(tenant))
                    .filter_map(|(tenant, ready)| ready.first().map(|entry| (*entry, tenant)))
                    .min();
                let Some((entry, tenant)) = best else { break };
                let tenant = tenant.clone();
                if let Some(ready) = by_tenant.get_mut(&tenant) {
                    ready.remove(&entry);
                }
                ids.push(entry.1);
            }
        }
        let mut leased = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(since) = self.ready_since.get(&id) {
                let waited = (now - since).max(0) as f64 / 1000.0;
                self.metrics.observe_activation_latency(waited);
            }
            let event = Event::Activate {
                worker: request.worker.clone(),
                timeout_ms: request.timeout_ms,
            };
            // A lease that dies with this process need not outlive it on disk.
            let keep = if request.in_process {
                Keep::InMemory
            } else {
                Keep::Stored
            };
            if let Ok(record) = self.apply_as(id, &request.scope, event, now, keep) {
                leased.push(record);
            }
        }
        leased
    }

    /// Queues an activation's answer: after the flush, or as soon as the group is applied for
    /// leases held in memory (though a job created in the same group is not durable yet, its
    /// creator is answered only after the flush, and the attempt's result is written after it).
    fn answer_activation(
        &mut self,
        request: &Activation,
        reply: Reply<Vec<JobRecord>>,
        jobs: Vec<JobRecord>,
    ) {
        let answer = Answer::Activated(reply, jobs);
        if request.in_process {
            self.early_answers.push(answer);
        } else {
            self.answers.push(answer);
        }
    }

    /// Gives the early answers; leases their callers no longer wait for go back next group.
    fn deliver_early(&mut self) {
        for answer in std::mem::take(&mut self.early_answers) {
            self.to_release.extend(answer.deliver());
        }
    }

    fn park(&mut self, waiter: Waiter) {
        let queue = self
            .waiters
            .entry(waiter.request.job_type.clone())
            .or_default();
        // Long polls that ended are dropped now and then, so idle types do not accumulate them.
        if queue.len() >= 64 && queue.len().is_power_of_two() {
            queue.retain(|waiter| !waiter.reply.is_closed());
        }
        queue.push_back(waiter);
    }

    /// Hands jobs that became ready to activations waiting for their type, first come first.
    fn serve_waiters(&mut self, now: EpochMs) {
        let mut types = std::mem::take(&mut self.newly_ready);
        types.sort_unstable();
        types.dedup();
        for job_type in types {
            let Some(mut queue) = self.waiters.remove(&job_type) else {
                continue;
            };
            let mut still_waiting = VecDeque::new();
            while let Some(waiter) = queue.pop_front() {
                if waiter.reply.is_closed() {
                    continue;
                }
                if !self.ready.contains_key(&job_type) {
                    still_waiting.push_back(waiter);
                    continue;
                }
                let jobs = self.take_ready(&waiter.request, now);
                if jobs.is_empty() {
                    still_waiting.push_back(waiter);
                } else {
                    self.answer_activation(&waiter.request, waiter.reply, jobs);
                }
            }
            if !still_waiting.is_empty() {
                self.waiters.insert(job_type, still_waiting);
            }
        }
        self.newly_ready.clear();
    }

    /// Acts on every due time that has come: backoffs end, schedules arrive, leases expire.
    fn fire_timers(&mut self, now: EpochMs) {
        while let Some(&(due, id)) = self.timers.first() {
            if due > now {
                break;
            }
            self.timers.pop_first();
            let event = match self.open.get(&id).map(|record| record.state) {
                Some(JobState::Activated) => {
                    self.timed_out.insert(id);
                    Event::LeaseExpired
                }
                Some(JobState::Pending) => Event::BecameDue,
                _ => continue,
            };
            if let Err(error) = self.apply(id, &TenantScope::All, event, now) {
                tracing::warn!(job = id, %error, "due timer did not apply");
            }
        }
    }

    /// Applies the group's batch atomically and hands its answers to the flusher.
    fn commit(&mut self) -> Group {
        let answers = std::mem::take(&mut self.answers);
        // Leases held in memory change the indexes without writing anything.
        let wrote = self.writes > 0;
        if !wrote && self.index_changes.is_empty() && self.memory_changes.is_empty() {
            self.timed_out.clear();
            self.deliver_early();
            return Group {
                wrote: false,
                answers,
            };
        }
        let batch = std::mem::take(&mut self.batch);
        self.writes = 0;
        // The index is locked across the write, so a listing (which reads the index and then
        // the records under the same lock) sees the batch in both or in neither.
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        let result = if wrote {
            let gate = self
                .snapshots
                .before_write(&self.tree, self.batch_keys.iter());
            let result = self.tree.apply_batch(batch);
            drop(gate);
            result
        } else {
            Ok(())
        };
        let memory_changes = std::mem::take(&mut self.memory_changes);
        self.batch_keys.clear();
        self.closed_in_group.clear();
        self.kv_in_group.clear();
        self.idempotency_in_group.clear();
        let purged = std::mem::take(&mut self.purged_in_group);
        let changes = std::mem::take(&mut self.index_changes);
        let processes = std::mem::take(&mut self.process_changes);
        let timed_out = std::mem::take(&mut self.timed_out);
        match result {
            Ok(()) => {
                // Before anyone hears of the changes, so listings show what was acknowledged.
                let mut counts: HashMap<(Arc<str>, Arc<str>, Transition), u64> = HashMap::new();
                for (id, instance, element) in &processes {
                    index.put_process(*id, instance, element);
                }
                if !memory_changes.is_empty() {
                    let mut records = self
                        .memory_records
                        .write()
                        .unwrap_or_else(|e| e.into_inner());
                    for (id, record) in memory_changes {
                        match record {
                            Some(record) => records.insert(id, record),
                            None => records.remove(&id),
                        };
                    }
                }
                for change in &changes {
                    let Some(placed) = index.put(change) else {
                        tracing::error!(job = change.id, "index change for an unknown job");
                        continue;
                    };
                    if let Some(transition) = transition(placed.before, change, &timed_out) {
                        *counts
                            .entry((placed.job_type, placed.tenant, transition))
                            .or_default() += 1;
                    }
                }
                for (id, process) in purged {
                    let process = process
                        .as_ref()
                        .map(|(instance, element)| (instance.as_str(), element.as_str()));
                    if let Some((tenant, job_type, _)) = index.remove(id, process) {
                        *counts
                            .entry((job_type, tenant, Transition::Deleted))
                            .or_default() += 1;
                    }
                }
                drop(index);
                self.metrics.count(counts);
                self.deliver_early();
                Group { wrote, answers }
            }
            Err(error) => {
                drop(index);
                let error = codec::io(error);
                tracing::error!(%error, "job store write failed; refusing further changes");
                if let Ok(mut poison) = self.poison.lock() {
                    *poison = Some(error.clone());
                }
                for answer in answers.into_iter().chain(self.early_answers.drain(..)) {
                    answer.fail(error.clone());
                }
                Group {
                    wrote: false,
                    answers: Vec::new(),
                }
            }
        }
    }
}

/// Where a changed record is kept.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Written with the group's batch.
    Stored,
    /// In memory only, over the stored record, until the next change of the job.
    InMemory,
}

/// What a change did, as the metrics count it.
fn transition(
    before: Option<JobState>,
    job: &IndexedJob,
    timed_out: &HashSet<JobId>,
) -> Option<Transition> {
    match (before, job.state) {
        (None, _) => Some(Transition::Created),
        (Some(JobState::Activated), JobState::Activatable) if timed_out.contains(&job.id) => {
            Some(Transition::TimedOut)
        }
        (Some(old), new) if old == new => None,
        (_, JobState::Activated) => Some(Transition::Activated),
        (_, JobState::Completed) => Some(Transition::Completed),
        (_, JobState::Failed) => Some(Transition::Failed),
        _ => None,
    }
}

/// Makes applied groups durable, one flush for all that are queued, then answers their callers.
pub(super) fn run_flusher(
    db: sled::Db,
    groups: Receiver<Group>,
    writer: Sender<Command>,
    poison: Poison,
) {
    while let Ok(first) = groups.recv() {
        let mut pending = vec![first];
        pending.extend(std::iter::from_fn(|| groups.try_recv().ok()));
        let flushed = if pending.iter().any(|group| group.wrote) {
            db.flush().map(drop).map_err(codec::io)
        } else {
            Ok(())
        };
        let answers = pending.into_iter().flat_map(|group| group.answers);
        match flushed {
            Ok(()) => {
                let unreceived: Vec<_> = answers.flat_map(Answer::deliver).collect();
                if !unreceived.is_empty() {
                    let _ = writer.send(Command::Release {
                        leases: unreceived,
                        reply: None,
                    });
                }
            }
            Err(error) => {
                tracing::error!(%error, "job store flush failed; refusing further changes");
                if let Ok(mut poison) = poison.lock() {
                    *poison = Some(error.clone());
                }
                answers.for_each(|answer| answer.fail(error.clone()));
            }
        }
    }
}
