//! Freivalds' check of a claimed product C = A·B in O(mk + kn + mn) instead of O(mkn).
//!
//! Each round draws a uniform vector x over the prime field F_p, p = 2^61 − 1, and compares
//! A·(B·x) with C·x. Integer matrices map into F_p exactly, so a true product always passes; if
//! C ≠ A·B some row of A·B − C is a nonzero linear form, which vanishes at a uniform x with
//! probability 1/p. Rounds are independent: false accept ≤ p^−rounds, ≤ 2^−122 at the default 2.
//!
//! The arithmetic splits field elements into 31/30-bit limbs (and int32 entries into 16-bit
//! limbs) so every inner sum is an exact i64 that vectorises; reductions happen once per row.

use rayon::prelude::*;

use crate::matrix::{MatI32, MatI8};
use crate::KernelError;

/// The Mersenne prime 2^61 − 1.
pub const P: u64 = (1 << 61) - 1;
/// Two rounds: false accept ≤ 2^−122, within the protocol's 2^−120.
pub const DEFAULT_ROUNDS: u32 = 2;

/// Outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// C = A·B, except with probability at most `2^-false_accept_bits`.
    Accept { false_accept_bits: u32 },
    /// C ≠ A·B for certain; `row` is a row where they differ.
    Reject { row: usize },
}

/// log2 of 1/p, rounded down: each round contributes at least this many bits of confidence.
const BITS_PER_ROUND: u32 = 60;

/// Checks C = A·B with `rounds` rounds, drawing the random vectors from `seed`. The seed must be
/// unknown to whoever produced C (the caller draws it from the OS, or a beacon after commitment).
pub fn check(a: &MatI8, b: &MatI8, c: &MatI32, rounds: u32, seed: [u8; 32]) -> Result<Verdict, KernelError> {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    if b.rows() != k || c.rows() != m || c.cols() != n {
        return Err(KernelError::Shape(format!(
            "cannot check a {}x{} result of {m}x{k} times {}x{n}",
            c.rows(),
            c.cols(),
            b.rows()
        )));
    }
    if rounds == 0 {
        return Err(KernelError::Shape("Freivalds needs at least one round".into()));
    }
    let mut xof = blake3::Hasher::new_keyed(&seed).update(b"ergon/freivalds/v1").finalize_xof();
    for _ in 0..rounds {
        let x: Vec<u64> = (0..n).map(|_| uniform_element(&mut xof)).collect();
        let y = mat_i8_vec(b.as_slice(), k, n, &x);
        let z = mat_i8_vec(a.as_slice(), m, k, &y);
        let w = mat_i32_vec(c.as_slice(), m, n, &x);
        if let Some(row) = z.iter().zip(&w).position(|(z, w)| z != w) {
            return Ok(Verdict::Reject { row });
        }
    }
    Ok(Verdict::Accept { false_accept_bits: rounds.saturating_mul(BITS_PER_ROUND) })
}

fn uniform_element(xof: &mut blake3::OutputReader) -> u64 {
    loop {
        let mut buf = [0u8; 8];
        xof.fill(&mut buf);
        let v = u64::from_le_bytes(buf) >> 3;
        if v < P {
            return v;
        }
    }
}

/// Reduces any i128 into [0, p).
fn reduce(v: i128) -> u64 {
    v.rem_euclid(P as i128) as u64
}

/// Splits field elements into (low 31 bits, high 30 bits), both as i32 for widening multiplies.
fn limbs(x: &[u64]) -> (Vec<i32>, Vec<i32>) {
    x.iter().map(|&v| ((v & 0x7fff_ffff) as i32, (v >> 31) as i32)).unzip()
}

/// M·x mod p for an int8 rows × cols matrix M.
fn mat_i8_vec(mat: &[i8], rows: usize, cols: usize, x: &[u64]) -> Vec<u64> {
    let (lo, hi) = limbs(x);
    mat.par_chunks(cols)
        .take(rows)
        .map(|row| {
            // |entry · limb| < 2^38, so i64 sums are exact for rows shorter than 2^25.
            let (mut s_lo, mut s_hi) = (0i64, 0i64);
            for ((&v, &l), &h) in row.iter().zip(&lo).zip(&hi) {
                s_lo += v as i64 * l as i64;
                s_hi += v as i64 * h as i64;
            }
            reduce(s_lo as i128 + ((s_hi as i128) << 31))
        })
        .collect()
}

/// M·x mod p for an int32 rows × cols matrix M, in 16-bit limbs of M.
fn mat_i32_vec(mat: &[i32], rows: usize, cols: usize, x: &[u64]) -> Vec<u64> {
    let (lo, hi) = limbs(x);
    mat.par_chunks(cols)
        .take(rows)
        .map(|row| {
            let mut total: i128 = 0;
            // |limb of C · limb of x| < 2^47: exact i64 sums over 2^15 columns at a time.
            for ((r, l), h) in row.chunks(1 << 15).zip(lo.chunks(1 << 15)).zip(hi.chunks(1 << 15)) {
                let (mut ll, mut lh, mut hl, mut hh) = (0i64, 0i64, 0i64, 0i64);
                for ((&v, &xl), &xh) in r.iter().zip(l).zip(h) {
                    let (vl, vh) = ((v & 0xffff) as i64, (v >> 16) as i64);
                    ll += vl * xl as i64;
                    lh += vl * xh as i64;
                    hl += vh * xl as i64;
                    hh += vh * xh as i64;
                }
                total += ll as i128 + ((lh as i128) << 31) + ((hl as i128) << 16) + ((hh as i128) << 47);
                total = reduce(total) as i128;
            }
            reduce(total)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::matmul_naive;

    fn random(rows: usize, cols: usize, seed: u64) -> MatI8 {
        let mut s = seed;
        MatI8::from_fn(rows, cols, |_, _| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 56) as i8
        })
        .unwrap()
    }

    #[test]
    fn accepts_true_products_and_rejects_any_single_change_by_one() {
        for (m, k, n) in [(1, 1, 1), (7, 13, 5), (33, 70, 41)] {
            let (a, b) = (random(m, k, 1), random(k, n, 2));
            let c = matmul_naive(&a, &b).unwrap();
            assert_eq!(check(&a, &b, &c, DEFAULT_ROUNDS, [7; 32]).unwrap(), Verdict::Accept { false_accept_bits: 120 });
            for i in 0..m {
                for j in 0..n {
                    for delta in [1, -1] {
                        let mut bad = c.clone();
                        bad.set(i, j, c.get(i, j).wrapping_add(delta));
                        assert_eq!(check(&a, &b, &bad, 1, [i as u8; 32]).unwrap(), Verdict::Reject { row: i });
                    }
                }
            }
        }
    }

    #[test]
    fn extreme_entries_stay_exact() {
        let a = MatI8::from_fn(3, 4000, |i, _| if i == 0 { -128 } else { 127 }).unwrap();
        let b = MatI8::from_fn(4000, 2, |_, j| if j == 0 { -128 } else { -127 }).unwrap();
        let c = matmul_naive(&a, &b).unwrap();
        assert!(matches!(check(&a, &b, &c, 2, [1; 32]).unwrap(), Verdict::Accept { .. }));
        let mut bad = c.clone();
        bad.set(2, 1, i32::MIN);
        assert_eq!(check(&a, &b, &bad, 2, [1; 32]).unwrap(), Verdict::Reject { row: 2 });
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let a = random(2, 3, 1);
        let b = random(3, 4, 2);
        let c = MatI32::zeros(2, 5).unwrap();
        assert!(check(&a, &b, &c, 2, [0; 32]).is_err());
    }
}
