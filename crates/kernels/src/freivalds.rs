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

/// Splits field elements into (low 31 bits, high 30 bits), each held in an i64 lane (the layout
/// `vpmuldq` reads: a signed 32-bit value in the low half).
fn limbs(x: &[u64]) -> (Vec<i64>, Vec<i64>) {
    x.iter().map(|&v| ((v & 0x7fff_ffff) as i64, (v >> 31) as i64)).unzip()
}

/// M·x mod p for an int8 rows × cols matrix M.
fn mat_i8_vec(mat: &[i8], rows: usize, cols: usize, x: &[u64]) -> Vec<u64> {
    let (lo, hi) = limbs(x);
    let avx2 = has_avx2();
    mat.par_chunks(cols)
        .take(rows)
        .map(|row| {
            // |entry · limb| < 2^38, so i64 sums are exact for rows shorter than 2^25.
            #[cfg(target_arch = "x86_64")]
            let (s_lo, s_hi) = if avx2 {
                // SAFETY: AVX2 detected; the function reads only within the three slices.
                unsafe { dot_i8_avx2(row, &lo, &hi) }
            } else {
                dot_i8(row, &lo, &hi)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let (s_lo, s_hi) = dot_i8(row, &lo, &hi);
            reduce(s_lo as i128 + ((s_hi as i128) << 31))
        })
        .collect()
}

fn dot_i8(row: &[i8], lo: &[i64], hi: &[i64]) -> (i64, i64) {
    let (mut s_lo, mut s_hi) = (0i64, 0i64);
    for ((&v, &l), &h) in row.iter().zip(lo).zip(hi) {
        s_lo += v as i64 * l;
        s_hi += v as i64 * h;
    }
    (s_lo, s_hi)
}

/// M·x mod p for an int32 rows × cols matrix M, in 16-bit limbs of M.
fn mat_i32_vec(mat: &[i32], rows: usize, cols: usize, x: &[u64]) -> Vec<u64> {
    let (lo, hi) = limbs(x);
    let avx2 = has_avx2();
    mat.par_chunks(cols)
        .take(rows)
        .map(|row| {
            let mut total: i128 = 0;
            // |limb of C · limb of x| < 2^47: exact i64 sums over 2^15 columns at a time.
            for ((r, l), h) in row.chunks(1 << 15).zip(lo.chunks(1 << 15)).zip(hi.chunks(1 << 15)) {
                #[cfg(target_arch = "x86_64")]
                let [ll, lh, hl, hh] = if avx2 {
                    // SAFETY: AVX2 detected; the function reads only within the three slices.
                    unsafe { dot_i32_avx2(r, l, h) }
                } else {
                    dot_i32(r, l, h)
                };
                #[cfg(not(target_arch = "x86_64"))]
                let [ll, lh, hl, hh] = dot_i32(r, l, h);
                total += ll as i128 + ((lh as i128) << 31) + ((hl as i128) << 16) + ((hh as i128) << 47);
                total = reduce(total) as i128;
            }
            reduce(total)
        })
        .collect()
}

/// [Σ c_lo·x_lo, Σ c_lo·x_hi, Σ c_hi·x_lo, Σ c_hi·x_hi] with c = c_hi·2^16 + c_lo, c_lo ∈ [0, 2^16).
fn dot_i32(row: &[i32], lo: &[i64], hi: &[i64]) -> [i64; 4] {
    let mut acc = [0i64; 4];
    for ((&v, &xl), &xh) in row.iter().zip(lo).zip(hi) {
        let (vl, vh) = ((v & 0xffff) as i64, (v >> 16) as i64);
        acc[0] += vl * xl;
        acc[1] += vl * xh;
        acc[2] += vh * xl;
        acc[3] += vh * xh;
    }
    acc
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `vpmuldq` multiplies the signed low 32 bits of each 64-bit lane into an exact i64, so four
/// sign-extended entries times four limbs cost one instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2(row: &[i8], lo: &[i64], hi: &[i64]) -> (i64, i64) {
    use std::arch::x86_64::*;
    let len = row.len().min(lo.len()).min(hi.len());
    let (mut a_lo, mut a_hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    let mut j = 0;
    while j + 4 <= len {
        let v = _mm256_cvtepi8_epi64(_mm_cvtsi32_si128((row.as_ptr().add(j) as *const i32).read_unaligned()));
        let xl = _mm256_loadu_si256(lo.as_ptr().add(j) as *const __m256i);
        let xh = _mm256_loadu_si256(hi.as_ptr().add(j) as *const __m256i);
        a_lo = _mm256_add_epi64(a_lo, _mm256_mul_epi32(v, xl));
        a_hi = _mm256_add_epi64(a_hi, _mm256_mul_epi32(v, xh));
        j += 4;
    }
    let (tail_lo, tail_hi) = dot_i8(&row[j..len], &lo[j..len], &hi[j..len]);
    (hsum(a_lo) + tail_lo, hsum(a_hi) + tail_hi)
}

/// The four limb products of `dot_i32`, four entries at a time: the low limb is `v & 0xffff`;
/// the high limb's signed 32-bit form is bits 16..48 of the sign-extended entry (`vpsrlq 16`),
/// which is exactly what `vpmuldq` reads.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i32_avx2(row: &[i32], lo: &[i64], hi: &[i64]) -> [i64; 4] {
    use std::arch::x86_64::*;
    let len = row.len().min(lo.len()).min(hi.len());
    let mask = _mm256_set1_epi64x(0xffff);
    let mut acc = [_mm256_setzero_si256(); 4];
    let mut j = 0;
    while j + 4 <= len {
        let v = _mm256_cvtepi32_epi64(_mm_loadu_si128(row.as_ptr().add(j) as *const __m128i));
        let (vl, vh) = (_mm256_and_si256(v, mask), _mm256_srli_epi64(v, 16));
        let xl = _mm256_loadu_si256(lo.as_ptr().add(j) as *const __m256i);
        let xh = _mm256_loadu_si256(hi.as_ptr().add(j) as *const __m256i);
        acc[0] = _mm256_add_epi64(acc[0], _mm256_mul_epi32(vl, xl));
        acc[1] = _mm256_add_epi64(acc[1], _mm256_mul_epi32(vl, xh));
        acc[2] = _mm256_add_epi64(acc[2], _mm256_mul_epi32(vh, xl));
        acc[3] = _mm256_add_epi64(acc[3], _mm256_mul_epi32(vh, xh));
        j += 4;
    }
    let tail = dot_i32(&row[j..len], &lo[j..len], &hi[j..len]);
    std::array::from_fn(|q| hsum(acc[q]) + tail[q])
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn hsum(v: std::arch::x86_64::__m256i) -> i64 {
    let mut lanes = [0i64; 4];
    std::arch::x86_64::_mm256_storeu_si256(lanes.as_mut_ptr() as *mut _, v);
    lanes.iter().sum()
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
    fn simd_dots_match_scalar() {
        let row8: Vec<i8> = (0..1003).map(|j| (j * 37 % 256) as u8 as i8).collect();
        let row32: Vec<i32> = (0..1003i32).map(|j| j.wrapping_mul(-1_234_567_891)).collect();
        let x: Vec<u64> = (0..1003u64).map(|j| (j.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 3) % P).collect();
        let (lo, hi) = limbs(&x);
        if has_avx2() {
            // SAFETY: AVX2 detected.
            unsafe {
                assert_eq!(dot_i8_avx2(&row8, &lo, &hi), dot_i8(&row8, &lo, &hi));
                assert_eq!(dot_i32_avx2(&row32, &lo, &hi), dot_i32(&row32, &lo, &hi));
            }
        }
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let a = random(2, 3, 1);
        let b = random(3, 4, 2);
        let c = MatI32::zeros(2, 5).unwrap();
        assert!(check(&a, &b, &c, 2, [0; 32]).is_err());
    }
}
