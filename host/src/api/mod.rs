//! The network adapters: gRPC for workers and REST for everything else. Both only translate
//! between wire formats and the [`crate::service`] core.

pub mod grpc;
pub mod rest;
