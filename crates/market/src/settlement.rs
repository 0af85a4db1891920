//! The end of every block: leases that ran out, results whose window closed (replicas voted),
//! bonds released, jobs finished. Penalties for proven faults are in `penalties`.

use std::collections::{BTreeMap, BTreeSet};

use ergon_types::{Address, Hash};

use crate::model::{short, Job, JobStatus, ProviderStatus, TaskKey, TaskState};
use crate::reasons::Subject;
use crate::state::Market;
use crate::{payment, Effect, MarketParams};

impl Market {
    /// [`end_block_after`](Self::end_block_after) with a seed made of the height alone, for
    /// simulations and benchmarks that have no blocks.
    pub fn end_block(&mut self, height: u64, params: &MarketParams) -> Vec<Effect> {
        self.end_block_after(&Hash::of("ergon v1 seed without blocks", &[&height.to_le_bytes()]), height, params)
    }

    /// End-of-block work: close expired leases, settle results, cancel tasks nobody took in
    /// time, release bonds, finish jobs, match the queue. Returns the coin movements, in a
    /// deterministic order.
    ///
    /// `seed` is the id of the block before this one (the parent of the block being applied):
    /// the only randomness the market uses, to sample trusted providers' results for a check
    /// (`checks`).
    pub fn end_block_after(&mut self, seed: &Hash, height: u64, params: &MarketParams) -> Vec<Effect> {
        let mut effects = vec![];
        self.expire_leases(height, params, &mut effects);
        self.expire_reveals(height, params, &mut effects);
        self.settle_results(height, seed, params, &mut effects);
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
    /// whole once every replica's window has ended, and once its check replica, if one is
    /// called (`checks`), has voted: results matching the majority are paid (a check with the
    /// replica it checked, out of that replica's pay); the others (all of them, when no result
    /// has a majority or the check dissents) are not, and those replicas are re-allocated away
    /// from their providers, because exact work has one right answer.
    fn settle_results(&mut self, height: u64, seed: &Hash, params: &MarketParams, effects: &mut Vec<Effect>) {
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
                // A sibling (or the check) is still running or inside its window: look again
                // next block.
                self.defer_settlement(key, height);
                continue;
            };
            if self.call_check_if_due(id, shard, height, seed, params) {
                self.defer_settlement(key, height);
                continue;
            }
            let job = &self.jobs[&id];
            let check = job.check_replica();
            // A client's doubt (`checks`): the check, when it computed what the client expected,
            // decides; when it did not, the client pays for the check it asked for.
            let doubt = check.and_then(|c| job.task(shard, c).doubt.map(|expected| (c, expected)));
            if let Some((c, _)) = doubt.filter(|&(c, expected)| {
                matches!(job.task(shard, c).state, TaskState::Posted { result, .. } if result == expected)
            }) {
                self.settle_confirmed_doubt(id, shard, c, height, params, effects);
                finished.insert(id);
                continue;
            }
            let slots = job.slots();
            let posted: Vec<Option<(Hash, u64)>> = (0..slots)
                .map(|r| match job.task(shard, r).state {
                    TaskState::Posted { result, settles_at, .. } => Some((result, settles_at)),
                    _ => None,
                })
                .collect();
            let posted = |r: u8| posted[r as usize];
            // A called check that dissents voids the shard: it was called because no trusted
            // provider vouched for the result, so a majority of untrusted ones (a ring of
            // identities holding every replica) must not outvote it.
            let check_dissents = check.is_some_and(|c| posted(c).is_some_and(|(r, _)| Some(r) != verdict.map(|v| v.0)));
            let verdict = verdict.filter(|_| !check_dissents);
            let majority = verdict.map(|(root, _)| root);
            let agreeing = verdict.map_or(0, |(_, votes)| votes);
            // The replica whose pay funds an agreeing check: the first that agrees with it.
            let check_agrees = check.is_some_and(|c| posted(c).is_some_and(|(r, _)| Some(r) == majority));
            let charged = (0..job.spec.requirements.replicas)
                .find(|&r| check_agrees && doubt.is_none() && posted(r).is_some_and(|(x, _)| Some(x) == majority));
            if check_agrees && doubt.is_some() {
                let text = format!(
                    "shard {shard}: the check agreed with the posted result, not with the one the client expected, so the client pays for the check it asked for"
                );
                self.note(Subject::Job(id), height, text);
            }
            for r in 0..slots {
                let Some((result, settles_at)) = posted(r) else { continue };
                let key = (id, shard, r);
                self.settling.remove(&(settles_at, key));
                let is_check = Some(r) == check;
                match majority {
                    Some(m) if m == result && is_check && charged.is_some() => {} // Paid with the replica it checked.
                    Some(m) if m == result => {
                        let with = check.filter(|_| charged == Some(r)).map(|c| (id, shard, c));
                        self.pay_result(key, with, agreeing, height, params, effects)
                    }
                    Some(m) => {
                        let why = format!("its result {} differs from the majority's {}", short(&result), short(&m));
                        self.reject_result(key, height, &why, true, effects)
                    }
                    None if check_dissents => {
                        if !is_check {
                            self.lose_trust(key, height);
                        }
                        let why = "the check replica's result differs, so no result is paid and all are run again";
                        self.reject_result(key, height, why, false, effects)
                    }
                    None => self.reject_result(
                        key,
                        height,
                        "the replicas' results disagree with no majority",
                        true,
                        effects,
                    ),
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
    /// burned (counting what its blocks already burned). With `check`, the check replica that
    /// agreed with it is paid out of the same payment (`checks`): the shard's value is then the
    /// larger of the two leases', and the checker gets its own value less the burn, at most what
    /// the checked provider would have had. `agreeing` is how many voters agreed on the result.
    pub(crate) fn pay_result(
        &mut self,
        key: TaskKey,
        check: Option<TaskKey>,
        agreeing: usize,
        height: u64,
        params: &MarketParams,
        effects: &mut Vec<Effect>,
    ) {
        let (id, shard, replica) = key;
        let job = &self.jobs[&id];
        let TaskState::Posted { price, .. } = job.task(shard, replica).state else { return };
        let macs = job.shard_macs(shard);
        let own = payment(price, macs);
        let checker = check.and_then(|c| match job.task(c.1, c.2).state {
            TaskState::Posted { price, .. } => Some((c, payment(price, macs), job.task(c.1, c.2).prepaid_burn)),
            _ => None,
        });
        let burn_of = |amount: u64| (amount as u128 * params.job_burn_percent as u128 / 100) as u64;
        let amount = own.max(checker.map_or(0, |(_, value, _)| value));
        let prepaid = job.task(shard, replica).prepaid_burn + checker.map_or(0, |(_, _, prepaid)| prepaid);
        let burn_due = burn_of(amount);
        let burn_now = burn_due.saturating_sub(prepaid).min(job.escrow);
        let shared = amount.saturating_sub(burn_due.max(prepaid)).min(job.escrow - burn_now);
        let to_checker = checker.map_or(0, |(_, value, _)| (value - burn_of(value)).min(shared));
        let to_provider = shared - to_checker;
        let job = self.jobs.get_mut(&id).expect("results belong to jobs");
        job.escrow -= burn_now + shared;
        job.paid += shared;
        job.burned += burn_now;
        self.escrow_total -= burn_now + shared;
        let kind = job.spec.kind;
        let mut text = format!(
            "shard {shard} replica {replica}: settled, {macs} multiply-adds at {price} per G MAC = {own}: {to_provider} to the provider, {} burned",
            burn_now + prepaid
        );
        if let Some(((_, _, c), value, _)) = checker {
            text += &format!(
                "; check replica {c} agreed (worth {value}) and was paid {to_checker} out of it, the client paying {amount} for the shard"
            );
        }
        self.note(Subject::Job(id), height, text);
        let provider = self.settle_paid(key, to_provider, kind, agreeing, height, params, effects);
        if let Some((c, _, _)) = checker {
            self.settle_paid(c, to_checker, kind, agreeing, height, params, effects);
            self.note(
                Subject::Provider(provider),
                height,
                format!("job {} shard {shard}: paid {to_checker} of this result's pay for its check", short(&id)),
            );
        }
        effects.push(Effect::Burn { amount: burn_now });
    }

    /// A paid task's own bookkeeping: settled, its lease ended, its provider paid `paid` and
    /// credited. Returns the provider.
    #[allow(clippy::too_many_arguments)]
    fn settle_paid(
        &mut self,
        key: TaskKey,
        paid: u64,
        kind: ergon_types::JobKind,
        agreeing: usize,
        height: u64,
        params: &MarketParams,
        effects: &mut Vec<Effect>,
    ) -> Address {
        let (id, shard, _) = key;
        let job = self.jobs.get_mut(&id).expect("results belong to jobs");
        let task = job.task_mut(key.1, key.2);
        let TaskState::Posted { provider, result, .. } = task.state else { unreachable!("callers pay posted tasks") };
        task.prepaid_burn = 0; // Counted: nothing to repay.
        task.state = TaskState::Settled { provider, result, paid };
        effects.push(Effect::Pay { to: provider, amount: paid });
        self.end_lease(key, provider, height);
        let p = self.providers.get_mut(&provider).expect("posters are providers");
        let counts = crate::checks::counts_for_probation(kind, agreeing, p.probation(params).is_none());
        p.pending -= 1;
        p.earned += paid;
        p.completed += 1;
        p.vouched += u64::from(counts);
        self.book.list(&self.providers[&provider]);
        let mut text = format!("paid {paid} for job {} shard {shard}", short(&id));
        if !counts {
            text += ": unchecked (no other provider computed it), so it does not count toward leaving probation";
        }
        self.note(Subject::Provider(provider), height, text);
        provider
    }

    /// A replica outvoted by its siblings: not paid, counted (if `counted`) as a failure and a
    /// strike (the chain cannot prove which side is wrong, so no stake is taken beyond repaying
    /// what its blocks burned), and re-allocated to someone else. A check's dissent counts
    /// against nobody: a ring of identities could otherwise strike an honest checker out of the
    /// market, or push it onto probation; the ring itself stays there, never paid.
    fn reject_result(&mut self, key: TaskKey, height: u64, why: &str, counted: bool, effects: &mut Vec<Effect>) {
        if self.refuse_pay(key, height, why, counted) {
            self.requeue(key, height, effects);
        }
    }

    /// [`reject_result`](Self::reject_result) but for queuing the task again, which the caller
    /// does or not; false if `key` had no posted result.
    pub(crate) fn refuse_pay(&mut self, key: TaskKey, height: u64, why: &str, counted: bool) -> bool {
        let (id, shard, replica) = key;
        let job = &self.jobs[&id];
        let TaskState::Posted { provider, .. } = job.task(shard, replica).state else { return false };
        self.end_lease(key, provider, height);
        // Out of every replica of the shard, or two outvoted providers would just swap places.
        let job = self.jobs.get_mut(&id).expect("results belong to jobs");
        for r in 0..job.slots() {
            job.task_mut(shard, r).excluded.insert(provider);
        }
        let p = self.providers.get_mut(&provider).expect("posters are providers");
        p.pending -= 1;
        p.failed += u64::from(counted);
        p.strikes += u32::from(counted);
        self.book.list(&self.providers[&provider]);
        self.note(Subject::Job(id), height, format!("shard {shard} replica {replica}: not paid, {why}"));
        self.note(Subject::Provider(provider), height, format!("not paid for job {} shard {shard}: {why}", short(&id)));
        true
    }

    /// A check dissented from the result posted on `key`: its provider is back on probation,
    /// as new (BOINC's rule: a host whose result failed validation is replicated again).
    pub(crate) fn lose_trust(&mut self, key: TaskKey, height: u64) {
        let TaskState::Posted { provider, .. } = self.jobs[&key.0].task(key.1, key.2).state else { return };
        let p = self.providers.get_mut(&provider).expect("posters are providers");
        if std::mem::take(&mut p.vouched) > 0 {
            let text = format!(
                "back on probation: a check disagreed with its result on job {} shard {}",
                short(&key.0),
                key.1
            );
            self.note(Subject::Provider(provider), height, text);
        }
    }

    /// Tasks that waited `max_queue_blocks` without a provider are cancelled, so their escrow
    /// comes back and their shard's other replicas can settle without them.
    fn expire_queue(&mut self, height: u64, params: &MarketParams, effects: &mut Vec<Effect>) {
        let stale: Vec<(u64, u64, TaskKey)> = self
            .book
            .queued_tasks()
            .filter_map(|(max_price, submitted_at, key)| {
                let job = &self.jobs[&key.0];
                let wait =
                    if job.check_replica() == Some(key.2) { params.check_wait_blocks } else { params.max_queue_blocks };
                let since = job.task(key.1, key.2).queued_since;
                (since + wait <= height).then_some((max_price, submitted_at, key))
            })
            .collect();
        let mut jobs = BTreeSet::new();
        for (max_price, submitted_at, key) in stale {
            let (id, shard, replica) = key;
            self.book.dequeue(max_price, submitted_at, key);
            let job = self.jobs.get_mut(&id).expect("queued tasks belong to jobs");
            let is_check = job.check_replica() == Some(replica);
            let task = job.task_mut(shard, replica);
            let why = task.waiting.map_or_else(|| "no provider fitted".to_string(), |w| w.to_string());
            task.state = TaskState::Cancelled;
            task.waiting = None;
            let text = if is_check {
                format!(
                    "shard {shard} check replica {replica}: cancelled, no provider took it within {} blocks ({why}); the shard settles unchecked",
                    params.check_wait_blocks
                )
            } else {
                format!(
                    "shard {shard} replica {replica}: cancelled, no provider took it within {} blocks ({why}); its escrow is refunded",
                    params.max_queue_blocks
                )
            };
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

/// The settled result of `shard`'s replicas (its check replica voting, when called), once every
/// one has posted and its window has ended (`None` until then): `Some(Some((root, votes)))`
/// when a strict majority of `votes` agrees on `root`, `Some(None)` when none does. Replicas
/// already settled or cancelled count as they stand; a spare check does not vote.
fn replica_verdict(job: &Job, shard: u16, height: u64) -> Option<Option<(Hash, usize)>> {
    let mut votes: BTreeMap<Hash, usize> = BTreeMap::new();
    let mut voters = 0;
    for r in 0..job.slots() {
        match job.task(shard, r).state {
            TaskState::Posted { result, settles_at, .. } if settles_at <= height => {
                *votes.entry(result).or_default() += 1
            }
            TaskState::Settled { result, .. } => *votes.entry(result).or_default() += 1,
            TaskState::Cancelled | TaskState::Spare => continue,
            _ => return None,
        }
        voters += 1;
    }
    Some(votes.into_iter().find(|&(_, n)| 2 * n > voters))
}
