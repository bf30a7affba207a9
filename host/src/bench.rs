//! `jobhost bench`: end-to-end throughput (external gRPC workers and the Wasm executor) and
//! wake-up latency of a real server, every change durable, and the cost of one attempt in a
//! fresh sandbox; how late triggers fire, and what idle triggers cost. Prints a table; can write
//! the numbers as JSON.

pub mod hostile;
pub mod listing;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tonic::Request;
use tonic::transport::Channel;

use crate::api::grpc::pb;
use crate::api::grpc::pb::jobs_service_client::JobsServiceClient;
use crate::client::RestClient;
use crate::runtime::{AttemptInput, AttemptLimits, Capabilities, Runtime, RuntimeConfig};
use crate::server::{Config, start};

const KEY: &str = "bench-admin-key";

/// The key the throughput clients present, when set: a created key with a rate limit far
/// above what the bench reaches, so every request pays for the limiter as a limited key's does.
static CLIENT_KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Jobs in the throughput run.
    pub jobs: usize,
    /// Concurrent CreateJob callers.
    pub creators: usize,
    /// Concurrent workers (each an ActivateJobs + CompleteJob loop).
    pub workers: usize,
    /// max_jobs_to_activate of each worker.
    pub batch: i32,
    /// Samples of the wake-up latency of an idle, long-polling worker.
    pub wake_samples: usize,
    /// Jobs in the Wasm run (run by the `echo` example handler); 0 skips it.
    pub wasm_jobs: usize,
    /// Attempts in the sandbox-overhead run; 0 skips it.
    pub sandbox_samples: usize,
    /// Jobs created with CreateJobs (1,000 per call) in the batch-creation run; 0 skips it.
    pub batch_jobs: usize,
    /// Fires of a 1s interval trigger whose lateness is measured; 0 skips it.
    pub trigger_fires: usize,
    /// Idle triggers whose CPU cost is measured; 0 skips it.
    pub idle_triggers: usize,
    /// Whether the clients present a rate-limited key (whose limit is never reached) rather
    /// than the unlimited admin key.
    pub rate_limited: bool,
    /// The well-behaved tenant beside a hostile one.
    pub hostile: hostile::HostileOptions,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub jobs: usize,
    pub creators: usize,
    pub workers: usize,
    pub batch: i32,
    /// Whether the clients presented a rate-limited key (limit never reached).
    pub rate_limited_key: bool,
    pub seconds: f64,
    /// Created, activated and completed per second, end to end.
    pub jobs_per_second: f64,
    /// The same with the workers acknowledging each activation's jobs in one CompleteJobs.
    pub batched_acks_jobs_per_second: f64,
    pub wake_p50_ms: f64,
    pub wake_p99_ms: f64,
    pub wake_max_ms: f64,
    /// Jobs created over gRPC and completed by the `echo` Wasm handler per second.
    pub wasm_jobs_per_second: f64,
    /// One attempt of `echo` in a fresh sandbox (store, instance, call), in microseconds.
    pub sandbox_p50_us: f64,
    pub sandbox_p99_us: f64,
    /// Jobs created per second with CreateJobs, 1,000 per call, each call one durable write.
    pub batch_create_jobs_per_second: f64,
    /// Job creation time minus scheduled fire time, in ms (the job's timestamps are whole ms).
    pub trigger_late_p50_ms: f64,
    pub trigger_late_max_ms: f64,
    pub idle_triggers: usize,
    /// CPU used by the whole idle process, in percent of one core, before the idle triggers
    /// were created and after.
    pub idle_cpu_percent: f64,
    pub idle_triggers_cpu_percent: f64,
    /// A well-behaved tenant's job latency beside a hostile tenant.
    pub hostile: hostile::HostileReport,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    #[error("gRPC: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("cannot connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

type Client = JobsServiceClient<Channel>;

fn keyed<T>(message: T) -> Request<T> {
    keyed_as(CLIENT_KEY.get().map_or(KEY, String::as_str), message)
}

/// A request presenting `key`.
fn keyed_as<T>(key: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().expect("ascii"));
    request
}

/// Starts a fresh server on loopback with its data in a new temporary directory named after
/// `name`; answers the directory, the server, and gRPC and REST clients with the admin key.
async fn start_server(
    name: &str,
) -> Result<(std::path::PathBuf, crate::RunningServer, Client, RestClient), BenchError> {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config::local(&dir);
    config.admin_key = Some(KEY.into());
    let server = start(config).await?;
    let channel = Channel::from_shared(format!("http://{}", server.grpc_addr))
        .expect("valid address")
        .connect()
        .await?;
    let client = JobsServiceClient::new(channel);
    let rest = RestClient::new(&format!("http://{}", server.http_addr), Some(KEY.into()));
    Ok((dir, server, client, rest))
}

/// Runs the benchmark against a fresh server on loopback with its data in a temporary
/// directory on disk.
pub async fn run(options: BenchOptions) -> Result<BenchReport, BenchError> {
    let (dir, server, client, rest) = start_server("jobhost-bench").await?;
    if options.rate_limited {
        let body = serde_json::json!({
            "name": "bench", "permissions": ["jobs"],
            "rate_limit": { "per_second": u32::MAX, "burst": u32::MAX },
        });
        let created = rest
            .call(reqwest::Method::POST, "/api/v1/keys", Some(body))
            .await
            .map_err(refused)?;
        if let Some(key) = created["key"].as_str() {
            let _ = CLIENT_KEY.set(key.to_string());
        }
    }
    let (seconds, jobs_per_second) = throughput(&client, &options, Acks::OneByOne).await?;
    let (_, batched_acks_jobs_per_second) = throughput(&client, &options, Acks::Batched).await?;
    let mut wake = wake_latencies(&client, options.wake_samples).await?;
    wake.sort_by(f64::total_cmp);
    let at = |q: f64| quantile(&wake, q);
    let wasm_jobs_per_second = wasm_throughput(&client, &rest, &options).await?;
    let batch_create_jobs_per_second = batch_creation(&client, options.batch_jobs).await?;
    let mut sandbox = sandbox_overhead(options.sandbox_samples).await;
    sandbox.sort_by(f64::total_cmp);
    let mut lateness = trigger_lateness(&rest, options.trigger_fires).await?;
    lateness.sort_by(f64::total_cmp);
    let (idle_cpu_percent, idle_triggers_cpu_percent) =
        idle_trigger_cpu(&rest, options.idle_triggers).await?;
    let report = BenchReport {
        jobs: options.jobs,
        creators: options.creators,
        workers: options.workers,
        batch: options.batch,
        rate_limited_key: CLIENT_KEY.get().is_some(),
        seconds,
        jobs_per_second,
        batched_acks_jobs_per_second,
        wake_p50_ms: at(0.50),
        wake_p99_ms: at(0.99),
        wake_max_ms: wake.last().copied().unwrap_or(0.0),
        wasm_jobs_per_second,
        sandbox_p50_us: quantile(&sandbox, 0.5),
        sandbox_p99_us: quantile(&sandbox, 0.99),
        batch_create_jobs_per_second,
        trigger_late_p50_ms: quantile(&lateness, 0.5),
        trigger_late_max_ms: lateness.last().copied().unwrap_or(0.0),
        idle_triggers: options.idle_triggers,
        idle_cpu_percent,
        idle_triggers_cpu_percent,
        hostile: hostile::HostileReport::default(),
    };
    server.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    // On servers of their own, so the hostile tenant's leftovers disturb nothing else.
    let hostile = hostile::run(&options.hostile).await?;
    Ok(BenchReport { hostile, ..report })
}

/// How the throughput run's workers acknowledge their jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Acks {
    /// One CompleteJob per job, as stock workers do.
    OneByOne,
    /// One CompleteJobs per activation response.
    Batched,
}

async fn throughput(
    client: &Client,
    options: &BenchOptions,
    acks: Acks,
) -> Result<(f64, f64), BenchError> {
    let job_type = match acks {
        Acks::OneByOne => "bench",
        Acks::Batched => "bench-batched-acks",
    };
    let completed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    tasks.extend(spawn_creators(
        client,
        job_type,
        options.jobs,
        options.creators,
    ));
    for n in 0..options.workers {
        let mut client = client.clone();
        let completed = completed.clone();
        let total = options.jobs;
        let batch = options.batch;
        tasks.push(tokio::spawn(async move {
            while completed.load(Ordering::Relaxed) < total {
                let request = pb::ActivateJobsRequest {
                    r#type: job_type.into(),
                    worker: format!("bench-{n}"),
                    max_jobs_to_activate: batch,
                    request_timeout: Some(200),
                    ..Default::default()
                };
                let mut stream = client.activate_jobs(keyed(request)).await?.into_inner();
                while let Some(response) = stream.message().await? {
                    if acks == Acks::Batched {
                        let count = response.jobs.len();
                        let jobs = response
                            .jobs
                            .into_iter()
                            .map(|job| pb::CompleteJobRequest {
                                job_key: job.job_key,
                                variables: Default::default(),
                            })
                            .collect();
                        let answered = client
                            .complete_jobs(keyed(pb::CompleteJobsRequest { jobs }))
                            .await?
                            .into_inner();
                        if let Some(refused) = answered.results.iter().find(|r| !r.success) {
                            return Err(BenchError::Rpc(tonic::Status::internal(
                                refused.message.clone(),
                            )));
                        }
                        completed.fetch_add(count, Ordering::Relaxed);
                        continue;
                    }
                    let completions = response.jobs.into_iter().map(|job| {
                        let mut client = client.clone();
                        async move {
                            let request = pb::CompleteJobRequest {
                                job_key: job.job_key,
                                variables: Default::default(),
                            };
                            client.complete_job(keyed(request)).await
                        }
                    });
                    for result in futures::future::join_all(completions).await {
                        result?;
                        completed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok::<_, BenchError>(())
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok((seconds, options.jobs as f64 / seconds))
}

/// Creates `jobs` jobs with CreateJobs, 1,000 per call, from two callers at once; answers
/// jobs per second.
async fn batch_creation(client: &Client, jobs: usize) -> Result<f64, BenchError> {
    const PER_CALL: usize = crate::job::limits::MAX_JOBS_PER_BATCH;
    const CALLERS: usize = 2;
    if jobs == 0 {
        return Ok(0.0);
    }
    let calls = jobs.div_ceil(PER_CALL);
    let started = Instant::now();
    let mut callers = Vec::new();
    for caller in 0..CALLERS {
        let mut client = client.clone();
        callers.push(tokio::spawn(async move {
            for call in (caller..calls).step_by(CALLERS) {
                let count = PER_CALL.min(jobs - call * PER_CALL);
                let batch = (0..count)
                    .map(|n| pb::CreateJobRequest {
                        r#type: "bench-batch".into(),
                        variables: format!(r#"{{"n":{}}}"#, call * PER_CALL + n),
                        ..Default::default()
                    })
                    .collect();
                client
                    .create_jobs(keyed(pb::CreateJobsRequest { jobs: batch }))
                    .await?;
            }
            Ok::<(), BenchError>(())
        }));
    }
    for caller in callers {
        caller.await.expect("a batch caller panicked")?;
    }
    Ok(jobs as f64 / started.elapsed().as_secs_f64())
}

/// Starts `creators` tasks that create `jobs` jobs of `job_type` between them.
fn spawn_creators(
    client: &Client,
    job_type: &'static str,
    jobs: usize,
    creators: usize,
) -> Vec<tokio::task::JoinHandle<Result<(), BenchError>>> {
    (0..creators)
        .map(|n| {
            let mut client = client.clone();
            let count = jobs / creators + usize::from(n < jobs % creators);
            tokio::spawn(async move {
                for _ in 0..count {
                    let request = pb::CreateJobRequest {
                        r#type: job_type.into(),
                        variables: r#"{"n":1}"#.into(),
                        ..Default::default()
                    };
                    client.create_job(keyed(request)).await?;
                }
                Ok(())
            })
        })
        .collect()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let index = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(index).copied().unwrap_or(0.0)
}

/// Deploys `echo`, creates the jobs concurrently and waits until all are completed.
async fn wasm_throughput(
    client: &Client,
    rest: &RestClient,
    options: &BenchOptions,
) -> Result<f64, BenchError> {
    if options.wasm_jobs == 0 {
        return Ok(0.0);
    }
    let (_, echo) = crate::examples::EXAMPLES[0];
    rest.upload(
        "/api/v1/handlers?type=bench-wasm&max_concurrency=64",
        echo.to_vec(),
    )
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    let started = Instant::now();
    let creators = spawn_creators(client, "bench-wasm", options.wasm_jobs, options.creators);
    for creator in creators {
        creator
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
    }
    let mut client = client.clone();
    loop {
        let request = pb::ListJobsRequest {
            r#type: "bench-wasm".into(),
            state: "completed".into(),
            page_size: 1,
            ..Default::default()
        };
        let page = client.list_jobs(keyed(request)).await?.into_inner();
        let done = page.pagination.map_or(0, |p| p.total_count) as usize;
        if done >= options.wasm_jobs {
            return Ok(options.wasm_jobs as f64 / started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `echo` attempts one after another in fresh sandboxes; returns microseconds each.
async fn sandbox_overhead(samples: usize) -> Vec<f64> {
    if samples == 0 {
        return Vec::new();
    }
    let runtime = Runtime::new(RuntimeConfig {
        max_memory_mb: 64,
        max_concurrent_attempts: 4,
        cache_dir: None,
    })
    .expect("runtime");
    let (_, echo) = crate::examples::EXAMPLES[0];
    let handler = runtime.compile(echo).expect("echo compiles");
    let input = AttemptInput {
        key: "1".into(),
        job_type: "echo".into(),
        tenant_id: "default".into(),
        retries: 3,
        attempt: 1,
        variables: r#"{"n":1}"#.into(),
        custom_headers: Vec::new(),
        deadline_ms: 0,
    };
    let limits = AttemptLimits {
        memory_mb: 64,
        timeout: Duration::from_secs(10),
        fuel: None,
    };
    let mut micros = Vec::with_capacity(samples);
    for _ in 0..samples {
        let result = runtime
            .run(
                &handler,
                &input,
                limits,
                Capabilities::default(),
                Arc::default(),
            )
            .await;
        micros.push(result.duration.as_secs_f64() * 1e6);
    }
    micros
}

fn refused(error: crate::client::ClientError) -> BenchError {
    BenchError::Io(std::io::Error::other(error.to_string()))
}

/// Lets a 1s interval trigger fire `fires` times; returns how late each job was created.
async fn trigger_lateness(rest: &RestClient, fires: usize) -> Result<Vec<f64>, BenchError> {
    if fires == 0 {
        return Ok(Vec::new());
    }
    let definition =
        serde_json::json!({"name": "bench-tick", "type": "bench-tick", "interval": "1s"});
    let trigger = rest
        .call(reqwest::Method::POST, "/api/v1/triggers", Some(definition))
        .await
        .map_err(refused)?;
    let path = format!(
        "/api/v1/triggers/{}",
        trigger["id"].as_str().unwrap_or_default()
    );
    tokio::time::sleep(Duration::from_millis(fires as u64 * 1000 + 1200)).await;
    rest.call(reqwest::Method::DELETE, &path, None)
        .await
        .map_err(refused)?;
    let listing = "/api/v1/jobs?type=bench-tick&page_size=100";
    let jobs = rest
        .call(reqwest::Method::GET, listing, None)
        .await
        .map_err(refused)?;
    let epoch_ms = |text: &serde_json::Value| {
        text.as_str()
            .and_then(|t| crate::service::parse_time("t", t).ok())
    };
    Ok(jobs["jobs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|job| {
            let scheduled = epoch_ms(&job["custom_headers"]["jobhost-scheduled-at"])?;
            let created = epoch_ms(&job["created_at"])?;
            Some((created - scheduled) as f64)
        })
        .collect())
}

/// The CPU the whole idle process uses (percent of one core) without triggers, and after
/// `count` triggers that will not fire for months were created.
async fn idle_trigger_cpu(rest: &RestClient, count: usize) -> Result<(f64, f64), BenchError> {
    if count == 0 {
        return Ok((0.0, 0.0));
    }
    let without = idle_cpu_percent().await;
    let rest = Arc::new(rest.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let mut creators = Vec::new();
    for _ in 0..16 {
        let (rest, next) = (rest.clone(), next.clone());
        creators.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return Ok::<(), BenchError>(());
                }
                // Midnight of January 1st: months away whenever the bench runs, except on New
                // Year's Eve.
                let definition = serde_json::json!({
                    "name": format!("idle-{n}"), "type": "bench-idle", "cron": "0 0 1 1 *"
                });
                rest.call(reqwest::Method::POST, "/api/v1/triggers", Some(definition))
                    .await
                    .map_err(refused)?;
            }
        }));
    }
    for creator in creators {
        creator
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok((without, idle_cpu_percent().await))
}

/// CPU used by this process over five seconds in which the bench itself does nothing.
async fn idle_cpu_percent() -> f64 {
    let Some(before) = process_cpu_seconds() else {
        return f64::NAN;
    };
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let used = process_cpu_seconds().unwrap_or(before) - before;
    used / started.elapsed().as_secs_f64() * 100.0
}

/// User plus system CPU time of this process, from `/proc/self/stat` (Linux).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesized command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // The kernel's USER_HZ is 100 on every Linux architecture this runs on.
    Some(ticks / 100.0)
}

/// Time from sending CreateJob to an idle long-polling worker holding the job, in ms.
async fn wake_latencies(client: &Client, samples: usize) -> Result<Vec<f64>, BenchError> {
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let mut worker = client.clone();
        let request = pb::ActivateJobsRequest {
            r#type: "wake".into(),
            worker: "idle".into(),
            max_jobs_to_activate: 1,
            request_timeout: Some(10_000),
            ..Default::default()
        };
        let mut stream = worker.activate_jobs(keyed(request)).await?.into_inner();
        // Let the poll reach the store and wait there before the job is created.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let sent = Instant::now();
        let mut creator = client.clone();
        let create = tokio::spawn(async move {
            let request = pb::CreateJobRequest {
                r#type: "wake".into(),
                ..Default::default()
            };
            creator.create_job(keyed(request)).await
        });
        let response = stream.message().await?;
        let woken = sent.elapsed();
        create
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
        if let Some(job) = response.and_then(|r| r.jobs.into_iter().next()) {
            latencies.push(woken.as_secs_f64() * 1000.0);
            let request = pb::CompleteJobRequest {
                job_key: job.job_key,
                variables: Default::default(),
            };
            worker.complete_job(keyed(request)).await?;
        }
    }
    Ok(latencies)
}

impl BenchReport {
    pub fn table(&self) -> String {
        format!(
            "metric                         value\n\
             jobs (create+activate+complete) {}\n\
             creators / workers / batch     {} / {} / {}\n\
             clients' key                   {}\n\
             elapsed                        {:.2} s\n\
             throughput                     {:.0} jobs/s\n\
             throughput, CompleteJobs acks  {:.0} jobs/s\n\
             idle worker wake-up p50        {:.3} ms\n\
             idle worker wake-up p99        {:.3} ms\n\
             idle worker wake-up max        {:.3} ms\n\
             Wasm (echo) throughput         {:.0} jobs/s\n\
             sandbox per attempt p50 / p99  {:.1} / {:.1} us\n\
             batch creation (CreateJobs)    {:.0} jobs/s\n\
             trigger fire late p50 / max    {:.0} / {:.0} ms\n\
             idle CPU, no triggers          {:.2} % of a core\n\
             idle CPU, {} triggers       {:.2} % of a core\n\
             tenant alone: created->completed p50 / p99        {:.0} / {:.0} ms\n\
             beside a hostile tenant: p50 / p99                {:.0} / {:.0} ms ({} hostile attempts ended meanwhile, {} before)",
            self.jobs,
            self.creators,
            self.workers,
            self.batch,
            if self.rate_limited_key {
                "rate-limited (never reached)"
            } else {
                "admin (unlimited)"
            },
            self.seconds,
            self.jobs_per_second,
            self.batched_acks_jobs_per_second,
            self.wake_p50_ms,
            self.wake_p99_ms,
            self.wake_max_ms,
            self.wasm_jobs_per_second,
            self.sandbox_p50_us,
            self.sandbox_p99_us,
            self.batch_create_jobs_per_second,
            self.trigger_late_p50_ms,
            self.trigger_late_max_ms,
            self.idle_cpu_percent,
            self.idle_triggers,
            self.idle_triggers_cpu_percent,
            self.hostile.alone_p50_ms,
            self.hostile.alone_p99_ms,
            self.hostile.beside_hostile_p50_ms,
            self.hostile.beside_hostile_p99_ms,
            self.hostile.hostile_attempts_ended,
            self.hostile.hostile_attempts_ended_before,
        )
    }
}
