//! The end of every block: leases that ran out, results whose window closed (replicas voted),
//! bonds released, jobs finished; and the penalties: disputes and slashing.

use std::collections::{BTreeMap, BTreeSet};

use ergon_types::{Address, Hash};

use crate::model::{short, Job, JobStatus, ProviderStatus, TaskKey, TaskState};
use crate::reasons::Subject;
use crate::state::Market;
use crate::{payment, Effect, MarketParams, MarketRejection};

impl Market {
    /// Judges a dispute over a posted result: if `evidence` proves an entry wrong against the
    /// shard's commitment and the posted root, the provider is slashed (half to `disputer`, half
    /// burned) and the task re-allocated.
    pub fn dispute(
        &mut self,
        disputer: Address,
        key: TaskKey,
        evidence: &ergon_pouw::WrongEntry,
        height: u64,
        params: &MarketParams,
    ) -> Result<Vec<Effect>, MarketRejection> {
        let (id, shard, replica) = key;
        let job = self.jobs.get(&id).ok_or(MarketRejection::UnknownJob)?;
        if shard as usize >= job.spec.shards.len() || replica >= job.spec.requirements.replicas {
            return Err(MarketRejection::NoSuchShard { shard, shards: job.spec.shards.len() });
        }
        let TaskState::Posted { result, .. } = job.task(shard, replica).state else {
            return Err(MarketRejection::NotInChallengeWindow);
        };
        let (claimed, correct) = evidence
            .check(&job.spec.shards[shard as usize], &result.0)
            .map_err(|e| MarketRejection::DisputeFailed(e.to_string()))?;
        let why = format!("entry ({}, {}) is {claimed} but the product is {correct}", evidence.row, evidence.col);
        let mut effects = vec![];
        for e in self.slash(key, height, params, &why) {
            if let Effect::Burn { amount } = e {
                let reward = amount / 2;
                effects.push(Effect::Pay { to: disputer, amount: reward });
                effects.push(Effect::Burn { amount: amount - reward });
            }
        }
        Ok(effects)
    }

    /// A proven wrong result: the provider loses up to `min_provider_stake` of its bond (burned),
    /// is demoted, and the task is queued again without it.
    pub fn slash(&mut self, key: TaskKey, height: u64, params: &MarketParams, why: &str) -> Vec<Effect> {
        let (id, shard, replica) = key;
        let Some(job) = self.jobs.get_mut(&id) else { return vec![] };
        let (TaskState::Posted { provider, settles_at, .. } | TaskState::Leased { provider, deadline: settles_at, .. }) =
            job.task(shard, replica).state.clone()
        else {
            return vec![];
        };
        let task = job.task_mut(shard, replica);
        task.state = TaskState::Queued;
        task.excluded.insert(provider);
        let job = &self.jobs[&id];
        self.book.enqueue(job, shard, replica);
        self.settling.remove(&(settles_at, key));
        self.deadlines.remove(&(settles_at, key));
        let p = self.providers.get(&provider).expect("leaseholders are providers");
        self.book.unlist(Some(p));
        let p = self.providers.get_mut(&provider).expect("leaseholders are providers");
        let amount = p.bond.min(params.min_provider_stake);
        p.bond -= amount;
        p.slashed += amount;
        p.failed += 1;
        p.leases.remove(&key);
        p.pending = p.pending.saturating_sub(1);
        if p.status == ProviderStatus::Active {
            p.status = ProviderStatus::Demoted;
        }
        self.bond_total -= amount;
        self.note(
            Subject::Provider(provider),
            height,
            format!("slashed {amount} and demoted: {why} (job {})", short(&id)),
        );
        self.note(
            Subject::Job(id),
            height,
            format!("shard {shard} replica {replica}: provider slashed ({why}); re-allocated"),
        );
        vec![Effect::Burn { amount }]
    }

    /// End-of-block work: close expired leases, settle results, release bonds, finish jobs,
    /// match the queue. Returns the coin movements, in a deterministic order.
    pub fn end_block(&mut self, height: u64, params: &MarketParams) -> Vec<Effect> {
        let mut effects = vec![];
        self.expire_leases(height, params);
        self.settle_results(height, params, &mut effects);
        self.release_bonds(height, &mut effects);
        self.match_queue(height);
        effects
    }

    fn expire_leases(&mut self, height: u64, params: &MarketParams) {
        while let Some(&(deadline, key)) = self.deadlines.first() {
            if deadline > height {
                break;
            }
            self.deadlines.pop_first();
            let (id, shard, replica) = key;
            let job = self.jobs.get_mut(&id).expect("leases belong to jobs");
            let TaskState::Leased { provider, since, .. } = job.task(shard, replica).state else { continue };
            let task = job.task_mut(shard, replica);
            task.state = TaskState::Queued;
            task.excluded.insert(provider);
            let job = &self.jobs[&id];
            self.book.enqueue(job, shard, replica);
            self.book.unlist(self.providers.get(&provider));
            let p = self.providers.get_mut(&provider).expect("leaseholders are providers");
            p.leases.remove(&key);
            p.failed += 1;
            p.strikes += 1;
            let blocks = deadline - since;
            let mut ptext = format!(
                "lease closed: no result for job {} shard {shard} within its {blocks} blocks ({} in a row)",
                short(&id),
                p.strikes
            );
            if p.strikes >= params.max_strikes && p.status == ProviderStatus::Active {
                p.status = ProviderStatus::Demoted;
                ptext += &format!("; demoted after {} expired leases in a row: register again to return", p.strikes);
            }
            self.book.list(&self.providers[&provider]);
            self.note(Subject::Provider(provider), height, ptext);
            let text = format!(
                "shard {shard} replica {replica}: lease of {} closed, no result within {blocks} blocks; re-allocating",
                provider
            );
            self.note(Subject::Job(id), height, text);
        }
    }

    /// Pays each result whose challenge window has ended. A replicated shard is judged as a
    /// whole once every replica's window has ended: results matching the majority are paid; the
    /// others (all of them, when no result has a majority) are not, and those replicas are
    /// re-allocated away from their providers, because exact work has one right answer.
    fn settle_results(&mut self, height: u64, params: &MarketParams, effects: &mut Vec<Effect>) {
        let mut finished = BTreeSet::new();
        while let Some(&(at, key)) = self.settling.first() {
            if at > height {
                break;
            }
            self.settling.pop_first();
            let (id, shard, replica) = key;
            let job = &self.jobs[&id];
            if !matches!(job.task(shard, replica).state, TaskState::Posted { .. }) {
                continue;
            }
            let Some(verdict) = replica_verdict(job, shard, height) else {
                // A sibling is still running or inside its window: look again next block.
                let job = self.jobs.get_mut(&id).expect("checked above");
                if let TaskState::Posted { settles_at, .. } = &mut job.task_mut(shard, replica).state {
                    *settles_at = height + 1;
                }
                self.settling.insert((height + 1, key));
                continue;
            };
            for r in 0..job.spec.requirements.replicas {
                let TaskState::Posted { result, settles_at, .. } = self.jobs[&id].task(shard, r).state else {
                    continue;
                };
                let key = (id, shard, r);
                self.settling.remove(&(settles_at, key));
                match verdict {
                    Some(majority) if majority == result => self.pay_result(key, height, params, effects),
                    Some(majority) => {
                        let why =
                            format!("its result {} differs from the majority's {}", short(&result), short(&majority));
                        self.reject_result(key, height, &why)
                    }
                    None => self.reject_result(key, height, "the replicas' results disagree with no majority"),
                }
            }
            finished.insert(id);
        }
        for id in finished {
            self.finish_if_done(id, height, effects);
        }
    }

    fn pay_result(&mut self, key: TaskKey, height: u64, params: &MarketParams, effects: &mut Vec<Effect>) {
        let (id, shard, replica) = key;
        let job = self.jobs.get_mut(&id).expect("results belong to jobs");
        let TaskState::Posted { provider, price, result, .. } = job.task(shard, replica).state else { return };
        let macs = job.shard_macs(shard);
        let amount = payment(price, macs).min(job.escrow);
        let burned = (amount as u128 * params.job_burn_percent as u128 / 100) as u64;
        job.escrow -= amount;
        job.paid += amount - burned;
        job.burned += burned;
        job.task_mut(shard, replica).state = TaskState::Settled { provider, result, paid: amount - burned };
        self.escrow_total -= amount;
        effects.push(Effect::Pay { to: provider, amount: amount - burned });
        effects.push(Effect::Burn { amount: burned });
        self.book.unlist(self.providers.get(&provider));
        let p = self.providers.get_mut(&provider).expect("posters are providers");
        p.pending -= 1;
        p.completed += 1;
        p.earned += amount - burned;
        self.book.list(&self.providers[&provider]);
        let text = format!(
            "shard {shard} replica {replica}: settled, {macs} multiply-adds at {price} per G MAC = {amount}: {} to the provider, {burned} burned",
            amount - burned
        );
        self.note(Subject::Job(id), height, text);
        self.note(
            Subject::Provider(provider),
            height,
            format!("paid {} for job {} shard {shard}", amount - burned, short(&id)),
        );
    }

    /// A replica outvoted by its siblings: not paid, counted as a strike (the chain cannot prove
    /// which side is wrong, so no stake is taken), and re-allocated to someone else.
    fn reject_result(&mut self, key: TaskKey, height: u64, why: &str) {
        let (id, shard, replica) = key;
        let job = self.jobs.get_mut(&id).expect("results belong to jobs");
        let TaskState::Posted { provider, .. } = job.task(shard, replica).state else { return };
        job.task_mut(shard, replica).state = TaskState::Queued;
        // Out of every replica of the shard, or two outvoted providers would just swap places.
        for r in 0..job.spec.requirements.replicas {
            job.task_mut(shard, r).excluded.insert(provider);
        }
        self.book.enqueue(&self.jobs[&id], shard, replica);
        self.book.unlist(self.providers.get(&provider));
        let p = self.providers.get_mut(&provider).expect("posters are providers");
        p.pending -= 1;
        p.failed += 1;
        p.strikes += 1;
        self.book.list(&self.providers[&provider]);
        self.note(Subject::Job(id), height, format!("shard {shard} replica {replica}: not paid, {why}; re-allocating"));
        self.note(Subject::Provider(provider), height, format!("not paid for job {} shard {shard}: {why}", short(&id)));
    }

    pub(crate) fn finish_if_done(&mut self, id: Hash, height: u64, effects: &mut Vec<Effect>) {
        let job = self.jobs.get_mut(&id).expect("caller holds a job id");
        if job.finished_at.is_some() || !job.is_finished() {
            return;
        }
        let refund = job.escrow;
        job.escrow = 0;
        job.finished_at = Some(height);
        if job.status == JobStatus::Open {
            job.status = JobStatus::Done;
        }
        let client = job.client;
        let text =
            format!("finished: paid {} to providers, burned {}, refunded {refund} to the client", job.paid, job.burned);
        self.escrow_total -= refund;
        if refund > 0 {
            effects.push(Effect::Pay { to: client, amount: refund });
        }
        self.note(Subject::Job(id), height, text);
    }

    fn release_bonds(&mut self, height: u64, effects: &mut Vec<Effect>) {
        let leaving: Vec<Address> = self
            .providers
            .values()
            .filter(|p| p.status == ProviderStatus::Leaving && p.leases.is_empty() && p.pending == 0)
            .map(|p| p.owner)
            .collect();
        for owner in leaving {
            let p = self.providers.get_mut(&owner).expect("listed above");
            let amount = std::mem::take(&mut p.bond);
            p.status = ProviderStatus::Gone;
            self.bond_total -= amount;
            if amount > 0 {
                effects.push(Effect::Unbond { to: owner, amount });
            }
            self.note(Subject::Provider(owner), height, format!("left the market: bond {amount} is unbonding"));
        }
    }
}

/// The settled result of `shard`'s replicas, once every replica has posted and its window has
/// ended (`None` until then): `Some(Some(root))` when a strict majority agrees on `root`,
/// `Some(None)` when none does. Replicas already settled or cancelled count as they stand.
fn replica_verdict(job: &Job, shard: u16, height: u64) -> Option<Option<Hash>> {
    let mut votes: BTreeMap<Hash, usize> = BTreeMap::new();
    let mut voters = 0;
    for r in 0..job.spec.requirements.replicas {
        match job.task(shard, r).state {
            TaskState::Posted { result, settles_at, .. } if settles_at <= height => {
                *votes.entry(result).or_default() += 1
            }
            TaskState::Settled { result, .. } => *votes.entry(result).or_default() += 1,
            TaskState::Cancelled => continue,
            _ => return None,
        }
        voters += 1;
    }
    Some(votes.into_iter().find(|&(_, n)| 2 * n > voters).map(|(root, _)| root))
}
