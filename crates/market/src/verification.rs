//! Validators' judgments of providers' hardware (from their Proof-of-AI engines, `ergon-poai`):
//! what matching uses instead of the claim in an offer.
//!
//! A judgment is a staked validator's transaction saying "this provider answers at g G MAC/s".
//! A provider's verified throughput is the stake-weighted lower median of the latest judgment
//! of each validator, capped at its claim ([`Provider::verified_gmacs`]), so no validator with
//! less than half the judging stake moves it alone, and an unjudged provider counts as 0.

use ergon_types::Address;

use crate::reasons::Subject;
use crate::state::Market;
use crate::MarketRejection;

/// Validators' judgments kept per provider (the largest stakes).
pub const MAX_JUDGES: usize = 16;

impl Market {
    /// Records `validator`'s (holding `stake`) judgment that `provider` answers at `gmacs`.
    pub fn judge(
        &mut self,
        validator: Address,
        stake: u64,
        provider: Address,
        gmacs: u64,
        height: u64,
    ) -> Result<(), MarketRejection> {
        let p = self.providers.get(&provider).ok_or(MarketRejection::NotAProvider)?;
        if validator == provider {
            return Err(MarketRejection::BadJudgment("a provider cannot judge itself".into()));
        }
        let smallest = p.judged.iter().map(|(a, &(s, _))| (s, *a)).min();
        let full = p.judged.len() >= MAX_JUDGES && !p.judged.contains_key(&validator);
        if full && smallest.is_some_and(|(s, _)| s >= stake) {
            return Err(MarketRejection::BadJudgment(format!(
                "{MAX_JUDGES} validators with at least this stake already judge this provider"
            )));
        }
        // (The free list's order does not involve the verified throughput: no relisting.)
        let before = p.verified_gmacs();
        let p = self.providers.get_mut(&provider).expect("present above");
        if full {
            if let Some((_, a)) = smallest {
                p.judged.remove(&a);
            }
        }
        p.judged.insert(validator, (stake, gmacs));
        let (after, claim) = (p.verified_gmacs(), p.offer.profile.int8_gmacs);
        if after != before {
            let text = format!(
                "verified int8 throughput {before} → {after} G MAC/s (validator {validator} judged {gmacs}; claim {claim})"
            );
            self.note(Subject::Provider(provider), height, text);
        }
        Ok(())
    }
}
