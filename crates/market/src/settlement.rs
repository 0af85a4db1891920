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
    /// shard's commitment and the posted root, the provider is slashed; the disputer receives
    /// at most the fixed `dispute_bounty` of it, the rest is burned; the task is re-allocated.
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

    /// A proven fault on a lease or a posted result: the provider first repays to the escrow
    /// what blocks on the lease burned from it, then loses the larger of the lease's collateral
    /// and `min_provider_stake` (never more than its bond), is demoted, and the task is queued
    /// again without it. Returns the amount slashed; the caller decides where it goes.
    pub(crate) fn penalize(
        &mut self,
        key: TaskKey,
        height: u64,
        params: &MarketParams,
        why: &str,
        effects: &mut Vec<Effect>,
    ) -> u64 {
        let (id, shard, replica) = key;
        let Some(job) = self.jobs.get(&id) else { return 0 };
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
            _ => return 0,
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
        self.requeue(key, height, effects);
        amount
    }

    /// End-of-block work: close expired leases, settle results, cancel tasks nobody took in
    /// time, release bonds, finish jobs, match the queue. Returns the coin movements, in a
    /// deterministic order.
    pub fn end_block(&mut self, height: u64, params: &MarketParams) -> Vec<Effect> {
        let mut effects = vec![];
        self.expire_leases(height, params, &mut effects);
        self.expire_reveals(height, params, &mut effects);
        self.settle_results(height, params, &mut effects);
        self.expire_queue(height, params, &mut effects);
        self.release_bonds(height, &mut effects);
        self.expire_judgments(height, params, &mut effects);
        self.match_queue(height, params);
        self.archive(height, params);
        effects
    }

    /// Removes jobs finished `archive_after_blocks` ago, and their logs, from the state. Nothing
    /// can refer to them any more: every task ended, every window closed, every coin moved.
    fn archive(&mut self, height: u64, params: &MarketParams) {
        while let Some(&(finished, id)) = self.finished.first() {
            if finished.saturating_add(params.archive_after_blocks) > height {
                break;
            }
            self.finished.pop_first();
            let job = self.jobs.remove(&id);
            debug_assert!(job.is_some_and(|j| j.escrow == 0 && j.finished_at == Some(finished)));
            self.log.forget(&Subject::Job(id));
            self.archived += 1;
        }
    }

    /// Ends `provider`'s hold on `key` (a lease, or a posted result), paid or not: off its
    /// leases, its collateral unlocked, and what blocks on the lease burned from the escrow
    /// repaid to it from the bond (as far as the bond goes). The caller has unlisted nothing;
    /// this unlists the provider and leaves it unlisted, so the caller can change its counters
    /// and then list it again.
    pub(crate) fn end_lease(&mut self, key: TaskKey, provider: Address, height: u64) {
        let p = self.providers.get(&provider).expect("leaseholders are providers");
        self.book.unlist(Some(p));
        let job = self.jobs.get_mut(&key.0).expect("leases belong to jobs");
        let task = job.task_mut(key.1, key.2);
        let (collateral, prepaid) = (std::mem::take(&mut task.collateral), std::mem::take(&mut task.prepaid_burn));
        let p = self.providers.get_mut(&provider).expect("leaseholders are providers");
        p.leases.remove(&key);
        p.locked -= collateral;
        let repaid = prepaid.min(p.bond);
        p.bond -= repaid;
        job.escrow += repaid;
        self.bond_total -= repaid;
        self.escrow_total += repaid;
        if repaid > 0 {
            let text =
                format!("repaid {repaid} to job {}'s escrow: what its blocks on the lease burned", short(&key.0));
            self.note(Subject::Provider(provider), height, text);
        }
    }

    /// Puts `key` back in the queue, or, when its job was cancelled, cancels it (and finishes
    /// the job if that was its last open task).
    pub(crate) fn requeue(&mut self, key: TaskKey, height: u64, effects: &mut Vec<Effect>) {
        let (id, shard, replica) = key;
        let job = self.jobs.get_mut(&id).expect("tasks belong to jobs");
        let open = job.status == JobStatus::Open;
        let task = job.task_mut(shard, replica);
        task.waiting = None;
        task.challenge = None;
        task.challenges = 0;
        if open {
            task.state = TaskState::Queued;
            task.queued_since = height;
            self.book.enqueue(&self.jobs[&id], shard, replica);
            self.note(Subject::Job(id), height, format!("shard {shard} replica {replica}: re-allocating"));
        } else {
            task.state = TaskState::Cancelled;
            let text = format!("shard {shard} replica {replica}: not re-allocated, the job was cancelled");
            self.note(Subject::Job(id), height, text);
            self.finish_if_done(id, height, effects);
        }
    }

    fn expire_leases(&mut self, height: u64, params: &MarketParams, effects: &mut Vec<Effect>) {
        while let Some(&(deadline, key)) = self.deadlines.first() {
            if deadline > height {
                break;
            }
            self.deadlines.pop_first();
            let (id, shard, replica) = key;
            let job = &self.jobs[&id];
            let TaskState::Leased { provider, since, .. } = job.task(shard, replica).state else { continue };
            self.end_lease(key, provider, height);
            self.jobs.get_mut(&id).expect("checked above").task_mut(shard, replica).excluded.insert(provider);
            let p = self.providers.get_mut(&provider).expect("leaseholders are providers");
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
                "shard {shard} replica {replica}: lease of {provider} closed, no result within {blocks} blocks"
            );
            self.note(Subject::Job(id), height, text);
            self.requeue(key, height, effects);
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
            if job.task(shard, replica).challenge.is_some() {
                // Settled only once the challenged rows are revealed (or slashed at the deadline).
                self.defer_settlement(key, height);
                continue;
            }
            let Some(verdict) = replica_verdict(job, shard, height) else {
                // A sibling is still running or inside its window: look again next block.
                self.defer_settlement(key, height);
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
                        self.reject_result(key, height, &why, effects)
                    }
                    None => self.reject_result(key, height, "the replicas' results disagree with no majority", effects),
                }
            }
            finished.insert(id);
        }
        for id in finished {
            self.finish_if_done(id, height, effects);
        }
    }

    /// Looks at a due posted result (already taken off `settling`) again at the next block.
    fn defer_settlement(&mut self, key: TaskKey, height: u64) {
        let job = self.jobs.get_mut(&key.0).expect("results belong to jobs");
        if let TaskState::Posted { settles_at, .. } = &mut job.task_mut(key.1, key.2).state {
            *settles_at = height + 1;
        }
        self.settling.insert((height + 1, key));
    }

    /// Pays a settled result: its value at the lease price, of which `job_burn_percent` is
    /// burned (counting what its blocks already burned).
    fn pay_result(&mut self, key: TaskKey, height: u64, params: &MarketParams, effects: &mut Vec<Effect>) {
        let (id, shard, replica) = key;
        let job = &self.jobs[&id];
        let TaskState::Posted { provider, price, result, .. } = job.task(shard, replica).state else { return };
        let macs = job.shard_macs(shard);
        let prepaid = job.task(shard, replica).prepaid_burn;
        let amount = payment(price, macs);
        let burn_due = (amount as u128 * params.job_burn_percent as u128 / 100) as u64;
        let burn_now = burn_due.saturating_sub(prepaid).min(job.escrow);
        let to_provider = amount.saturating_sub(burn_due.max(prepaid)).min(job.escrow - burn_now);
        let job = self.jobs.get_mut(&id).expect("results belong to jobs");
        let task = job.task_mut(shard, replica);
        task.prepaid_burn = 0; // Counted: nothing to repay.
        task.state = TaskState::Settled { provider, result, paid: to_provider };
        job.escrow -= burn_now + to_provider;
        job.paid += to_provider;
        job.burned += burn_now;
        self.escrow_total -= burn_now + to_provider;
        effects.push(Effect::Pay { to: provider, amount: to_provider });
        effects.push(Effect::Burn { amount: burn_now });
        self.end_lease(key, provider, height);
        let p = self.providers.get_mut(&provider).expect("posters are providers");
        p.pending -= 1;
        p.completed += 1;
        p.earned += to_provider;
        self.book.list(&self.providers[&provider]);
        let text = format!(
            "shard {shard} replica {replica}: settled, {macs} multiply-adds at {price} per G MAC = {amount}: {to_provider} to the provider, {} burned",
            burn_now + prepaid
        );
        self.note(Subject::Job(id), height, text);
        self.note(
            Subject::Provider(provider),
            height,
            format!("paid {to_provider} for job {} shard {shard}", short(&id)),
        );
    }

    /// A replica outvoted by its siblings: not paid, counted as a strike (the chain cannot prove
    /// which side is wrong, so no stake is taken beyond repaying what its blocks burned), and
    /// re-allocated to someone else.
    fn reject_result(&mut self, key: TaskKey, height: u64, why: &str, effects: &mut Vec<Effect>) {
        let (id, shard, replica) = key;
        let job = &self.jobs[&id];
        let TaskState::Posted { provider, .. } = job.task(shard, replica).state else { return };
        self.end_lease(key, provider, height);
        // Out of every replica of the shard, or two outvoted providers would just swap places.
        let job = self.jobs.get_mut(&id).expect("results belong to jobs");
        for r in 0..job.spec.requirements.replicas {
            job.task_mut(shard, r).excluded.insert(provider);
        }
        let p = self.providers.get_mut(&provider).expect("posters are providers");
        p.pending -= 1;
        p.failed += 1;
        p.strikes += 1;
        self.book.list(&self.providers[&provider]);
        self.note(Subject::Job(id), height, format!("shard {shard} replica {replica}: not paid, {why}"));
        self.note(Subject::Provider(provider), height, format!("not paid for job {} shard {shard}: {why}", short(&id)));
        self.requeue(key, height, effects);
    }

    /// Tasks that waited `max_queue_blocks` without a provider are cancelled, so their escrow
    /// comes back and their shard's other replicas can settle without them.
    fn expire_queue(&mut self, height: u64, params: &MarketParams, effects: &mut Vec<Effect>) {
        let stale: Vec<(u64, u64, TaskKey)> = self
            .book
            .queued_tasks()
            .filter_map(|(max_price, submitted_at, key)| {
                let since = self.jobs[&key.0].task(key.1, key.2).queued_since;
                (since + params.max_queue_blocks <= height).then_some((max_price, submitted_at, key))
            })
            .collect();
        let mut jobs = BTreeSet::new();
        for (max_price, submitted_at, key) in stale {
            let (id, shard, replica) = key;
            self.book.dequeue(max_price, submitted_at, key);
            let task = self.jobs.get_mut(&id).expect("queued tasks belong to jobs").task_mut(shard, replica);
            let why = task.waiting.map_or_else(|| "no provider fitted".to_string(), |w| w.to_string());
            task.state = TaskState::Cancelled;
            task.waiting = None;
            let text = format!(
                "shard {shard} replica {replica}: cancelled, no provider took it within {} blocks ({why}); its escrow is refunded",
                params.max_queue_blocks
            );
            self.note(Subject::Job(id), height, text);
            jobs.insert(id);
        }
        for id in jobs {
            self.finish_if_done(id, height, effects);
        }
    }

    pub(crate) fn finish_if_done(&mut self, id: Hash, height: u64, effects: &mut Vec<Effect>) {
        let job = self.jobs.get_mut(&id).expect("caller holds a job id");
        if job.finished_at.is_some() || !job.is_finished() {
            return;
        }
        let refund = job.escrow;
        job.escrow = 0;
        job.finished_at = Some(height);
        self.finished.insert((height, id));
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
