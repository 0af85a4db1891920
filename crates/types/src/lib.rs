//! Ergon's data types and their one canonical, versioned, size-bounded binary encoding.
//!
//! - [`keys`]: ed25519 secret and public keys, signatures, addresses.
//! - [`tx`]: transactions (transfers, stake, provider offers, jobs, results) and signed transactions.
//! - [`job`]: what the compute market trades: provider offers and job specifications.
//! - [`block`]: block headers (which pose the PoUW challenge) and blocks.
//! - [`poai`]: Proof-of-AI round announcements and answers (gossiped, signed).
//! - [`codec`]: the encoding rules and the bounded [`codec::Reader`] every decoder uses.
//!
//! Pure: no I/O, no clock, no randomness of its own.

pub mod block;
pub mod codec;
pub mod hash;
pub mod hex;
pub mod job;
pub mod keys;
pub mod poai;
pub mod tx;

pub use block::{Block, BlockHeader};
pub use codec::Canonical;
pub use hash::Hash;
pub use job::{BlobRef, HardwareProfile, JobKind, JobSpec, Offer, Requirements};
pub use keys::{Address, PublicKey, SecretKey, Signature};
pub use tx::{SignedTransaction, Transaction, TxKind};

/// Why a value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TypesError {
    #[error("cannot decode {what} at byte {at}: {why}")]
    Decode { what: &'static str, at: usize, why: String },
    #[error("{what} of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { what: &'static str, len: usize, max: usize },
    #[error("bad signature: {0}")]
    BadSignature(&'static str),
    #[error("{0}")]
    Parse(String),
    #[error("invalid: {0}")]
    Invalid(String),
}
