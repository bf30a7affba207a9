//! The `jobhost` command: the server, and a command-line client of a running server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use jobhost::client::RestClient;
use jobhost::grants::{HttpRule, ServerHttpPolicy};
use jobhost::manifest::Manifest;
use jobhost::quota::Quotas;
use jobhost::runtime::HttpLimits;
use jobhost::service::capabilities::HttpSettings;

/// mimalloc rather than the system allocator: per-thread free lists suit the many short-lived
/// buffers of requests and attempts, and it returns memory instead of fragmenting arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "jobhost",
    version,
    about = "A durable job runner with sandboxed Wasm handlers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Measure end-to-end throughput and wake-up latency on a fresh local server.
    Bench(BenchArgs),
    /// Measure filtered listings and statistics over a store of many jobs.
    BenchListing {
        /// Jobs to store first.
        #[arg(long, default_value_t = 1_000_000)]
        jobs: usize,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Run a steady load with retention on and sample the jobs stored, disk and memory.
    BenchRetention {
        /// How long the load runs, in seconds.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        /// How long completed jobs are kept (e.g. 30s, 5m).
        #[arg(long, default_value = "30s")]
        retain: String,
        /// Seconds between samples.
        #[arg(long, default_value_t = 30)]
        every: u64,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Kill a local server at random moments under load, then check what it acknowledged.
    Chaos(ChaosArgs),
    /// Create, read and change jobs on a running server.
    Jobs {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Deploy and manage Wasm handlers on a running server.
    Handlers {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: HandlersCommand,
    },
    /// Manage cron and interval triggers on a running server.
    Triggers {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: TriggersCommand,
    },
    /// Manage API keys on a running server.
    Keys {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Set, list and remove a tenant's secrets on a running server (values are write-only).
    Secrets {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Read and edit a tenant's key-value buckets on a running server.
    Kv {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: KvCommand,
    },
    /// Read the audit trail of administrative acts, newest first.
    Audit {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        filter: AuditFilter,
    },
    /// Write a consistent snapshot of a running server's store into a directory.
    Backup {
        #[command(flatten)]
        connection: Connection,
        /// The directory to write jobhost.snapshot into (created if missing).
        #[arg(long)]
        to: PathBuf,
        /// Include the compiled-code cache, so the restored server compiles nothing.
        #[arg(long)]
        with_compiled: bool,
    },
    /// Restore a snapshot into a new data directory, with no server running on it.
    Restore {
        /// The directory `jobhost backup` wrote into, or the snapshot file.
        #[arg(long)]
        from: PathBuf,
        #[arg(long, env = "JOBHOST_DATA_DIR")]
        data_dir: PathBuf,
        /// Replace the store the data directory holds.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args)]
struct AuditFilter {
    /// Only acts touching this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Only this action, e.g. key.revoked or handler.deployed.
    #[arg(long)]
    action: Option<String>,
    /// Entries per page (1-500).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Only entries older than this id (a previous page's next_before).
    #[arg(long)]
    before: Option<u64>,
}

/// Prints the audit trail as JSON lines, one act a line, and where the next page starts.
async fn audit(client: RestClient, filter: AuditFilter) -> anyhow::Result<()> {
    let mut query = vec![format!("limit={}", filter.limit)];
    if let Some(tenant) = &filter.tenant {
        query.push(format!("tenant_id={tenant}"));
    }
    if let Some(action) = &filter.action {
        query.push(format!("action={action}"));
    }
    if let Some(before) = filter.before {
        query.push(format!("before={before}"));
    }
    let path = format!("/api/v1/audit?{}", query.join("&"));
    let page = client.call(Method::GET, &path, None).await?;
    for entry in page["entries"].as_array().into_iter().flatten() {
        outln!("{entry}");
    }
    if let Some(next) = page["next_before"].as_u64() {
        eprintln!("older entries: --before {next}");
    }
    Ok(())
}

#[derive(Args)]
struct ServeArgs {
    /// Where the embedded store keeps its data.
    #[arg(long, default_value = "./data", env = "JOBHOST_DATA_DIR")]
    data_dir: PathBuf,
    /// Address of the gRPC API.
    #[arg(long, default_value = "127.0.0.1:27500", env = "JOBHOST_GRPC_ADDR")]
    grpc_addr: SocketAddr,
    /// Address of the REST API and /healthz.
    #[arg(long, default_value = "127.0.0.1:27555", env = "JOBHOST_HTTP_ADDR")]
    http_addr: SocketAddr,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Deploy the example handlers (echo, flaky, fanout) into the default tenant.
    #[arg(long)]
    examples: bool,
    /// Serve gRPC and HTTP over TLS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "JOBHOST_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "JOBHOST_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Wasm attempts running at once.
    #[arg(long, default_value_t = 64)]
    max_attempts: usize,
    /// Threads that run Wasm guest code, taking turns between tenants (default: one per core).
    #[arg(long)]
    attempt_threads: Option<usize>,
    /// How long running Wasm attempts may finish after SIGTERM before they are interrupted.
    #[arg(long, default_value_t = 10_000)]
    shutdown_grace_ms: u64,
    #[command(flatten)]
    quotas: QuotaArgs,
    /// Requests per second of a key created without a rate of its own (with
    /// --rate-burst); default: unlimited. The admin key is never limited.
    #[arg(long, requires = "rate_burst")]
    rate_limit: Option<u32>,
    /// Requests such a key may make at once, above its rate.
    #[arg(long, requires = "rate_limit")]
    rate_burst: Option<u32>,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    retention: RetentionArgs,
    /// Memory, in MiB, of the embedded store's page cache: more keeps more of a large store
    /// in memory (a smaller cache does not lower the server's peak memory; see
    /// docs/benchmarks.md).
    #[arg(long, env = "JOBHOST_STORE_CACHE_MB", value_parser = clap::value_parser!(u64).range(1..=1_048_576),
          default_value_t = jobhost::store::DEFAULT_CACHE_BYTES / (1024 * 1024))]
    store_cache_mb: u64,
}

/// How long finished jobs are kept; by default, for ever.
#[derive(Args)]
struct RetentionArgs {
    /// Delete completed and cancelled jobs this long after they finished (e.g. 7d, 12h).
    #[arg(long, value_name = "AGE", env = "JOBHOST_RETAIN_COMPLETED")]
    retain_completed: Option<String>,
    /// Delete failed jobs (incidents) this long after they failed.
    #[arg(long, value_name = "AGE", env = "JOBHOST_RETAIN_FAILED")]
    retain_failed: Option<String>,
    /// The age of completed and cancelled jobs of one type, instead of --retain-completed
    /// (TYPE=AGE, e.g. reports=30d; repeatable).
    #[arg(long = "retain-type", value_name = "TYPE=AGE")]
    retain_type: Vec<String>,
    /// Keep at most this many completed and cancelled jobs per tenant, deleting the oldest
    /// finished first.
    #[arg(long, value_name = "COUNT")]
    retain_max_per_tenant: Option<u64>,
}

impl RetentionArgs {
    fn policy(&self) -> anyhow::Result<jobhost::retention::RetentionPolicy> {
        use jobhost::retention::parse_age;
        let age = |flag: &str, text: &Option<String>| {
            text.as_deref()
                .map(|text| parse_age(text).map_err(|e| anyhow::anyhow!("--{flag}: {e}")))
                .transpose()
        };
        let mut policy = jobhost::retention::RetentionPolicy {
            completed_ms: age("retain-completed", &self.retain_completed)?,
            failed_ms: age("retain-failed", &self.retain_failed)?,
            max_finished_per_tenant: self.retain_max_per_tenant,
            ..Default::default()
        };
        for text in &self.retain_type {
            policy
                .add_type_age(text)
                .map_err(|e| anyhow::anyhow!("--retain-type: {e}"))?;
        }
        Ok(policy)
    }
}

/// What handlers' outbound HTTP may reach and use, whatever their grants say.
#[derive(Args)]
struct HttpArgs {
    /// A rule every handler request must also match ([METHODS ]SCHEME://HOST[:PORT];
    /// repeatable). Default: any public host. Private, loopback and link-local addresses are
    /// reached only through a rule that names the host, e.g. http://127.0.0.1:8080.
    #[arg(long = "http-allow", value_name = "PATTERN")]
    http_allow: Vec<String>,
    /// Requests one attempt may send.
    #[arg(long, default_value_t = HttpLimits::default().max_requests)]
    http_max_requests: u32,
    /// Response body bytes one request may receive.
    #[arg(long, default_value_t = HttpLimits::default().max_response_bytes)]
    http_max_response_bytes: u64,
    /// Time to connect (DNS, TCP, TLS) in ms.
    #[arg(long, default_value_t = HttpLimits::default().connect_timeout.as_millis() as u64)]
    http_connect_timeout_ms: u64,
    /// Time from a request sent to its response's headers, and between pieces of its body, in ms.
    #[arg(long, default_value_t = HttpLimits::default().first_byte_timeout.as_millis() as u64)]
    http_response_timeout_ms: u64,
}

impl HttpArgs {
    fn settings(&self) -> anyhow::Result<HttpSettings> {
        let rules = self
            .http_allow
            .iter()
            .map(|rule| HttpRule::parse(rule).map_err(|e| anyhow::anyhow!("--http-allow: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let response_timeout = Duration::from_millis(self.http_response_timeout_ms.max(1));
        Ok(HttpSettings {
            policy: Arc::new(ServerHttpPolicy { rules }),
            limits: HttpLimits {
                max_requests: self.http_max_requests,
                max_response_bytes: self.http_max_response_bytes,
                connect_timeout: Duration::from_millis(self.http_connect_timeout_ms.max(1)),
                first_byte_timeout: response_timeout,
                between_bytes_timeout: response_timeout,
            },
            tls: None,
        })
    }
}

/// What one tenant or key may hold at once; see `whoami`.
#[derive(Args)]
struct QuotaArgs {
    /// Long polls (waiting ActivateJobs calls) at once on the server.
    #[arg(long, default_value_t = Quotas::default().waiting_activations)]
    max_waiting: usize,
    /// Long polls waiting at once that may take jobs of one tenant.
    #[arg(long, default_value_t = Quotas::default().waiting_activations_per_tenant)]
    max_waiting_per_tenant: usize,
    /// Long polls waiting at once with one API key.
    #[arg(long, default_value_t = Quotas::default().waiting_activations_per_key)]
    max_waiting_per_key: usize,
    /// Wasm attempts running at once for one tenant.
    #[arg(long, default_value_t = Quotas::default().attempts_per_tenant)]
    max_attempts_per_tenant: usize,
    /// Handler uploads validated and compiled at once for one tenant.
    #[arg(long, default_value_t = Quotas::default().uploads_per_tenant)]
    max_uploads_per_tenant: usize,
    /// Handlers one tenant may have deployed.
    #[arg(long, default_value_t = Quotas::default().handlers_per_tenant)]
    max_handlers_per_tenant: usize,
    /// Triggers one tenant may have.
    #[arg(long, default_value_t = Quotas::default().triggers_per_tenant)]
    max_triggers_per_tenant: usize,
    /// Keys one tenant's key-value buckets may hold together.
    #[arg(long, default_value_t = Quotas::default().kv.keys_per_tenant)]
    kv_keys_per_tenant: u64,
    /// Bytes (keys and values) one tenant's key-value buckets may hold together.
    #[arg(long, default_value_t = Quotas::default().kv.bytes_per_tenant)]
    kv_bytes_per_tenant: u64,
    /// Bytes of one key-value value.
    #[arg(long, default_value_t = Quotas::default().kv.value_bytes)]
    kv_value_bytes: usize,
}

impl QuotaArgs {
    fn quotas(&self) -> Quotas {
        Quotas {
            waiting_activations: self.max_waiting,
            waiting_activations_per_tenant: self.max_waiting_per_tenant,
            waiting_activations_per_key: self.max_waiting_per_key,
            attempts_per_tenant: self.max_attempts_per_tenant.max(1),
            uploads_per_tenant: self.max_uploads_per_tenant.max(1),
            handlers_per_tenant: self.max_handlers_per_tenant,
            triggers_per_tenant: self.max_triggers_per_tenant,
            kv: jobhost::kv::KvLimits {
                keys_per_tenant: self.kv_keys_per_tenant,
                bytes_per_tenant: self.kv_bytes_per_tenant,
                value_bytes: self.kv_value_bytes,
            },
        }
    }
}

#[derive(Args)]
struct BenchArgs {
    /// Jobs to create, activate and complete.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Concurrent CreateJob callers.
    #[arg(long, default_value_t = 16)]
    creators: usize,
    /// Concurrent workers.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// max_jobs_to_activate per worker request.
    #[arg(long, default_value_t = 64)]
    batch: i32,
    /// Wake-up latency samples.
    #[arg(long, default_value_t = 200)]
    wake_samples: usize,
    /// Jobs for the Wasm executor run (0 skips it).
    #[arg(long, default_value_t = 20_000)]
    wasm_jobs: usize,
    /// Sandbox-overhead samples (0 skips them).
    #[arg(long, default_value_t = 2_000)]
    sandbox_samples: usize,
    /// Jobs created with CreateJobs, 1,000 per call, for the batch-creation figure (0 skips
    /// it).
    #[arg(long, default_value_t = 100_000)]
    batch_jobs: usize,
    /// Fires of a 1s trigger whose lateness is measured (0 skips them).
    #[arg(long, default_value_t = 10)]
    trigger_fires: usize,
    /// Idle triggers whose CPU cost is measured (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    idle_triggers: usize,
    /// Let the clients use the unlimited admin key instead of a rate-limited one.
    #[arg(long)]
    no_rate_limit: bool,
    /// Jobs a well-behaved tenant creates, alone and beside a hostile tenant (0 skips it).
    #[arg(long, default_value_t = 200)]
    hostile_good_jobs: usize,
    /// Jobs in the hostile tenant's backlog (loops, memory bombs, traps, output floods).
    #[arg(long, default_value_t = 2_000)]
    hostile_backlog: usize,
    /// How long each hostile attempt may run (its loops run this long).
    #[arg(long, default_value_t = 200)]
    hostile_timeout_ms: u64,
    /// Run the server as a child process (`jobhost serve` of this binary), so that it and the
    /// measuring clients share no runtime; reports its CPU and peak memory per figure.
    #[arg(long)]
    server_process: bool,
    /// Measure a peer system on this machine in the same run, figure by figure beside
    /// jobhost's: `bullmq` (BullMQ on a local Redis with appendfsync always; installs Redis and
    /// BullMQ under target/peer when missing).
    #[arg(long, value_parser = ["bullmq"])]
    peer: Option<String>,
    /// Rounds of the comparable figures, alternating which system goes first (default: 3
    /// with --peer, else 1).
    #[arg(long)]
    rounds: Option<usize>,
    /// Jobs of another type to store (with CreateJobs) before the figures are taken, to
    /// compare them against a full store, e.g. 1000000.
    #[arg(long, default_value_t = 0)]
    stored: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct ChaosArgs {
    /// Start, traffic and SIGKILL this many times before the final check.
    #[arg(long, default_value_t = 10)]
    cycles: usize,
    /// Seed of the kill moments (default: random; the report prints it).
    #[arg(long)]
    seed: Option<u64>,
    /// The server's data, kept across restarts (default: a new temporary directory, removed
    /// after a clean run).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Shortest traffic before a kill.
    #[arg(long, default_value_t = 200)]
    min_run_ms: u64,
    /// Longest traffic before a kill.
    #[arg(long, default_value_t = 3_000)]
    max_run_ms: u64,
    /// Concurrent CreateJob callers.
    #[arg(long, default_value_t = 3)]
    creators: usize,
    /// Concurrent external workers.
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// The jobhost binary to run as the server (default: this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Also write the tally as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct Connection {
    /// The server's HTTP address.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:27555",
        env = "JOBHOST_SERVER"
    )]
    server: String,
    /// API key to call with.
    #[arg(long, global = true, env = "JOBHOST_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Trust the PEM certificates in this file for an https:// server (a private CA).
    #[arg(long, global = true, env = "JOBHOST_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Create a job; prints its key on the last line. With --batch, create many.
    Create {
        #[arg(long = "type", required_unless_present = "batch")]
        job_type: Option<String>,
        /// Read jobs as JSON lines (`{"type": …, "variables": {…}, "tenant_id": …}`, the body
        /// of POST /api/v1/jobs) from this file, or `-` for standard input, and create them
        /// 1,000 per atomic write; prints each key in order.
        #[arg(long, value_name = "FILE", conflicts_with = "job_type")]
        batch: Option<PathBuf>,
        /// Variables as a JSON object.
        #[arg(long, default_value = "{}")]
        variables: String,
        #[arg(long, default_value = "")]
        tenant: String,
        #[arg(long)]
        retries: Option<i32>,
        #[arg(long, default_value_t = 0)]
        priority: i32,
        /// Not activatable before this many ms from now.
        #[arg(long, default_value_t = 0)]
        delay_ms: i64,
        /// Not activatable before this RFC 3339 time.
        #[arg(long)]
        run_at: Option<String>,
        /// Create nothing if a job of this type and tenant was created with this key; print
        /// that job's key instead.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Show one job as JSON.
    Get { key: String },
    /// List jobs as JSON.
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long = "type")]
        job_type: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        worker: Option<String>,
        #[arg(long)]
        page: Option<u32>,
        #[arg(long)]
        page_size: Option<u32>,
    },
    /// Cancel a job.
    Cancel { key: String },
    /// Set a job's retries; a failed job becomes activatable again.
    Retries { key: String, retries: i32 },
}

#[derive(Subcommand)]
enum HandlersCommand {
    /// Deploy a component (.wasm) for a job type: a new handler, or a new version. Grants are
    /// denied unless given here or in the manifest.
    Deploy(Box<DeployHandler>),
    /// List handlers as JSON.
    List,
    /// Show one handler with its versions.
    Get { id: String },
    /// Remove a handler: its jobs wait for another worker.
    Remove { id: String },
}

/// What `handlers deploy` sends: the component, and the manifest and flags that describe it.
#[derive(Args)]
struct DeployHandler {
    /// The component; optional when the manifest names it.
    file: Option<PathBuf>,
    /// A handler.toml with the type, tenant, component, limits and grants; flags add to it
    /// (lists) or override it (single values).
    #[arg(long)]
    manifest: Option<PathBuf>,
    #[arg(long = "type")]
    job_type: Option<String>,
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long)]
    memory_mb: Option<u32>,
    #[arg(long)]
    timeout_ms: Option<u64>,
    #[arg(long)]
    max_concurrency: Option<u32>,
    #[arg(long)]
    max_retries: Option<u32>,
    #[arg(long)]
    backoff_ms: Option<u64>,
    #[arg(long)]
    fuel: Option<u64>,
    /// Outbound HTTP the handler may make: [METHODS ]SCHEME://HOST[:PORT], e.g.
    /// https://api.example.com, https://*.example.com, 'GET,POST http://10.0.0.5:8080'.
    #[arg(long = "allow-http", value_name = "PATTERN")]
    allow_http: Vec<String>,
    /// A secret of the tenant the handler may read through wasi:config.
    #[arg(long = "secret", value_name = "NAME")]
    secrets: Vec<String>,
    /// A config value the handler may read through wasi:config.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// A key-value bucket of the tenant the handler may open through wasi:keyvalue.
    #[arg(long = "kv", value_name = "BUCKET")]
    kv: Vec<String>,
    /// A header the host adds to allowed requests to HOST, so the guest never sees the
    /// secret: 'HOST=Authorization: Bearer {{secret:NAME}}'.
    #[arg(long = "inject-header", value_name = "HOST=Name: value")]
    inject_headers: Vec<String>,
}

#[derive(Args)]
struct AddTrigger {
    /// Unique within the tenant.
    name: String,
    #[arg(long = "type")]
    job_type: String,
    /// Cron expression: 5 fields, or 6 with seconds first.
    #[arg(
        long,
        required_unless_present = "interval",
        conflicts_with = "interval"
    )]
    cron: Option<String>,
    /// IANA time zone of the cron expression (default UTC).
    #[arg(long, requires = "cron")]
    tz: Option<String>,
    /// Fixed interval such as 30s, 15m, 1h30m, 2d or 1w.
    #[arg(long)]
    interval: Option<String>,
    #[arg(long)]
    tenant: Option<String>,
    /// Variables of every created job, as a JSON object.
    #[arg(long)]
    variables: Option<String>,
    #[arg(long)]
    retries: Option<i32>,
    #[arg(long)]
    priority: Option<i32>,
    /// Idempotency key of every created job; {scheduled_at} or {scheduled_at_ms} stand for
    /// the fire's time (e.g. report-{scheduled_at}).
    #[arg(long)]
    idempotency_key: Option<String>,
    /// After downtime, skip missed fires instead of creating them.
    #[arg(long)]
    no_catch_up: bool,
    /// Most missed fires created after downtime (default 100).
    #[arg(long)]
    max_catch_up: Option<u32>,
    /// No fire after this RFC 3339 time.
    #[arg(long, conflicts_with = "lifetime")]
    end_at: Option<String>,
    /// Stop this long after creation, e.g. 24h.
    #[arg(long)]
    lifetime: Option<String>,
    /// allow, or skip a fire while the previous job is unfinished.
    #[arg(long)]
    overlap: Option<String>,
    /// Create the trigger paused.
    #[arg(long)]
    paused: bool,
}

#[derive(Subcommand)]
enum TriggersCommand {
    /// Add a trigger that creates a job of a type on a schedule.
    Add(Box<AddTrigger>),
    /// List triggers with their next and last fire times.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long = "type")]
        job_type: Option<String>,
    },
    /// Show one trigger (by id, or by name with --tenant when names repeat across tenants).
    Get {
        trigger: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Stop firing until resumed.
    Pause {
        trigger: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Fire again from now on (fires missed while paused are not created).
    Resume {
        trigger: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Remove a trigger; the jobs it created stay.
    Remove {
        trigger: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; prints the key alone on the last line.
    Create {
        /// jobs, handlers, triggers, keys, audit, secrets, kv or * (repeatable).
        #[arg(long = "permissions", alias = "permission", required = true)]
        permissions: Vec<String>,
        /// A tenant the key may act on (repeatable); none means every tenant.
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        #[arg(long, default_value = "")]
        name: String,
        /// Requests per second the key may make (with --burst); default: the server's.
        #[arg(long, requires = "burst")]
        rate: Option<u32>,
        /// Requests the key may make at once, above its rate.
        #[arg(long, requires = "rate")]
        burst: Option<u32>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key at once, by id or by the key itself.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Set a secret from standard input (one trailing newline is dropped), e.g.
    /// `printf %s "$TOKEN" | jobhost secrets set STRIPE_KEY --tenant acme`.
    Set {
        name: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List a tenant's secrets: names and update times, never values.
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Remove a secret; handlers granted it read nothing from then on.
    Remove {
        name: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum KvCommand {
    /// List the tenant's buckets, or a bucket's keys.
    List {
        bucket: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        /// With a bucket: keys after this one (the previous page's `next`).
        #[arg(long, requires = "bucket")]
        after: Option<String>,
    },
    /// Print the value under a key.
    Get {
        bucket: String,
        key: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Set the value under a key; `-` reads it from standard input.
    Set {
        bucket: String,
        key: String,
        value: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Delete a key.
    Rm {
        bucket: String,
        key: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::Bench(args) => bench(args).await,
        Command::Chaos(args) => chaos(args).await,
        Command::BenchListing { jobs, json } => {
            let report = jobhost::bench::listing::run(jobs.max(100)).await?;
            outln!("{}", report.table());
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
        Command::BenchRetention {
            seconds,
            retain,
            every,
            json,
        } => {
            let options = jobhost::bench::retention::RetentionOptions {
                duration: Duration::from_secs(seconds.max(1)),
                retain_ms: jobhost::retention::parse_age(&retain)
                    .map_err(|e| anyhow::anyhow!("--retain: {e}"))?,
                every: Duration::from_secs(every.max(1)),
                creators: 16,
                workers: 4,
            };
            let report = jobhost::bench::retention::run(options).await?;
            outln!("{}", report.table());
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
        Command::Jobs {
            connection,
            command,
        } => jobs(client(&connection)?, command).await,
        Command::Keys {
            connection,
            command,
        } => keys(client(&connection)?, command).await,
        Command::Secrets {
            connection,
            command,
        } => secrets(client(&connection)?, command).await,
        Command::Kv {
            connection,
            command,
        } => kv(client(&connection)?, command).await,
        Command::Audit { connection, filter } => audit(client(&connection)?, filter).await,
        Command::Backup {
            connection,
            to,
            with_compiled,
        } => {
            let contents = jobhost::backup::download(&client(&connection)?, &to, with_compiled)
                .await
                .context("backup failed")?;
            outln!("{} written to {}", contents.describe(), to.display());
            Ok(())
        }
        Command::Restore {
            from,
            data_dir,
            force,
        } => {
            let contents =
                jobhost::backup::restore(&from, &data_dir, force).context("restore failed")?;
            let into = data_dir.display();
            outln!("{} restored into {into}", contents.describe());
            Ok(())
        }
        Command::Handlers {
            connection,
            command,
        } => handlers(client(&connection)?, command).await,
        Command::Triggers {
            connection,
            command,
        } => triggers(client(&connection)?, command).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if args.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let mut config = jobhost::Config::local(args.data_dir);
    config.grpc_addr = args.grpc_addr;
    config.http_addr = args.http_addr;
    config.admin_key = std::env::var("JOBHOST_ADMIN_KEY").ok();
    config.deploy_examples = args.examples;
    config.tls = args
        .tls_cert
        .zip(args.tls_key)
        .map(|(cert, key)| jobhost::tls::TlsFiles { cert, key });
    config.max_attempts = args.max_attempts.max(1);
    if let Some(threads) = args.attempt_threads {
        config.attempt_threads = threads.max(1);
    }
    config.quotas = args.quotas.quotas();
    if let (Some(rate), Some(burst)) = (args.rate_limit, args.rate_burst) {
        config.default_rate_limit =
            Some(jobhost::rate_limit::RateLimit::checked(rate, burst).map_err(anyhow::Error::msg)?);
    }
    config.shutdown_grace = std::time::Duration::from_millis(args.shutdown_grace_ms);
    config.http = args.http.settings()?;
    config.retention = args.retention.policy()?;
    config.store_cache_bytes = args.store_cache_mb * 1024 * 1024;
    if config.admin_key.as_deref().is_none_or(str::is_empty) {
        tracing::warn!("JOBHOST_ADMIN_KEY is not set: only keys created earlier can call");
    }
    let server = jobhost::start(config)
        .await
        .context("starting the server")?;
    server
        .run_until(shutdown_signal())
        .await
        .context("shutting down")?;
    Ok(())
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let options = jobhost::bench::BenchOptions {
        jobs: args.jobs.max(1),
        creators: args.creators.max(1),
        workers: args.workers.max(1),
        batch: args.batch.clamp(1, 100),
        wake_samples: args.wake_samples,
        wasm_jobs: args.wasm_jobs,
        sandbox_samples: args.sandbox_samples,
        batch_jobs: args.batch_jobs,
        trigger_fires: args.trigger_fires,
        idle_triggers: args.idle_triggers,
        rate_limited: !args.no_rate_limit,
        hostile: jobhost::bench::hostile::HostileOptions {
            good_jobs: args.hostile_good_jobs,
            good_interval: std::time::Duration::from_millis(10),
            backlog: args.hostile_backlog,
            hostile_timeout_ms: args.hostile_timeout_ms.max(1),
        },
        placement: if args.server_process {
            let binary = std::env::current_exe().context("locating the jobhost binary")?;
            jobhost::bench::ServerPlacement::ChildProcess { binary }
        } else {
            jobhost::bench::ServerPlacement::InProcess
        },
        rounds: args
            .rounds
            .unwrap_or(if args.peer.is_some() { 3 } else { 1 })
            .max(1),
        // The parser admits no other peer.
        peer: args.peer.map(|_bullmq| jobhost::bench::Peer::BullMq {
            install_dir: jobhost::bench::peer::default_dir(),
        }),
        stored: args.stored,
    };
    let report = jobhost::bench::run(options).await?;
    outln!("{}", report.table());
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn chaos(args: ChaosArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let server_bin = match args.server_bin {
        Some(path) => path,
        None => std::env::current_exe().context("locating the jobhost binary")?,
    };
    let temporary = args.data_dir.is_none();
    let data_dir = args.data_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("jobhost-chaos-{}", std::process::id()))
    });
    let mut options = jobhost::chaos::ChaosOptions::new(server_bin, data_dir.clone());
    options.cycles = args.cycles;
    options.seed = args.seed.unwrap_or_else(rand::random);
    options.min_run = std::time::Duration::from_millis(args.min_run_ms);
    options.max_run = std::time::Duration::from_millis(args.max_run_ms.max(args.min_run_ms));
    options.creators = args.creators;
    options.workers = args.workers.max(1);
    let report = jobhost::chaos::run(&options).await?;
    outln!("{}", report.table());
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    report.check()?;
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

fn client(connection: &Connection) -> anyhow::Result<RestClient> {
    let http = jobhost::tls::http_client(connection.ca_cert.as_deref())?;
    Ok(RestClient::with_http(
        &connection.server,
        connection.api_key.clone(),
        http,
    ))
}

/// Writes a line to standard output, as `println!` does, except that a reader that went away
/// (`jobhost jobs get 1 | head`) ends the command quietly instead of with a panic.
macro_rules! outln {
    ($($arg:tt)*) => {
        write_out(format_args!($($arg)*))
    };
}
use outln;

fn write_out(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    if let Err(error) = written {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("jobhost: cannot write to standard output: {error}");
        std::process::exit(1);
    }
}

fn print(value: &Value) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn jobs(client: RestClient, command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::Create {
            batch: Some(file), ..
        } => create_batch(&client, &file).await?,
        JobsCommand::Create {
            batch: None,
            job_type,
            variables,
            tenant,
            retries,
            priority,
            delay_ms,
            run_at,
            idempotency_key,
        } => {
            let variables: Value =
                serde_json::from_str(&variables).context("--variables must be JSON")?;
            let body = json!({
                "type": job_type.unwrap_or_default(), "variables": variables, "tenant_id": tenant,
                "retries": retries, "priority": priority, "delay_ms": delay_ms, "run_at": run_at,
                "idempotency_key": idempotency_key.unwrap_or_default(),
            });
            let data = client
                .call(Method::POST, "/api/v1/jobs", Some(body))
                .await?;
            outln!("{}", data["job_key"].as_str().unwrap_or_default());
        }
        JobsCommand::Get { key } => {
            print(
                &client
                    .call(Method::GET, &format!("/api/v1/jobs/{key}"), None)
                    .await?,
            )?;
        }
        JobsCommand::List {
            state,
            job_type,
            tenant,
            worker,
            page,
            page_size,
        } => {
            let mut query = Vec::new();
            let mut add = |name: &str, value: Option<String>| {
                if let Some(value) = value {
                    query.push(format!("{name}={}", urlencode(&value)));
                }
            };
            add("state", state);
            add("type", job_type);
            add("tenant_id", tenant);
            add("worker", worker);
            add("page", page.map(|p| p.to_string()));
            add("page_size", page_size.map(|p| p.to_string()));
            let path = format!("/api/v1/jobs?{}", query.join("&"));
            print(&client.call(Method::GET, &path, None).await?)?;
        }
        JobsCommand::Cancel { key } => {
            let path = format!("/api/v1/jobs/{key}/cancel");
            let data = client.call(Method::POST, &path, None).await?;
            outln!(
                "job {key} is {}",
                data["state"].as_str().unwrap_or_default()
            );
        }
        JobsCommand::Retries { key, retries } => {
            let path = format!("/api/v1/jobs/{key}/retries");
            let body = json!({ "retries": retries });
            let data = client.call(Method::PUT, &path, Some(body)).await?;
            outln!(
                "job {key} has {retries} retries and is {}",
                data["state"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}

async fn handlers(client: RestClient, command: HandlersCommand) -> anyhow::Result<()> {
    match command {
        HandlersCommand::Deploy(deploy) => {
            let DeployHandler {
                file,
                manifest,
                job_type,
                tenant,
                memory_mb,
                timeout_ms,
                max_concurrency,
                max_retries,
                backoff_ms,
                fuel,
                allow_http,
                secrets,
                config,
                kv,
                inject_headers,
            } = *deploy;
            let manifest = match &manifest {
                Some(path) => Manifest::read(path).map_err(anyhow::Error::msg)?,
                None => Manifest::default(),
            };
            let file = file.or(manifest.component.clone()).context(
                "name the component: jobhost handlers deploy FILE.wasm, or `component` in the manifest",
            )?;
            if job_type.is_none() && manifest.job_type.is_none() {
                anyhow::bail!("name the job type: --type TYPE, or `type` in the manifest");
            }
            let component =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let mut query = manifest.query();
            let mut set = |name: &str, value: Option<String>| {
                if let Some(value) = value {
                    query.retain(|(key, _)| key != name);
                    query.push((name.to_string(), value));
                }
            };
            set("type", job_type);
            set("tenant", tenant);
            set("memory_mb", memory_mb.map(|v| v.to_string()));
            set("timeout_ms", timeout_ms.map(|v| v.to_string()));
            set("max_concurrency", max_concurrency.map(|v| v.to_string()));
            set("max_retries", max_retries.map(|v| v.to_string()));
            set("backoff_ms", backoff_ms.map(|v| v.to_string()));
            set("fuel", fuel.map(|v| v.to_string()));
            for (name, values) in [
                ("allow_http", allow_http),
                ("secret", secrets),
                ("config", config),
                ("kv", kv),
                ("inject_header", inject_headers),
            ] {
                query.extend(values.into_iter().map(|v| (name.to_string(), v)));
            }
            let query = query
                .iter()
                .map(|(name, value)| format!("{name}={}", urlencode(value)))
                .collect::<Vec<_>>();
            let path = format!("/api/v1/handlers/uploads?{}", query.join("&"));
            let upload = client.upload(&path, component).await?;
            let data = wait_for_upload(&client, &upload).await?;
            outln!(
                "deployed {} version {} for type {} in tenant {}",
                data["id"].as_str().unwrap_or_default(),
                data["current_version"],
                data["type"].as_str().unwrap_or_default(),
                data["tenant_id"].as_str().unwrap_or_default()
            );
        }
        HandlersCommand::List => print(&client.call(Method::GET, "/api/v1/handlers", None).await?)?,
        HandlersCommand::Get { id } => {
            let path = format!("/api/v1/handlers/{}", urlencode(&id));
            print(&client.call(Method::GET, &path, None).await?)?
        }
        HandlersCommand::Remove { id } => {
            let path = format!("/api/v1/handlers/{}", urlencode(&id));
            client.call(Method::DELETE, &path, None).await?;
            outln!("removed {id}");
        }
    }
    Ok(())
}

async fn triggers(client: RestClient, command: TriggersCommand) -> anyhow::Result<()> {
    match command {
        TriggersCommand::Add(add) => {
            let AddTrigger {
                name,
                job_type,
                cron,
                tz,
                interval,
                tenant,
                variables,
                retries,
                priority,
                idempotency_key,
                no_catch_up,
                max_catch_up,
                end_at,
                lifetime,
                overlap,
                paused,
            } = *add;
            let variables: Option<Value> = variables
                .map(|text| serde_json::from_str(&text).context("--variables is not valid JSON"))
                .transpose()?;
            let mut definition = serde_json::json!({
                "name": name,
                "type": job_type,
                "cron": cron,
                "time_zone": tz,
                "interval": interval,
                "tenant_id": tenant,
                "variables": variables,
                "retries": retries,
                "priority": priority,
                "idempotency_key": idempotency_key,
                "catch_up": !no_catch_up,
                "max_catch_up": max_catch_up,
                "end_at": end_at,
                "lifetime": lifetime,
                "overlap": overlap,
                "enabled": !paused,
            });
            if let Some(fields) = definition.as_object_mut() {
                fields.retain(|_, value| !value.is_null());
            }
            let data = client
                .call(Method::POST, "/api/v1/triggers", Some(definition))
                .await?;
            outln!(
                "added trigger {} ({}) in tenant {}: next fire {}",
                data["id"].as_str().unwrap_or_default(),
                data["name"].as_str().unwrap_or_default(),
                data["tenant_id"].as_str().unwrap_or_default(),
                data["next_fire_at"].as_str().unwrap_or("none"),
            );
        }
        TriggersCommand::List { tenant, job_type } => {
            let mut query = Vec::new();
            if let Some(tenant) = tenant {
                query.push(format!("tenant_id={}", urlencode(&tenant)));
            }
            if let Some(job_type) = job_type {
                query.push(format!("type={}", urlencode(&job_type)));
            }
            let path = format!("/api/v1/triggers?{}", query.join("&"));
            print(&client.call(Method::GET, &path, None).await?)?
        }
        TriggersCommand::Get { trigger, tenant } => {
            let id = trigger_id(&client, &trigger, tenant.as_deref()).await?;
            let path = format!("/api/v1/triggers/{id}");
            print(&client.call(Method::GET, &path, None).await?)?
        }
        TriggersCommand::Pause { trigger, tenant } => {
            set_enabled(&client, &trigger, tenant.as_deref(), false).await?
        }
        TriggersCommand::Resume { trigger, tenant } => {
            set_enabled(&client, &trigger, tenant.as_deref(), true).await?
        }
        TriggersCommand::Remove { trigger, tenant } => {
            let id = trigger_id(&client, &trigger, tenant.as_deref()).await?;
            let path = format!("/api/v1/triggers/{id}");
            client.call(Method::DELETE, &path, None).await?;
            outln!("removed trigger {id}");
        }
    }
    Ok(())
}

async fn set_enabled(
    client: &RestClient,
    trigger: &str,
    tenant: Option<&str>,
    enabled: bool,
) -> anyhow::Result<()> {
    let id = trigger_id(client, trigger, tenant).await?;
    let path = format!("/api/v1/triggers/{id}");
    let body = serde_json::json!({ "enabled": enabled });
    let data = client.call(Method::PATCH, &path, Some(body)).await?;
    outln!(
        "trigger {id} is {}; next fire {}",
        data["status"].as_str().unwrap_or_default(),
        data["next_fire_at"].as_str().unwrap_or("none")
    );
    Ok(())
}

/// A trigger's id from its id or its name (unique within a tenant).
async fn trigger_id(
    client: &RestClient,
    trigger: &str,
    tenant: Option<&str>,
) -> anyhow::Result<String> {
    if !trigger.is_empty() && trigger.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(trigger.to_string());
    }
    let mut path = format!("/api/v1/triggers?name={}", urlencode(trigger));
    if let Some(tenant) = tenant {
        path.push_str(&format!("&tenant_id={}", urlencode(tenant)));
    }
    let data = client.call(Method::GET, &path, None).await?;
    let found = data["triggers"].as_array().cloned().unwrap_or_default();
    match found.as_slice() {
        [one] => Ok(one["id"].as_str().unwrap_or_default().to_string()),
        [] => anyhow::bail!("no trigger named '{trigger}'"),
        several => {
            let tenants: Vec<&str> = several
                .iter()
                .filter_map(|t| t["tenant_id"].as_str())
                .collect();
            anyhow::bail!(
                "triggers named '{trigger}' exist in tenants {}: name one with --tenant",
                tenants.join(", ")
            )
        }
    }
}

async fn keys(client: RestClient, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            permissions,
            tenants,
            name,
            rate,
            burst,
        } => {
            let mut body = json!({ "permissions": permissions, "tenants": tenants, "name": name });
            if let (Some(rate), Some(burst)) = (rate, burst) {
                body["rate_limit"] = json!({ "per_second": rate, "burst": burst });
            }
            let data = client
                .call(Method::POST, "/api/v1/keys", Some(body))
                .await?;
            eprintln!(
                "created key {} (shown once; store it now)",
                data["info"]["id"]
            );
            outln!("{}", data["key"].as_str().unwrap_or_default());
        }
        KeysCommand::List => print(&client.call(Method::GET, "/api/v1/keys", None).await?)?,
        KeysCommand::Revoke { id } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/api/v1/keys/{}", urlencode(&id)),
                    None,
                )
                .await?;
            outln!("revoked {id}");
        }
    }
    Ok(())
}

/// Creates the jobs of a JSON-lines file (or stdin) in batches, showing progress on stderr,
/// and prints each key in order.
async fn create_batch(client: &RestClient, file: &std::path::Path) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    const BATCH: usize = 1000;
    let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let opened =
            std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
        Box::new(std::io::BufReader::new(opened))
    };
    let terminal = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let mut created = 0_usize;
    let mut pending: Vec<Value> = Vec::with_capacity(BATCH);
    let mut lines = reader.lines().enumerate();
    loop {
        let next = lines.next();
        if let Some((number, line)) = next.as_ref().map(|(n, l)| (*n, l)) {
            let line = line
                .as_ref()
                .map_err(|e| anyhow::anyhow!("reading line {}: {e}", number + 1))?;
            if !line.trim().is_empty() {
                let job: Value = serde_json::from_str(line)
                    .with_context(|| format!("line {} is not a JSON object", number + 1))?;
                pending.push(job);
            }
        }
        if pending.len() == BATCH || (next.is_none() && !pending.is_empty()) {
            let jobs = std::mem::take(&mut pending);
            let count = jobs.len();
            let data = client
                .call(
                    Method::POST,
                    "/api/v1/jobs/batch",
                    Some(json!({ "jobs": jobs })),
                )
                .await
                .with_context(|| format!("the batch after {created} created jobs was refused"))?;
            let mut out = std::io::stdout().lock();
            for key in data["job_keys"].as_array().into_iter().flatten() {
                writeln!(out, "{}", key.as_str().unwrap_or_default())?;
            }
            created += count;
            if terminal {
                let rate = created as f64 / started.elapsed().as_secs_f64().max(0.001);
                eprint!("\rcreated {created} jobs ({rate:.0}/s)");
            }
        }
        if next.is_none() {
            break;
        }
    }
    if terminal {
        eprintln!();
    }
    eprintln!(
        "created {created} jobs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Follows an upload compiled in the background until it is ready, showing how long it has
/// been compiling; answers the deployed handler.
async fn wait_for_upload(client: &RestClient, upload: &Value) -> anyhow::Result<Value> {
    use std::io::{IsTerminal, Write};
    let id = upload["id"]
        .as_str()
        .context("the server answered no upload id")?;
    let path = format!("/api/v1/handlers/uploads/{}", urlencode(id));
    let megabytes = upload["bytes"].as_f64().unwrap_or(0.0) / 1_048_576.0;
    let terminal = std::io::stderr().is_terminal();
    if !terminal {
        eprintln!("compiling {megabytes:.1} MB on the server...");
    }
    let spinner = ['|', '/', '-', '\\'];
    let mut turn = 0;
    let status = loop {
        let status = client.call(Method::GET, &path, None).await?;
        if status["state"] != "compiling" {
            break status;
        }
        if terminal {
            let seconds = status["elapsed_ms"].as_f64().unwrap_or(0.0) / 1000.0;
            eprint!(
                "\r{} compiling {megabytes:.1} MB on the server: {seconds:.0} s",
                spinner[turn % spinner.len()]
            );
            let _ = std::io::stderr().flush();
            turn += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if terminal {
        eprintln!();
    }
    match status["state"].as_str() {
        Some("ready") => {
            let handler = status["handler_id"].as_str().unwrap_or_default();
            let path = format!("/api/v1/handlers/{}", urlencode(handler));
            Ok(client.call(Method::GET, &path, None).await?)
        }
        _ => anyhow::bail!(
            "the upload failed: {}",
            status["error"].as_str().unwrap_or("no reason given")
        ),
    }
}

async fn secrets(client: RestClient, command: SecretsCommand) -> anyhow::Result<()> {
    let path = |name: Option<&str>, tenant: &Option<String>| {
        let mut path = "/api/v1/secrets".to_string();
        if let Some(name) = name {
            path = format!("{path}/{}", urlencode(name));
        }
        if let Some(tenant) = tenant {
            path = format!("{path}?tenant_id={}", urlencode(tenant));
        }
        path
    };
    match command {
        SecretsCommand::Set { name, tenant } => {
            let mut value = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut value)
                .context("reading the secret from standard input")?;
            if value.ends_with(b"\n") {
                value.pop();
                if value.ends_with(b"\r") {
                    value.pop();
                }
            }
            let data = client.put_bytes(&path(Some(&name), &tenant), value).await?;
            let verb = if data["created"] == json!(true) {
                "created"
            } else {
                "replaced"
            };
            outln!(
                "{verb} secret {name} in tenant {}",
                data["secret"]["tenant_id"].as_str().unwrap_or_default()
            );
        }
        SecretsCommand::List { tenant } => {
            print(&client.call(Method::GET, &path(None, &tenant), None).await?)?
        }
        SecretsCommand::Remove { name, tenant } => {
            client
                .call(Method::DELETE, &path(Some(&name), &tenant), None)
                .await?;
            outln!("removed secret {name}");
        }
    }
    Ok(())
}

async fn kv(client: RestClient, command: KvCommand) -> anyhow::Result<()> {
    let path = |bucket: Option<&str>, key: Option<&str>, tenant: &Option<String>| {
        let mut path = "/api/v1/kv".to_string();
        if let Some(bucket) = bucket {
            path = format!("{path}/{}", urlencode(bucket));
        }
        if let Some(key) = key {
            // Slashes stay: keys may be paths.
            let key: Vec<String> = key.split('/').map(urlencode).collect();
            path = format!("{path}/{}", key.join("/"));
        }
        let mut query = Vec::new();
        if let Some(tenant) = tenant {
            query.push(format!("tenant_id={}", urlencode(tenant)));
        }
        (path, query)
    };
    let with_query = |(path, query): (String, Vec<String>)| {
        if query.is_empty() {
            path
        } else {
            format!("{path}?{}", query.join("&"))
        }
    };
    match command {
        KvCommand::List {
            bucket,
            tenant,
            after,
        } => {
            let (path, mut query) = path(bucket.as_deref(), None, &tenant);
            if let Some(after) = after {
                query.push(format!("after={}", urlencode(&after)));
            }
            print(
                &client
                    .call(Method::GET, &with_query((path, query)), None)
                    .await?,
            )?
        }
        KvCommand::Get {
            bucket,
            key,
            tenant,
        } => {
            let data = client
                .call(
                    Method::GET,
                    &with_query(path(Some(&bucket), Some(&key), &tenant)),
                    None,
                )
                .await?;
            match data["value"].as_str() {
                Some(text) => outln!("{text}"),
                None => outln!("{}", data["value_hex"].as_str().unwrap_or_default()),
            }
        }
        KvCommand::Set {
            bucket,
            key,
            value,
            tenant,
        } => {
            let bytes = if value == "-" {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                    .context("reading the value from standard input")?;
                bytes
            } else {
                value.into_bytes()
            };
            client
                .put_bytes(&with_query(path(Some(&bucket), Some(&key), &tenant)), bytes)
                .await?;
            outln!("set {bucket}/{key}");
        }
        KvCommand::Rm {
            bucket,
            key,
            tenant,
        } => {
            client
                .call(
                    Method::DELETE,
                    &with_query(path(Some(&bucket), Some(&key), &tenant)),
                    None,
                )
                .await?;
            outln!("deleted {bucket}/{key}");
        }
    }
    Ok(())
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_command_and_flag_is_consistently_defined() {
        super::Cli::command().debug_assert();
    }
}
