//! This CPU's int8 multiply-add peak, measured rather than looked up.
//!
//! On AVX2 without VNNI every int8 product route ends in a multiplier µop that does 16
//! multiply-adds (`vpmaddwd` on i16 pairs, or `vpmaddubsw` plus the `vpmaddwd` that widens it).
//! The peak is therefore "multiplier µops per cycle × 16 × clock × cores". Rather than trusting a
//! datasheet (a VM's clock is not its nominal one), we time a register-only loop of independent
//! `vpmaddwd` + `vpaddd` chains (no memory traffic, no dependence stalls) on every core at once:
//! no real kernel can beat it, so kernel ÷ peak is an honest efficiency.

use std::time::Instant;

use rayon::prelude::*;

/// Measured multiply-adds per second of the register-only loop on all rayon threads.
/// Returns `None` where there is no AVX2 (the portable kernel has no meaningful SIMD peak).
pub fn measure_int8_peak(duration_ms: u64) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        let threads = rayon::current_num_threads();
        let per_thread: Vec<f64> = (0..threads)
            .into_par_iter()
            .map(|_| {
                let iters = 1u64 << 16;
                // Warm up, then time repeated batches until the budget is spent; keep the best.
                // SAFETY: AVX2 was detected above.
                unsafe { avx2_madd_loop(iters) };
                let start = Instant::now();
                let mut best = 0f64;
                while start.elapsed().as_millis() < duration_ms as u128 {
                    let t = Instant::now();
                    let sink = unsafe { avx2_madd_loop(iters) };
                    std::hint::black_box(sink);
                    let rate = (iters * MADDS_PER_ITER) as f64 / t.elapsed().as_secs_f64();
                    best = best.max(rate);
                }
                best
            })
            .collect();
        return Some(per_thread.iter().sum());
    }
    let _ = duration_ms;
    None
}

/// Independent chains × 16 multiply-adds per `vpmaddwd` (14 measured the same as 12: the loop is
/// bound by multiplier throughput, not latency).
const CHAINS: usize = 14;
const MADDS_PER_ITER: u64 = CHAINS as u64 * 16;

/// Each chain multiplies its own accumulator (reinterpreted as i16 pairs) by a constant and adds
/// the result back: distinct `vpmaddwd`s that no compiler can share or hoist.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2_madd_loop(iters: u64) -> i32 {
    use std::arch::x86_64::*;
    let w = _mm256_set1_epi16(std::hint::black_box(3));
    let mut acc = [_mm256_setzero_si256(); CHAINS];
    for (i, v) in acc.iter_mut().enumerate() {
        *v = _mm256_set1_epi32(std::hint::black_box(i as i32 + 1));
    }
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_add_epi32(*v, _mm256_madd_epi16(*v, w));
        }
    }
    let mut total = _mm256_setzero_si256();
    for v in acc {
        total = _mm256_add_epi32(total, v);
    }
    _mm256_extract_epi32(total, 0)
}
