//! Quantized neural networks in exact integer arithmetic, so that any provider computes the same
//! bytes: a two-layer perceptron (MLP) trained and run with int8 operands, int32 products and
//! power-of-two scales.
//!
//! - [`data`]: the handwritten-digits data set shipped in the repository, and its split.
//! - [`fixed`]: dynamic fixed point: a tensor is int8 values times 2^exp, re-scaled with
//!   round-half-up shifts, never a float.
//! - [`multiply`]: where products happen: [`multiply::Exact`] (the int8 kernel) or
//!   [`multiply::Mining`] (each product computed by PoUW mining on a challenge, so training
//!   mines blocks as it goes). Both give the same bits; the tests hold them to it.
//! - [`mlp`]: the model, training (integer SGD on a squared error), inference, accuracy, and
//!   safetensors files.
//! - [`job`]: training and inference as market jobs: decoding their input blobs, the product a
//!   client commits to, the multiply-adds it pays for, and the result bytes.
//!
//! Pure: no I/O beyond the caller's bytes, no clock, no randomness but a seeded generator.

pub mod data;
pub mod fixed;
pub mod job;
pub mod mlp;
pub mod multiply;

pub use data::{Dataset, DIGITS_CSV_GZ};
pub use job::{MlJob, TrainSpec};
pub use mlp::{Mlp, TrainConfig};
pub use multiply::{Exact, FirstGiven, Mining, Multiply};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MlError {
    #[error(
        "data set (gzip-compressed CSV, each line the features then the label, integers 0..=255; docs/data.md): {0}"
    )]
    Data(String),
    #[error("model file (safetensors as `ergon train` writes it; docs/data.md): {0}")]
    Model(String),
    #[error("training spec: {0}")]
    Spec(String),
    #[error("product: {0}")]
    Product(String),
}
