//! `jobhost bench` under hostile tenants: how long a well-behaved tenant's new Wasm jobs take
//! from creation to completion, alone and while another tenant runs endless loops, memory
//! bombs, traps and output floods behind a deep backlog.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{BenchError, Client, KEY, ServerPlacement, quantile};
use crate::api::grpc::pb;
use crate::client::RestClient;

/// The misbehaving handlers of the hostile tenant: (job type, component, share of its jobs).
const HOSTILE: [(&str, &[u8], usize); 4] = [
    (
        "spin",
        include_bytes!(concat!(env!("JOBHOST_PLUGINS_DIR"), "/spin.wasm")),
        4,
    ),
    (
        "leak",
        include_bytes!(concat!(env!("JOBHOST_PLUGINS_DIR"), "/leak.wasm")),
        2,
    ),
    (
        "trap",
        include_bytes!(concat!(env!("JOBHOST_PLUGINS_DIR"), "/trap.wasm")),
        1,
    ),
    (
        "flood",
        include_bytes!(concat!(env!("JOBHOST_PLUGINS_DIR"), "/huge_output.wasm")),
        1,
    ),
];

const GOOD_TENANT: &str = "good";
const HOSTILE_TENANT: &str = "hostile";

#[derive(Clone, Debug)]
pub struct HostileOptions {
    /// Jobs the well-behaved tenant creates in each phase; 0 skips the measurement.
    pub good_jobs: usize,
    /// Time between two of its jobs.
    pub good_interval: Duration,
    /// Jobs in the hostile tenant's backlog.
    pub backlog: usize,
    /// How long one hostile attempt may run (the spinning ones run this long).
    pub hostile_timeout_ms: u64,
}

/// Created-to-completed times of the well-behaved tenant's jobs, in ms (the job's timestamps
/// are whole milliseconds).
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostileReport {
    pub alone_p50_ms: f64,
    pub alone_p99_ms: f64,
    pub beside_hostile_p50_ms: f64,
    pub beside_hostile_p99_ms: f64,
    /// Hostile attempts that ended while the well-behaved tenant was measured.
    pub hostile_attempts_ended: u64,
    /// Hostile attempts that had ended before the measurement began.
    pub hostile_attempts_ended_before: u64,
}

/// Measures on a fresh server of its own, placed where `placement` says.
pub async fn run(
    options: &HostileOptions,
    placement: &ServerPlacement,
) -> Result<HostileReport, BenchError> {
    if options.good_jobs == 0 {
        return Ok(HostileReport::default());
    }
    let started = super::start_server("jobhost-bench-hostile", placement).await?;
    let (mut client, rest) = (started.client.clone(), &started.rest);
    let (_, echo) = crate::examples::EXAMPLES[0];
    deploy(rest, GOOD_TENANT, "echo", echo, 30_000).await?;
    let alone = good_phase(&mut client, options).await?;
    // The backlog is queued before its handlers arrive, so all of it is there at once.
    let weights: usize = HOSTILE.iter().map(|(_, _, share)| share).sum();
    for (job_type, _, share) in HOSTILE {
        for _ in 0..options.backlog * share / weights {
            create(&mut client, HOSTILE_TENANT, job_type).await?;
        }
    }
    for (job_type, component, _) in HOSTILE {
        deploy(
            rest,
            HOSTILE_TENANT,
            job_type,
            component,
            options.hostile_timeout_ms,
        )
        .await?;
    }
    // Let the hostile attempts take every slot they may hold before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ended_before = hostile_attempts(rest).await?;
    let beside = good_phase(&mut client, options).await?;
    let ended = hostile_attempts(rest).await? - ended_before;
    started.server.shutdown().await?;
    Ok(HostileReport {
        alone_p50_ms: quantile(&alone, 0.5),
        alone_p99_ms: quantile(&alone, 0.99),
        beside_hostile_p50_ms: quantile(&beside, 0.5),
        beside_hostile_p99_ms: quantile(&beside, 0.99),
        hostile_attempts_ended: ended,
        hostile_attempts_ended_before: ended_before,
    })
}

/// A request as the admin: the hostile run's server knows no other key.
fn keyed<T>(message: T) -> tonic::Request<T> {
    super::keyed_as(KEY, message)
}

async fn deploy(
    rest: &RestClient,
    tenant: &str,
    job_type: &str,
    component: &[u8],
    timeout_ms: u64,
) -> Result<(), BenchError> {
    let path = format!(
        "/api/v1/handlers?type={job_type}&tenant={tenant}&timeout_ms={timeout_ms}&max_retries=1"
    );
    rest.upload(&path, component.to_vec())
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(())
}

async fn create(client: &mut Client, tenant: &str, job_type: &str) -> Result<String, BenchError> {
    let request = pb::CreateJobRequest {
        r#type: job_type.into(),
        tenant_id: tenant.into(),
        variables: r#"{"name":"bench"}"#.into(),
        retries: Some(1),
        ..Default::default()
    };
    Ok(client
        .create_job(keyed(request))
        .await?
        .into_inner()
        .job_key)
}

/// Creates the well-behaved tenant's jobs at a steady pace; answers their created-to-completed
/// times, sorted.
async fn good_phase(client: &mut Client, options: &HostileOptions) -> Result<Vec<f64>, BenchError> {
    let mut keys = Vec::with_capacity(options.good_jobs);
    let mut next = Instant::now();
    for _ in 0..options.good_jobs {
        tokio::time::sleep_until(next.into()).await;
        next += options.good_interval;
        keys.push(create(client, GOOD_TENANT, "echo").await?);
    }
    let mut latencies = Vec::with_capacity(keys.len());
    let waited = Instant::now();
    for key in keys {
        loop {
            let request = pb::GetJobRequest {
                job_key: key.clone(),
            };
            let job = client.get_job(keyed(request)).await?.into_inner().job;
            match job {
                Some(job) if job.state == "completed" => {
                    latencies.push((job.finished_at - job.created_at) as f64);
                    break;
                }
                _ if waited.elapsed() > Duration::from_secs(120) => {
                    return Err(std::io::Error::other(format!(
                        "job {key} of the well-behaved tenant did not complete in 120 s"
                    ))
                    .into());
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

/// Hostile attempts that have ended so far, as the server's metrics count them.
async fn hostile_attempts(rest: &RestClient) -> Result<u64, BenchError> {
    let text = rest
        .download("/metrics")
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .text()
        .await
        .map_err(std::io::Error::other)?;
    let tenant = format!("tenant=\"{HOSTILE_TENANT}\"");
    Ok(text
        .lines()
        .filter(|line| line.starts_with("jobhost_wasm_attempt_duration") && line.contains(&tenant))
        .filter_map(|line| line.split_once("_count{")?.1.rsplit_once(' '))
        .filter_map(|(_, count)| count.trim().parse::<f64>().ok())
        .sum::<f64>() as u64)
}
