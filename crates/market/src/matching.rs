//! The order book and the matching rule.
//!
//! Orders (queued tasks) are served best price first, then first come; within that, each takes
//! the first free provider in (asking price, reputation descending, longest since its last
//! lease, address) order that fits it: enough memory (GPU memory if the job wants a GPU), enough
//! int8 throughput, asking no more than the order's maximum, and not excluded (a provider never
//! gets back a task it failed, nor two replicas of one shard). Because the last-lease height is
//! part of the order, equal offers take turns: fairness between providers falls out of the key.
//!
//! Cost: each order walks the free providers from the cheapest until one fits. Within one
//! block the free set only shrinks, so when an order finds nothing, any later order that asks
//! at least as much and offers no more would find nothing either; those are answered from a
//! memo without a walk. That keeps a saturated book (the common case under load) linear.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::fmt;

use ergon_types::{Address, Hash};

use crate::model::{Job, Provider, ProviderStatus, TaskKey, TaskState};
use crate::state::Market;
use crate::MarketParams;

/// (best price first, then oldest, then job id, shard, replica).
type QueueKey = (Reverse<u64>, u64, Hash, u16, u8);
/// (cheapest, best reputation, longest idle, address).
type FreeKey = (u64, Reverse<u64>, u64, Address);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Book {
    pub(crate) queue: BTreeSet<QueueKey>,
    pub(crate) free: BTreeSet<FreeKey>,
}

fn free_key(p: &Provider) -> FreeKey {
    (p.offer.price_per_gmac, Reverse(p.reputation()), p.last_lease, p.owner)
}

impl Book {
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
    pub fn free_providers(&self) -> usize {
        self.free.len()
    }

    /// Lists `p` among the free providers if it can take a lease.
    pub(crate) fn list(&mut self, p: &Provider) {
        if p.has_free_slot() {
            self.free.insert(free_key(p));
        }
    }

    /// Takes `p` off the free list (before any change to the fields its key is made of).
    pub(crate) fn unlist(&mut self, p: Option<&Provider>) -> Option<()> {
        p.and_then(|p| self.free.remove(&free_key(p)).then_some(()))
    }

    pub(crate) fn enqueue(&mut self, job: &Job, shard: u16, replica: u8) {
        self.queue.insert((Reverse(job.spec.max_price_per_gmac), job.submitted_at, job.id, shard, replica));
    }

    /// Every queued task as (maximum price, submission height, task), in book order.
    pub(crate) fn queued_tasks(&self) -> impl Iterator<Item = (u64, u64, TaskKey)> + '_ {
        self.queue.iter().map(|&(Reverse(price), at, id, shard, replica)| (price, at, (id, shard, replica)))
    }

    pub(crate) fn dequeue(&mut self, max_price: u64, submitted_at: u64, (id, shard, replica): TaskKey) {
        self.queue.remove(&(Reverse(max_price), submitted_at, id, shard, replica));
    }
}

/// Why a task is still waiting, as counted during its last matching attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Waiting {
    /// Providers with no free slot, or not taking leases (demoted, leaving, gone).
    pub busy: u32,
    /// Free providers asking more than the order's maximum price.
    pub too_expensive: u32,
    pub too_little_memory: u32,
    pub too_slow: u32,
    pub no_gpu: u32,
    /// Free providers whose free bond cannot cover the lease's collateral.
    pub bond_too_small: u32,
    /// Free providers that failed this task before or hold another replica of its shard.
    pub excluded: u32,
    /// The lowest ask above the order's maximum price, per G MAC (0: none asks more): what a
    /// client would have to offer.
    pub lowest_ask: u64,
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let free = self.too_expensive
            + self.too_little_memory
            + self.too_slow
            + self.no_gpu
            + self.bond_too_small
            + self.excluded;
        if free == 0 {
            return write!(f, "waiting: no provider is free ({} busy, demoted or leaving)", self.busy);
        }
        let mut parts = vec![];
        for (n, what) in [
            (
                self.too_expensive,
                &*format!("ask more than the maximum price (the lowest asks {} per G MAC)", self.lowest_ask),
            ),
            (self.too_little_memory, "have too little memory"),
            (self.too_slow, "are slower than required (as validators verified them)"),
            (self.no_gpu, "have no GPU"),
            (self.bond_too_small, "have too little free bond for the lease's collateral"),
            (self.excluded, "failed this task before or hold another replica of it"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        write!(f, "waiting: of {free} free provider(s), {}; {} busy", parts.join(", "), self.busy)
    }
}

/// What a task needs of a provider; `at_least` orders needs for the memo.
#[derive(Clone, Copy, Debug)]
struct Need {
    memory_mib: u64,
    gmacs: u64,
    gpu: bool,
    max_price: u64,
    /// Multiply-adds paid: the collateral a lease needs grows with them.
    macs: u64,
}

/// Why a provider's hardware cannot take a task (price and exclusion are checked apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Misfit {
    NoGpu,
    Memory,
    Slow,
}

impl Need {
    fn of(job: &Job, shard: u16, max_price: u64) -> Self {
        let q = &job.spec.requirements;
        let macs = job.shard_macs(shard);
        Need { memory_mib: job.shard_memory_mib(shard), gmacs: q.min_int8_gmacs, gpu: q.gpu, max_price, macs }
    }

    /// The collateral a lease of this task at `p`'s price locks, if `p`'s free bond covers it.
    fn collateral(&self, p: &Provider, params: &MarketParams) -> Option<u64> {
        let c = params.collateral(crate::payment(p.offer.price_per_gmac, self.macs));
        (p.free_bond() >= c).then_some(c)
    }

    /// The one hardware-fit rule, shared by matching and by a provider's outlook: a GPU if asked
    /// for (then GPU memory counts, as claimed: no challenge checks it yet; else the main
    /// memory validators' challenges showed, the claim counting up to `memory_floor_mib`),
    /// enough memory, enough verified int8 throughput.
    fn misfit(&self, p: &Provider, memory_floor_mib: u64) -> Option<Misfit> {
        let hw = &p.offer.profile;
        let memory = if self.gpu { hw.gpu_memory_mib } else { p.verified_memory_mib(memory_floor_mib) };
        if self.gpu && hw.gpu_model.is_empty() {
            Some(Misfit::NoGpu)
        } else if memory < self.memory_mib {
            Some(Misfit::Memory)
        } else if p.verified_gmacs() < self.gmacs {
            Some(Misfit::Slow)
        } else {
            None
        }
    }

    fn at_least(&self, other: &Need) -> bool {
        self.memory_mib >= other.memory_mib
            && self.gmacs >= other.gmacs
            // GPU jobs are sized against GPU memory, others against main memory: incomparable.
            && self.gpu == other.gpu
            && self.max_price <= other.max_price
            && self.macs >= other.macs
    }
}

impl Market {
    /// Matches every queued task it can, in book order, and records why the others wait.
    pub(crate) fn match_queue(&mut self, height: u64, params: &MarketParams) {
        let orders: Vec<QueueKey> = self.book.queue.iter().copied().collect();
        let mut memo: Vec<(Need, Waiting)> = vec![];
        let listed = self.providers.len() as u32;
        for order in orders {
            let (Reverse(max_price), _, id, shard, replica) = order;
            let job = &self.jobs[&id];
            let busy = listed - self.book.free.len() as u32;
            if self.book.free.is_empty() {
                self.set_waiting(order, Waiting { busy, ..Waiting::default() });
                continue;
            }
            let need = Need::of(job, shard, max_price);
            if let Some(&(_, w)) = memo.iter().find(|(n, _)| need.at_least(n)) {
                // The memo's order may offer more: the lowest ask above this one's price.
                let above = (max_price.saturating_add(1), Reverse(u64::MAX), 0, Address([0; 20]));
                let lowest_ask = match max_price {
                    u64::MAX => 0,
                    _ => self.book.free.range(above..).next().map_or(0, |fk| fk.0),
                };
                self.set_waiting(order, Waiting { busy, lowest_ask, ..w });
                continue;
            }
            let excluded = excluded_for(job, shard, replica);
            let mut w = Waiting { busy, ..Waiting::default() };
            let mut scanned = 0u32;
            let mut found = None;
            for fk in &self.book.free {
                if fk.0 > max_price {
                    w.lowest_ask = fk.0;
                    break;
                }
                scanned += 1;
                let p = &self.providers[&fk.3];
                match need.misfit(p, params.memory_floor_mib) {
                    Some(Misfit::NoGpu) => w.no_gpu += 1,
                    Some(Misfit::Memory) => w.too_little_memory += 1,
                    Some(Misfit::Slow) => w.too_slow += 1,
                    None if excluded.contains(&fk.3) => w.excluded += 1,
                    None => match need.collateral(p, params) {
                        None => w.bond_too_small += 1,
                        Some(c) => {
                            found = Some((*fk, c));
                            break;
                        }
                    },
                }
            }
            match found {
                Some((fk, collateral)) => {
                    self.book.free.remove(&fk);
                    self.book.queue.remove(&order);
                    self.lease((id, shard, replica), fk.3, height, collateral);
                    self.book.list(&self.providers[&fk.3]);
                }
                None => {
                    w.too_expensive = self.book.free.len() as u32 - scanned;
                    if excluded.is_empty() {
                        memo.push((need, w));
                    }
                    self.set_waiting(order, w);
                }
            }
        }
    }

    fn set_waiting(&mut self, (_, _, id, shard, replica): QueueKey, w: Waiting) {
        self.jobs.get_mut(&id).expect("queued tasks belong to jobs").task_mut(shard, replica).waiting = Some(w);
    }

    /// Why `owner` is or is not getting work, in a sentence.
    pub fn provider_outlook(&self, owner: &Address, params: &MarketParams) -> String {
        let min_stake = params.min_provider_stake;
        let Some(p) = self.providers.get(owner) else {
            return "not a provider: register with `ergon provider register`".into();
        };
        match p.status {
            ProviderStatus::Gone => return "left the market; register again to return".into(),
            ProviderStatus::Leaving => {
                return format!(
                    "leaving: finishing {} lease(s), {} result(s) awaiting settlement",
                    p.leases.len(),
                    p.pending
                )
            }
            ProviderStatus::Demoted => {
                return "demoted (see the decisions below); register again to return".into();
            }
            ProviderStatus::Active => {}
        }
        if p.bond < min_stake {
            return format!(
                "bond {} is below the minimum {min_stake}; stake more with `ergon provider register`",
                p.bond
            );
        }
        if p.absent() {
            return "absent: validators saw it stop answering their challenges; no lease until it answers again".into();
        }
        if !p.has_free_slot() {
            return format!("working: all {} slot(s) leased", p.offer.slots);
        }
        if self.book.queue.is_empty() {
            return format!("idle: no job is waiting ({} of {} slot(s) leased)", p.leases.len(), p.offer.slots);
        }
        let (mut cheap, mut memory, mut slow, mut gpu, mut excluded, mut fits) = (0, 0, 0, 0, 0, 0);
        let mut bond = 0;
        let mut best_price = 0;
        for &(Reverse(max_price), _, id, shard, replica) in &self.book.queue {
            let job = &self.jobs[&id];
            best_price = best_price.max(max_price);
            if max_price < p.offer.price_per_gmac {
                cheap += 1;
                continue;
            }
            let need = Need::of(job, shard, max_price);
            match need.misfit(p, params.memory_floor_mib) {
                Some(Misfit::NoGpu) => gpu += 1,
                Some(Misfit::Memory) => memory += 1,
                Some(Misfit::Slow) => slow += 1,
                None if excluded_for(job, shard, replica).contains(owner) => excluded += 1,
                None if need.collateral(p, params).is_none() => bond += 1,
                None => fits += 1,
            }
        }
        if fits > 0 {
            return format!("{fits} waiting task(s) fit this provider; leases are made at the end of the next block");
        }
        let mut parts = vec![];
        if cheap > 0 {
            parts.push(format!(
                "{cheap} offer less than your price {} (highest offer {best_price})",
                p.offer.price_per_gmac
            ));
        }
        for (n, what) in [
            (gpu, "need a GPU"),
            (memory, "need more memory"),
            (slow, "need more int8 throughput than validators have verified for this provider"),
            (bond, "need more free bond as collateral than this provider has: stake more"),
            (excluded, "were failed by this provider before"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        format!("idle: of {} waiting task(s), {}", self.book.queue.len(), parts.join(", "))
    }
}

/// Providers that may not take this task: those that failed it, and those holding (or having
/// delivered) another replica of the same shard, its check replica included.
pub(crate) fn excluded_for(job: &Job, shard: u16, replica: u8) -> BTreeSet<Address> {
    let mut out = job.task(shard, replica).excluded.clone();
    for r in 0..job.slots() {
        if r == replica {
            continue;
        }
        match job.task(shard, r).state {
            TaskState::Leased { provider, .. }
            | TaskState::Posted { provider, .. }
            | TaskState::Settled { provider, .. } => {
                out.insert(provider);
            }
            _ => {}
        }
    }
    out
}
