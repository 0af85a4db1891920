//! Penalties for proven faults on a lease or a posted result: a dispute's wrong entry, a
//! fraud or withheld result (`slash`), and the slash itself (`penalize`), whose amount the
//! caller pays out or burns.

use ergon_pouw::WrongEntry;
use ergon_types::Address;

use crate::model::{short, ProviderStatus, TaskKey, TaskState};
use crate::reasons::Subject;
use crate::state::Market;
use crate::{Effect, MarketParams, MarketRejection};

impl Market {
    /// Judges a dispute over a posted result: if `evidence` proves an entry wrong against the
    /// shard's commitment and the posted root, the provider is slashed; the disputer receives
    /// at most the fixed `dispute_bounty` of it, the rest is burned; the task is re-allocated.
    pub fn dispute(
        &mut self,
        disputer: Address,
        key: TaskKey,
        evidence: &WrongEntry,
        height: u64,
        params: &MarketParams,
    ) -> Result<Vec<Effect>, MarketRejection> {
        let (id, shard, replica) = key;
        let job = self.jobs.get(&id).ok_or(MarketRejection::UnknownJob)?;
        job.check_task(shard, replica)?;
        let TaskState::Posted { result, .. } = job.task(shard, replica).state else {
            return Err(MarketRejection::NotInChallengeWindow);
        };
        let (claimed, correct) = evidence
            .check(&job.spec.shards[shard as usize], &result.0)
            .map_err(|e| MarketRejection::DisputeFailed(e.to_string()))?;
        let why = format!("entry ({}, {}) is {claimed} but the product is {correct}", evidence.row, evidence.col);
        let mut effects = vec![];
        let slashed = self.penalize(key, height, params, &why, &mut effects);
        let bounty = slashed.min(params.dispute_bounty);
        if bounty > 0 {
            effects.push(Effect::Pay { to: disputer, amount: bounty });
        }
        effects.push(Effect::Burn { amount: slashed - bounty });
        Ok(effects)
    }

    /// A proven fault on a lease or a posted result, the whole slash burned: see
    /// [`penalize`](Self::penalize).
    pub fn slash(&mut self, key: TaskKey, height: u64, params: &MarketParams, why: &str) -> Vec<Effect> {
        let mut effects = vec![];
        let amount = self.penalize(key, height, params, why, &mut effects);
        effects.push(Effect::Burn { amount });
        effects
    }

    /// A proven fault on a lease or a posted result ([`slash_only`](Self::slash_only)), and
    /// the task queued again without the provider. Returns the amount slashed; the caller
    /// decides where it goes.
    pub(crate) fn penalize(
        &mut self,
        key: TaskKey,
        height: u64,
        params: &MarketParams,
        why: &str,
        effects: &mut Vec<Effect>,
    ) -> u64 {
        let Some(amount) = self.slash_only(key, height, params, why) else { return 0 };
        self.requeue(key, height, effects);
        amount
    }

    /// A proven fault on a lease or a posted result: the provider first repays to the escrow
    /// what blocks on the lease burned from it, then loses the larger of the lease's collateral
    /// and `min_provider_stake` (never more than its bond), is demoted and excluded from the
    /// task, whose state the caller then sets. Returns the amount slashed (None when the task
    /// has no lease or result, so nothing happened).
    pub(crate) fn slash_only(&mut self, key: TaskKey, height: u64, params: &MarketParams, why: &str) -> Option<u64> {
        let (id, shard, replica) = key;
        let job = self.jobs.get(&id)?;
        let task = job.task(shard, replica);
        let collateral = task.collateral;
        if let Some(c) = &task.challenge {
            self.reveals.remove(&(c.deadline, key));
        }
        let provider = match task.state {
            TaskState::Posted { provider, settles_at, .. } => {
                self.settling.remove(&(settles_at, key));
                let p = self.providers.get_mut(&provider).expect("posters are providers");
                p.pending -= 1;
                provider
            }
            TaskState::Leased { provider, deadline, .. } => {
                self.deadlines.remove(&(deadline, key));
                provider
            }
            _ => return None,
        };
        self.end_lease(key, provider, height);
        let p = self.providers.get_mut(&provider).expect("leaseholders are providers");
        let amount = params.slash_amount(collateral, p.bond);
        p.bond -= amount;
        p.slashed += amount;
        p.failed += 1;
        if p.status == ProviderStatus::Active {
            p.status = ProviderStatus::Demoted;
        }
        self.bond_total -= amount;
        self.book.list(&self.providers[&provider]);
        self.jobs.get_mut(&id).expect("checked above").task_mut(shard, replica).excluded.insert(provider);
        self.note(
            Subject::Provider(provider),
            height,
            format!("slashed {amount} and demoted: {why} (job {})", short(&id)),
        );
        self.note(Subject::Job(id), height, format!("shard {shard} replica {replica}: provider slashed ({why})"));
        Some(amount)
    }
}
