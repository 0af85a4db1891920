//! The low-rank noise E = E_L·E_R (m×k) and F = F_L·F_R (k×n), derived from a nonce's seed, and
//! the recovery of A·B from the noisy product.
//!
//! Shapes (r = RANK = 16):
//! - E_L ∈ {±1}^{m×r}: row i is a u16 sign mask (bit s set ⇒ −1), bytes 2i..2i+2 of stream "EL".
//! - E_R ∈ {0,±1}^{r×k}: column t holds one ±1, in row sel_E(t); within each block of r columns
//!   sel_E is a permutation, so every step's slice of E has rank r. Stream "ER", 32 bytes/block.
//! - F_L ∈ {0,±1}^{k×r}: row t holds one ±1 in column sel_F(t), permutation per block (stream "FL").
//! - F_R ∈ {±1}^{r×n}: column j is a u16 sign mask, bytes 2j..2j+2 of stream "FR".
//!
//! So E[i,t] = ±E_L[i, sel_E(t)] and F[t,j] = ±F_R[sel_F(t), j] are ±1: A+E and B+F stay in int8
//! whenever |A|, |B| ≤ 126. Rows of E_L and columns of F_R are seekable, so a verifier derives
//! only the rows and columns its tile needs.

use std::ops::Range;

use ergon_kernels::gemm::{gemm_into, GemmOptions};
use ergon_kernels::{MatI32, MatI8};
use rayon::prelude::*;

use crate::challenge::Seed;
use crate::params::{MINING_MAX, RANK};
use crate::PouwError;

/// One signed selection per inner index: which rank component, and its sign.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Selection {
    sel: Vec<u8>,
    /// +1 or −1, as i8 (so it can feed `vpsignb` directly).
    sign: Vec<i8>,
}

impl Selection {
    fn derive(seed: &Seed, label: &str, k: usize) -> Self {
        let mut xof = seed.stream(label);
        let (mut sel, mut sign) = (Vec::with_capacity(k), Vec::with_capacity(k));
        let mut block = [0u8; 2 * RANK];
        for start in (0..k).step_by(RANK) {
            xof.fill(&mut block);
            // Fisher–Yates with 16-bit draws (bias < 2^-12 per swap, irrelevant to security).
            let mut perm: [u8; RANK] = std::array::from_fn(|s| s as u8);
            for s in (1..RANK).rev() {
                let draw = u16::from_le_bytes([block[2 * s], block[2 * s + 1]]) as usize;
                perm.swap(s, draw % (s + 1));
            }
            let signs = u16::from_le_bytes([block[0], block[1]]);
            for (s, &p) in perm.iter().enumerate().take((k - start).min(RANK)) {
                sel.push(p);
                sign.push(if signs >> s & 1 == 1 { -1 } else { 1 });
            }
        }
        Self { sel, sign }
    }
}

/// Sign masks for a seekable range of rows (E_L) or columns (F_R).
fn masks(seed: &Seed, label: &str, range: Range<usize>) -> Vec<u16> {
    let mut xof = seed.stream(label);
    xof.set_position(2 * range.start as u64);
    let mut bytes = vec![0u8; 2 * range.len()];
    xof.fill(&mut bytes);
    bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect()
}

fn pm1(mask: u16, s: usize) -> i8 {
    if mask >> s & 1 == 1 {
        -1
    } else {
        1
    }
}

/// The noise restricted to rows `rows` of E and columns `cols` of F (all of k).
pub struct Noise {
    rows: Range<usize>,
    cols: Range<usize>,
    el: Vec<u16>,
    er: Selection,
    fl: Selection,
    fr: Vec<u16>,
}

impl Noise {
    pub fn derive(seed: &Seed, rows: Range<usize>, k: usize, cols: Range<usize>) -> Self {
        Self {
            el: masks(seed, "EL", rows.clone()),
            fr: masks(seed, "FR", cols.clone()),
            er: Selection::derive(seed, "ER", k),
            fl: Selection::derive(seed, "FL", k),
            rows,
            cols,
        }
    }

    fn k(&self) -> usize {
        self.er.sel.len()
    }

    /// E[i, t] for a row i in range (reference form; the perturbation below is the fast path).
    pub fn e(&self, i: usize, t: usize) -> i8 {
        pm1(self.el[i - self.rows.start], self.er.sel[t] as usize) * self.er.sign[t]
    }

    /// F[t, j] for a column j in range.
    pub fn f(&self, t: usize, j: usize) -> i8 {
        pm1(self.fr[j - self.cols.start], self.fl.sel[t] as usize) * self.fl.sign[t]
    }

    /// A' = A + E for `a` holding exactly this noise's rows (row-major, k columns).
    pub fn perturb_a(&self, a: &[i8]) -> Result<Vec<i8>, PouwError> {
        let k = self.k();
        assert_eq!(a.len(), self.rows.len() * k);
        check_range(a, k, "A", self.rows.start)?;
        let mut out = vec![0i8; a.len()];
        out.par_chunks_mut(k).zip(a.par_chunks(k)).zip(self.el.par_iter()).for_each(|((dst, src), &mask)| {
            let lut: [i8; RANK] = std::array::from_fn(|s| pm1(mask, s));
            perturb_row(src, dst, &lut, &self.er.sel, &self.er.sign);
        });
        Ok(out)
    }

    /// B' = B + F for `b` holding exactly this noise's columns (k rows of cols.len()).
    pub fn perturb_b(&self, b: &[i8]) -> Result<Vec<i8>, PouwError> {
        let width = self.cols.len();
        assert_eq!(b.len(), self.k() * width);
        check_range(b, width, "B", 0)?;
        // Row s of F_R over our columns, and its negation.
        let fr_rows: Vec<Vec<i8>> = (0..RANK).map(|s| self.fr.iter().map(|&m| pm1(m, s)).collect()).collect();
        let mut out = vec![0i8; b.len()];
        out.par_chunks_mut(width).zip(b.par_chunks(width)).enumerate().for_each(|(t, (dst, src))| {
            let (f, sign) = (&fr_rows[self.fl.sel[t] as usize], self.fl.sign[t]);
            for ((d, &x), &y) in dst.iter_mut().zip(src).zip(f) {
                *d = x + sign * y;
            }
        });
        Ok(out)
    }

    /// Turns C' = (A+E)(B+F) into A·B in place: C' − A·F − E·(B+F), at O((m+n)·k·r + m·n·r) cost.
    /// `a` is the original A, `b_noisy` is B+F; both span this noise's full rows and columns.
    pub fn recover(&self, a: &MatI8, b_noisy: &MatI8, c: &mut MatI32) -> Result<(), PouwError> {
        let (m, k, n) = (a.rows(), a.cols(), b_noisy.cols());
        // G = A·F_L (m×r) and H = E_R·(B+F) (r×n) through the int8 kernel: F_L and E_R are
        // signed selection matrices, so these are thin products of r columns / rows.
        let f_l = MatI8::from_fn(k, RANK, |t, s| if self.fl.sel[t] as usize == s { self.fl.sign[t] } else { 0 })?;
        let e_r = MatI8::from_fn(RANK, k, |s, t| if self.er.sel[t] as usize == s { self.er.sign[t] } else { 0 })?;
        let mut g = MatI32::zeros(m, RANK)?;
        gemm_into(a, &f_l, &mut g, None, GemmOptions::default())?;
        let mut h = MatI32::zeros(RANK, n)?;
        gemm_into(&e_r, b_noisy, &mut h, None, GemmOptions::default())?;
        // C −= G·F_R + E_L·H, row by row; F_R and E_L are ±1.
        let fr_rows: Vec<Vec<i32>> = (0..RANK).map(|s| self.fr.iter().map(|&mk| pm1(mk, s) as i32).collect()).collect();
        c.as_mut_slice().par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            let el = self.el[i];
            for (s, fr_row) in fr_rows.iter().enumerate() {
                let gs = g.get(i, s);
                for (v, &f) in row.iter_mut().zip(fr_row) {
                    *v = v.wrapping_sub(gs.wrapping_mul(f));
                }
                let hs = h.row(s);
                if el >> s & 1 == 1 {
                    row.iter_mut().zip(hs).for_each(|(v, &x)| *v = v.wrapping_add(x));
                } else {
                    row.iter_mut().zip(hs).for_each(|(v, &x)| *v = v.wrapping_sub(x));
                }
            }
        });
        Ok(())
    }
}

/// Refuses entries outside ±MINING_MAX, naming the first one.
fn check_range(x: &[i8], cols: usize, name: &str, row0: usize) -> Result<(), PouwError> {
    let worst = x.par_chunks(1 << 16).map(|c| c.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0)).max();
    if worst.unwrap_or(0) <= MINING_MAX as u8 {
        return Ok(());
    }
    let pos = x.iter().position(|v| v.unsigned_abs() > MINING_MAX as u8).unwrap_or(0);
    Err(PouwError::OutOfRange(format!(
        "{name}[{}, {}] = {} is outside ±{MINING_MAX}, the range that stays int8 after adding ±1 noise \
         (quantize with --qmax {MINING_MAX})",
        row0 + pos / cols,
        pos % cols,
        x[pos]
    )))
}

/// dst[t] = src[t] + lut[sel[t]]·sign[t].
fn perturb_row(src: &[i8], dst: &mut [i8], lut: &[i8; RANK], sel: &[u8], sign: &[i8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 detected; the function bounds every access by the slice lengths.
        unsafe { perturb_row_avx2(src, dst, lut, sel, sign) };
        return;
    }
    perturb_row_scalar(src, dst, lut, sel, sign);
}

fn perturb_row_scalar(src: &[i8], dst: &mut [i8], lut: &[i8; RANK], sel: &[u8], sign: &[i8]) {
    for (((d, &x), &s), &g) in dst.iter_mut().zip(src).zip(sel).zip(sign) {
        *d = x + lut[s as usize] * g;
    }
}

/// `vpshufb` looks the 16-entry LUT up for 32 columns at once; `vpsignb` applies the signs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn perturb_row_avx2(src: &[i8], dst: &mut [i8], lut: &[i8; RANK], sel: &[u8], sign: &[i8]) {
    use std::arch::x86_64::*;
    let len = src.len().min(dst.len()).min(sel.len()).min(sign.len());
    let table = _mm256_broadcastsi128_si256(_mm_loadu_si128(lut.as_ptr() as *const __m128i));
    let mut t = 0;
    while t + 32 <= len {
        let s = _mm256_loadu_si256(sel.as_ptr().add(t) as *const __m256i);
        let g = _mm256_loadu_si256(sign.as_ptr().add(t) as *const __m256i);
        let x = _mm256_loadu_si256(src.as_ptr().add(t) as *const __m256i);
        let e = _mm256_sign_epi8(_mm256_shuffle_epi8(table, s), g);
        _mm256_storeu_si256(dst.as_mut_ptr().add(t) as *mut __m256i, _mm256_add_epi8(x, e));
        t += 32;
    }
    perturb_row_scalar(&src[t..len], &mut dst[t..len], lut, &sel[t..len], &sign[t..len]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ergon_kernels::reference::matmul_naive;

    fn seed(x: u8) -> Seed {
        Seed([x; 32])
    }

    #[test]
    fn noise_is_low_rank_bounded_and_sliceable() {
        let (m, k, n) = (30, 70, 40);
        let full = Noise::derive(&seed(1), 0..m, k, 0..n);
        let part = Noise::derive(&seed(1), 24..30, k, 32..40);
        for i in 24..30 {
            for t in 0..k {
                assert_eq!(full.e(i, t), part.e(i, t));
            }
        }
        for t in 0..k {
            for j in 32..40 {
                assert_eq!(full.f(t, j), part.f(t, j));
            }
        }
        // Every block of RANK inner indices selects each rank component exactly once.
        for block in full.er.sel.chunks_exact(RANK).chain(full.fl.sel.chunks_exact(RANK)) {
            let mut seen = [false; RANK];
            block.iter().for_each(|&s| seen[s as usize] = true);
            assert!(seen.iter().all(|&x| x));
        }
        // E has at most RANK distinct columns up to sign; different seeds give different noise.
        let other = Noise::derive(&seed(2), 0..m, k, 0..n);
        assert!((0..m).any(|i| (0..k).any(|t| full.e(i, t) != other.e(i, t))));
    }

    #[test]
    fn perturbation_matches_the_definition_on_both_paths() {
        let (m, k) = (5, 77);
        let noise = Noise::derive(&seed(3), 0..m, k, 0..3);
        let a: Vec<i8> = (0..m * k).map(|x| ((x * 37) % 253) as i8 / 2).collect();
        let fast = noise.perturb_a(&a).unwrap();
        for i in 0..m {
            let lut: [i8; RANK] = std::array::from_fn(|s| pm1(noise.el[i], s));
            let mut slow = vec![0i8; k];
            perturb_row_scalar(&a[i * k..(i + 1) * k], &mut slow, &lut, &noise.er.sel, &noise.er.sign);
            assert_eq!(&fast[i * k..(i + 1) * k], &slow[..]);
            for t in 0..k {
                assert_eq!(fast[i * k + t], a[i * k + t] + noise.e(i, t));
            }
        }
    }

    #[test]
    fn out_of_range_entries_are_refused_with_their_position() {
        let noise = Noise::derive(&seed(4), 0..2, 3, 0..2);
        let err = noise.perturb_a(&[0, 0, 0, 0, 127, 0]).unwrap_err();
        assert!(err.to_string().contains("A[1, 1] = 127"), "{err}");
        assert!(noise.perturb_b(&[0, -128, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn recovery_is_exact() {
        for (m, k, n) in [(1, 1, 1), (7, 13, 5), (31, 100, 45)] {
            let a = MatI8::from_fn(m, k, |i, j| ((i * 31 + j * 7) % 253) as i8 / 2).unwrap();
            let b = MatI8::from_fn(k, n, |i, j| ((i * 11 + j * 5) % 251) as i8 / 2).unwrap();
            let noise = Noise::derive(&seed(5), 0..m, k, 0..n);
            let ap = MatI8::from_vec(m, k, noise.perturb_a(a.as_slice()).unwrap()).unwrap();
            let bp = MatI8::from_vec(k, n, noise.perturb_b(b.as_slice()).unwrap()).unwrap();
            let mut c = matmul_naive(&ap, &bp).unwrap();
            noise.recover(&a, &bp, &mut c).unwrap();
            assert_eq!(c, matmul_naive(&a, &b).unwrap());
        }
    }
}
