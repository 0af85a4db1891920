//! Proof of Useful Work on exact int8 matrix products, after Komargodski–Schen–Weinstein
//! ("cuPOW"). The protocol, byte for byte, and its security argument are in `docs/pouw.md`.
//!
//! A miner holding a client's job (A, B) and a [`Challenge`] (header, commitment to A and B,
//! difficulty) calls [`mine`] per nonce: it adds seeded low-rank ±1 noise to A and B, multiplies
//! the noisy operands once with the transcript fold fused into the kernel's register tiles, turns
//! each 24×32 tile's folded transcript into a ticket, and recovers the exact A·B. A winning
//! ticket becomes a [`Proof`] ([`prove`]) that anyone checks with [`verify`] from the challenge
//! alone, at the cost of one tile column of the product.
//!
//! This crate knows nothing of blocks or chains: the header is opaque bytes.

mod challenge;
pub mod dispute;
pub mod merkle;
mod mine;
mod noise;
pub mod params;
mod proof;
mod ticket;

pub use challenge::{Challenge, Seed, WorkCommitment, WORK_BYTES};
pub use dispute::{result_leaves, result_root, result_root_of_leaves, RevealedRow, WrongEntry};
pub use mine::{mine, prove, MineOptions, MineTimings, Mined};
pub use noise::{check_mining_range, Factors, Noise};
pub use proof::{verify, Proof, MAX_PROOF_BYTES};
pub use ticket::{ticket_grid, ticket_value, tile_work, wins, Ticket};

/// Why mining or verification refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PouwError {
    #[error("shape: {0}")]
    Shape(String),
    #[error("out of mining range: {0}")]
    OutOfRange(String),
    #[error("kernel: {0}")]
    Kernel(#[from] ergon_kernels::KernelError),
    #[error("malformed proof: {0}")]
    Decode(String),
    #[error("invalid proof: {0}")]
    Invalid(String),
}
