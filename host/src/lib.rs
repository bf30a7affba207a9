//! jobhost: a durable job runner whose handlers are sandboxed WebAssembly components.

pub mod job;
pub mod store;
