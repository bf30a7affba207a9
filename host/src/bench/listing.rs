//! `jobhost bench-listing`: how fast filtered listings and statistics answer over a large store.
//!
//! Fills a fresh store on disk with jobs of 20 types in 5 tenants, leases, completes and fails
//! some of them through the store's normal transitions, then times listings (with filters,
//! sorts and deep pages) and statistics, each several times.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::job::state::Event;
use crate::job::{JobPayload, JobState, NewJob, ProcessRef, TenantScope, now_ms};
use crate::store::{Activation, JobStore, ListQuery, SledStore, SortBy, StoreError};

const TYPES: usize = 20;
const TENANTS: usize = 5;
/// Jobs per store call while filling.
const CHUNK: usize = 2_000;
/// Timed repetitions of each query.
const REPEATS: usize = 20;

#[derive(Debug, Serialize)]
pub struct ListingReport {
    pub jobs: usize,
    pub fill_seconds: f64,
    /// Each query: what it asks, jobs it matches, and its median and worst time in ms.
    pub queries: Vec<QueryTiming>,
}

#[derive(Debug, Serialize)]
pub struct QueryTiming {
    pub query: String,
    pub matching: u64,
    pub median_ms: f64,
    pub max_ms: f64,
}

impl ListingReport {
    pub fn table(&self) -> String {
        let mut text = format!(
            "{} stored jobs (filled in {:.1} s)\n{:<58} {:>9} {:>9} {:>9}\n",
            self.jobs, self.fill_seconds, "query", "matching", "p50 ms", "max ms"
        );
        for q in &self.queries {
            text.push_str(&format!(
                "{:<58} {:>9} {:>9.3} {:>9.3}\n",
                q.query, q.matching, q.median_ms, q.max_ms
            ));
        }
        text
    }
}

fn job(n: usize) -> NewJob {
    NewJob {
        tenant: format!("tenant-{}", n % TENANTS),
        job_type: format!("type-{}", n % TYPES),
        priority: 0,
        retries: 1,
        run_at: None,
        payload: JobPayload {
            variables: format!(r#"{{"n":{n}}}"#),
            process: ProcessRef {
                process_instance_key: format!("instance-{}", n / 10),
                element_id: format!("element-{}", n % 7),
                ..ProcessRef::default()
            },
            ..JobPayload::default()
        },
        idempotency_key: None,
    }
}

/// Leases up to `count` jobs of a type and applies `event` (if any) to each.
async fn transition(
    store: &Arc<dyn JobStore>,
    job_type: &str,
    count: usize,
    event: Option<&dyn Fn(u32) -> Event>,
) -> Result<(), StoreError> {
    let mut done = 0;
    while done < count {
        let leased = store
            .activate(Activation {
                job_type: job_type.into(),
                worker: "bench-worker".into(),
                scope: TenantScope::All,
                max_jobs: 100.min(count - done),
                timeout_ms: 3_600_000,
                wait: false,
                in_process: false,
            })
            .await?;
        if leased.is_empty() {
            break;
        }
        done += leased.len();
        let Some(event) = event else { continue };
        let changes = leased.iter().map(|job| {
            let event = event(job.record.lease);
            store.apply(job.record.id, TenantScope::All, event)
        });
        for result in futures::future::join_all(changes).await {
            result.map_err(|e| StoreError::Io(e.to_string()))?;
        }
    }
    Ok(())
}

pub async fn run(jobs: usize) -> Result<ListingReport, StoreError> {
    let dir = std::env::temp_dir().join(format!("jobhost-bench-listing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opened = SledStore::open(&dir)?;
    let store: Arc<dyn JobStore> = Arc::new(opened);
    let started = Instant::now();
    let mut pending = Vec::new();
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(CHUNK) {
        let batch: Vec<NewJob> = chunk.iter().map(|n| job(*n)).collect();
        let store = store.clone();
        pending.push(tokio::spawn(async move { store.create(batch).await }));
        if pending.len() >= 8 {
            for task in pending.drain(..) {
                task.await.map_err(|e| StoreError::Io(e.to_string()))??;
            }
        }
    }
    for task in pending {
        task.await.map_err(|e| StoreError::Io(e.to_string()))??;
    }
    // In every type: a fifth completed, a twentieth failed, a tenth leased.
    let per_type = jobs / TYPES;
    for t in 0..TYPES {
        let job_type = format!("type-{t}");
        let complete = |lease| Event::Complete {
            lease: Some(lease),
            result: "{}".into(),
        };
        transition(&store, &job_type, per_type / 5, Some(&complete)).await?;
        let fail = |lease| Event::Fail {
            lease: Some(lease),
            retries: 0,
            backoff_ms: 0,
            error: "bench".into(),
        };
        transition(&store, &job_type, per_type / 20, Some(&fail)).await?;
        transition(&store, &job_type, per_type / 10, None).await?;
    }
    let fill_seconds = started.elapsed().as_secs_f64();

    let all = || ListQuery::all(TenantScope::All, 20);
    let mut queries: Vec<(&str, ListQuery)> = Vec::new();
    queries.push(("newest 20 of all jobs", all()));
    let mut q = all();
    q.state = Some(JobState::Completed);
    q.job_type = Some("type-3".into());
    queries.push(("completed of one type", q));
    let mut q = all();
    q.tenant = Some("tenant-2".into());
    q.state = Some(JobState::Failed);
    q.offset = 500;
    queries.push(("failed in one tenant, page 26", q));
    let mut q = all();
    q.created_after = Some(now_ms() - 3_600_000);
    q.state = Some(JobState::Activatable);
    queries.push(("activatable created in the last hour", q));
    let mut q = all();
    q.state = Some(JobState::Activated);
    q.sort_by = SortBy::Deadline;
    q.descending = false;
    queries.push(("activated by deadline", q));
    let mut q = all();
    q.worker = Some("bench-worker".into());
    q.tenant = Some("tenant-1".into());
    q.job_type = Some("type-6".into());
    queries.push(("one worker, tenant and type", q));
    let mut q = all();
    q.process_instance_key = Some(format!("instance-{}", jobs / 20));
    queries.push(("one workflow instance", q));

    let mut timings = Vec::new();
    for (name, query) in queries {
        let mut times = Vec::new();
        let mut matching = 0;
        for _ in 0..REPEATS {
            let started = Instant::now();
            let page = store.list(&query).await?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            matching = page.total;
        }
        times.sort_by(f64::total_cmp);
        timings.push(QueryTiming {
            query: name.to_string(),
            matching,
            median_ms: times[times.len() / 2],
            max_ms: times[times.len() - 1],
        });
    }
    let mut times = Vec::new();
    let mut total = 0;
    for _ in 0..REPEATS {
        let started = Instant::now();
        let stats = store.stats(&TenantScope::All, None, now_ms()).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        total = stats.by_state.total();
    }
    times.sort_by(f64::total_cmp);
    timings.push(QueryTiming {
        query: "stats: by state, type, tenant; last hour".into(),
        matching: total,
        median_ms: times[times.len() / 2],
        max_ms: times[times.len() - 1],
    });
    store.close().await?;
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ListingReport {
        jobs,
        fill_seconds,
        queries: timings,
    })
}
