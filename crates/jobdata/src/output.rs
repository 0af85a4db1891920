//! A task's result as its provider computes it and its client reads it back, and the
//! commitment posted on chain for it.

use ergon_kernels::npy::{decode_npy, encode_npy};
use ergon_kernels::MatI32;
use ergon_types::{Hash, JobKind};

/// A leased shard's result, as the provider computes it and the client reads it back.
pub enum Output {
    /// A matmul shard's exact product; its commitment is the Merkle root of its rows, so a
    /// client can prove one wrong entry on chain.
    Product(MatI32),
    /// An ML job's result bytes; its commitment is their BLAKE3, which replicas compare.
    Bytes(Vec<u8>),
}

impl Output {
    /// The commitment posted on chain for this result.
    pub fn commitment(&self) -> Hash {
        match self {
            Output::Product(c) => Hash(ergon_pouw::result_root(c)),
            Output::Bytes(b) => Hash(*blake3::hash(b).as_bytes()),
        }
    }

    /// The plaintext sealed to the client.
    pub fn into_plaintext(self) -> Vec<u8> {
        self.into_plaintext_and_product().0
    }

    /// The plaintext, and the product itself when there is one (a provider keeps it to answer
    /// availability challenges), without copying the product.
    pub fn into_plaintext_and_product(self) -> (Vec<u8>, Option<MatI32>) {
        match self {
            Output::Product(c) => (encode_npy(&c), Some(c)),
            Output::Bytes(b) => (b, None),
        }
    }

    /// Reads a plaintext back as the result of a `kind` job.
    pub fn from_plaintext(kind: JobKind, plain: Vec<u8>) -> Result<Self, String> {
        match kind {
            JobKind::Matmul => {
                decode_npy(&plain).map(Output::Product).map_err(|e| format!("result is not an int32 .npy: {e}"))
            }
            _ => Ok(Output::Bytes(plain)),
        }
    }

    /// Spoils it: one wrong entry, or one flipped byte (what a provider node started with
    /// `--corrupt-results` posts, for the tests of disputes and replica votes).
    pub fn corrupt(&mut self) {
        match self {
            Output::Product(c) => c.as_mut_slice()[0] = c.as_slice()[0].wrapping_add(1),
            Output::Bytes(b) => {
                if let Some(last) = b.last_mut() {
                    *last ^= 1;
                }
            }
        }
    }
}
