//! `jobhost bench`: end-to-end throughput and wake-up latency of a real server over gRPC,
//! every change durable. Prints a table; can write the numbers as JSON.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tonic::Request;
use tonic::transport::Channel;

use crate::api::grpc::pb;
use crate::api::grpc::pb::jobs_service_client::JobsServiceClient;
use crate::server::{Config, start};

const KEY: &str = "bench-admin-key";

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
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub jobs: usize,
    pub creators: usize,
    pub workers: usize,
    pub batch: i32,
    pub seconds: f64,
    /// Created, activated and completed per second, end to end.
    pub jobs_per_second: f64,
    pub wake_p50_ms: f64,
    pub wake_p99_ms: f64,
    pub wake_max_ms: f64,
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
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", KEY.parse().expect("ascii"));
    request
}

/// Runs the benchmark against a fresh server on loopback with its data in a temporary
/// directory on disk.
pub async fn run(options: BenchOptions) -> Result<BenchReport, BenchError> {
    let dir = std::env::temp_dir().join(format!("jobhost-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config::local(&dir);
    config.admin_key = Some(KEY.into());
    let server = start(config).await?;
    let channel = Channel::from_shared(format!("http://{}", server.grpc_addr))
        .expect("valid address")
        .connect()
        .await?;
    let client = JobsServiceClient::new(channel);
    let (seconds, jobs_per_second) = throughput(&client, &options).await?;
    let mut wake = wake_latencies(&client, options.wake_samples).await?;
    wake.sort_by(f64::total_cmp);
    let at = |q: f64| {
        wake.get(((wake.len() as f64 * q) as usize).min(wake.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let report = BenchReport {
        jobs: options.jobs,
        creators: options.creators,
        workers: options.workers,
        batch: options.batch,
        seconds,
        jobs_per_second,
        wake_p50_ms: at(0.50),
        wake_p99_ms: at(0.99),
        wake_max_ms: wake.last().copied().unwrap_or(0.0),
    };
    server.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}

async fn throughput(client: &Client, options: &BenchOptions) -> Result<(f64, f64), BenchError> {
    let completed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..options.creators {
        let mut client = client.clone();
        let count =
            options.jobs / options.creators + usize::from(n < options.jobs % options.creators);
        tasks.push(tokio::spawn(async move {
            for _ in 0..count {
                let request = pb::CreateJobRequest {
                    r#type: "bench".into(),
                    variables: r#"{"n":1}"#.into(),
                    ..Default::default()
                };
                client.create_job(keyed(request)).await?;
            }
            Ok::<_, BenchError>(())
        }));
    }
    for n in 0..options.workers {
        let mut client = client.clone();
        let completed = completed.clone();
        let total = options.jobs;
        let batch = options.batch;
        tasks.push(tokio::spawn(async move {
            while completed.load(Ordering::Relaxed) < total {
                let request = pb::ActivateJobsRequest {
                    r#type: "bench".into(),
                    worker: format!("bench-{n}"),
                    max_jobs_to_activate: batch,
                    request_timeout: Some(200),
                    ..Default::default()
                };
                let mut stream = client.activate_jobs(keyed(request)).await?.into_inner();
                while let Some(response) = stream.message().await? {
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
             elapsed                        {:.2} s\n\
             throughput                     {:.0} jobs/s\n\
             idle worker wake-up p50        {:.3} ms\n\
             idle worker wake-up p99        {:.3} ms\n\
             idle worker wake-up max        {:.3} ms",
            self.jobs,
            self.creators,
            self.workers,
            self.batch,
            self.seconds,
            self.jobs_per_second,
            self.wake_p50_ms,
            self.wake_p99_ms,
            self.wake_max_ms
        )
    }
}
