//! The AVX2 microkernel: a 6×16 int32 tile held in 12 ymm registers, fed by `vpmaddwd` on
//! sign-extended int8 pairs. `vpmaddwd` multiplies i16×i16 and adds adjacent pairs into i32, so
//! every int8 value including −128 is exact (the u8×i8 `vpmaddubsw` route saturates on −128);
//! both routes peak at 16 multiply-adds per multiplier µop on AVX2 without VNNI.

use std::arch::x86_64::*;

use super::fold::FoldState;
use super::{MR, NR};

/// Same contract as `portable::kernel_6x16`, on raw pointers.
///
/// # Safety
/// The CPU must support AVX2. `a` must hold `kp * 12` and `b` `kp * 32` i16 values; `c` must be
/// valid for writes of 6 rows of 16 i32 spaced `ldc` apart, and with `load` for reads of them
/// (holding values: it may be fresh memory otherwise, which is only written).
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn kernel_6x16(
    kp: usize,
    a: *const i16,
    b: *const i16,
    c: *mut i32,
    ldc: usize,
    load: bool,
    fold: Option<&mut FoldState>,
    step_pairs: usize,
) {
    let mut acc = [_mm256_setzero_si256(); 2 * MR];
    // C's rows sit ldc apart, usually out of L1 and L2: without a fold the tile is summed from
    // zero and C added at the end, its lines prefetched now, so no chain waits on a cache miss
    // at the start (1.01–1.02× at 1024³ on Zen 2). A fold needs the prefix sums, C included.
    let late = load && fold.is_none();
    if late {
        for i in 0..MR {
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc + NR - 1) as *const i8);
        }
    } else if load {
        for i in 0..MR {
            acc[2 * i] = _mm256_loadu_si256(c.add(i * ldc) as *const __m256i);
            acc[2 * i + 1] = _mm256_loadu_si256(c.add(i * ldc + 8) as *const __m256i);
        }
    }
    // The fold state lives in a register for the whole call.
    let mut state = match fold.as_deref() {
        Some(st) => _mm256_loadu_si256(st.as_ptr() as *const __m256i),
        None => _mm256_setzero_si256(),
    };
    let mut p = 0;
    while p < kp {
        let end = if step_pairs == 0 { kp } else { (p + step_pairs).min(kp) };
        while p < end {
            let bp = b.add(p * NR * 2);
            let b0 = _mm256_loadu_si256(bp as *const __m256i);
            let b1 = _mm256_loadu_si256(bp.add(16) as *const __m256i);
            let ap = a.add(p * MR * 2) as *const i32;
            for i in 0..MR {
                let av = _mm256_set1_epi32(ap.add(i).read_unaligned());
                acc[2 * i] = _mm256_add_epi32(acc[2 * i], _mm256_madd_epi16(av, b0));
                acc[2 * i + 1] = _mm256_add_epi32(acc[2 * i + 1], _mm256_madd_epi16(av, b1));
            }
            p += 1;
        }
        if fold.is_some() {
            state = fold_avx2(state, &acc);
        }
    }
    if let Some(st) = fold {
        _mm256_storeu_si256(st.as_mut_ptr() as *mut __m256i, state);
    }
    if late {
        for i in 0..MR {
            let (lo, hi) = (c.add(i * ldc) as *const __m256i, c.add(i * ldc + 8) as *const __m256i);
            acc[2 * i] = _mm256_add_epi32(acc[2 * i], _mm256_loadu_si256(lo));
            acc[2 * i + 1] = _mm256_add_epi32(acc[2 * i + 1], _mm256_loadu_si256(hi));
        }
    }
    for i in 0..MR {
        _mm256_storeu_si256(c.add(i * ldc) as *mut __m256i, acc[2 * i]);
        _mm256_storeu_si256(c.add(i * ldc + 8) as *mut __m256i, acc[2 * i + 1]);
    }
}

/// Lane-parallel form of `fold::fold_tile`: vector q is acc[q], which holds row q/2, columns
/// 8·(q%2)..8·(q%2)+8, exactly the v_q of the normative definition. The AVX-VNNI kernel's
/// 6×16 accumulators are the same vectors and fold through this too.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn fold_avx2(mut s: __m256i, acc: &[__m256i; 2 * MR]) -> __m256i {
    for (q, v) in acc.iter().enumerate() {
        s = if q % 2 == 0 { _mm256_xor_si256(s, *v) } else { _mm256_add_epi32(s, *v) };
    }
    s
}

/// Packs one k-pair of a whole 16-column micro-panel: rows t and t+1 of B's columns, as the 16
/// sign-extended pairs (B[t][j], B[t+1][j]) the kernel loads.
///
/// # Safety
/// The CPU must support AVX2.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn pack_b_pair(row0: &[i8; NR], row1: &[i8; NR], out: &mut [i16; 2 * NR]) {
    let r0 = _mm_loadu_si128(row0.as_ptr() as *const __m128i);
    let r1 = _mm_loadu_si128(row1.as_ptr() as *const __m128i);
    let lo = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(r0, r1));
    let hi = _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(r0, r1));
    _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, lo);
    _mm256_storeu_si256(out.as_mut_ptr().add(NR) as *mut __m256i, hi);
}

/// Packs eight k-pairs of a whole 6-row micro-panel of A: from each row's 16 bytes, the 8
/// sign-extended pairs (A[i][2p], A[i][2p+1]), written pair by pair as the kernel broadcasts
/// them (pair p's six 32-bit words at 6p). The rows' pair words are transposed by unpacks.
///
/// # Safety
/// The CPU must support AVX2.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn pack_a_pairs8(rows: [&[i8; 16]; MR], out: &mut [i16; 8 * MR * 2]) {
    let w: [__m256i; MR] =
        std::array::from_fn(|i| _mm256_cvtepi8_epi16(_mm_loadu_si128(rows[i].as_ptr() as *const __m128i)));
    // Per 128-bit lane (pairs 0..4 low, 4..8 high): t0 = rows 0,1 of pairs 0,1; t1 of pairs 2,3.
    let (t0, t1) = (_mm256_unpacklo_epi32(w[0], w[1]), _mm256_unpackhi_epi32(w[0], w[1]));
    let (t2, t3) = (_mm256_unpacklo_epi32(w[2], w[3]), _mm256_unpackhi_epi32(w[2], w[3]));
    let (t4, t5) = (_mm256_unpacklo_epi32(w[4], w[5]), _mm256_unpackhi_epi32(w[4], w[5]));
    // Rows 0..4 of pairs 0, 1, 2, 3 (and 4..8 in the high lanes).
    let u = [
        _mm256_unpacklo_epi64(t0, t2),
        _mm256_unpackhi_epi64(t0, t2),
        _mm256_unpacklo_epi64(t1, t3),
        _mm256_unpackhi_epi64(t1, t3),
    ];
    let dst = out.as_mut_ptr() as *mut i32;
    for half in 0..2 {
        let (lo4, hi4) = if half == 0 {
            (_mm256_castsi256_si128(t4), _mm256_castsi256_si128(t5))
        } else {
            (_mm256_extracti128_si256::<1>(t4), _mm256_extracti128_si256::<1>(t5))
        };
        for (j, v) in u.iter().enumerate() {
            let rows03 = if half == 0 { _mm256_castsi256_si128(*v) } else { _mm256_extracti128_si256::<1>(*v) };
            // Rows 4 and 5 of pair j: the low or high 64 bits of t4 (pairs 0, 1) or t5 (2, 3).
            let rows45 = match j {
                0 => lo4,
                1 => _mm_unpackhi_epi64(lo4, lo4),
                2 => hi4,
                _ => _mm_unpackhi_epi64(hi4, hi4),
            };
            let at = dst.add((half * 4 + j) * MR);
            _mm_storeu_si128(at as *mut __m128i, rows03);
            _mm_storel_epi64(at.add(4) as *mut __m128i, rows45);
        }
    }
}
