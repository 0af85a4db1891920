//! The market and the transitions transactions cause: register, deregister, submit, cancel,
//! post a result, and the mining licence a lease gives. End-of-block work is in `settlement`.

use std::collections::{BTreeMap, BTreeSet};

use ergon_pouw::WorkCommitment;
use ergon_types::{Address, Hash, JobSpec, Offer};

use crate::matching::Book;
use crate::model::{short, Job, JobStatus, Judgments, Provider, ProviderStatus, Task, TaskKey, TaskState};
use crate::payment;
use crate::reasons::{Decision, Log, Subject};
use crate::rules::{check_job, check_offer};
use crate::{Effect, MarketParams, MarketRejection};

/// The whole market.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Market {
    pub(crate) providers: BTreeMap<Address, Provider>,
    pub(crate) jobs: BTreeMap<Hash, Job>,
    pub(crate) book: Book,
    /// (deadline, task) of every open lease.
    pub(crate) deadlines: BTreeSet<(u64, TaskKey)>,
    /// (settlement height, task) of every posted result.
    pub(crate) settling: BTreeSet<(u64, TaskKey)>,
    /// (reveal deadline, task) of every open availability challenge.
    pub(crate) reveals: BTreeSet<(u64, TaskKey)>,
    pub(crate) log: Log,
    pub(crate) escrow_total: u64,
    pub(crate) bond_total: u64,
    /// (finished at, job) of every finished job still held, for archiving in order.
    pub(crate) finished: BTreeSet<(u64, Hash)>,
    /// Finished jobs archived so far (removed from the state with their logs).
    pub(crate) archived: u64,
    /// The network's energy reports so far, archived jobs included.
    pub(crate) energy: EnergyTotals,
}

/// What providers reported about the CPU time of the results they posted, summed over the
/// chain's history (see `TxKind::PostResult`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnergyTotals {
    /// Results posted with a CPU time (a report of 0 is not counted: it says nothing).
    pub results: u64,
    /// Their CPU milliseconds.
    pub cpu_ms: u64,
    /// Their shards' multiply-adds, so energy per multiply-add is one division.
    pub macs: u64,
}

/// How much a market holds (what must stay flat as the chain grows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MarketSize {
    pub providers: usize,
    pub jobs: usize,
    pub tasks: usize,
    pub log_subjects: usize,
    pub log_entries: usize,
    pub archived_jobs: u64,
}

impl Market {
    pub fn provider(&self, owner: &Address) -> Option<&Provider> {
        self.providers.get(owner)
    }
    pub fn providers(&self) -> impl Iterator<Item = &Provider> {
        self.providers.values()
    }
    pub fn job(&self, id: &Hash) -> Option<&Job> {
        self.jobs.get(id)
    }
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }
    pub fn decisions(&self, subject: &Subject) -> Vec<Decision> {
        self.log.of(subject)
    }
    /// What the block at `height` decided, about every job and provider.
    pub fn decisions_at(&self, height: u64) -> Vec<(Subject, Decision)> {
        self.log.at(height)
    }
    pub fn size(&self) -> MarketSize {
        let (log_subjects, log_entries) = self.log.size();
        MarketSize {
            providers: self.providers.len(),
            jobs: self.jobs.len(),
            tasks: self.jobs.values().map(|j| j.tasks.len()).sum(),
            log_subjects,
            log_entries,
            archived_jobs: self.archived,
        }
    }
    /// Coins the market holds: escrow plus bonds (part of the circulating supply).
    pub fn held(&self) -> u128 {
        self.escrow_total as u128 + self.bond_total as u128
    }
    pub fn queued(&self) -> usize {
        self.book.queued()
    }
    pub fn open_leases(&self) -> usize {
        self.deadlines.len()
    }
    pub fn energy(&self) -> EnergyTotals {
        self.energy
    }

    pub(crate) fn note(&mut self, subject: Subject, height: u64, text: String) {
        self.log.record(subject, height, text);
    }

    /// Registers `owner` as a provider, or updates its offer, adding `stake` to its bond (the
    /// ledger has already taken `stake` from the balance).
    pub fn register(
        &mut self,
        owner: Address,
        offer: Offer,
        stake: u64,
        height: u64,
        params: &MarketParams,
    ) -> Result<(), MarketRejection> {
        check_offer(&offer)?;
        let bond = self.providers.get(&owner).map_or(0, |p| p.bond).saturating_add(stake);
        if bond < params.min_provider_stake {
            return Err(MarketRejection::BondTooSmall { bond, min: params.min_provider_stake });
        }
        self.bond_total += stake;
        self.book.unlist(self.providers.get(&owner));
        let p = self.providers.entry(owner).or_insert_with(|| Provider {
            owner,
            offer: offer.clone(),
            bond: 0,
            status: ProviderStatus::Active,
            registered_at: height,
            last_lease: height,
            leases: BTreeSet::new(),
            pending: 0,
            completed: 0,
            failed: 0,
            strikes: 0,
            earned: 0,
            slashed: 0,
            locked: 0,
            released: 0,
            vouched: 0,
            judged: Judgments::default(),
            judged_memory: Judgments::default(),
        });
        let returning = p.status != ProviderStatus::Active;
        if returning {
            // A new registration: what was proven against the last one stays with it.
            p.registered_at = height;
        }
        p.offer = offer;
        p.bond = bond;
        p.status = ProviderStatus::Active;
        p.strikes = 0;
        let text = format!(
            "registered: {} cores, {} MiB, {} G MAC/s int8{}, asking {} per G MAC, {} slots, bond {}{}",
            p.offer.profile.cpu_cores,
            p.offer.profile.memory_mib,
            p.offer.profile.int8_gmacs,
            if p.offer.profile.gpu_model.is_empty() {
                String::new()
            } else {
                format!(", GPU {}", p.offer.profile.gpu_model)
            },
            p.offer.price_per_gmac,
            p.offer.slots,
            p.bond,
            if returning { " (back in the market)" } else { "" },
        );
        self.book.list(&self.providers[&owner]);
        self.note(Subject::Provider(owner), height, text);
        Ok(())
    }

    /// Stops new leases for `owner`; its bond unbonds once its leases and results have settled.
    pub fn deregister(&mut self, owner: Address, height: u64) -> Result<(), MarketRejection> {
        let Some(p) = self.providers.get(&owner) else { return Err(MarketRejection::NotAProvider) };
        if p.status == ProviderStatus::Gone {
            return Err(MarketRejection::NotAProvider);
        }
        self.book.unlist(Some(p));
        let p = self.providers.get_mut(&owner).expect("checked above");
        p.status = ProviderStatus::Leaving;
        let text = format!(
            "deregistered: takes no new leases; bond {} unbonds after {} open lease(s) and {} result(s) in their challenge window",
            p.bond,
            p.leases.len(),
            p.pending
        );
        self.note(Subject::Provider(owner), height, text);
        Ok(())
    }

    /// Accepts a job (the ledger has already taken `escrow` = [`JobSpec::max_cost`]) and queues
    /// its tasks. Returns the job id.
    pub fn submit(
        &mut self,
        client: Address,
        tx_id: Hash,
        spec: JobSpec,
        height: u64,
        params: &MarketParams,
    ) -> Result<Hash, MarketRejection> {
        check_job(&spec, params)?;
        let escrow = spec.max_cost().ok_or(MarketRejection::BudgetOverflow)?;
        let id = ergon_types::job::job_id(&tx_id);
        let slots = crate::model::slots_of(&spec);
        let replicas = spec.requirements.replicas as usize;
        let tasks = (0..spec.shards.len() * slots)
            .map(|i| {
                let mut task = Task::queued(height);
                if i % slots >= replicas {
                    task.state = TaskState::Spare;
                }
                task
            })
            .collect();
        let job = Job {
            id,
            client,
            spec,
            submitted_at: height,
            escrow,
            tasks,
            status: JobStatus::Open,
            paid: 0,
            burned: 0,
            finished_at: None,
        };
        let text = format!(
            "submitted: {} with {} shard(s) × {} replica(s), {} multiply-adds per shard, up to {} per G MAC; escrowed {}",
            job.spec.kind.name(),
            job.spec.shards.len(),
            job.spec.requirements.replicas,
            job.spec.macs_per_shard,
            job.spec.max_price_per_gmac,
            escrow
        );
        for shard in 0..job.spec.shards.len() as u16 {
            for replica in 0..job.spec.requirements.replicas {
                self.book.enqueue(&job, shard, replica);
            }
        }
        self.escrow_total += escrow;
        self.jobs.insert(id, job);
        self.note(Subject::Job(id), height, text);
        Ok(id)
    }

    /// The client withdraws a job: queued tasks are cancelled; leased ones run to the end.
    pub fn cancel(&mut self, client: Address, id: Hash, height: u64) -> Result<Vec<Effect>, MarketRejection> {
        let job = self.jobs.get_mut(&id).ok_or(MarketRejection::UnknownJob)?;
        if job.client != client {
            return Err(MarketRejection::NotYourJob);
        }
        if job.status != JobStatus::Open {
            return Err(MarketRejection::JobClosed);
        }
        job.status = JobStatus::Cancelled;
        let r = job.replicas();
        let mut cancelled = 0;
        for (i, t) in job.tasks.iter_mut().enumerate() {
            if t.state == TaskState::Queued {
                t.state = TaskState::Cancelled;
                t.waiting = None;
                self.book.dequeue(job.spec.max_price_per_gmac, job.submitted_at, (id, (i / r) as u16, (i % r) as u8));
                cancelled += 1;
            }
        }
        self.note(Subject::Job(id), height, format!("cancelled by the client: {cancelled} queued task(s) withdrawn"));
        let mut effects = vec![];
        self.finish_if_done(id, height, &mut effects);
        Ok(effects)
    }

    /// The leaseholder commits to a shard's result; it is paid after the challenge window.
    // The transaction's fields, one argument each (as `TxKind::PostResult` has them).
    #[allow(clippy::too_many_arguments)]
    pub fn post_result(
        &mut self,
        provider: Address,
        id: Hash,
        shard: u16,
        result: Hash,
        cpu_ms: u32,
        height: u64,
        params: &MarketParams,
    ) -> Result<(), MarketRejection> {
        let job = self.jobs.get(&id).ok_or(MarketRejection::UnknownJob)?;
        let replica = job.leased_replica(shard, provider)?;
        let macs = job.spec.macs_per_shard;
        let key = (id, shard, replica);
        let TaskState::Leased { price, deadline, .. } = job.task(shard, replica).state else { unreachable!() };
        let settles_at = height + params.challenge_blocks;
        let job = self.jobs.get_mut(&id).expect("checked above");
        let task = job.task_mut(shard, replica);
        task.state = TaskState::Posted { provider, price, result, settles_at };
        task.cpu_ms = task.cpu_ms.saturating_add(cpu_ms);
        if cpu_ms > 0 {
            let e = &mut self.energy;
            e.results += 1;
            e.cpu_ms = e.cpu_ms.saturating_add(cpu_ms as u64);
            e.macs = e.macs.saturating_add(macs);
        }
        self.deadlines.remove(&(deadline, key));
        self.settling.insert((settles_at, key));
        let p = self.providers.get(&provider).expect("leaseholders are providers");
        self.book.unlist(Some(p));
        let p = self.providers.get_mut(&provider).expect("leaseholders are providers");
        p.leases.remove(&key);
        p.pending += 1;
        p.strikes = 0;
        self.book.list(&self.providers[&provider]);
        let text = format!(
            "shard {shard} replica {replica}: result {} posted; paid at block {settles_at} unless proven wrong",
            short(&result)
        );
        self.note(Subject::Job(id), height, text.clone());
        self.note(Subject::Provider(provider), height, format!("job {}: {text}", short(&id)));
        Ok(())
    }

    /// Whether `miner` may mine a block of `difficulty` on `work` for job `id`: it must hold an
    /// open lease on the shard whose product `work` commits to, and the task may not have
    /// produced more blocks than its paid work is worth (⌈shard multiply-adds / difficulty⌉, at
    /// least one), counted over all of its leases. What such a block pays is bounded by what
    /// [`license_block`](Self::license_block) burns for it.
    pub fn check_mining(
        &self,
        miner: &Address,
        id: &Hash,
        work: &WorkCommitment,
        difficulty: u64,
    ) -> Result<TaskKey, String> {
        let job = self.jobs.get(id).ok_or("mined on a job this chain does not know")?;
        let p = self.providers.get(miner).ok_or("mined on a job by an address that is not a provider")?;
        let key = p
            .leases
            .iter()
            .find(|(j, s, _)| j == id && job.spec.shards[*s as usize] == *work)
            .copied()
            .ok_or_else(|| "mined on a job shard the miner holds no open lease on".to_string())?;
        // The product mined on, not the job's declared total: an ML job pays for training but
        // commits (and may mine on) only its first product.
        let allowed = job.committed_macs(key.1).div_ceil(difficulty.max(1)).max(1);
        let task = job.task(key.1, key.2);
        match task.state {
            TaskState::Leased { .. } if (task.mined as u64) < allowed => Ok(key),
            _ => Err(format!("this task already produced the {allowed} block(s) its paid work allows")),
        }
    }

    /// Counts a job block of `difficulty` mined on the lease `key` (after
    /// [`check_mining`](Self::check_mining)) and burns, from the job's escrow, the share of the
    /// lease's payment that the block's work is worth: ⌈burn% · price · min(W, D) / 10^9⌉,
    /// rounded up so even the smallest job burns something. Returns what was burned: the block
    /// may pay its miner at most a fixed share of it (`docs/economics.md`), so a job bought from
    /// oneself to mine on can never pay for itself, whatever mining on it costs.
    pub fn license_block(&mut self, key: TaskKey, height: u64, difficulty: u64, params: &MarketParams) -> u64 {
        let Some(job) = self.jobs.get_mut(&key.0) else { return 0 };
        let TaskState::Leased { price, .. } = job.task(key.1, key.2).state else { return 0 };
        let work = job.committed_macs(key.1).min(difficulty.max(1));
        let due = (price as u128 * work as u128 * params.job_burn_percent as u128).div_ceil(100 * 1_000_000_000);
        let burned = (due.min(u64::MAX as u128) as u64).min(job.escrow);
        job.escrow -= burned;
        job.burned += burned;
        let task = job.task_mut(key.1, key.2);
        task.mined += 1;
        task.prepaid_burn += burned;
        self.escrow_total -= burned;
        let text = format!(
            "shard {} replica {}: a job block was mined on it; {burned} burned from the escrow toward its payment",
            key.1, key.2
        );
        self.note(Subject::Job(key.0), height, text);
        burned
    }

    /// The leaseholder gives a lease back because its inputs never arrived: no strike, the task
    /// goes back to the queue without it, and the client pays it `wasted_lease_percent` of the
    /// task's value from the escrow for the slot it held. Refused once blocks were mined on the
    /// lease (its inputs had arrived).
    pub fn release_lease(
        &mut self,
        provider: Address,
        id: Hash,
        shard: u16,
        height: u64,
        params: &MarketParams,
    ) -> Result<Vec<Effect>, MarketRejection> {
        let job = self.jobs.get(&id).ok_or(MarketRejection::UnknownJob)?;
        let replica = job.leased_replica(shard, provider)?;
        if job.task(shard, replica).prepaid_burn > 0 {
            return Err(MarketRejection::MinedOnLease);
        }
        let TaskState::Leased { price, deadline, .. } = job.task(shard, replica).state else { unreachable!() };
        let key = (id, shard, replica);
        let fee = (payment(price, job.shard_macs(shard)) as u128 * params.wasted_lease_percent as u128 / 100) as u64;
        let job = self.jobs.get_mut(&id).expect("checked above");
        let fee = fee.min(job.escrow);
        job.escrow -= fee;
        job.paid += fee;
        self.escrow_total -= fee;
        self.deadlines.remove(&(deadline, key));
        self.end_lease(key, provider, height);
        self.jobs.get_mut(&id).expect("checked above").task_mut(shard, replica).excluded.insert(provider);
        let p = self.providers.get_mut(&provider).expect("leaseholders are providers");
        p.released += 1;
        p.earned += fee;
        self.book.list(&self.providers[&provider]);
        let mut effects = vec![];
        if fee > 0 {
            effects.push(Effect::Pay { to: provider, amount: fee });
        }
        let text = format!("shard {shard} replica {replica}: lease given back by {provider}, no usable inputs reached it (none, or none matching the job's commitments); the client paid {fee} for the wasted lease");
        self.note(Subject::Job(id), height, text);
        self.note(
            Subject::Provider(provider),
            height,
            format!("gave back job {} shard {shard} (no usable inputs reached it; no strike), paid {fee}", short(&id)),
        );
        self.requeue(key, height, &mut effects);
        Ok(effects)
    }

    /// Leases `key` to `owner` (called by matching, which checked that `collateral` is free in
    /// its bond).
    pub(crate) fn lease(&mut self, key: TaskKey, owner: Address, height: u64, collateral: u64) {
        let (id, shard, replica) = key;
        let p = self.providers.get_mut(&owner).expect("matched providers exist");
        let price = p.offer.price_per_gmac;
        p.leases.insert(key);
        p.last_lease = height;
        p.locked += collateral;
        let job = self.jobs.get_mut(&id).expect("queued tasks belong to jobs");
        let deadline = height + job.spec.requirements.lease_blocks as u64;
        let task = job.task_mut(shard, replica);
        task.state = TaskState::Leased { provider: owner, price, since: height, deadline };
        task.waiting = None;
        task.collateral = collateral;
        task.prepaid_burn = 0;
        self.deadlines.insert((deadline, key));
        let text =
            format!("shard {shard} replica {replica}: leased to {owner} at {price} per G MAC until block {deadline}");
        self.note(Subject::Job(id), height, text);
        self.note(
            Subject::Provider(owner),
            height,
            format!("leased job {} shard {shard} until block {deadline}", short(&id)),
        );
    }
}
