//! Memory rounds (sans-IO): which providers committed a fill for the current memory epoch,
//! one opening of all of them at one moment, the answers checked and timed, and what a
//! validator should hold on chain for each (`docs/poai.md` §7).
//!
//! The rule, per provider and validator:
//! - an answer that checks against the provider's own signed root, in time, **shows** the
//!   claim: the validator holds the claim on chain;
//! - a **wrong** answer (a block not the one committed to, or not the hash of what it is
//!   computed from) is something no honest provider sends: 0 at once;
//! - a **late** answer, no answer, or no commitment in an epoch: 0 after two in a row, so one
//!   slow moment (a busy machine, a lost message) costs an honest provider nothing.
//!
//! A provider keeping 80% of its fill rebuilds about a tenth of it per answer (the figures of
//! `ergon sim poai`), whose time grows with the claim while the deadline does not: it is
//! never shown, and matching never relies on more than the unchecked floor for it.

use std::collections::BTreeMap;

use ergon_types::{Address, Hash};

use crate::memory::{MemoryChallenge, Opening};

/// Failures in a row (late, unanswered, uncommitted) after which a validator holds 0.
pub const FAILS_TO_JUDGE: u32 = 2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemoryVerdict {
    Shown { mib: u64, answered_ms: u64 },
    Wrong(String),
    Late { answered_ms: u64, deadline_ms: u64 },
    NoAnswer,
    NoCommit,
}

impl MemoryVerdict {
    pub fn passed(&self) -> bool {
        matches!(self, MemoryVerdict::Shown { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryJudgment {
    pub provider: Address,
    pub epoch: u64,
    pub verdict: MemoryVerdict,
    pub reason: String,
}

/// What the engine knows of one provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryView {
    pub claimed_mib: u64,
    /// The epoch of its latest commitment.
    pub committed_epoch: Option<u64>,
    pub fails_in_a_row: u32,
    pub shown: u64,
    pub failed: u64,
    pub last: Option<MemoryVerdict>,
    /// What this validator should hold on chain (None: nothing decided yet).
    pub on_chain_mib: Option<u64>,
}

struct Tested {
    view: MemoryView,
    /// The root and challenge of its latest commitment (of epoch `view.committed_epoch`).
    commit: Option<([u8; 32], MemoryChallenge)>,
}

/// One opening in flight.
struct Open {
    open: u64,
    epoch: u64,
    nonce: [u8; 32],
    sent_ns: u64,
    deadline_ns: u64,
    /// Providers that must still answer it.
    waiting: Vec<Address>,
}

/// A validator's memory rounds.
#[derive(Default)]
pub struct MemoryEngine {
    providers: BTreeMap<Address, Tested>,
    opens: u64,
    current: Option<Open>,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tests `provider` at `claimed_mib` (a new claim starts over).
    pub fn register(&mut self, provider: Address, claimed_mib: u64) {
        let fresh = || Tested {
            view: MemoryView {
                claimed_mib,
                committed_epoch: None,
                fails_in_a_row: 0,
                shown: 0,
                failed: 0,
                last: None,
                on_chain_mib: None,
            },
            commit: None,
        };
        let t = self.providers.entry(provider).or_insert_with(fresh);
        if t.view.claimed_mib != claimed_mib {
            *t = fresh();
        }
    }

    pub fn remove(&mut self, provider: &Address) {
        self.providers.remove(provider);
    }

    pub fn providers(&self) -> impl Iterator<Item = (&Address, &MemoryView)> {
        self.providers.iter().map(|(a, t)| (a, &t.view))
    }

    pub fn view(&self, provider: &Address) -> Option<&MemoryView> {
        self.providers.get(provider).map(|t| &t.view)
    }

    pub fn on_chain_mib(&self, provider: &Address) -> Option<u64> {
        self.providers.get(provider)?.view.on_chain_mib
    }

    /// `provider`'s commitment (`root`) to its fill of `epoch`, whose block id is `seed`, at
    /// `claimed_mib`. The caller checked the signature and that `epoch` is the current one.
    pub fn commit(
        &mut self,
        provider: &Address,
        epoch: u64,
        seed: &Hash,
        claimed_mib: u64,
        root: [u8; 32],
    ) -> Result<(), String> {
        let t = self.providers.get_mut(provider).ok_or("not a provider under memory test")?;
        if claimed_mib != t.view.claimed_mib {
            return Err(format!("a fill for {claimed_mib} MiB; the offer claims {}", t.view.claimed_mib));
        }
        if t.view.committed_epoch.is_some_and(|e| e >= epoch) {
            return Err(format!("already committed for epoch {epoch}"));
        }
        let challenge = MemoryChallenge::derive(seed, provider, epoch, claimed_mib);
        t.commit = Some((root, challenge));
        t.view.committed_epoch = Some(epoch);
        Ok(())
    }

    /// Opens every provider committed for `epoch` at once, with `nonce`, answers due
    /// `deadline_ns` after `now_ns`. Returns the opening's number and whom it names, and the
    /// judgments of those that committed nothing for `epoch`. An opening still in flight is
    /// closed first (its silent providers judged unanswered).
    pub fn open(
        &mut self,
        epoch: u64,
        nonce: [u8; 32],
        now_ns: u64,
        deadline_ns: u64,
    ) -> (u64, Vec<Address>, Vec<MemoryJudgment>) {
        let mut judged = self.close();
        self.opens += 1;
        let mut named = vec![];
        for (a, t) in &mut self.providers {
            if t.view.committed_epoch == Some(epoch) {
                named.push(*a);
            } else {
                judged.push(judge(a, t, epoch, MemoryVerdict::NoCommit, "no fill committed for this epoch".into()));
            }
        }
        let open = Open { open: self.opens, epoch, nonce, sent_ns: now_ns, deadline_ns, waiting: named.clone() };
        self.current = Some(open);
        (self.opens, named, judged)
    }

    /// `provider`'s answer to opening `open`, arrived at `at_ns`.
    pub fn answer(
        &mut self,
        provider: &Address,
        open: u64,
        openings: &[Opening],
        at_ns: u64,
    ) -> Result<MemoryJudgment, String> {
        let o = self.current.as_mut().filter(|o| o.open == open).ok_or("not the opening in flight")?;
        let pos = o.waiting.iter().position(|a| a == provider).ok_or("not waited for (answered already?)")?;
        o.waiting.swap_remove(pos);
        let (epoch, nonce, answered_ns, deadline_ns) =
            (o.epoch, o.nonce, at_ns.saturating_sub(o.sent_ns), o.deadline_ns);
        let t = self.providers.get_mut(provider).ok_or("no longer under test")?;
        let (root, challenge) =
            t.commit.as_ref().filter(|_| t.view.committed_epoch == Some(epoch)).ok_or("no commitment")?;
        let (answered_ms, deadline_ms) = (answered_ns / 1_000_000, deadline_ns / 1_000_000);
        let (verdict, reason) = match challenge.check(root, &nonce, openings) {
            Err(why) => (MemoryVerdict::Wrong(why.clone()), format!("a wrong memory answer: {why}")),
            Ok(()) if answered_ns > deadline_ns => (
                MemoryVerdict::Late { answered_ms, deadline_ms },
                format!("memory answer after {answered_ms} ms; the deadline was {deadline_ms} ms"),
            ),
            Ok(()) => (
                MemoryVerdict::Shown { mib: t.view.claimed_mib, answered_ms },
                format!(
                    "holds its {} MiB: {} blocks opened in {answered_ms} ms (deadline {deadline_ms} ms)",
                    t.view.claimed_mib,
                    openings.len()
                ),
            ),
        };
        Ok(judge(provider, t, epoch, verdict, reason))
    }

    /// Providers that did not answer the opening in flight within twice its deadline and 5 s
    /// more: judged unanswered.
    pub fn tick(&mut self, now_ns: u64) -> Vec<MemoryJudgment> {
        let overdue = self
            .current
            .as_ref()
            .is_some_and(|o| now_ns > o.sent_ns + 2 * o.deadline_ns + 5_000_000_000 && !o.waiting.is_empty());
        if !overdue {
            return vec![];
        }
        self.close()
    }

    /// Ends the opening in flight: whoever it still waits for is judged unanswered.
    fn close(&mut self) -> Vec<MemoryJudgment> {
        let Some(o) = self.current.take() else { return vec![] };
        o.waiting
            .iter()
            .filter_map(|a| {
                let t = self.providers.get_mut(a)?;
                let why = format!("no memory answer to opening {}", o.open);
                Some(judge(a, t, o.epoch, MemoryVerdict::NoAnswer, why))
            })
            .collect()
    }
}

/// Applies the rule of the module's documentation to `t`.
fn judge(provider: &Address, t: &mut Tested, epoch: u64, verdict: MemoryVerdict, reason: String) -> MemoryJudgment {
    let v = &mut t.view;
    match &verdict {
        MemoryVerdict::Shown { mib, .. } => {
            (v.fails_in_a_row, v.on_chain_mib) = (0, Some(*mib));
            v.shown += 1;
        }
        MemoryVerdict::Wrong(_) => {
            (v.fails_in_a_row, v.on_chain_mib) = (v.fails_in_a_row + 1, Some(0));
            v.failed += 1;
        }
        _ => {
            v.fails_in_a_row += 1;
            v.failed += 1;
            if v.fails_in_a_row >= FAILS_TO_JUDGE {
                v.on_chain_mib = Some(0);
            }
        }
    }
    v.last = Some(verdict.clone());
    MemoryJudgment { provider: *provider, epoch, verdict, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Fill;

    const MS: u64 = 1_000_000;

    fn setup() -> (MemoryEngine, Address, Hash, MemoryChallenge, Fill) {
        let (p, seed) = (Address([7; 20]), Hash([3; 32]));
        let mut e = MemoryEngine::new();
        e.register(p, 2);
        let c = MemoryChallenge::derive(&seed, &p, 40, 2);
        let fill = c.fill();
        (e, p, seed, c, fill)
    }

    #[test]
    fn an_answer_in_time_shows_the_claim_and_a_wrong_one_loses_it_at_once() {
        let (mut e, p, seed, c, fill) = setup();
        assert_eq!(e.commit(&p, 40, &seed, 3, fill.root()).unwrap_err(), "a fill for 3 MiB; the offer claims 2");
        e.commit(&p, 40, &seed, 2, fill.root()).unwrap();
        assert!(e.commit(&p, 40, &seed, 2, fill.root()).is_err(), "one commitment per epoch");
        let (open, named, judged) = e.open(40, [1; 32], 0, 500 * MS);
        assert_eq!((named, judged), (vec![p], vec![]));
        let answer = fill.open(&c, &c.to_open(&fill.root(), &[1; 32]));
        let j = e.answer(&p, open, &answer, 20 * MS).unwrap();
        assert_eq!(j.verdict, MemoryVerdict::Shown { mib: 2, answered_ms: 20 });
        assert_eq!(e.on_chain_mib(&p), Some(2));
        assert!(e.answer(&p, open, &answer, 21 * MS).is_err(), "answered once");
        // The next opening: an answer to another nonce's blocks is wrong, and costs the claim.
        let (open, _, _) = e.open(40, [2; 32], 1000 * MS, 500 * MS);
        let j = e.answer(&p, open, &answer, 1010 * MS).unwrap();
        assert!(matches!(j.verdict, MemoryVerdict::Wrong(_)), "{j:?}");
        assert_eq!(e.on_chain_mib(&p), Some(0));
    }

    #[test]
    fn one_slow_or_missed_opening_costs_nothing_two_in_a_row_the_claim() {
        let (mut e, p, seed, c, fill) = setup();
        e.commit(&p, 40, &seed, 2, fill.root()).unwrap();
        let (open, _, _) = e.open(40, [1; 32], 0, 500 * MS);
        let answer = fill.open(&c, &c.to_open(&fill.root(), &[1; 32]));
        e.answer(&p, open, &answer, 20 * MS).unwrap();
        // Late once: still held.
        let (open, _, _) = e.open(40, [2; 32], 1000 * MS, 500 * MS);
        let answer = fill.open(&c, &c.to_open(&fill.root(), &[2; 32]));
        let j = e.answer(&p, open, &answer, 1600 * MS).unwrap();
        assert_eq!(j.verdict, MemoryVerdict::Late { answered_ms: 600, deadline_ms: 500 });
        assert_eq!(e.on_chain_mib(&p), Some(2));
        // Then silent: not judged before the grace, then unanswered, and the claim is lost.
        let (_, _, _) = e.open(40, [3; 32], 2000 * MS, 500 * MS);
        assert!(e.tick(2000 * MS + 5_500 * MS).is_empty());
        let j = e.tick(2000 * MS + 6_100 * MS);
        assert_eq!(j.len(), 1);
        assert_eq!(j[0].verdict, MemoryVerdict::NoAnswer);
        assert_eq!(e.on_chain_mib(&p), Some(0));
        // A new epoch without a commitment is a failure too; a shown answer restores the claim.
        let (_, named, judged) = e.open(80, [4; 32], 9000 * MS, 500 * MS);
        assert!(named.is_empty() && judged[0].verdict == MemoryVerdict::NoCommit);
        let c2 = MemoryChallenge::derive(&seed, &p, 120, 2);
        let fill2 = c2.fill();
        e.commit(&p, 120, &seed, 2, fill2.root()).unwrap();
        let (open, _, _) = e.open(120, [5; 32], 10_000 * MS, 500 * MS);
        let answer = fill2.open(&c2, &c2.to_open(&fill2.root(), &[5; 32]));
        assert!(e.answer(&p, open, &answer, 10_010 * MS).unwrap().verdict.passed());
        assert_eq!(e.on_chain_mib(&p), Some(2));
    }
}
