//! Providers, jobs and tasks, and every transition of the market.

use std::collections::{BTreeMap, BTreeSet};

use ergon_pouw::WorkCommitment;
use ergon_types::codec::Writer;
use ergon_types::job::{MAX_REPLICAS, MAX_SHARDS};
use ergon_types::{Address, Hash, JobKind, JobSpec, Offer};

use crate::matching::{Book, Waiting};
use crate::reasons::{Decision, Log, Subject};
use crate::{payment, Effect, MarketParams, MarketRejection};

/// (job, shard, replica).
pub type TaskKey = (Hash, u16, u8);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderStatus {
    /// Takes leases.
    Active,
    /// Deregistered: finishes its leases, then its bond unbonds.
    Leaving,
    /// Stopped taking leases after too many expired in a row, or after a slash. Registering again
    /// makes it active.
    Demoted,
    /// Left; its bond is unbonding.
    Gone,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provider {
    pub owner: Address,
    pub offer: Offer,
    pub bond: u64,
    pub status: ProviderStatus,
    pub registered_at: u64,
    /// Height of its last lease: among equal offers the one that waited longest goes first.
    pub last_lease: u64,
    pub leases: BTreeSet<TaskKey>,
    /// Results posted and still inside their challenge window.
    pub pending: u32,
    pub completed: u64,
    pub failed: u64,
    /// Expired leases since its last posted result.
    pub strikes: u32,
    pub earned: u64,
    pub slashed: u64,
}

impl Provider {
    /// Reputation in per-mille: the share of leases that ended in a paid result, counting one
    /// imaginary success so a newcomer starts in the middle rather than at zero.
    pub fn reputation(&self) -> u64 {
        (self.completed + 1) * 1000 / (self.completed + self.failed + 1)
    }

    pub fn has_free_slot(&self) -> bool {
        self.status == ProviderStatus::Active && self.leases.len() < self.offer.slots as usize
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting for a provider.
    Queued,
    /// `mined`: job blocks already mined on this lease (see [`Market::check_mining`]).
    Leased {
        provider: Address,
        price: u64,
        since: u64,
        deadline: u64,
        mined: u32,
    },
    /// Result committed; paid at `settles_at` unless proven wrong before.
    Posted {
        provider: Address,
        price: u64,
        result: Hash,
        settles_at: u64,
    },
    Settled {
        provider: Address,
        result: Hash,
        paid: u64,
    },
    Cancelled,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub state: TaskState,
    /// Providers that failed this task or hold another replica of its shard: never leased it again.
    pub excluded: BTreeSet<Address>,
    /// Why it is still queued (refreshed each block it waits).
    pub waiting: Option<Waiting>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    Open,
    Cancelled,
    Done,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub id: Hash,
    pub client: Address,
    pub spec: JobSpec,
    pub submitted_at: u64,
    /// Escrow still held.
    pub escrow: u64,
    /// Index = shard · replicas + replica.
    pub tasks: Vec<Task>,
    pub status: JobStatus,
    /// Paid to providers and burned so far.
    pub paid: u64,
    pub burned: u64,
    pub finished_at: Option<u64>,
}

impl Job {
    pub fn replicas(&self) -> usize {
        self.spec.requirements.replicas as usize
    }
    pub fn task(&self, shard: u16, replica: u8) -> &Task {
        &self.tasks[shard as usize * self.replicas() + replica as usize]
    }
    pub(crate) fn task_mut(&mut self, shard: u16, replica: u8) -> &mut Task {
        let r = self.replicas();
        &mut self.tasks[shard as usize * r + replica as usize]
    }
    /// Multiply-adds the client pays for on `shard`: m·k·n for a matmul shard, the declared
    /// figure for other kinds.
    pub fn shard_macs(&self, shard: u16) -> u64 {
        match self.spec.kind {
            JobKind::Matmul => macs_of(&self.spec.shards[shard as usize]),
            _ => self.spec.macs_per_shard,
        }
    }
    /// Memory a provider needs for a shard: the client's floor, or the operands and the int32
    /// output of a matmul shard if larger.
    pub fn shard_memory_mib(&self, shard: u16) -> u64 {
        let w = &self.spec.shards[shard as usize];
        let (m, k, n) = (w.m as u64, w.k as u64, w.n as u64);
        let bytes = m * k + k * n + 4 * m * n;
        self.spec.requirements.min_memory_mib.max(bytes.div_ceil(1 << 20))
    }
    fn is_finished(&self) -> bool {
        self.tasks.iter().all(|t| matches!(t.state, TaskState::Settled { .. } | TaskState::Cancelled))
    }
}

fn macs_of(w: &WorkCommitment) -> u64 {
    w.m as u64 * w.k as u64 * w.n as u64
}

/// The whole market.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Market {
    pub(crate) providers: BTreeMap<Address, Provider>,
    pub(crate) jobs: BTreeMap<Hash, Job>,
    pub(crate) book: Book,
    /// (deadline, task) of every open lease.
    deadlines: BTreeSet<(u64, TaskKey)>,
    /// (settlement height, task) of every posted result.
    settling: BTreeSet<(u64, TaskKey)>,
    pub(crate) log: Log,
    escrow_total: u64,
    bond_total: u64,
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

    fn note(&mut self, subject: Subject, height: u64, text: String) {
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
        });
        let returning = p.status != ProviderStatus::Active;
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
        let count = spec.shards.len() * spec.requirements.replicas as usize;
        let task = Task { state: TaskState::Queued, excluded: BTreeSet::new(), waiting: None };
        let job = Job {
            id,
            client,
            spec,
            submitted_at: height,
            escrow,
            tasks: vec![task; count],
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
    pub fn post_result(
        &mut self,
        provider: Address,
        id: Hash,
        shard: u16,
        result: Hash,
        height: u64,
        params: &MarketParams,
    ) -> Result<(), MarketRejection> {
        let job = self.jobs.get(&id).ok_or(MarketRejection::UnknownJob)?;
        if shard as usize >= job.spec.shards.len() {
            return Err(MarketRejection::NoSuchShard { shard, shards: job.spec.shards.len() });
        }
        let replica = (0..job.spec.requirements.replicas)
            .find(|&r| matches!(job.task(shard, r).state, TaskState::Leased { provider: p, .. } if p == provider))
            .ok_or(MarketRejection::NotLeased { shard })?;
        let key = (id, shard, replica);
        let TaskState::Leased { price, deadline, .. } = job.task(shard, replica).state else { unreachable!() };
        let settles_at = height + params.challenge_blocks;
        let job = self.jobs.get_mut(&id).expect("checked above");
        job.task_mut(shard, replica).state = TaskState::Posted { provider, price, result, settles_at };
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
    /// open lease on the shard whose product `work` commits to, and that lease may not have
    /// produced more blocks than its paid work is worth (⌈shard multiply-adds / difficulty⌉, at
    /// least one). Without that cap one small job, bought from oneself, would license mining at
    /// the full subsidy for the whole lease.
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
        let allowed = macs_of(work).min(job.shard_macs(key.1)).div_ceil(difficulty.max(1)).max(1);
        match job.task(key.1, key.2).state {
            TaskState::Leased { mined, .. } if (mined as u64) < allowed => Ok(key),
            _ => Err(format!("this lease already produced the {allowed} block(s) its paid work allows")),
        }
    }

    /// Counts a job block mined on the lease `key` (after [`check_mining`](Self::check_mining)).
    pub fn record_mined(&mut self, key: TaskKey, height: u64) {
        let Some(job) = self.jobs.get_mut(&key.0) else { return };
        if let TaskState::Leased { mined, .. } = &mut job.task_mut(key.1, key.2).state {
            *mined += 1;
        }
        self.note(Subject::Job(key.0), height, format!("shard {} replica {}: a block was mined on it", key.1, key.2));
    }

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

    fn finish_if_done(&mut self, id: Hash, height: u64, effects: &mut Vec<Effect>) {
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

    /// Leases `key` to `owner` (called by matching).
    pub(crate) fn lease(&mut self, key: TaskKey, owner: Address, height: u64) {
        let (id, shard, replica) = key;
        let p = self.providers.get_mut(&owner).expect("matched providers exist");
        let price = p.offer.price_per_gmac;
        p.leases.insert(key);
        p.last_lease = height;
        let job = self.jobs.get_mut(&id).expect("queued tasks belong to jobs");
        let deadline = height + job.spec.requirements.lease_blocks as u64;
        let task = job.task_mut(shard, replica);
        task.state = TaskState::Leased { provider: owner, price, since: height, deadline, mined: 0 };
        task.waiting = None;
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

    /// Commitment to the market's state (not its log or waiting reasons).
    pub fn root(&self) -> Hash {
        let mut w = Writer::new();
        w.u64(self.escrow_total).u64(self.bond_total).u32(self.providers.len() as u32);
        for p in self.providers.values() {
            w.bytes(&p.owner.0);
            p.offer.write(&mut w);
            w.u64(p.bond).u8(p.status as u8).u64(p.registered_at).u64(p.last_lease).u32(p.leases.len() as u32);
            for (j, s, r) in &p.leases {
                w.bytes(&j.0).u32(*s as u32).u8(*r);
            }
            w.u32(p.pending).u64(p.completed).u64(p.failed).u32(p.strikes).u64(p.earned).u64(p.slashed);
        }
        w.u32(self.jobs.len() as u32);
        for j in self.jobs.values() {
            w.bytes(&j.id.0).bytes(&j.client.0);
            j.spec.write(&mut w);
            w.u64(j.submitted_at).u64(j.escrow).u8(j.status as u8).u64(j.paid).u64(j.burned);
            w.u64(j.finished_at.map_or(u64::MAX, |h| h));
            for t in &j.tasks {
                match &t.state {
                    TaskState::Queued => w.u8(0),
                    TaskState::Leased { provider, price, since, deadline, mined } => {
                        w.u8(1).bytes(&provider.0).u64(*price).u64(*since).u64(*deadline).u32(*mined)
                    }
                    TaskState::Posted { provider, price, result, settles_at } => {
                        w.u8(2).bytes(&provider.0).u64(*price).bytes(&result.0).u64(*settles_at)
                    }
                    TaskState::Settled { provider, result, paid } => {
                        w.u8(3).bytes(&provider.0).bytes(&result.0).u64(*paid)
                    }
                    TaskState::Cancelled => w.u8(4),
                };
                w.u32(t.excluded.len() as u32);
                for a in &t.excluded {
                    w.bytes(&a.0);
                }
            }
        }
        Hash::of("ergon v1 market root", &[&w.finish()])
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

/// First 8 hex digits of a hash, for log lines.
pub fn short(h: &Hash) -> String {
    h.to_hex()[..8].to_string()
}

fn check_offer(offer: &Offer) -> Result<(), MarketRejection> {
    let bad = |why: &str| Err(MarketRejection::BadOffer(why.to_string()));
    if offer.slots == 0 || offer.slots > Offer::MAX_SLOTS {
        return bad("slots must be in 1..=16");
    }
    if offer.price_per_gmac == 0 {
        return bad("price must be positive");
    }
    if offer.profile.int8_gmacs == 0 || offer.profile.cpu_cores == 0 || offer.profile.memory_mib == 0 {
        return bad("profile must claim cores, memory and int8 throughput (run `ergon bench hw`)");
    }
    Ok(())
}

fn check_job(spec: &JobSpec, params: &MarketParams) -> Result<(), MarketRejection> {
    let bad = |why: String| Err(MarketRejection::BadJob(why));
    let q = &spec.requirements;
    if spec.shards.is_empty() || spec.shards.len() > MAX_SHARDS {
        return bad(format!("needs 1..={MAX_SHARDS} shards"));
    }
    if q.replicas == 0 || q.replicas > MAX_REPLICAS {
        return bad(format!("replicas must be in 1..={MAX_REPLICAS}"));
    }
    if q.lease_blocks == 0 || q.lease_blocks > params.max_lease_blocks {
        return bad(format!("lease_blocks must be in 1..={}", params.max_lease_blocks));
    }
    if spec.max_price_per_gmac == 0 {
        return bad("max price must be positive".into());
    }
    if spec.macs_per_shard == 0 {
        return bad("multiply-adds per shard must be positive".into());
    }
    if spec.kind != JobKind::Matmul && (spec.shards.len() != 1 || spec.inputs.len() != 2) {
        return bad(format!(
            "a {} job has one shard (replicas check it) and two inputs, not {} and {}",
            spec.kind.name(),
            spec.shards.len(),
            spec.inputs.len()
        ));
    }
    if spec.kind == JobKind::Matmul {
        let (k, n) = (spec.shards[0].k, spec.shards[0].n);
        for (i, s) in spec.shards.iter().enumerate() {
            if s.k != k || s.n != n {
                return bad(format!("shard {i} is {}×{}×{}, but shards must share k and n", s.m, s.k, s.n));
            }
            if macs_of(s) > spec.macs_per_shard {
                return bad(format!(
                    "shard {i} has {} multiply-adds, more than the declared {}",
                    macs_of(s),
                    spec.macs_per_shard
                ));
            }
        }
    }
    Ok(())
}
