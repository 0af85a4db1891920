//! Energy, as the API reports it: CPU time measured on the providers' mining threads, turned
//! into joules by one documented power model, so that every node shows the same figure for
//! the same job (`docs/energy.md` has the method, its sources and what it leaves out).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Watts one busy hardware thread draws in the power model: the median over four current CPUs
/// of their rated TDP divided by their hardware threads (EPYC 9654 360 W / 192 = 1.9, Xeon
/// Platinum 8480+ 350 W / 112 = 3.1, EPYC 9354 280 W / 64 = 4.4, Ryzen 9 7950X 170 W / 32 =
/// 5.3; median 3.75). A model, not a meter: the machines measured here have no RAPL.
pub const WATTS_PER_BUSY_THREAD: f64 = 3.75;

/// The method, in words, as `/status` states it.
pub const METHOD: &str = "CPU time of the mining threads (the sum of each thread's CLOCK_THREAD_CPUTIME_ID over the \
     computation), measured by the provider and reported with its result, times 3.75 W per busy hardware thread \
     (a TDP-per-thread model); no GPU energy: no GPU kernel computes jobs yet";

/// Some work's CPU time and its energy under the power model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Energy {
    pub cpu_seconds: f64,
    pub joules: f64,
}

impl Energy {
    pub fn of_cpu_ms(cpu_ms: u64) -> Energy {
        let cpu_seconds = cpu_ms as f64 / 1000.0;
        Energy { cpu_seconds, joules: cpu_seconds * WATTS_PER_BUSY_THREAD }
    }
}

/// `/status`'s energy: the network's (from what providers reported on chain) and this node's
/// own (measured here, on filler as well as on jobs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnergyStatus {
    pub method: String,
    pub watts_per_busy_thread: f64,
    /// Paid-for work: every result posted with a CPU time, over the chain's history.
    pub jobs: Energy,
    pub results_reported: u64,
    /// Joules per 10⁹ multiply-adds of those results (null until one is reported).
    pub joules_per_gmac: Option<f64>,
    /// Filler's energy, estimated: the filler blocks' expected multiply-adds (the chain's work
    /// not on jobs) at the jobs' measured joules per multiply-add (null until one is reported).
    pub filler_joules_estimate: Option<f64>,
    /// jobs ÷ (jobs + filler estimate): the useful share of the network's mining energy.
    pub useful_share: Option<f64>,
    /// This node's mining threads, measured here.
    pub this_node: NodeEnergy,
}

/// One node's own mining energy, both parts measured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeEnergy {
    pub jobs: Energy,
    pub filler: Energy,
    /// jobs ÷ (jobs + filler) (null before it mined anything).
    pub useful_share: Option<f64>,
}

impl NodeEnergy {
    pub fn of_cpu_ms(on_jobs: u64, on_filler: u64) -> NodeEnergy {
        let total = on_jobs + on_filler;
        NodeEnergy {
            jobs: Energy::of_cpu_ms(on_jobs),
            filler: Energy::of_cpu_ms(on_filler),
            useful_share: (total > 0).then(|| on_jobs as f64 / total as f64),
        }
    }
}

impl EnergyStatus {
    /// From the network's reported totals and the active chain's work (expected multiply-adds)
    /// of which `useful` was on job blocks.
    pub fn new(reported: (u64, u64, u64), chain_work: u128, useful: u128, this_node: NodeEnergy) -> EnergyStatus {
        let (results, cpu_ms, macs) = reported;
        let jobs = Energy::of_cpu_ms(cpu_ms);
        let joules_per_mac = (macs > 0 && cpu_ms > 0).then(|| jobs.joules / macs as f64);
        let filler_joules_estimate = joules_per_mac.map(|j| chain_work.saturating_sub(useful) as f64 * j);
        EnergyStatus {
            method: METHOD.to_string(),
            watts_per_busy_thread: WATTS_PER_BUSY_THREAD,
            jobs,
            results_reported: results,
            joules_per_gmac: joules_per_mac.map(|j| j * 1e9),
            filler_joules_estimate,
            useful_share: filler_joules_estimate.map(|f| jobs.joules / (jobs.joules + f)),
            this_node,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_and_the_shares() {
        assert_eq!(Energy::of_cpu_ms(2_000), Energy { cpu_seconds: 2.0, joules: 7.5 });
        let node = NodeEnergy::of_cpu_ms(3, 1);
        assert_eq!(node.useful_share, Some(0.75));
        assert_eq!(NodeEnergy::of_cpu_ms(0, 0).useful_share, None);
        // 1 s for 10⁹ multiply-adds: 3.75 J/G; 3·10⁹ filler multiply-adds: 11.25 J.
        let s = EnergyStatus::new((1, 1_000, 1_000_000_000), 4_000_000_000, 1_000_000_000, node);
        assert!((s.joules_per_gmac.unwrap() - 3.75).abs() < 1e-9);
        assert!((s.filler_joules_estimate.unwrap() - 11.25).abs() < 1e-9);
        assert!((s.useful_share.unwrap() - 0.25).abs() < 1e-12);
        let none = EnergyStatus::new((0, 0, 0), 10, 0, node);
        assert_eq!((none.joules_per_gmac, none.useful_share), (None, None));
    }
}
