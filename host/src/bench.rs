//! `jobhost bench`: end-to-end throughput (external gRPC workers and the Wasm executor) and
//! wake-up latency of a real server, every change durable, and the cost of one attempt in a
//! fresh sandbox; how late triggers fire, and what idle triggers cost. The server runs in the
//! bench process or as a child process of its own; a peer system (BullMQ) can be measured in
//! the same run, round by round beside jobhost. Prints a table; can write the numbers as JSON.

pub mod hostile;
pub mod listing;
pub mod peer;
pub mod process;
pub mod retention;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tonic::Request;
use tonic::transport::Channel;

use crate::api::grpc::pb;
use crate::api::grpc::pb::jobs_service_client::JobsServiceClient;
use crate::child_server::{ChildServer, ServeCommand};
use crate::client::RestClient;
use crate::runtime::{AttemptInput, AttemptLimits, Capabilities, Runtime, RuntimeConfig};
use crate::server::{Config, start};
use peer::{BullMq, PeerSystem, RoundFigures, median};
use process::ScratchDir;

const KEY: &str = "bench-admin-key";

/// Triggers one tenant may have on the bench's servers: room for the idle-trigger figure's
/// (`--idle-triggers`, 10,000 by default) far above the default quota.
const TRIGGERS_PER_TENANT: usize = 1_000_000;

/// What jobhost promises for every acknowledged change, as the comparison states it.
const JOBHOST_DURABILITY: &str = "every acknowledged change flushed to disk (sled flush, fsync) \
                                  before the reply; concurrent changes share one flush";

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
    /// Where the servers under measurement run.
    pub placement: ServerPlacement,
    /// Rounds of the figures comparable with a peer (gRPC workers, Wasm, batch creation,
    /// wake-up); each is reported, and the report's figures are their medians.
    pub rounds: usize,
    /// A system measured beside jobhost in the same run.
    pub peer: Option<Peer>,
    /// Jobs of another type stored before the figures are taken (CreateJobs, 1,000 per call),
    /// to measure against a full store rather than an empty one.
    pub stored: usize,
}

/// Where the bench's servers run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerPlacement {
    /// In the bench process, on the measuring clients' runtime.
    InProcess,
    /// `binary serve` as a child process; the clients alone run in the bench process.
    ChildProcess { binary: PathBuf },
}

/// A system to measure beside jobhost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// BullMQ on a local Redis, installed under `install_dir` when missing.
    BullMq { install_dir: PathBuf },
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// `in-process` or `child-process`.
    pub server: &'static str,
    /// What the server promises for an acknowledged change.
    pub durability: &'static str,
    pub jobs: usize,
    pub creators: usize,
    pub workers: usize,
    pub batch: i32,
    /// Whether the clients presented a rate-limited key (limit never reached).
    pub rate_limited_key: bool,
    /// Jobs of another type stored before the figures.
    pub stored_before: usize,
    pub seconds: f64,
    /// Created, activated and completed per second, end to end.
    pub jobs_per_second: f64,
    /// The same with the workers acknowledging each activation's jobs in one CompleteJobs.
    pub batched_acks_jobs_per_second: f64,
    pub wake_p50_ms: f64,
    pub wake_p99_ms: f64,
    pub wake_max_ms: f64,
    /// Peak resident memory of the process the server ran in, at the end of the figures: the
    /// bench process itself (server and clients) unless the server had its own.
    pub peak_rss_mib: f64,
    /// The wake-up measured from the create's acknowledgement instead of its sending.
    pub wake_after_ack_p50_ms: f64,
    pub wake_after_ack_p99_ms: f64,
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
    /// CPU used by the whole idle server process (with the in-process server: the bench
    /// process), in percent of one core, before the idle triggers were created and after.
    pub idle_cpu_percent: f64,
    pub idle_triggers_cpu_percent: f64,
    /// A well-behaved tenant's job latency beside a hostile tenant.
    pub hostile: hostile::HostileReport,
    /// Each round of the comparable figures; the figures above are their medians.
    pub rounds: Vec<RoundReport>,
    /// The peer's medians and jobhost's ratios to them, when a peer was measured.
    pub peer: Option<PeerComparison>,
    /// CPU and peak memory of the server process per figure (child process only).
    pub server_usage: Vec<ServerUsage>,
}

/// One round of the comparable figures.
#[derive(Debug, Serialize)]
pub struct RoundReport {
    /// From 1.
    pub round: usize,
    /// Whether the peer took each figure before jobhost in this round (rounds alternate).
    pub peer_first: bool,
    pub jobhost: RoundFigures,
    pub peer: Option<RoundFigures>,
    /// jobhost's figures divided by the peer's.
    pub ratios: Option<RoundFigures>,
}

/// The peer beside jobhost: what it ran on, both sides' medians over the rounds, and the
/// ratios jobhost/peer of those medians (above 1 jobhost is faster for a rate, slower for a
/// latency).
#[derive(Debug, Serialize)]
pub struct PeerComparison {
    pub system: Option<PeerSystem>,
    pub jobhost_durability: &'static str,
    pub jobhost_median: RoundFigures,
    pub peer_median: RoundFigures,
    pub ratios: RoundFigures,
}

/// What the server process used while one figure was taken.
#[derive(Debug, Serialize)]
pub struct ServerUsage {
    pub figure: &'static str,
    /// The round, for the figures taken in rounds.
    pub round: Option<usize>,
    /// Jobs (or samples) of the figure.
    pub jobs: usize,
    /// User plus system CPU of the server process during the figure.
    pub cpu_seconds: f64,
    pub cpu_us_per_job: f64,
    /// The process's peak resident memory so far (VmHWM).
    pub peak_rss_mib: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    #[error(transparent)]
    ServerProcess(#[from] crate::child_server::ChildServerError),
    #[error(transparent)]
    Peer(#[from] peer::PeerError),
    #[error("gRPC: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("cannot connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

type Client = JobsServiceClient<Channel>;

/// How long a server in a child process may take from spawn to serving, and from SIGTERM to
/// exit.
const CHILD_START_BOUND: Duration = Duration::from_secs(60);
const CHILD_STOP_BOUND: Duration = Duration::from_secs(30);

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

/// A server under measurement, wherever it runs.
enum BenchServer {
    InProcess(crate::RunningServer),
    Child(ChildServer),
}

impl BenchServer {
    /// The server's own process, when it has one apart from the bench.
    fn pid(&self) -> Option<u32> {
        match self {
            BenchServer::InProcess(_) => None,
            BenchServer::Child(child) => Some(child.pid()),
        }
    }

    async fn shutdown(self) -> Result<(), BenchError> {
        match self {
            BenchServer::InProcess(server) => server.shutdown().await?,
            BenchServer::Child(child) => child.stop(CHILD_STOP_BOUND).await?,
        }
        Ok(())
    }
}

/// A started server with its data directory (removed when dropped, after the server) and
/// gRPC and REST clients with the admin key.
struct Started {
    server: BenchServer,
    client: Client,
    rest: RestClient,
    data: ScratchDir,
}

/// Starts a fresh server on loopback, where `placement` says, with its data in a new
/// temporary directory named after `name`.
async fn start_server(name: &str, placement: &ServerPlacement) -> Result<Started, BenchError> {
    let data = ScratchDir::new(name);
    let (server, grpc_addr, http_addr) = match placement {
        ServerPlacement::InProcess => {
            let mut config = Config::local(data.path());
            config.admin_key = Some(KEY.into());
            config.quotas.triggers_per_tenant = TRIGGERS_PER_TENANT;
            let server = start(config).await?;
            let (grpc, http) = (server.grpc_addr.to_string(), server.http_addr.to_string());
            (BenchServer::InProcess(server), grpc, http)
        }
        ServerPlacement::ChildProcess { binary } => {
            let command = ServeCommand {
                binary,
                data_dir: data.path(),
                admin_key: KEY,
                args: vec![
                    "--max-triggers-per-tenant".into(),
                    TRIGGERS_PER_TENANT.to_string(),
                ],
                show_stderr: true,
            };
            let child = ChildServer::start(command, CHILD_START_BOUND).await?;
            let (grpc, http) = (child.grpc_addr.clone(), child.http_addr.clone());
            (BenchServer::Child(child), grpc, http)
        }
    };
    let channel = Channel::from_shared(format!("http://{grpc_addr}"))
        .expect("valid address")
        .connect()
        .await?;
    let client = JobsServiceClient::new(channel);
    let rest = RestClient::new(&format!("http://{http_addr}"), Some(KEY.into()));
    Ok(Started {
        server,
        client,
        rest,
        data,
    })
}

/// Records what the server process uses per figure; records nothing for an in-process server,
/// whose process is also the clients'.
struct Meter {
    pid: Option<u32>,
    usages: Vec<ServerUsage>,
}

impl Meter {
    /// What the server process has used so far.
    fn now(&self) -> Option<process::Usage> {
        process::usage(Some(self.pid?))
    }

    fn record(
        &mut self,
        figure: &'static str,
        round: Option<usize>,
        jobs: usize,
        before: Option<process::Usage>,
    ) {
        // A skipped figure (no jobs) used nothing worth a row.
        let (Some(before), Some(after), 1..) = (before, self.now(), jobs) else {
            return;
        };
        let cpu_seconds = after.cpu_seconds - before.cpu_seconds;
        self.usages.push(ServerUsage {
            figure,
            round,
            jobs,
            cpu_seconds,
            cpu_us_per_job: cpu_seconds * 1e6 / jobs as f64,
            peak_rss_mib: after.peak_rss_bytes as f64 / (1024.0 * 1024.0),
        });
    }
}

/// Awaits jobhost's figure and the peer's (if any) one after the other, the peer first when
/// `peer_first`, so that neither always runs on a machine the other just warmed or loaded.
async fn side_by_side<A, B>(
    peer_first: bool,
    jobhost: impl Future<Output = Result<A, BenchError>>,
    peer: Option<impl Future<Output = Result<B, peer::PeerError>>>,
) -> Result<(A, Option<B>), BenchError> {
    let Some(peer) = peer else {
        return Ok((jobhost.await?, None));
    };
    if peer_first {
        let theirs = peer.await?;
        Ok((jobhost.await?, Some(theirs)))
    } else {
        let ours = jobhost.await?;
        Ok((ours, Some(peer.await?)))
    }
}

/// Runs the benchmark against fresh servers on loopback with their data in temporary
/// directories on disk.
pub async fn run(options: BenchOptions) -> Result<BenchReport, BenchError> {
    // Installed and started before jobhost's server, so that nothing is measured meanwhile.
    let mut bullmq = match &options.peer {
        Some(Peer::BullMq { install_dir }) => Some(BullMq::prepare(install_dir).await?),
        None => None,
    };
    let started = start_server("jobhost-bench", &options.placement).await?;
    let (client, rest) = (&started.client, &started.rest);
    let mut meter = Meter {
        pid: started.server.pid(),
        usages: Vec::new(),
    };
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
    let rounds = options.rounds.max(1);
    let verbose = rounds > 1 || bullmq.is_some();
    let say = |what: String| {
        if verbose {
            eprintln!("{what}");
        }
    };
    if options.stored > 0 {
        say(format!(
            "storing {} jobs before the figures",
            options.stored
        ));
        create_in_batches(client, "bench-stored", options.stored).await?;
    }
    let mut reports = Vec::with_capacity(rounds);
    let mut seconds = Vec::with_capacity(rounds);
    let mut wake_max_ms: f64 = 0.0;
    let mut wake_after_ack = Vec::new();
    let (jobs, creators, wasm_jobs) = (options.jobs, options.creators, options.wasm_jobs);
    let (batch_jobs, wake_samples) = (options.batch_jobs, options.wake_samples);
    for round in 1..=rounds {
        let peer_first = round % 2 == 0;
        let order = if peer_first {
            "peer first"
        } else {
            "jobhost first"
        };
        say(format!("round {round}/{rounds} ({order}): gRPC workers"));
        let ((elapsed, workers), peer_workers) = side_by_side(
            peer_first,
            async {
                let before = meter.now();
                let measured = throughput(client, &options, Acks::OneByOne).await?;
                meter.record("gRPC workers (CompleteJob)", Some(round), jobs, before);
                Ok::<_, BenchError>(measured)
            },
            bullmq.as_mut().map(|peer| async move {
                let queue = format!("r{round}-workers");
                peer.end_to_end(&queue, jobs, creators).await
            }),
        )
        .await?;
        seconds.push(elapsed);

        say(format!("round {round}/{rounds} ({order}): Wasm echo"));
        let (wasm, peer_wasm) = side_by_side(
            peer_first,
            async {
                let before = meter.now();
                let measured = wasm_throughput(client, rest, &options, round == 1).await?;
                meter.record("Wasm echo", Some(round), wasm_jobs, before);
                Ok::<_, BenchError>(measured)
            },
            bullmq
                .as_mut()
                .filter(|_| wasm_jobs > 0)
                .map(|peer| async move {
                    let queue = format!("r{round}-beside-wasm");
                    peer.end_to_end(&queue, wasm_jobs, creators).await
                }),
        )
        .await?;

        say(format!("round {round}/{rounds} ({order}): batch creation"));
        let (batch_create, peer_batch_create) = side_by_side(
            peer_first,
            async {
                let before = meter.now();
                let measured = batch_creation(client, batch_jobs).await?;
                meter.record(
                    "batch creation (CreateJobs)",
                    Some(round),
                    batch_jobs,
                    before,
                );
                Ok::<_, BenchError>(measured)
            },
            bullmq
                .as_mut()
                .filter(|_| batch_jobs > 0)
                .map(|peer| async move {
                    let queue = format!("r{round}-bulk");
                    peer.add_bulk(&queue, batch_jobs).await
                }),
        )
        .await?;

        say(format!(
            "round {round}/{rounds} ({order}): idle worker wake-up"
        ));
        let (wake, peer_wake) = side_by_side(
            peer_first,
            async {
                let before = meter.now();
                let wake = wake_latencies(client, wake_samples).await?;
                meter.record("idle worker wake-up", Some(round), wake_samples, before);
                Ok::<_, BenchError>(wake)
            },
            bullmq
                .as_mut()
                .filter(|_| wake_samples > 0)
                .map(|peer| async move {
                    let queue = format!("r{round}-wake");
                    peer.wake(&queue, wake_samples).await
                }),
        )
        .await?;
        let WakeLatencies {
            after_send: mut wake,
            after_ack,
        } = wake;
        wake.sort_by(f64::total_cmp);
        wake_max_ms = wake_max_ms.max(wake.last().copied().unwrap_or(0.0));
        wake_after_ack.extend(after_ack);

        let ours = RoundFigures {
            workers_jobs_per_second: workers,
            handler_jobs_per_second: wasm,
            batch_create_jobs_per_second: batch_create,
            wake_p50_ms: quantile(&wake, 0.5),
            wake_p99_ms: quantile(&wake, 0.99),
        };
        let theirs = bullmq.as_ref().map(|_| {
            let (wake_p50_ms, wake_p99_ms) = peer_wake.unwrap_or_default();
            RoundFigures {
                workers_jobs_per_second: peer_workers.unwrap_or_default(),
                handler_jobs_per_second: peer_wasm.unwrap_or_default(),
                batch_create_jobs_per_second: peer_batch_create.unwrap_or_default(),
                wake_p50_ms,
                wake_p99_ms,
            }
        });
        reports.push(RoundReport {
            round,
            peer_first,
            jobhost: ours,
            peer: theirs,
            ratios: theirs.map(|theirs| ours.ratio_to(&theirs)),
        });
    }
    let jobhost_rounds: Vec<RoundFigures> = reports.iter().map(|r| r.jobhost).collect();
    let ours = RoundFigures::median(&jobhost_rounds);
    let peer = bullmq.as_ref().map(|bullmq| {
        let peer_rounds: Vec<RoundFigures> = reports.iter().filter_map(|r| r.peer).collect();
        let theirs = RoundFigures::median(&peer_rounds);
        PeerComparison {
            system: bullmq.describe(),
            jobhost_durability: JOBHOST_DURABILITY,
            jobhost_median: ours,
            peer_median: theirs,
            ratios: ours.ratio_to(&theirs),
        }
    });
    // Redis stops here: the figures below have no peer.
    drop(bullmq);

    say("batched acknowledgements, sandbox, triggers".into());
    let before = meter.now();
    let (_, batched_acks_jobs_per_second) = throughput(client, &options, Acks::Batched).await?;
    meter.record("gRPC workers (CompleteJobs)", None, jobs, before);
    let mut sandbox = sandbox_overhead(options.sandbox_samples).await;
    sandbox.sort_by(f64::total_cmp);
    let mut lateness = trigger_lateness(rest, options.trigger_fires).await?;
    lateness.sort_by(f64::total_cmp);
    let (idle_cpu_percent, idle_triggers_cpu_percent) =
        idle_trigger_cpu(rest, options.idle_triggers, started.server.pid()).await?;
    wake_after_ack.sort_by(f64::total_cmp);
    let peak_rss_mib = process::usage(started.server.pid())
        .map_or(0.0, |usage| usage.peak_rss_bytes as f64 / (1024.0 * 1024.0));
    let report = BenchReport {
        server: match options.placement {
            ServerPlacement::InProcess => "in-process",
            ServerPlacement::ChildProcess { .. } => "child-process",
        },
        durability: JOBHOST_DURABILITY,
        jobs: options.jobs,
        creators: options.creators,
        workers: options.workers,
        batch: options.batch,
        rate_limited_key: CLIENT_KEY.get().is_some(),
        stored_before: options.stored,
        seconds: median(seconds),
        jobs_per_second: ours.workers_jobs_per_second,
        batched_acks_jobs_per_second,
        wake_p50_ms: ours.wake_p50_ms,
        wake_p99_ms: ours.wake_p99_ms,
        wake_max_ms,
        peak_rss_mib,
        wake_after_ack_p50_ms: quantile(&wake_after_ack, 0.5),
        wake_after_ack_p99_ms: quantile(&wake_after_ack, 0.99),
        wasm_jobs_per_second: ours.handler_jobs_per_second,
        sandbox_p50_us: quantile(&sandbox, 0.5),
        sandbox_p99_us: quantile(&sandbox, 0.99),
        batch_create_jobs_per_second: ours.batch_create_jobs_per_second,
        trigger_late_p50_ms: quantile(&lateness, 0.5),
        trigger_late_max_ms: lateness.last().copied().unwrap_or(0.0),
        idle_triggers: options.idle_triggers,
        idle_cpu_percent,
        idle_triggers_cpu_percent,
        hostile: hostile::HostileReport::default(),
        rounds: reports,
        peer,
        server_usage: meter.usages,
    };
    let Started { server, data, .. } = started;
    server.shutdown().await?;
    drop(data);
    say("a tenant beside a hostile one".into());
    // On servers of their own, so the hostile tenant's leftovers disturb nothing else.
    let hostile = hostile::run(&options.hostile, &options.placement).await?;
    Ok(BenchReport { hostile, ..report })
}

/// One CompleteJobs acknowledging every job of an activation, with no result variables.
fn complete_all(jobs: Vec<pb::ActivatedJob>) -> pb::CompleteJobsRequest {
    let jobs = jobs
        .into_iter()
        .map(|job| pb::CompleteJobRequest {
            job_key: job.job_key,
            variables: Default::default(),
        })
        .collect();
    pb::CompleteJobsRequest { jobs }
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
                        let answered = client
                            .complete_jobs(keyed(complete_all(response.jobs)))
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
    create_in_batches(client, "bench-batch", jobs).await
}

/// Creates `jobs` jobs of `job_type` with CreateJobs, 1,000 per call, from two callers at
/// once; answers jobs per second.
async fn create_in_batches(
    client: &Client,
    job_type: &'static str,
    jobs: usize,
) -> Result<f64, BenchError> {
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
                        r#type: job_type.into(),
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

/// Deploys `echo` (when `deploy`), creates the jobs concurrently and waits until all are
/// completed; jobs completed in earlier rounds are not counted.
async fn wasm_throughput(
    client: &Client,
    rest: &RestClient,
    options: &BenchOptions,
    deploy: bool,
) -> Result<f64, BenchError> {
    if options.wasm_jobs == 0 {
        return Ok(0.0);
    }
    if deploy {
        let (_, echo) = crate::examples::EXAMPLES[0];
        rest.upload(
            "/api/v1/handlers?type=bench-wasm&max_concurrency=64",
            echo.to_vec(),
        )
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    let mut client = client.clone();
    let earlier = completed_wasm_jobs(&mut client).await?;
    let started = Instant::now();
    let creators = spawn_creators(&client, "bench-wasm", options.wasm_jobs, options.creators);
    for creator in creators {
        creator
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
    }
    loop {
        if completed_wasm_jobs(&mut client).await? >= earlier + options.wasm_jobs {
            return Ok(options.wasm_jobs as f64 / started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn completed_wasm_jobs(client: &mut Client) -> Result<usize, BenchError> {
    let request = pb::ListJobsRequest {
        r#type: "bench-wasm".into(),
        state: "completed".into(),
        page_size: 1,
        ..Default::default()
    };
    let page = client.list_jobs(keyed(request)).await?.into_inner();
    Ok(page.pagination.map_or(0, |p| p.total_count) as usize)
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

/// The CPU the idle server process (`pid`; `None`: this process) uses, in percent of one
/// core, without triggers, and after `count` triggers that will not fire for months were
/// created.
async fn idle_trigger_cpu(
    rest: &RestClient,
    count: usize,
    pid: Option<u32>,
) -> Result<(f64, f64), BenchError> {
    if count == 0 {
        return Ok((0.0, 0.0));
    }
    let without = idle_cpu_percent(pid).await;
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
    Ok((without, idle_cpu_percent(pid).await))
}

/// CPU used by the process over five seconds in which the bench itself does nothing.
async fn idle_cpu_percent(pid: Option<u32>) -> f64 {
    let cpu = || process::usage(pid).map(|usage| usage.cpu_seconds);
    let Some(before) = cpu() else {
        return f64::NAN;
    };
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let used = cpu().unwrap_or(before) - before;
    used / started.elapsed().as_secs_f64() * 100.0
}

/// Time from sending CreateJob to an idle long-polling worker holding the job, in ms.
/// Idle-worker wake-ups, in ms: from `CreateJob` sent to the job on the worker (what the peer's
/// figure measures too), and from `CreateJob` acknowledged to the job on the worker (zero when
/// the worker had it first).
struct WakeLatencies {
    after_send: Vec<f64>,
    after_ack: Vec<f64>,
}

async fn wake_latencies(client: &Client, samples: usize) -> Result<WakeLatencies, BenchError> {
    let mut latencies = WakeLatencies {
        after_send: Vec::with_capacity(samples),
        after_ack: Vec::with_capacity(samples),
    };
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
            creator.create_job(keyed(request)).await?;
            Ok::<_, tonic::Status>(Instant::now())
        });
        let response = stream.message().await?;
        let woken_at = Instant::now();
        let acked_at = create
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
        if let Some(job) = response.and_then(|r| r.jobs.into_iter().next()) {
            let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
            latencies.after_send.push(ms(woken_at - sent));
            latencies
                .after_ack
                .push(ms(woken_at.saturating_duration_since(acked_at)));
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
        let mut table = format!(
            "metric                         value\n\
             server                         {}\n\
             jobs (create+activate+complete) {}\n\
             creators / workers / batch     {} / {} / {}\n\
             clients' key                   {}\n\
             jobs stored before the figures {}\n\
             elapsed                        {:.2} s\n\
             throughput                     {:.0} jobs/s\n\
             throughput, CompleteJobs acks  {:.0} jobs/s\n\
             idle worker wake-up p50        {:.3} ms\n\
             idle worker wake-up p99        {:.3} ms\n\
             idle worker wake-up max        {:.3} ms\n\
             wake-up after the create's ack p50 / p99 {:.3} / {:.3} ms\n\
             Wasm (echo) throughput         {:.0} jobs/s\n\
             sandbox per attempt p50 / p99  {:.1} / {:.1} us\n\
             batch creation (CreateJobs)    {:.0} jobs/s\n\
             trigger fire late p50 / max    {:.0} / {:.0} ms\n\
             idle CPU, no triggers          {:.2} % of a core\n\
             idle CPU, {} triggers       {:.2} % of a core\n\
             peak RSS, server's process     {:.0} MiB ({})\n\
             tenant alone: created->completed p50 / p99        {:.0} / {:.0} ms\n\
             beside a hostile tenant: p50 / p99                {:.0} / {:.0} ms ({} hostile attempts ended meanwhile, {} before)",
            match self.server {
                "child-process" => "a child process (jobhost serve), clients in this one",
                _ => "in this process, beside the clients",
            },
            self.jobs,
            self.creators,
            self.workers,
            self.batch,
            if self.rate_limited_key {
                "rate-limited (never reached)"
            } else {
                "admin (unlimited)"
            },
            self.stored_before,
            self.seconds,
            self.jobs_per_second,
            self.batched_acks_jobs_per_second,
            self.wake_p50_ms,
            self.wake_p99_ms,
            self.wake_max_ms,
            self.wake_after_ack_p50_ms,
            self.wake_after_ack_p99_ms,
            self.wasm_jobs_per_second,
            self.sandbox_p50_us,
            self.sandbox_p99_us,
            self.batch_create_jobs_per_second,
            self.trigger_late_p50_ms,
            self.trigger_late_max_ms,
            self.idle_cpu_percent,
            self.idle_triggers,
            self.idle_triggers_cpu_percent,
            self.peak_rss_mib,
            if self.server == "in-process" {
                "the bench process: server and clients"
            } else {
                "the server alone"
            },
            self.hostile.alone_p50_ms,
            self.hostile.alone_p99_ms,
            self.hostile.beside_hostile_p50_ms,
            self.hostile.beside_hostile_p99_ms,
            self.hostile.hostile_attempts_ended,
            self.hostile.hostile_attempts_ended_before,
        );
        if self.rounds.len() > 1 || self.peer.is_some() {
            table.push_str(&self.rounds_table());
        }
        if !self.server_usage.is_empty() {
            table.push_str(&self.usage_table());
        }
        table
    }

    /// Each round's comparable figures, the peer's beside jobhost's, then the medians.
    fn rounds_table(&self) -> String {
        let peer_name = self
            .peer
            .as_ref()
            .and_then(|peer| peer.system.as_ref())
            .map_or("peer", |system| system.name.as_str());
        let mut text = String::from("\n\n");
        if let Some(peer) = &self.peer {
            if let Some(system) = &peer.system {
                text.push_str(&format!(
                    "peer: {} {} on {} ({}), measured in this run\n\
                     durability  jobhost: {}\n\
                     \x20           {}: {}\n\
                     {} end to end: {}\n",
                    system.name,
                    system.version,
                    system.store,
                    system.runtime,
                    peer.jobhost_durability,
                    system.name,
                    system.durability,
                    system.name,
                    system.end_to_end,
                ));
            }
            text.push_str(&format!(
                "ratio = jobhost / {peer_name}: above 1 jobhost is faster for jobs/s, slower \
                 for ms\n"
            ));
        }
        text.push_str(&format!(
            "{:<32} {:>12} {:>12} {:>12} {:>8}\n",
            "figure", "round", "jobhost", peer_name, "ratio"
        ));
        let number = |value: f64, unit: &str| match value {
            v if v.is_nan() => "-".to_string(),
            v if unit == "ms" => format!("{v:.2}"),
            v => format!("{v:.0}"),
        };
        for figure in 0..5 {
            for round in &self.rounds {
                let (label, ours, unit, _) = round.jobhost.rows()[figure];
                let theirs = round.peer.map(|p| p.rows()[figure].1);
                let ratio = round.ratios.map(|r| r.rows()[figure].1);
                let order = if round.peer.is_some() && round.peer_first {
                    " (peer 1st)"
                } else {
                    ""
                };
                text.push_str(&format!(
                    "{:<32} {:>12} {:>12} {:>12} {:>8}\n",
                    if round.round == 1 {
                        format!("{label}, {unit}")
                    } else {
                        String::new()
                    },
                    format!("{}{order}", round.round),
                    number(ours, unit),
                    theirs.map_or("-".into(), |v| number(v, unit)),
                    ratio.map_or("-".into(), number_ratio),
                ));
            }
            if let Some(peer) = &self.peer {
                let (_, ours, unit, _) = peer.jobhost_median.rows()[figure];
                text.push_str(&format!(
                    "{:<32} {:>12} {:>12} {:>12} {:>8}\n",
                    "",
                    "median",
                    number(ours, unit),
                    number(peer.peer_median.rows()[figure].1, unit),
                    number_ratio(peer.ratios.rows()[figure].1),
                ));
            }
        }
        text
    }

    /// The server process's CPU and peak memory per figure.
    fn usage_table(&self) -> String {
        let mut text = format!(
            "\n\nserver process: CPU (user + system) and peak RSS per figure\n\
             {:<32} {:>6} {:>8} {:>9} {:>11} {:>13}\n",
            "figure", "round", "jobs", "CPU s", "CPU us/job", "peak RSS MiB"
        );
        for usage in &self.server_usage {
            text.push_str(&format!(
                "{:<32} {:>6} {:>8} {:>9.2} {:>11.0} {:>13.0}\n",
                usage.figure,
                usage.round.map_or("-".into(), |round| round.to_string()),
                usage.jobs,
                usage.cpu_seconds,
                usage.cpu_us_per_job,
                usage.peak_rss_mib,
            ));
        }
        text
    }
}

fn number_ratio(ratio: f64) -> String {
    if ratio.is_nan() {
        "-".into()
    } else {
        format!("{ratio:.2}")
    }
}
