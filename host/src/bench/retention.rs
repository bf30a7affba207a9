//! `jobhost bench-retention`: a steady load of gRPC workers on a server that deletes completed
//! jobs after a short age, sampling the jobs stored, the disk the store takes and the process's
//! memory, to show whether they level off rather than grow with the jobs done.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tonic::transport::Channel;

use super::{BenchError, Client, KEY, complete_all, keyed};
use crate::api::grpc::pb;
use crate::api::grpc::pb::jobs_service_client::JobsServiceClient;
use crate::server::{Config, start};

#[derive(Clone, Debug)]
pub struct RetentionOptions {
    /// How long the load runs.
    pub duration: Duration,
    /// How long completed jobs are kept.
    pub retain_ms: i64,
    /// Time between samples.
    pub every: Duration,
    pub creators: usize,
    pub workers: usize,
}

#[derive(Debug, Serialize)]
pub struct RetentionSample {
    pub seconds: f64,
    pub completed: u64,
    /// Jobs in the store (every state).
    pub stored: u64,
    /// Bytes the store's files take on disk (allocated blocks).
    pub disk_bytes: u64,
    /// Resident memory of the process (server and clients).
    pub rss_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct RetentionReport {
    pub retain_ms: i64,
    pub seconds: f64,
    pub jobs_per_second: f64,
    pub samples: Vec<RetentionSample>,
}

impl RetentionReport {
    pub fn table(&self) -> String {
        let mut text = format!(
            "completed jobs kept {} ms; {:.0} jobs/s over {:.0} s\n{:>8} {:>12} {:>10} {:>10} {:>10}\n",
            self.retain_ms,
            self.jobs_per_second,
            self.seconds,
            "seconds",
            "completed",
            "stored",
            "disk MiB",
            "RSS MiB"
        );
        for sample in &self.samples {
            text.push_str(&format!(
                "{:>8.0} {:>12} {:>10} {:>10.1} {:>10.1}\n",
                sample.seconds,
                sample.completed,
                sample.stored,
                sample.disk_bytes as f64 / 1048576.0,
                sample.rss_bytes as f64 / 1048576.0,
            ));
        }
        text
    }
}

/// Runs the load on a fresh in-process server whose data lives in a temporary directory.
pub async fn run(options: RetentionOptions) -> Result<RetentionReport, BenchError> {
    let data = super::process::ScratchDir::new("jobhost-bench-retention");
    let mut config = Config::local(data.path());
    config.admin_key = Some(KEY.into());
    config.retention.completed_ms = Some(options.retain_ms.max(1));
    let server = start(config).await?;
    let channel = Channel::from_shared(format!("http://{}", server.grpc_addr))
        .expect("valid address")
        .connect()
        .await?;
    let client = JobsServiceClient::new(channel);
    let stop = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..options.creators.max(1) {
        load.push(tokio::spawn(create_until(client.clone(), stop.clone())));
    }
    for n in 0..options.workers.max(1) {
        load.push(tokio::spawn(work_until(
            client.clone(),
            n,
            stop.clone(),
            completed.clone(),
        )));
    }
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut sampler = client.clone();
    while started.elapsed() < options.duration {
        let left = options.duration.saturating_sub(started.elapsed());
        tokio::time::sleep(options.every.min(left)).await;
        samples.push(RetentionSample {
            seconds: started.elapsed().as_secs_f64(),
            completed: completed.load(Ordering::Relaxed),
            stored: stored_jobs(&mut sampler).await?,
            disk_bytes: disk_bytes(data.path()),
            rss_bytes: resident_bytes(),
        });
    }
    stop.store(true, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    for task in load {
        task.await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
    }
    server.shutdown().await?;
    Ok(RetentionReport {
        retain_ms: options.retain_ms,
        seconds,
        jobs_per_second: completed.load(Ordering::Relaxed) as f64 / seconds,
        samples,
    })
}

async fn create_until(mut client: Client, stop: Arc<AtomicBool>) -> Result<(), BenchError> {
    while !stop.load(Ordering::Relaxed) {
        let request = pb::CreateJobRequest {
            r#type: "bench-retention".into(),
            variables: r#"{"n":1}"#.into(),
            ..Default::default()
        };
        client.create_job(keyed(request)).await?;
    }
    Ok(())
}

/// Long-polls and acknowledges each activation's jobs with one CompleteJobs.
async fn work_until(
    mut client: Client,
    n: usize,
    stop: Arc<AtomicBool>,
    completed: Arc<AtomicU64>,
) -> Result<(), BenchError> {
    while !stop.load(Ordering::Relaxed) {
        let request = pb::ActivateJobsRequest {
            r#type: "bench-retention".into(),
            worker: format!("retention-{n}"),
            max_jobs_to_activate: 64,
            request_timeout: Some(200),
            ..Default::default()
        };
        let mut stream = client.activate_jobs(keyed(request)).await?.into_inner();
        while let Some(response) = stream.message().await? {
            let count = response.jobs.len() as u64;
            client
                .complete_jobs(keyed(complete_all(response.jobs)))
                .await?;
            completed.fetch_add(count, Ordering::Relaxed);
        }
    }
    Ok(())
}

async fn stored_jobs(client: &mut Client) -> Result<u64, BenchError> {
    let request = pb::ListJobsRequest {
        page_size: 1,
        ..Default::default()
    };
    let page = client.list_jobs(keyed(request)).await?.into_inner();
    Ok(page.pagination.map_or(0, |p| p.total_count as u64))
}

/// Bytes allocated on disk to the files under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => disk_bytes(&entry.path()),
            Ok(meta) => allocated(&meta),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(unix)]
fn allocated(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    // Blocks, not length: sled's files may be sparse or preallocated.
    meta.blocks() * 512
}

#[cfg(not(unix))]
fn allocated(meta: &std::fs::Metadata) -> u64 {
    meta.len()
}

/// This process's resident memory now (Linux; 0 elsewhere).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}
