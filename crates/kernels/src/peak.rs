//! This CPU's int8 multiply-add peak, measured rather than looked up, with the best exact int8
//! instruction the machine has.
//!
//! The peak is "dot-product µops per cycle × multiply-adds per µop × clock × cores". We do not
//! trust a datasheet (a VM's clock is not its nominal one). Instead we time a register-only loop of
//! independent accumulator chains on every thread at once: no memory traffic and no dependence
//! stalls, so no real kernel can beat it, and kernel ÷ peak is an honest efficiency. The
//! instruction is the best one [`Isa::detect`] finds:
//! - `vpdpbusd` on zmm (AVX-512 VNNI): 64 multiply-adds;
//! - `vpdpbusd` on ymm (AVX-VNNI): 32;
//! - `vpmaddwd` on ymm (AVX2): 16, plus the `vpaddd` that accumulates them.
//!
//! The AVX2 kernel's own instruction therefore no longer sets the bar on a VNNI machine.

use std::time::Instant;

use rayon::prelude::*;

use crate::gemm::Isa;

/// A measured peak and where it came from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Peak {
    pub macs_per_s: f64,
    pub isa: Isa,
    /// The loop that was timed, in words.
    pub method: &'static str,
}

/// The int8 peak of the best instruction this CPU has, measured on all rayon threads for about
/// `duration_ms` (best batch per thread). `None` on the portable kernel: it has no SIMD peak.
pub fn measure_int8_peak(duration_ms: u64) -> Option<Peak> {
    measure_int8_peak_of(Isa::detect(), duration_ms)
}

/// The peak of `isa`'s instruction (`None` for the portable kernel or an unsupported ISA).
pub fn measure_int8_peak_of(isa: Isa, duration_ms: u64) -> Option<Peak> {
    #[cfg(target_arch = "x86_64")]
    {
        if isa == Isa::Portable || !isa.supported() {
            return None;
        }
        let (per_iter, method) = match isa {
            Isa::Avx512Vnni => (
                CHAINS as u64 * 64,
                "register-only loop of independent vpdpbusd zmm chains (AVX-512 VNNI, 64 int8 multiply-adds each) on every thread, best batch",
            ),
            Isa::AvxVnni => (
                CHAINS as u64 * 32,
                "register-only loop of independent vpdpbusd ymm chains (AVX-VNNI, 32 int8 multiply-adds each) on every thread, best batch",
            ),
            _ => (
                CHAINS as u64 * 16,
                "register-only loop of independent vpmaddwd+vpaddd ymm chains (AVX2, 16 multiply-adds each) on every thread, best batch",
            ),
        };
        let threads = rayon::current_num_threads();
        let per_thread: Vec<f64> = (0..threads)
            .into_par_iter()
            .map(|_| {
                let iters = 1u64 << 16;
                // SAFETY: `isa.supported()` was checked above, so its instructions exist.
                let run = || unsafe {
                    match isa {
                        Isa::Avx512Vnni => zmm_dpbusd_loop(iters),
                        Isa::AvxVnni => ymm_dpbusd_loop(iters),
                        _ => avx2_madd_loop(iters),
                    }
                };
                // Warm up, then time repeated batches until the budget is spent; keep the best.
                std::hint::black_box(run());
                let start = Instant::now();
                let mut best = 0f64;
                while start.elapsed().as_millis() < duration_ms as u128 {
                    let t = Instant::now();
                    std::hint::black_box(run());
                    best = best.max((iters * per_iter) as f64 / t.elapsed().as_secs_f64());
                }
                best
            })
            .collect();
        Some(Peak { macs_per_s: per_thread.iter().sum(), isa, method })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, duration_ms);
        None
    }
}

/// Independent chains per loop: more than latency × throughput of every instruction here (14
/// measured the same as 12 for vpmaddwd: the loops are bound by throughput, not latency).
const CHAINS: usize = 14;

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

/// `vpdpbusd` zmm chains: acc += u8 · s8 in groups of four, on constant operands (the instruction
/// costs the same whatever the bytes are).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn zmm_dpbusd_loop(iters: u64) -> i32 {
    use std::arch::x86_64::*;
    let u = _mm512_set1_epi32(std::hint::black_box(0x0302_0101));
    let s = _mm512_set1_epi32(std::hint::black_box(0x01ff_0201));
    let mut acc = [_mm512_setzero_si512(); CHAINS];
    for (i, v) in acc.iter_mut().enumerate() {
        *v = _mm512_set1_epi32(std::hint::black_box(i as i32));
    }
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_dpbusd_epi32(*v, u, s);
        }
    }
    let mut total = _mm512_setzero_si512();
    for v in acc {
        total = _mm512_add_epi32(total, v);
    }
    _mm512_reduce_add_epi32(total)
}

/// `vpdpbusd` ymm chains (the VEX-encoded AVX-VNNI form).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn ymm_dpbusd_loop(iters: u64) -> i32 {
    use std::arch::x86_64::*;
    let u = _mm256_set1_epi32(std::hint::black_box(0x0302_0101));
    let s = _mm256_set1_epi32(std::hint::black_box(0x01ff_0201));
    let mut acc = [_mm256_setzero_si256(); CHAINS];
    for (i, v) in acc.iter_mut().enumerate() {
        *v = _mm256_set1_epi32(std::hint::black_box(i as i32));
    }
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_dpbusd_avx_epi32(*v, u, s);
        }
    }
    let mut total = _mm256_setzero_si256();
    for v in acc {
        total = _mm256_add_epi32(total, v);
    }
    _mm256_extract_epi32(total, 0)
}
