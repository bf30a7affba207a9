//! The WebAssembly runtime: the only module that touches wasmtime.
//!
//! One [`Runtime`] holds the engine (pooling allocator, epoch interruption, fuel), the linker
//! (WASI p2 with nothing ambient, the `jobhost:plugin/host` imports of the current contract
//! and, in [`compat`], of earlier ones, and the capabilities a handler may be granted:
//! `wasi:http` in [`http`], `wasi:config`, `wasi:keyvalue` in [`keyvalue`]) and a disk cache of
//! compiled components. A [`CompiledHandler`] is a pre-instantiated component of whichever
//! contract it was built against; every attempt gets a fresh `Store` with its own limits and its
//! [`Capabilities`], runs as a future that yields at every epoch tick, and ends at its
//! deadline, on an interrupt, or on a trap, never taking the host down.

mod compat;
mod http;
mod keyvalue;
mod output;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter,
    Store, StoreLimits, StoreLimitsBuilder, Trap, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub use http::{HttpAccess, HttpLimits, RequestObserver, client_config};
pub use keyvalue::KeyValue;
pub use output::CapturedOutput;

use crate::secrets::redact;

wasmtime::component::bindgen!({
    world: "job-handler",
    path: "../wit",
    imports: {
        // A bad resource handle traps; a refusal is the guest's error to handle.
        "wasi:keyvalue/store": async | trappable,
        "wasi:keyvalue/atomics": async | trappable,
        default: async,
    },
    exports: { default: async },
    with: {
        "wasi:keyvalue/store.bucket": keyvalue::OpenBucket,
        "wasi:keyvalue/atomics.cas": keyvalue::ReadKey,
    },
});

use self::jobhost::plugin::host::Level;
use self::jobhost::plugin::types as wit;
use self::wasi::config::store as config_store;

/// How often running guests are interrupted to check their deadline and yield their thread.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Bytes of each table zeroed in place when an attempt ends (see [`Runtime::new`]).
const TABLE_KEEP_RESIDENT: usize = 64 * 1024;
/// Bytes of each linear memory reset in place when an attempt ends, where the kernel can say
/// which pages the attempt touched (see [`Runtime::new`]).
const MEMORY_KEEP_RESIDENT: usize = 4 * 1024 * 1024;
/// Output (stdout, stderr, log lines) kept per attempt.
pub const OUTPUT_LIMIT: usize = 64 * 1024;
/// Instances, tables and memories one attempt may create.
const INSTANCES_PER_ATTEMPT: usize = 32;

#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Largest linear memory any handler may be given.
    pub max_memory_mb: u32,
    /// Attempts that may run at once on this server (the size of the instance pool).
    pub max_concurrent_attempts: u32,
    /// Where compiled components are cached; `None`: no cache.
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
}

/// Why an upload is not a usable handler. The messages are shown to whoever uploaded it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ComponentError {
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("the component imports {0}, which jobhost does not offer to handlers")]
    UnknownImport(String),
    #[error("the component does not implement the jobhost:plugin/job-handler world: {0}")]
    WrongWorld(String),
}

/// Where a handler's compiled code came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeSource {
    Compiled,
    Cache,
}

/// A component ready to be instantiated for attempts.
pub struct CompiledHandler {
    pre: HandlerPre,
    component: Component,
    pub source: CodeSource,
    pub load_time: Duration,
}

/// A component pre-instantiated as the version of the contract it was built against.
enum HandlerPre {
    Current(JobHandlerPre<AttemptState>),
    V0_1(compat::JobHandlerPre<AttemptState>),
}

impl HandlerPre {
    /// Instantiates the component in `store` and calls its `handle`.
    async fn handle(
        &self,
        store: &mut Store<AttemptState>,
        job: wit::Job,
    ) -> wasmtime::Result<wit::Outcome> {
        match self {
            HandlerPre::Current(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance.call_handle(store, &job).await
            }
            HandlerPre::V0_1(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                let outcome = instance.call_handle(store, &compat::job(job)).await?;
                Ok(compat::outcome(outcome))
            }
        }
    }
}

/// The job as the handler sees it.
#[derive(Clone, Debug)]
pub struct AttemptInput {
    pub key: String,
    pub job_type: String,
    pub tenant_id: String,
    pub retries: i32,
    pub attempt: u32,
    pub variables: String,
    pub custom_headers: Vec<(String, String)>,
    pub deadline_ms: i64,
}

/// What an attempt may reach beyond its sandbox, as its handler was granted at deploy.
#[derive(Clone, Default)]
pub struct Capabilities {
    /// What `wasi:config/store` answers: granted config values and secret values, by key.
    pub config: Arc<BTreeMap<String, String>>,
    /// The secret values among them, as (name, value): redacted from what the attempt leaves.
    pub secrets: Arc<Vec<(String, String)>>,
    /// Outbound HTTP; `None`: every request is refused.
    pub http: Option<Arc<HttpAccess>>,
    /// The tenant's key-value buckets; `None`: no bucket opens.
    pub kv: Option<Arc<dyn KeyValue>>,
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capabilities")
            .field("config_keys", &self.config.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Limits of one attempt.
#[derive(Clone, Copy, Debug)]
pub struct AttemptLimits {
    pub memory_mb: u32,
    /// Wall-clock time the attempt may run.
    pub timeout: Duration,
    pub fuel: Option<u64>,
}

/// Why an attempt was stopped from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptReason {
    /// The job was cancelled.
    Cancelled,
    /// The server is shutting down.
    Shutdown,
}

/// Stops a running attempt from outside; the guest also sees it through `is-cancelled`.
#[derive(Default)]
pub struct Interrupt {
    reason: AtomicU8,
    notify: tokio::sync::Notify,
}

impl Interrupt {
    pub fn trigger(&self, reason: InterruptReason) {
        let code = match reason {
            InterruptReason::Cancelled => 1,
            InterruptReason::Shutdown => 2,
        };
        if self
            .reason
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.notify.notify_waiters();
        }
    }

    pub fn reason(&self) -> Option<InterruptReason> {
        match self.reason.load(Ordering::SeqCst) {
            1 => Some(InterruptReason::Cancelled),
            2 => Some(InterruptReason::Shutdown),
            _ => None,
        }
    }

    async fn wait(&self) -> InterruptReason {
        loop {
            let notified = self.notify.notified();
            if let Some(reason) = self.reason() {
                return reason;
            }
            notified.await;
        }
    }
}

/// A job to create with a completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowUpRequest {
    pub job_type: String,
    pub variables: String,
    pub delay_ms: u64,
    /// Created only if no job of its type and tenant holds this key.
    pub idempotency_key: Option<String>,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    Completed {
        variables: String,
        follow_ups: Vec<FollowUpRequest>,
        status: Option<String>,
    },
    Failed {
        reason: String,
        retryable: bool,
        backoff_ms: Option<u64>,
    },
    Interrupted(InterruptReason),
}

#[derive(Clone, Debug)]
pub struct AttemptResult {
    pub outcome: AttemptOutcome,
    pub output: String,
    pub duration: Duration,
}

/// A memory limiter that remembers whether it refused anything, so that the trap that follows
/// (an allocator abort) can be reported as what it is.
struct Limits {
    inner: StoreLimits,
    memory_refused: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.memory_refused = true;
        }
        allowed
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// What one attempt's store holds.
pub struct AttemptState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limits,
    deadline: Instant,
    interrupt: Arc<Interrupt>,
    output: CapturedOutput,
    capabilities: Capabilities,
    http_ctx: WasiHttpCtx,
    http: http::AttemptHttp,
}

impl WasiHttpView for AttemptState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
        }
    }
}

impl WasiView for AttemptState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl self::jobhost::plugin::host::Host for AttemptState {
    async fn log(&mut self, level: Level, message: String) {
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.output
            .append(format!("[{level}] {message}\n").as_bytes());
    }

    async fn remaining_ms(&mut self) -> i64 {
        self.deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as i64
    }

    async fn is_cancelled(&mut self) -> bool {
        self.interrupt.reason().is_some()
    }
}

impl wit::Host for AttemptState {}

impl config_store::Host for AttemptState {
    async fn get(&mut self, key: String) -> Result<Option<String>, config_store::Error> {
        Ok(self.capabilities.config.get(&key).cloned())
    }

    async fn get_all(&mut self) -> Result<Vec<(String, String)>, config_store::Error> {
        Ok(self
            .capabilities
            .config
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<AttemptState>,
    config: RuntimeConfig,
    engine_hash: String,
    /// Components compiled, and loaded from the cache, since start.
    compiles: std::sync::atomic::AtomicU64,
    cache_loads: std::sync::atomic::AtomicU64,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let engine_error = |e: wasmtime::Error| RuntimeError::Engine(format!("{e:#}"));
        let max_memory = config.max_memory_mb as usize * 1024 * 1024;
        let attempts = config.max_concurrent_attempts.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(attempts)
            .total_core_instances(attempts * 16)
            .total_memories(attempts * 2)
            .total_tables(attempts * 4)
            .total_stacks(attempts)
            .max_memory_size(max_memory)
            .max_core_instances_per_component(16)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            // A finished attempt's tables are zeroed in place rather than handed back to the
            // kernel: handing pages back interrupts every other core to flush its TLB, which
            // cost more than the whole guest call of a small handler.
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            // Likewise for linear memory, but only the pages the attempt touched (found with
            // the PAGEMAP_SCAN ioctl, Linux 6.7 and later) are reset, so a small handler's
            // teardown costs a few page copies; without the ioctl, memory is handed back.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(if PoolingAllocationConfig::is_pagemap_scan_available() {
                MEMORY_KEEP_RESIDENT
            } else {
                0
            });
        let mut engine_config = Config::new();
        engine_config
            .epoch_interruption(true)
            .consume_fuel(true)
            .max_wasm_stack(512 * 1024)
            .memory_reservation(max_memory as u64)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&engine_config).map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(engine_error)?;
        JobHandler::add_to_linker::<AttemptState, HasSelf<AttemptState>>(&mut linker, |s| s)
            .map_err(engine_error)?;
        compat::add_to_linker(&mut linker).map_err(engine_error)?;

        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("jobhost-wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;

        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = format!("{:016x}", hasher.finish());
        Ok(Runtime {
            engine,
            linker,
            config,
            engine_hash,
            compiles: Default::default(),
            cache_loads: Default::default(),
        })
    }

    /// Components compiled and components loaded from the compiled-code cache, since start.
    pub fn load_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.compiles.load(Relaxed), self.cache_loads.load(Relaxed))
    }

    pub fn max_memory_mb(&self) -> u32 {
        self.config.max_memory_mb
    }

    /// Where compiled components are cached, if anywhere.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.config.cache_dir.as_deref()
    }

    /// Compiles and checks an uploaded component (CPU-heavy: call it off the async threads).
    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledHandler, ComponentError> {
        let started = Instant::now();
        interface_imports(bytes)?;
        let component = Component::new(&self.engine, bytes).map_err(|e| {
            if bytes.starts_with(b"\0asm\x01\0\0\0") {
                ComponentError::NotAComponent(
                    "this is a core WebAssembly module; build the handler for wasm32-wasip2 (or wrap the module with `wasm-tools component new`)".into(),
                )
            } else {
                ComponentError::NotAComponent(format!("{e:#}"))
            }
        })?;
        let pre = self.prepare(&component)?;
        Ok(CompiledHandler {
            pre,
            component,
            source: CodeSource::Compiled,
            load_time: started.elapsed(),
        })
    }

    fn prepare(&self, component: &Component) -> Result<HandlerPre, ComponentError> {
        for (name, _) in component.component_type().imports(&self.engine) {
            if !offered(name) {
                return Err(ComponentError::UnknownImport(name.to_string()));
            }
        }
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| ComponentError::UnknownImport(format!("{e:#}")))?;
        match JobHandlerPre::new(pre.clone()) {
            Ok(current) => Ok(HandlerPre::Current(current)),
            // What is wrong is told against the current contract, the one to build against.
            Err(error) => compat::JobHandlerPre::new(pre)
                .map(HandlerPre::V0_1)
                .map_err(|_| ComponentError::WrongWorld(format!("{error:#}"))),
        }
    }

    /// Loads a component, from the compiled-code cache when it holds it (compiling, checking
    /// and filling the cache otherwise). CPU-heavy: call it off the async threads.
    pub fn load(&self, sha256_hex: &str, bytes: &[u8]) -> Result<CompiledHandler, ComponentError> {
        let cached = self.cache_path(sha256_hex);
        if let Some(path) = &cached
            && path.exists()
        {
            let started = Instant::now();
            // The one unsafe call of the crate. Safety: the file was written by `Component::serialize` of this runtime, into the
            // server's own data directory, and is named after the engine's compatibility hash.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize_file(&self.engine, path) };
            match loaded {
                Ok(component) => {
                    let pre = self.prepare(&component)?;
                    self.cache_loads
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(CompiledHandler {
                        pre,
                        component,
                        source: CodeSource::Cache,
                        load_time: started.elapsed(),
                    });
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), error = %format!("{error:#}"), "ignoring unusable compiled-code cache entry");
                }
            }
        }
        let compiled = self.compile(bytes)?;
        self.compiles
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(path) = cached
            && let Err(error) = write_cache(&path, &compiled.component)
        {
            tracing::warn!(path = %path.display(), %error, "cannot write the compiled-code cache");
        }
        Ok(compiled)
    }

    fn cache_path(&self, sha256_hex: &str) -> Option<PathBuf> {
        let dir = self.config.cache_dir.as_ref()?;
        Some(dir.join(format!("{sha256_hex}-{}.cwasm", self.engine_hash)))
    }

    /// Runs one attempt in a fresh store.
    pub async fn run(
        &self,
        handler: &CompiledHandler,
        input: &AttemptInput,
        limits: AttemptLimits,
        capabilities: Capabilities,
        interrupt: Arc<Interrupt>,
    ) -> AttemptResult {
        let started = Instant::now();
        let output = CapturedOutput::new(OUTPUT_LIMIT);
        let deadline = started + limits.timeout;
        let memory_bytes = limits.memory_mb as usize * 1024 * 1024;
        let wasi = WasiCtxBuilder::new()
            .stdout(output.clone())
            .stderr(output.clone())
            .build();
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(memory_bytes)
            .instances(INSTANCES_PER_ATTEMPT)
            .tables(INSTANCES_PER_ATTEMPT)
            .memories(INSTANCES_PER_ATTEMPT)
            .build();
        let state = AttemptState {
            wasi,
            table: ResourceTable::new(),
            limits: Limits {
                inner: store_limits,
                memory_refused: false,
            },
            deadline,
            interrupt: interrupt.clone(),
            output: output.clone(),
            http_ctx: WasiHttpCtx::new(),
            http: http::AttemptHttp::new(capabilities.http.clone(), deadline, output.clone()),
            capabilities: capabilities.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        // Fuel is always metered (it is an engine-wide setting); unlimited unless asked.
        let _ = store.set_fuel(limits.fuel.unwrap_or(u64::MAX));

        enum Ended {
            Returned(wasmtime::Result<wit::Outcome>),
            TimedOut,
            Interrupted(InterruptReason),
        }
        let ended = {
            let call = handler.pre.handle(&mut store, wit::Job::from(input));
            tokio::select! {
                result = call => Ended::Returned(result),
                // Epochs stop guest code; this also stops a guest blocked in a host call.
                _ = tokio::time::sleep_until((deadline + EPOCH_TICK * 4).into()) => Ended::TimedOut,
                reason = interrupt.wait() => Ended::Interrupted(reason),
            }
        };
        let timeout_ms = limits.timeout.as_millis();
        let mut outcome = match ended {
            Ended::Returned(Ok(outcome)) => convert(outcome),
            Ended::Returned(Err(error)) => {
                let reason = if store.data().limits.memory_refused {
                    format!("memory limit of {} MiB exceeded", limits.memory_mb)
                } else {
                    match error.downcast_ref::<Trap>() {
                        Some(Trap::Interrupt) => format!("deadline of {timeout_ms} ms exceeded"),
                        Some(Trap::OutOfFuel) => {
                            format!("fuel limit of {} exceeded", limits.fuel.unwrap_or(u64::MAX))
                        }
                        Some(Trap::StackOverflow) => "trap: stack overflow".to_string(),
                        Some(Trap::UnreachableCodeReached) => "trap: unreachable".to_string(),
                        Some(trap) => format!("trap: {trap}"),
                        None => format!("the attempt could not run: {error:#}"),
                    }
                };
                AttemptOutcome::Failed {
                    reason,
                    retryable: true,
                    backoff_ms: None,
                }
            }
            Ended::TimedOut => AttemptOutcome::Failed {
                reason: format!("deadline of {timeout_ms} ms exceeded"),
                retryable: true,
                backoff_ms: None,
            },
            Ended::Interrupted(reason) => AttemptOutcome::Interrupted(reason),
        };
        drop(store);
        let mut output = output.text();
        if !capabilities.secrets.is_empty() {
            // Whatever the attempt leaves behind is stored and shown: none of it may carry a
            // granted secret's value.
            let secrets = &capabilities.secrets;
            output = redact(&output, secrets);
            match &mut outcome {
                AttemptOutcome::Failed { reason, .. } => *reason = redact(reason, secrets),
                AttemptOutcome::Completed {
                    variables,
                    follow_ups,
                    status,
                } => {
                    *variables = redact(variables, secrets);
                    for follow_up in follow_ups {
                        follow_up.variables = redact(&follow_up.variables, secrets);
                    }
                    if let Some(status) = status {
                        *status = redact(status, secrets);
                    }
                }
                AttemptOutcome::Interrupted(_) => {}
            }
        }
        AttemptResult {
            outcome,
            output,
            duration: started.elapsed(),
        }
    }
}

/// The interfaces (`ns:pkg/name@version`) a component imports, from its import section alone;
/// one that is not offered to handlers is refused. This costs a parse, not a compile (which
/// takes seconds for a large component), so uploads are refused fast.
pub fn interface_imports(bytes: &[u8]) -> Result<Vec<String>, ComponentError> {
    use wasmtime::wasmparser::{Parser, Payload};
    let mut interfaces = Vec::new();
    // Nested modules and components have imports of their own, satisfied inside the component.
    let mut depth = 0_usize;
    for payload in Parser::new(0).parse_all(bytes) {
        // Malformed input is left to the compiler, which says what is wrong with it.
        let Ok(payload) = payload else {
            return Ok(interfaces);
        };
        match payload {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(imports) if depth == 1 => {
                for import in imports {
                    let Ok(import) = import else {
                        return Ok(interfaces);
                    };
                    // Plain names are the world's own types and functions, which
                    // instantiation checks after the compile.
                    let name = import.name.name;
                    if name.contains(':') {
                        if !offered(name) {
                            return Err(ComponentError::UnknownImport(name.to_string()));
                        }
                        interfaces.push(name.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(interfaces)
}

/// Interfaces a handler may import: WASI p2 (with nothing ambient behind it), our host, and
/// the capabilities granted at deploy (config, outbound HTTP, key-value).
fn offered(import: &str) -> bool {
    const OFFERED: [&str; 12] = [
        "wasi:cli/",
        "wasi:config/store@0.2.0-rc.1",
        "wasi:keyvalue/store@0.2.0-draft2",
        "wasi:keyvalue/atomics@0.2.0-draft2",
        "wasi:http/types@0.2.",
        "wasi:http/outgoing-handler@0.2.",
        "wasi:clocks/",
        "wasi:filesystem/",
        "wasi:io/",
        "wasi:random/",
        "wasi:sockets/",
        "jobhost:plugin/",
    ];
    OFFERED.iter().any(|prefix| import.starts_with(prefix))
}

fn convert(outcome: wit::Outcome) -> AttemptOutcome {
    match outcome {
        wit::Outcome::Complete(variables) => AttemptOutcome::Completed {
            variables,
            follow_ups: Vec::new(),
            status: None,
        },
        wit::Outcome::Completed(completion) => AttemptOutcome::Completed {
            variables: completion.variables,
            follow_ups: completion
                .follow_ups
                .into_iter()
                .map(|f| FollowUpRequest {
                    job_type: f.job_type,
                    variables: f.variables,
                    delay_ms: f.delay_ms,
                    idempotency_key: f.idempotency_key,
                })
                .collect(),
            status: completion.status,
        },
        wit::Outcome::Fail(failure) => AttemptOutcome::Failed {
            reason: failure.message,
            retryable: failure.retryable,
            backoff_ms: failure.backoff_ms,
        },
    }
}

fn write_cache(path: &Path, component: &Component) -> Result<(), String> {
    let bytes = component.serialize().map_err(|e| format!("{e:#}"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes).map_err(|e| e.to_string())?;
    std::fs::rename(&partial, path).map_err(|e| e.to_string())
}

impl From<&AttemptInput> for wit::Job {
    fn from(input: &AttemptInput) -> wit::Job {
        wit::Job {
            key: input.key.clone(),
            job_type: input.job_type.clone(),
            tenant_id: input.tenant_id.clone(),
            retries: input.retries,
            attempt: input.attempt,
            variables: input.variables.clone(),
            custom_headers: input.custom_headers.clone(),
            deadline_ms: input.deadline_ms,
        }
    }
}

#[cfg(test)]
mod tests;
