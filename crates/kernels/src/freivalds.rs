//! Freivalds' check of a claimed product C = A·B in O(mk + kn + mn) instead of O(mkn).
//!
//! Each round draws a uniform vector x over the prime field F_p, p = 2^61 − 1, and compares
//! A·(B·x) with C·x. Integer matrices map into F_p exactly, so a true product always passes; if
//! C ≠ A·B some row of A·B − C is a nonzero linear form, which vanishes at a uniform x with
//! probability 1/p. Rounds are independent: false accept ≤ p^−rounds, ≤ 2^−122 at the default 2.
//!
//! The arithmetic splits field elements into limbs so every inner sum is exact in integers that
//! vectorise, reducing mod p once per row (or per 1024 columns):
//! - AVX-512 VNNI: the two rounds' vectors in one pass over A, B and C. An int8 row times a
//!   vector is `vpdpbusd` on the vector's 8 byte limbs; an int32 row is `vpmuldq` on 21-bit
//!   limbs, four rows at a time. Reading C once (4 bytes an entry) is most of the cost.
//! - AVX2: the two rounds' vectors in one pass over A, B and C. An int8 row times a vector is
//!   `vpmaddwd` on the vector's 4 balanced digits (base 2^16 − 1); an int32 row is `vpmuldq` on
//!   the same 21-bit limbs as AVX-512's, two rows at a time.
//! - Elsewhere: the same limbs in scalar code.

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
    let mut xof = Draws::new(blake3::Hasher::new_keyed(&seed).update(b"ergon/freivalds/v1").finalize_xof());
    // Every round's vector, drawn in round order, then the rounds checked in pairs: one pass over
    // A, B and C serves two rounds, and C (4 bytes an entry) is most of what is read.
    let xs: Vec<Vec<u64>> = (0..rounds).map(|_| (0..n).map(|_| uniform_element(&mut xof)).collect()).collect();
    for pair in xs.chunks(2) {
        let y = mat_i8_vecs(b.as_slice(), k, n, pair);
        let z = mat_i8_vecs(a.as_slice(), m, k, &y);
        let w = mat_i32_vecs(c.as_slice(), m, n, pair);
        for (z, w) in z.iter().zip(&w) {
            if let Some(row) = z.iter().zip(w).position(|(z, w)| z != w) {
                return Ok(Verdict::Reject { row });
            }
        }
    }
    Ok(Verdict::Accept { false_accept_bits: rounds.saturating_mul(BITS_PER_ROUND) })
}

/// M·x mod p for each x (one or two), on the fastest path this CPU has.
fn mat_i8_vecs(mat: &[i8], rows: usize, cols: usize, xs: &[Vec<u64>]) -> Vec<Vec<u64>> {
    #[cfg(target_arch = "x86_64")]
    if has_avx512_vnni() && xs.len() == 2 {
        let limbs = ByteLimbs::new(xs, cols);
        let out: Vec<[u64; 2]> = mat
            .par_chunks(cols)
            .take(rows)
            // SAFETY: AVX-512 F and VNNI detected; the limbs cover `cols` columns of both vectors.
            .map(|row| unsafe { dot_i8_vnni(row, &limbs) })
            .collect();
        return by_vector(out);
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() && xs.len() == 2 {
        let limbs = DigitLimbs::new(xs, cols);
        let out: Vec<[u64; 2]> = mat
            .par_chunks(cols)
            .take(rows)
            // SAFETY: AVX2 detected; the digits cover `cols` columns of both vectors.
            .map(|row| unsafe { dot_i8_avx2_pair(row, &limbs) })
            .collect();
        return by_vector(out);
    }
    xs.iter().map(|x| mat_i8_vec(mat, rows, cols, x)).collect()
}

/// M·x mod p for each x (one or two) and an int32 M, on the fastest path this CPU has.
fn mat_i32_vecs(mat: &[i32], rows: usize, cols: usize, xs: &[Vec<u64>]) -> Vec<Vec<u64>> {
    #[cfg(target_arch = "x86_64")]
    if has_avx512f() && xs.len() == 2 {
        let limbs = WordLimbs::new(xs, cols);
        let out: Vec<[u64; 2]> = mat[..rows * cols]
            .par_chunks(ROW_GROUP * cols)
            // SAFETY: AVX-512 F detected; the limbs cover `cols` columns of both vectors.
            .flat_map_iter(|group| unsafe { dot_i32_avx512(group, cols, &limbs) })
            .collect();
        return by_vector(out);
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() && xs.len() == 2 {
        let limbs = WordLimbs::new(xs, cols);
        let out: Vec<[u64; 2]> = mat[..rows * cols]
            .par_chunks(ROW_PAIR * cols)
            // SAFETY: AVX2 detected; the limbs cover `cols` columns of both vectors.
            .flat_map_iter(|group| unsafe { dot_i32_avx2_rows(group, cols, &limbs) })
            .collect();
        return by_vector(out);
    }
    xs.iter().map(|x| mat_i32_vec(mat, rows, cols, x)).collect()
}

/// Per-row results for two vectors, [M·x_0, M·x_1] for each row, as the two vectors M·x_v.
#[cfg(target_arch = "x86_64")]
fn by_vector(rows: Vec<[u64; 2]>) -> Vec<Vec<u64>> {
    (0..2).map(|v| rows.iter().map(|r| r[v]).collect()).collect()
}

/// The XOF's stream, 8 bytes per draw, read 512 bytes at a time (8 bytes per `fill` spent more
/// time in the XOF's bookkeeping than the check spends on a 2048-column vector's limbs). The
/// draws are the same bytes in the same order either way.
struct Draws {
    xof: blake3::OutputReader,
    buf: [u8; 512],
    at: usize,
}

impl Draws {
    fn new(xof: blake3::OutputReader) -> Draws {
        Draws { xof, buf: [0; 512], at: 512 }
    }

    fn next(&mut self) -> [u8; 8] {
        if self.at == self.buf.len() {
            self.xof.fill(&mut self.buf);
            self.at = 0;
        }
        let mut out = [0u8; 8];
        out.copy_from_slice(&self.buf[self.at..self.at + 8]);
        self.at += 8;
        out
    }
}

fn uniform_element(xof: &mut Draws) -> u64 {
    loop {
        let v = u64::from_le_bytes(xof.next()) >> 3;
        if v < P {
            return v;
        }
    }
}

/// Reduces any i128 into [0, p). p = 2^61 − 1, so 2^61 ≡ 1: folding the bits above 61 onto the
/// low ones keeps the residue, and three folds bring any 128-bit magnitude below 2^61 + 1. (An
/// i128 `rem_euclid` is a software division: 5–8% of a check at 1024² and 2048².)
fn reduce(v: i128) -> u64 {
    let mut m = v.unsigned_abs();
    while m >> 61 != 0 {
        m = (m & P as u128) + (m >> 61);
    }
    let r = if m == P as u128 { 0 } else { m as u64 };
    if v < 0 && r != 0 {
        P - r
    } else {
        r
    }
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
            for ((r, l), h) in row.chunks(I32_CHUNK).zip(lo.chunks(I32_CHUNK)).zip(hi.chunks(I32_CHUNK)) {
                #[cfg(target_arch = "x86_64")]
                let sums = if avx2 {
                    // SAFETY: AVX2 detected; the function reads only within the three slices.
                    unsafe { dot_i32_avx2(r, l, h) }
                } else {
                    dot_i32(r, l, h)
                };
                #[cfg(not(target_arch = "x86_64"))]
                let sums = dot_i32(r, l, h);
                add_limb_sums(&mut total, sums);
            }
            reduce(total)
        })
        .collect()
}

/// Columns of an int32 row summed per limb pair before the sums are combined:
/// |limb of C · limb of x| < 2^47, so the i64 sums are exact over 2^15 columns.
const I32_CHUNK: usize = 1 << 15;

/// total ← (total + Σ of `dot_i32`'s four limb sums at their weights) mod p: c_lo·x_lo at 1,
/// c_lo·x_hi at 2^31, c_hi·x_lo at 2^16, c_hi·x_hi at 2^47.
fn add_limb_sums(total: &mut i128, [ll, lh, hl, hh]: [i64; 4]) {
    *total += ll as i128 + ((lh as i128) << 31) + ((hl as i128) << 16) + ((hh as i128) << 47);
    *total = reduce(*total) as i128;
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

/// The base of a field element's digits on the AVX2 int8 path. Four balanced digits at base
/// 2^16 − 1, each in [−32767, 32767] (an i16, the side of `vpmaddwd` that meets the
/// sign-extended entries), cover ±(B^4 − 1)/2 > 2^63 > p: 4 digits where unsigned 15-bit ones
/// needed 5 (1.25× fewer multiplies). Base 2^16 would need the digit −32768, with which 256
/// steps of −128 · −32768 · 2 reach 2^31; below 2^15 they stay under it.
const DIGIT_BASE: i64 = (1 << 16) - 1;
const DIGITS: usize = 4;

/// The balanced digits of a field element e: e = Σ_q d_q · DIGIT_BASE^q, |d_q| ≤ 32767.
fn balanced_digits(e: u64) -> [i16; DIGITS] {
    debug_assert!(e < P);
    // Unsigned throughout (rest never goes negative), so the divisions by a constant are
    // multiplications.
    const BASE: u64 = DIGIT_BASE as u64;
    let mut rest = e;
    let digits = std::array::from_fn(|_| {
        let r = rest % BASE;
        rest /= BASE;
        if r > BASE / 2 {
            rest += 1;
            (r as i64 - DIGIT_BASE) as i16
        } else {
            r as i16
        }
    });
    assert_eq!(rest, 0, "a field element has {DIGITS} balanced digits");
    digits
}

/// Two vectors over F_p cut into balanced digits, block-major: for each block of 16 columns, the
/// 8 (vector, digit) rows of 16 digits one after another (see [`DigitLimbs::at`]), zero-padded
/// to whole blocks. A step of the dot reads 256 consecutive bytes. (Digit-major rows, cols · 2
/// bytes apart, put the 8 streams in the same few L1 sets at power-of-two widths: 1.1× slower at
/// 4096 columns.)
struct DigitLimbs {
    digits: Vec<i16>,
    cols: usize,
}

impl DigitLimbs {
    fn new(xs: &[Vec<u64>], cols: usize) -> DigitLimbs {
        let mut digits = vec![0i16; cols.div_ceil(16) * 2 * DIGITS * 16];
        for (v, x) in xs.iter().enumerate().take(2) {
            for (j, &e) in x.iter().enumerate().take(cols) {
                for (q, d) in balanced_digits(e).into_iter().enumerate() {
                    digits[DigitLimbs::at(v * DIGITS + q, j)] = d;
                }
            }
        }
        DigitLimbs { digits, cols }
    }

    /// Where digit row `q` (vector q / 4, digit q % 4) has column j.
    fn at(q: usize, j: usize) -> usize {
        (j / 16 * 2 * DIGITS + q) * 16 + j % 16
    }
}

/// Σ_j row[j]·x_v[j] mod p for both vectors: 8 `vpmaddwd` (2 vectors × 4 digits) per 16
/// entries, where `vpmuldq` needs 16 (2 vectors × 2 limbs, 4 entries each). A lane gains at most
/// 2·128·32767 < 2^23 per step, so the i32 lanes are emptied into i64 sums every 256 steps
/// (4096 columns), while still below 2^31.
///
/// # Safety
/// The CPU must have AVX2; `limbs` must cover `row.len()` columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2_pair(row: &[i8], limbs: &DigitLimbs) -> [u64; 2] {
    use std::arch::x86_64::*;
    assert!(row.len() <= limbs.cols && limbs.digits.len() >= limbs.cols.div_ceil(16) * 2 * DIGITS * 16);
    let whole = row.len() / 16 * 16;
    let mut sums = [0i64; 2 * DIGITS];
    const FLUSH: usize = 256 * 16;
    for c0 in (0..whole).step_by(FLUSH) {
        let mut acc = [_mm256_setzero_si256(); 2 * DIGITS];
        for j in (c0..whole.min(c0 + FLUSH)).step_by(16) {
            // A prefetch past the row's end runs into the next row, usually next, and never faults.
            _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().wrapping_add(j + PREFETCH));
            let e = _mm256_cvtepi8_epi16(_mm_loadu_si128(row.as_ptr().add(j) as *const __m128i));
            for (q, acc) in acc.iter_mut().enumerate() {
                let d = _mm256_loadu_si256(limbs.digits.as_ptr().add(DigitLimbs::at(q, j)) as *const __m256i);
                *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(e, d));
            }
        }
        for (sum, acc) in sums.iter_mut().zip(acc) {
            let wide = _mm256_add_epi64(
                _mm256_cvtepi32_epi64(_mm256_castsi256_si128(acc)),
                _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(acc)),
            );
            *sum += hsum(wide);
        }
    }
    for (j, &e) in row.iter().enumerate().skip(whole) {
        for (q, sum) in sums.iter_mut().enumerate() {
            *sum += e as i64 * limbs.digits[DigitLimbs::at(q, j)] as i64;
        }
    }
    // |sum| < 2^7 · 2^15 · cols and DIGIT_BASE^3 < 2^48: Σ_q DIGIT_BASE^q · sum_q is exact in
    // i128 for any real row length.
    std::array::from_fn(|v| {
        let total: i128 = (0..DIGITS).map(|q| sums[v * DIGITS + q] as i128 * (DIGIT_BASE as i128).pow(q as u32)).sum();
        reduce(total)
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn hsum(v: std::arch::x86_64::__m256i) -> i64 {
    let mut lanes = [0i64; 4];
    std::arch::x86_64::_mm256_storeu_si256(lanes.as_mut_ptr() as *mut _, v);
    lanes.iter().sum()
}

#[cfg(target_arch = "x86_64")]
fn has_avx512_vnni() -> bool {
    has_avx512f() && std::arch::is_x86_feature_detected!("avx512vnni")
}

#[cfg(target_arch = "x86_64")]
fn has_avx512f() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// How far ahead of the SIMD paths' reads a matrix row is prefetched, in bytes.
const PREFETCH: usize = 2048;

/// Bytes per field element: 8 limbs of 8 bits cover 2^64 > p.
const BYTE_LIMBS: usize = 8;

/// Two vectors over F_p cut into bytes, limb-major: `bytes[(v·8 + l)·stride + j]` is byte l of
/// x_v[j], each limb row zero-padded to a multiple of 64 columns. This is the unsigned side of
/// `vpdpbusd`, so an int8 row times a limb row is 64 multiply-adds per instruction.
struct ByteLimbs {
    bytes: Vec<u8>,
    stride: usize,
    cols: usize,
}

impl ByteLimbs {
    fn new(xs: &[Vec<u64>], cols: usize) -> ByteLimbs {
        let stride = cols.div_ceil(64) * 64;
        let mut bytes = vec![0u8; 2 * BYTE_LIMBS * stride];
        for (v, x) in xs.iter().enumerate().take(2) {
            for (j, &e) in x.iter().enumerate().take(cols) {
                for (l, byte) in e.to_le_bytes().into_iter().enumerate() {
                    bytes[(v * BYTE_LIMBS + l) * stride + j] = byte;
                }
            }
        }
        ByteLimbs { bytes, stride, cols }
    }
}

/// Σ_j row[j]·x_v[j] mod p for both vectors: 16 `vpdpbusd` (2 vectors × 8 byte limbs) per 64
/// entries of the row. A lane gains at most 4·128·255 < 2^17 per instruction, so the i32 lanes
/// are emptied into i64 sums every 2^13 instructions (2^19 columns), well before 2^31.
///
/// # Safety
/// The CPU must have AVX-512 F and VNNI; `limbs` must cover `row.len()` columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn dot_i8_vnni(row: &[i8], limbs: &ByteLimbs) -> [u64; 2] {
    use std::arch::x86_64::*;
    assert!(row.len() <= limbs.cols && limbs.bytes.len() >= 2 * BYTE_LIMBS * limbs.stride);
    let whole = row.len() / 64 * 64;
    let mut sums = [0i64; 2 * BYTE_LIMBS];
    const FLUSH: usize = 1 << 19;
    for c0 in (0..whole).step_by(FLUSH) {
        let mut acc = [_mm512_setzero_si512(); 2 * BYTE_LIMBS];
        for j in (c0..whole.min(c0 + FLUSH)).step_by(64) {
            // The row streams from memory at the rate of one 64-byte line per 16 instructions;
            // the hardware prefetcher alone left this loop waiting on DRAM (a prefetch past
            // the row's end runs into the next row, which is usually next, and never faults).
            _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().wrapping_add(j + PREFETCH));
            let v = _mm512_loadu_si512(row.as_ptr().add(j) as *const __m512i);
            for (q, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_loadu_si512(limbs.bytes.as_ptr().add(q * limbs.stride + j) as *const __m512i);
                *acc = _mm512_dpbusd_epi32(*acc, x, v);
            }
        }
        for (sum, acc) in sums.iter_mut().zip(acc) {
            *sum += _mm512_reduce_add_epi64(_mm512_add_epi64(
                _mm512_cvtepi32_epi64(_mm512_castsi512_si256(acc)),
                _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(acc)),
            ));
        }
    }
    for (j, &e) in row.iter().enumerate().skip(whole) {
        for (q, sum) in sums.iter_mut().enumerate() {
            *sum += e as i64 * limbs.bytes[q * limbs.stride + j] as i64;
        }
    }
    // |sum| < 2^7 · 2^8 · cols: Σ_l 2^(8l) · sum_l is exact in i128 for any real row length.
    std::array::from_fn(|v| {
        let total: i128 = (0..BYTE_LIMBS).map(|l| (sums[v * BYTE_LIMBS + l] as i128) << (8 * l)).sum();
        reduce(total)
    })
}

/// Bits per limb of a field element on the int32 path: 3 limbs of at most 21 bits.
const WORD_LIMB_BITS: u32 = 21;
const WORD_LIMBS: usize = 3;

/// Two vectors over F_p cut into 21-bit limbs, laid out for `vpmuldq` on 16 int32 entries at a
/// time: for each block of 16 columns, for each of the 6 (vector, limb) pairs, the even columns'
/// 8 limbs then the odd columns' 8, as i64 lanes.
struct WordLimbs {
    lanes: Vec<i64>,
    cols: usize,
}

impl WordLimbs {
    fn new(xs: &[Vec<u64>], cols: usize) -> WordLimbs {
        let blocks = cols.div_ceil(16);
        let mut lanes = vec![0i64; blocks * 2 * WORD_LIMBS * 16];
        for (v, x) in xs.iter().enumerate().take(2) {
            for (j, &e) in x.iter().enumerate().take(cols) {
                let (block, lane) = (j / 16, j % 16);
                for l in 0..WORD_LIMBS {
                    let limb = (e >> (WORD_LIMB_BITS * l as u32)) & ((1 << WORD_LIMB_BITS) - 1);
                    let at = (block * 2 * WORD_LIMBS + v * WORD_LIMBS + l) * 16 + (lane % 2) * 8 + lane / 2;
                    lanes[at] = limb as i64;
                }
            }
        }
        WordLimbs { lanes, cols }
    }
}

/// Rows of C taken together on the AVX-512 path: each limb vector loaded serves all of them.
/// The limbs are 12× the bytes of the C entries they multiply, so one row at a time read
/// mostly limbs (from L2); four rows keep 24 accumulators, 4 entry vectors and a limb in the 32
/// registers.
const ROW_GROUP: usize = 4;

/// Σ_j row[j]·x_v[j] mod p for both vectors, for each row of `group` (up to ROW_GROUP rows of
/// `cols` entries), 16 entries per step: `vpmuldq` reads each 64-bit lane's low 32 bits as
/// signed, so the even entries multiply as loaded and the odd ones after a 32-bit shift.
/// |entry · limb| < 2^52 and a lane gains two of them per step, so after 2^6 steps (1024
/// columns) a lane is below 2^59 and the sum of the 8 lanes below 2^62: exact.
///
/// # Safety
/// The CPU must have AVX-512 F; `limbs` must cover `cols` columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// Index loops over constant bounds: unrolled, they leave every accumulator in a register.
#[allow(clippy::needless_range_loop)]
unsafe fn dot_i32_avx512(group: &[i32], cols: usize, limbs: &WordLimbs) -> Vec<[u64; 2]> {
    use std::arch::x86_64::*;
    let rows = group.len() / cols;
    assert!(rows * cols == group.len() && rows <= ROW_GROUP && cols <= limbs.cols);
    assert!(limbs.lanes.len() >= cols.div_ceil(16) * 2 * WORD_LIMBS * 16);
    let whole = cols / 16 * 16;
    let mut totals = [[0i128; 2]; ROW_GROUP];
    const FLUSH: usize = 1 << 10;
    const Q: usize = 2 * WORD_LIMBS;
    for c0 in (0..whole).step_by(FLUSH) {
        let mut acc = [[_mm512_setzero_si512(); Q]; ROW_GROUP];
        for j in (c0..whole.min(c0 + FLUSH)).step_by(16) {
            let x = limbs.lanes.as_ptr().add(j / 16 * Q * 16);
            let mut entries = [_mm512_setzero_si512(); ROW_GROUP];
            for (r, e) in entries.iter_mut().enumerate().take(rows) {
                let at = group.as_ptr().add(r * cols + j);
                // The rows stream from memory; the hardware prefetcher alone left this loop
                // waiting on DRAM. A prefetch past the end never faults.
                _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(PREFETCH / 4) as *const i8);
                *e = _mm512_loadu_si512(at as *const __m512i);
            }
            for q in 0..Q {
                let xe = _mm512_loadu_si512(x.add(q * 16) as *const __m512i);
                for r in 0..ROW_GROUP {
                    acc[r][q] = _mm512_add_epi64(acc[r][q], _mm512_mul_epi32(entries[r], xe));
                }
            }
            for e in entries.iter_mut() {
                *e = _mm512_srli_epi64::<32>(*e);
            }
            for q in 0..Q {
                let xo = _mm512_loadu_si512(x.add(q * 16 + 8) as *const __m512i);
                for r in 0..ROW_GROUP {
                    acc[r][q] = _mm512_add_epi64(acc[r][q], _mm512_mul_epi32(entries[r], xo));
                }
            }
        }
        for (total, acc) in totals.iter_mut().zip(acc) {
            add_word_limb_sums(total, acc.map(|a| _mm512_reduce_add_epi64(a)));
        }
    }
    (0..rows).map(|r| word_limbs_tail(&group[r * cols..(r + 1) * cols], whole, limbs, totals[r])).collect()
}

/// total_v ← (total_v + Σ_l 2^(21·l) · sums[3v + l]) mod p: a row's per-(vector, limb) sums
/// over some columns, at their limbs' weights.
fn add_word_limb_sums(total: &mut [i128; 2], sums: [i64; 2 * WORD_LIMBS]) {
    for (q, sum) in sums.into_iter().enumerate() {
        let (v, l) = (q / WORD_LIMBS, q % WORD_LIMBS);
        total[v] += (sum as i128) << (WORD_LIMB_BITS as usize * l);
    }
    *total = total.map(|t| reduce(t) as i128);
}

/// A row's sums for both vectors, `total` (over its first `from` columns) plus the columns from
/// `from` on, in scalar code on the same limbs, reduced mod p.
fn word_limbs_tail(row: &[i32], from: usize, limbs: &WordLimbs, mut total: [i128; 2]) -> [u64; 2] {
    const Q: usize = 2 * WORD_LIMBS;
    for (j, &e) in row.iter().enumerate().skip(from) {
        let x = &limbs.lanes[j / 16 * Q * 16..];
        let lane = (j % 2) * 8 + (j % 16) / 2;
        for q in 0..Q {
            let (v, l) = (q / WORD_LIMBS, q % WORD_LIMBS);
            total[v] += (e as i128 * x[q * 16 + lane] as i128) << (WORD_LIMB_BITS as usize * l);
        }
    }
    total.map(reduce)
}

/// Rows of C taken together on the AVX2 path: two rows keep 12 accumulators, an entry vector per
/// row and a limb in the 16 registers, and each limb loaded serves both.
const ROW_PAIR: usize = 2;

/// [`dot_i32_avx512`] on AVX2, for up to [`ROW_PAIR`] rows of `cols` entries: 21-bit limbs, so
/// an entry meets 3 limbs per vector as loaded (the 16-bit halves of C and 31/30-bit limbs of x
/// took 4 `vpmuldq`, and the halves had to be split: 1.3× slower at 2048²). 16 entries of a
/// row per step, each 8-entry half in two `vpmuldq` rounds (even entries, then odd ones after a
/// 32-bit shift). |entry · limb| < 2^52 and a lane gains four per step, so after 2^6 steps
/// (1024 columns) a lane is below 2^60 and the sum of its 4 lanes below 2^62: exact.
///
/// # Safety
/// The CPU must have AVX2; `limbs` must cover `cols` columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
// Index loops over constant bounds: unrolled, they leave every accumulator in a register.
#[allow(clippy::needless_range_loop)]
unsafe fn dot_i32_avx2_rows(group: &[i32], cols: usize, limbs: &WordLimbs) -> Vec<[u64; 2]> {
    use std::arch::x86_64::*;
    let rows = group.len() / cols;
    assert!(rows * cols == group.len() && rows <= ROW_PAIR && cols <= limbs.cols);
    assert!(limbs.lanes.len() >= cols.div_ceil(16) * 2 * WORD_LIMBS * 16);
    let whole = cols / 16 * 16;
    let mut totals = [[0i128; 2]; ROW_PAIR];
    const FLUSH: usize = 1 << 10;
    const Q: usize = 2 * WORD_LIMBS;
    for c0 in (0..whole).step_by(FLUSH) {
        let mut acc = [[_mm256_setzero_si256(); Q]; ROW_PAIR];
        for j in (c0..whole.min(c0 + FLUSH)).step_by(16) {
            let x = limbs.lanes.as_ptr().add(j / 16 * Q * 16);
            for half in 0..2 {
                let mut entries = [_mm256_setzero_si256(); ROW_PAIR];
                for (r, e) in entries.iter_mut().enumerate().take(rows) {
                    let at = group.as_ptr().add(r * cols + j + 8 * half);
                    // A prefetch past the end never faults.
                    _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(PREFETCH / 4) as *const i8);
                    *e = _mm256_loadu_si256(at as *const __m256i);
                }
                // The half's even columns are lanes 4·half.. of the limbs' even 8, its odd ones
                // lanes 4·half.. of the odd 8.
                for q in 0..Q {
                    let xe = _mm256_loadu_si256(x.add(q * 16 + 4 * half) as *const __m256i);
                    for r in 0..ROW_PAIR {
                        acc[r][q] = _mm256_add_epi64(acc[r][q], _mm256_mul_epi32(entries[r], xe));
                    }
                }
                for e in entries.iter_mut() {
                    *e = _mm256_srli_epi64::<32>(*e);
                }
                for q in 0..Q {
                    let xo = _mm256_loadu_si256(x.add(q * 16 + 8 + 4 * half) as *const __m256i);
                    for r in 0..ROW_PAIR {
                        acc[r][q] = _mm256_add_epi64(acc[r][q], _mm256_mul_epi32(entries[r], xo));
                    }
                }
            }
        }
        for (total, acc) in totals.iter_mut().zip(acc) {
            add_word_limb_sums(total, acc.map(|a| hsum(a)));
        }
    }
    (0..rows).map(|r| word_limbs_tail(&group[r * cols..(r + 1) * cols], whole, limbs, totals[r])).collect()
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

    /// The two-vector paths against the one-vector reference: lengths around their SIMD blocks
    /// and reduction points, field elements near p, entries at the int8/int32 extremes.
    #[test]
    fn two_vector_paths_match_the_reference() {
        let mut s = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for cols in [1, 15, 16, 17, 63, 64, 65, 1023, 1024, 1025, 2049, 3000, (1 << 19) + 77] {
            let xs: Vec<Vec<u64>> =
                (0..2).map(|v| (0..cols).map(|j| if j % 7 == v { P - 1 } else { next() % P }).collect()).collect();
            let rows = if cols > 5000 { 2 } else { 6 };
            let m8: Vec<i8> = (0..rows * cols).map(|i| if i % 5 == 0 { -128 } else { next() as i8 }).collect();
            let m32: Vec<i32> = (0..rows * cols)
                .map(|i| match i % 5 {
                    0 => i32::MIN,
                    1 => i32::MAX,
                    _ => next() as i32,
                })
                .collect();
            let want8: Vec<Vec<u64>> = xs.iter().map(|x| mat_i8_vec(&m8, rows, cols, x)).collect();
            let want32: Vec<Vec<u64>> = xs.iter().map(|x| mat_i32_vec(&m32, rows, cols, x)).collect();
            assert_eq!(mat_i8_vecs(&m8, rows, cols, &xs), want8, "int8, {cols} columns");
            assert_eq!(mat_i32_vecs(&m32, rows, cols, &xs), want32, "int32, {cols} columns");
        }
        // The worst case for the lanes' reduction points: every entry at its extreme, every
        // element p − 1 (bytes 0xFE, 0xFF…; 21-bit limbs all ones). Without them the int32 lanes
        // overflow past about 2^11 columns and the int8 lanes past about 2^20.
        // And elements whose first three balanced digits are all 32767, the int8 lanes' worst.
        let top_digits = (32767 * (1 + DIGIT_BASE + DIGIT_BASE * DIGIT_BASE)) as u64;
        for (rows, cols, e) in [(6, 3000, P - 1), (1, 1_200_000, P - 1), (1, 1_200_000, top_digits)] {
            let xs = vec![vec![e; cols]; 2];
            let m8 = vec![-128i8; rows * cols];
            let want8: Vec<Vec<u64>> = xs.iter().map(|x| mat_i8_vec(&m8, rows, cols, x)).collect();
            assert_eq!(mat_i8_vecs(&m8, rows, cols, &xs), want8, "int8 extremes, {cols} columns");
            let m32 = vec![i32::MIN; rows * cols];
            let want32: Vec<Vec<u64>> = xs.iter().map(|x| mat_i32_vec(&m32, rows, cols, x)).collect();
            assert_eq!(mat_i32_vecs(&m32, rows, cols, &xs), want32, "int32 extremes, {cols} columns");
        }
        #[cfg(target_arch = "x86_64")]
        if !has_avx512_vnni() {
            eprintln!("skipped: the AVX-512 VNNI and AVX-512 F paths (this CPU lacks them)");
        }
        #[cfg(target_arch = "x86_64")]
        if !has_avx2() {
            eprintln!("skipped: the AVX2 paths (this CPU lacks AVX2)");
        }
    }

    #[test]
    fn reduction_is_the_euclidean_remainder() {
        let mut s = 0x9e37_79b9_7f4a_7c15_u128;
        let edges = [0i128, 1, -1, P as i128, -(P as i128), P as i128 - 1, P as i128 + 1, 1 << 61, -(1 << 61)];
        let randoms = (0..100_000).map(|_| {
            s = s.wrapping_mul(0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645).wrapping_add(1);
            (s as i128) >> (s % 100) as u32
        });
        for v in edges.into_iter().chain([i128::MAX, i128::MIN, i128::MIN + 1]).chain(randoms) {
            assert_eq!(reduce(v), v.rem_euclid(P as i128) as u64, "{v}");
        }
    }

    #[test]
    fn balanced_digits_recombine_and_stay_below_2_to_15() {
        let mut e = 0x0123_4567_89ab_cdefu64 % P;
        let edges = [0, 1, 32767, 32768, 65534, 65535, 65536, P - 1, P - 2, (P - 1) / 2];
        for x in edges.into_iter().chain((0..10_000).map(|_| {
            e = (e.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407)) >> 3;
            e % P
        })) {
            let digits = balanced_digits(x);
            assert!(digits.iter().all(|d| d.unsigned_abs() <= 32767), "{x}: {digits:?}");
            let back: i128 = digits.iter().rev().fold(0, |acc, &d| acc * DIGIT_BASE as i128 + d as i128);
            assert_eq!(back, x as i128);
        }
    }

    /// The buffered draws are the XOF's stream read 8 bytes at a time, so the vectors (and every
    /// verdict) are the ones the check drew before the buffer.
    #[test]
    fn buffered_draws_are_the_stream_in_order() {
        let xof = || blake3::Hasher::new_keyed(&[9; 32]).update(b"ergon/freivalds/v1").finalize_xof();
        let (mut plain, mut draws) = (xof(), Draws::new(xof()));
        for _ in 0..300 {
            let mut want = [0u8; 8];
            plain.fill(&mut want);
            assert_eq!(draws.next(), want);
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
