//! Adaptive replication (BOINC's rule, issue 11): which ML results another provider computes
//! again before they are paid, and who pays for that.
//!
//! A matmul result needs no check: the client verifies every product (Freivalds) and can prove
//! a wrong entry on chain. An ML result (training, inference) has no such proof, so each shard
//! of an ML job has one *check replica* ([`crate::Job::check_replica`]), spare until called.
//! When a shard's replicas have all posted and their windows ended, it is called:
//!
//! - always, if none of the shard's providers is trusted: each is on probation
//!   ([`crate::Provider::probation`]: fewer than `probation_leases` paid results, or a
//!   reputation below `trusted_permille`; reputation combines the job history with what the
//!   validators' challenges saw of its claims);
//! - for a one-replica shard of a trusted provider, at the audit rate `audit_permille` (the rate
//!   lease collateral is sized for), drawn from the id of the block before the one that settles
//!   it, which did not exist when the result was committed.
//!
//! The check is an ordinary task: matched at the job's maximum price to a provider holding no
//! other replica of the shard, and it votes with them. If it agrees, the shard is paid once,
//! at the larger of the two lease values: the checker gets its own value (less the burn) out of
//! the checked provider's pay, so the client pays what it would have unless the checker asks
//! more, and never more than its maximum price for the replica. If the check disagrees, no
//! result of the shard is paid and all are queued again for other providers (the chain cannot
//! tell which side is wrong, and a majority of untrusted replicas, say a ring of identities
//! holding all of them, must not outvote the check it was given). The dissent counts against
//! nobody's record, or a ring could strike an honest checker out of the market; the ring's
//! identities stay on probation anyway, since only paid results end it.
//! A called check nobody takes within `check_wait_blocks` is cancelled and the shard settles
//! unchecked; so does one no other provider could take. A result paid unchecked does not count
//! toward leaving probation: a provider leaves it only through results someone else agreed
//! with (or a client's own check, for matmul), and a check that dissents from a provider's
//! result puts it back on probation, as new (`Provider::vouched` back to 0).

use ergon_types::{Address, Hash, JobKind};

use crate::model::{short, Job, JobStatus, ProviderStatus, TaskState};
use crate::reasons::Subject;
use crate::state::Market;
use crate::{Effect, MarketParams, MarketRejection};

/// Whether a trusted provider's result on `shard` of job `id` is sampled for a check, given the
/// seed of the block that settles it.
fn sampled(seed: &Hash, id: &Hash, shard: u16, audit_permille: u64) -> bool {
    let h = Hash::of("ergon v1 check sample", &[&seed.0, &id.0, &shard.to_le_bytes()]);
    let draw = u64::from_le_bytes(h.0[..8].try_into().expect("8 bytes")) % 1000;
    draw < audit_permille
}

/// The providers of `shard`'s replicas that posted or were paid.
fn posters(job: &Job, shard: u16) -> Vec<Address> {
    (0..job.spec.requirements.replicas)
        .filter_map(|r| match job.task(shard, r).state {
            TaskState::Posted { provider, .. } | TaskState::Settled { provider, .. } => Some(provider),
            _ => None,
        })
        .collect()
}

impl Market {
    /// Called when every replica of `shard` has a result due: queues its check replica if one
    /// is due (see the module's rules) and returns true; the shard then settles once the check
    /// has voted.
    pub(crate) fn call_check_if_due(
        &mut self,
        id: Hash,
        shard: u16,
        height: u64,
        seed: &Hash,
        params: &MarketParams,
    ) -> bool {
        let job = &self.jobs[&id];
        let Some(check) = job.check_replica() else { return false };
        if job.status != JobStatus::Open {
            // Its client withdrew it: nothing new is leased for it, a check included.
            return false;
        }
        if job.task(shard, check).state != TaskState::Spare {
            return false;
        }
        let providers = posters(job, shard);
        let on_probation: Vec<(Address, String)> = providers
            .iter()
            .filter_map(|a| self.providers.get(a).and_then(|p| p.probation(params)).map(|why| (*a, why)))
            .collect();
        let why = if !providers.is_empty() && on_probation.len() == providers.len() {
            let names: Vec<String> = on_probation.iter().map(|(a, why)| format!("{a} is {why}")).collect();
            names.join("; ")
        } else if on_probation.is_empty()
            && job.spec.requirements.replicas == 1
            && sampled(seed, &id, shard, params.audit_permille)
        {
            format!("sampled for audit ({}‰ of a trusted provider's results are checked)", params.audit_permille)
        } else {
            return false;
        };
        if !self.any_checker(job, shard, check) {
            let text = format!("shard {shard}: no other provider could check its result ({why}); it settles unchecked");
            self.note(Subject::Job(id), height, text);
            return false;
        }
        let job = self.jobs.get_mut(&id).expect("present above");
        let task = job.task_mut(shard, check);
        task.state = TaskState::Queued;
        task.queued_since = height;
        self.book.enqueue(&self.jobs[&id], shard, check);
        let text = format!(
            "shard {shard}: check replica {check} queued, another provider computes the result again before it is paid: {why}"
        );
        self.note(Subject::Job(id), height, text);
        for (a, _) in on_probation {
            self.note(
                Subject::Provider(a),
                height,
                format!("job {} shard {shard}: its result is being checked", short(&id)),
            );
        }
        true
    }

    /// What a doubt on a result of job `id` escrows from its client: one check replica at the
    /// job's maximum price, rounded up like the job's escrow (None for an unknown job or an
    /// overflow).
    pub fn doubt_deposit(&self, id: &Hash) -> Option<u64> {
        let spec = &self.jobs.get(id)?.spec;
        Some(crate::payment(spec.max_price_per_gmac, spec.macs_per_shard)).filter(|&c| c < u64::MAX)
    }

    /// The job's client doubts a posted result of `shard` and names the commitment it expects
    /// (`TxKind::DoubtResult`): the deposit ([`doubt_deposit`](Self::doubt_deposit)) joins
    /// the escrow, and the shard's check replica is called now if it was not already. The
    /// shard then settles once the check has voted (see `settle_confirmed_doubt`). Changes
    /// nothing when it refuses.
    pub fn doubt(
        &mut self,
        client: Address,
        id: Hash,
        shard: u16,
        expected: Hash,
        height: u64,
    ) -> Result<Vec<Effect>, MarketRejection> {
        let refuse = |why: String| Err(MarketRejection::BadDoubt(why));
        let job = self.jobs.get(&id).ok_or(MarketRejection::UnknownJob)?;
        if job.client != client {
            return refuse("only the job's client can doubt its results".into());
        }
        let Some(check) = job.check_replica() else {
            return refuse("a product is checked by its client: prove a wrong entry with a dispute".into());
        };
        if shard as usize >= job.spec.shards.len() {
            return Err(MarketRejection::NoSuchShard { shard, shards: job.spec.shards.len() });
        }
        if job.status != JobStatus::Open {
            return Err(MarketRejection::JobClosed);
        }
        let task = job.task(shard, check);
        if task.doubt.is_some() {
            return refuse(format!("shard {shard} is already doubted"));
        }
        match task.state {
            TaskState::Cancelled => return refuse(format!("shard {shard}'s check was cancelled, no provider took it")),
            TaskState::Settled { .. } => return refuse(format!("shard {shard} is already settled")),
            _ => {}
        }
        let mut differs = None;
        for r in 0..job.replicas() as u8 {
            match job.task(shard, r).state {
                TaskState::Settled { .. } => return refuse(format!("shard {shard} is already settled and paid")),
                TaskState::Posted { result, .. } if result != expected => differs = Some(result),
                _ => {}
            }
        }
        let Some(posted) = differs else {
            return refuse(format!(
                "no posted result of shard {shard} differs from the one you expect ({}): wait until one is posted",
                short(&expected)
            ));
        };
        let spare = task.state == TaskState::Spare;
        if spare && !self.any_checker(job, shard, check) {
            return refuse(format!("no other provider could check shard {shard} now"));
        }
        let deposit = self.doubt_deposit(&id).ok_or(MarketRejection::BudgetOverflow)?;
        let escrow_total = self.escrow_total.checked_add(deposit).ok_or(MarketRejection::BudgetOverflow)?;
        // All checks passed: mutate.
        self.escrow_total = escrow_total;
        let job = self.jobs.get_mut(&id).expect("present above");
        job.escrow += deposit;
        let task = job.task_mut(shard, check);
        task.doubt = Some(expected);
        if spare {
            task.state = TaskState::Queued;
            task.queued_since = height;
            self.book.enqueue(&self.jobs[&id], shard, check);
        }
        let text = format!(
            "shard {shard}: the client doubts the posted result {} and expects {}; check replica {check} decides, the client escrowing {deposit} for it",
            short(&posted),
            short(&expected)
        );
        self.note(Subject::Job(id), height, text);
        Ok(vec![])
    }

    /// Settles a doubted shard whose check computed what the client expected: two parties
    /// that did not coordinate (the matching picked the checker) agree against every result
    /// that differs. Each such result is not paid, counted as a failure and a strike, puts its
    /// provider back on probation, and, when the checker is trusted, is slashed (the slash
    /// burned, so a client gains nothing from a false doubt); its replica is cancelled, the
    /// shard having its answer. Results that agree are paid with the check, as for any check;
    /// when none does, the check is paid as the shard's result.
    pub(crate) fn settle_confirmed_doubt(
        &mut self,
        id: Hash,
        shard: u16,
        check: u8,
        height: u64,
        params: &MarketParams,
        effects: &mut Vec<Effect>,
    ) {
        let job = &self.jobs[&id];
        let TaskState::Posted { provider: checker, result: expected, .. } = job.task(shard, check).state else {
            unreachable!("the caller saw the check posted")
        };
        let trusted = self.providers.get(&checker).is_some_and(|p| p.probation(params).is_none());
        let (mut right, mut wrong) = (vec![], vec![]);
        for r in 0..job.slots() {
            let TaskState::Posted { result, settles_at, .. } = job.task(shard, r).state else { continue };
            self.settling.remove(&(settles_at, (id, shard, r)));
            if r == check {
                continue;
            }
            if result == expected {
                right.push(r)
            } else {
                wrong.push(r)
            }
        }
        for r in wrong {
            let key = (id, shard, r);
            let why = format!(
                "its result differs from {}, which the client expected and check replica {check} computed independently",
                short(&expected)
            );
            self.lose_trust(key, height);
            if trusted {
                // Counts the failure and excludes the provider, like `refuse_pay`.
                let slashed = self.slash_only(key, height, params, &why).unwrap_or(0);
                effects.push(Effect::Burn { amount: slashed });
            } else {
                let why = format!("{why} (not slashed: the checker is itself on probation)");
                self.refuse_pay(key, height, &why, true);
            }
            let job = self.jobs.get_mut(&id).expect("present above");
            let task = job.task_mut(shard, r);
            task.state = TaskState::Cancelled;
            task.challenge = None;
            self.note(
                Subject::Job(id),
                height,
                format!("shard {shard} replica {r}: cancelled, the check's result stands"),
            );
        }
        let agreeing = right.len() + 2; // with the check and the client
        match right.split_first() {
            Some((&first, rest)) => {
                self.pay_result((id, shard, first), Some((id, shard, check)), agreeing, height, params, effects);
                for &r in rest {
                    self.pay_result((id, shard, r), None, agreeing, height, params, effects);
                }
            }
            None => self.pay_result((id, shard, check), None, agreeing, height, params, effects),
        }
    }

    /// Whether any provider taking leases could take `shard`'s check (hardware aside: one that
    /// does not fit leaves the check to wait `check_wait_blocks`).
    fn any_checker(&self, job: &Job, shard: u16, check: u8) -> bool {
        let excluded = crate::matching::excluded_for(job, shard, check);
        self.providers
            .values()
            .any(|p| p.status == ProviderStatus::Active && !p.absent() && !excluded.contains(&p.owner))
    }
}

/// Whether a paid result counts toward its provider leaving probation: a matmul result (the
/// client checked it), one another voter agreed with, or any result of a trusted provider.
pub(crate) fn counts_for_probation(kind: JobKind, agreeing_votes: usize, trusted: bool) -> bool {
    kind == JobKind::Matmul || agreeing_votes >= 2 || trusted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_follows_the_audit_rate_and_the_seed() {
        let id = Hash::of("job", &[]);
        let hits = |permille| {
            (0..10_000u64).filter(|h| sampled(&Hash::of("seed", &[&h.to_le_bytes()]), &id, 0, permille)).count()
        };
        let five = hits(50);
        assert!((400..600).contains(&five), "{five} of 10000 sampled at 5%");
        assert_eq!(hits(0), 0);
        assert_eq!(hits(1000), 10_000);
        let seed = Hash::of("seed", &[]);
        assert_eq!(sampled(&seed, &id, 3, 500), sampled(&seed, &id, 3, 500));
    }
}
