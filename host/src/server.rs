//! Starting and stopping a jobhost server: the store, the service core, and the gRPC and
//! HTTP listeners around it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

use crate::api::grpc::{GrpcJobs, pb};
use crate::api::rest;
use crate::auth::Principal;
use crate::clock::{Clock, SystemClock};
use crate::job::limits::MAX_MESSAGE_BYTES;
use crate::job::{TenantScope, now_ms};
use crate::metrics::{GaugeReadings, Gauges, Metrics, MetricsRegistry};
use crate::quota::Quotas;
use crate::rate_limit::RateLimit;
use crate::retention::RetentionPolicy;
use crate::runtime::{Runtime, RuntimeConfig, RuntimeError};
use crate::secrets::{SecretBox, SecretKeyError};
use crate::service::capabilities::{CapabilitySource, HttpSettings};
use crate::service::handlers::{Deployment, HandlerMaxima, HandlerRegistry};
use crate::service::{ApiKeys, DEFAULT_TENANT, JobService, ServiceError, ServiceParts};
use crate::signals::Signals;
use crate::store::{JobStore, SledStore, StoreError};
use crate::tasks::executor::{Executor, ExecutorConfig};
use crate::tasks::lanes::Lanes;
use crate::tasks::scheduler::{SchedulerStats, TriggerScheduler};
use crate::tls::{ServerTls, TlsError, TlsFiles};

/// How often retention looks for finished jobs to delete.
const RETENTION_ROUND: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// A key with every permission on every tenant (`JOBHOST_ADMIN_KEY`).
    pub admin_key: Option<String>,
    /// Wasm attempts running at once on this server.
    pub max_attempts: usize,
    /// Threads that run Wasm guest code (see [`crate::tasks::lanes`]).
    pub attempt_threads: usize,
    /// What one tenant or key may hold at once.
    pub quotas: Quotas,
    /// The request rate of keys created without a limit of their own; `None`: unlimited.
    pub default_rate_limit: Option<RateLimit>,
    /// How long running Wasm attempts may go on after shutdown begins.
    pub shutdown_grace: Duration,
    /// What a deployed handler may ask for.
    pub handler_maxima: HandlerMaxima,
    /// Deploy the example handlers (echo, flaky, fanout) into the default tenant.
    pub deploy_examples: bool,
    /// The time triggers fire by; tests use a [`crate::clock::ManualClock`].
    pub clock: Arc<dyn Clock>,
    /// Serve both listeners over TLS with this certificate and key.
    pub tls: Option<TlsFiles>,
    /// What handlers' outbound HTTP may reach and use.
    pub http: HttpSettings,
    /// How long finished jobs are kept.
    pub retention: RetentionPolicy,
    /// Memory the embedded store may use for its page cache.
    pub store_cache_bytes: u64,
}

impl Config {
    /// A server on ephemeral loopback ports, storing in `data_dir`.
    pub fn local(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_key: None,
            max_attempts: 64,
            attempt_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            quotas: Quotas::default(),
            default_rate_limit: None,
            shutdown_grace: Duration::from_secs(10),
            handler_maxima: HandlerMaxima::default(),
            deploy_examples: false,
            clock: Arc::new(SystemClock),
            tls: None,
            http: HttpSettings::default(),
            retention: RetentionPolicy::default(),
            store_cache_bytes: crate::store::DEFAULT_CACHE_BYTES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server failed: {0}")]
    Grpc(String),
    #[error("HTTP server failed: {0}")]
    Http(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot start the threads that run Wasm attempts: {0}")]
    Lanes(std::io::Error),
    #[error("{0}")]
    Service(#[from] ServiceError),
    #[error(transparent)]
    SecretKey(#[from] SecretKeyError),
}

/// A server that is accepting requests.
pub struct RunningServer {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    grpc: JoinHandle<Result<(), ServerError>>,
    http: JoinHandle<Result<(), ServerError>>,
    executor: JoinHandle<()>,
    scheduler: JoinHandle<()>,
    retention: JoinHandle<()>,
    store: Arc<dyn JobStore>,
    scheduler_stats: Arc<SchedulerStats>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish (long polls end at once, empty), gives
    /// running Wasm attempts their grace period, flushes the store and returns.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.stop.send(true);
        let grpc = self
            .grpc
            .await
            .map_err(|e| ServerError::Grpc(e.to_string()))?;
        let http = self
            .http
            .await
            .map_err(|e| ServerError::Http(e.to_string()))?;
        // Running Wasm attempts finish (or are handed back) before the store closes.
        let _ = self.executor.await;
        let _ = self.scheduler.await;
        let _ = self.retention.await;
        self.store.close().await?;
        grpc.and(http)
    }

    /// What the trigger scheduler has done so far.
    pub fn scheduler_stats(&self) -> &SchedulerStats {
        &self.scheduler_stats
    }

    /// Serves until `signal` resolves, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Result<(), ServerError> {
        signal.await;
        tracing::info!("shutting down");
        self.shutdown().await
    }
}

/// Opens the store and starts serving gRPC and HTTP.
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    // Bad TLS files fail before anything is opened.
    let tls = config.tls.as_ref().map(ServerTls::load).transpose()?;
    std::fs::create_dir_all(&config.data_dir).map_err(|e| StoreError::Io(e.to_string()))?;
    let secret_box = Arc::new(SecretBox::from_env_or_dir(&config.data_dir)?);
    let dir = config.data_dir.clone();
    let metrics = Arc::new(Metrics::default());
    let store_metrics = metrics.clone();
    let cache_bytes = config.store_cache_bytes;
    let store =
        tokio::task::spawn_blocking(move || SledStore::open_with(&dir, store_metrics, cache_bytes))
            .await
            .map_err(|e| StoreError::Io(e.to_string()))??;
    let store: Arc<dyn JobStore> = Arc::new(store);
    let signals = Signals::default();
    let (stop, stopping) = watch::channel(false);
    let keys = Arc::new(
        ApiKeys::load(
            store.clone(),
            config.admin_key.as_deref(),
            config.default_rate_limit,
            signals.clone(),
        )
        .await?,
    );
    tokio::spawn(keys.clone().follow(signals.subscribe(), stopping.clone()));
    let runtime: Arc<Runtime> = Arc::new(Runtime::new(RuntimeConfig {
        max_memory_mb: config.handler_maxima.memory_mb,
        max_concurrent_attempts: config.max_attempts as u32,
        cache_dir: Some(config.data_dir.join("compiled")),
    })?);
    let registry = Arc::new(
        HandlerRegistry::open(
            store.clone(),
            runtime.clone(),
            config.handler_maxima.clone(),
            &config.quotas,
            signals.clone(),
        )
        .await?,
    );
    tokio::spawn(
        registry
            .clone()
            .follow(signals.subscribe(), stopping.clone()),
    );
    let service = Arc::new(JobService::new(
        store.clone(),
        ServiceParts {
            keys,
            handlers: registry.clone(),
            shutdown: stopping.clone(),
            clock: config.clock.clone(),
            signals: signals.clone(),
            quotas: config.quotas.clone(),
            capabilities: CapabilitySource::new(
                store.clone(),
                secret_box.clone(),
                config.http.clone(),
                config.quotas.kv,
                metrics.clone(),
            ),
            secret_box,
        },
    ));
    let scheduler_stats = Arc::new(SchedulerStats::default());
    let scheduler = TriggerScheduler::new(
        service.clone(),
        config.clock.clone(),
        signals.subscribe(),
        scheduler_stats.clone(),
    )
    .await?;
    let scheduler = tokio::spawn(scheduler.run(stopping.clone()));
    let retention = tokio::spawn(crate::tasks::retention::run(
        service.clone(),
        config.retention.clone(),
        RETENTION_ROUND,
        stopping.clone(),
    ));
    if config.deploy_examples {
        deploy_examples(&service).await?;
    }
    let lanes = Lanes::start(config.attempt_threads, tokio::runtime::Handle::current())
        .map_err(ServerError::Lanes)?;
    let executor = Arc::new(Executor::new(
        service.clone(),
        runtime.clone(),
        registry.clone(),
        lanes,
        ExecutorConfig {
            max_attempts: config.max_attempts,
            max_attempts_per_tenant: config.quotas.attempts_per_tenant,
            shutdown_grace: config.shutdown_grace,
            metrics: metrics.clone(),
        },
    ));
    let executor = tokio::spawn(executor.run(signals.subscribe(), stopping.clone()));

    let grpc_listener = bind(config.grpc_addr).await?;
    let http_listener = bind(config.http_addr).await?;
    let grpc_addr = local_addr(&grpc_listener, config.grpc_addr)?;
    let http_addr = local_addr(&http_listener, config.http_addr)?;

    let grpc = tokio::spawn(serve_grpc(
        grpc_listener,
        service.clone(),
        tls.clone(),
        stopping.clone(),
    ));
    let gauges = Arc::new(ServerGauges {
        store: store.clone(),
        service: service.clone(),
        runtime,
        scheduler: scheduler_stats.clone(),
    });
    let metrics = Arc::new(MetricsRegistry::new(&metrics, gauges));
    let app = rest::router(service, metrics);
    let https = tls.is_some();
    let http = tokio::spawn(async move {
        let served = match tls {
            Some(tls) => {
                axum::serve(tls.listener(http_listener), app)
                    .with_graceful_shutdown(stopped(stopping))
                    .await
            }
            None => {
                let listener = http_listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, app)
                    .with_graceful_shutdown(stopped(stopping))
                    .await
            }
        };
        served.map_err(|e| ServerError::Http(e.to_string()))
    });
    tracing::info!(%grpc_addr, %http_addr, tls = https, data_dir = %config.data_dir.display(), "jobhost is serving");
    Ok(RunningServer {
        grpc_addr,
        http_addr,
        stop,
        grpc,
        http,
        executor,
        scheduler,
        retention,
        store,
        scheduler_stats,
    })
}

/// What the metrics read at scrape time.
struct ServerGauges {
    store: Arc<dyn JobStore>,
    service: Arc<JobService>,
    runtime: Arc<Runtime>,
    scheduler: Arc<SchedulerStats>,
}

#[async_trait::async_trait]
impl Gauges for ServerGauges {
    async fn read(&self) -> GaugeReadings {
        use std::sync::atomic::Ordering::Relaxed;
        let queue_depth = match self.store.stats(&TenantScope::All, None, now_ms()).await {
            Ok(stats) => stats.by_group,
            Err(error) => {
                tracing::warn!(%error, "queue depth unavailable for metrics");
                Vec::new()
            }
        };
        let mut triggers = vec![("active", 0), ("paused", 0), ("ended", 0)];
        for trigger in self.store.triggers().await.unwrap_or_default() {
            let status = trigger.status().as_str();
            if let Some(slot) = triggers.iter_mut().find(|(name, _)| *name == status) {
                slot.1 += 1;
            }
        }
        GaugeReadings {
            queue_depth,
            waiting_long_polls: self.service.waiting_activations() as u64,
            handler_loads: self.runtime.load_counts(),
            triggers,
            trigger_activity: (
                self.scheduler.jobs_created.load(Relaxed),
                self.scheduler.rounds.load(Relaxed),
            ),
        }
    }
}

/// Deploys the bundled examples, unless the same components are deployed already.
async fn deploy_examples(service: &JobService) -> Result<(), ServerError> {
    let admin = Principal::admin();
    let deployed = service.list_handlers(&admin)?;
    for (job_type, component) in crate::examples::EXAMPLES {
        let sha256: [u8; 32] = sha2::Sha256::digest(component).into();
        let deployed = deployed.iter().any(|h| {
            h.record.tenant == DEFAULT_TENANT
                && h.record.job_type == job_type
                && h.record.current().component_sha256 == sha256
        });
        if deployed {
            continue;
        }
        let deployment = Deployment {
            job_type: job_type.to_string(),
            component: component.to_vec(),
            ..Deployment::default()
        };
        let handler = service.deploy_handler(&admin, deployment).await?;
        tracing::info!(handler = %handler.record.id, job_type, "example handler deployed");
    }
    Ok(())
}

async fn serve_grpc(
    listener: TcpListener,
    service: Arc<JobService>,
    tls: Option<ServerTls>,
    stopping: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::jobs_service_server::JobsServiceServer<GrpcJobs>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Grpc(e.to_string()))?;
    let jobs = pb::jobs_service_server::JobsServiceServer::new(GrpcJobs::new(service))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES * 4);
    // HTTP/2 flow control as measured in docs/benchmarks.md ("HTTP/2 settings"): windows of
    // 1 MiB and 16 KiB frames without BDP probing; the adaptive window and 1 MiB frames cost
    // CPU per job, and larger windows bought nothing.
    let mut builder = tonic::transport::Server::builder()
        .initial_stream_window_size(H2_WINDOW_BYTES)
        .initial_connection_window_size(H2_WINDOW_BYTES)
        .http2_adaptive_window(Some(false));
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls.grpc())
            .map_err(|e| ServerError::Grpc(e.to_string()))?;
    }
    builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(jobs)
        .serve_with_incoming_shutdown(
            // Small replies must not wait for Nagle's algorithm: it costs ~40 ms per round trip.
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            stopped(stopping),
        )
        .await
        .map_err(|e| ServerError::Grpc(e.to_string()))
}

/// HTTP/2 stream and connection window of the gRPC server.
const H2_WINDOW_BYTES: u32 = 1024 * 1024;

async fn stopped(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, ServerError> {
    listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })
}
