//! float32 → int8 symmetric quantization with one scale per row or per column.
//!
//! Quantizing A per row and B per column keeps the product exact up to one rescale:
//! A·B ≈ diag(s_A) · (Q_A·Q_B) · diag(s_B). Floats live only here, at the edge; nothing a node
//! hashes or compares depends on them.

use crate::matrix::{MatF32, MatI8};
use crate::KernelError;

/// Which axis shares a scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// One scale per row (the left operand of a product).
    Row,
    /// One scale per column (the right operand).
    Column,
}

/// A quantized matrix, its scales and the error the rounding made.
#[derive(Debug, Clone)]
pub struct Quantized {
    pub values: MatI8,
    /// value ≈ scale · q; a row or column of zeros gets scale 1.
    pub scales: Vec<f32>,
    pub axis: Axis,
    /// max |x − scale·q| over all entries.
    pub max_abs_error: f64,
    /// sqrt(mean (x − scale·q)²).
    pub rms_error: f64,
}

/// Quantizes `x` to integers in [−qmax, qmax]. Refuses NaN and infinities, and qmax outside 1..=127.
pub fn quantize(x: &MatF32, axis: Axis, qmax: i8) -> Result<Quantized, KernelError> {
    if qmax < 1 {
        return Err(KernelError::Shape(format!("qmax {qmax} must be in 1..=127")));
    }
    if let Some(pos) = x.as_slice().iter().position(|v| !v.is_finite()) {
        let (i, j) = (pos / x.cols(), pos % x.cols());
        return Err(KernelError::Shape(format!("entry ({i}, {j}) is not finite: {}", x.as_slice()[pos])));
    }
    let groups = match axis {
        Axis::Row => x.rows(),
        Axis::Column => x.cols(),
    };
    let group_of = |i: usize, j: usize| if axis == Axis::Row { i } else { j };
    let mut max_abs = vec![0f32; groups];
    for i in 0..x.rows() {
        for (j, v) in x.row(i).iter().enumerate() {
            let g = &mut max_abs[group_of(i, j)];
            *g = g.max(v.abs());
        }
    }
    let scales: Vec<f32> = max_abs.iter().map(|&m| if m > 0.0 { m / qmax as f32 } else { 1.0 }).collect();
    let (mut max_err, mut sq_err) = (0f64, 0f64);
    let values = MatI8::from_fn(x.rows(), x.cols(), |i, j| {
        let v = x.get(i, j);
        let s = scales[group_of(i, j)];
        let q = (v / s).round().clamp(-(qmax as f32), qmax as f32) as i8;
        let err = (v as f64 - s as f64 * q as f64).abs();
        max_err = max_err.max(err);
        sq_err += err * err;
        q
    })?;
    let count = (x.rows() * x.cols()) as f64;
    Ok(Quantized { values, scales, axis, max_abs_error: max_err, rms_error: (sq_err / count).sqrt() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_within_half_a_step_and_reported() {
        let x = MatF32::from_fn(5, 9, |i, j| ((i * 9 + j) as f32 * 0.37).sin() * (i + 1) as f32).unwrap();
        for axis in [Axis::Row, Axis::Column] {
            let q = quantize(&x, axis, 127).unwrap();
            let half_step = q.scales.iter().cloned().fold(0f32, f32::max) as f64 / 2.0;
            assert!(q.max_abs_error <= half_step + 1e-6, "{} > {half_step}", q.max_abs_error);
            assert!(q.rms_error <= q.max_abs_error && q.rms_error > 0.0);
            assert!(q.values.as_slice().iter().all(|v| v.unsigned_abs() <= 127));
            // The largest entry of each group maps to ±qmax.
            assert!(q.values.as_slice().iter().any(|v| v.unsigned_abs() == 127));
        }
    }

    #[test]
    fn respects_qmax_and_zero_rows() {
        let x = MatF32::from_fn(3, 4, |i, j| if i == 1 { 0.0 } else { j as f32 - 1.5 }).unwrap();
        let q = quantize(&x, Axis::Row, 126).unwrap();
        assert!(q.values.as_slice().iter().all(|v| v.unsigned_abs() <= 126));
        assert_eq!(q.scales[1], 1.0);
        assert!(q.values.row(1).iter().all(|&v| v == 0));
    }

    #[test]
    fn refuses_non_finite_input() {
        let x = MatF32::from_vec(1, 2, vec![1.0, f32::NAN]).unwrap();
        assert!(quantize(&x, Axis::Row, 127).is_err());
        assert!(quantize(&MatF32::from_vec(1, 1, vec![1.0]).unwrap(), Axis::Row, 0).is_err());
    }
}
