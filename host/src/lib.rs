//! jobhost: a durable job runner whose handlers are sandboxed WebAssembly components.
//!
//! Guest code (the handler SDK, examples and test fixtures) lives in `plugins/` and is built
//! into components by this crate's build script.
//!
//! # Layout
//! - [`job`]: domain types; [`job::state`] is the only place job transitions are decided.
//! - [`store`]: the [`store::JobStore`] trait, its sled implementation (single writer, group
//!   commit, in-memory ready and due-time indexes rebuilt at start-up), the listing and
//!   statistics indexes ([`store::index`]) and its conformance suite.
//! - [`service`]: the core every API calls: validation, tenant scope, long polls.
//! - [`trigger`]: cron and interval triggers as data; [`trigger::plan`] decides what one
//!   firing does.
//! - [`clock`]: the time the trigger scheduler reads (a manual one for tests).
//! - [`handler`]: deployed Wasm handlers as data (versions, limits, retry policy).
//! - [`registry`]: uploading, listing and removing handlers; their compiled code.
//! - [`runtime`]: the only code that touches wasmtime: the sandbox of each attempt.
//! - [`tasks`]: background tasks; [`tasks::executor`] runs jobs with their handlers and
//!   [`tasks::scheduler`] fires triggers when they are due.
//! - [`examples`]: the example handlers, embedded for `serve --examples`.
//! - [`auth`]: API keys, permissions and tenants.
//! - [`api`]: gRPC (`atom.jobs.v1.JobsService`, health, reflection) and REST adapters; the REST
//!   answers as types ([`api::views`], also the OpenAPI document) and the embedded dashboard.
//! - [`metrics`]: Prometheus metrics, counted where things happen and read at scrape time.
//! - [`server`]: wires it all together and runs it until shutdown.
//! - [`bench`]: `jobhost bench` (end-to-end throughput, wake-up latency, trigger timing) and
//!   `jobhost bench-listing` (listings and statistics over a million jobs).
//! - [`client`]: the REST client behind the command line.

pub mod api;
pub mod auth;
pub mod bench;
pub mod client;
pub mod clock;
pub mod examples;
pub mod handler;
pub mod job;
pub mod metrics;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod service;
pub mod store;
pub mod tasks;
pub mod trigger;

pub use server::{Config, RunningServer, ServerError, start};
