//! Integration tests: a real jobhost on 127.0.0.1 with real clients. Each module is one area
//! of the specification.

mod harness;

mod activation;
mod audit;
mod auth_and_tenants;
mod backup;
mod bad_input;
mod batch_creation;
mod bench_smoke;
mod chaos;
mod cli;
mod dashboard;
mod edge;
mod grpc_decoding;
mod handler_grants;
mod handler_http;
mod handler_kv;
mod handlers;
mod key_scoping;
mod lifecycle;
mod operations;
mod persistence;
mod polyglot;
mod python_client;
mod quotas;
mod rest_api;
mod retention;
mod secrets;
mod service_endpoints;
mod tls;
mod triggers;
mod uploads;
