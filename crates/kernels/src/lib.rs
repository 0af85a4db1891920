//! Ergon's compute kernels: exact int8 × int8 → int32 matrix products and what surrounds them.
//!
//! - [`gemm`]: the blocked, multi-threaded product (AVX2 chosen at run time, portable fallback),
//!   with an optional fused transcript fold used by Proof of Useful Work.
//! - [`npy`]: NumPy `.npy` reading and writing (int8, int32, float32).
//! - [`quantize`]: float32 → int8 with per-row or per-column scales, and the error it made.
//! - [`freivalds`]: probabilistic checking of a claimed product over the field of 2^61 − 1.
//! - [`reference`]: the naive product all of the above are tested against.
//! - [`peak`]: this CPU's measured int8 multiply-add peak, the denominator of kernel efficiency.
//! - [`rng`]: the seeded generator every deterministic component shares.
//!
//! No Ergon dependencies: pure functions over matrices.

pub mod freivalds;
pub mod gemm;
pub mod matrix;
pub mod npy;
pub mod peak;
pub mod quantize;
pub mod reference;
pub mod rng;

pub use gemm::{matmul, matmul_with, GemmOptions, Isa};
pub use matrix::{MatF32, MatI32, MatI8, Matrix};

/// Why a kernel refused to run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    #[error("shape error: {0}")]
    Shape(String),
    #[error("inner dimension k = {k} exceeds {max}: int32 sums could overflow")]
    TooDeep { k: usize, max: usize },
    #[error("inner dimension k = {k} with entries of -128 could overflow int32; keep |entries| <= 127")]
    Overflow { k: usize },
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}
