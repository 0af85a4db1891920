//! The portable microkernel: plain Rust over the same packed layout as the AVX2 one. It is the
//! fallback on CPUs without AVX2 and the second opinion the SIMD kernel is tested against.

use super::fold::{fold_tile, FoldState};
use super::{Entry, MR, NR};

/// acc (6×16, loaded from `c` when `load`) += Σ_p A_p ⊗ B_p over `kp` packed k-pairs, folding the
/// running tile into `fold` after every `step_pairs` k-pairs and after a trailing partial step.
///
/// # Safety
/// With `load`, C's tile must hold values (a caller's, or stored by an earlier k-panel).
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn kernel_6x16<T: Entry>(
    kp: usize,
    a: &[i16],
    b: &[i16],
    c: &mut [T],
    ldc: usize,
    load: bool,
    mut fold: Option<&mut FoldState>,
    step_pairs: usize,
) {
    assert!(a.len() >= kp * MR * 2 && b.len() >= kp * NR * 2);
    assert!(c.len() >= (MR - 1) * ldc + NR);
    let mut acc = [[0i32; NR]; MR];
    if load {
        for (i, row) in acc.iter_mut().enumerate() {
            for (v, entry) in row.iter_mut().zip(&c[i * ldc..i * ldc + NR]) {
                // SAFETY: with `load` the tile holds values (this function's contract).
                *v = unsafe { entry.value() };
            }
        }
    }
    let mut p = 0;
    while p < kp {
        let end = if step_pairs == 0 { kp } else { (p + step_pairs).min(kp) };
        for q in p..end {
            let bq = &b[q * NR * 2..(q + 1) * NR * 2];
            let aq = &a[q * MR * 2..(q + 1) * MR * 2];
            for (i, row) in acc.iter_mut().enumerate() {
                let (a0, a1) = (aq[2 * i] as i32, aq[2 * i + 1] as i32);
                for (j, v) in row.iter_mut().enumerate() {
                    *v = v.wrapping_add(a0 * bq[2 * j] as i32 + a1 * bq[2 * j + 1] as i32);
                }
            }
        }
        if let Some(state) = fold.as_deref_mut() {
            fold_tile(state, &acc);
        }
        p = end;
    }
    for (i, row) in acc.iter().enumerate() {
        for (entry, &v) in c[i * ldc..i * ldc + NR].iter_mut().zip(row) {
            *entry = T::new(v);
        }
    }
}
