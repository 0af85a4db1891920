//! A client of an Ergon node's HTTP API (issue 12), for the CLI and any Rust program: requests
//! and the node's reasons as typed errors ([`ApiError`]), signed transactions at the right
//! nonce, and a job's sealed data: inputs uploaded to a leaseholder, results fetched, their
//! author checked and opened. The shared rules (blob names, seals, keys, result commitments)
//! are `ergon_jobdata`'s, so this crate knows nothing of the node's insides.
//!
//! Answers are `ergon_api`'s types (re-exported as [`api`]): [`Client::status`], [`Client::job`],
//! [`Client::provider`] and the rest read each route's response type, so a field the node
//! renames is a compile error here, not a silent default.
//!
//! Built on ureq (blocking, plain HTTP; no TLS: nodes serve their API on loopback or behind the
//! operator's proxy).
//!
//! [`job`]: the client's side of a job: follow it, hand inputs to each leaseholder, verify
//! results (Freivalds and disputes for products, the settled BLAKE3 for ML results), with
//! [`job::Event`]s for whoever prints progress; [`plan`]: a job's spec and work from its
//! inputs.

mod blobs;
pub mod client;
pub mod job;
pub mod plan;
pub mod receipt;
pub mod workload;

pub use client::{ApiError, Client};
pub use ergon_api as api;
pub use job::{Event, Finished, JobRun, Work, PROGRESS_EVERY};
pub use receipt::Receipt;
