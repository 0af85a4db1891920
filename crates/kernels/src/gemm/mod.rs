//! Exact int8 × int8 → int32 matrix products, blocked for caches and split across threads.
//!
//! Layout (BLIS-style): B is packed once into k-panels of `KC` rows × micro-panels of `NR`
//! columns, as sign-extended i16 pairs (t, t+1) per column; each rayon task takes `MC` rows of A,
//! packs them into micro-panels of `MR` rows the same way, and runs the 6×16 microkernel over every
//! (micro-panel of A, micro-panel of B) with the B micro-panel hot in L1. The accumulation order
//! never matters: int32 sums of int8 products are exact while they cannot overflow, which
//! [`check_exact`] guarantees before anything runs.
//!
//! The same driver optionally keeps a per-microtile *transcript fold* (see [`fold`]): after every
//! `depth` inner steps each tile's running sums are folded into its state, in registers. Proof of
//! Useful Work uses this to mine in the same pass as the product.

#[cfg(target_arch = "x86_64")]
mod avx2;
pub mod fold;
mod portable;
#[cfg(target_arch = "x86_64")]
mod vnni;

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::matrix::{MatI32, MatI8};
use crate::KernelError;
pub use fold::{fold_tile, FoldState};

/// Rows of one microtile.
pub const MR: usize = 6;
/// Columns of one microtile.
pub const NR: usize = 16;
/// Inner depth of one packed k-panel; a multiple of every supported fold depth.
pub const KC: usize = 256;
/// Rows of A one task packs and multiplies (a multiple of `MR` and of PoUW's 24-row tiles).
const MC: usize = 96;

/// The longest inner dimension accepted: k·127² < 2^31 keeps every int32 sum exact.
pub const MAX_K: usize = 133_000;

/// Which microkernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// x86-64 AVX-512 VNNI (`vpdpbusd` on zmm, a 12×32 register tile).
    Avx512Vnni,
    /// x86-64 AVX-VNNI (`vpdpbusd` on ymm, 6×16): VNNI without AVX-512 (Alder Lake and later).
    AvxVnni,
    /// x86-64 AVX2 (`vpmaddwd`).
    Avx2,
    /// Plain Rust; any CPU.
    Portable,
}

impl Isa {
    /// Every kernel, fastest first.
    pub const ALL: [Isa; 4] = [Isa::Avx512Vnni, Isa::AvxVnni, Isa::Avx2, Isa::Portable];

    /// The fastest microkernel this CPU can run.
    pub fn detect() -> Isa {
        Isa::ALL.into_iter().find(|isa| isa.supported()).unwrap_or(Isa::Portable)
    }

    /// Whether this CPU can run it.
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            match self {
                Isa::Avx512Vnni => has!("avx512f") && has!("avx512vl") && has!("avx512vnni") && has!("avx2"),
                Isa::AvxVnni => has!("avxvnni") && has!("avx2"),
                Isa::Avx2 => has!("avx2"),
                Isa::Portable => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Isa::Portable
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512Vnni => "avx512-vnni",
            Isa::AvxVnni => "avx-vnni",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }
}

/// Options for one product. `Default` picks the best kernel and reports no progress.
#[derive(Default, Clone, Copy)]
pub struct GemmOptions<'a> {
    /// Force a microkernel (tests and benchmarks); `None` detects.
    pub isa: Option<Isa>,
    /// Incremented by the multiply-adds done so far, for progress bars on long products.
    pub progress: Option<&'a AtomicU64>,
    /// Called once per output tile right after its final values are stored (still in L1), to
    /// post-process C without another pass over memory.
    pub epilogue: Option<&'a (dyn Fn(TileMut<'_>) + Sync)>,
}

/// One finished output tile handed to an epilogue: rows row0.., columns col0.. of C.
pub struct TileMut<'a> {
    pub row0: usize,
    pub col0: usize,
    pub rows: usize,
    pub cols: usize,
    /// Starts at entry (row0, col0); row i of the tile begins at i · ldc.
    pub c: &'a mut [i32],
    pub ldc: usize,
}

/// Per-microtile transcript folds requested alongside a product.
pub struct Transcript<'a> {
    /// Fold after every `depth` inner steps (and once more at the end when depth ∤ k).
    /// Must be even and divide [`KC`].
    pub depth: usize,
    /// One state per microtile, row-major over the `transcript_grid(m, n)` grid, updated in place.
    pub states: &'a mut [FoldState],
}

/// The microtile grid of an m×n product: (⌈m/6⌉, ⌈n/16⌉).
pub fn transcript_grid(m: usize, n: usize) -> (usize, usize) {
    (m.div_ceil(MR), n.div_ceil(NR))
}

/// C = A·B, exactly.
pub fn matmul(a: &MatI8, b: &MatI8) -> Result<MatI32, KernelError> {
    matmul_with(a, b, GemmOptions::default())
}

/// C = A·B with explicit options.
pub fn matmul_with(a: &MatI8, b: &MatI8, opts: GemmOptions<'_>) -> Result<MatI32, KernelError> {
    let mut c = MatI32::zeros(a.rows(), b.cols())?;
    gemm_into(a, b, &mut c, None, opts)?;
    Ok(c)
}

/// Refuses shapes that do not chain and products whose int32 sums could overflow.
pub fn check_exact(a: &MatI8, b: &MatI8) -> Result<(), KernelError> {
    if a.cols() != b.rows() {
        return Err(KernelError::Shape(format!(
            "cannot multiply {}x{} by {}x{}: inner dimensions differ",
            a.rows(),
            a.cols(),
            b.rows(),
            b.cols()
        )));
    }
    let k = a.cols();
    if k > MAX_K {
        return Err(KernelError::TooDeep { k, max: MAX_K });
    }
    let max_abs = |m: &MatI8| m.as_slice().iter().map(|v| v.unsigned_abs() as u64).max().unwrap_or(0);
    // Below this depth even −128 · −128 sums fit, so the scan for extreme entries is skipped.
    let always_safe = i32::MAX as u64 / (128 * 128);
    if k as u64 > always_safe && k as u64 * max_abs(a) * max_abs(b) > i32::MAX as u64 {
        return Err(KernelError::Overflow { k });
    }
    Ok(())
}

/// C = A·B into `c` (overwritten), optionally folding the transcript.
pub fn gemm_into(
    a: &MatI8,
    b: &MatI8,
    c: &mut MatI32,
    transcript: Option<Transcript<'_>>,
    opts: GemmOptions<'_>,
) -> Result<(), KernelError> {
    check_exact(a, b)?;
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    if c.rows() != m || c.cols() != n {
        return Err(KernelError::Shape(format!("output is {}x{}, product is {m}x{n}", c.rows(), c.cols())));
    }
    let (grid_rows, grid_cols) = transcript_grid(m, n);
    let (depth, states) = match transcript {
        Some(t) => {
            if t.depth == 0 || t.depth % 2 != 0 || !KC.is_multiple_of(t.depth) {
                return Err(KernelError::Shape(format!("fold depth {} must be even and divide {KC}", t.depth)));
            }
            if t.states.len() != grid_rows * grid_cols {
                return Err(KernelError::Shape(format!(
                    "{} fold states for a {grid_rows}x{grid_cols} microtile grid",
                    t.states.len()
                )));
            }
            (t.depth, Some(t.states))
        }
        None => (0, None),
    };
    let mut isa = opts.isa.unwrap_or_else(Isa::detect);
    if !isa.supported() {
        return Err(KernelError::Unsupported(match isa {
            Isa::Avx512Vnni => "this CPU has no AVX-512 VNNI",
            Isa::AvxVnni => "this CPU has no AVX-VNNI",
            _ => "this CPU has no AVX2",
        }));
    }
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, Isa::Avx512Vnni | Isa::AvxVnni) {
        // A VNNI instruction covers four k-steps: a fold between them is the AVX2 kernel's job.
        if depth % 4 == 0 {
            let tile = if isa == Isa::Avx512Vnni { vnni::Tile::Zmm12x32 } else { vnni::Tile::Ymm6x16 };
            let product = vnni::Product {
                a: a.as_slice(),
                b: b.as_slice(),
                m,
                k,
                n,
                depth,
                tile,
                progress: opts.progress,
                epilogue: opts.epilogue,
            };
            vnni::gemm(&product, c.as_mut_slice(), states);
            return Ok(());
        }
        isa = Isa::Avx2;
    }

    let packed_b = pack_b(b.as_slice(), k, n);
    let ctx = Ctx {
        a: a.as_slice(),
        packed_b: &packed_b,
        m,
        k,
        n,
        step_pairs: depth / 2,
        isa,
        progress: opts.progress,
        epilogue: opts.epilogue,
    };

    // One task per MC rows of C; each carries its rows of C and of the fold-state grid.
    let state_chunk = MC / MR * grid_cols;
    let mut state_blocks: Vec<Option<&mut [FoldState]>> = match states {
        Some(s) => s.chunks_mut(state_chunk).map(Some).collect(),
        None => (0..m.div_ceil(MC)).map(|_| None).collect(),
    };
    let tasks: Vec<_> = c.as_mut_slice().chunks_mut(MC * n).zip(state_blocks.iter_mut()).enumerate().collect();
    tasks.into_par_iter().for_each_init(
        || vec![0i16; MC * KC],
        |apack, (block, (c_rows, states))| ctx.row_block(block * MC, c_rows, states.as_deref_mut(), apack),
    );
    Ok(())
}

struct Ctx<'a> {
    a: &'a [i8],
    packed_b: &'a [i16],
    m: usize,
    k: usize,
    n: usize,
    step_pairs: usize,
    isa: Isa,
    progress: Option<&'a AtomicU64>,
    epilogue: Option<&'a (dyn Fn(TileMut<'_>) + Sync)>,
}

impl Ctx<'_> {
    /// Rows row0.. row0+mc of C, over every k-panel.
    fn row_block(&self, row0: usize, c: &mut [i32], mut states: Option<&mut [FoldState]>, apack: &mut [i16]) {
        let (k, n) = (self.k, self.n);
        let mc = (self.m - row0).min(MC);
        let a_panels = mc.div_ceil(MR);
        let b_panels = n.div_ceil(NR);
        for pc in (0..k).step_by(KC) {
            let kc = (k - pc).min(KC);
            let kp = kc.div_ceil(2);
            pack_a(self.a, k, row0, mc, pc, kc, apack);
            let bpanel = &self.packed_b[pc * b_panels * NR..];
            for jp in 0..b_panels {
                let bmicro = &bpanel[jp * kp * NR * 2..(jp + 1) * kp * NR * 2];
                for ip in 0..a_panels {
                    let amicro = &apack[ip * kp * MR * 2..(ip + 1) * kp * MR * 2];
                    let fold = states.as_deref_mut().map(|s| &mut s[ip * b_panels + jp]);
                    let (r0, c0) = (ip * MR, jp * NR);
                    let (rows, cols) = ((mc - r0).min(MR), (n - c0).min(NR));
                    let tile = &mut c[r0 * n + c0..];
                    self.tile(kp, amicro, bmicro, tile, rows, cols, pc > 0, fold);
                    if let (Some(epilogue), true) = (self.epilogue, pc + kc == k) {
                        epilogue(TileMut { row0: row0 + r0, col0: c0, rows, cols, c: tile, ldc: n });
                    }
                }
            }
            if let Some(p) = self.progress {
                p.fetch_add((mc * kc * n) as u64, Ordering::Relaxed);
            }
        }
    }

    /// One microtile; edge tiles go through a 6×16 scratch tile so the kernel never writes outside C.
    #[allow(clippy::too_many_arguments)]
    fn tile(
        &self,
        kp: usize,
        a: &[i16],
        b: &[i16],
        c: &mut [i32],
        rows: usize,
        cols: usize,
        load: bool,
        fold: Option<&mut FoldState>,
    ) {
        through_scratch(c, self.n, (rows, cols), (MR, NR), load, |c, ldc| self.kernel(kp, a, b, c, ldc, load, fold));
    }

    #[allow(clippy::too_many_arguments)]
    fn kernel(
        &self,
        kp: usize,
        a: &[i16],
        b: &[i16],
        c: &mut [i32],
        ldc: usize,
        load: bool,
        fold: Option<&mut FoldState>,
    ) {
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                assert!(a.len() >= kp * MR * 2 && b.len() >= kp * NR * 2);
                assert!(c.len() >= (MR - 1) * ldc + NR);
                // SAFETY: AVX2 was detected in gemm_into; the asserts above bound every access.
                unsafe {
                    avx2::kernel_6x16(kp, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, load, fold, self.step_pairs)
                }
            }
            _ => portable::kernel_6x16(kp, a, b, c, ldc, load, fold, self.step_pairs),
        }
    }
}

/// The largest register tile of any kernel (12 × 32, AVX-512 VNNI).
const SCRATCH: usize = 12 * 32;

/// Runs `kernel(c, ldc)` on a register tile of `mr × nr` at the start of `c` (rows `ldc` apart)
/// of which `rows × cols` lie inside C: a whole tile directly, an edge tile through a scratch
/// tile (loaded from C when `load`, copied back after), so a kernel never writes outside C.
fn through_scratch(
    c: &mut [i32],
    ldc: usize,
    (rows, cols): (usize, usize),
    (mr, nr): (usize, usize),
    load: bool,
    kernel: impl FnOnce(&mut [i32], usize),
) {
    if rows == mr && cols == nr {
        kernel(c, ldc);
        return;
    }
    // Zeroed only here: on every whole tile its 1.5 KB memset was 7% of a 2048³ product.
    let mut buf = [0i32; SCRATCH];
    let scratch = &mut buf[..mr * nr];
    if load {
        for i in 0..rows {
            scratch[i * nr..i * nr + cols].copy_from_slice(&c[i * ldc..i * ldc + cols]);
        }
    }
    kernel(&mut *scratch, nr);
    for i in 0..rows {
        c[i * ldc..i * ldc + cols].copy_from_slice(&scratch[i * nr..i * nr + cols]);
    }
}

/// Packs all of B: for each k-panel of KC rows, for each micro-panel of NR columns, for each k-pair
/// p, the 16 column pairs (B[2p][j], B[2p+1][j]) as i16, zero-padded past k and n.
fn pack_b(b: &[i8], k: usize, n: usize) -> Vec<i16> {
    let b_panels = n.div_ceil(NR);
    let panel_len = |kc: usize| kc.div_ceil(2) * 2 * b_panels * NR;
    // Every k-panel starts at pc · b_panels · NR (KC is even, so full panels pack without padding).
    let total: usize = (0..k).step_by(KC).map(|pc| panel_len((k - pc).min(KC))).sum();
    let mut out = vec![0i16; total];
    let mut chunks: Vec<(usize, usize, &mut [i16])> = Vec::new();
    let mut rest = out.as_mut_slice();
    for pc in (0..k).step_by(KC) {
        let kc = (k - pc).min(KC);
        let kp = kc.div_ceil(2);
        for jp in 0..b_panels {
            let (head, tail) = rest.split_at_mut(kp * NR * 2);
            chunks.push((pc, jp, head));
            rest = tail;
        }
    }
    chunks.into_par_iter().for_each(|(pc, jp, dst)| {
        let kc = (k - pc).min(KC);
        let c0 = jp * NR;
        let cols = (n - c0).min(NR);
        for (p, pair) in dst.chunks_exact_mut(NR * 2).enumerate() {
            let t0 = pc + 2 * p;
            let row0 = &b[t0 * n + c0..t0 * n + c0 + cols];
            for (j, &v) in row0.iter().enumerate() {
                pair[2 * j] = v as i16;
            }
            if 2 * p + 1 < kc {
                let row1 = &b[(t0 + 1) * n + c0..(t0 + 1) * n + c0 + cols];
                for (j, &v) in row1.iter().enumerate() {
                    pair[2 * j + 1] = v as i16;
                }
            }
        }
    });
    out
}

/// Packs rows row0..row0+mc, columns pc..pc+kc of A into micro-panels of MR rows: for each k-pair
/// p, the 6 row pairs (A[i][2p], A[i][2p+1]) as i16, zero-padded past mc and kc.
fn pack_a(a: &[i8], k: usize, row0: usize, mc: usize, pc: usize, kc: usize, out: &mut [i16]) {
    let kp = kc.div_ceil(2);
    for (ip, panel) in out[..mc.div_ceil(MR) * kp * MR * 2].chunks_exact_mut(kp * MR * 2).enumerate() {
        for i in 0..MR {
            let r = ip * MR + i;
            if r >= mc {
                for p in 0..kp {
                    panel[(p * MR + i) * 2] = 0;
                    panel[(p * MR + i) * 2 + 1] = 0;
                }
                continue;
            }
            let src = &a[(row0 + r) * k + pc..(row0 + r) * k + pc + kc];
            let mut pairs = src.chunks_exact(2);
            for (p, pair) in pairs.by_ref().enumerate() {
                panel[(p * MR + i) * 2] = pair[0] as i16;
                panel[(p * MR + i) * 2 + 1] = pair[1] as i16;
            }
            if let [last] = pairs.remainder() {
                panel[((kp - 1) * MR + i) * 2] = *last as i16;
                panel[((kp - 1) * MR + i) * 2 + 1] = 0;
            }
        }
    }
}
