//! The low-rank noise E = E_L·E_R (m×k) and F = F_L·F_R (k×n), derived from a nonce's seed, and
//! the recovery of A·B from the noisy product.
//!
//! Shapes (r = RANK = 32; docs/pouw.md §3 has the exact byte layout):
//! - E_L ∈ {±1}^{m×r}: row i is a u32 sign mask (bit s set ⇒ −1), bytes 4i..4i+4 of stream "EL".
//! - E_R ∈ {0,±1}^{r×k}: column t holds one ±1, in row sel_E(t); within each block of r columns
//!   sel_E is a permutation (two independent 16-halves), so every step's slice of E has rank r.
//!   Stream "ER", 64 bytes per block.
//! - F_L ∈ {0,±1}^{k×r}: row t holds one ±1 in column sel_F(t), the same way (stream "FL").
//! - F_R ∈ {±1}^{r×n}: column j is a u32 sign mask, bytes 4j..4j+4 of stream "FR".
//!
//! So E[i,t] = ±E_L[i, sel_E(t)] and F[t,j] = ±F_R[sel_F(t), j] are ±1: A+E and B+F stay in int8
//! whenever |A|, |B| ≤ 126. Rows of E_L and columns of F_R are seekable, so a verifier derives
//! only the rows and columns its tile needs.

use std::ops::Range;

use ergon_kernels::gemm::TileMut;
use ergon_kernels::{MatI32, MatI8};
use rayon::prelude::*;

use crate::challenge::Seed;
use crate::params::{MINING_MAX, RANK};

/// A row of E_L or column of F_R: bit s set ⇒ component s is −1.
type Mask = u32;
const MASK_BYTES: usize = RANK / 8;
/// Components per 128-bit lane: a block of RANK inner indices is two independent halves.
const HALF: usize = 16;
use crate::PouwError;

/// One signed selection per inner index: which rank component, and its sign.
///
/// A block of RANK = 32 inner indices is two halves of 16; half h permutes components
/// 16h..16h+16 among its positions. So every block selects each component exactly once (the
/// step's noise has full rank), and a half never leaves its 128-bit lane: one `vpshufb` serves a
/// whole block.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Selection {
    sel: Vec<u8>,
    /// sel mod 16: the index within the 128-bit lane, as `vpshufb` wants it.
    lane_sel: Vec<u8>,
    /// +1 or −1, as i8 (so it can feed `vpsignb` directly).
    sign: Vec<i8>,
    /// For each full block, the in-lane inverse permutation: inv[b][16h + s] = q where
    /// sel[32b + 16h + q] = 16h + s.
    inv: Vec<[u8; RANK]>,
}

impl Selection {
    fn derive(seed: &Seed, label: &str, k: usize) -> Self {
        let mut xof = seed.stream(label);
        let mut sel = Vec::with_capacity(k);
        let mut sign = Vec::with_capacity(k);
        let mut inverse = Vec::new();
        let mut block = [0u8; 2 * RANK];
        for start in (0..k).step_by(RANK) {
            xof.fill(&mut block);
            let mut perm = [0u8; RANK];
            let mut signs = 0u32;
            for (h, bytes) in block.chunks_exact(2 * HALF).enumerate() {
                // Fisher–Yates over 16 with 16-bit draws (bias < 2^-12 per swap, irrelevant here).
                let mut half: [u8; HALF] = std::array::from_fn(|q| q as u8);
                for q in (1..HALF).rev() {
                    let draw = u16::from_le_bytes([bytes[2 * q], bytes[2 * q + 1]]) as usize;
                    half.swap(q, draw % (q + 1));
                }
                for (q, &v) in half.iter().enumerate() {
                    perm[h * HALF + q] = (h * HALF) as u8 + v;
                }
                signs |= (u16::from_le_bytes([bytes[0], bytes[1]]) as u32) << (h * HALF);
            }
            if k - start >= RANK {
                let mut inv = [0u8; RANK];
                perm.iter().enumerate().for_each(|(q, &p)| inv[p as usize] = (q % HALF) as u8);
                inverse.push(inv);
            }
            for (q, &p) in perm.iter().enumerate().take((k - start).min(RANK)) {
                sel.push(p);
                sign.push(if signs >> q & 1 == 1 { -1 } else { 1 });
            }
        }
        let lane_sel = sel.iter().map(|&v| v % HALF as u8).collect();
        Self { sel, lane_sel, sign, inv: inverse }
    }

    /// acc[s] = Σ_t row[t]·sign[t]·[sel[t] = s]: a row times this selection (|row| ≤ 127).
    fn gather(&self, row: &[i8]) -> [i32; RANK] {
        let full = self.inv.len() * RANK;
        #[cfg(target_arch = "x86_64")]
        let mut acc = if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 detected; every block read lies within row[..full] and sign[..full].
            unsafe { self.gather_avx2(&row[..full]) }
        } else {
            self.gather_scalar(&row[..full], 0)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let mut acc = self.gather_scalar(&row[..full], 0);
        let tail = self.gather_scalar(&row[full..], full);
        acc.iter_mut().zip(tail).for_each(|(a, t)| *a += t);
        acc
    }

    fn gather_scalar(&self, row: &[i8], offset: usize) -> [i32; RANK] {
        let mut acc = [0i32; RANK];
        for ((&x, &s), &g) in row.iter().zip(&self.sel[offset..]).zip(&self.sign[offset..]) {
            acc[s as usize] += x as i32 * g as i32;
        }
        acc
    }

    /// Per block of 32: `vpsignb` applies the signs, `vpshufb` with the in-lane inverse
    /// permutation lines each entry up under its rank component (half h in lane h), and i16 lanes
    /// accumulate, flushed to i32 every 128 blocks (128·127 < 2^15, so they never overflow).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn gather_avx2(&self, row: &[i8]) -> [i32; RANK] {
        use std::arch::x86_64::*;
        let blocks = row.len() / RANK;
        assert!(blocks <= self.inv.len() && blocks * RANK <= self.sign.len());
        let mut acc32 = [_mm256_setzero_si256(); 4];
        let (mut acc_lo, mut acc_hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for b in 0..blocks {
            let x = _mm256_loadu_si256(row.as_ptr().add(b * RANK) as *const __m256i);
            let g = _mm256_loadu_si256(self.sign.as_ptr().add(b * RANK) as *const __m256i);
            let p = _mm256_loadu_si256(self.inv[b].as_ptr() as *const __m256i);
            let z = _mm256_shuffle_epi8(_mm256_sign_epi8(x, g), p);
            acc_lo = _mm256_add_epi16(acc_lo, _mm256_cvtepi8_epi16(_mm256_castsi256_si128(z)));
            acc_hi = _mm256_add_epi16(acc_hi, _mm256_cvtepi8_epi16(_mm256_extracti128_si256(z, 1)));
            if b % 128 == 127 || b + 1 == blocks {
                for (q, acc16) in [acc_lo, acc_lo, acc_hi, acc_hi].into_iter().enumerate() {
                    let half =
                        if q % 2 == 0 { _mm256_castsi256_si128(acc16) } else { _mm256_extracti128_si256(acc16, 1) };
                    acc32[q] = _mm256_add_epi32(acc32[q], _mm256_cvtepi16_epi32(half));
                }
                acc_lo = _mm256_setzero_si256();
                acc_hi = _mm256_setzero_si256();
            }
        }
        let mut out = [0i32; RANK];
        for (q, v) in acc32.iter().enumerate() {
            _mm256_storeu_si256(out.as_mut_ptr().add(8 * q) as *mut __m256i, *v);
        }
        out
    }
}

/// Sign masks for a seekable range of rows (E_L) or columns (F_R).
fn masks(seed: &Seed, label: &str, range: Range<usize>) -> Vec<Mask> {
    let mut xof = seed.stream(label);
    xof.set_position(MASK_BYTES as u64 * range.start as u64);
    let mut bytes = vec![0u8; MASK_BYTES * range.len()];
    xof.fill(&mut bytes);
    bytes.chunks_exact(MASK_BYTES).map(|b| Mask::from_le_bytes(b.try_into().expect("mask bytes"))).collect()
}

fn pm1(mask: Mask, s: usize) -> i8 {
    if mask >> s & 1 == 1 {
        -1
    } else {
        1
    }
}

/// E = E_L·E_R and F = F_L·F_R spelled out (over a Noise's row and column ranges).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Factors {
    /// Row i of E_L (±1).
    pub e_l: Vec<[i8; RANK]>,
    /// Column t of E_R: (row holding the ±1, its sign).
    pub e_r: Vec<(u8, i8)>,
    /// Row t of F_L: (column holding the ±1, its sign).
    pub f_l: Vec<(u8, i8)>,
    /// Column j of F_R (±1).
    pub f_r: Vec<[i8; RANK]>,
}

/// The noise restricted to rows `rows` of E and columns `cols` of F (all of k).
pub struct Noise {
    rows: Range<usize>,
    cols: Range<usize>,
    el: Vec<Mask>,
    er: Selection,
    fl: Selection,
    fr: Vec<Mask>,
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

    /// The low-rank factors themselves. Anyone can derive them from the public seed; exposed so
    /// tests and tools can play the adversary who uses them instead of multiplying.
    pub fn factors(&self) -> Factors {
        let signs = |mask: Mask| std::array::from_fn(|s| pm1(mask, s));
        let pairs = |x: &Selection| x.sel.iter().copied().zip(x.sign.iter().copied()).collect();
        Factors {
            e_l: self.el.iter().map(|&mk| signs(mk)).collect(),
            e_r: pairs(&self.er),
            f_l: pairs(&self.fl),
            f_r: self.fr.iter().map(|&mk| signs(mk)).collect(),
        }
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
        let mut out = vec![0i8; a.len()];
        let worst = out
            .par_chunks_mut(k)
            .zip(a.par_chunks(k))
            .zip(self.el.par_iter())
            .map(|((dst, src), &mask)| {
                let lut: [i8; RANK] = std::array::from_fn(|s| pm1(mask, s));
                perturb_row(src, dst, &lut, &self.er)
            })
            .max();
        if worst.unwrap_or(0) > MINING_MAX as u8 {
            return Err(range_error(a, k, "A", self.rows.start));
        }
        Ok(out)
    }

    /// B' = B + F for `b` holding exactly this noise's columns (k rows of cols.len()).
    pub fn perturb_b(&self, b: &[i8]) -> Result<Vec<i8>, PouwError> {
        let width = self.cols.len();
        assert_eq!(b.len(), self.k() * width);
        // Row s of F_R over our columns, and its negation.
        let fr_rows: Vec<Vec<i8>> = (0..RANK).map(|s| self.fr.iter().map(|&m| pm1(m, s)).collect()).collect();
        let mut out = vec![0i8; b.len()];
        let worst = out
            .par_chunks_mut(width)
            .zip(b.par_chunks(width))
            .enumerate()
            .map(|(t, (dst, src))| {
                let (f, sign) = (&fr_rows[self.fl.sel[t] as usize], self.fl.sign[t]);
                for ((d, &x), &y) in dst.iter_mut().zip(src).zip(f) {
                    *d = x.wrapping_add(sign * y);
                }
                src.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0)
            })
            .max();
        if worst.unwrap_or(0) > MINING_MAX as u8 {
            return Err(range_error(b, width, "B", 0));
        }
        Ok(out)
    }

    /// What turns C' = (A+E)(B+F) into A·B: C = C' − G·F_R − E_L·H with G = A·F_L and
    /// H = E_R·(B+F). Costs O(mk + kn) here, because F_L and E_R are signed selections, and
    /// O(mn·2r) when applied. `a` is the original A (entries within ±126, as `perturb_a` checks),
    /// `b_noisy` is B+F, both over this noise's full range.
    pub fn correction(&self, a: &MatI8, b_noisy: &MatI8) -> Correction {
        let (m, k, n) = (a.rows(), a.cols(), b_noisy.cols());
        assert_eq!((m, k, n), (self.rows.len(), self.k(), self.cols.len()));
        let g: Vec<[i32; RANK]> = a.as_slice().par_chunks(k).map(|row| self.fl.gather(row)).collect();
        // Blocks of inner indices in parallel, each adding its signed rows of B+F into rows of
        // a partial H of its own, then the partials summed: every row of B+F is read whole and
        // in order. (Strips of 256 columns read 256 bytes from each row, n bytes apart: at
        // n = 4096 every read was a new page, and building H took 4.7 ms of a 12 ms recovery
        // preparation.)
        let blocks = (2 * rayon::current_num_threads()).clamp(1, k.max(1));
        let rows_per = k.div_ceil(blocks).max(1);
        let add = |mut x: Vec<i32>, y: Vec<i32>| {
            x.iter_mut().zip(&y).for_each(|(a, &b)| *a += b);
            x
        };
        let h: Vec<i32> = b_noisy
            .as_slice()
            .par_chunks(rows_per * n)
            .enumerate()
            .map(|(block, rows)| {
                let mut part = vec![0i32; RANK * n];
                for (i, row) in rows.chunks_exact(n).enumerate() {
                    let t = block * rows_per + i;
                    let dst = &mut part[self.er.sel[t] as usize * n..][..n];
                    if self.er.sign[t] > 0 {
                        dst.iter_mut().zip(row).for_each(|(d, &x)| *d += x as i32);
                    } else {
                        dst.iter_mut().zip(row).for_each(|(d, &x)| *d -= x as i32);
                    }
                }
                part
            })
            .reduce_with(add)
            .unwrap_or_else(|| vec![0i32; RANK * n]);
        // F_R and the tables are stored panel-major (16 columns contiguous per row) so what a
        // tile reads is adjacent; row-major rows n·4 bytes apart would all fall in one L1 set.
        let panels = n.div_ceil(PANEL);
        let mut f_r = vec![0i32; panels * RANK * PANEL];
        for s in 0..RANK {
            for (j, &mk) in self.fr.iter().enumerate() {
                f_r[panel_index(s, j)] = pm1(mk, s) as i32;
            }
        }
        // E_L·H by the method of Four Russians: per panel, group q of 4 components and sign
        // pattern p (bit u set ⇒ component 4q+u is −1), tabulate Σ_u ±H[4q+u][j]. A row of E_L
        // then needs 8 table rows instead of 32 signed terms.
        let mut eh = vec![0i32; panels * GROUPS * PATTERNS * PANEL];
        eh.par_chunks_mut(GROUPS * PATTERNS * PANEL).enumerate().for_each(|(panel, table)| {
            let cols = (n - panel * PANEL).min(PANEL);
            for q in 0..GROUPS {
                for p in 0..PATTERNS {
                    let out = &mut table[(q * PATTERNS + p) * PANEL..][..PANEL];
                    for u in 0..4 {
                        let row = &h[(4 * q + u) * n + panel * PANEL..][..cols];
                        let negative = p >> u & 1 == 1;
                        for (o, &v) in out.iter_mut().zip(row) {
                            *o = if negative { o.wrapping_sub(v) } else { o.wrapping_add(v) };
                        }
                    }
                }
            }
        });
        // G·F_R by Four Russians too, over the rank components of each row of G: per group q
        // and pattern p (bit u set ⇒ F_R[4q+u][j] = −1), Σ_u ±G[i][4q+u]. A column's pattern
        // is a nibble of its F_R mask, so 16 columns look their entries up with one vpermd.
        // Only the SIMD epilogues read them: elsewhere they would be built for nothing.
        let simd = has_avx512f() || has_avx2();
        let gt = if simd { g.par_iter().map(four_russians).collect() } else { Vec::new() };
        // AVX2's vpermd looks up 8 entries, not 16: a pattern with bit 3 set is the complement
        // of one without, whose sum is the negation, T[15 − p] = −T[p]. So per panel, group and
        // column, the entry to look up among the first 8 and the sign to give it, in one word:
        // vpermd reads its low 3 bits, vpsignd its sign (bit 3 set keeps a positive one nonzero).
        let mut fr_lookup = Vec::new();
        if has_avx2() && !has_avx512f() {
            fr_lookup = vec![0i32; panels * GROUPS * PANEL];
            for (j, &mk) in self.fr.iter().enumerate() {
                for q in 0..GROUPS {
                    let (p, at) = (nibble(mk, q) as i32, ((j / PANEL) * GROUPS + q) * PANEL + j % PANEL);
                    fr_lookup[at] = if p & 8 == 0 { p | 8 } else { (15 - p) | i32::MIN };
                }
            }
        }
        Correction { g, f_r, eh, el: self.el.clone(), gt, fr: self.fr.clone(), fr_lookup }
    }

    /// C' → A·B in place (the unfused form of [`Noise::correction`], for tests and tools).
    pub fn recover(&self, a: &MatI8, b_noisy: &MatI8, c: &mut MatI32) {
        let corr = self.correction(a, b_noisy);
        let n = c.cols();
        c.as_mut_slice().par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            corr.apply(TileMut { row0: i, col0: 0, rows: 1, cols: n, c: row, ldc: n });
        });
    }
}

/// Groups of 4 rank components in the Four-Russians tables, and sign patterns per group.
const GROUPS: usize = RANK / 4;
const PATTERNS: usize = 16;

/// The rank-2r correction from the noisy to the true product (see [`Noise::correction`]).
pub struct Correction {
    /// G = A·F_L, one row of r per row of A.
    g: Vec<[i32; RANK]>,
    /// F_R as ±1, r rows of n, panel-major (see [`panel_index`]).
    f_r: Vec<i32>,
    /// Four-Russians tables of H = E_R·(B+F): [panel][group][pattern][16 columns].
    eh: Vec<i32>,
    /// E_L rows as sign masks (bit s set ⇒ −1).
    el: Vec<Mask>,
    /// Per row of G, per group of 4 rank components, the 16 signed sums (see `four_russians`);
    /// empty where the CPU has neither AVX-512 nor AVX2, whose epilogues are the only readers.
    gt: Vec<[[i32; PATTERNS]; GROUPS]>,
    /// F_R's columns as sign masks (bit s set ⇒ F_R[s][j] = −1).
    fr: Vec<Mask>,
    /// For the AVX2 epilogue (empty elsewhere), [panel][group][16 columns]: which of a group's
    /// first 8 patterns the column's F_R nibble p is (p, or 15 − p) in the low 3 bits, and the
    /// sign to give it as the word's sign (bit 3 set when positive, so the word is nonzero).
    fr_lookup: Vec<i32>,
}

/// Whether the AVX2 epilogue can run here: the CPU can run the kernels' AVX2 product.
fn has_avx2() -> bool {
    ergon_kernels::Isa::Avx2.supported()
}

/// Whether the AVX-512 epilogue can run here (and so whether its tables are built).
fn has_avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Per group q of 4 rank components and pattern p (bit u set ⇒ the sign of component 4q+u is
/// −1): Σ_u ±g[4q+u]. Each entry is the one without its lowest set bit, minus twice that
/// component.
fn four_russians(g: &[i32; RANK]) -> [[i32; PATTERNS]; GROUPS] {
    let mut t = [[0i32; PATTERNS]; GROUPS];
    for (q, table) in t.iter_mut().enumerate() {
        let part = &g[4 * q..4 * q + 4];
        table[0] = part.iter().fold(0i32, |a, &v| a.wrapping_add(v));
        for p in 1..PATTERNS {
            let low = p.trailing_zeros() as usize;
            table[p] = table[p & (p - 1)].wrapping_sub(part[low].wrapping_mul(2));
        }
    }
    t
}

impl Correction {
    /// tile[i][j] −= Σ_s G[i][s]·F_R[s][j] + E_L[i][s]·H[s][j]: meant as the product's epilogue.
    pub fn apply(&self, tile: TileMut<'_>) {
        let TileMut { row0, col0, rows, cols, c, ldc } = tile;
        #[cfg(target_arch = "x86_64")]
        if cols == PANEL && col0 % PANEL == 0 && !self.gt.is_empty() && has_avx512f() {
            // SAFETY: AVX-512 F detected; the tile's rows have 16 entries at i·ldc (TileMut's
            // contract), and the tables hold every row of the tile and a whole panel at col0.
            unsafe { self.apply_rows16_avx512(c, ldc, row0, rows, col0) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if cols == PANEL && col0 % PANEL == 0 && !self.fr_lookup.is_empty() && has_avx2() {
            // SAFETY: AVX2 detected; the tile's rows have 16 entries at i·ldc (TileMut's
            // contract), and the tables hold every row of the tile and a whole panel at col0.
            unsafe { self.apply_rows16_avx2(c, ldc, row0, rows, col0) };
            return;
        }
        for i in 0..rows {
            let (g, mask) = (&self.g[row0 + i], self.el[row0 + i]);
            for (jj, v) in c[i * ldc..i * ldc + cols].iter_mut().enumerate() {
                let j = col0 + jj;
                for (s, &gs) in g.iter().enumerate() {
                    *v = v.wrapping_sub(gs.wrapping_mul(self.f_r[panel_index(s, j)]));
                }
                for q in 0..GROUPS {
                    *v = v.wrapping_sub(self.eh[table_index(q, nibble(mask, q), j)]);
                }
            }
        }
    }

    /// `rows` rows × 16 columns on AVX-512: both terms by table lookups, 16 subtractions per row
    /// (the AVX2 form below needs 64 signed terms per row for G·F_R). A VNNI product does 64
    /// multiply-adds per instruction, so this epilogue is a large share of a mining pass.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn apply_rows16_avx512(&self, c: &mut [i32], ldc: usize, row0: usize, rows: usize, col0: usize) {
        use std::arch::x86_64::*;
        let tables = table_index(0, 0, col0);
        assert!(row0 + rows <= self.gt.len() && row0 + rows <= self.el.len() && col0 + PANEL <= self.fr.len());
        assert!(rows == 0 || c.len() >= (rows - 1) * ldc + PANEL);
        assert!(tables + GROUPS * PATTERNS * PANEL <= self.eh.len());
        // Each column's F_R nibble for group q, in the low 4 bits of its lane: what vpermd reads.
        let masks = _mm512_loadu_si512(self.fr.as_ptr().add(col0) as *const __m512i);
        let mut idx = [masks; GROUPS];
        for (q, v) in idx.iter_mut().enumerate() {
            *v = _mm512_srlv_epi32(masks, _mm512_set1_epi32(4 * q as i32));
        }
        for r in 0..rows {
            let (gt, mask) = (&self.gt[row0 + r], self.el[row0 + r]);
            let at = c.as_mut_ptr().add(r * ldc) as *mut __m512i;
            let mut acc = _mm512_loadu_si512(at);
            for q in 0..GROUPS {
                let table = _mm512_loadu_si512(gt[q].as_ptr() as *const __m512i);
                acc = _mm512_sub_epi32(acc, _mm512_permutexvar_epi32(idx[q], table));
                let eh = self.eh.as_ptr().add(tables + (q * PATTERNS + nibble(mask, q)) * PANEL);
                acc = _mm512_sub_epi32(acc, _mm512_loadu_si512(eh as *const __m512i));
            }
            _mm512_storeu_si512(at, acc);
        }
    }

    /// `rows` rows × 16 columns on AVX2, both terms by table lookups like the AVX-512 form: per
    /// group, 8 columns at a time, `vpermd` picks each column's entry among the group's first 8
    /// patterns and `vpsignd` negates it for the complemented ones: 64 vector operations a row
    /// (16 lookups, 16 signs, 32 subtractions) where G·F_R as 32 signed terms and E_L·H took 144.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn apply_rows16_avx2(&self, c: &mut [i32], ldc: usize, row0: usize, rows: usize, col0: usize) {
        use std::arch::x86_64::*;
        let (lookups, tables) = ((col0 / PANEL) * GROUPS * PANEL, table_index(0, 0, col0));
        assert!(row0 + rows <= self.gt.len() && row0 + rows <= self.el.len());
        assert!(lookups + GROUPS * PANEL <= self.fr_lookup.len());
        assert!(rows == 0 || c.len() >= (rows - 1) * ldc + PANEL);
        assert!(tables + GROUPS * PATTERNS * PANEL <= self.eh.len());
        let lookup = self.fr_lookup.as_ptr().add(lookups);
        for r in 0..rows {
            let (gt, mask) = (&self.gt[row0 + r], self.el[row0 + r]);
            let at = c.as_mut_ptr().add(r * ldc);
            let mut acc = [_mm256_loadu_si256(at as *const __m256i), _mm256_loadu_si256(at.add(8) as *const __m256i)];
            for (q, table) in gt.iter().enumerate() {
                let first8 = _mm256_loadu_si256(table.as_ptr() as *const __m256i);
                let eh = self.eh.as_ptr().add(tables + (q * PATTERNS + nibble(mask, q)) * PANEL);
                for (h, acc) in acc.iter_mut().enumerate() {
                    let lane = q * PANEL + 8 * h;
                    let i = _mm256_loadu_si256(lookup.add(lane) as *const __m256i);
                    let gf = _mm256_sign_epi32(_mm256_permutevar8x32_epi32(first8, i), i);
                    *acc = _mm256_sub_epi32(*acc, gf);
                    *acc = _mm256_sub_epi32(*acc, _mm256_loadu_si256(eh.add(8 * h) as *const __m256i));
                }
            }
            _mm256_storeu_si256(at as *mut __m256i, acc[0]);
            _mm256_storeu_si256(at.add(8) as *mut __m256i, acc[1]);
        }
    }
}

/// Columns per panel of the correction's F_R and tables (one microtile's width).
const PANEL: usize = ergon_kernels::gemm::NR;

/// Where entry (s, j) of an r×n matrix lives in panel-major order.
fn panel_index(s: usize, j: usize) -> usize {
    (j / PANEL) * RANK * PANEL + s * PANEL + j % PANEL
}

/// Where the Four-Russians entry (group q, pattern p, column j) lives.
fn table_index(q: usize, p: usize, j: usize) -> usize {
    ((j / PANEL) * GROUPS * PATTERNS + q * PATTERNS + p) * PANEL + j % PANEL
}

/// Bits 4q..4q+4 of a sign mask.
fn nibble(mask: Mask, q: usize) -> usize {
    (mask >> (4 * q)) as usize & 0xf
}

/// Whether every entry of `m` (named `name`: "A" or "B") can be mined on, as a client checks
/// before submitting a job: within ±MINING_MAX, so the ±1 noise leaves it int8.
pub fn check_mining_range(name: &str, m: &MatI8) -> Result<(), PouwError> {
    let x = m.as_slice();
    match x.iter().any(|v| v.unsigned_abs() > MINING_MAX as u8) {
        true => Err(range_error(x, m.cols(), name, 0)),
        false => Ok(()),
    }
}

/// The error for entries outside ±MINING_MAX, naming the first one (only on the failure path).
fn range_error(x: &[i8], cols: usize, name: &str, row0: usize) -> PouwError {
    let pos = x.iter().position(|v| v.unsigned_abs() > MINING_MAX as u8).unwrap_or(0);
    PouwError::OutOfRange(format!(
        "{name}[{}, {}] = {} is outside ±{MINING_MAX}, the range that stays int8 after adding ±1 noise \
         (quantize with --qmax {MINING_MAX})",
        row0 + pos / cols,
        pos % cols,
        x[pos]
    ))
}

/// dst[t] = src[t] + lut[sel[t]]·sign[t] (wrapping; meaningful when |src| ≤ 126); returns max |src|.
fn perturb_row(src: &[i8], dst: &mut [i8], lut: &[i8; RANK], sel: &Selection) -> u8 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 detected; the function bounds every access by the slice lengths.
        return unsafe { perturb_row_avx2(src, dst, lut, sel) };
    }
    perturb_row_scalar(src, dst, lut, &sel.sel, &sel.sign)
}

fn perturb_row_scalar(src: &[i8], dst: &mut [i8], lut: &[i8; RANK], sel: &[u8], sign: &[i8]) -> u8 {
    let mut worst = 0;
    for (((d, &x), &s), &g) in dst.iter_mut().zip(src).zip(sel).zip(sign) {
        *d = x.wrapping_add(lut[s as usize] * g);
        worst = worst.max(x.unsigned_abs());
    }
    worst
}

/// 32 columns = one selection block at a time: `vpshufb` looks up lane h's 16 signs (components
/// 16h..16h+16) for the block's half h, `vpsignb` applies the selection's signs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn perturb_row_avx2(src: &[i8], dst: &mut [i8], lut: &[i8; RANK], sel: &Selection) -> u8 {
    use std::arch::x86_64::*;
    let len = src.len().min(dst.len()).min(sel.lane_sel.len()).min(sel.sign.len());
    let table = _mm256_loadu_si256(lut.as_ptr() as *const __m256i);
    let mut t = 0;
    let mut worst = _mm256_setzero_si256();
    while t + RANK <= len {
        let s = _mm256_loadu_si256(sel.lane_sel.as_ptr().add(t) as *const __m256i);
        let g = _mm256_loadu_si256(sel.sign.as_ptr().add(t) as *const __m256i);
        let x = _mm256_loadu_si256(src.as_ptr().add(t) as *const __m256i);
        let e = _mm256_sign_epi8(_mm256_shuffle_epi8(table, s), g);
        _mm256_storeu_si256(dst.as_mut_ptr().add(t) as *mut __m256i, _mm256_add_epi8(x, e));
        worst = _mm256_max_epu8(worst, _mm256_abs_epi8(x));
        t += RANK;
    }
    let mut lanes = [0u8; 32];
    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, worst);
    let tail = perturb_row_scalar(&src[t..len], &mut dst[t..len], lut, &sel.sel[t..len], &sel.sign[t..len]);
    lanes.into_iter().max().unwrap_or(0).max(tail)
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
            let _ = perturb_row_scalar(&a[i * k..(i + 1) * k], &mut slow, &lut, &noise.er.sel, &noise.er.sign);
            assert_eq!(&fast[i * k..(i + 1) * k], &slow[..]);
            for t in 0..k {
                assert_eq!(fast[i * k + t], a[i * k + t] + noise.e(i, t));
            }
        }
    }

    #[test]
    fn simd_gather_matches_scalar() {
        let k = RANK * 300 + 7; // crosses the i16 flush at 128 blocks, plus a partial block
        let sel = Selection::derive(&seed(6), "FL", k);
        let row: Vec<i8> = (0..k).map(|t| ((t * 89 % 253) as i16 - 126) as i8).collect();
        let full = sel.inv.len() * RANK;
        let mut want = sel.gather_scalar(&row[..full], 0);
        want.iter_mut().zip(sel.gather_scalar(&row[full..], full)).for_each(|(w, t)| *w += t);
        assert_eq!(sel.gather(&row), want);
    }

    #[test]
    fn out_of_range_entries_are_refused_with_their_position() {
        let noise = Noise::derive(&seed(4), 0..2, 3, 0..2);
        let err = noise.perturb_a(&[0, 0, 0, 0, 127, 0]).unwrap_err();
        assert!(err.to_string().contains("A[1, 1] = 127"), "{err}");
        assert!(noise.perturb_b(&[0, -128, 0, 0, 0, 0]).is_err());
        let mut m = MatI8::from_fn(3, 4, |i, _| (i as i8 - 1) * 126).unwrap();
        assert!(check_mining_range("A", &m).is_ok());
        m.set(2, 1, -127);
        assert!(check_mining_range("B", &m).unwrap_err().to_string().contains("B[2, 1] = -127"));
    }

    /// The epilogue as mining applies it, 6×16 tiles at multiples of 16 (the SIMD paths: AVX-512
    /// where the CPU has it, else AVX2) and ragged edge tiles (the scalar path), is exact too.
    #[test]
    fn tiled_recovery_is_exact_on_every_path() {
        for (m, k, n) in [(13, 100, 50), (6, 64, 16), (25, 33, 97)] {
            let a = MatI8::from_fn(m, k, |i, j| ((i * 17 + j * 5) % 253) as i8 / 2).unwrap();
            let b = MatI8::from_fn(k, n, |i, j| ((i * 13 + j * 3) % 251) as i8 / 2).unwrap();
            let noise = Noise::derive(&seed(9), 0..m, k, 0..n);
            let ap = MatI8::from_vec(m, k, noise.perturb_a(a.as_slice()).unwrap()).unwrap();
            let bp = MatI8::from_vec(k, n, noise.perturb_b(b.as_slice()).unwrap()).unwrap();
            let c = matmul_naive(&ap, &bp).unwrap();
            let corr = noise.correction(&a, &bp);
            let want = matmul_naive(&a, &b).unwrap();
            // Tiles 6 rows high (the pair kernels') and 12 (the AVX-512 VNNI kernel's).
            for height in [6, 12] {
                let mut c = c.clone();
                let data = c.as_mut_slice();
                for row0 in (0..m).step_by(height) {
                    for col0 in (0..n).step_by(16) {
                        let (rows, cols) = ((m - row0).min(height), (n - col0).min(16));
                        corr.apply(TileMut { row0, col0, rows, cols, c: &mut data[row0 * n + col0..], ldc: n });
                    }
                }
                assert_eq!(c, want, "{m}x{k}x{n}, tiles {height} high");
            }
        }
    }

    #[test]
    fn recovery_is_exact() {
        for (m, k, n) in [(1, 1, 1), (7, 13, 5), (31, 100, 45), (5, 32 * 130 + 5, 7)] {
            let a = MatI8::from_fn(m, k, |i, j| ((i * 31 + j * 7) % 253) as i8 / 2).unwrap();
            let b = MatI8::from_fn(k, n, |i, j| ((i * 11 + j * 5) % 251) as i8 / 2).unwrap();
            let noise = Noise::derive(&seed(5), 0..m, k, 0..n);
            let ap = MatI8::from_vec(m, k, noise.perturb_a(a.as_slice()).unwrap()).unwrap();
            let bp = MatI8::from_vec(k, n, noise.perturb_b(b.as_slice()).unwrap()).unwrap();
            let mut c = matmul_naive(&ap, &bp).unwrap();
            noise.recover(&a, &bp, &mut c);
            assert_eq!(c, matmul_naive(&a, &b).unwrap());
        }
    }
}
