//! jobhost: a durable job runner whose handlers are sandboxed WebAssembly components.
//!
//! Guest code (the handler SDK, examples and test fixtures) lives in `plugins/` and is built
//! into components by this crate's build script.
//!
//! # Layout
//! - [`job`]: domain types; [`job::state`] is the only place job transitions are decided.
//! - [`store`]: the store ports ([`store::JobQueue`], [`store::JobQueries`],
//!   [`store::TriggerStore`], [`store::KeyValueStore`], [`store::Catalog`]; [`store::JobStore`]
//!   is all of them), the sled implementation (single writer, group commit, in-memory ready and
//!   due-time indexes rebuilt at start-up), the listing and statistics indexes
//!   ([`store::index`]) and the conformance suite, one part per port.
//! - [`service`]: the core every API and task calls: validation, tenant scope, long polls;
//!   API keys, and handlers ([`service::handlers`]: uploading, listing, removing, their
//!   compiled code).
//! - [`signals`]: changes announced to the parts that keep something in memory because of
//!   them (running attempts, the trigger scheduler, handlers' compiled code, the key cache).
//!   They name what changed, so nodes sharing a database relay them (the PostgreSQL store
//!   does, with LISTEN/NOTIFY).
//! - [`trigger`]: cron and interval triggers as data; [`trigger::plan`] decides what one
//!   firing does.
//! - [`clock`]: the time the trigger scheduler reads (a manual one for tests).
//! - [`handler`]: deployed Wasm handlers as data (versions, limits, retry policy, grants).
//! - [`grants`]: what a handler version may reach (outbound HTTP, secrets, config, key-value
//!   buckets), how each grant is declared and checked.
//! - [`kv`]: tenants' key-value buckets as a model: what each write does to a value and to
//!   the tenant's quota.
//! - [`manifest`]: `handler.toml`, a deployment written down (type, limits, grants).
//! - [`retention`]: how long finished jobs are kept, as a policy.
//! - [`runtime`]: the only code that touches wasmtime: the sandbox of each attempt.
//! - [`tasks`]: background tasks, drivers over the service core like the APIs;
//!   [`tasks::executor`] runs jobs with their handlers, [`tasks::scheduler`] fires triggers when
//!   they are due, [`tasks::retention`] deletes finished jobs.
//! - [`examples`]: the example handlers, embedded for `serve --examples`.
//! - [`auth`]: API keys, permissions and tenants, as a model (the keys that exist are the
//!   service's).
//! - [`audit`]: the audit trail of administrative acts, and who may read which entries.
//! - [`rate_limit`]: request rates per API key, enforced without a lock.
//! - [`quota`]: what one tenant or key may hold at once (long polls, attempts, uploads,
//!   handlers, triggers).
//! - [`api`]: gRPC (`atom.jobs.v1.JobsService`, health, reflection) and REST adapters; the REST
//!   answers as types ([`api::views`], also the OpenAPI document) and the embedded dashboard.
//! - [`metrics`]: Prometheus metrics, counted where things happen and read at scrape time.
//! - [`server`]: wires it all together and runs it until shutdown.
//! - [`bench`]: `jobhost bench` (end-to-end throughput, wake-up latency, trigger timing, beside
//!   BullMQ with `--peer bullmq`), `jobhost bench-listing` (listings and statistics over a
//!   million jobs) and `jobhost bench-retention` (stored jobs, disk and memory under a steady
//!   load with retention on).
//! - [`chaos`]: `jobhost chaos`, clients against a server process killed at random moments,
//!   and the check that nothing acknowledged was lost, changed or done twice.
//! - [`child_server`]: `jobhost serve` as a child process, for the bench and the chaos run.
//! - [`client`]: the REST client behind the command line.
//! - [`backup`]: snapshot files of the whole store: `jobhost backup` fetches one from a
//!   running server, `jobhost restore` writes one into a new data directory.
//! - [`secrets`]: tenant secrets sealed at rest under the server's key, and their redaction
//!   from what attempts leave behind.
//! - `local_postgres` (Linux): a throwaway PostgreSQL server on loopback, for tests and
//!   benchmarks of the PostgreSQL store.
//! - [`tls`]: TLS for both listeners (certificate and key from PEM files) and the command
//!   line's trust of a private CA.
//! - `fuzz` (tests only): fuzz targets for everything that parses callers' input.
//! - `layers` (tests only): the layers of these modules, and the check that no module uses
//!   one above it and no imports go round in a circle.

pub mod api;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod bench;
pub mod chaos;
pub mod child_server;
pub mod client;
pub mod clock;
pub mod examples;
#[cfg(test)]
mod fuzz;
pub mod grants;
pub mod handler;
pub mod job;
pub mod kv;
#[cfg(test)]
mod layers;
#[cfg(target_os = "linux")]
pub mod local_postgres;
pub mod manifest;
pub mod metrics;
pub mod quota;
pub mod rate_limit;
pub mod retention;
pub mod runtime;
pub mod secrets;
pub mod server;
pub mod service;
pub mod signals;
pub mod store;
pub mod tasks;
pub mod tls;
pub mod trigger;

pub use server::{Config, RunningServer, ServerError, start};
