//! Integration tests: a real jobhost on 127.0.0.1 with real clients. Each module is one area
//! of the specification.

mod harness;

mod activation;
mod auth_and_tenants;
mod bad_input;
mod cli;
mod dashboard;
mod handlers;
mod lifecycle;
mod operations;
mod persistence;
mod python_client;
mod rest_api;
mod service_endpoints;
mod triggers;
