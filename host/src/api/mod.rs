//! The network adapters: gRPC for workers and REST for everything else. Both only translate
//! between wire formats and the [`crate::service`] core. The [`dashboard`] is a static web app
//! over the REST API.

pub mod backup;
pub mod codec;
pub mod dashboard;
pub mod grpc;
pub mod kv;
pub mod rest;
pub mod secrets;
pub mod views;
