//! `ergon sim poai`: the Proof-of-AI engine (`ergon-poai`) against honest providers with timing
//! noise and against cheaters, in virtual time. Every answer is a real product of the real
//! challenge matrices (small ones: the timing is modelled, the correctness is not), checked by
//! the engine exactly as a validator checks it.
//!
//! Honest providers answer at their claimed throughput times e^(b + σ·N(0,1)) (b: a common
//! overhead; σ: the noise the engine assumes). Cheaters:
//! - `OverClaim(f)`: the machine is f times slower than its claim;
//! - `Sybil(k)`: k identities on one machine, each claiming the machine's speed, all challenged
//!   in the same round, so each answers k times slower;
//! - `Partial(‰)`: computes only that share of the rows (the rest zero);
//! - `WrongRate(‰)`: a wrong product on that share of its parts;
//! - `Replay`: answers with the answer to the same part of its previous round.
//! - `Relay(s, r)`: forwards every part to a machine s times its claim and relays the answer,
//!   which adds a round trip of r (a share of the part's claimed time) to every part. At
//!   s = 1 the round trip alone shows; a machine fast enough to hide it passes, correctly: the
//!   relay is then a reseller of that machine's time (`docs/poai.md` §4).
//!
//! A provider-epoch is one provider over `ROUNDS_PER_EPOCH` rounds. Reported: per cheater type,
//! the share caught within an epoch (demoted below its claim, or a slash proposed) and the
//! rounds it took; for honest providers, the share of epochs with any demotion or slash.

use ergon_kernels::rng::SplitMix64;
use ergon_kernels::MatI32;
use ergon_poai::{Answer, ComputeChallenge, Engine, PoaiParams, Verdict};
use ergon_types::{Address, Hash};
use serde::Serialize;

/// Rounds in one provider-epoch (the goal: over-claims caught within 10 challenges).
pub const ROUNDS_PER_EPOCH: u32 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Conduct {
    Honest,
    OverClaim { factor_percent: u32 },
    Sybil { identities: u32 },
    Partial { permille: u32 },
    WrongRate { permille: u32 },
    Replay,
    Relay { speedup_percent: u32, rtt_permille: u32 },
}

impl Conduct {
    pub fn name(&self) -> String {
        match self {
            Conduct::Honest => "honest".into(),
            Conduct::OverClaim { factor_percent } => format!("over-claims throughput by {}%", factor_percent - 100),
            Conduct::Sybil { identities } => format!("{identities} identities on one machine"),
            Conduct::Partial { permille } => format!("computes {}% of the rows", permille / 10),
            Conduct::WrongRate { permille } => format!("wrong product on {}% of parts", *permille as f64 / 10.0),
            Conduct::Replay => "replays cached answers".into(),
            Conduct::Relay { speedup_percent, rtt_permille } => format!(
                "relays to a machine {:.2}× its claim ({}% of a part's time in round trip)",
                *speedup_percent as f64 / 100.0,
                rtt_permille / 10
            ),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ConductReport {
    pub conduct: String,
    pub provider_epochs: u64,
    /// Epochs in which the provider was demoted below its claim or had a slash proposed.
    pub caught: u64,
    pub caught_rate: f64,
    /// Rounds until it was first caught, over the epochs it was (mean and worst).
    pub mean_rounds_to_catch: f64,
    pub max_rounds_to_catch: u32,
    pub slashes_proposed: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PoaiReport {
    pub seed: u64,
    pub sigma: f64,
    pub overhead: f64,
    pub alpha: f64,
    pub beta: f64,
    pub class_ratio: f64,
    pub parts_per_round: u32,
    pub rounds_per_epoch: u32,
    pub conducts: Vec<ConductReport>,
    /// Honest provider-epochs with any demotion or slash proposal.
    pub false_positive_rate: f64,
    /// Multiply-adds the engine spent checking, per multiply-add of challenge work, in this
    /// simulation (its products are tiny, so the openings are a large share of them)...
    pub check_cost_ratio: f64,
    /// ...and for a challenge of the default size to a 100 G MAC/s claim.
    pub check_cost_ratio_at_default_size: f64,
}

struct Sim {
    rng: SplitMix64,
    sigma: f64,
    overhead: f64,
}

impl Sim {
    fn normal(&mut self) -> f64 {
        // Box–Muller.
        let u1 = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let u2 = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (-2.0 * (u1.max(1e-300)).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Nanoseconds a machine of `gmacs` takes on `c`, with noise.
    fn time_ns(&mut self, c: &ComputeChallenge, gmacs: f64) -> u64 {
        let noise = (self.overhead + self.sigma * self.normal()).exp();
        (c.macs() as f64 / gmacs * noise).max(1.0) as u64
    }
}

fn product(c: &ComputeChallenge) -> MatI32 {
    let (a, b) = c.matrices();
    ergon_kernels::matmul(&a, &b).expect("challenge shapes agree")
}

/// One provider under test: its conduct, its claim and true speed, and (for a replayer) its
/// previous round's answers.
struct Agent {
    address: Address,
    conduct: Conduct,
    claimed: u64,
    caught_at: Option<u32>,
    slashes: u64,
    previous: Vec<Answer>,
}

/// Runs `epochs` epochs of `honest` honest providers beside one provider of each cheating
/// conduct (a Sybil machine counts as one provider-epoch per identity).
pub fn run_poai(seed: u64, epochs: u32, honest: u32, sigma: f64) -> PoaiReport {
    let params = PoaiParams { sigma, target_ns: 300, ..PoaiParams::default() };
    let cheats = [
        Conduct::OverClaim { factor_percent: 125 },
        Conduct::OverClaim { factor_percent: 150 },
        Conduct::OverClaim { factor_percent: 200 },
        Conduct::Sybil { identities: 3 },
        Conduct::Partial { permille: 900 },
        Conduct::WrongRate { permille: 10 },
        Conduct::Replay,
        Conduct::Relay { speedup_percent: 100, rtt_permille: 200 },
        Conduct::Relay { speedup_percent: 150, rtt_permille: 200 },
    ];
    let mut sim = Sim { rng: SplitMix64::new(seed), sigma, overhead: 0.05 };
    let mut tallies: Vec<(Conduct, ConductReport, Vec<u32>)> = std::iter::once(Conduct::Honest)
        .chain(cheats)
        .map(|c| {
            let r = ConductReport {
                conduct: c.name(),
                provider_epochs: 0,
                caught: 0,
                caught_rate: 0.0,
                mean_rounds_to_catch: 0.0,
                max_rounds_to_catch: 0,
                slashes_proposed: 0,
            };
            (c, r, vec![])
        })
        .collect();
    let (mut work_macs, mut check_macs) = (0u128, 0u128);
    for epoch in 0..epochs {
        // A fresh population each epoch: a caught cheater is judged from its claim again.
        let mut engine = Engine::new(params.clone());
        let mut agents = vec![];
        let mut id = 0u32;
        let mut add = |conduct: Conduct, agents: &mut Vec<Agent>, engine: &mut Engine| {
            id += 1;
            let mut a = [0u8; 20];
            a[..4].copy_from_slice(&id.to_le_bytes());
            a[4..8].copy_from_slice(&epoch.to_le_bytes());
            let claimed = 100;
            engine.register(Address(a), claimed);
            agents.push(Agent { address: Address(a), conduct, claimed, caught_at: None, slashes: 0, previous: vec![] });
        };
        for _ in 0..honest {
            add(Conduct::Honest, &mut agents, &mut engine);
        }
        for c in cheats {
            let copies = if let Conduct::Sybil { identities } = c { identities } else { 1 };
            for _ in 0..copies {
                add(c, &mut agents, &mut engine);
            }
        }
        let mut now = 0u64;
        for round in 0..ROUNDS_PER_EPOCH {
            let mut chain_seed = [0u8; 32];
            chain_seed[..8].copy_from_slice(&sim.rng.next_u64().to_le_bytes());
            let (round_no, issued) = engine.issue(&Hash(chain_seed), now);
            let mut round_end = now;
            for (address, parts) in issued {
                let agent = agents.iter_mut().find(|a| a.address == address).expect("registered");
                let mut at = now;
                let mut answers = vec![];
                for (j, c) in parts.iter().enumerate() {
                    work_macs += c.macs() as u128;
                    check_macs += (c.openings as u128) * (c.k as u128) * (c.n as u128);
                    let speed = match agent.conduct {
                        Conduct::OverClaim { factor_percent } => agent.claimed as f64 * 100.0 / factor_percent as f64,
                        Conduct::Sybil { identities } => agent.claimed as f64 / identities as f64,
                        Conduct::Relay { speedup_percent, .. } => agent.claimed as f64 * speedup_percent as f64 / 100.0,
                        _ => agent.claimed as f64,
                    };
                    at += sim.time_ns(c, speed);
                    if let Conduct::Relay { rtt_permille, .. } = agent.conduct {
                        at += (c.expected_ns(agent.claimed) * rtt_permille as f64 / 1000.0) as u64;
                    }
                    let answer = match agent.conduct {
                        Conduct::Partial { permille } => {
                            let mut p = product(c);
                            let kept = (c.m as u64 * permille as u64 / 1000) as usize;
                            let n = c.n as usize;
                            p.as_mut_slice()[kept * n..].iter_mut().for_each(|v| *v = 0);
                            c.answer(&p)
                        }
                        Conduct::WrongRate { permille } if sim.rng.below(1000) < permille as u64 => {
                            let mut p = product(c);
                            p.as_mut_slice()[0] ^= 1 << 20;
                            p.as_mut_slice().iter_mut().skip(1).step_by(7).for_each(|v| *v ^= 1);
                            c.answer(&p)
                        }
                        Conduct::Replay if agent.previous.len() > j => agent.previous[j].clone(),
                        _ => c.solve(),
                    };
                    answers.push(answer.clone());
                    let judged = engine.answer(&address, round_no, j as u32, &answer, at).unwrap_or_default();
                    for jd in judged {
                        let caught = match jd.verdict {
                            Verdict::Demote { to, .. } => to < agent.claimed,
                            Verdict::ProposeSlash | Verdict::Wrong => {
                                agent.slashes += 1;
                                true
                            }
                            _ => false,
                        };
                        if caught && agent.caught_at.is_none() {
                            agent.caught_at = Some(round + 1);
                        }
                    }
                    // A wrong answer (or the last part) closed the round.
                    if !engine.has_open_round(&address) {
                        break;
                    }
                }
                agent.previous = answers;
                round_end = round_end.max(at);
            }
            now = round_end + 1_000_000;
            for jd in engine.tick(now) {
                if let Some(agent) = agents.iter_mut().find(|a| a.address == jd.provider) {
                    if jd.verdict == Verdict::ProposeSlash {
                        agent.slashes += 1;
                        agent.caught_at.get_or_insert(round + 1);
                    }
                }
            }
        }
        for agent in &agents {
            let t = tallies.iter_mut().find(|t| t.0 == agent.conduct).expect("every conduct tallied");
            t.1.provider_epochs += 1;
            t.1.slashes_proposed += agent.slashes;
            if let Some(r) = agent.caught_at {
                t.1.caught += 1;
                t.2.push(r);
            }
        }
    }
    let mut conducts = vec![];
    let mut false_positive_rate = 0.0;
    for (c, mut r, rounds) in tallies {
        r.caught_rate = r.caught as f64 / r.provider_epochs.max(1) as f64;
        r.mean_rounds_to_catch =
            if rounds.is_empty() { 0.0 } else { rounds.iter().map(|&x| x as f64).sum::<f64>() / rounds.len() as f64 };
        r.max_rounds_to_catch = rounds.iter().copied().max().unwrap_or(0);
        if c == Conduct::Honest {
            false_positive_rate = r.caught_rate;
        }
        conducts.push(r);
    }
    PoaiReport {
        seed,
        sigma,
        overhead: sim.overhead,
        alpha: params.alpha,
        beta: params.beta,
        class_ratio: params.class_ratio,
        parts_per_round: params.parts,
        rounds_per_epoch: ROUNDS_PER_EPOCH,
        conducts,
        false_positive_rate,
        check_cost_ratio: check_macs as f64 / work_macs.max(1) as f64,
        check_cost_ratio_at_default_size: {
            let d = PoaiParams::default();
            let c = ComputeChallenge::derive(&Hash([0; 32]), &Address([0; 20]), 0, 0, 100, d.target_ns, d.openings);
            (c.openings as u64 * c.k as u64 * c.n as u64) as f64 / c.macs() as f64
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_claims_sybils_and_wrong_answers_are_caught_and_honest_providers_are_not() {
        let r = run_poai(1, 20, 10, 0.2);
        let rate = |name: &str| r.conducts.iter().find(|c| c.conduct.contains(name)).map(|c| c.caught_rate).unwrap();
        assert!(rate("honest") <= 0.01, "{r:#?}");
        for cheat in ["by 25%", "by 50%", "by 100%", "identities", "of the rows", "replays", "1.00× its claim"] {
            assert!(rate(cheat) >= 0.9, "{cheat}: {r:#?}");
        }
        // A relay to a machine fast enough to hide the round trip passes: it is a reseller.
        assert!(rate("1.50× its claim") <= 0.05, "{r:#?}");
    }
}
