//! Ergon's ledger and consensus rules as a deterministic state machine (sans-IO).
//!
//! - [`params`]: consensus parameters and the genesis file.
//! - [`state`]: accounts, transactions, rewards, the compute market's escrow and bonds, undo records.
//! - [`asert`]: the difficulty rule.
//! - [`filler`]: the matrices mined on when no job is available.
//! - [`chain`]: block validity, fork choice by cumulative expected work, reorganisations.
//!
//! It takes blocks and the current time as inputs and never reads a clock, socket or disk, so
//! the node and the simulator drive the same code.

pub mod asert;
pub mod chain;
pub mod filler;
pub mod headers;
pub mod mempool;
pub mod params;
pub mod state;

pub use chain::{mine_once, seal, BlockRejection, Chain, CheckedBlock, Imported, JobWork, Template};
pub use headers::HeaderRun;
pub use mempool::{Mempool, MempoolLimits, Refusal, TxStatus};
pub use params::{ChainParams, Genesis};
pub use state::{filler_subsidy, job_block_subsidy, Account, Ledger, TxRejection};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    #[error("genesis: {0}")]
    Genesis(String),
    #[error("mining: {0}")]
    Mining(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}
