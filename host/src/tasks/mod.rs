//! Background tasks. Each sleeps until it has work (a job, a change, a signal), does one
//! round, and repeats until shutdown. Due times and lease deadlines are acted on by the store
//! itself (see [`crate::store`]); what runs here is:
//! - [`executor`]: runs the jobs of every type that has a Wasm handler.

pub mod executor;
