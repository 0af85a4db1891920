//! The challenge engine of one validator: every provider challenged in the same round, answers
//! checked exactly and timed, a sequential test per provider, and judgments with reasons.
//!
//! Time is given (nanoseconds, as the validator received each answer); the engine holds no
//! clock. A round has `parts` products, answered one after another; each part's time is the gap
//! since the previous answer (or the issue), and is one observation for the provider's test:
//! x = ln(time / time claimed) less its class's common overhead (the median x of the providers
//! in its class, at most `max_class_offset`: what network and hashing add for everyone, while a
//! class full of over-claimers gains at most that much).
//!
//! Between rounds, a *probe* (one product of the smallest size, untimed) asks only "are you
//! there": unanswered within `probe_grace_ns`, the provider is `Missed` and its leases go to
//! someone else, which is what makes failover take seconds rather than a lease's deadline.
//! A timed round's next part is due within `deadline_factor` × its claimed time plus the
//! grace after the previous answer; one that is not is missed too, and since the provider has
//! then shown it cannot do that part in that time, its class is lowered to what the time
//! allows at most.

use std::collections::{BTreeMap, VecDeque};

use ergon_types::{Address, Hash};

use crate::challenge::{Answer, ComputeChallenge};
use crate::sprt::{Sprt, SprtDecision};

/// The engine's rules.
#[derive(Clone, Debug, PartialEq)]
pub struct PoaiParams {
    /// Chance of demoting an honest claim, and of confirming the next lower class.
    pub alpha: f64,
    pub beta: f64,
    /// Ratio between adjacent throughput classes: the class below a claim c is c / ratio.
    pub class_ratio: f64,
    /// Timing noise of an honest machine, in log-time.
    pub sigma: f64,
    /// Nanoseconds each part should take at the claimed throughput.
    pub target_ns: u64,
    pub parts: u32,
    /// Rows each answer opens.
    pub openings: u32,
    /// A round not answered within this many times its claimed time, plus the grace, is missed.
    pub deadline_factor: f64,
    pub deadline_grace_ns: u64,
    /// Missed rounds in a row after which this validator proposes a slash.
    pub max_missed: u32,
    pub max_class_offset: f64,
    /// A probe not answered within this is missed.
    pub probe_grace_ns: u64,
}

impl Default for PoaiParams {
    fn default() -> Self {
        PoaiParams {
            alpha: 1e-6,
            beta: 1e-3,
            class_ratio: 1.25,
            sigma: 0.2,
            target_ns: 100_000_000,
            parts: 10,
            openings: 8,
            deadline_factor: 4.0,
            deadline_grace_ns: 2_000_000_000,
            max_missed: 3,
            max_class_offset: 0.1,
            probe_grace_ns: 1_000_000_000,
        }
    }
}

/// What the engine concluded about a provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The throughput class under test is confirmed.
    Confirm { gmacs: u64 },
    /// Slower than the class under test: tested next at the class below.
    Demote { from: u64, to: u64 },
    /// A round went unanswered: its leases should go to someone who answers.
    Missed,
    /// A correctness failure: a wrong product or a bad opening. The signed answer is a proof
    /// anyone can check (`ergon_poai::fraud`): one validator's proof slashes.
    Wrong,
    /// Too many timed rounds missed in a row: this validator proposes a slash, which takes a
    /// second validator's agreement (`docs/poai.md`; not yet on chain).
    ProposeSlash,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgment {
    pub provider: Address,
    pub round: u64,
    pub verdict: Verdict,
    pub reason: String,
}

/// What the engine knows of one provider (for the API and `provider status`).
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderView {
    pub claimed_gmacs: u64,
    /// The class under test: the claim, lower after demotions, one class above the last
    /// confirmed one (never above the claim) while a promotion is tried.
    pub class_gmacs: u64,
    /// The last class confirmed and not since disproved, if any.
    pub verified_gmacs: Option<u64>,
    /// Whether a demotion happened since the claim was registered.
    pub demoted: bool,
    pub rounds: u64,
    pub faults: u64,
    /// Rounds and probes missed since the last answered one: the provider is absent while
    /// this is above 0.
    pub missed_in_a_row: u32,
    /// Timed rounds missed since the last answered one: at `max_missed` a slash is proposed
    /// (probes alone never propose one: seconds offline is absence, not fraud).
    pub rounds_missed_in_a_row: u32,
    pub llr: f64,
}

struct Round {
    round: u64,
    /// A probe: one small part, answered for liveness only, not timed.
    probe: bool,
    parts: Vec<ComputeChallenge>,
    issued_ns: u64,
    last_ns: u64,
    next: u32,
}

struct ProviderState {
    view: ProviderView,
    sprt: Sprt,
    open: Option<Round>,
}

/// Raw observations kept per class for its common overhead.
const CLASS_WINDOW: usize = 256;

pub struct Engine {
    params: PoaiParams,
    providers: BTreeMap<Address, ProviderState>,
    class_x: BTreeMap<i64, VecDeque<f64>>,
    round: u64,
}

impl Engine {
    pub fn new(params: PoaiParams) -> Self {
        Engine { params, providers: BTreeMap::new(), class_x: BTreeMap::new(), round: 0 }
    }

    /// Numbers rounds from `after + 1` on. A validator that restarts must not reuse its round
    /// numbers (providers answer each validator's rounds in increasing order only); the node
    /// starts them at the wall clock in milliseconds, which its rounds, at most a few a second,
    /// never overtake.
    pub fn number_rounds_after(&mut self, after: u64) {
        self.round = self.round.max(after);
    }

    pub fn params(&self) -> &PoaiParams {
        &self.params
    }

    /// Starts (or restarts, on a new claim) checking `provider`'s claimed int8 throughput.
    pub fn register(&mut self, provider: Address, claimed_gmacs: u64) {
        if self.providers.get(&provider).is_some_and(|p| p.view.claimed_gmacs == claimed_gmacs) {
            return;
        }
        let p = &self.params;
        let view = ProviderView {
            claimed_gmacs,
            class_gmacs: claimed_gmacs.max(1),
            verified_gmacs: None,
            demoted: false,
            rounds: 0,
            faults: 0,
            missed_in_a_row: 0,
            rounds_missed_in_a_row: 0,
            llr: 0.0,
        };
        let sprt = Sprt::new(p.alpha, p.beta, p.class_ratio, p.sigma);
        self.providers.insert(provider, ProviderState { view, sprt, open: None });
    }

    pub fn remove(&mut self, provider: &Address) {
        self.providers.remove(provider);
    }

    /// Whether `provider` has a round still to answer.
    pub fn has_open_round(&self, provider: &Address) -> bool {
        self.providers.get(provider).is_some_and(|p| p.open.is_some())
    }

    /// The open round's number and the part due next from `provider`, if a round is open.
    pub fn expecting(&self, provider: &Address) -> Option<(u64, u32)> {
        self.providers.get(provider)?.open.as_ref().map(|r| (r.round, r.next))
    }

    pub fn view(&self, provider: &Address) -> Option<&ProviderView> {
        self.providers.get(provider).map(|p| &p.view)
    }

    /// The providers under test.
    pub fn providers(&self) -> impl Iterator<Item = (&Address, &ProviderView)> {
        self.providers.iter().map(|(a, p)| (a, &p.view))
    }

    /// The throughput this validator should hold on chain for `provider` (its `Judge`
    /// transaction), or None while it has nothing to say yet (untested, nothing decided):
    /// 0 while the provider misses rounds (it is absent: no leases), else the last class
    /// confirmed, else, after a demotion, the class it is tested at.
    pub fn on_chain_gmacs(&self, provider: &Address) -> Option<u64> {
        let v = &self.providers.get(provider)?.view;
        if v.missed_in_a_row > 0 {
            Some(0)
        } else if let Some(g) = v.verified_gmacs {
            Some(g)
        } else {
            v.demoted.then_some(v.class_gmacs)
        }
    }

    /// A new round for every provider at once (so one machine shown under several identities
    /// must answer all of them in the same time), seeded by `chain_seed` (the id of the block
    /// that starts it). Returns the parts to send to each provider. A provider still answering
    /// the previous round is judged by [`tick`](Self::tick), not here. Returns the round number.
    pub fn issue(&mut self, chain_seed: &Hash, now_ns: u64) -> (u64, Vec<(Address, Vec<ComputeChallenge>)>) {
        self.open_rounds(chain_seed, now_ns, false, &[])
    }

    /// [`issue`](Self::issue), leaving out `resting`: providers honestly busy elsewhere (filling
    /// their memory challenge), whose answers would time that, not their claim. They are
    /// tested in the next round.
    pub fn issue_except(
        &mut self,
        chain_seed: &Hash,
        now_ns: u64,
        resting: &[Address],
    ) -> (u64, Vec<(Address, Vec<ComputeChallenge>)>) {
        self.open_rounds(chain_seed, now_ns, false, resting)
    }

    /// A liveness probe for every provider not answering a round: one product of the smallest
    /// size (microseconds of work), due within `probe_grace_ns`. Returns the round number and
    /// the part each provider must answer.
    pub fn probe(&mut self, chain_seed: &Hash, now_ns: u64) -> (u64, Vec<(Address, ComputeChallenge)>) {
        let (round, opened) = self.open_rounds(chain_seed, now_ns, true, &[]);
        (round, opened.into_iter().map(|(a, mut parts)| (a, parts.remove(0))).collect())
    }

    /// Opens round `self.round + 1` for every provider without an open round: `parts` parts at
    /// its class under test, or for a probe one part of the smallest size (class 0).
    fn open_rounds(
        &mut self,
        chain_seed: &Hash,
        now_ns: u64,
        probe: bool,
        resting: &[Address],
    ) -> (u64, Vec<(Address, Vec<ComputeChallenge>)>) {
        self.round += 1;
        let (round, p) = (self.round, &self.params);
        let mut out = vec![];
        for (addr, state) in self.providers.iter_mut().filter(|(a, s)| s.open.is_none() && !resting.contains(a)) {
            let (count, class) = if probe { (1, 0) } else { (p.parts, state.view.class_gmacs) };
            let parts: Vec<_> = (0..count)
                .map(|j| ComputeChallenge::derive(chain_seed, addr, round, j, class, p.target_ns, p.openings))
                .collect();
            state.open =
                Some(Round { round, probe, parts: parts.clone(), issued_ns: now_ns, last_ns: now_ns, next: 0 });
            if !probe {
                state.view.rounds += 1;
            }
            out.push((*addr, parts));
        }
        (round, out)
    }

    fn class_of(&self, gmacs: u64) -> i64 {
        ((gmacs.max(1) as f64).ln() / self.params.class_ratio.ln()).floor() as i64
    }

    /// The common overhead of a class: the median of its recent observations, within
    /// 0..=`max_class_offset`.
    fn class_offset(&self, class: i64) -> f64 {
        let Some(xs) = self.class_x.get(&class).filter(|xs| xs.len() >= 8) else { return 0.0 };
        let mut v: Vec<f64> = xs.iter().copied().collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2].clamp(0.0, self.params.max_class_offset)
    }

    /// An answer to part `part` of `provider`'s open round, received at `at_ns`. Checked
    /// exactly, then timed. Err: nothing was asked of it (ignored).
    pub fn answer(
        &mut self,
        provider: &Address,
        round_no: u64,
        part: u32,
        answer: &Answer,
        at_ns: u64,
    ) -> Result<Vec<Judgment>, String> {
        let state = self.providers.get_mut(provider).ok_or("not a provider under test")?;
        let round = state.open.as_mut().ok_or("no round is open for this provider")?;
        if round.round != round_no {
            return Err(format!("an answer to round {round_no}, but round {} is open", round.round));
        }
        if part != round.next {
            return Err(format!("part {part} answered, part {} expected", round.next));
        }
        let challenge = round.parts[part as usize].clone();
        let (probe, elapsed) = (round.probe, at_ns.saturating_sub(round.last_ns));
        round.last_ns = at_ns;
        round.next += 1;
        let last = round.next as usize == round.parts.len();
        let judge = |verdict, reason| Judgment { provider: *provider, round: round_no, verdict, reason };
        if let Err(why) = challenge.check(answer) {
            state.view.faults += 1;
            state.open = None;
            let reason = format!("round {round_no} part {part}: {why}");
            return Ok(vec![judge(Verdict::Wrong, reason)]);
        }
        if last {
            state.open = None;
            state.view.missed_in_a_row = 0;
            if !probe {
                state.view.rounds_missed_in_a_row = 0;
            }
        }
        if probe {
            return Ok(vec![]);
        }
        let class_gmacs = state.view.class_gmacs;
        let raw = (elapsed.max(1) as f64 / challenge.expected_ns(class_gmacs)).ln();
        let class = self.class_of(class_gmacs);
        let x = raw - self.class_offset(class);
        let xs = self.class_x.entry(class).or_default();
        if xs.len() == CLASS_WINDOW {
            xs.pop_front();
        }
        xs.push_back(raw);
        let ratio = self.params.class_ratio;
        let state = self.providers.get_mut(provider).expect("present above");
        let decision = state.sprt.observe(x);
        state.view.llr = state.sprt.llr();
        Ok(match decision {
            SprtDecision::Continue => vec![],
            SprtDecision::AcceptClaim => {
                let view = &mut state.view;
                view.verified_gmacs = Some(class_gmacs);
                // Below the claim, the next class up is tried (a provider demoted while it was
                // busy gets back what it has); failing there costs it nothing it had.
                view.class_gmacs =
                    ((class_gmacs as f64 * ratio).ceil() as u64).min(view.claimed_gmacs).max(class_gmacs);
                let claimed = if class_gmacs == view.claimed_gmacs { "as claimed" } else { "below its claim" };
                vec![judge(
                    Verdict::Confirm { gmacs: class_gmacs },
                    format!("answers at {class_gmacs} G MAC/s {claimed} (sequential test passed)"),
                )]
            }
            SprtDecision::RejectClaim => {
                let to = ((class_gmacs as f64 / ratio).floor() as u64).max(1);
                state.view.class_gmacs = to;
                state.view.demoted = true;
                // A failed promotion leaves the confirmed class standing; anything else voids it.
                if state.view.verified_gmacs.is_some_and(|v| v >= class_gmacs) {
                    state.view.verified_gmacs = None;
                }
                let reason = format!(
                    "answers slower than {class_gmacs} G MAC/s (last part {:.2}× the time that claims); tested at {to} from now on",
                    raw.exp()
                );
                vec![judge(Verdict::Demote { from: class_gmacs, to }, reason)]
            }
        })
    }

    /// Judges the rounds whose next answer is overdue at `now_ns`: a probe after
    /// `probe_grace_ns`; a timed round's next part after `deadline_factor` × its claimed time
    /// plus the grace since the previous answer. Missing a timed part also lowers the class to
    /// at most what the time allowed (the part's multiply-adds over the time waited).
    pub fn tick(&mut self, now_ns: u64) -> Vec<Judgment> {
        let p = &self.params;
        let mut out = vec![];
        for (addr, state) in &mut self.providers {
            let Some(round) = &state.open else { continue };
            let class = state.view.class_gmacs;
            let next = &round.parts[round.next as usize];
            let deadline = if round.probe {
                round.issued_ns + p.probe_grace_ns
            } else {
                round.last_ns + (next.expected_ns(class) * p.deadline_factor) as u64 + p.deadline_grace_ns
            };
            if now_ns <= deadline {
                continue;
            }
            let (r, answered, parts, probe) = (round.round, round.next, round.parts.len(), round.probe);
            let waited_ns = now_ns.saturating_sub(round.last_ns).max(1);
            let macs = next.macs();
            state.open = None;
            state.view.missed_in_a_row += 1;
            state.view.rounds_missed_in_a_row += u32::from(!probe);
            let missed = state.view.missed_in_a_row;
            let rounds_missed = state.view.rounds_missed_in_a_row;
            let mut reason = if probe {
                format!("round {r}: probe unanswered by the deadline ({missed} missed in a row)")
            } else {
                format!(
                    "round {r}: {answered} of {parts} parts answered by the deadline ({rounds_missed} timed round(s) missed in a row)"
                )
            };
            if !probe {
                // It could not do `macs` in `waited_ns`: its throughput is below macs / waited.
                let bound = (macs as f64 / waited_ns as f64).floor() as u64;
                let to = ((class as f64 / p.class_ratio).floor() as u64).min(bound).max(1);
                if to < class {
                    state.view.class_gmacs = to;
                    state.view.demoted = true;
                    state.view.verified_gmacs = state.view.verified_gmacs.filter(|&v| v <= to);
                    reason.push_str(&format!("; tested at {to} G MAC/s from now on"));
                }
            }
            out.push(Judgment { provider: *addr, round: r, verdict: Verdict::Missed, reason: reason.clone() });
            if !probe && state.view.rounds_missed_in_a_row >= p.max_missed {
                state.view.faults += 1;
                out.push(Judgment { provider: *addr, round: r, verdict: Verdict::ProposeSlash, reason });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge::MIN_SIDE;

    /// Runs rounds in which `provider` answers each part `slowdown` times slower than `speed`
    /// G MAC/s would; returns the judgments.
    fn rounds(engine: &mut Engine, provider: Address, speed: f64, slowdown: f64, n: u32) -> Vec<Judgment> {
        let mut out = vec![];
        let mut now = 0u64;
        for r in 0..n {
            let (round, issued) = engine.issue(&Hash([r as u8; 32]), now);
            for (_, parts) in issued {
                for (j, c) in parts.iter().enumerate() {
                    now += (c.macs() as f64 / speed * slowdown) as u64;
                    out.extend(engine.answer(&provider, round, j as u32, &c.solve(), now).unwrap());
                }
            }
            now += 1_000_000_000;
            out.extend(engine.tick(now));
        }
        out
    }

    fn small() -> PoaiParams {
        PoaiParams { target_ns: 1000, ..PoaiParams::default() }
    }

    #[test]
    fn an_honest_provider_is_confirmed_and_an_over_claim_demoted_until_it_fits() {
        let p = Address([1; 20]);
        let mut engine = Engine::new(small());
        engine.register(p, 1);
        let honest = rounds(&mut engine, p, 1.0, 1.0, 3);
        assert!(matches!(honest.first().map(|j| &j.verdict), Some(Verdict::Confirm { gmacs: 1 })), "{honest:?}");
        // Claims 200 G MAC/s, answers at 100: demoted 200 → 160 → 128 → 102, then confirmed.
        let mut engine = Engine::new(small());
        engine.register(p, 200);
        let judged = rounds(&mut engine, p, 100.0, 1.0, 20);
        let demotions: Vec<_> =
            judged.iter().filter_map(|j| matches!(j.verdict, Verdict::Demote { .. }).then_some(&j.verdict)).collect();
        assert_eq!(demotions.first(), Some(&&Verdict::Demote { from: 200, to: 160 }), "{judged:?}");
        // Within one class (25%) of the truth, and confirmed there; the class above is tried
        // again and again, failing, and what is held on chain stays the confirmed class.
        let view = engine.view(&p).unwrap().clone();
        let verified = view.verified_gmacs.expect("confirmed below the claim");
        assert!((80..=125).contains(&verified), "{view:?}");
        assert!(view.class_gmacs > verified, "a promotion is being tried: {view:?}");
        assert!(judged.iter().any(|j| j.reason.contains("slower than")));
        assert_eq!(engine.on_chain_gmacs(&p), Some(verified));
        rounds(&mut engine, p, 100.0, 1.0, 20);
        assert_eq!(engine.on_chain_gmacs(&p), Some(verified), "{:?}", engine.view(&p));
    }

    #[test]
    fn a_missed_probe_means_absent_at_once_and_a_missed_part_lowers_the_class() {
        let p = Address([1; 20]);
        let mut engine = Engine::new(small());
        engine.register(p, 100);
        assert_eq!(engine.on_chain_gmacs(&p), None, "nothing to hold on chain before a decision");
        rounds(&mut engine, p, 100.0, 1.0, 3);
        assert_eq!(engine.on_chain_gmacs(&p), Some(100));
        // Probes unanswered: absent (0 on chain) one grace after each; never a slash proposal.
        let (mut now, grace) = (1_000_000_000_000u64, engine.params().probe_grace_ns);
        for i in 0..5u8 {
            let (_, probes) = engine.probe(&Hash([i; 32]), now);
            assert_eq!(probes.len(), 1);
            assert!(engine.tick(now + grace).is_empty(), "not before the grace is over");
            let verdicts: Vec<_> = engine.tick(now + grace + 1).into_iter().map(|j| j.verdict).collect();
            assert_eq!(verdicts, vec![Verdict::Missed]);
            now += 10 * grace;
        }
        assert_eq!(engine.on_chain_gmacs(&p), Some(0));
        // One probe answered: present again, at the class it had.
        let (round, probes) = engine.probe(&Hash([9; 32]), now);
        assert_eq!(probes[0].1.macs(), (MIN_SIDE as u64).pow(3), "a probe is the smallest product");
        assert_eq!(engine.answer(&p, round, 0, &probes[0].1.solve(), now + 1), Ok(vec![]));
        assert_eq!(engine.on_chain_gmacs(&p), Some(100));
        // A round whose first part never comes: missed, and tested from then on at no more than
        // the part's multiply-adds over the time waited.
        now += grace;
        let (_, issued) = engine.issue(&Hash([10; 32]), now);
        let macs = issued[0].1[0].macs();
        let late = now + 3 * engine.params().deadline_grace_ns;
        let judged = engine.tick(late);
        assert_eq!(judged.len(), 1);
        assert!(judged[0].reason.contains("0 of 10 parts") && judged[0].reason.contains("tested at"), "{judged:?}");
        let view = engine.view(&p).unwrap();
        assert_eq!(view.class_gmacs, (macs / (late - now)).max(1), "{view:?}");
        assert_eq!(engine.on_chain_gmacs(&p), Some(0));
    }

    #[test]
    fn a_wrong_product_proposes_a_slash_and_silence_is_missed_then_slashed() {
        let p = Address([1; 20]);
        let mut engine = Engine::new(small());
        engine.register(p, 1);
        let (round, mut issued) = engine.issue(&Hash([9; 32]), 0);
        let parts = issued.remove(0).1;
        let mut wrong = parts[0].solve();
        wrong.commitment[0] ^= 1;
        let judged = engine.answer(&p, round, 0, &wrong, 10).unwrap();
        assert_eq!(judged[0].verdict, Verdict::Wrong);
        assert!(engine.answer(&p, round, 1, &parts[1].solve(), 20).is_err(), "the round is closed");
        // Three rounds unanswered: missed each time, a slash proposed at the third.
        let mut verdicts = vec![];
        for r in 0..3u64 {
            engine.issue(&Hash([r as u8; 32]), r * 100_000_000_000);
            verdicts.extend(engine.tick(r * 100_000_000_000 + 50_000_000_000).into_iter().map(|j| j.verdict));
        }
        assert_eq!(verdicts, vec![Verdict::Missed, Verdict::Missed, Verdict::Missed, Verdict::ProposeSlash]);
    }
}
