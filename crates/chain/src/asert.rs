//! ASERT difficulty (the "aserti3-2d" rule of Bitcoin Cash and BTX), in integers.
//!
//! Each block's difficulty follows from one anchor (genesis) and how far the chain runs ahead of
//! or behind schedule: D = D_anchor · 2^((T·Δh − Δt) / half_life), where Δt and Δh are the
//! parent's time and height minus the anchor's (the genesis block, whose own time is the
//! schedule's origin: a parent exactly on schedule gives exactly the anchor difficulty). Blocks arriving faster than the target raise the
//! difficulty exponentially, slower ones lower it; no window, so no oscillation. Difficulty here
//! is expected multiply-adds per block (the inverse of a hash target), hence the sign.

use crate::params::ChainParams;

/// The block the schedule is measured from (genesis).
#[derive(Clone, Copy, Debug)]
pub struct Anchor {
    pub difficulty: u64,
    pub time_ms: u64,
    pub height: u64,
}

/// The next block's difficulty given the anchor and the parent's time and height.
pub fn next_difficulty(anchor: Anchor, parent_time_ms: u64, parent_height: u64, params: &ChainParams) -> u64 {
    let (block_time_ms, half_life_ms) = (params.block_time_ms, params.asert_half_life_ms);
    let (anchor_difficulty, min_difficulty) = (anchor.difficulty, params.min_difficulty);
    let time_delta = parent_time_ms as i128 - anchor.time_ms as i128;
    let height_delta = parent_height as i128 - anchor.height as i128;
    // Exponent in 16.16 fixed point (rounds toward −∞ like the reference).
    let ahead = block_time_ms as i128 * height_delta - time_delta;
    let exponent = (ahead * 65536).div_euclid(half_life_ms.max(1) as i128);
    let shifts = exponent.div_euclid(65536);
    let frac = exponent.rem_euclid(65536);
    // 2^(frac/65536) · 65536 by the reference cubic (error < 0.013%).
    let factor = 65536
        + ((195_766_423_245_049i128 * frac + 971_821_376 * frac * frac + 5127 * frac * frac * frac + (1i128 << 47))
            >> 48);
    let mut d = anchor_difficulty as i128 * factor; // · 2^16
    if shifts >= 0 {
        d = if shifts + 16 >= 60 { i128::MAX } else { d.saturating_mul(1i128 << shifts) };
    } else {
        d = if -shifts >= 100 { 0 } else { d >> (-shifts) };
    }
    let d = d >> 16;
    d.clamp(min_difficulty.max(1) as i128, u64::MAX as i128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 10_000;
    const HL: u64 = 200_000;

    fn next(parent_time: u64, parent_height: u64) -> u64 {
        let params =
            ChainParams { block_time_ms: T, asert_half_life_ms: HL, min_difficulty: 1000, ..ChainParams::devnet() };
        next_difficulty(
            Anchor { difficulty: 1_000_000_000, time_ms: 0, height: 0 },
            parent_time,
            parent_height,
            &params,
        )
    }

    #[test]
    fn on_schedule_keeps_the_difficulty() {
        for h in [0, 1, 10, 1000] {
            // The parent at height h arrives on schedule at time h·T.
            let d = next(h * T, h);
            assert!((d as f64 / 1e9 - 1.0).abs() < 2e-4, "{d}");
        }
    }

    #[test]
    fn a_half_life_ahead_doubles_and_behind_halves() {
        let base = next(100 * T, 100) as f64;
        let fast = next(100 * T - HL, 100) as f64;
        let slow = next(100 * T + HL, 100) as f64;
        assert!((fast / base - 2.0).abs() < 1e-3, "{}", fast / base);
        assert!((slow / base - 0.5).abs() < 1e-3, "{}", slow / base);
        assert!(next(100 * T + 100 * HL, 100) == 1000, "clamped at the minimum");
        assert!(next(0, 1_000_000) == u64::MAX, "saturates instead of overflowing");
    }

    #[test]
    fn monotone_in_time() {
        let mut last = u64::MAX;
        for t in (0..2_000_000).step_by(7_777) {
            let d = next(t, 50);
            assert!(d <= last);
            last = d;
        }
    }
}
