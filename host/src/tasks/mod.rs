//! Background tasks. Each sleeps until it has work (a job, a change, a due time, a signal),
//! does one round, and repeats until shutdown. Due times of jobs and lease deadlines are acted
//! on by the store itself (see [`crate::store`]); what runs here is:
//! - [`executor`]: runs the jobs of every type that has a Wasm handler, its attempts on the
//!   [`lanes`];
//! - [`scheduler`]: fires triggers when they are due;
//! - [`retention`]: deletes finished jobs past the retention policy.
//!
//! Each is a driver over the service core ([`crate::service`]): what it reads and writes goes
//! through there.

pub mod executor;
pub mod lanes;
pub mod retention;
pub mod scheduler;
