//! Exact int8 × int8 → int32 matrix products, blocked for caches and split across threads.
//!
//! Layout (BLIS-style): B is packed into k-panels × micro-panels of a register tile's columns and
//! each task packs its rows of A into micro-panels of the tile's rows; the microkernel runs over
//! every (micro-panel of A, micro-panel of B) with the B micro-panel hot in L1. Two drivers:
//! [`pairs`] for the AVX2 (`vpmaddwd`) and portable kernels on sign-extended i16 pairs, and
//! [`vnni`] for `vpdpbusd` on byte quads. The accumulation order never matters: int32 sums of
//! int8 products are exact while they cannot overflow, which [`check_exact`] guarantees before
//! anything runs.
//!
//! Both drivers optionally keep a per-microtile *transcript fold* (see [`fold`]): after every
//! `depth` inner steps each 6×16 tile's running sums are folded into its state, in registers.
//! Proof of Useful Work uses this to mine in the same pass as the product.

#[cfg(target_arch = "x86_64")]
mod avx2;
pub mod fold;
mod pairs;
mod portable;
#[cfg(target_arch = "x86_64")]
mod vnni;

use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

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
///
/// C is fresh memory that the product's stores write first: zeroing it beforehand was a pass over
/// all of C (1.5–2% of a 1024³ product on Zen 2), where ONNX Runtime's arena hands out memory
/// as it is.
pub fn matmul_with(a: &MatI8, b: &MatI8, opts: GemmOptions<'_>) -> Result<MatI32, KernelError> {
    gemm_new(a, b, None, opts)
}

/// C = A·B as a new matrix, optionally folding the transcript: [`gemm_into`] without a pass
/// that zeroes C first (see [`matmul_with`]). With an epilogue, the pair driver's row-block
/// tasks zero their own rows of C as they start, in their caches; the paths that add into C
/// (column blocks, VNNI) zero it on all threads first.
pub fn gemm_new(
    a: &MatI8,
    b: &MatI8,
    transcript: Option<Transcript<'_>>,
    opts: GemmOptions<'_>,
) -> Result<MatI32, KernelError> {
    let (m, n) = (a.rows(), b.cols());
    let len = crate::matrix::checked_len(m, n)?;
    let mut c = Vec::with_capacity(len);
    product(a, b, Out::Fresh(&mut c.spare_capacity_mut()[..len]), transcript, opts)?;
    // SAFETY: `product` returned Ok, so its driver stored every entry of the m × n output (see
    // `Out::Fresh`), and the capacity holds `len` entries.
    unsafe { c.set_len(len) };
    MatI32::from_vec(m, n, c)
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
    let (m, n) = (a.rows(), b.cols());
    if c.rows() != m || c.cols() != n {
        return Err(KernelError::Shape(format!("output is {}x{}, product is {m}x{n}", c.rows(), c.cols())));
    }
    product(a, b, Out::Values(c.as_mut_slice()), transcript, opts)
}

/// A product's output: the a.rows() × b.cols() entries of C, row-major.
enum Out<'a> {
    /// A caller's matrix, overwritten.
    Values(&'a mut [i32]),
    /// Fresh memory. A driver either stores every entry, each before it reads it (the first
    /// k-panel's tiles are stored, not added to), or zeroes it first ([`Out::into_values`]).
    Fresh(&'a mut [MaybeUninit<i32>]),
}

impl<'a> Out<'a> {
    /// The output as values: fresh memory zeroed, by all threads (for the paths that add into C
    /// or hand tiles of it to an epilogue).
    fn into_values(self) -> &'a mut [i32] {
        match self {
            Out::Values(c) => c,
            Out::Fresh(c) => {
                c.par_chunks_mut(1 << 16).for_each(|chunk| chunk.fill(MaybeUninit::new(0)));
                // SAFETY: every entry was just written.
                unsafe { assume_values(c) }
            }
        }
    }
}

/// Fresh entries zeroed, as values.
fn zeroed(c: &mut [MaybeUninit<i32>]) -> &mut [i32] {
    c.fill(MaybeUninit::new(0));
    // SAFETY: every entry was just written.
    unsafe { assume_values(c) }
}

/// Entries as values.
///
/// # Safety
/// Every entry must hold a value (MaybeUninit<i32> has i32's layout).
unsafe fn assume_values(c: &mut [MaybeUninit<i32>]) -> &mut [i32] {
    // SAFETY: the layouts match, and the caller guarantees every entry is initialized.
    unsafe { &mut *(c as *mut [MaybeUninit<i32>] as *mut [i32]) }
}

/// An entry of C as a driver's tasks hold it: `i32` where C holds values, `MaybeUninit<i32>` in
/// fresh memory ([`Out::Fresh`]), which is read only where it was stored before.
trait Entry: Copy + Send + Sync {
    const ZERO: Self;
    fn new(v: i32) -> Self;
    /// The value stored here.
    ///
    /// # Safety
    /// A value must have been stored in this entry (always so for `i32`).
    unsafe fn value(self) -> i32;
    /// The entries' memory, for a SIMD kernel's stores and its loads of entries stored before.
    fn as_mut_ptr(c: &mut [Self]) -> *mut i32;
    /// The entries as values, where they are known to be: `None` for fresh memory (an epilogue
    /// gets tiles of C as values, so a driver zeroes fresh memory before it runs one).
    fn values(c: &mut [Self]) -> Option<&mut [i32]>;
}

impl Entry for i32 {
    const ZERO: Self = 0;
    fn new(v: i32) -> Self {
        v
    }
    unsafe fn value(self) -> i32 {
        self
    }
    fn as_mut_ptr(c: &mut [Self]) -> *mut i32 {
        c.as_mut_ptr()
    }
    fn values(c: &mut [Self]) -> Option<&mut [i32]> {
        Some(c)
    }
}

impl Entry for MaybeUninit<i32> {
    const ZERO: Self = MaybeUninit::new(0);
    fn new(v: i32) -> Self {
        MaybeUninit::new(v)
    }
    unsafe fn value(self) -> i32 {
        // SAFETY: the caller guarantees a value was stored.
        unsafe { self.assume_init() }
    }
    fn as_mut_ptr(c: &mut [Self]) -> *mut i32 {
        c.as_mut_ptr().cast()
    }
    fn values(_: &mut [Self]) -> Option<&mut [i32]> {
        None
    }
}

/// C = A·B into `out`, optionally folding the transcript (shapes of the output checked).
fn product(
    a: &MatI8,
    b: &MatI8,
    out: Out<'_>,
    transcript: Option<Transcript<'_>>,
    opts: GemmOptions<'_>,
) -> Result<(), KernelError> {
    check_exact(a, b)?;
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
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
            let product = Product {
                a: a.as_slice(),
                b: b.as_slice(),
                m,
                k,
                n,
                depth,
                kernel: tile,
                progress: opts.progress,
                epilogue: opts.epilogue,
            };
            vnni::gemm(&product, out.into_values(), states);
            return Ok(());
        }
        isa = Isa::Avx2;
    }

    let product = Product {
        a: a.as_slice(),
        b: b.as_slice(),
        m,
        k,
        n,
        depth,
        kernel: isa,
        progress: opts.progress,
        epilogue: opts.epilogue,
    };
    pairs::gemm(&product, out, states);
    Ok(())
}

/// One product as a driver gets it (the caller checked shapes, exactness and the CPU), with
/// the driver's choice of kernel: an [`Isa`] for the pair driver, a register tile for VNNI.
pub(super) struct Product<'a, K> {
    pub a: &'a [i8],
    pub b: &'a [i8],
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// Fold after every `depth` k-steps (even, dividing KC; a multiple of 4 for VNNI), or 0 for
    /// no transcript.
    pub depth: usize,
    pub kernel: K,
    pub progress: Option<&'a AtomicU64>,
    pub epilogue: Option<&'a (dyn Fn(TileMut<'_>) + Sync)>,
}

/// Where a driver's task writes: rows of C (row i at i · ldc) for the columns `cols` (local
/// column 0 is `cols.start`), and the fold states of their microtiles (`grid_cols` per microtile
/// row, local column 0 is the microtile at `cols.start`).
struct View<'a, T = i32> {
    c: &'a mut [T],
    ldc: usize,
    cols: Range<usize>,
    states: Option<&'a mut [FoldState]>,
    grid_cols: usize,
}

/// C and the fold-state grid, shared by column-block tasks under one lock.
type Target<'a> = Mutex<(&'a mut [i32], Option<&'a mut [FoldState]>)>;

/// A column-block task's private output, its block of C and of the fold-state grid: reused
/// from task to task by a thread and copied into place under one lock while the other threads
/// compute. (Fresh buffers per task, copied in one pass after all of them, left every thread
/// but one idle for that pass: a sixth of a 256×4096×4096 product.)
#[derive(Default)]
struct BlockOut {
    c: Vec<i32>,
    states: Vec<FoldState>,
}

impl BlockOut {
    /// A zeroed view of `rows` rows × the columns `cols`, with fold states when `folding`.
    fn view(&mut self, rows: usize, cols: Range<usize>, folding: bool) -> View<'_> {
        let (w, tile_cols) = (cols.len(), cols.len().div_ceil(NR));
        self.c.clear();
        self.c.resize(rows * w, 0);
        self.states.clear();
        if folding {
            self.states.resize(rows.div_ceil(MR) * tile_cols, [0u32; 8]);
        }
        View { c: &mut self.c[..], ldc: w, cols, states: folding.then_some(&mut self.states[..]), grid_cols: tile_cols }
    }

    /// Copies the block computed in the last view into C (n columns) at row `row0` and column
    /// `cols.start`, and its fold states into the grid (`grid_cols` microtiles a row).
    fn place(&self, target: &Target<'_>, n: usize, grid_cols: usize, row0: usize, cols: Range<usize>) {
        let (w, tile_cols) = (cols.len(), cols.len().div_ceil(NR));
        // A panic inside another task poisons the lock; the product is abandoned then anyway.
        let mut guard = target.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (c, states) = &mut *guard;
        for (i, row) in self.c.chunks_exact(w).enumerate() {
            let at = (row0 + i) * n + cols.start;
            c[at..at + w].copy_from_slice(row);
        }
        if let Some(states) = states.as_deref_mut() {
            for (r, row) in self.states.chunks_exact(tile_cols).enumerate() {
                let at = (row0 / MR + r) * grid_cols + cols.start / NR;
                states[at..at + tile_cols].copy_from_slice(row);
            }
        }
    }
}

/// The largest register tile of any kernel (12 × 32, AVX-512 VNNI).
const SCRATCH: usize = 12 * 32;

/// Runs `kernel(c, ldc)` on a register tile of `mr × nr` at the start of `c` (rows `ldc` apart)
/// of which `rows × cols` lie inside C: a whole tile directly, an edge tile through a scratch
/// tile (loaded from C when `load`, copied back after), so a kernel never writes outside C.
fn through_scratch<T: Entry>(
    c: &mut [T],
    ldc: usize,
    (rows, cols): (usize, usize),
    (mr, nr): (usize, usize),
    load: bool,
    kernel: impl FnOnce(&mut [T], usize),
) {
    if rows == mr && cols == nr {
        kernel(c, ldc);
        return;
    }
    // Zeroed only here: on every whole tile its 1.5 KB memset was 7% of a 2048³ product.
    let mut buf = [T::ZERO; SCRATCH];
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
