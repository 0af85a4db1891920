//! The memory challenge (`ergon_poai::memory`) against providers that keep less than they
//! claim. Measured, not modelled: each trial fills a real challenge, asks for the openings a
//! fresh nonce chooses, and counts the blocks a provider keeping only part of the fill would
//! have to rebuild to answer ([`recompute_cost`]). The rebuild share of the fill does not
//! depend on the fill's size (the rebuilding runs back along the lane, and lanes grow with the
//! claim), so with this machine's fill rate it gives the time a cheater needs at any claim,
//! and the smallest claim at which it misses the deadline.
//!
//! Ways of keeping less:
//! - every k-th block dropped, or blocks dropped at random (keeping a share);
//! - the end of every lane dropped (its blocks are referenced least);
//! - k identities on one machine: all are opened at the same moment, so each holds 1/k.

use std::time::Instant;

use ergon_kernels::rng::SplitMix64;
use ergon_poai::memory::{recompute_cost, MemoryChallenge, OPENINGS};
use ergon_types::{Address, Hash};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct KeepingReport {
    pub strategy: String,
    /// Share of the fill kept.
    pub kept: f64,
    /// Blocks rebuilt to answer one round's openings, as a share of the fill: mean and least
    /// over the trials.
    pub mean_rebuild_share: f64,
    pub min_rebuild_share: f64,
    /// The mean share on fills a quarter the size: where the share shrinks as the fill grows,
    /// the rebuilding dies out and large claims are no harder to fake than small ones.
    pub mean_rebuild_share_at_quarter_size: f64,
    /// Whether the share holds up as the fill grows (at least half of it at a quarter size).
    pub holds_with_size: bool,
    /// The smallest claim (GiB) at which even the least rebuild of the trials takes longer than
    /// the deadline on this machine, all cores rebuilding (infinite where it does not hold).
    pub caught_from_gib: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct MemoryReport {
    pub trials: u32,
    pub fill_mib: u64,
    /// This machine's fill rate, all cores: what an honest provider needs to answer the fill,
    /// and what a cheater rebuilds at.
    pub fill_mib_per_second: f64,
    pub openings: u32,
    pub deadline_seconds: f64,
    pub strategies: Vec<KeepingReport>,
}

/// `trials` fills of `fill_mib` each; a cheater is caught once its rebuild takes more than
/// `deadline_seconds`.
pub fn run_memory(seed: u64, trials: u32, fill_mib: u64, deadline_seconds: f64) -> MemoryReport {
    let (quarter, _) = measure(seed ^ 1, trials, (fill_mib / 4).max(1));
    let (shares, rate) = measure(seed, trials, fill_mib);
    let strategies = strategies()
        .into_iter()
        .zip(shares)
        .zip(quarter)
        .map(|(((strategy, kept, _), s), q)| {
            let mean = s.iter().sum::<f64>() / s.len().max(1) as f64;
            let min = s.iter().copied().fold(f64::INFINITY, f64::min);
            let at_quarter = q.iter().sum::<f64>() / q.len().max(1) as f64;
            let holds_with_size = mean > 0.0 && mean >= 0.5 * at_quarter;
            // Rebuilding min·claim at `rate` takes longer than the deadline once
            // claim > deadline · rate / min.
            let caught_from_gib =
                if holds_with_size && min > 0.0 { deadline_seconds * rate / min / 1024.0 } else { f64::INFINITY };
            KeepingReport {
                strategy,
                kept,
                mean_rebuild_share: mean,
                min_rebuild_share: min,
                mean_rebuild_share_at_quarter_size: at_quarter,
                holds_with_size,
                caught_from_gib,
            }
        })
        .collect();
    MemoryReport { trials, fill_mib, fill_mib_per_second: rate, openings: OPENINGS, deadline_seconds, strategies }
}

type Keep = Box<dyn Fn(u64, u64, u64) -> bool>;

/// Each way of keeping less: its name, the share kept, and whether it keeps block b (of a
/// fill with lanes of `lane` blocks, for a trial's salt).
fn strategies() -> Vec<(String, f64, Keep)> {
    vec![
        ("keeps everything (honest)".into(), 1.0, Box::new(|_, _, _| true)),
        ("drops every 5th block (25% over-claim)".into(), 0.8, Box::new(|b, _, _| b % 5 != 0)),
        ("drops 20% at random (25% over-claim)".into(), 0.8, Box::new(|b, _, s| hash_below(b, s, 200))),
        ("drops every 9th block (12.5% over-claim)".into(), 8.0 / 9.0, Box::new(|b, _, _| b % 9 != 0)),
        ("drops the last 20% of each lane".into(), 0.8, Box::new(|b, lane, _| b % lane < lane * 4 / 5)),
        ("2 identities on one machine (keeps half)".into(), 0.5, Box::new(|b, _, _| b % 2 == 0)),
        ("3 identities on one machine (keeps a third)".into(), 1.0 / 3.0, Box::new(|b, _, _| b % 3 == 0)),
    ]
}

/// Rebuild shares per strategy over `trials` fills of `fill_mib`, and the fill rate (MiB/s).
fn measure(seed: u64, trials: u32, fill_mib: u64) -> (Vec<Vec<f64>>, f64) {
    let strategies = strategies();
    let mut rng = SplitMix64::new(seed);
    let mut shares: Vec<Vec<f64>> = vec![vec![]; strategies.len()];
    let mut fill_seconds = 0.0;
    let mut bytes = 0u64;
    for t in 0..trials {
        let round_seed = Hash([(t % 251) as u8; 32]);
        let c = MemoryChallenge::derive(&round_seed, &Address([7; 20]), rng.next_u64(), fill_mib);
        let started = Instant::now();
        let fill = c.fill();
        fill_seconds += started.elapsed().as_secs_f64();
        bytes += c.bytes();
        let mut nonce = [0u8; 32];
        nonce[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
        let indices = c.to_open(&fill.root(), &nonce);
        let salt = rng.next_u64();
        for (i, (_, _, kept)) in strategies.iter().enumerate() {
            let cost = recompute_cost(&c, &fill, &|b| kept(b, c.lane_blocks, salt), &indices);
            shares[i].push(cost as f64 / c.blocks() as f64);
        }
    }
    (shares, bytes as f64 / fill_seconds.max(1e-9) / (1 << 20) as f64)
}

/// A pseudo-random keep decision per block (the share `permille` of blocks dropped).
fn hash_below(block: u64, salt: u64, permille: u64) -> bool {
    let mut r = SplitMix64::new(block ^ salt.rotate_left(17));
    r.below(1000) >= permille
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeping_less_costs_a_rebuild_and_keeping_everything_costs_nothing() {
        let r = run_memory(1, 3, 8, 1.0);
        let share = |name: &str| r.strategies.iter().find(|s| s.strategy.contains(name)).unwrap().min_rebuild_share;
        assert_eq!(share("honest"), 0.0);
        let half = r.strategies.iter().find(|s| s.strategy.contains("2 identities")).unwrap();
        assert!(half.holds_with_size && half.caught_from_gib.is_finite(), "{half:?}");
        for cheat in ["every 5th", "at random", "last 20%", "2 identities", "3 identities"] {
            assert!(share(cheat) > 0.02, "{cheat}: {r:#?}");
        }
    }
}
