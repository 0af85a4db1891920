//! Validators' judgments of providers' hardware (from their Proof-of-AI engines, `ergon-poai`):
//! what matching uses instead of the claim in an offer.
//!
//! A judgment is a staked validator's transaction saying "this provider answers at g G MAC/s".
//! A provider's verified throughput is the stake-weighted lower median of the latest judgment
//! of each validator, capped at its claim ([`Provider::verified_gmacs`]), so no validator with
//! less than half the judging stake moves it alone, and an unjudged provider counts as 0.
//!
//! A judgment of 0 says the provider stopped answering (a probe or a round missed). Once the
//! median is 0 the provider is *absent* ([`Provider::absent`]): every lease it holds goes back
//! to the queue in that block, without a strike (it may only have been cut off), and it takes
//! no lease until the validators see it answer again. This is what turns a dead provider's
//! lease into another provider's within seconds instead of at the lease's deadline.

use ergon_types::Address;

use crate::model::Judgments;
use crate::reasons::Subject;
use crate::state::Market;
use crate::{short, Effect, MarketRejection, Provider};

/// Validators' judgments kept per provider (the largest stakes).
pub const MAX_JUDGES: usize = 16;
/// Blocks between two walks for expired judgments.
pub const EXPIRY_EVERY: u64 = 16;

/// Which figure of a provider a judgment is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    /// int8 throughput, G MAC/s (0: stopped answering).
    Throughput,
    /// Main memory, MiB (0: did not show its claim).
    Memory,
}

impl Market {
    /// Records `validator`'s (holding `stake`) judgment that `provider` answers at `gmacs` (0:
    /// not at all), for `reason`. A provider that becomes absent loses its leases at once.
    pub fn judge(
        &mut self,
        validator: Address,
        stake: u64,
        provider: Address,
        gmacs: u64,
        reason: &str,
        height: u64,
    ) -> Result<Vec<Effect>, MarketRejection> {
        self.record_judgment(Figure::Throughput, validator, stake, provider, gmacs, reason, height)
    }

    /// Records `validator`'s judgment that `provider` showed it holds `memory_mib` MiB (0: it
    /// did not show its claim), for `reason`. Matching then relies on the stake-weighted median
    /// of these, never the claim alone ([`crate::Provider::verified_memory_mib`]).
    pub fn judge_memory(
        &mut self,
        validator: Address,
        stake: u64,
        provider: Address,
        memory_mib: u64,
        reason: &str,
        height: u64,
    ) -> Result<Vec<Effect>, MarketRejection> {
        self.record_judgment(Figure::Memory, validator, stake, provider, memory_mib, reason, height)
    }

    #[allow(clippy::too_many_arguments)]
    fn record_judgment(
        &mut self,
        figure: Figure,
        validator: Address,
        stake: u64,
        provider: Address,
        value: u64,
        reason: &str,
        height: u64,
    ) -> Result<Vec<Effect>, MarketRejection> {
        let p = self.providers.get(&provider).ok_or(MarketRejection::NotAProvider)?;
        if validator == provider {
            return Err(MarketRejection::BadJudgment("a provider cannot judge itself".into()));
        }
        // Checked on a copy first: a refusal changes nothing.
        let mut judgments = p.judgments(figure).clone();
        let previous = judgments.get(&validator).map(|&(_, v, _)| v);
        judgments.insert(validator, stake, value, height).map_err(MarketRejection::BadJudgment)?;
        let before = Verified::of(p);
        // Whether it is free depends on its absence: off the free list while that may change.
        self.book.unlist(Some(p));
        let p = self.providers.get_mut(&provider).expect("present above");
        *p.judgments_mut(figure) = judgments;
        let mut effects = vec![];
        let unit = match figure {
            Figure::Throughput => "",
            Figure::Memory => " MiB of memory",
        };
        let why = format!("validator {validator} judged {value}{unit}: {reason}");
        let noted = self.rejudged(provider, before, &why, height, &mut effects);
        // A memory verdict that changes no figure (the first "not shown": the floor counted
        // already) is still said, when it is this validator's new word.
        if !noted && figure == Figure::Memory && previous != Some(value) {
            let what = if value == 0 { "memory claim not shown" } else { "memory shown" };
            self.note(Subject::Provider(provider), height, format!("{what} ({why})"));
        }
        Ok(effects)
    }

    /// After `provider`'s judgments changed (it was unlisted first): back on the free list if
    /// it may be, the change and `why` in its log, and its leases released if it just became
    /// absent.
    /// Returns whether it noted a change.
    fn rejudged(
        &mut self,
        provider: Address,
        before: Verified,
        why: &str,
        height: u64,
        effects: &mut Vec<Effect>,
    ) -> bool {
        let p = &self.providers[&provider];
        let after = Verified::of(p);
        let (claim, memory_claim) = (p.offer.profile.int8_gmacs, p.offer.profile.memory_mib);
        self.book.list(p);
        let mut what = vec![];
        match (before.absent, after.absent) {
            (false, true) => what.push("absent: stopped answering challenges".to_string()),
            (true, false) => what.push(format!("answering again; verified int8 throughput {} G MAC/s", after.gmacs)),
            _ if after.gmacs != before.gmacs => what
                .push(format!("verified int8 throughput {} → {} G MAC/s (claim {claim})", before.gmacs, after.gmacs)),
            _ => {}
        }
        if after.memory_mib != before.memory_mib {
            what.push(format!("memory shown {} → {} MiB (claim {memory_claim})", before.memory_mib, after.memory_mib));
        }
        let noted = !what.is_empty();
        if noted {
            self.note(Subject::Provider(provider), height, format!("{} ({why})", what.join("; ")));
        }
        if after.absent && !before.absent {
            let leases: Vec<_> = self.providers[&provider].leases.iter().copied().collect();
            for key in leases {
                self.lose_lease_to_absence(key, provider, height, effects);
            }
        }
        noted
    }

    /// Drops judgments older than `judgment_ttl_blocks` (checked every `EXPIRY_EVERY` blocks:
    /// a walk over the providers' at most `MAX_JUDGES` judgments of each figure).
    pub(crate) fn expire_judgments(&mut self, height: u64, params: &crate::MarketParams, effects: &mut Vec<Effect>) {
        if !height.is_multiple_of(EXPIRY_EVERY) {
            return;
        }
        let ttl = params.judgment_ttl_blocks;
        let stale: Vec<Address> = self
            .providers
            .values()
            .filter(|p| p.judged.any_expired(height, ttl) || p.judged_memory.any_expired(height, ttl))
            .map(|p| p.owner)
            .collect();
        for provider in stale {
            let p = &self.providers[&provider];
            let before = Verified::of(p);
            self.book.unlist(Some(p));
            let p = self.providers.get_mut(&provider).expect("listed above");
            let mut gone = p.judged.expire(height, ttl);
            gone.extend(p.judged_memory.expire(height, ttl));
            gone.sort_unstable();
            gone.dedup();
            let names: Vec<String> = gone.iter().map(|v| v.to_string()).collect();
            let why = format!("judgment of {} expired after {ttl} blocks", names.join(", "));
            self.rejudged(provider, before, &why, height, effects);
        }
    }

    /// A proven wrong answer to a validator's challenge (`ergon_poai::fraud`, checked by the
    /// chain): the provider loses `min_provider_stake` of its bond (at most all of it), of
    /// which the reporter gets at most `dispute_bounty` and the rest is burned; it is demoted
    /// and its leases go back to the queue. Once per registration: the answer names the
    /// registration it was given under, and a demoted provider must register again (a new one).
    pub fn punish_fraud(
        &mut self,
        reporter: Address,
        provider: Address,
        registered_at: u64,
        why: &str,
        height: u64,
        params: &crate::MarketParams,
    ) -> Result<Vec<Effect>, MarketRejection> {
        let p = self.providers.get(&provider).ok_or(MarketRejection::NotAProvider)?;
        if p.status != crate::ProviderStatus::Active && p.status != crate::ProviderStatus::Leaving {
            return Err(MarketRejection::NotAFraud("the provider is already out of the market".into()));
        }
        if p.registered_at != registered_at {
            return Err(MarketRejection::NotAFraud(format!(
                "the answer was given under the registration at block {registered_at}, not the current one (block {})",
                p.registered_at
            )));
        }
        let mut effects = vec![];
        let leases: Vec<_> = p.leases.iter().copied().collect();
        for key in leases {
            let why = "its provider was proven to answer a challenge wrongly";
            self.end_lease_for(key, provider, height, why, &mut effects);
        }
        self.book.unlist(self.providers.get(&provider));
        let p = self.providers.get_mut(&provider).expect("present above");
        let amount = params.slash_amount(0, p.bond);
        p.bond -= amount;
        p.slashed += amount;
        p.failed += 1;
        p.status = crate::ProviderStatus::Demoted;
        self.bond_total -= amount;
        let bounty = amount.min(params.dispute_bounty);
        if bounty > 0 {
            effects.push(Effect::Pay { to: reporter, amount: bounty });
        }
        effects.push(Effect::Burn { amount: amount - bounty });
        self.note(
            Subject::Provider(provider),
            height,
            format!("slashed {amount} and demoted: a wrong answer to a challenge ({why})"),
        );
        Ok(effects)
    }

    /// Ends `provider`'s lease of `key` because it became absent: the task goes back to the
    /// queue (this provider excluded from it), matched again at the end of this block.
    fn lose_lease_to_absence(
        &mut self,
        key: crate::TaskKey,
        provider: Address,
        height: u64,
        effects: &mut Vec<Effect>,
    ) {
        let why = "stopped answering the validators' challenges";
        if self.end_lease_for(key, provider, height, why, effects) {
            let (id, shard, _) = key;
            let text = format!("lost its lease of job {} shard {shard}: absent (no strike)", short(&id));
            self.note(Subject::Provider(provider), height, text);
        }
    }

    /// Ends `provider`'s lease of `key` for `why` (no strike): the task goes back to the queue,
    /// this provider excluded from it. False if it held no such lease.
    fn end_lease_for(
        &mut self,
        key: crate::TaskKey,
        provider: Address,
        height: u64,
        why: &str,
        effects: &mut Vec<Effect>,
    ) -> bool {
        let (id, shard, replica) = key;
        let crate::TaskState::Leased { deadline, .. } = self.jobs[&id].task(shard, replica).state else {
            return false;
        };
        self.deadlines.remove(&(deadline, key));
        self.end_lease(key, provider, height);
        let job = self.jobs.get_mut(&id).expect("leases belong to jobs");
        job.task_mut(shard, replica).excluded.insert(provider);
        self.note(
            Subject::Job(id),
            height,
            format!("shard {shard} replica {replica}: {provider} {why}; lease released"),
        );
        self.requeue(key, height, effects);
        true
    }
}

/// What judgments make of a provider, compared before and after a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Verified {
    gmacs: u64,
    absent: bool,
    /// The median of the memory judgments, capped at the claim (the floor is not applied:
    /// the log says what validators showed).
    memory_mib: u64,
}

impl Verified {
    fn of(p: &Provider) -> Self {
        Verified {
            gmacs: p.verified_gmacs(),
            absent: p.absent(),
            memory_mib: p.judged_memory.median().min(p.offer.profile.memory_mib),
        }
    }
}

impl Provider {
    pub fn judgments(&self, figure: Figure) -> &Judgments {
        match figure {
            Figure::Throughput => &self.judged,
            Figure::Memory => &self.judged_memory,
        }
    }

    fn judgments_mut(&mut self, figure: Figure) -> &mut Judgments {
        match figure {
            Figure::Throughput => &mut self.judged,
            Figure::Memory => &mut self.judged_memory,
        }
    }
}
