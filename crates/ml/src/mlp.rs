//! A two-layer perceptron (inputs → ReLU hidden → classes) in dynamic fixed point.
//!
//! Master weights are i64 at 2^−24. Each step quantizes them to int8, runs the batch forward
//! (two products), takes the gradient of a squared error against one-hot targets, and runs it
//! back (three more products: ∂W2 = Hᵀ·G, ∂H = G·W2ᵀ, ∂W1 = Xᵀ·∂H), every product through the
//! caller's [`Multiply`]. Updates are shifts (learning rate and batch size are powers of two).
//! No float is ever used, so the trained bytes are the same on every machine and through every
//! multiplier.

use std::collections::HashMap;

use ergon_kernels::rng::SplitMix64;
use ergon_kernels::MatI8;
use safetensors::tensor::{Dtype, TensorView};

use crate::data::Dataset;
use crate::fixed::{quantize, rescale, Q8, QMAX};
use crate::multiply::Multiply;
use crate::MlError;

/// Exponent of the master weights and biases.
const MASTER_EXP: i32 = -24;
/// Inputs are mapped onto ±120 and read as value · 2^−7 (about ±0.94).
const INPUT_EXP: i32 = -7;
/// The output gradient is formed at 2^−12 before it is quantized.
const GRAD_EXP: i32 = -12;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainConfig {
    pub hidden: usize,
    pub epochs: usize,
    /// Examples per step = 2^batch_log2.
    pub batch_log2: u32,
    /// Learning rate = 2^−lr_log2.
    pub lr_log2: u32,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self { hidden: 64, epochs: 30, batch_log2: 4, lr_log2: 3, seed: 1 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mlp {
    pub inputs: usize,
    pub hidden: usize,
    pub classes: usize,
    /// Largest raw feature value; inputs are scaled by it onto ±120.
    pub input_max: u8,
    /// inputs × hidden, row-major, at 2^−24.
    pub w1: Vec<i64>,
    pub b1: Vec<i64>,
    /// hidden × classes.
    pub w2: Vec<i64>,
    pub b2: Vec<i64>,
}

struct Forward {
    /// Pre-activation of the hidden layer, at `e1`.
    pre: Vec<i64>,
    h: Q8,
    /// Outputs, at `e2`.
    z: Vec<i64>,
    e2: i32,
}

/// Examples per product in inference.
pub const PREDICT_CHUNK: usize = 256;

/// One epoch's Fisher–Yates shuffle.
fn shuffle(rng: &mut SplitMix64, order: &mut [usize]) {
    for i in (1..order.len()).rev() {
        order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
}

/// Uniform in −bound..=bound.
fn symmetric(rng: &mut SplitMix64, bound: i64) -> i64 {
    rng.range(0, 2 * bound as u64) as i64 - bound
}

impl Mlp {
    /// Fresh weights, uniform in ±1/8, biases zero.
    pub fn new(inputs: usize, hidden: usize, classes: usize, input_max: u8, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let bound = 1i64 << (-MASTER_EXP - 3);
        Self {
            inputs,
            hidden,
            classes,
            input_max: input_max.max(1),
            w1: (0..inputs * hidden).map(|_| symmetric(&mut rng, bound)).collect(),
            b1: vec![0; hidden],
            w2: (0..hidden * classes).map(|_| symmetric(&mut rng, bound)).collect(),
            b2: vec![0; classes],
        }
    }

    fn inputs_q(&self, data: &Dataset, rows: &[usize]) -> MatI8 {
        let max = self.input_max as i64;
        let mut x = Vec::with_capacity(rows.len() * self.inputs);
        for &i in rows {
            x.extend(data.row(i).iter().map(|&v| ((v as i64).min(max) * 240 / max - 120) as i8));
        }
        MatI8::from_vec(rows.len(), self.inputs, x).expect("rows × inputs")
    }

    fn weights(&self) -> (Q8, Q8) {
        (
            quantize(&self.w1, self.inputs, self.hidden, MASTER_EXP),
            quantize(&self.w2, self.hidden, self.classes, MASTER_EXP),
        )
    }

    fn forward(&self, x: &MatI8, w1: &Q8, w2: &Q8, mul: &mut dyn Multiply) -> Result<Forward, MlError> {
        let e1 = INPUT_EXP + w1.exp;
        let acc1 = mul.product(x, &w1.m)?;
        let pre: Vec<i64> = acc1
            .as_slice()
            .iter()
            .enumerate()
            .map(|(i, &v)| v as i64 + rescale(self.b1[i % self.hidden], MASTER_EXP, e1))
            .collect();
        let act: Vec<i64> = pre.iter().map(|&v| v.max(0)).collect();
        let h = quantize(&act, x.rows(), self.hidden, e1);
        let e2 = h.exp + w2.exp;
        let acc2 = mul.product(&h.m, &w2.m)?;
        let z = acc2
            .as_slice()
            .iter()
            .enumerate()
            .map(|(i, &v)| v as i64 + rescale(self.b2[i % self.classes], MASTER_EXP, e2))
            .collect();
        Ok(Forward { pre, h, z, e2 })
    }

    /// Trains a fresh model on `data`. Deterministic in (data, config) and independent of the
    /// multiplier.
    pub fn train(data: &Dataset, config: &TrainConfig, mul: &mut dyn Multiply) -> Result<Self, MlError> {
        let (mut model, mut rng, mut order) = Self::start(data, config)?;
        for _ in 0..config.epochs {
            shuffle(&mut rng, &mut order);
            for batch in order.chunks(1 << config.batch_log2) {
                model.step(data, batch, config, mul)?;
            }
        }
        Ok(model)
    }

    /// The initial model, the shuffling generator and the example order training starts from.
    fn start(data: &Dataset, config: &TrainConfig) -> Result<(Self, SplitMix64, Vec<usize>), MlError> {
        if data.is_empty() || config.hidden == 0 || config.batch_log2 > 12 || config.lr_log2 > 30 {
            return Err(MlError::Data("need examples, hidden ≥ 1, batch_log2 ≤ 12, lr_log2 ≤ 30".into()));
        }
        let input_max = data.x.iter().copied().max().unwrap_or(1);
        let model = Mlp::new(data.features, config.hidden, data.classes, input_max, config.seed);
        Ok((model, SplitMix64::new(config.seed ^ 0x5EED), (0..data.len()).collect()))
    }

    /// The operands of the first product [`train`](Self::train) computes (the first batch times
    /// the initial first-layer weights), known before training: what a training job commits to.
    pub fn first_training_product(data: &Dataset, config: &TrainConfig) -> Result<(MatI8, MatI8), MlError> {
        if config.epochs == 0 {
            return Err(MlError::Data("training with 0 epochs computes nothing".into()));
        }
        let (model, mut rng, mut order) = Self::start(data, config)?;
        shuffle(&mut rng, &mut order);
        let batch = &order[..order.len().min(1 << config.batch_log2)];
        Ok((model.inputs_q(data, batch), model.weights().0.m))
    }

    /// Multiply-adds [`train`](Self::train) computes: five products per batch (two forward,
    /// three backward) over every example of every epoch.
    pub fn training_macs(data: &Dataset, config: &TrainConfig) -> u64 {
        let (i, h, c) = (data.features as u64, config.hidden as u64, data.classes as u64);
        config.epochs as u64 * data.len() as u64 * (2 * i * h + 3 * h * c)
    }

    fn step(
        &mut self,
        data: &Dataset,
        batch: &[usize],
        cfg: &TrainConfig,
        mul: &mut dyn Multiply,
    ) -> Result<(), MlError> {
        let (b, hid, cls) = (batch.len(), self.hidden, self.classes);
        let x = self.inputs_q(data, batch);
        let (w1, w2) = self.weights();
        let f = self.forward(&x, &w1, &w2, mul)?;
        // ∂loss/∂z for ½‖z − onehot‖², at 2^−12.
        let one = 1i64 << -GRAD_EXP;
        let g: Vec<i64> = (0..b * cls)
            .map(|i| rescale(f.z[i], f.e2, GRAD_EXP) - if data.y[batch[i / cls]] as usize == i % cls { one } else { 0 })
            .collect();
        let gq = quantize(&g, b, cls, GRAD_EXP);
        let dw2 = mul.product(&f.h.m.transpose(), &gq.m)?;
        let dh = mul.product(&gq.m, &w2.m.transpose())?;
        let e_dh = gq.exp + w2.exp;
        let dh: Vec<i64> = dh.as_slice().iter().zip(&f.pre).map(|(&d, &p)| if p > 0 { d as i64 } else { 0 }).collect();
        let dhq = quantize(&dh, b, hid, e_dh);
        let dw1 = mul.product(&x.transpose(), &dhq.m)?;
        let step = -(cfg.lr_log2 as i32) - cfg.batch_log2 as i32;
        let update = |w: &mut [i64], grad: &mut dyn Iterator<Item = i64>, exp: i32| {
            for (w, d) in w.iter_mut().zip(grad) {
                *w -= rescale(d, exp + step, MASTER_EXP);
            }
        };
        update(&mut self.w2, &mut dw2.as_slice().iter().map(|&v| v as i64), f.h.exp + gq.exp);
        update(&mut self.b2, &mut (0..cls).map(|c| (0..b).map(|i| g[i * cls + c]).sum()), GRAD_EXP);
        update(&mut self.w1, &mut dw1.as_slice().iter().map(|&v| v as i64), INPUT_EXP + dhq.exp);
        update(&mut self.b1, &mut (0..hid).map(|j| (0..b).map(|i| dh[i * hid + j]).sum()), e_dh);
        Ok(())
    }

    /// Predicted class of each example (ties go to the lower class), [`PREDICT_CHUNK`] examples
    /// per product.
    pub fn predict(&self, data: &Dataset, mul: &mut dyn Multiply) -> Result<Vec<u8>, MlError> {
        self.check_features(data)?;
        let (w1, w2) = self.weights();
        let mut out = Vec::with_capacity(data.len());
        let rows: Vec<usize> = (0..data.len()).collect();
        for chunk in rows.chunks(PREDICT_CHUNK) {
            let f = self.forward(&self.inputs_q(data, chunk), &w1, &w2, mul)?;
            for z in f.z.chunks(self.classes) {
                let best = (0..self.classes).fold(0, |best, c| if z[c] > z[best] { c } else { best });
                out.push(best as u8);
            }
        }
        Ok(out)
    }

    fn check_features(&self, data: &Dataset) -> Result<(), MlError> {
        if data.features != self.inputs {
            return Err(MlError::Data(format!("{} features, the model takes {}", data.features, self.inputs)));
        }
        if data.is_empty() {
            return Err(MlError::Data("no examples".into()));
        }
        Ok(())
    }

    /// The operands of the first product [`predict`](Self::predict) computes: the first chunk of
    /// examples times the first-layer weights. What an inference job commits to.
    pub fn first_inference_product(&self, data: &Dataset) -> Result<(MatI8, MatI8), MlError> {
        self.check_features(data)?;
        let rows: Vec<usize> = (0..data.len().min(PREDICT_CHUNK)).collect();
        Ok((self.inputs_q(data, &rows), self.weights().0.m))
    }

    /// Multiply-adds [`predict`](Self::predict) computes.
    pub fn inference_macs(&self, data: &Dataset) -> u64 {
        data.len() as u64 * (self.inputs * self.hidden + self.hidden * self.classes) as u64
    }

    /// Share of `data` classified correctly.
    pub fn accuracy(&self, data: &Dataset, mul: &mut dyn Multiply) -> Result<f64, MlError> {
        let p = self.predict(data, mul)?;
        Ok(p.iter().zip(&data.y).filter(|(a, b)| a == b).count() as f64 / data.len().max(1) as f64)
    }

    /// The model as a safetensors file: master weights as I64 tensors `w1` (inputs × hidden),
    /// `b1`, `w2` (hidden × classes), `b2`, each value · 2^−24, and `input_max` (one I64).
    /// The metadata holds one entry (`format`): the library keeps metadata in a hash map, so
    /// with several entries their order, and the file's bytes, would change from run to run.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, MlError> {
        let bytes = |v: &[i64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let (w1, b1, w2, b2) = (bytes(&self.w1), bytes(&self.b1), bytes(&self.w2), bytes(&self.b2));
        let input_max = bytes(&[self.input_max as i64]);
        fn view(data: &[u8], shape: Vec<usize>) -> Result<TensorView<'_>, MlError> {
            TensorView::new(Dtype::I64, shape, data).map_err(|e| MlError::Model(e.to_string()))
        }
        let tensors = vec![
            ("w1", view(&w1, vec![self.inputs, self.hidden])?),
            ("b1", view(&b1, vec![self.hidden])?),
            ("w2", view(&w2, vec![self.hidden, self.classes])?),
            ("b2", view(&b2, vec![self.classes])?),
            ("input_max", view(&input_max, vec![1])?),
        ];
        let meta = HashMap::from([("format".to_string(), "ergon-mlp-v1".to_string())]);
        safetensors::serialize(tensors, Some(meta)).map_err(|e| MlError::Model(e.to_string()))
    }

    pub fn from_safetensors(bytes: &[u8]) -> Result<Self, MlError> {
        let bad = |why: String| MlError::Model(why);
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some("ergon-mlp-v1") {
            return Err(bad("not an ergon-mlp-v1 model".into()));
        }
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let tensor = |name: &str| -> Result<(Vec<usize>, Vec<i64>), MlError> {
            let t = st.tensor(name).map_err(|e| bad(format!("{name}: {e}")))?;
            if t.dtype() != Dtype::I64 {
                return Err(bad(format!("{name} is {:?}, expected I64", t.dtype())));
            }
            let v = t.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
            Ok((t.shape().to_vec(), v))
        };
        let ((s1, w1), (sb1, b1), (s2, w2), (sb2, b2)) = (tensor("w1")?, tensor("b1")?, tensor("w2")?, tensor("b2")?);
        let input_max = match tensor("input_max")? {
            (shape, v) if shape == [1] && (1..=255).contains(&v[0]) => v[0] as u8,
            _ => return Err(bad("input_max must be one value in 1..=255".into())),
        };
        if s1.len() != 2 || s2.len() != 2 || s1[1] != s2[0] || sb1 != [s1[1]] || sb2 != [s2[1]] {
            return Err(bad(format!("inconsistent shapes w1 {s1:?}, b1 {sb1:?}, w2 {s2:?}, b2 {sb2:?}")));
        }
        let limit = 1i64 << 40;
        if [&w1, &b1, &w2, &b2].iter().any(|t| t.iter().any(|v| v.abs() > limit)) {
            return Err(bad("weights out of range".into()));
        }
        Ok(Self { inputs: s1[0], hidden: s1[1], classes: s2[1], input_max, w1, b1, w2, b2 })
    }
}

// Mining needs every operand within ±126 (see `crate::fixed`).
const _: () = assert!(QMAX == 126);
