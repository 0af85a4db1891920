//! The VNNI kernels: `vpdpbusd` does four int8 multiply-adds per 32-bit lane in one instruction
//! (64 per zmm with AVX-512 VNNI, 32 per ymm with AVX-VNNI), where the AVX2 kernel needs a
//! `vpmaddwd` and a `vpaddd` for two.
//!
//! **Exact for every int8 input.** `vpdpbusd` multiplies unsigned bytes by signed bytes, so A is
//! packed shifted, A + 128 ∈ [0, 255] (exact for −128 too). The accumulators then hold
//! A·B + 128·Σ_t B[t][j]. B's packing carries, for every fold step of its k-panel, 128 × its column
//! sums over that step, and the kernel subtracts them at the step's end. So at every fold point the
//! accumulators hold exactly the prefix sums that the normative fold (`fold::fold_tile`) is defined
//! on, and the transcript is bit-identical to the portable kernel's. The arithmetic wraps
//! modulo 2³², and [`super::check_exact`] guarantees that every true prefix sum fits in an i32, so
//! a wrapped intermediate (possible: A + 128 can reach 255) still lands on the exact value.
//!
//! **Padding.** Padded rows of A are packed as 128 (A = 0), padded columns and depths of B as 0.
//! After the correction they are exactly 0, as in the portable kernel, so edge microtiles fold
//! the same zeros.
//!
//! **Register tiles.** AVX-512: 12 rows × 32 columns (24 zmm accumulators, four 6×16 microtiles
//! of the fold). AVX-VNNI: 6 × 16 (12 ymm: one microtile; these CPUs have 16 vector registers).
//! A fold step is a multiple of four k-steps (a `vpdpbusd` quad); the driver sends a transcript
//! whose depth is not a multiple of 4 to the AVX2 kernel instead.

use std::arch::x86_64::*;
use std::ops::Range;
use std::sync::atomic::Ordering;

use rayon::prelude::*;

use super::fold::FoldState;
use super::{BlockOut, TileMut, View, KC, MC, MR, NR};

/// A VNNI register tile: rows × columns, whole 6×16 microtiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tile {
    /// AVX-512 VNNI: 12 × 32.
    Zmm12x32,
    /// AVX-VNNI: 6 × 16.
    Ymm6x16,
}

impl Tile {
    const fn mr(self) -> usize {
        match self {
            Tile::Zmm12x32 => 12,
            Tile::Ymm6x16 => 6,
        }
    }
    const fn nr(self) -> usize {
        match self {
            Tile::Zmm12x32 => 32,
            Tile::Ymm6x16 => 16,
        }
    }
}

/// Depth of one packed k-panel here. Deep panels matter: each k-panel loads and stores every C
/// tile once more, and C's rows sit `n` i32s apart, at power-of-two strides the same L1 set. At
/// 2048³ on Zen 5, panels of 2048 ran 1.2–1.3× faster than panels of 256; the A panel (96 × 2048
/// bytes) and a B micro-panel (2048 × 32) stream from L2, which keeps up.
const KV: usize = 2048;

const _: () = assert!(MC.is_multiple_of(24) && KV.is_multiple_of(KC) && KC.is_multiple_of(4));

/// One product on a VNNI kernel.
pub(super) type Product<'a> = super::Product<'a, Tile>;

/// B packed for the kernel: per k-panel, per micro-panel of `nr` columns, per quad of k-steps,
/// the `nr` columns' 4 bytes each (32-column micro-panels in lane order, see [`lane32`]); and
/// per (k-panel, micro-panel, fold step) the correction 128 · Σ_{t in step} B[t][j] for the `nr`
/// columns, in the same order.
struct PackedB {
    data: Vec<i8>,
    corr: Vec<i32>,
    /// Micro-panels per k-panel, and k-steps per correction step.
    panels: usize,
    step: usize,
}

/// One micro-panel of one k-panel being packed: (k-panel start, micro-panel, its bytes, its
/// corrections).
type PanelChunk<'a> = (usize, usize, &'a mut [i8], &'a mut [i32]);

impl PackedB {
    /// All of B (k × n), packed by every thread.
    fn new(b: &[i8], k: usize, n: usize, nr: usize, step: usize) -> PackedB {
        let mut packed = PackedB { data: Vec::new(), corr: Vec::new(), panels: 0, step };
        packed.pack(b, n, (0..k, 0..n), nr, true);
        packed
    }

    /// Packs rows × cols of B (row-major, rows `ld` apart) in place of what this held, reusing
    /// its buffers: its k-panel `pc` and micro-panel `jp` are then those of the block.
    fn pack(&mut self, b: &[i8], ld: usize, (rows, cols): (Range<usize>, Range<usize>), nr: usize, parallel: bool) {
        let (k, n, step) = (rows.len(), cols.len(), self.step);
        let panels = n.div_ceil(nr);
        let quads = |kc: usize| kc.div_ceil(4);
        let steps = |kc: usize| kc.div_ceil(step);
        let data_len: usize = (0..k).step_by(KV).map(|pc| quads((k - pc).min(KV)) * 4 * nr * panels).sum();
        let corr_len: usize = (0..k).step_by(KV).map(|pc| steps((k - pc).min(KV)) * nr * panels).sum();
        // Zeroed: padding past k and n must be 0, and the corrections are sums.
        self.data.clear();
        self.data.resize(data_len, 0);
        self.corr.clear();
        self.corr.resize(corr_len, 0);
        self.panels = panels;
        let mut chunks: Vec<PanelChunk<'_>> = Vec::new();
        let (mut rest, mut rest_corr) = (self.data.as_mut_slice(), self.corr.as_mut_slice());
        for pc in (0..k).step_by(KV) {
            let kc = (k - pc).min(KV);
            for jp in 0..panels {
                let (head, tail) = rest.split_at_mut(quads(kc) * 4 * nr);
                let (chead, ctail) = rest_corr.split_at_mut(steps(kc) * nr);
                chunks.push((pc, jp, head, chead));
                (rest, rest_corr) = (tail, ctail);
            }
        }
        // Quad q (k-steps 4q..4q+4) of micro-panel jp of the k-panel at pc: four rows into each
        // column's 4 bytes, and the step's column sums in the same pass; 16 columns per SIMD
        // group, the rest (a ragged right edge) one by one.
        // `sums` are the quad's step's nr corrections.
        let pack_natural = |pc: usize, jp: usize, q: usize, quad: &mut [i8], sums: &mut [i32]| {
            let kc = (k - pc).min(KV);
            let c0 = cols.start + jp * nr;
            let width = (cols.end - c0).min(nr);
            let row = |t: usize| -> &[i8] {
                if t < kc {
                    let at = (rows.start + pc + t) * ld + c0;
                    &b[at..at + width]
                } else {
                    &[]
                }
            };
            let t = 4 * q;
            let rows = [row(t), row(t + 1), row(t + 2), row(t + 3)];
            let full = if rows.iter().all(|r| r.len() == width) { width / 16 * 16 } else { 0 };
            for j0 in (0..full).step_by(16) {
                let group: [&[i8]; 4] = rows.map(|r| &r[j0..j0 + 16]);
                // SAFETY: SSSE3 is part of every CPU the VNNI kernels run on (they need AVX2);
                // the slices are 16 bytes and the outputs 64 bytes and 16 sums.
                unsafe { interleave16(group, &mut quad[4 * j0..4 * j0 + 64], &mut sums[j0..j0 + 16]) };
            }
            for j in full..width {
                let v = [0, 1, 2, 3].map(|u| rows[u].get(j).copied().unwrap_or(0));
                quad[4 * j..4 * j + 4].copy_from_slice(&v);
                sums[j] += 128 * (v[0] as i32 + v[1] as i32 + v[2] as i32 + v[3] as i32);
            }
        };
        // 32-column micro-panels are packed in lane order (`lane32`): whole quads by
        // `interleave32`, ragged ones in column order first.
        let pack_quad = |pc: usize, jp: usize, q: usize, quad: &mut [i8], corr: &mut [i32]| {
            let at = (4 * q / step) * nr;
            if nr != 32 {
                return pack_natural(pc, jp, q, quad, &mut corr[at..at + nr]);
            }
            let kc = (k - pc).min(KV);
            let c0 = cols.start + jp * nr;
            if 4 * q + 4 <= kc && c0 + 32 <= cols.end {
                let from = (rows.start + pc + 4 * q) * ld + c0;
                let four = [0, 1, 2, 3].map(|u| &b[from + u * ld..from + u * ld + 32]);
                // SAFETY: 32-column micro-panels are the AVX-512 VNNI kernel's, chosen only
                // where the CPU has AVX2, AVX-512 VL and VNNI; the rows hold 32 bytes, the quad
                // 128 and the sums 32.
                unsafe { interleave32(four, quad, &mut corr[at..at + 32]) };
                return;
            }
            let (mut natural, mut sums) = ([0i8; 128], [0i32; 32]);
            pack_natural(pc, jp, q, &mut natural, &mut sums);
            for j in 0..32 {
                let lane = lane32(j);
                quad[4 * lane..4 * lane + 4].copy_from_slice(&natural[4 * j..4 * j + 4]);
                corr[at + lane] += sums[j];
            }
        };
        // Four rows of B at a time across a group of micro-panels (up to 256 columns), so each
        // row is read as one sequential run: micro-panel by micro-panel, the reads were 32 bytes
        // from each of 2048 rows n bytes apart, DRAM misses the prefetcher could not follow (a
        // quarter of a 256×4096×4096 product). The rows 8 quads on are prefetched line by line
        // while these pack.
        let pack_group = |group: &mut [PanelChunk<'_>]| {
            let Some(&(pc, jp_first, _, _)) = group.first() else { return };
            let kc = (k - pc).min(KV);
            let lo = cols.start + jp_first * nr;
            let hi = (lo + group.len() * nr).min(cols.end);
            let width = hi - lo;
            // Whole 32-column micro-panels and whole quads: the four rows are sliced once per
            // quad for the whole group and the step of their sums found once (per micro-panel,
            // that bookkeeping was a third of the packing: 1.04–1.06× on 256×4096×4096).
            let whole = if nr == 32 && width == group.len() * 32 { kc / 4 } else { 0 };
            for q in 0..quads(kc) {
                for t in 4 * (q + 8)..(4 * (q + 9)).min(kc) {
                    let row = (rows.start + pc + t) * ld;
                    for at in (row + lo..row + hi).step_by(64) {
                        // SAFETY: a prefetch reads nothing and never faults; `at` is in B.
                        unsafe { _mm_prefetch::<_MM_HINT_T0>(b.as_ptr().add(at)) };
                    }
                }
                if q < whole {
                    let at = (rows.start + pc + 4 * q) * ld + lo;
                    let four = [0, 1, 2, 3].map(|u| &b[at + u * ld..at + u * ld + width]);
                    let sums = (4 * q / step) * 32;
                    for (g, (_, _, dst, corr)) in group.iter_mut().enumerate() {
                        let rows = four.map(|r| &r[32 * g..32 * g + 32]);
                        // SAFETY: as in `pack_quad`'s 32-column case: the AVX-512 VNNI kernel's
                        // micro-panels; 32 bytes per row, a 128-byte quad and 32 sums.
                        unsafe { interleave32(rows, &mut dst[q * 128..q * 128 + 128], &mut corr[sums..sums + 32]) };
                    }
                    continue;
                }
                for (pc, jp, dst, corr) in group.iter_mut() {
                    pack_quad(*pc, *jp, q, &mut dst[q * 4 * nr..(q + 1) * 4 * nr], corr);
                }
            }
        };
        // Chunks run k-panel by k-panel, micro-panel by micro-panel: groups never span two
        // k-panels because each k-panel's micro-panels are cut into groups of their own.
        let per_group = (256 / nr).max(1);
        let mut groups: Vec<&mut [PanelChunk<'_>]> = Vec::new();
        let mut rest = chunks.as_mut_slice();
        while !rest.is_empty() {
            let (pc, jp) = (rest[0].0, rest[0].1);
            let len = rest.iter().take_while(|c| c.0 == pc && c.1 < jp + per_group).count();
            let (head, tail) = rest.split_at_mut(len);
            groups.push(head);
            rest = tail;
        }
        if parallel {
            groups.into_par_iter().for_each(pack_group);
        } else {
            groups.into_iter().for_each(pack_group);
        }
    }

    /// The micro-panel `jp` of the k-panel at `pc` and its corrections.
    fn panel(&self, pc: usize, jp: usize, k: usize, nr: usize) -> (&[i8], &[i32]) {
        let kc = (k - pc).min(KV);
        let (quads, steps) = (kc.div_ceil(4), kc.div_ceil(self.step));
        // Every earlier k-panel is full.
        let (full_quads, full_steps) = (KV / 4, KV / self.step);
        let before = pc / KV;
        let data0 = before * full_quads * 4 * nr * self.panels + jp * quads * 4 * nr;
        let corr0 = before * full_steps * nr * self.panels + jp * steps * nr;
        (&self.data[data0..data0 + quads * 4 * nr], &self.corr[corr0..corr0 + steps * nr])
    }
}

/// Where column j (0..32) of a 32-column micro-panel sits in its packed quads and corrections:
/// the middle two groups of 8 trade places, so the AVX-512 kernel's first accumulator of a row
/// holds columns 0..8 and 16..24 (both microtiles' fold_tile v_2r) and its second 8..16 and
/// 24..32 (both v_2r+1), which the fold then takes as they are.
const fn lane32(j: usize) -> usize {
    match j / 8 {
        1 => j + 8,
        2 => j - 8,
        _ => j,
    }
}

/// [`interleave16`] on 32 columns (a whole zmm micro-panel) with 256-bit registers, for the
/// AVX-512 VNNI kernel: 32 instructions where two 16-column calls take about 80; B's packing is
/// a fifth of a skinny product. Each column's sum is one `vpdpbusd` of its four bytes by 128s
/// into the sums (exactly 128 · Σ, as the correction needs); `vpmaddubsw`, `vpmaddwd` and a
/// shift took 24 of 44 instructions.
///
/// # Safety
/// The CPU must have AVX2, AVX-512 VL and AVX-512 VNNI. Each row holds 32 bytes, `out` 128 and
/// `sums` 32.
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
unsafe fn interleave32(rows: [&[i8]; 4], out: &mut [i8], sums: &mut [i32]) {
    assert!(rows.iter().all(|r| r.len() >= 32) && out.len() >= 128 && sums.len() >= 32);
    let load = |r: &[i8]| _mm256_loadu_si256(r.as_ptr() as *const __m256i);
    let (r0, r1, r2, r3) = (load(rows[0]), load(rows[1]), load(rows[2]), load(rows[3]));
    // Within each 128-bit lane L, as in interleave16: q_g holds columns 16L + 4g .. 16L + 4g + 4.
    let (p01_lo, p01_hi) = (_mm256_unpacklo_epi8(r0, r1), _mm256_unpackhi_epi8(r0, r1));
    let (p23_lo, p23_hi) = (_mm256_unpacklo_epi8(r2, r3), _mm256_unpackhi_epi8(r2, r3));
    let (q0, q1) = (_mm256_unpacklo_epi16(p01_lo, p23_lo), _mm256_unpackhi_epi16(p01_lo, p23_lo));
    let (q2, q3) = (_mm256_unpacklo_epi16(p01_hi, p23_hi), _mm256_unpackhi_epi16(p01_hi, p23_hi));
    // Columns in order: 0..8 are the low lanes of q0 and q1, 8..16 of q2 and q3, then the highs.
    let columns = [
        _mm256_permute2x128_si256::<0x20>(q0, q1),
        _mm256_permute2x128_si256::<0x20>(q2, q3),
        _mm256_permute2x128_si256::<0x31>(q0, q1),
        _mm256_permute2x128_si256::<0x31>(q2, q3),
    ];
    // Unsigned 128 times each signed byte, four to a lane: |Σ| ≤ 4 · 128 · 128, no overflow.
    let by128 = _mm256_set1_epi8(-128);
    for (g, v) in columns.into_iter().enumerate() {
        // Columns 8g.. go to lanes lane32(8g)..: the middle two groups of 8 trade places.
        let lane = lane32(8 * g);
        _mm256_storeu_si256(out.as_mut_ptr().add(4 * lane) as *mut __m256i, v);
        let at = sums.as_mut_ptr().add(lane) as *mut __m256i;
        _mm256_storeu_si256(at, _mm256_dpbusd_epi32(_mm256_loadu_si256(at), by128, v));
    }
}

/// 16 columns of four rows into 16 groups of 4 bytes (column j: its bytes from rows 0..4), and
/// 128 × each column's sum of the four added to `sums`.
///
/// # Safety
/// The CPU must have SSSE3. Each row holds 16 bytes, `out` 64 and `sums` 16.
#[target_feature(enable = "ssse3")]
unsafe fn interleave16(rows: [&[i8]; 4], out: &mut [i8], sums: &mut [i32]) {
    assert!(rows.iter().all(|r| r.len() >= 16) && out.len() >= 64 && sums.len() >= 16);
    let load = |r: &[i8]| _mm_loadu_si128(r.as_ptr() as *const __m128i);
    let (r0, r1, r2, r3) = (load(rows[0]), load(rows[1]), load(rows[2]), load(rows[3]));
    // (r0, r1) and (r2, r3) byte pairs, then pairs of pairs: each 32-bit lane is one column.
    let (p01_lo, p01_hi) = (_mm_unpacklo_epi8(r0, r1), _mm_unpackhi_epi8(r0, r1));
    let (p23_lo, p23_hi) = (_mm_unpacklo_epi8(r2, r3), _mm_unpackhi_epi8(r2, r3));
    let quads = [
        _mm_unpacklo_epi16(p01_lo, p23_lo),
        _mm_unpackhi_epi16(p01_lo, p23_lo),
        _mm_unpacklo_epi16(p01_hi, p23_hi),
        _mm_unpackhi_epi16(p01_hi, p23_hi),
    ];
    let (ones8, ones16) = (_mm_set1_epi8(1), _mm_set1_epi16(1));
    for (g, quad) in quads.into_iter().enumerate() {
        _mm_storeu_si128(out.as_mut_ptr().add(16 * g) as *mut __m128i, quad);
        // Σ of each lane's four signed bytes: unsigned 1 × signed byte, pairwise, then pairs.
        let sum = _mm_madd_epi16(_mm_maddubs_epi16(ones8, quad), ones16);
        let at = sums.as_mut_ptr().add(4 * g) as *mut __m128i;
        _mm_storeu_si128(at, _mm_add_epi32(_mm_loadu_si128(at), _mm_slli_epi32::<7>(sum)));
    }
}

/// Packs rows row0..row0+mc, columns pc..pc+kc of A + 128 into micro-panels of `mr` rows: for
/// each quad of k-steps, the `mr` rows' 4 bytes. Padded rows are 128 (A = 0), padded depth too
/// (B is 0 there).
#[allow(clippy::too_many_arguments)]
fn pack_a(a: &[i8], k: usize, row0: usize, mc: usize, pc: usize, kc: usize, mr: usize, out: &mut [u8]) {
    let quads = kc.div_ceil(4);
    let len = mc.div_ceil(mr) * quads * mr * 4;
    for (ip, panel) in out[..len].chunks_exact_mut(quads * mr * 4).enumerate() {
        let row = |i: usize| {
            let r = row0 + ip * mr + i;
            &a[r * k + pc..r * k + pc + kc]
        };
        let real = mc.saturating_sub(ip * mr).min(mr);
        // Four rows at a time by 4×4 transposes of 32-bit words (every quad group that is whole),
        // the rest one word at a time.
        let mut done = 0;
        while done + 4 <= real {
            let rows = [row(done), row(done + 1), row(done + 2), row(done + 3)];
            let whole = kc / 16 * 4;
            // SAFETY: SSE2 is part of x86-64; each row has kc ≥ 4·whole bytes and the panel
            // holds quads·mr words (asserted inside).
            unsafe { transpose4_rows(rows, whole, mr, done, panel) };
            for (u, src) in rows.iter().enumerate() {
                pack_row_words(src, whole, quads, mr, done + u, panel);
            }
            done += 4;
        }
        for i in done..mr {
            if i < real {
                pack_row_words(row(i), 0, quads, mr, i, panel);
            } else {
                for q in 0..quads {
                    panel[(q * mr + i) * 4..(q * mr + i) * 4 + 4].fill(128);
                }
            }
        }
    }
}

/// Quads `from..quads` of one row of A, shifted, into row `i` of a micro-panel of `mr` rows (a
/// last partial quad padded with 128: A = 0).
fn pack_row_words(src: &[i8], from: usize, quads: usize, mr: usize, i: usize, panel: &mut [u8]) {
    // A + 128 as a byte is A's bits with the sign bit flipped.
    let mut words = src[4 * from..].chunks_exact(4);
    for (q, w) in (from..).zip(words.by_ref()) {
        let v = u32::from_ne_bytes([w[0] as u8, w[1] as u8, w[2] as u8, w[3] as u8]) ^ 0x8080_8080;
        panel[(q * mr + i) * 4..(q * mr + i) * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut v = [128u8; 4];
        for (slot, &x) in v.iter_mut().zip(rest) {
            *slot = (x as u8) ^ 0x80;
        }
        let q = quads - 1;
        panel[(q * mr + i) * 4..(q * mr + i) * 4 + 4].copy_from_slice(&v);
    }
}

/// Quads `0..quads` (a multiple of 4) of four rows of A, shifted, into rows i0..i0+4 of a
/// micro-panel of `mr` rows: each 16 bytes of the four rows is a 4×4 transpose of words.
///
/// # Safety
/// SSE2 only (every x86-64 CPU); the bounds are asserted.
unsafe fn transpose4_rows(rows: [&[i8]; 4], quads: usize, mr: usize, i0: usize, panel: &mut [u8]) {
    assert!(quads.is_multiple_of(4) && rows.iter().all(|r| r.len() >= 4 * quads));
    assert!(i0 + 4 <= mr && (quads == 0 || panel.len() >= ((quads - 1) * mr + i0 + 4) * 4));
    let flip = _mm_set1_epi8(0x80u8 as i8);
    for q0 in (0..quads).step_by(4) {
        let load = |r: &[i8]| _mm_xor_si128(_mm_loadu_si128(r.as_ptr().add(4 * q0) as *const __m128i), flip);
        let (t0, t1, t2, t3) = (load(rows[0]), load(rows[1]), load(rows[2]), load(rows[3]));
        let (u0, u1) = (_mm_unpacklo_epi32(t0, t1), _mm_unpackhi_epi32(t0, t1));
        let (u2, u3) = (_mm_unpacklo_epi32(t2, t3), _mm_unpackhi_epi32(t2, t3));
        let quad = [
            _mm_unpacklo_epi64(u0, u2),
            _mm_unpackhi_epi64(u0, u2),
            _mm_unpacklo_epi64(u1, u3),
            _mm_unpackhi_epi64(u1, u3),
        ];
        for (j, v) in quad.into_iter().enumerate() {
            _mm_storeu_si128(panel.as_mut_ptr().add(((q0 + j) * mr + i0) * 4) as *mut __m128i, v);
        }
    }
}

/// C = A·B into `c`, folding into `states` (the `transcript_grid` of m × n) when given.
///
/// Two ways to cut the work, by shape:
/// - **Row blocks** (most products): a task per `MC` rows, or `MC / 2` when that is what it
///   takes to give every thread eight tasks (1024 rows are 11 blocks of 96, which leave a thread
///   idle for one of them; 22 of 48 balance). B is packed once, by every thread; each task packs
///   its rows of A, k-panel by k-panel.
/// - **Column blocks** (too few rows to keep every thread busy: the skinny products of
///   inference, 256 rows): a task per block of up to 256 columns and up to 768 rows. A is
///   packed once; each task packs its columns of B, k-panel by k-panel, so B goes from memory to
///   L2 once (packing all of B first wrote and re-read 16 MB at 256×4096×4096 and was a fifth
///   of its time). Such a task computes into an output and fold states of its own (its
///   thread's, reused), copied into place under a lock, so no two tasks ever hold the same
///   memory.
pub(super) fn gemm(p: &Product<'_>, c: &mut [i32], states: Option<&mut [FoldState]>) {
    let (mr, nr) = (p.kernel.mr(), p.kernel.nr());
    let step = if p.depth == 0 { KV } else { p.depth };
    debug_assert!(step % 4 == 0 && KV.is_multiple_of(step));
    let grid_cols = p.n.div_ceil(NR);
    let threads = rayon::current_num_threads();
    let mc_task = if p.m.div_ceil(MC) < 8 * threads && p.m.div_ceil(MC / 2) >= 8 * threads { MC / 2 } else { MC };
    let row_tasks = p.m.div_ceil(mc_task);
    let wanted = 4 * threads;
    if row_tasks >= wanted || p.n <= nr {
        let packed = PackedB::new(p.b, p.k, p.n, nr, step);
        let state_chunk = mc_task / MR * grid_cols;
        let mut blocks: Vec<Option<&mut [FoldState]>> = match states {
            Some(s) => s.chunks_mut(state_chunk).map(Some).collect(),
            None => (0..row_tasks).map(|_| None).collect(),
        };
        let tasks: Vec<_> = c.chunks_mut(mc_task * p.n).zip(blocks.iter_mut()).enumerate().collect();
        tasks.into_par_iter().for_each_init(
            || vec![0u8; mc_task * KV],
            |apack, (block, (c_rows, states))| {
                let row0 = block * mc_task;
                let mc = (p.m - row0).min(mc_task);
                let view = View { c: c_rows, ldc: p.n, cols: 0..p.n, states: states.as_deref_mut(), grid_cols };
                let sources = Sources { a: APanels::Pack(apack), b: BPanels::Shared(&packed) };
                row_block(p, sources, (row0, mc), view, (mr, nr));
            },
        );
        return;
    }
    // Column blocks of whole register tiles, at most 256 wide (a B k-panel of 2048 × 256 bytes
    // sits in L2 beside its task's C); row blocks of at most 768 rows, whole register tiles.
    let row_blocks = p.m.div_ceil(8 * MC);
    let rows_per = p.m.div_ceil(row_blocks).div_ceil(mr) * mr;
    let col_blocks = wanted.div_ceil(row_blocks).max(p.n.div_ceil(256));
    let width = p.n.div_ceil(nr).div_ceil(col_blocks) * nr;
    let row_starts: Vec<usize> = (0..p.m).step_by(rows_per).collect();
    let panels: Vec<usize> = (0..p.k).step_by(KV).collect();
    // A + 128, packed once: per row block, per k-panel.
    let packed_a: Vec<Vec<u8>> = row_starts
        .iter()
        .flat_map(|&row0| panels.iter().map(move |&pc| (row0, pc)))
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|(row0, pc)| {
            let (mc, kc) = ((p.m - row0).min(rows_per), (p.k - pc).min(KV));
            let mut out = vec![0u8; mc.div_ceil(mr) * kc.div_ceil(4) * mr * 4];
            pack_a(p.a, p.k, row0, mc, pc, kc, mr, &mut out);
            out
        })
        .collect();
    let folding = states.is_some();
    let blocks: Vec<(usize, usize)> =
        (0..row_starts.len()).flat_map(|rb| (0..p.n).step_by(width).map(move |lo| (rb, lo))).collect();
    // Each thread computes a block into a `BlockOut` of its own and copies it into place.
    let target = std::sync::Mutex::new((c, states));
    blocks.into_par_iter().for_each_init(
        || (PackedB { data: Vec::new(), corr: Vec::new(), panels: 0, step }, BlockOut::default()),
        |(own_b, out), (rb, lo)| {
            let row0 = row_starts[rb];
            let (mc, hi) = ((p.m - row0).min(rows_per), (lo + width).min(p.n));
            let view = out.view(mc, lo..hi, folding);
            let a = &packed_a[rb * panels.len()..(rb + 1) * panels.len()];
            let sources = Sources { a: APanels::Shared(a), b: BPanels::Pack(own_b) };
            row_block(p, sources, (row0, mc), view, (mr, nr));
            out.place(&target, p.n, grid_cols, row0, lo..hi);
        },
    );
}

/// Where a task's packed panels come from: one side packed once for the whole product and
/// shared, the other packed by the task, k-panel by k-panel, into a buffer of its own.
struct Sources<'a> {
    a: APanels<'a>,
    b: BPanels<'a>,
}

enum APanels<'a> {
    /// Packed here, into this buffer (`MC · KV` bytes), for each k-panel.
    Pack(&'a mut Vec<u8>),
    /// The task's rows, packed, one buffer per k-panel.
    Shared(&'a [Vec<u8>]),
}

enum BPanels<'a> {
    /// All of B, packed.
    Shared(&'a PackedB),
    /// Packed here, for the task's columns, for each k-panel.
    Pack(&'a mut PackedB),
}

/// Rows row0.. row0+mc of C over every k-panel, for the view's columns. With A shared, the
/// loop runs across B's micro-panels for each of A's (A's in L1, B's few in L2); with B shared,
/// across A's micro-panels for each of B's (the task's A in L2, B streaming once).
fn row_block(
    p: &Product<'_>,
    sources: Sources<'_>,
    (row0, mc): (usize, usize),
    view: View<'_>,
    (mr, nr): (usize, usize),
) {
    let View { c, ldc, cols: range, mut states, grid_cols } = view;
    let Sources { a: mut a_src, b: mut b_src } = sources;
    let k = p.k;
    debug_assert!(range.start.is_multiple_of(nr));
    let (a_tiles, jp0) = (mc.div_ceil(mr), range.start / nr);
    let b_tiles = range.end.div_ceil(nr) - jp0;
    for (panel, pc) in (0..k).step_by(KV).enumerate() {
        let kc = (k - pc).min(KV);
        let quads = kc.div_ceil(4);
        let (apack, a_outer): (&[u8], bool) = match &mut a_src {
            APanels::Pack(buf) => {
                pack_a(p.a, k, row0, mc, pc, kc, mr, buf);
                (&buf[..], false)
            }
            APanels::Shared(panels) => (&panels[panel], true),
        };
        let (packed, bpc, bk, bjp0): (&PackedB, usize, usize, usize) = match &mut b_src {
            BPanels::Shared(packed) => (packed, pc, k, 0),
            BPanels::Pack(own) => {
                own.pack(p.b, p.n, (pc..pc + kc, range.clone()), nr, false);
                (own, 0, kc, jp0)
            }
        };
        let step_quads = packed.step / 4;
        let last = pc + kc == k;
        for t in 0..a_tiles * b_tiles {
            let (ip, jp) = if a_outer { (t / b_tiles, jp0 + t % b_tiles) } else { (t % a_tiles, jp0 + t / a_tiles) };
            let (bmicro, corr) = packed.panel(bpc, jp - bjp0, bk, nr);
            // Global column of the register tile, and its column in the view.
            let (g0, c0) = (jp * nr, jp * nr - range.start);
            let amicro = &apack[ip * quads * mr * 4..(ip + 1) * quads * mr * 4];
            let r0 = ip * mr;
            let (rows, cols) = ((mc - r0).min(mr), (range.end - g0).min(nr));
            // The microtiles of this register tile that exist in the grid, row-major.
            let mut folds: [Option<&mut FoldState>; 4] = [None, None, None, None];
            if let Some(s) = states.as_deref_mut() {
                let mut rest = s;
                let mut consumed = 0;
                for (slot, (rr, cc)) in microtiles(mr, nr).enumerate() {
                    if r0 + rr * MR >= mc || g0 + cc * NR >= range.end {
                        continue;
                    }
                    let index = ((r0 / MR) + rr) * grid_cols + c0 / NR + cc;
                    let (_, tail) = std::mem::take(&mut rest).split_at_mut(index - consumed);
                    let (state, tail) = tail.split_at_mut(1);
                    folds[slot] = Some(&mut state[0]);
                    rest = tail;
                    consumed = index + 1;
                }
            }
            let tile = &mut c[r0 * ldc + c0..];
            run_tile(p.kernel, quads, step_quads, amicro, bmicro, corr, tile, ldc, (rows, cols), pc > 0, &mut folds);
            if let (Some(epilogue), true) = (p.epilogue, last) {
                for (rr, cc) in microtiles(mr, nr) {
                    let (tr, tc) = (rr * MR, cc * NR);
                    if tr >= rows || tc >= cols {
                        continue;
                    }
                    epilogue(TileMut {
                        row0: row0 + r0 + tr,
                        col0: g0 + tc,
                        rows: (rows - tr).min(MR),
                        cols: (cols - tc).min(NR),
                        c: &mut tile[tr * ldc + tc..],
                        ldc,
                    });
                }
            }
        }
        if let Some(progress) = p.progress {
            progress.fetch_add((mc * kc * range.len()) as u64, Ordering::Relaxed);
        }
    }
}

/// (row, column) of each 6×16 microtile in an mr × nr register tile, row-major.
fn microtiles(mr: usize, nr: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..mr / MR).flat_map(move |r| (0..nr / NR).map(move |c| (r, c)))
}

/// One register tile; edge tiles go through a scratch tile so the kernel never writes outside C.
#[allow(clippy::too_many_arguments)]
fn run_tile(
    tile: Tile,
    quads: usize,
    step_quads: usize,
    a: &[u8],
    b: &[i8],
    corr: &[i32],
    c: &mut [i32],
    ldc: usize,
    (rows, cols): (usize, usize),
    load: bool,
    folds: &mut [Option<&mut FoldState>; 4],
) {
    let (mr, nr) = (tile.mr(), tile.nr());
    assert!(a.len() >= quads * mr * 4 && b.len() >= quads * nr * 4);
    assert!(corr.len() >= quads.div_ceil(step_quads) * nr);
    let kernel = |c: &mut [i32], ldc: usize, folds: &mut [Option<&mut FoldState>; 4]| {
        assert!(c.len() >= (mr - 1) * ldc + nr);
        // SAFETY: the driver runs a tile only on a CPU with its features (checked in
        // `gemm::product`); the asserts above bound every pointer the kernel reads and writes.
        unsafe {
            match tile {
                Tile::Zmm12x32 => kernel_12x32(
                    quads,
                    step_quads,
                    a.as_ptr(),
                    b.as_ptr(),
                    corr.as_ptr(),
                    c.as_mut_ptr(),
                    ldc,
                    load,
                    folds,
                ),
                Tile::Ymm6x16 => kernel_6x16(
                    quads,
                    step_quads,
                    a.as_ptr(),
                    b.as_ptr(),
                    corr.as_ptr(),
                    c.as_mut_ptr(),
                    ldc,
                    load,
                    folds,
                ),
            }
        }
    };
    super::through_scratch(c, ldc, (rows, cols), (mr, nr), load, |c, ldc| kernel(c, ldc, folds));
}

/// 12 × 32 on AVX-512 VNNI: acc (loaded from `c` when `load`) += (A+128)·B over `quads` quads,
/// minus each step's correction at its end, folding each existing microtile after every step.
///
/// # Safety
/// The CPU must have AVX-512 F and VNNI. `a` holds `quads·48` bytes, `b` `quads·128`, `corr`
/// 32 i32 per step of `step_quads` quads; `c` is valid for 12 rows of 32 i32 spaced `ldc` apart.
#[target_feature(enable = "avx512f,avx512vl,avx512vnni,avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_12x32(
    quads: usize,
    step_quads: usize,
    a: *const u8,
    b: *const i8,
    corr: *const i32,
    c: *mut i32,
    ldc: usize,
    load: bool,
    folds: &mut [Option<&mut FoldState>; 4],
) {
    let mut acc = [_mm512_setzero_si512(); 24];
    // Lane order (see `lane32`): acc[2i] holds row i's columns 0..8 and 16..24, acc[2i+1]
    // columns 8..16 and 24..32.
    if load {
        for i in 0..12 {
            let row = c.add(i * ldc);
            let half = |j: usize| _mm256_loadu_si256(row.add(j) as *const __m256i);
            acc[2 * i] = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(half(0)), half(16));
            acc[2 * i + 1] = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(half(8)), half(24));
        }
    }
    let fold = folds.iter().any(Option::is_some);
    let (mut q, mut step) = (0, 0);
    while q < quads {
        let end = (q + step_quads).min(quads);
        while q < end {
            let bp = b.add(q * 128);
            let b0 = _mm512_loadu_si512(bp as *const __m512i);
            let b1 = _mm512_loadu_si512(bp.add(64) as *const __m512i);
            let ap = a.add(q * 48) as *const i32;
            for i in 0..12 {
                let av = _mm512_set1_epi32(ap.add(i).read_unaligned());
                acc[2 * i] = _mm512_dpbusd_epi32(acc[2 * i], av, b0);
                acc[2 * i + 1] = _mm512_dpbusd_epi32(acc[2 * i + 1], av, b1);
            }
            q += 1;
        }
        let cp = corr.add(step * 32);
        let (c0, c1) = (_mm512_loadu_si512(cp as *const __m512i), _mm512_loadu_si512(cp.add(16) as *const __m512i));
        for i in 0..12 {
            acc[2 * i] = _mm512_sub_epi32(acc[2 * i], c0);
            acc[2 * i + 1] = _mm512_sub_epi32(acc[2 * i + 1], c1);
        }
        step += 1;
        if fold {
            // Constant indices only: the accumulators stay in registers (a loop over the
            // microtiles with computed indices made the compiler keep them in memory).
            let [f0, f1, f2, f3] = &mut *folds;
            fold_pair::<0>(&acc, f0, f1);
            fold_pair::<1>(&acc, f2, f3);
        }
    }
    for i in 0..12 {
        let row = c.add(i * ldc);
        let (even, odd) = (acc[2 * i], acc[2 * i + 1]);
        _mm256_storeu_si256(row as *mut __m256i, _mm512_castsi512_si256(even));
        _mm256_storeu_si256(row.add(8) as *mut __m256i, _mm512_castsi512_si256(odd));
        _mm256_storeu_si256(row.add(16) as *mut __m256i, _mm512_extracti64x4_epi64::<1>(even));
        _mm256_storeu_si256(row.add(24) as *mut __m256i, _mm512_extracti64x4_epi64::<1>(odd));
    }
}

/// Folds the two microtiles of register rows RR·6.. (columns 0..16 and 16..32). Their row r is
/// fold_tile's v_2r (a microtile's columns 0..8) then v_2r+1 (8..16). In lane order acc[2i]
/// holds both microtiles' v_2r and acc[2i+1] both v_2r+1, so with both present their states
/// share one zmm and one xor and one add fold a row of both (2 instructions for two
/// microtiles; gathering the halves with `vshufi64x2` took 4, and one at a time 6).
#[inline(always)]
unsafe fn fold_pair<const RR: usize>(
    acc: &[__m512i; 24],
    left: &mut Option<&mut FoldState>,
    right: &mut Option<&mut FoldState>,
) {
    match (left.as_deref_mut(), right.as_deref_mut()) {
        (Some(l), Some(r)) => {
            let lo = _mm256_loadu_si256(l.as_ptr() as *const __m256i);
            let hi = _mm256_loadu_si256(r.as_ptr() as *const __m256i);
            let mut s = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
            for row in 0..MR {
                s = _mm512_xor_si512(s, acc[2 * (RR * MR + row)]);
                s = _mm512_add_epi32(s, acc[2 * (RR * MR + row) + 1]);
            }
            _mm256_storeu_si256(l.as_mut_ptr() as *mut __m256i, _mm512_castsi512_si256(s));
            _mm256_storeu_si256(r.as_mut_ptr() as *mut __m256i, _mm512_extracti64x4_epi64::<1>(s));
        }
        (Some(l), None) => fold_zmm::<RR, 0>(acc, l),
        (None, Some(r)) => fold_zmm::<RR, 1>(acc, r),
        (None, None) => {}
    }
}

/// Folds microtile (RR, CC) of the 12 × 32 register tile alone: its row r is fold_tile's v_2r
/// (half CC of acc[2r], in lane order) then v_2r+1 (half CC of acc[2r+1]).
#[inline(always)]
unsafe fn fold_zmm<const RR: usize, const CC: usize>(acc: &[__m512i; 24], state: &mut FoldState) {
    let half = |v: __m512i| if CC == 0 { _mm512_castsi512_si256(v) } else { _mm512_extracti64x4_epi64::<1>(v) };
    let mut s = _mm256_loadu_si256(state.as_ptr() as *const __m256i);
    for r in 0..MR {
        s = _mm256_xor_si256(s, half(acc[2 * (RR * MR + r)]));
        s = _mm256_add_epi32(s, half(acc[2 * (RR * MR + r) + 1]));
    }
    _mm256_storeu_si256(state.as_mut_ptr() as *mut __m256i, s);
}

/// 6 × 16 on AVX-VNNI (256-bit): the same contract as [`kernel_12x32`] for one microtile, whose
/// 12 accumulators are fold_tile's v_q exactly.
///
/// # Safety
/// The CPU must have AVX2 and AVX-VNNI. `a` holds `quads·24` bytes, `b` `quads·64`, `corr` 16
/// i32 per step; `c` is valid for 6 rows of 16 i32 spaced `ldc` apart.
#[target_feature(enable = "avx2,avxvnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_6x16(
    quads: usize,
    step_quads: usize,
    a: *const u8,
    b: *const i8,
    corr: *const i32,
    c: *mut i32,
    ldc: usize,
    load: bool,
    folds: &mut [Option<&mut FoldState>; 4],
) {
    let mut acc = [_mm256_setzero_si256(); 12];
    if load {
        for i in 0..6 {
            acc[2 * i] = _mm256_loadu_si256(c.add(i * ldc) as *const __m256i);
            acc[2 * i + 1] = _mm256_loadu_si256(c.add(i * ldc + 8) as *const __m256i);
        }
    }
    let (mut q, mut step) = (0, 0);
    while q < quads {
        let end = (q + step_quads).min(quads);
        while q < end {
            let bp = b.add(q * 64);
            let b0 = _mm256_loadu_si256(bp as *const __m256i);
            let b1 = _mm256_loadu_si256(bp.add(32) as *const __m256i);
            let ap = a.add(q * 24) as *const i32;
            for i in 0..6 {
                let av = _mm256_set1_epi32(ap.add(i).read_unaligned());
                acc[2 * i] = _mm256_dpbusd_avx_epi32(acc[2 * i], av, b0);
                acc[2 * i + 1] = _mm256_dpbusd_avx_epi32(acc[2 * i + 1], av, b1);
            }
            q += 1;
        }
        let cp = corr.add(step * 16);
        let (c0, c1) = (_mm256_loadu_si256(cp as *const __m256i), _mm256_loadu_si256(cp.add(8) as *const __m256i));
        for i in 0..6 {
            acc[2 * i] = _mm256_sub_epi32(acc[2 * i], c0);
            acc[2 * i + 1] = _mm256_sub_epi32(acc[2 * i + 1], c1);
        }
        step += 1;
        if let Some(state) = folds[0].as_deref_mut() {
            let s = _mm256_loadu_si256(state.as_ptr() as *const __m256i);
            let s = super::avx2::fold_avx2(s, &acc);
            _mm256_storeu_si256(state.as_mut_ptr() as *mut __m256i, s);
        }
    }
    for i in 0..6 {
        _mm256_storeu_si256(c.add(i * ldc) as *mut __m256i, acc[2 * i]);
        _mm256_storeu_si256(c.add(i * ldc + 8) as *mut __m256i, acc[2 * i + 1]);
    }
}
