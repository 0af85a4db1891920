//! The driver of the i16-pair kernels (AVX2 `vpmaddwd` and the portable one): both operands
//! packed as sign-extended i16 pairs (t, t+1), B into k-panels × micro-panels of
//! `NR` columns, A into micro-panels of `MR` rows, and the 6×16 microkernel run over every
//! (micro-panel of A, micro-panel of B) with the B micro-panel hot in L1.
//!
//! Two ways to split the work across threads, both measured on Zen 2 (AVX2 only):
//! - **Row blocks** when there are rows enough: B packed once and shared, each task a block of
//!   rows of C. The blocks come out even on the threads (1024 rows in blocks of 96 are 11 tasks,
//!   and one thread ran 6 of them while the other idled through the last): see
//!   [`even_row_blocks`].
//! - **Column blocks** for few-row products (256×4096×4096): row blocks could not keep the
//!   threads busy (three tasks of 96 rows on two threads), so each task takes at most 256
//!   columns of C, packs its own columns of B panel by panel into a buffer it reuses (B is read
//!   once in all, with no 32 MB buffer to page in), computes into a [`BlockOut`] and copies it
//!   into C under a lock.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use rayon::prelude::*;

use super::fold::FoldState;
use super::{through_scratch, zeroed, BlockOut, Entry, Isa, Out, TileMut, View, KC, MC, MR, NR};

/// Depth of the row blocks' k-panels. Each panel loads and stores every C tile once more, from
/// rows `n` i32s apart; on Zen 2, 2048-deep panels ran 1.03–1.05× faster than 512-deep ones at
/// 1024³, 2048³ and 4096³, and 1.06–1.07× faster than 256-deep ones.
const KA_ROWS: usize = 2048;
/// Depth of the column blocks' k-panels: at 256×4096×4096 on Zen 2, 1024-deep panels ran 1.01×
/// faster than 512-deep and 1.08× faster than 256-deep ones.
const KA_COLS: usize = 1024;

const _: () = assert!(KA_ROWS.is_multiple_of(KC) && KA_COLS.is_multiple_of(KC) && MC.is_multiple_of(24));

/// One product on a pair kernel.
pub(super) type Product<'a> = super::Product<'a, Isa>;

/// Row blocks of whole microtile rows, at most about `MC` high, the same number for every
/// thread and their heights within one microtile row of each other. (Blocks of one fixed height
/// leave a thread a block more, or a short one: 1024 rows in 48s are 22 blocks, the last of 16
/// rows, and 11 blocks of 48 on one thread took 528 rows' time for 512 rows' work. Even blocks
/// ran 1.02–1.04× faster at 1024³ and 600×1000×1000, 1.02× at 2048³.)
fn even_row_blocks(m: usize, threads: usize) -> Vec<Range<usize>> {
    let micro_rows = m.div_ceil(MR);
    let blocks = (threads * m.div_ceil(threads).div_ceil(MC)).clamp(1, micro_rows.max(1));
    (0..blocks).map(|i| (i * micro_rows / blocks * MR)..((i + 1) * micro_rows / blocks * MR).min(m)).collect()
}

pub(super) fn gemm(p: &Product<'_>, out: Out<'_>, states: Option<&mut [FoldState]>) {
    let (m, n) = (p.m, p.n);
    let grid_cols = n.div_ceil(NR);
    let threads = rayon::current_num_threads();
    let row_blocks = even_row_blocks(m, threads);
    if row_blocks.len() >= 4 * threads || n <= NR {
        // Fresh memory stays as it is unless an epilogue is to get tiles of it as values; then
        // each task zeroes its rows as it starts (in its cache, where a pass over all of C
        // before the product went out to memory and back).
        match out {
            Out::Fresh(c) if p.epilogue.is_none() => row_blocks_product(p, row_blocks, c, states, |c| c),
            Out::Fresh(c) => row_blocks_product(p, row_blocks, c, states, zeroed),
            Out::Values(c) => row_blocks_product(p, row_blocks, c, states, |c| c),
        }
        return;
    }
    let c = out.into_values();
    // Column blocks of whole micro-panels, at most 256 wide, and row blocks of at most 384 rows:
    // each row block packs all of B once more, and at 256×4096×4096 one block of 256 rows ran
    // 1.05× faster than two of 128 (128-wide column blocks were 1.02× slower).
    let row_blocks = m.div_ceil(4 * MC);
    let rows_per = m.div_ceil(row_blocks).div_ceil(MR) * MR;
    let col_blocks = (4 * threads).div_ceil(row_blocks).max(n.div_ceil(256));
    let width = n.div_ceil(NR).div_ceil(col_blocks) * NR;
    let blocks: Vec<(Range<usize>, Range<usize>)> = (0..m)
        .step_by(rows_per)
        .flat_map(|r0| (0..n).step_by(width).map(move |c0| (r0..(r0 + rows_per).min(m), c0..(c0 + width).min(n))))
        .collect();
    // A packed once, per row block and k-panel, for all the column blocks to share.
    let panels = k_panels(p.k, KA_COLS);
    let packed_a: Vec<Vec<i16>> = (0..m)
        .step_by(rows_per)
        .flat_map(|r0| panels.iter().map(move |&pc| (r0, pc)))
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|(r0, pc)| {
            let (mc, kc) = ((m - r0).min(rows_per), (p.k - pc).min(KA_COLS));
            let mut out = vec![0i16; mc.div_ceil(MR) * MR * kc.div_ceil(2) * 2];
            pack_a(p.kernel, p.a, p.k, r0, mc, pc, kc, &mut out);
            out
        })
        .collect();
    let folding = states.is_some();
    let target = Mutex::new((c, states));
    blocks.into_par_iter().for_each_init(
        || (Vec::new(), BlockOut::default()),
        |(own_b, out), (rows, cols)| {
            let view = out.view(rows.len(), cols.clone(), folding);
            let a = &packed_a[rows.start / rows_per * panels.len()..][..panels.len()];
            block_product(p, rows.clone(), KA_COLS, (APanels::Shared(a), BPanels::Own(own_b)), view);
            out.place(&target, n, grid_cols, rows.start, cols);
        },
    );
}

/// The product by row blocks (`blocks`, covering the rows of C in order): all of B packed once,
/// each block's rows of C, and of the fold-state grid, one task's, which takes its rows of C
/// through `own` first.
fn row_blocks_product<T: Send, U: Entry>(
    p: &Product<'_>,
    blocks: Vec<Range<usize>>,
    c: &mut [T],
    states: Option<&mut [FoldState]>,
    own: fn(&mut [T]) -> &mut [U],
) {
    let (n, grid_cols) = (p.n, p.n.div_ceil(NR));
    let packed = pack_b(p.kernel, p.b, p.k, n, KA_ROWS);
    // Whole micro-panels: the last block may end inside one.
    let tallest = blocks.iter().map(|rows| rows.len().div_ceil(MR) * MR).max().unwrap_or(0);
    let mut tasks = Vec::with_capacity(blocks.len());
    let (mut c_rest, mut states_rest) = (c, states);
    for rows in blocks {
        let (c_rows, tail) = std::mem::take(&mut c_rest).split_at_mut(rows.len() * n);
        c_rest = tail;
        let states = states_rest.take().map(|s| {
            let (here, tail) = s.split_at_mut(rows.len().div_ceil(MR) * grid_cols);
            states_rest = Some(tail);
            here
        });
        tasks.push((rows, c_rows, states));
    }
    // Every entry of C is in one task's rows (fresh memory needs each stored).
    assert!(c_rest.is_empty(), "row blocks cover the rows of C");
    tasks.into_par_iter().for_each_init(
        || vec![0i16; tallest * KA_ROWS],
        |apack, (rows, c_rows, states)| {
            let view = View { c: own(c_rows), ldc: n, cols: 0..n, states, grid_cols };
            block_product(p, rows, KA_ROWS, (APanels::Pack(apack), BPanels::Shared(&packed)), view);
        },
    );
}

/// Where a task's A micro-panels come from.
enum APanels<'a> {
    /// Packed here, into this buffer, for each k-panel.
    Pack(&'a mut [i16]),
    /// The task's rows, packed, one buffer per k-panel.
    Shared(&'a [Vec<i16>]),
}

/// The first k-step of each k-panel `depth` deep.
fn k_panels(k: usize, depth: usize) -> Vec<usize> {
    (0..k).step_by(depth).collect()
}

/// Where a task's B micro-panels come from.
enum BPanels<'a> {
    /// All of B, packed once for the product.
    Shared(&'a PackedB),
    /// Packed here, for the task's columns, k-panel by k-panel.
    Own(&'a mut Vec<i16>),
}

/// One k-panel of B as a task reads it.
#[derive(Clone, Copy)]
enum BPanel<'a> {
    Shared(&'a PackedB),
    /// The task's own micro-panels, from its first column on.
    Own(&'a [i16]),
}

/// The view's block of C = rows × the view's columns, over every k-panel `depth` deep (as the
/// sources are packed): for each micro-panel of B, across the task's micro-panels of A (B's in
/// L1, A's from L2). The first k-panel stores every tile of the block, the later ones add to it.
fn block_product<T: Entry>(
    p: &Product<'_>,
    rows: Range<usize>,
    depth: usize,
    sources: (APanels<'_>, BPanels<'_>),
    view: View<'_, T>,
) {
    let (mut a_src, mut b_src) = sources;
    let View { c, ldc, cols, mut states, grid_cols } = view;
    let (k, n) = (p.k, p.n);
    let (row0, mc) = (rows.start, rows.len());
    debug_assert!(cols.start.is_multiple_of(NR) && row0.is_multiple_of(MR));
    let (a_panels, jp0) = (mc.div_ceil(MR), cols.start / NR);
    let b_panels = cols.len().div_ceil(NR);
    let step_pairs = p.depth / 2;
    for (panel, pc) in k_panels(k, depth).into_iter().enumerate() {
        let kc = (k - pc).min(depth);
        let kp = kc.div_ceil(2);
        let micro = kp * NR * 2;
        let apack: &[i16] = match &mut a_src {
            APanels::Pack(buf) => {
                pack_a(p.kernel, p.a, k, row0, mc, pc, kc, buf);
                buf
            }
            APanels::Shared(panels) => &panels[panel],
        };
        let bpanel = match &mut b_src {
            BPanels::Shared(all) => BPanel::Shared(all),
            BPanels::Own(own) => {
                own.clear();
                own.resize(b_panels * micro, 0);
                pack_b_block(p.kernel, p.b, n, pc, kc, cols.start, own);
                BPanel::Own(&own[..])
            }
        };
        for jp in 0..b_panels {
            let bmicro = match bpanel {
                BPanel::Shared(all) => all.micro(panel, jp0 + jp, micro),
                BPanel::Own(own) => &own[jp * micro..(jp + 1) * micro],
            };
            for ip in 0..a_panels {
                let amicro = &apack[ip * kp * MR * 2..(ip + 1) * kp * MR * 2];
                let fold = states.as_deref_mut().map(|s| &mut s[ip * grid_cols + jp]);
                let (r0, c0) = (ip * MR, jp * NR);
                let (tile_rows, tile_cols) = ((mc - r0).min(MR), (cols.len() - c0).min(NR));
                let tile = &mut c[r0 * ldc + c0..];
                through_scratch(tile, ldc, (tile_rows, tile_cols), (MR, NR), pc > 0, |c, ldc| {
                    // SAFETY: the tile is loaded only after the first k-panel, which stored it.
                    unsafe { kernel(p.kernel, kp, amicro, bmicro, c, ldc, pc > 0, fold, step_pairs) }
                });
                if let (Some(epilogue), true) = (p.epilogue, pc + kc == k) {
                    let (row0, col0) = (row0 + r0, cols.start + c0);
                    let c = T::values(tile).expect("gemm zeroes fresh memory for an epilogue");
                    epilogue(TileMut { row0, col0, rows: tile_rows, cols: tile_cols, c, ldc });
                }
            }
        }
        if let Some(progress) = p.progress {
            progress.fetch_add((mc * kc * cols.len()) as u64, Ordering::Relaxed);
        }
    }
}

/// The tile on the product's kernel.
///
/// # Safety
/// With `load`, C's tile must hold values (a caller's, or stored by an earlier k-panel).
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<T: Entry>(
    isa: Isa,
    kp: usize,
    a: &[i16],
    b: &[i16],
    c: &mut [T],
    ldc: usize,
    load: bool,
    fold: Option<&mut FoldState>,
    step_pairs: usize,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            assert!(a.len() >= kp * MR * 2 && b.len() >= kp * NR * 2);
            assert!(c.len() >= (MR - 1) * ldc + NR);
            // SAFETY: AVX2 was detected in gemm::product; the asserts above bound every access; C is
            // read only with `load`, when it holds values (this function's contract).
            unsafe {
                super::avx2::kernel_6x16(kp, a.as_ptr(), b.as_ptr(), T::as_mut_ptr(c), ldc, load, fold, step_pairs)
            }
        }
        // SAFETY: this function's contract is the portable kernel's.
        _ => unsafe { super::portable::kernel_6x16(kp, a, b, c, ldc, load, fold, step_pairs) },
    }
}

/// Runs of micro-panels packed per B k-panel.
const RUN: usize = 16;

/// All of B packed for the row blocks: for each k-panel, runs of up to [`RUN`] micro-panels, each
/// run a buffer of its own, packed (and zeroed) by the threads in parallel; one buffer for all
/// was zeroed on one thread while the others waited.
struct PackedB {
    runs: Vec<Vec<i16>>,
    runs_per_panel: usize,
}

impl PackedB {
    /// Micro-panel `jp` of k-panel `panel`, `micro` values long.
    fn micro(&self, panel: usize, jp: usize, micro: usize) -> &[i16] {
        let run = &self.runs[panel * self.runs_per_panel + jp / RUN];
        &run[(jp % RUN) * micro..(jp % RUN + 1) * micro]
    }
}

/// Packs all of B into k-panels of `depth` rows: per micro-panel of NR columns, per k-pair p, the
/// 16 column pairs (B[2p][j], B[2p+1][j]) as i16, zero-padded past k and n.
fn pack_b(isa: Isa, b: &[i8], k: usize, n: usize, depth: usize) -> PackedB {
    let b_panels = n.div_ceil(NR);
    let runs_per_panel = b_panels.div_ceil(RUN);
    let runs = (0..k)
        .step_by(depth)
        .flat_map(|pc| (0..b_panels).step_by(RUN).map(move |jp| (pc, jp)))
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|(pc, jp)| {
            let kc = (k - pc).min(depth);
            let mut run = vec![0i16; kc.div_ceil(2) * NR * 2 * (b_panels - jp).min(RUN)];
            pack_b_block(isa, b, n, pc, kc, jp * NR, &mut run);
            run
        })
        .collect();
    PackedB { runs, runs_per_panel }
}

/// Consecutive micro-panels of B: rows pc..pc+kc, columns from c0 (zero past n), as i16 column
/// pairs, micro-panel after micro-panel; `dst` holds whole micro-panels of ⌈kc/2⌉ · 32 values
/// and is overwritten. It walks B's rows in order, each pair of rows across every micro-panel:
/// walking one micro-panel's 16 bytes down the rows instead touched a line per row at a
/// power-of-two stride (the same L1 and L2 sets) and fetched each line four times, from L3
/// (packing was an eighth of 256×4096×4096). Whole pairs of whole micro-panels go through AVX2
/// where the kernel is AVX2.
#[allow(clippy::too_many_arguments)]
fn pack_b_block(isa: Isa, b: &[i8], n: usize, pc: usize, kc: usize, c0: usize, dst: &mut [i16]) {
    let micro = kc.div_ceil(2) * NR * 2;
    let panels = dst.len() / micro;
    let width = (panels * NR).min(n - c0);
    for p in 0..kc.div_ceil(2) {
        let t0 = pc + 2 * p;
        // The rows four pairs on, requested now: each row of a column block is a page of its own
        // for B 4096 wide, and waiting on them was most of the packing (1.07× at 256×4096×4096).
        #[cfg(target_arch = "x86_64")]
        if t0 + 9 < pc + kc {
            for at in [(t0 + 8) * n + c0, (t0 + 9) * n + c0] {
                for off in (0..width).step_by(64) {
                    // SAFETY: a prefetch reads nothing; the address is inside b (row < pc + kc).
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(b.as_ptr().add(at + off)) };
                }
            }
        }
        for jp in 0..panels {
            let pair = &mut dst[jp * micro + p * NR * 2..jp * micro + (p + 1) * NR * 2];
            let c = c0 + jp * NR;
            let cols = (n - c).min(NR);
            #[cfg(target_arch = "x86_64")]
            if isa == Isa::Avx2 && cols == NR && 2 * p + 1 < kc {
                let row = |t: usize| -> &[i8; NR] { b[t * n + c..t * n + c + NR].try_into().expect("16 columns") };
                let out: &mut [i16; 2 * NR] = pair.try_into().expect("16 pairs");
                // SAFETY: the kernel is AVX2, which gemm::product checked this CPU has.
                unsafe { super::avx2::pack_b_pair(row(t0), row(t0 + 1), out) };
                continue;
            }
            pair.fill(0);
            for (j, &v) in b[t0 * n + c..t0 * n + c + cols].iter().enumerate() {
                pair[2 * j] = v as i16;
            }
            if 2 * p + 1 < kc {
                for (j, &v) in b[(t0 + 1) * n + c..(t0 + 1) * n + c + cols].iter().enumerate() {
                    pair[2 * j + 1] = v as i16;
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
}

/// Packs rows row0..row0+mc, columns pc..pc+kc of A into micro-panels of MR rows: for each k-pair
/// p, the 6 row pairs (A[i][2p], A[i][2p+1]) as i16, zero-padded past mc and kc. Written pair by
/// pair, 12 values at a time, from the six rows read side by side (row by row, the writes were
/// 24 bytes apart: 2.3% of a 1024³ product).
#[allow(clippy::too_many_arguments)]
fn pack_a(isa: Isa, a: &[i8], k: usize, row0: usize, mc: usize, pc: usize, kc: usize, out: &mut [i16]) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    let kp = kc.div_ceil(2);
    let whole = kc / 2;
    for (ip, panel) in out[..mc.div_ceil(MR) * kp * MR * 2].chunks_exact_mut(kp * MR * 2).enumerate() {
        let rows: [&[i8]; MR] = std::array::from_fn(|i| {
            let r = ip * MR + i;
            if r < mc {
                &a[(row0 + r) * k + pc..(row0 + r) * k + pc + kc]
            } else {
                &[]
            }
        });
        let (body, tail) = panel.split_at_mut(whole * MR * 2);
        // Whole micro-panels, eight pairs at a time, through AVX2 where the kernel is AVX2.
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx2 && rows.iter().all(|r| !r.is_empty()) {
            for (q, eight) in body.chunks_exact_mut(8 * MR * 2).enumerate() {
                let at = |i: usize| -> &[i8; 16] { rows[i][16 * q..16 * q + 16].try_into().expect("16 bytes") };
                let out: &mut [i16; 8 * MR * 2] = eight.try_into().expect("8 pairs of 6 rows");
                // SAFETY: the kernel is AVX2, which gemm::product checked this CPU has.
                unsafe { super::avx2::pack_a_pairs8(std::array::from_fn(at), out) };
                done = 8 * (q + 1);
            }
        }
        for (p, pairs) in body.chunks_exact_mut(MR * 2).enumerate().skip(done) {
            for (i, row) in rows.iter().enumerate() {
                let (x, y) = match row.get(2 * p..2 * p + 2) {
                    Some(&[x, y]) => (x as i16, y as i16),
                    _ => (0, 0),
                };
                pairs[2 * i] = x;
                pairs[2 * i + 1] = y;
            }
        }
        // An odd kc leaves a last half pair.
        if !tail.is_empty() {
            for (i, row) in rows.iter().enumerate() {
                tail[2 * i] = row.get(kc - 1).map_or(0, |&v| v as i16);
                tail[2 * i + 1] = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_blocks_cover_the_rows_and_share_out_evenly() {
        for m in [1, 5, 6, 7, 100, 256, 1000, 1024, 2048, 4096, 5000] {
            for threads in [1, 2, 3, 8] {
                let blocks = even_row_blocks(m, threads);
                // Contiguous from 0 to m, each starting on a microtile row.
                assert_eq!(blocks.first().map(|r| r.start), Some(0), "{m} rows, {threads} threads");
                assert_eq!(blocks.last().map(|r| r.end), Some(m));
                assert!(blocks.windows(2).all(|w| w[0].end == w[1].start && !w[1].is_empty()));
                assert!(blocks.iter().all(|r| r.start % MR == 0 && r.len() <= MC + MR));
                // Whole blocks differ by at most one microtile row; the count is even on the
                // threads whenever every thread can have one.
                let whole: Vec<usize> = blocks.iter().filter(|r| r.end < m).map(|r| r.len()).collect();
                if let (Some(lo), Some(hi)) = (whole.iter().min(), whole.iter().max()) {
                    assert!(hi - lo <= MR, "{m} rows, {threads} threads: {blocks:?}");
                }
                if m.div_ceil(MR) >= threads {
                    assert_eq!(blocks.len() % threads, 0, "{m} rows, {threads} threads");
                }
            }
        }
        // 1024 rows on 2 threads: 12 blocks of 84 or 90 rows, 6 to a thread.
        let blocks = even_row_blocks(1024, 2);
        assert_eq!(blocks.len(), 12);
        assert!(blocks.iter().all(|r| r.len() == 84 || r.len() == 90 || r.end == 1024));
    }
}
