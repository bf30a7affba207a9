//! In-memory indexes of every stored job, for listings and statistics that answer in
//! milliseconds however many jobs are stored.
//!
//! Jobs are grouped by (tenant, type, state, worker); each group keeps its jobs ordered by
//! creation time, and a group of leased jobs also by deadline and by activation time. A listing
//! picks the groups its filters allow, counts them by their sizes (or by a range of creation
//! times), and merges the groups' orders to cut one page, so it never looks at jobs outside its
//! filters. Jobs of a workflow instance or element are found through
//! their own maps. Completions and incidents are also counted per tenant and minute for the
//! last hour, with a histogram of durations.
//!
//! Finished jobs are also ordered by when they finished, per tenant, type and state, so that
//! retention finds the ones its policy lets go without looking at any other; a group that
//! loses its last job is removed.
//!
//! The store's writer applies each group commit's changes here before it answers anyone, so a
//! listing sees every acknowledged change. The indexes cost no writes: they are rebuilt from the
//! job records at start-up. Memory is about 100 bytes per job.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use crate::job::{EpochMs, JobId, JobRecord, JobState, TenantScope};
use crate::retention::RetentionPolicy;

use super::{ListQuery, SortBy};

const MINUTE_MS: EpochMs = 60_000;
/// Minutes of completions and incidents kept for statistics.
const MINUTES_KEPT: usize = 60;
/// Duration histogram buckets: four per doubling, from 1 ms up to about 2^40 ms.
const DURATION_BUCKETS: usize = 164;

/// A range of (created_at, id) keys.
type CreatedRange = (Bound<(EpochMs, JobId)>, Bound<(EpochMs, JobId)>);

/// Where a job is in the index.
#[derive(Clone, Copy, Debug)]
struct Entry {
    created_at: EpochMs,
    group: u32,
}

/// The times of a job that listings sort by or sum, kept beside its place in its group so
/// that reading them needs no lookup.
#[derive(Clone, Copy, Debug)]
struct Times {
    activated_at: EpochMs,
    deadline: EpochMs,
    finished_at: EpochMs,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct GroupKey {
    tenant: Arc<str>,
    job_type: Arc<str>,
    state: JobState,
    worker: Arc<str>,
}

#[derive(Debug)]
struct Group {
    key: GroupKey,
    /// (created_at, id), oldest first.
    jobs: BTreeMap<(EpochMs, JobId), Times>,
    /// Sum of run times (finished - created) of the group's jobs, for completed groups.
    duration_sum_ms: i64,
    /// For a group of leased jobs, the same jobs by deadline and by activation time, so that
    /// a page in either order is merged from the groups, as one in creation order is, instead
    /// of being selected from every matching job.
    leases: Option<Box<LeaseOrder>>,
}

#[derive(Debug, Default)]
struct LeaseOrder {
    by_deadline: BTreeSet<(EpochMs, JobId)>,
    by_activation: BTreeSet<(EpochMs, JobId)>,
}

impl LeaseOrder {
    fn insert(&mut self, id: JobId, times: &Times) {
        self.by_deadline.insert((times.deadline, id));
        self.by_activation.insert((times.activated_at, id));
    }

    fn remove(&mut self, id: JobId, times: &Times) {
        self.by_deadline.remove(&(times.deadline, id));
        self.by_activation.remove(&(times.activated_at, id));
    }

    fn ordered(&self, sort_by: SortBy) -> &BTreeSet<(EpochMs, JobId)> {
        match sort_by {
            SortBy::Deadline => &self.by_deadline,
            _ => &self.by_activation,
        }
    }
}

/// Completions and incidents of one tenant in one minute.
#[derive(Clone, Debug)]
struct MinuteCounts {
    minute: EpochMs,
    completed: u64,
    failed: u64,
    duration_sum_ms: i64,
    durations: Box<[u32; DURATION_BUCKETS]>,
}

impl MinuteCounts {
    fn new(minute: EpochMs) -> MinuteCounts {
        MinuteCounts {
            minute,
            completed: 0,
            failed: 0,
            duration_sum_ms: 0,
            durations: Box::new([0; DURATION_BUCKETS]),
        }
    }
}

/// A job change as the index needs it. Tenant, type and worker are sent only when the index
/// may not know them, so the common transitions copy no strings.
#[derive(Clone, Debug)]
pub struct IndexedJob {
    pub id: JobId,
    pub state: JobState,
    /// Tenant and type; `None` keeps those the index has for the job.
    pub names: Option<(String, String)>,
    /// `None` keeps the worker the index has for the job.
    pub worker: Option<String>,
    pub created_at: EpochMs,
    pub activated_at: EpochMs,
    pub deadline: EpochMs,
    pub finished_at: EpochMs,
}

impl From<&JobRecord> for IndexedJob {
    fn from(record: &JobRecord) -> IndexedJob {
        IndexedJob {
            id: record.id,
            state: record.state,
            names: Some((record.tenant.clone(), record.job_type.clone())),
            worker: Some(record.worker.clone()),
            created_at: record.created_at,
            activated_at: record.activated_at,
            deadline: record.deadline,
            finished_at: record.finished_at,
        }
    }
}

/// Where a change put a job: the state it had before (`None`: new), its tenant and type.
#[derive(Clone, Debug)]
pub struct Placed {
    pub before: Option<JobState>,
    pub tenant: Arc<str>,
    pub job_type: Arc<str>,
}

/// Jobs counted by state, with their run times.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateCounts {
    pub by_state: [u64; 6],
    /// Sum of run times of the completed ones.
    pub completed_duration_sum_ms: i64,
}

impl StateCounts {
    pub fn total(&self) -> u64 {
        self.by_state.iter().sum()
    }

    pub fn get(&self, state: JobState) -> u64 {
        self.by_state[state_slot(state)]
    }

    fn add(&mut self, state: JobState, count: u64) {
        self.by_state[state_slot(state)] += count;
    }
}

/// One page of a listing, as ids, with what the whole listing holds.
#[derive(Clone, Debug, Default)]
pub struct IndexPage {
    pub ids: Vec<JobId>,
    pub counts: StateCounts,
}

/// Counts of the jobs in a scope.
#[derive(Clone, Debug, Default)]
pub struct IndexStats {
    pub by_state: StateCounts,
    pub by_type: HashMap<String, StateCounts>,
    pub by_tenant: HashMap<String, StateCounts>,
    /// Per minute of the last hour, oldest first: (minute start, completed, failed).
    pub per_minute: Vec<(EpochMs, u64, u64)>,
    /// Completions of the last hour: how many, their mean and 95th percentile run time.
    pub completions: u64,
    pub avg_duration_ms: f64,
    pub p95_duration_ms: f64,
    /// Jobs by (tenant, type, state).
    pub by_group: Vec<(String, String, JobState, u64)>,
}

#[derive(Debug, Default)]
pub struct JobIndex {
    entries: HashMap<JobId, Entry>,
    groups: Vec<Group>,
    group_of: HashMap<GroupKey, u32>,
    names: HashMap<String, Arc<str>>,
    /// Jobs by workflow instance and by element, for the jobs that name one.
    by_process_instance: HashMap<String, BTreeSet<JobId>>,
    by_element: HashMap<String, BTreeSet<JobId>>,
    minutes: HashMap<Arc<str>, VecDeque<MinuteCounts>>,
    /// Finished jobs by tenant, type and state, oldest finished first.
    finished: HashMap<FinishedKey, FinishedSet>,
    /// Slots of `groups` whose group was removed, for the next new group.
    free_groups: Vec<u32>,
}

/// Tenant, type and (finished) state of a set of finished jobs.
type FinishedKey = (Arc<str>, Arc<str>, JobState);
/// (finished_at, id) of finished jobs, oldest first.
type FinishedSet = BTreeSet<(EpochMs, JobId)>;

fn is_finished(state: JobState) -> bool {
    matches!(
        state,
        JobState::Completed | JobState::Failed | JobState::Cancelled
    )
}

fn state_slot(state: JobState) -> usize {
    JobState::ALL
        .iter()
        .position(|s| *s == state)
        .expect("every state is listed")
}

fn duration_bucket(ms: i64) -> usize {
    let ms = ms.max(0) as f64;
    (((ms + 1.0).log2() * 4.0) as usize).min(DURATION_BUCKETS - 1)
}

/// The upper bound (ms) of a duration bucket.
fn bucket_upper_ms(bucket: usize) -> f64 {
    2f64.powf((bucket + 1) as f64 / 4.0) - 1.0
}

impl Group {
    /// The jobs created within `range`, and the sum of their run times. Walks whichever side
    /// of the range is shorter: the jobs in it, or the jobs outside it.
    fn count_range(&self, range: CreatedRange) -> (u64, i64) {
        let run_time =
            |((created_at, _), times): (&(EpochMs, JobId), &Times)| times.finished_at - created_at;
        let flip = |bound: Bound<(EpochMs, JobId)>| match bound {
            Bound::Included(key) => Bound::Excluded(key),
            Bound::Excluded(key) => Bound::Included(key),
            Bound::Unbounded => Bound::Unbounded,
        };
        let below = match range.0 {
            Bound::Unbounded => None,
            lower => Some(self.jobs.range((Bound::Unbounded, flip(lower)))),
        };
        let above = match range.1 {
            Bound::Unbounded => None,
            upper => Some(self.jobs.range((flip(upper), Bound::Unbounded))),
        };
        let mut outside = below
            .into_iter()
            .flatten()
            .chain(above.into_iter().flatten());
        let mut inside = self.jobs.range(range);
        let (mut in_count, mut in_sum, mut out_count, mut out_sum) = (0u64, 0i64, 0u64, 0i64);
        loop {
            match inside.next() {
                Some(job) => {
                    in_count += 1;
                    in_sum += run_time(job);
                }
                None => return (in_count, in_sum),
            }
            match outside.next() {
                Some(job) => {
                    out_count += 1;
                    out_sum += run_time(job);
                }
                None => {
                    let total = self.jobs.len() as u64;
                    return (total - out_count, self.duration_sum_ms - out_sum);
                }
            }
        }
    }
}

impl JobIndex {
    /// Records a job as it now is (new or changed); returns what it was before. `None` for a
    /// change to a job the index does not know that does not name its tenant and type.
    pub fn put(&mut self, job: &IndexedJob) -> Option<Placed> {
        let known = self
            .entries
            .get(&job.id)
            .map(|entry| self.groups[entry.group as usize].key.clone());
        let (tenant, job_type) = match (&job.names, &known) {
            (Some((tenant, job_type)), _) => (self.name(tenant), self.name(job_type)),
            (None, Some(key)) => (key.tenant.clone(), key.job_type.clone()),
            (None, None) => return None,
        };
        let worker = match (&job.worker, &known) {
            (Some(worker), _) => self.name(worker),
            (None, Some(key)) => key.worker.clone(),
            (None, None) => self.name(""),
        };
        let key = GroupKey {
            tenant: tenant.clone(),
            job_type: job_type.clone(),
            state: job.state,
            worker,
        };
        let group = self.group(key);
        let entry = Entry {
            created_at: job.created_at,
            group,
        };
        let previous = self.entries.insert(job.id, entry);
        if let Some(old) = previous {
            self.leave_group(old, job.id);
        }
        let new_group = &mut self.groups[group as usize];
        let times = Times {
            activated_at: job.activated_at,
            deadline: job.deadline,
            finished_at: job.finished_at,
        };
        new_group.jobs.insert((job.created_at, job.id), times);
        if let Some(leases) = &mut new_group.leases {
            leases.insert(job.id, &times);
        }
        if job.state == JobState::Completed {
            new_group.duration_sum_ms += job.finished_at - job.created_at;
        }
        if is_finished(job.state) {
            self.finished
                .entry((tenant.clone(), job_type.clone(), job.state))
                .or_default()
                .insert((job.finished_at, job.id));
        }
        if let Some(old) = previous
            && old.group != group
        {
            self.free_if_empty(old.group);
        }
        let before = known.map(|key| key.state);
        let finished_now = matches!(job.state, JobState::Completed | JobState::Failed)
            && before != Some(job.state);
        if finished_now {
            self.count_finish(tenant.clone(), job);
        }
        Some(Placed {
            before,
            tenant,
            job_type,
        })
    }

    /// Takes a job out of the group it was in (and out of the finished order), leaving the
    /// group in place even if empty.
    fn leave_group(&mut self, entry: Entry, id: JobId) {
        let group = &mut self.groups[entry.group as usize];
        let Some(times) = group.jobs.remove(&(entry.created_at, id)) else {
            return;
        };
        if let Some(leases) = &mut group.leases {
            leases.remove(id, &times);
        }
        if group.key.state == JobState::Completed {
            group.duration_sum_ms -= times.finished_at - entry.created_at;
        }
        if is_finished(group.key.state) {
            let key = (
                group.key.tenant.clone(),
                group.key.job_type.clone(),
                group.key.state,
            );
            if let Some(set) = self.finished.get_mut(&key) {
                set.remove(&(times.finished_at, id));
                if set.is_empty() {
                    self.finished.remove(&key);
                }
            }
        }
    }

    /// Removes a group that holds no job, so that listings and statistics never walk it.
    fn free_if_empty(&mut self, group: u32) {
        let slot = &mut self.groups[group as usize];
        if !slot.jobs.is_empty() || self.group_of.get(&slot.key) != Some(&group) {
            return;
        }
        self.group_of.remove(&slot.key);
        slot.duration_sum_ms = 0;
        self.free_groups.push(group);
    }

    /// Forgets a deleted job; `process` names the workflow instance and element it was
    /// recorded under, if any. Answers the job's tenant, type and state, if it was known.
    pub fn remove(
        &mut self,
        id: JobId,
        process: Option<(&str, &str)>,
    ) -> Option<(Arc<str>, Arc<str>, JobState)> {
        if let Some((instance, element)) = process {
            for (map, name) in [
                (&mut self.by_process_instance, instance),
                (&mut self.by_element, element),
            ] {
                if let Some(ids) = map.get_mut(name) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        map.remove(name);
                    }
                }
            }
        }
        let entry = self.entries.remove(&id)?;
        let key = self.groups[entry.group as usize].key.clone();
        self.leave_group(entry, id);
        self.free_if_empty(entry.group);
        Some((key.tenant, key.job_type, key.state))
    }

    /// Up to `limit` finished jobs that `policy` lets go as of `now`, with the finish time
    /// each was seen with: those past their age, then, per tenant, the oldest completed and
    /// cancelled ones beyond the count.
    pub fn expired(
        &self,
        policy: &RetentionPolicy,
        now: EpochMs,
        limit: usize,
    ) -> Vec<(JobId, EpochMs)> {
        let mut chosen = Vec::new();
        let mut taken = HashSet::new();
        // Jobs the count covers that are chosen already, per tenant.
        let mut counted_taken: HashMap<&Arc<str>, u64> = HashMap::new();
        for ((tenant, job_type, state), set) in &self.finished {
            let Some(age) = policy.max_age_ms(job_type, *state) else {
                continue;
            };
            let cutoff = now.saturating_sub(age);
            for &(finished_at, id) in set.iter().take_while(|(at, _)| *at <= cutoff) {
                if chosen.len() >= limit {
                    return chosen;
                }
                chosen.push((id, finished_at));
                taken.insert(id);
                if RetentionPolicy::counts(*state) {
                    *counted_taken.entry(tenant).or_default() += 1;
                }
            }
        }
        let Some(max) = policy.max_finished_per_tenant else {
            return chosen;
        };
        let mut counted: HashMap<&Arc<str>, Vec<&FinishedSet>> = HashMap::new();
        for ((tenant, _, state), set) in &self.finished {
            if RetentionPolicy::counts(*state) {
                counted.entry(tenant).or_default().push(set);
            }
        }
        for (tenant, sets) in counted {
            let total: u64 = sets.iter().map(|set| set.len() as u64).sum();
            let kept = total - counted_taken.get(tenant).copied().unwrap_or(0);
            let mut excess = kept.saturating_sub(max);
            // The tenant's oldest finished first, across its types and states.
            let mut heads: BinaryHeap<Reverse<((EpochMs, JobId), usize)>> = BinaryHeap::new();
            let mut cursors: Vec<_> = sets.iter().map(|set| set.iter()).collect();
            for (n, cursor) in cursors.iter_mut().enumerate() {
                if let Some(first) = cursor.next() {
                    heads.push(Reverse((*first, n)));
                }
            }
            while excess > 0 {
                let Some(Reverse(((finished_at, id), n))) = heads.pop() else {
                    break;
                };
                if let Some(next) = cursors[n].next() {
                    heads.push(Reverse((*next, n)));
                }
                if taken.contains(&id) {
                    continue;
                }
                if chosen.len() >= limit {
                    return chosen;
                }
                chosen.push((id, finished_at));
                excess -= 1;
            }
        }
        chosen
    }

    /// Records that a job belongs to a workflow instance and element (fixed at creation).
    pub fn put_process(&mut self, id: JobId, process_instance_key: &str, element_id: &str) {
        if !process_instance_key.is_empty() {
            self.by_process_instance
                .entry(process_instance_key.to_string())
                .or_default()
                .insert(id);
        }
        if !element_id.is_empty() {
            self.by_element
                .entry(element_id.to_string())
                .or_default()
                .insert(id);
        }
    }

    fn name(&mut self, text: &str) -> Arc<str> {
        if let Some(name) = self.names.get(text) {
            return name.clone();
        }
        let name: Arc<str> = Arc::from(text);
        self.names.insert(text.to_string(), name.clone());
        name
    }

    fn group(&mut self, key: GroupKey) -> u32 {
        if let Some(group) = self.group_of.get(&key) {
            return *group;
        }
        let group = Group {
            key: key.clone(),
            jobs: BTreeMap::new(),
            duration_sum_ms: 0,
            leases: (key.state == JobState::Activated).then(Box::default),
        };
        let id = match self.free_groups.pop() {
            Some(free) => {
                self.groups[free as usize] = group;
                free
            }
            None => {
                self.groups.push(group);
                (self.groups.len() - 1) as u32
            }
        };
        self.group_of.insert(key, id);
        id
    }

    fn count_finish(&mut self, tenant: Arc<str>, job: &IndexedJob) {
        let minute = job.finished_at.div_euclid(MINUTE_MS) * MINUTE_MS;
        let minutes = self.minutes.entry(tenant).or_default();
        let latest = minutes.back().map_or(EpochMs::MIN, |m| m.minute);
        if minute <= latest.saturating_sub(MINUTES_KEPT as i64 * MINUTE_MS) {
            // Older than the minutes kept: it no longer counts.
            return;
        }
        // Jobs finish in time order, except while the index is rebuilt at start-up.
        let position = minutes.partition_point(|m| m.minute < minute);
        if minutes.get(position).is_none_or(|m| m.minute != minute) {
            minutes.insert(position, MinuteCounts::new(minute));
        }
        let newest = minutes.back().map_or(minute, |m| m.minute);
        while minutes
            .front()
            .is_some_and(|m| m.minute <= newest - MINUTES_KEPT as i64 * MINUTE_MS)
        {
            minutes.pop_front();
        }
        let Some(slot) = minutes.iter_mut().find(|m| m.minute == minute) else {
            return;
        };
        if job.state == JobState::Completed {
            let duration = job.finished_at - job.created_at;
            slot.completed += 1;
            slot.duration_sum_ms += duration;
            slot.durations[duration_bucket(duration)] += 1;
        } else {
            slot.failed += 1;
        }
    }

    /// The groups a query may read.
    fn matching_groups<'a>(&'a self, query: &'a ListQuery) -> impl Iterator<Item = &'a Group> {
        let wanted = |wanted: &Option<String>, actual: &str| {
            wanted.as_deref().is_none_or(|wanted| wanted == actual)
        };
        self.groups.iter().filter(move |group| {
            let key = &group.key;
            !group.jobs.is_empty()
                && query.scope.contains(&key.tenant)
                && wanted(&query.tenant, &key.tenant)
                && wanted(&query.job_type, &key.job_type)
                && wanted(&query.worker, &key.worker)
                && query.state.is_none_or(|state| state == key.state)
        })
    }

    /// The (created_at, id) range a query's creation-time filters select.
    fn created_range(query: &ListQuery) -> CreatedRange {
        let lower = match query.created_after {
            Some(after) => Bound::Excluded((after, JobId::MAX)),
            None => Bound::Unbounded,
        };
        let upper = match query.created_before {
            Some(before) => Bound::Excluded((before, 0)),
            None => Bound::Unbounded,
        };
        (lower, upper)
    }

    /// One page of the jobs a query selects, and their counts by state.
    pub fn list(&self, query: &ListQuery) -> IndexPage {
        self.plan(query).page(query)
    }

    /// What a listing needs from the index; an order other than creation time is left to cut
    /// by [`ListPlan::page`], which needs no lock on the index.
    pub fn plan(&self, query: &ListQuery) -> ListPlan {
        if query.process_instance_key.is_some() || query.element_id.is_some() {
            return ListPlan::Cut(self.list_by_process(query));
        }
        if let (Some(after), Some(before)) = (query.created_after, query.created_before)
            && after + 1 >= before
        {
            // Nothing is created after `after` and before `before`.
            return ListPlan::Cut(IndexPage::default());
        }
        let range = Self::created_range(query);
        let whole = query.created_after.is_none() && query.created_before.is_none();
        let groups: Vec<&Group> = self.matching_groups(query).collect();
        let mut counts = StateCounts::default();
        for group in &groups {
            let (count, duration_sum) = if whole {
                (group.jobs.len() as u64, group.duration_sum_ms)
            } else {
                group.count_range(range)
            };
            counts.add(group.key.state, count);
            if group.key.state == JobState::Completed {
                counts.completed_duration_sum_ms += duration_sum;
            }
        }
        match query.sort_by {
            SortBy::CreatedAt => ListPlan::Cut(IndexPage {
                ids: Self::merge_page(&groups, range, query),
                counts,
            }),
            SortBy::ActivatedAt | SortBy::Deadline
                if whole && groups.iter().all(|group| group.leases.is_some()) =>
            {
                ListPlan::Cut(IndexPage {
                    ids: Self::merge_lease_page(&groups, query),
                    counts,
                })
            }
            SortBy::ActivatedAt | SortBy::Deadline => ListPlan::ToCut {
                keyed: Self::sort_keys(&groups, range, query),
                counts,
            },
        }
    }

    /// Cuts a page from the groups in creation order by merging them.
    fn merge_page(groups: &[&Group], range: CreatedRange, query: &ListQuery) -> Vec<JobId> {
        let cursors = groups
            .iter()
            .map(|group| group.jobs.range(range).map(|(key, _)| *key));
        if query.descending {
            take_merged(cursors.map(Iterator::rev).collect(), |key| key, query)
        } else {
            take_merged(cursors.collect(), Reverse, query)
        }
    }

    /// Cuts a page of leased jobs by deadline or activation time by merging the groups' orders.
    fn merge_lease_page(groups: &[&Group], query: &ListQuery) -> Vec<JobId> {
        let cursors = groups.iter().filter_map(|group| {
            let leases = group.leases.as_ref()?;
            Some(leases.ordered(query.sort_by).iter().copied())
        });
        if query.descending {
            take_merged(cursors.map(Iterator::rev).collect(), |key| key, query)
        } else {
            take_merged(cursors.collect(), Reverse, query)
        }
    }

    /// The activation times or deadlines of the matching jobs, to cut a page from.
    fn sort_keys(
        groups: &[&Group],
        range: CreatedRange,
        query: &ListQuery,
    ) -> Vec<(EpochMs, JobId)> {
        let key_of = |created_at: EpochMs, times: &Times| match query.sort_by {
            SortBy::ActivatedAt => times.activated_at,
            SortBy::Deadline => times.deadline,
            SortBy::CreatedAt => created_at,
        };
        groups
            .iter()
            .flat_map(|group| group.jobs.range(range))
            .map(|((created_at, id), times)| (key_of(*created_at, times), *id))
            .collect()
    }
}

/// A listing as the index planned it.
#[derive(Debug)]
pub enum ListPlan {
    /// The page, cut.
    Cut(IndexPage),
    /// Every matching job with its sort key, and the counts: the page is cut from them.
    ToCut {
        keyed: Vec<(EpochMs, JobId)>,
        counts: StateCounts,
    },
}

impl ListPlan {
    /// The page: for [`ListPlan::ToCut`], the matching jobs are selected, not sorted whole.
    pub fn page(self, query: &ListQuery) -> IndexPage {
        match self {
            ListPlan::Cut(page) => page,
            ListPlan::ToCut { mut keyed, counts } => IndexPage {
                ids: cut(&mut keyed, query),
                counts,
            },
        }
    }
}

/// The page `query` asks for of jobs with their sort keys.
fn cut(keyed: &mut Vec<(EpochMs, JobId)>, query: &ListQuery) -> Vec<JobId> {
    let wanted = query.offset + query.limit;
    if query.descending {
        keyed.iter_mut().for_each(|(key, id)| {
            *key = -*key;
            *id = JobId::MAX - *id;
        });
    }
    if keyed.len() > wanted && wanted > 0 {
        keyed.select_nth_unstable(wanted - 1);
        keyed.truncate(wanted);
    }
    keyed.sort_unstable();
    keyed
        .iter()
        .skip(query.offset)
        .take(query.limit)
        .map(|(_, id)| {
            if query.descending {
                JobId::MAX - *id
            } else {
                *id
            }
        })
        .collect()
}

impl JobIndex {
    /// A listing narrowed by workflow instance or element: their jobs are checked one by one.
    fn list_by_process(&self, query: &ListQuery) -> IndexPage {
        let empty = BTreeSet::new();
        let process = query
            .process_instance_key
            .as_ref()
            .map(|key| self.by_process_instance.get(key).unwrap_or(&empty));
        let element = query
            .element_id
            .as_ref()
            .map(|key| self.by_element.get(key).unwrap_or(&empty));
        let candidates: Vec<JobId> = match (process, element) {
            (Some(p), Some(e)) => p.intersection(e).copied().collect(),
            (Some(only), None) | (None, Some(only)) => only.iter().copied().collect(),
            (None, None) => Vec::new(),
        };
        let allowed: std::collections::HashSet<u32> = self
            .matching_groups(query)
            .map(|group| self.group_of[&group.key])
            .collect();
        let mut counts = StateCounts::default();
        let mut keyed = Vec::new();
        for id in candidates {
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            let in_range = query.created_after.is_none_or(|t| entry.created_at > t)
                && query.created_before.is_none_or(|t| entry.created_at < t);
            if !in_range || !allowed.contains(&entry.group) {
                continue;
            }
            let group = &self.groups[entry.group as usize];
            let Some(times) = group.jobs.get(&(entry.created_at, id)) else {
                continue;
            };
            counts.add(group.key.state, 1);
            if group.key.state == JobState::Completed {
                counts.completed_duration_sum_ms += times.finished_at - entry.created_at;
            }
            let key = match query.sort_by {
                SortBy::CreatedAt => entry.created_at,
                SortBy::ActivatedAt => times.activated_at,
                SortBy::Deadline => times.deadline,
            };
            keyed.push((key, id));
        }
        let ids = cut(&mut keyed, query);
        IndexPage { ids, counts }
    }

    /// Counts by state, type and tenant of the jobs in `scope` (and `tenant`, if named), and
    /// the last hour's completions and incidents per minute as of `now`.
    pub fn stats(&self, scope: &TenantScope, tenant: Option<&str>, now: EpochMs) -> IndexStats {
        let mut stats = IndexStats::default();
        let mut by_group: HashMap<(Arc<str>, Arc<str>, JobState), u64> = HashMap::new();
        let in_scope = |name: &str| scope.contains(name) && tenant.is_none_or(|t| t == name);
        for group in &self.groups {
            let key = &group.key;
            if group.jobs.is_empty() || !in_scope(&key.tenant) {
                continue;
            }
            let count = group.jobs.len() as u64;
            stats.by_state.add(key.state, count);
            *by_group
                .entry((key.tenant.clone(), key.job_type.clone(), key.state))
                .or_default() += count;
            stats
                .by_type
                .entry(key.job_type.to_string())
                .or_default()
                .add(key.state, count);
            stats
                .by_tenant
                .entry(key.tenant.to_string())
                .or_default()
                .add(key.state, count);
            if key.state == JobState::Completed {
                stats.by_state.completed_duration_sum_ms += group.duration_sum_ms;
            }
        }
        stats.by_group = by_group
            .into_iter()
            .map(|((tenant, job_type, state), count)| {
                (tenant.to_string(), job_type.to_string(), state, count)
            })
            .collect();
        let this_minute = now.div_euclid(MINUTE_MS) * MINUTE_MS;
        let first_minute = this_minute - (MINUTES_KEPT as i64 - 1) * MINUTE_MS;
        let mut per_minute: Vec<(EpochMs, u64, u64)> = (0..MINUTES_KEPT as i64)
            .map(|n| (first_minute + n * MINUTE_MS, 0, 0))
            .collect();
        let mut histogram = [0u64; DURATION_BUCKETS];
        let mut duration_sum = 0i64;
        for (name, minutes) in &self.minutes {
            if !in_scope(name) {
                continue;
            }
            for counts in minutes.iter().filter(|m| m.minute >= first_minute) {
                let Some(slot) =
                    per_minute.get_mut(((counts.minute - first_minute) / MINUTE_MS) as usize)
                else {
                    continue;
                };
                slot.1 += counts.completed;
                slot.2 += counts.failed;
                stats.completions += counts.completed;
                duration_sum += counts.duration_sum_ms;
                for (total, count) in histogram.iter_mut().zip(counts.durations.iter()) {
                    *total += u64::from(*count);
                }
            }
        }
        stats.per_minute = per_minute;
        if stats.completions > 0 {
            stats.avg_duration_ms = duration_sum as f64 / stats.completions as f64;
            let rank = (stats.completions as f64 * 0.95).ceil() as u64;
            let mut seen = 0;
            for (bucket, count) in histogram.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    stats.p95_duration_ms = bucket_upper_ms(bucket);
                    break;
                }
            }
        }
        stats
    }

    /// Every tenant that has jobs.
    pub fn tenants(&self) -> Vec<String> {
        let mut tenants: Vec<String> = self
            .groups
            .iter()
            .filter(|g| !g.jobs.is_empty())
            .map(|g| g.key.tenant.to_string())
            .collect();
        tenants.sort_unstable();
        tenants.dedup();
        tenants
    }
}

/// Merges sorted cursors, first by `order` (a max-heap), skipping `query.offset` and taking
/// `query.limit`.
fn take_merged<I, K>(
    mut cursors: Vec<I>,
    order: impl Fn((EpochMs, JobId)) -> K,
    query: &ListQuery,
) -> Vec<JobId>
where
    I: Iterator<Item = (EpochMs, JobId)>,
    K: Ord,
{
    let mut heads = BinaryHeap::new();
    for (n, cursor) in cursors.iter_mut().enumerate() {
        if let Some(head) = cursor.next() {
            heads.push((order(head), head.1, n));
        }
    }
    let mut page = Vec::with_capacity(query.limit);
    let mut taken = 0;
    while let Some((_, id, n)) = heads.pop() {
        if taken >= query.offset + query.limit {
            break;
        }
        if taken >= query.offset {
            page.push(id);
        }
        taken += 1;
        if let Some(head) = cursors[n].next() {
            heads.push((order(head), head.1, n));
        }
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(
        id: JobId,
        tenant: &str,
        job_type: &str,
        state: JobState,
        created_at: EpochMs,
    ) -> IndexedJob {
        IndexedJob {
            id,
            state,
            names: Some((tenant.into(), job_type.into())),
            worker: Some(String::new()),
            created_at,
            activated_at: 0,
            deadline: 0,
            finished_at: 0,
        }
    }

    fn query() -> ListQuery {
        ListQuery::all(TenantScope::All, 10)
    }

    #[test]
    fn a_listing_counts_and_pages_only_the_matching_jobs() {
        let mut index = JobIndex::default();
        for id in 1..=30 {
            let state = if id % 3 == 0 {
                JobState::Completed
            } else {
                JobState::Activatable
            };
            let tenant = if id % 2 == 0 { "a" } else { "b" };
            let mut job = job(id, tenant, "t", state, 1_000 + id as i64);
            job.finished_at = job.created_at + 100;
            index.put(&job);
        }
        let mut q = query();
        q.tenant = Some("a".into());
        q.state = Some(JobState::Completed);
        let page = index.list(&q);
        assert_eq!(page.counts.total(), 5);
        assert_eq!(page.ids, vec![30, 24, 18, 12, 6]);
        assert_eq!(page.counts.completed_duration_sum_ms, 500);
        q.descending = false;
        q.offset = 1;
        q.limit = 2;
        assert_eq!(index.list(&q).ids, vec![12, 18]);
    }

    #[test]
    fn a_changed_job_moves_between_groups() {
        let mut index = JobIndex::default();
        index.put(&job(1, "a", "t", JobState::Activatable, 10));
        let mut done = job(1, "a", "t", JobState::Completed, 10);
        done.finished_at = 70_000;
        index.put(&done);
        let stats = index.stats(&TenantScope::All, None, 70_000);
        assert_eq!(stats.by_state.get(JobState::Activatable), 0);
        assert_eq!(stats.by_state.get(JobState::Completed), 1);
        assert_eq!(stats.completions, 1);
        assert_eq!(stats.per_minute.last(), Some(&(60_000, 1, 0)));
    }

    #[test]
    fn creation_bounds_select_a_range() {
        let mut index = JobIndex::default();
        for id in 1..=10 {
            index.put(&job(id, "a", "t", JobState::Activatable, id as i64 * 10));
        }
        let mut q = query();
        q.created_after = Some(30);
        q.created_before = Some(80);
        let page = index.list(&q);
        assert_eq!(page.ids, vec![7, 6, 5, 4]);
        assert_eq!(page.counts.total(), 4);
    }

    #[test]
    fn a_range_holding_most_jobs_is_counted_from_the_jobs_outside_it() {
        let mut index = JobIndex::default();
        for id in 1..=10 {
            let mut done = job(id, "a", "t", JobState::Completed, id as i64 * 10);
            done.finished_at = done.created_at + id as i64;
            index.put(&done);
        }
        let mut q = query();
        q.created_after = Some(10);
        let page = index.list(&q);
        assert_eq!(page.counts.total(), 9);
        assert_eq!(page.counts.completed_duration_sum_ms, (2..=10).sum::<i64>());
        q.created_before = Some(100);
        let page = index.list(&q);
        assert_eq!(page.counts.total(), 8);
        assert_eq!(page.counts.completed_duration_sum_ms, (2..=9).sum::<i64>());
    }

    #[test]
    fn an_empty_creation_range_selects_nothing() {
        let mut index = JobIndex::default();
        index.put(&job(1, "a", "t", JobState::Activatable, 50));
        let mut q = query();
        q.created_after = Some(60);
        q.created_before = Some(40);
        assert_eq!(index.list(&q).counts.total(), 0);
        q.created_after = Some(50);
        q.created_before = Some(50);
        assert!(index.list(&q).ids.is_empty());
    }

    #[test]
    fn sorting_by_deadline_selects_the_page_without_sorting_everything() {
        let mut index = JobIndex::default();
        for id in 1..=20 {
            let mut leased = job(id, "a", "t", JobState::Activated, id as i64);
            leased.deadline = 1_000 - id as i64 * 7 % 50;
            index.put(&leased);
        }
        let mut q = query();
        q.sort_by = SortBy::Deadline;
        q.descending = false;
        q.limit = 3;
        let ids = index.list(&q).ids;
        let deadline = |id: JobId| 1_000 - id as i64 * 7 % 50;
        let mut all: Vec<JobId> = (1..=20).collect();
        all.sort_by_key(|id| (deadline(*id), *id));
        assert_eq!(ids, all[..3].to_vec());
    }

    #[test]
    fn the_p95_duration_comes_from_the_histogram() {
        let mut index = JobIndex::default();
        for id in 1..=100 {
            let mut done = job(id, "a", "t", JobState::Completed, 0);
            done.finished_at = id as i64 * 10;
            index.put(&done);
        }
        let stats = index.stats(&TenantScope::All, None, 1_000);
        assert_eq!(stats.completions, 100);
        assert!((stats.avg_duration_ms - 505.0).abs() < 1e-9);
        // The true p95 is 950 ms; buckets are a quarter of a doubling wide.
        assert!(
            (800.0..=1_200.0).contains(&stats.p95_duration_ms),
            "{}",
            stats.p95_duration_ms
        );
    }

    #[test]
    fn stats_stay_within_the_scope() {
        let mut index = JobIndex::default();
        index.put(&job(1, "a", "t", JobState::Activatable, 1));
        index.put(&job(2, "b", "t", JobState::Activatable, 2));
        let stats = index.stats(&TenantScope::only(["a"]), None, 10);
        assert_eq!(stats.by_state.total(), 1);
        assert!(stats.by_tenant.contains_key("a") && !stats.by_tenant.contains_key("b"));
    }

    fn finished(
        id: JobId,
        tenant: &str,
        job_type: &str,
        state: JobState,
        at: EpochMs,
    ) -> IndexedJob {
        let mut job = job(id, tenant, job_type, state, at - 10);
        job.finished_at = at;
        job
    }

    fn ids(expired: Vec<(JobId, EpochMs)>) -> Vec<JobId> {
        let mut ids: Vec<JobId> = expired.into_iter().map(|(id, _)| id).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn retention_lets_go_the_finished_jobs_past_their_age_and_no_open_job() {
        let mut index = JobIndex::default();
        index.put(&finished(1, "a", "t", JobState::Completed, 1_000));
        index.put(&finished(2, "a", "t", JobState::Cancelled, 2_000));
        index.put(&finished(3, "a", "t", JobState::Completed, 9_000));
        index.put(&job(4, "a", "t", JobState::Activatable, 500));
        let policy = RetentionPolicy {
            completed_ms: Some(5_000),
            ..RetentionPolicy::default()
        };
        assert_eq!(ids(index.expired(&policy, 10_000, 100)), vec![1, 2]);
    }

    #[test]
    fn retention_keeps_incidents_for_their_own_grace() {
        let mut index = JobIndex::default();
        index.put(&finished(1, "a", "t", JobState::Failed, 1_000));
        let mut policy = RetentionPolicy {
            completed_ms: Some(1),
            ..RetentionPolicy::default()
        };
        assert!(index.expired(&policy, 10_000, 100).is_empty());
        policy.failed_ms = Some(5_000);
        assert_eq!(ids(index.expired(&policy, 10_000, 100)), vec![1]);
    }

    #[test]
    fn retention_applies_a_type_age_to_its_type_only() {
        let mut index = JobIndex::default();
        index.put(&finished(1, "a", "short", JobState::Completed, 8_000));
        index.put(&finished(2, "a", "long", JobState::Completed, 8_000));
        let mut policy = RetentionPolicy {
            completed_ms: Some(60_000),
            ..RetentionPolicy::default()
        };
        policy.add_type_age("short=1s").unwrap();
        assert_eq!(ids(index.expired(&policy, 10_000, 100)), vec![1]);
    }

    #[test]
    fn retention_keeps_the_newest_finished_jobs_of_each_tenant_up_to_the_count() {
        let mut index = JobIndex::default();
        for id in 1..=5 {
            index.put(&finished(
                id,
                "a",
                "t",
                JobState::Completed,
                id as i64 * 100,
            ));
        }
        index.put(&finished(6, "a", "u", JobState::Cancelled, 50));
        index.put(&finished(7, "a", "u", JobState::Failed, 10));
        index.put(&finished(8, "b", "t", JobState::Completed, 10));
        let policy = RetentionPolicy {
            max_finished_per_tenant: Some(3),
            ..RetentionPolicy::default()
        };
        // Tenant a holds six completed or cancelled jobs: the three oldest go; its incident
        // and tenant b's only job stay.
        assert_eq!(ids(index.expired(&policy, 1_000, 100)), vec![1, 2, 6]);
    }

    #[test]
    fn retention_answers_at_most_the_limit() {
        let mut index = JobIndex::default();
        for id in 1..=10 {
            index.put(&finished(id, "a", "t", JobState::Completed, 100));
        }
        let policy = RetentionPolicy {
            completed_ms: Some(1),
            ..RetentionPolicy::default()
        };
        assert_eq!(index.expired(&policy, 1_000, 4).len(), 4);
    }

    #[test]
    fn a_job_resolved_from_an_incident_is_no_longer_expired() {
        let mut index = JobIndex::default();
        index.put(&finished(1, "a", "t", JobState::Failed, 100));
        index.put(&job(1, "a", "t", JobState::Activatable, 90));
        let policy = RetentionPolicy {
            failed_ms: Some(1),
            ..RetentionPolicy::default()
        };
        assert!(index.expired(&policy, 1_000, 10).is_empty());
    }

    #[test]
    fn a_removed_job_leaves_listings_statistics_and_its_process() {
        let mut index = JobIndex::default();
        index.put(&finished(1, "a", "t", JobState::Completed, 100));
        index.put_process(1, "instance-1", "element-1");
        index.put(&finished(2, "a", "t", JobState::Completed, 200));
        let removed = index.remove(1, Some(("instance-1", "element-1")));
        assert_eq!(
            removed.map(|(_, _, state)| state),
            Some(JobState::Completed)
        );
        assert_eq!(index.list(&query()).ids, vec![2]);
        assert_eq!(index.list(&query()).counts.total(), 1);
        let mut by_instance = query();
        by_instance.process_instance_key = Some("instance-1".into());
        assert!(index.list(&by_instance).ids.is_empty());
        assert_eq!(
            index.stats(&TenantScope::All, None, 1_000).by_state.total(),
            1
        );
    }

    #[test]
    fn a_group_that_loses_its_last_job_is_removed_and_its_slot_reused() {
        let mut index = JobIndex::default();
        index.put(&finished(1, "a", "t", JobState::Completed, 100));
        index.remove(1, None);
        assert!(index.group_of.is_empty());
        assert!(index.tenants().is_empty());
        index.put(&job(2, "b", "u", JobState::Activatable, 100));
        assert_eq!(index.groups.len(), 1, "the free slot is reused");
        assert_eq!(index.list(&query()).ids, vec![2]);
    }

    #[test]
    fn a_group_left_empty_by_a_transition_is_removed() {
        let mut index = JobIndex::default();
        index.put(&job(1, "a", "t", JobState::Activatable, 100));
        index.put(&finished(1, "a", "t", JobState::Completed, 200));
        assert_eq!(index.group_of.len(), 1);
        let stats = index.stats(&TenantScope::All, None, 1_000);
        assert_eq!(stats.by_group.len(), 1);
    }

    #[test]
    fn a_page_by_deadline_over_jobs_not_all_leased_is_cut_after_planning() {
        let mut index = JobIndex::default();
        for id in 1..=5 {
            let mut leased = job(id, "a", "t", JobState::Activated, id as i64);
            leased.deadline = 100 - id as i64;
            index.put(&leased);
        }
        index.put(&job(6, "a", "t", JobState::Activatable, 6));
        let mut by_deadline = query();
        by_deadline.sort_by = SortBy::Deadline;
        by_deadline.descending = false;
        by_deadline.limit = 2;
        let plan = index.plan(&by_deadline);
        assert!(matches!(plan, ListPlan::ToCut { .. }));
        assert_eq!(plan.page(&by_deadline).ids, vec![6, 5]);
        let mut by_creation = by_deadline.clone();
        by_creation.sort_by = SortBy::CreatedAt;
        assert!(matches!(index.plan(&by_creation), ListPlan::Cut(_)));
    }

    /// Leased jobs over several groups (tenants, workers), with ties in their times.
    fn leased_index() -> JobIndex {
        let mut index = JobIndex::default();
        for id in 1..=60 {
            let tenant = ["a", "b", "c"][id as usize % 3];
            let mut leased = job(id, tenant, "t", JobState::Activated, id as i64);
            leased.worker = Some(format!("w{}", id % 4));
            leased.deadline = 1_000 + (id as i64 * 37) % 23;
            leased.activated_at = 500 + (id as i64 * 11) % 17;
            index.put(&leased);
        }
        index
    }

    #[test]
    fn a_page_of_leased_jobs_by_deadline_or_activation_is_merged_in_the_same_order_a_cut_gives() {
        let index = leased_index();
        for sort_by in [SortBy::Deadline, SortBy::ActivatedAt] {
            for descending in [false, true] {
                for (offset, limit) in [(0, 7), (13, 10), (55, 10)] {
                    let mut q = query();
                    q.state = Some(JobState::Activated);
                    q.sort_by = sort_by;
                    q.descending = descending;
                    q.offset = offset;
                    q.limit = limit;
                    let plan = index.plan(&q);
                    assert!(matches!(plan, ListPlan::Cut(_)));
                    let groups: Vec<&Group> = index.matching_groups(&q).collect();
                    let mut keyed = JobIndex::sort_keys(&groups, JobIndex::created_range(&q), &q);
                    let expected = cut(&mut keyed, &q);
                    assert_eq!(
                        plan.page(&q).ids,
                        expected,
                        "{sort_by:?} {descending} {offset}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_lease_that_ends_leaves_the_deadline_order() {
        let mut index = leased_index();
        let mut q = query();
        q.state = Some(JobState::Activated);
        q.sort_by = SortBy::Deadline;
        q.limit = 100;
        let first = index.list(&q).ids[0];
        index.put(&finished(first, "a", "t", JobState::Completed, 2_000));
        let ids = index.list(&q).ids;
        assert_eq!(ids.len(), 59);
        assert!(!ids.contains(&first));
    }
}
