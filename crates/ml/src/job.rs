//! ML work as market jobs. A job names its input blobs by BLAKE3 on chain; this module turns
//! those bytes into the work, says which product the client commits to (the first one the work
//! computes: the only one known before it runs, since every later product depends on results),
//! how many multiply-adds the client pays for, and runs it to the result bytes.
//!
//! - `train`: inputs are a gzip CSV data set and a [`TrainSpec`]; the result is the trained
//!   model as safetensors. The held-out part of the data never reaches training, so the client
//!   can measure the model on it.
//! - `infer`: inputs are a safetensors model and a gzip CSV data set; the result is one
//!   predicted class per line.
//!
//! Both are exact integer computations, so every honest provider returns the same bytes, which
//! is what lets replicas check each other.

use ergon_kernels::MatI8;

use crate::data::Dataset;
use crate::mlp::{Mlp, TrainConfig};
use crate::multiply::Multiply;
use crate::MlError;

pub const MAX_HIDDEN: usize = 4096;
pub const MAX_EPOCHS: usize = 10_000;

/// How to train, as the second input blob of a `train` job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainSpec {
    pub config: TrainConfig,
    /// Every `holdout`-th example is kept out of training (0: train on everything).
    pub holdout: u32,
}

const TRAIN_SPEC_MAGIC: &[u8; 8] = b"ergtrn01";
const TRAIN_SPEC_BYTES: usize = 8 + 4 + 4 + 1 + 1 + 8 + 4;

impl TrainSpec {
    pub fn encode(&self) -> Vec<u8> {
        let c = &self.config;
        let mut out = TRAIN_SPEC_MAGIC.to_vec();
        out.extend_from_slice(&(c.hidden as u32).to_le_bytes());
        out.extend_from_slice(&(c.epochs as u32).to_le_bytes());
        out.extend_from_slice(&[c.batch_log2 as u8, c.lr_log2 as u8]);
        out.extend_from_slice(&c.seed.to_le_bytes());
        out.extend_from_slice(&self.holdout.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MlError> {
        let bad = |why: &str| Err(MlError::Spec(why.to_string()));
        if bytes.len() != TRAIN_SPEC_BYTES || &bytes[..8] != TRAIN_SPEC_MAGIC {
            return bad("not an ergtrn01 spec");
        }
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let spec = TrainSpec {
            config: TrainConfig {
                hidden: u32_at(8) as usize,
                epochs: u32_at(12) as usize,
                batch_log2: bytes[16] as u32,
                lr_log2: bytes[17] as u32,
                seed: u64::from_le_bytes(bytes[18..26].try_into().expect("8 bytes")),
            },
            holdout: u32_at(26),
        };
        spec.check()?;
        Ok(spec)
    }

    /// The limits every node holds a spec to, so a provider's time and memory stay bounded.
    pub fn check(&self) -> Result<(), MlError> {
        let c = &self.config;
        if c.hidden == 0 || c.hidden > MAX_HIDDEN || c.epochs == 0 || c.epochs > MAX_EPOCHS {
            return Err(MlError::Spec(format!("hidden must be in 1..={MAX_HIDDEN} and epochs in 1..={MAX_EPOCHS}")));
        }
        if c.batch_log2 > 12 || c.lr_log2 > 30 || self.holdout == 1 {
            return Err(MlError::Spec("batch_log2 ≤ 12, lr_log2 ≤ 30, holdout 0 or ≥ 2".into()));
        }
        Ok(())
    }

    /// The examples training sees, and the ones held out.
    pub fn split(&self, data: &Dataset) -> (Dataset, Dataset) {
        if self.holdout == 0 {
            (data.clone(), Dataset { x: vec![], y: vec![], ..data.clone() })
        } else {
            data.split(self.holdout as usize)
        }
    }
}

/// A decoded ML job.
#[derive(Clone, Debug)]
pub enum MlJob {
    Train { data: Dataset, spec: TrainSpec },
    Infer { model: Mlp, data: Dataset },
}

impl MlJob {
    /// A `train` job from its inputs: the data set, then the spec.
    pub fn train(data_csv_gz: &[u8], spec: &[u8]) -> Result<Self, MlError> {
        let spec = TrainSpec::decode(spec)?;
        Ok(Self::training(&Dataset::from_csv_gz(data_csv_gz)?, spec)?.0)
    }

    /// A `train` job on `data` as `spec` splits it, and the examples it holds out.
    pub fn training(data: &Dataset, spec: TrainSpec) -> Result<(Self, Dataset), MlError> {
        spec.check()?;
        let (train, held_out) = spec.split(data);
        if train.is_empty() {
            return Err(MlError::Data("no examples left to train on".into()));
        }
        Ok((MlJob::Train { data: train, spec }, held_out))
    }

    /// An `infer` job from its inputs: the model, then the data set.
    pub fn infer(model: &[u8], data_csv_gz: &[u8]) -> Result<Self, MlError> {
        let model = Mlp::from_safetensors(model)?;
        let data = Dataset::from_csv_gz(data_csv_gz)?;
        model.first_inference_product(&data)?; // the shapes fit
        Ok(MlJob::Infer { model, data })
    }

    /// The operands of the job's first product: what the client commits to and what the
    /// provider mines on.
    pub fn committed_product(&self) -> Result<(MatI8, MatI8), MlError> {
        match self {
            MlJob::Train { data, spec } => Mlp::first_training_product(data, &spec.config),
            MlJob::Infer { model, data } => model.first_inference_product(data),
        }
    }

    /// Multiply-adds the job computes, which the client declares and pays for.
    pub fn macs(&self) -> u64 {
        match self {
            MlJob::Train { data, spec } => Mlp::training_macs(data, &spec.config),
            MlJob::Infer { model, data } => model.inference_macs(data),
        }
    }

    /// Runs the job; the bytes are the same from any provider and any multiplier.
    pub fn run(&self, mul: &mut dyn Multiply) -> Result<Vec<u8>, MlError> {
        match self {
            MlJob::Train { data, spec } => Mlp::train(data, &spec.config, mul)?.to_safetensors(),
            MlJob::Infer { model, data } => Ok(predictions_text(&model.predict(data, mul)?)),
        }
    }
}

/// One predicted class per line: an inference job's result.
pub fn predictions_text(classes: &[u8]) -> Vec<u8> {
    classes.iter().map(|c| format!("{c}\n")).collect::<String>().into_bytes()
}

/// Reads [`predictions_text`] back.
pub fn parse_predictions(bytes: &[u8]) -> Result<Vec<u8>, MlError> {
    let text = std::str::from_utf8(bytes).map_err(|_| MlError::Data("predictions are not text".into()))?;
    text.lines().map(|l| l.trim().parse::<u8>().map_err(|e| MlError::Data(format!("prediction {l:?}: {e}")))).collect()
}
