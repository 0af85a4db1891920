//! Dynamic fixed point. A tensor is integers times 2^exp; products add exponents; a wide tensor
//! becomes int8 again by the smallest shift that fits its largest magnitude into ±126 (so PoUW
//! noise of ±1 keeps it int8). Shifts round half up, so every step is exact and the same on
//! every machine.

use ergon_kernels::MatI8;

/// Largest int8 magnitude used: mining adds ±1 noise and must stay within ±127.
pub const QMAX: i64 = 126;

/// v / 2^s rounded half up (s ≥ 0), or v · 2^(−s) for s < 0 (saturating).
pub fn shift(v: i64, s: i32) -> i64 {
    if s <= 0 {
        let s = (-s).min(62) as u32;
        return v.saturating_mul(1i64 << s);
    }
    if s >= 63 {
        return 0;
    }
    let half = 1i64 << (s - 1);
    v.saturating_add(half) >> s
}

/// Re-expresses `v · 2^from` in units of 2^to.
pub fn rescale(v: i64, from: i32, to: i32) -> i64 {
    shift(v, to - from)
}

/// An int8 matrix and its exponent: real value = entry · 2^exp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Q8 {
    pub m: MatI8,
    pub exp: i32,
}

/// Quantizes `values · 2^exp` (row-major, rows × cols) to int8 with the finest exponent at which
/// the largest magnitude fits ±126.
pub fn quantize(values: &[i64], rows: usize, cols: usize, exp: i32) -> Q8 {
    let max = values.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0) as i64;
    let mut s: i32 = 0;
    if max > 0 {
        while shift(max, s) > QMAX {
            s += 1;
        }
        while s > -30 && shift(max, s - 1) <= QMAX {
            s -= 1;
        }
    }
    let data = values.iter().map(|&v| shift(v, s).clamp(-QMAX, QMAX) as i8).collect();
    Q8 { m: MatI8::from_vec(rows, cols, data).expect("rows × cols values"), exp: exp + s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_round_half_up_and_quantize_fits() {
        assert_eq!((shift(5, 1), shift(-5, 1), shift(4, 1), shift(3, -2)), (3, -2, 2, 12));
        let q = quantize(&[1000, -1000, 3], 1, 3, -10);
        assert_eq!(q.m.as_slice(), &[125, -125, 0]);
        assert_eq!(q.exp, -7);
        let small = quantize(&[1, -2], 1, 2, 0);
        assert!(small.m.as_slice()[1] <= -63 && small.exp < 0, "{small:?}");
        assert_eq!(quantize(&[0, 0], 1, 2, 5).m.as_slice(), &[0, 0]);
    }
}
