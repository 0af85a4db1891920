//! A client of an Ergon node's HTTP API (issue 12), for the CLI and any Rust program: requests
//! and the node's reasons as typed errors ([`ApiError`]), signed transactions at the right
//! nonce, and a job's sealed data: inputs uploaded to a leaseholder, results fetched, their
//! author checked and opened. The shared rules (blob names, seals, keys, result commitments)
//! are `ergon_jobdata`'s, so this crate knows nothing of the node's insides.
//!
//! Built on ureq (blocking, plain HTTP; no TLS: nodes serve their API on loopback or behind the
//! operator's proxy).
//!
//! Still in the CLI (`crates/cli/src/client.rs`), to move here next: following a job, checking
//! results (Freivalds, disputes, availability challenges) and the receipt.

mod blobs;
pub mod client;

pub use client::{ApiError, Client};
