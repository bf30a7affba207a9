//! `jobhost chaos`: creators, external gRPC workers and Wasm executions against a `jobhost
//! serve` process that is SIGKILLed and restarted at random moments; afterwards every
//! acknowledged create and completion is checked against what the server reports.

mod ledger;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::api::grpc::pb;
use crate::api::grpc::pb::jobs_service_client::JobsServiceClient;
use crate::child_server::{ChildServer, ChildServerError, ServeCommand};
use crate::client::RestClient;
pub use ledger::Tally;
use ledger::{Created, Kind, Ledger};

const ADMIN_KEY: &str = "chaos-admin-key";
/// The type the run's external workers serve.
const EXTERNAL_TYPE: &str = "chaos";
/// The type of the `echo` example handler, which `serve --examples` deploys.
const ECHO_TYPE: &str = "echo";
/// Attempt timeout of the `echo` version the run deploys: a lease held by an attempt that a
/// kill interrupted comes back after this plus the executor's margin, not after the default
/// 30 s.
const ECHO_TIMEOUT_MS: u64 = 2_000;
/// How long one ActivateJobs call waits for a job.
const LONG_POLL_MS: i64 = 500;
/// Jobs one activation takes at most.
const BATCH: i32 = 4;
/// Deadline of every call, so that no call outlives a dead server for long.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause of a client whose call failed (the server is being killed or restarted).
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Calls of one creator or worker in one phase at most; time ends a phase long before.
const MAX_CALLS: usize = 1_000_000;
/// One job in this many is held by the worker that leased it until its lease has expired, so
/// that another worker gets it and the late completion must be refused.
const HOLD_ONE_IN: u32 = 25;
/// How long after a lease's deadline a held job is completed, so that the server's clock has
/// passed it too.
const LATE_MARGIN_MS: i64 = 100;
/// Longest wait for a start: the first one compiles the example handlers.
const START_BOUND: Duration = Duration::from_secs(120);
/// Concurrent GetJob calls when reading many jobs.
const READERS: usize = 16;
/// Pause between two looks at the jobs not yet finished while draining.
const DRAIN_POLL: Duration = Duration::from_millis(200);

#[derive(Clone, Debug)]
pub struct ChaosOptions {
    /// The `jobhost` binary, run as `jobhost serve --examples`.
    pub server_bin: PathBuf,
    /// The server's store, kept across the restarts.
    pub data_dir: PathBuf,
    /// Start, traffic, SIGKILL: this many times, before the final start.
    pub cycles: usize,
    /// Seed of the run times and the workers' choices (the interleaving is the machine's).
    pub seed: u64,
    /// Shortest traffic before a kill.
    pub min_run: Duration,
    /// Longest traffic before a kill.
    pub max_run: Duration,
    /// Concurrent CreateJob callers.
    pub creators: usize,
    /// Concurrent external workers.
    pub workers: usize,
    /// Lease the external workers ask for.
    pub lease: Duration,
    /// Longest wait, after the final start, for every acknowledged job to finish.
    pub drain_timeout: Duration,
}

impl ChaosOptions {
    pub fn new(server_bin: PathBuf, data_dir: PathBuf) -> ChaosOptions {
        ChaosOptions {
            server_bin,
            data_dir,
            cycles: 10,
            seed: 0,
            min_run: Duration::from_millis(200),
            max_run: Duration::from_millis(3_000),
            creators: 3,
            workers: 3,
            lease: Duration::from_millis(1_500),
            drain_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ChaosReport {
    pub seed: u64,
    pub cycles: usize,
    /// SIGKILLs sent mid-traffic.
    pub kills: usize,
    pub seconds: f64,
    /// From the final start until every acknowledged job was finished (or the bound).
    pub drain_seconds: f64,
    pub creates_sent: u64,
    pub completions_sent: u64,
    /// Completions refused because the lease had expired and the job had moved on.
    pub completions_refused: u64,
    /// Completions sent on purpose after their lease had expired.
    pub late_completions: u64,
    #[serde(flatten)]
    pub tally: Tally,
}

impl ChaosReport {
    /// An error naming what failed, unless every check passed.
    pub fn check(&self) -> Result<(), ChaosError> {
        if self.tally.is_clean() {
            return Ok(());
        }
        let mut summary = self.failures();
        for problem in &self.tally.problems {
            summary.push_str(&format!("\n  {problem}"));
        }
        Err(ChaosError::Failed { summary })
    }

    fn failures(&self) -> String {
        let t = &self.tally;
        format!(
            "completed twice {}, wrong results {}, altered {}, stuck {}, lost {}, reused keys {}, \
             stale completions accepted {}",
            t.completed_twice,
            t.wrong_results,
            t.altered,
            t.stuck,
            t.lost,
            t.reused_keys,
            t.stale_accepted
        )
    }

    pub fn table(&self) -> String {
        let t = &self.tally;
        let verdict = if t.is_clean() { "clean" } else { "FAILED" };
        format!(
            "chaos run: seed {}, {} cycles, {} kills, {:.1} s (final drain {:.1} s)\n\
             creates       sent {:>8}  acknowledged {:>8}  found as created {:>8}\n\
             echo (Wasm)                    acknowledged {:>8}  completed once   {:>8}\n\
             completions   sent {:>8}  acknowledged {:>8}  with that result {:>8}\n\
             completions refused for a stale lease {}, sent after the lease on purpose {}\n\
             {}\n\
             result: {verdict}",
            self.seed,
            self.cycles,
            self.kills,
            self.seconds,
            self.drain_seconds,
            self.creates_sent,
            t.creates_acknowledged,
            t.creates_found,
            t.echo_acknowledged,
            t.echo_completed,
            self.completions_sent,
            t.completions_acknowledged,
            t.completions_confirmed,
            self.completions_refused,
            self.late_completions,
            self.failures(),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error(transparent)]
    Server(#[from] ChildServerError),
    #[error("gRPC: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("invalid server address: {0}")]
    Address(#[from] tonic::transport::Error),
    #[error("deploying the echo handler: {0}")]
    Deploy(#[from] crate::client::ClientError),
    #[error("the checks failed: {summary}")]
    Failed { summary: String },
}

type Client = JobsServiceClient<Channel>;

/// What every client of a run shares.
#[derive(Default)]
struct Shared {
    ledger: Mutex<Ledger>,
    next_seq: AtomicU64,
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("ledger lock")
    }
}

/// Runs the cycles, restarts the server once more, waits for the acknowledged jobs to finish
/// and judges them. A report with failed checks is still `Ok`: see [`ChaosReport::check`].
pub async fn run(options: &ChaosOptions) -> Result<ChaosReport, ChaosError> {
    let started = Instant::now();
    let shared = Arc::new(Shared::default());
    let mut rng = StdRng::seed_from_u64(options.seed);
    let min_ms = options.min_run.as_millis() as u64;
    let max_ms = (options.max_run.as_millis() as u64).max(min_ms);
    let mut kills = 0;
    for cycle in 0..options.cycles {
        let server = start(options, cycle == 0).await?;
        let run_for = Duration::from_millis(rng.random_range(min_ms..=max_ms));
        let traffic = Traffic::start(
            &server.grpc_url,
            options,
            &shared,
            &format!("cycle{cycle}"),
            options.creators,
            rng.random(),
        )?;
        tokio::time::sleep(run_for).await;
        let killed = server.kill();
        traffic.stop().await;
        killed?;
        kills += 1;
        tracing::info!(
            cycle,
            run_ms = run_for.as_millis() as u64,
            acknowledged = shared.ledger().creates_acknowledged,
            "killed the server mid-traffic"
        );
    }

    let server = start(options, options.cycles == 0).await?;
    let drain_started = Instant::now();
    let traffic = Traffic::start(&server.grpc_url, options, &shared, "drain", 0, rng.random())?;
    let client = connect(&server.grpc_url)?;
    let drained = drain(&client, &shared, options.drain_timeout).await;
    let drain_seconds = drain_started.elapsed().as_secs_f64();
    traffic.stop().await;
    drained?;
    let keys = shared.ledger().keys().into_iter().collect();
    let found: HashMap<String, pb::Job> = read_all(&client, keys)
        .await?
        .into_iter()
        .filter_map(|(key, job)| Some((key, job?)))
        .collect();
    server.kill()?;
    let ledger = shared.ledger();
    Ok(ChaosReport {
        seed: options.seed,
        cycles: options.cycles,
        kills,
        seconds: started.elapsed().as_secs_f64(),
        drain_seconds,
        creates_sent: ledger.creates_sent,
        completions_sent: ledger.completions_sent,
        completions_refused: ledger.completions_refused,
        late_completions: ledger.late_completions,
        tally: ledger.judge(&found),
    })
}

/// Starts the server with the example handlers and waits until its gRPC health service says
/// it is serving; the first time, also deploys `echo` with a short attempt timeout.
async fn start(options: &ChaosOptions, first: bool) -> Result<Server, ChaosError> {
    let started = Instant::now();
    let command = ServeCommand {
        binary: &options.server_bin,
        data_dir: &options.data_dir,
        admin_key: ADMIN_KEY,
        args: vec!["--examples".into()],
        show_stderr: false,
    };
    let child = ChildServer::start(command, START_BOUND).await?;
    let mut server = Server {
        grpc_url: format!("http://{}", child.grpc_addr),
        http_url: format!("http://{}", child.http_addr),
        child,
    };
    if !serving(
        &server.grpc_url,
        START_BOUND.saturating_sub(started.elapsed()),
    )
    .await
    {
        return Err(server
            .child
            .failure("did not report serving in time")
            .into());
    }
    if first {
        let (_, component) = crate::examples::EXAMPLES
            .iter()
            .find(|(job_type, _)| *job_type == ECHO_TYPE)
            .expect("echo is an example");
        let rest = RestClient::new(&server.http_url, Some(ADMIN_KEY.into()));
        let path = format!("/api/v1/handlers?type={ECHO_TYPE}&timeout_ms={ECHO_TIMEOUT_MS}");
        rest.upload(&path, component.to_vec()).await?;
    }
    Ok(server)
}

/// The server under test, with the URLs of its two listeners.
struct Server {
    child: ChildServer,
    grpc_url: String,
    http_url: String,
}

impl Server {
    /// SIGKILL, the only way a run ends the server.
    fn kill(self) -> Result<(), ChaosError> {
        Ok(self.child.kill()?)
    }
}

/// Whether the gRPC health service at `url` says it is serving within `bound`.
async fn serving(url: &str, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    let Ok(endpoint) = Endpoint::from_shared(url.to_string()) else {
        return false;
    };
    let endpoint = endpoint
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2));
    let request = HealthCheckRequest {
        service: "atom.jobs.v1.JobsService".into(),
    };
    while Instant::now() < deadline {
        if let Ok(channel) = endpoint.connect().await {
            let mut health = HealthClient::new(channel);
            if let Ok(answer) = health.check(request.clone()).await
                && answer.into_inner().status == ServingStatus::Serving as i32
            {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn connect(url: &str) -> Result<Client, ChaosError> {
    let channel = Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(RPC_TIMEOUT)
        .connect_lazy();
    Ok(JobsServiceClient::new(channel))
}

fn keyed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", ADMIN_KEY.parse().expect("ascii key"));
    request
}

/// The job as the server reports it; `None` when it does not know it.
async fn get(client: &mut Client, key: &str) -> Result<Option<pb::Job>, ChaosError> {
    let request = pb::GetJobRequest {
        job_key: key.to_string(),
    };
    match client.get_job(keyed(request)).await {
        Ok(answer) => Ok(answer.into_inner().job),
        Err(status) if status.code() == Code::NotFound => Ok(None),
        Err(status) => Err(status.into()),
    }
}

/// Reads jobs, several at a time (a long run acknowledges hundreds of thousands).
async fn read_all(
    client: &Client,
    keys: Vec<String>,
) -> Result<Vec<(String, Option<pb::Job>)>, ChaosError> {
    futures::stream::iter(keys)
        .map(|key| {
            let mut client = client.clone();
            async move {
                let job = get(&mut client, &key).await?;
                Ok((key, job))
            }
        })
        .buffer_unordered(READERS)
        .try_collect()
        .await
}

/// Waits, at most `bound`, until every job something was acknowledged about is finished or
/// unknown to the server (which the judgement reports).
async fn drain(client: &Client, shared: &Shared, bound: Duration) -> Result<(), ChaosError> {
    let deadline = Instant::now() + bound;
    let mut pending: Vec<String> = shared.ledger().keys().into_iter().collect();
    let rounds = bound.as_millis() / DRAIN_POLL.as_millis() + 1;
    for _ in 0..rounds {
        pending = read_all(client, pending)
            .await?
            .into_iter()
            .filter(|(_, job)| {
                job.as_ref().is_some_and(|job| {
                    !matches!(job.state.as_str(), "completed" | "failed" | "cancelled")
                })
            })
            .map(|(key, _)| key)
            .collect();
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    Ok(())
}

/// The creators and workers of one phase, each with its own connection.
struct Traffic {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    fn start(
        url: &str,
        options: &ChaosOptions,
        shared: &Arc<Shared>,
        phase: &str,
        creators: usize,
        seed: u64,
    ) -> Result<Traffic, ChaosError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut rng = StdRng::seed_from_u64(seed);
        let mut tasks = Vec::new();
        for n in 0..creators {
            let creator = Creator {
                client: connect(url)?,
                name: format!("{phase}-creator{n}"),
                shared: Arc::clone(shared),
                stop: Arc::clone(&stop),
                rng: StdRng::seed_from_u64(rng.random()),
            };
            tasks.push(tokio::spawn(creator.run()));
        }
        // Draining is the last chance to finish jobs, so no job is held then.
        let hold = creators > 0;
        for n in 0..options.workers {
            let worker = Worker {
                client: connect(url)?,
                name: format!("{phase}-worker{n}"),
                lease_ms: options.lease.as_millis().min(i32::MAX as u128) as i32,
                hold,
                held: Vec::new(),
                shared: Arc::clone(shared),
                stop: Arc::clone(&stop),
                rng: StdRng::seed_from_u64(rng.random()),
            };
            tasks.push(tokio::spawn(worker.run()));
        }
        Ok(Traffic { stop, tasks })
    }

    /// Ends the phase; a call still waiting on a dead server is dropped, unacknowledged.
    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(RPC_TIMEOUT, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

struct Creator {
    client: Client,
    name: String,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    rng: StdRng,
}

impl Creator {
    /// Creates jobs, one in three for the `echo` handler, each with a sequence number unique
    /// in the run.
    async fn run(mut self) {
        for _ in 0..MAX_CALLS {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let seq = self.shared.next_seq.fetch_add(1, Ordering::Relaxed);
            let kind = if self.rng.random_ratio(1, 3) {
                Kind::Echo
            } else {
                Kind::External
            };
            let variables = json!({ "seq": seq, "creator": self.name }).to_string();
            let request = pb::CreateJobRequest {
                r#type: kind.job_type().into(),
                variables: variables.clone(),
                ..Default::default()
            };
            self.shared.ledger().creates_sent += 1;
            match self.client.create_job(keyed(request)).await {
                Ok(answer) if answer.get_ref().success => {
                    let key = answer.into_inner().job_key;
                    let created = Created {
                        kind,
                        seq,
                        variables,
                    };
                    self.shared.ledger().acknowledged_create(key, created);
                }
                _ => tokio::time::sleep(RETRY_PAUSE).await,
            }
        }
    }
}

struct Worker {
    client: Client,
    name: String,
    lease_ms: i32,
    hold: bool,
    /// Jobs kept until their lease has expired.
    held: Vec<pb::ActivatedJob>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    rng: StdRng,
}

impl Worker {
    /// Leases external jobs and completes each with a result naming this worker and the lease.
    async fn run(mut self) {
        for _ in 0..MAX_CALLS {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            self.complete_late().await;
            for job in self.activate().await {
                let key = bare(&job.job_key).to_string();
                self.shared.ledger().activated(&key);
                if self.hold && self.rng.random_ratio(1, HOLD_ONE_IN) {
                    self.held.push(job);
                    continue;
                }
                self.complete(&key, job.job_key, false).await;
            }
        }
    }

    /// The jobs one long poll delivered; none when the call failed.
    async fn activate(&mut self) -> Vec<pb::ActivatedJob> {
        let request = pb::ActivateJobsRequest {
            r#type: EXTERNAL_TYPE.into(),
            worker: self.name.clone(),
            timeout: self.lease_ms,
            max_jobs_to_activate: BATCH,
            request_timeout: Some(LONG_POLL_MS),
            ..Default::default()
        };
        let mut stream = match self.client.activate_jobs(keyed(request)).await {
            Ok(answer) => answer.into_inner(),
            Err(_) => {
                tokio::time::sleep(RETRY_PAUSE).await;
                return Vec::new();
            }
        };
        let mut jobs = Vec::new();
        // One response at most; the bound only guards against a server that misbehaves.
        for _ in 0..MAX_CALLS {
            match stream.message().await {
                Ok(Some(answer)) => jobs.extend(answer.jobs),
                Ok(None) => break,
                Err(_) => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                    break;
                }
            }
        }
        jobs
    }

    /// Completes the held jobs whose lease has expired: each must be refused.
    async fn complete_late(&mut self) {
        let now = crate::job::now_ms();
        let (expired, held) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|job| job.deadline + LATE_MARGIN_MS < now);
        self.held = held;
        for job in expired {
            let key = bare(&job.job_key).to_string();
            self.shared.ledger().late_completions += 1;
            self.complete(&key, job.job_key, true).await;
        }
    }

    async fn complete(&mut self, key: &str, leased_key: String, late: bool) {
        let variables = HashMap::from([
            ("worker".to_string(), self.name.clone()),
            ("lease".to_string(), leased_key.clone()),
        ]);
        let result = json!(variables);
        self.shared.ledger().sending_completion(key, result.clone());
        let request = pb::CompleteJobRequest {
            job_key: leased_key,
            variables,
        };
        match self.client.complete_job(keyed(request)).await {
            Ok(answer) if answer.get_ref().success => {
                let mut ledger = self.shared.ledger();
                if late {
                    ledger.stale_accepted(key);
                }
                ledger.acknowledged_completion(key, result);
            }
            Err(status) if status.code() == Code::FailedPrecondition => {
                self.shared.ledger().completions_refused += 1;
            }
            // Refused otherwise, or no answer: not acknowledged, so nothing is expected of it.
            _ => {}
        }
    }
}

/// `42` of the leased key `42-3`.
fn bare(leased_key: &str) -> &str {
    leased_key.split('-').next().unwrap_or(leased_key)
}
