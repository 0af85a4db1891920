//! What the market is made of: providers, jobs and their tasks (one per shard and replica, and
//! for ML jobs one check replica per shard), with the few facts derived from them. Transitions
//! live in `state`, `settlement` and `checks`.

use std::collections::{BTreeMap, BTreeSet};

use ergon_pouw::WorkCommitment;
use ergon_types::{Address, Hash, JobKind, JobSpec, Offer};

use crate::matching::Waiting;
use crate::MarketRejection;

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
    /// Bond at risk in open leases and results not yet settled: a new lease needs its own
    /// collateral free on top of this.
    pub locked: u64,
    /// Leases given back because their inputs never arrived (no strike).
    pub released: u64,
    /// Paid results someone else vouched for since its last check dissented (another replica
    /// or a check agreed; a matmul result, which its client checks): what ends probation
    /// (`crate::checks`).
    pub vouched: u64,
    /// The int8 throughput (G MAC/s) staked validators' challenge engines judged.
    pub judged: Judgments,
    /// The memory (MiB) their memory challenges showed it holds (0: not shown).
    pub judged_memory: Judgments,
}

/// Staked validators' judgments of one figure of one provider, by validator: (its stake when it
/// judged, the figure, the height it judged at). At most `MAX_JUDGES` kept (the largest
/// stakes); each expires `judgment_ttl_blocks` after its height.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Judgments {
    by: BTreeMap<Address, (u64, u64, u64)>,
    /// The stake-weighted lower median (derived: kept in step on every change, so matching
    /// reads it without sorting).
    median: u64,
}

/// Whether a judgment made at `at` no longer counts at `height`.
fn stale(at: u64, height: u64, ttl: u64) -> bool {
    at.saturating_add(ttl) <= height
}

impl Judgments {
    pub fn is_empty(&self) -> bool {
        self.by.is_empty()
    }

    /// `validator`'s judgment: (stake, figure, height).
    pub fn get(&self, validator: &Address) -> Option<&(u64, u64, u64)> {
        self.by.get(validator)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Address, &(u64, u64, u64))> {
        self.by.iter()
    }

    /// The lower median of the figures weighted by stake: the first figure with at least half
    /// the judging stake at or below it, so validators holding less than half move it in
    /// neither direction; 0 when nobody judged.
    pub fn median(&self) -> u64 {
        self.median
    }

    /// Records `validator`'s judgment, replacing its last; refused (`Err` with the reason) when
    /// `MAX_JUDGES` validators with at least `stake` each already judge.
    pub(crate) fn insert(&mut self, validator: Address, stake: u64, figure: u64, height: u64) -> Result<(), String> {
        if self.by.len() >= crate::verification::MAX_JUDGES && !self.by.contains_key(&validator) {
            match self.by.iter().map(|(a, &(s, _, _))| (s, *a)).min() {
                Some((s, a)) if s < stake => {
                    self.by.remove(&a);
                }
                _ => {
                    return Err(format!(
                        "{} validators with at least this stake already judge this provider",
                        crate::verification::MAX_JUDGES
                    ))
                }
            }
        }
        self.by.insert(validator, (stake, figure, height));
        self.recompute();
        Ok(())
    }

    /// Whether a judgment made `ttl` or more blocks before `height` is held.
    pub(crate) fn any_expired(&self, height: u64, ttl: u64) -> bool {
        self.by.values().any(|&(_, _, at)| stale(at, height, ttl))
    }

    /// Drops the judgments made `ttl` or more blocks before `height`; returns whose.
    pub(crate) fn expire(&mut self, height: u64, ttl: u64) -> Vec<Address> {
        let old: Vec<Address> =
            self.by.iter().filter(|(_, &(_, _, at))| stale(at, height, ttl)).map(|(v, _)| *v).collect();
        for v in &old {
            self.by.remove(v);
        }
        if !old.is_empty() {
            self.recompute();
        }
        old
    }

    /// Every judgment, as the state commitment and the snapshot lay them out.
    pub(crate) fn write(&self, w: &mut ergon_types::codec::Writer) {
        w.u32(self.by.len() as u32);
        for (v, (stake, figure, at)) in &self.by {
            w.bytes(&v.0).u64(*stake).u64(*figure).u64(*at);
        }
    }

    pub(crate) fn read(r: &mut ergon_types::codec::Reader<'_>) -> Result<Self, ergon_types::TypesError> {
        let mut j = Judgments::default();
        for _ in 0..r.count(crate::verification::MAX_JUDGES, 44)? {
            let v = Address(r.array()?);
            j.by.insert(v, (r.u64()?, r.u64()?, r.u64()?));
        }
        j.recompute();
        Ok(j)
    }

    fn recompute(&mut self) {
        let mut votes: Vec<(u64, u64)> = self.by.values().map(|&(stake, figure, _)| (figure, stake)).collect();
        votes.sort_unstable();
        let total: u128 = votes.iter().map(|&(_, s)| s as u128).sum();
        let mut seen = 0u128;
        self.median = 0;
        for (figure, stake) in votes {
            seen += stake as u128;
            if 2 * seen >= total {
                self.median = figure;
                break;
            }
        }
    }
}

impl Provider {
    /// Reputation in per mille: its job history times what validators' challenges saw of it.
    /// The history is the share of leases that ended in a paid result, counting one imaginary
    /// success so a newcomer starts at the top rather than at zero (it is on probation anyway,
    /// [`Provider::probation`]); the challenges' part is [`Provider::challenge_permille`].
    pub fn reputation(&self) -> u64 {
        let history = (self.completed + 1) * 1000 / (self.completed + self.failed + 1);
        history * self.challenge_permille() / 1000
    }

    /// What validators' challenges make of its claims, in per mille: the verified share of the
    /// claimed int8 throughput or of the claimed memory, whichever is lower (a figure no
    /// validator judged counts in full: a chain without validators has no evidence either
    /// way), and 0 while it is absent. A provider claiming twice what it has sits at 500‰,
    /// so its results are checked until the claim is mended.
    pub fn challenge_permille(&self) -> u64 {
        if self.absent() {
            return 0;
        }
        let share = |judged: &Judgments, claim: u64| {
            if judged.is_empty() || claim == 0 {
                1000
            } else {
                (judged.median().min(claim) as u128 * 1000 / claim as u128) as u64
            }
        };
        let hw = &self.offer.profile;
        share(&self.judged, hw.int8_gmacs).min(share(&self.judged_memory, hw.memory_mib))
    }

    /// Why its ML results are all checked by another provider (`None`: it is trusted, and only
    /// a sample of them is): fewer than `probation_leases` paid results someone vouched for
    /// since a check last dissented, or a reputation below `trusted_permille`.
    pub fn probation(&self, params: &crate::MarketParams) -> Option<String> {
        if self.vouched < params.probation_leases {
            return Some(format!(
                "on probation: {} of the {} checked results it needs",
                self.vouched, params.probation_leases
            ));
        }
        let r = self.reputation();
        (r < params.trusted_permille)
            .then(|| format!("on probation: reputation {r}‰ is below {}‰", params.trusted_permille))
    }

    /// Bond not at risk in open leases or unsettled results.
    pub fn free_bond(&self) -> u64 {
        self.bond.saturating_sub(self.locked)
    }

    /// The throughput matching relies on: the stake-weighted median of the validators'
    /// judgments, never more than the claim; 0 until a validator has judged it. A claim alone
    /// buys nothing (issue 11: an offer of `int8_gmacs = u64::MAX` won every lease it asked
    /// for).
    pub fn verified_gmacs(&self) -> u64 {
        self.judged.median().min(self.offer.profile.int8_gmacs)
    }

    /// The main memory matching relies on: what validators' memory challenges showed (the
    /// stake-weighted median, never more than the claim), and at least the claim up to
    /// `floor_mib`, which any machine is taken to have unchecked (claims that small are
    /// rebuilt within any deadline, so a challenge could not tell them apart: `docs/poai.md`
    /// §7).
    pub fn verified_memory_mib(&self, floor_mib: u64) -> u64 {
        let claim = self.offer.profile.memory_mib;
        self.judged_memory.median().min(claim).max(floor_mib.min(claim))
    }

    /// Whether validators holding at least half the judging stake say it stopped answering
    /// their challenges (judged 0): it then takes no lease, and lost those it held.
    pub fn absent(&self) -> bool {
        !self.judged.is_empty() && self.judged.median() == 0
    }

    pub fn has_free_slot(&self) -> bool {
        self.status == ProviderStatus::Active && !self.absent() && self.leases.len() < self.offer.slots as usize
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting for a provider.
    Queued,
    Leased {
        provider: Address,
        price: u64,
        since: u64,
        deadline: u64,
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
    /// A shard's check replica while no check is called (`crate::checks`): it needs no
    /// provider, holds no escrow and does not vote.
    Spare,
}

impl TaskState {
    /// The state's name, as the API and the CLI show it.
    pub fn name(&self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Leased { .. } => "leased",
            TaskState::Posted { .. } => "posted",
            TaskState::Settled { .. } => "settled",
            TaskState::Cancelled => "cancelled",
            TaskState::Spare => "spare",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub state: TaskState,
    /// Providers that failed this task or hold another replica of its shard: never leased it again.
    pub excluded: BTreeSet<Address>,
    /// Why it is still queued (refreshed each block it waits).
    pub waiting: Option<Waiting>,
    /// Job blocks mined on this task, over all its leases: never reset, so letting a lease lapse
    /// and leasing again buys no new block allowance (see [`crate::Market::check_mining`]).
    pub mined: u32,
    /// Burned from the escrow when the current lease's blocks were mined (each block's reward
    /// is at most what its own burn destroyed). It counts toward the burn of the lease's
    /// payment; a lease that ends unpaid repays it to the escrow from the provider's bond.
    pub prepaid_burn: u64,
    /// Bond the current leaseholder has at risk for this task, until it is settled.
    pub collateral: u64,
    /// Height since which it has waited in the queue (bounded by `max_queue_blocks`).
    pub queued_since: u64,
    /// An open availability challenge on the posted result: rows the client asked to see.
    pub challenge: Option<Challenge>,
    /// Availability challenges made on the current result (at most [`crate::MAX_CHALLENGES`]).
    pub challenges: u8,
    /// On a check replica: the result the client expects, when it doubts the shard's posted
    /// result (`TxKind::DoubtResult`, `checks`): the check then decides who is wrong.
    pub doubt: Option<Hash>,
    /// CPU milliseconds providers reported for the results posted on this task, over all its
    /// leases (a re-done shard's energy was spent too): the job's measured energy comes from
    /// these. Saturating; a report, not a proof (`docs/energy.md`).
    pub cpu_ms: u32,
}

/// Rows of a posted result the provider must reveal on chain by `deadline`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub rows: Vec<u32>,
    pub deadline: u64,
}

impl Task {
    pub(crate) fn queued(height: u64) -> Self {
        Task {
            state: TaskState::Queued,
            excluded: BTreeSet::new(),
            waiting: None,
            mined: 0,
            prepaid_burn: 0,
            collateral: 0,
            queued_since: height,
            challenge: None,
            doubt: None,
            challenges: 0,
            cpu_ms: 0,
        }
    }
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
    /// Index = shard · slots + replica, where slots = replicas, plus one check replica (the
    /// last) for ML jobs ([`Job::check_replica`]).
    pub tasks: Vec<Task>,
    pub status: JobStatus,
    /// Paid to providers and burned so far.
    pub paid: u64,
    pub burned: u64,
    pub finished_at: Option<u64>,
}

/// Tasks per shard of a job of `spec`: its replicas, plus a check replica for ML jobs.
pub(crate) fn slots_of(spec: &JobSpec) -> usize {
    spec.requirements.replicas as usize + usize::from(spec.kind != JobKind::Matmul)
}

impl Job {
    /// The replicas the client asked for (not counting a check replica).
    pub fn replicas(&self) -> usize {
        self.spec.requirements.replicas as usize
    }
    /// Tasks per shard: the replicas, and the check replica if the job has one.
    pub fn slots(&self) -> u8 {
        slots_of(&self.spec) as u8
    }
    /// The replica index of each shard's check replica: ML jobs only. A matmul result needs
    /// none: the client checks every product (Freivalds) and can prove a wrong entry on chain,
    /// while an ML result is checked only by other providers computing it again.
    pub fn check_replica(&self) -> Option<u8> {
        (self.spec.kind != JobKind::Matmul).then_some(self.spec.requirements.replicas)
    }
    pub fn task(&self, shard: u16, replica: u8) -> &Task {
        &self.tasks[shard as usize * self.slots() as usize + replica as usize]
    }
    pub(crate) fn task_mut(&mut self, shard: u16, replica: u8) -> &mut Task {
        let r = self.slots() as usize;
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
    /// Every task with its (job, shard, replica) key, in index order.
    pub fn keyed_tasks(&self) -> impl Iterator<Item = (TaskKey, &Task)> {
        let r = self.slots() as usize;
        self.tasks.iter().enumerate().map(move |(i, t)| ((self.id, (i / r) as u16, (i % r) as u8), t))
    }
    /// Multiply-adds of the product `shard` commits to, as far as they are paid: what job blocks
    /// on it may claim (an ML job pays for all of its training but commits only its first
    /// product).
    pub fn committed_macs(&self, shard: u16) -> u64 {
        macs_of(&self.spec.shards[shard as usize]).min(self.shard_macs(shard))
    }
    /// Refuses a (shard, replica) the job does not have.
    pub(crate) fn check_task(&self, shard: u16, replica: u8) -> Result<(), MarketRejection> {
        if shard as usize >= self.spec.shards.len() || replica >= self.slots() {
            return Err(MarketRejection::NoSuchShard { shard, shards: self.spec.shards.len() });
        }
        Ok(())
    }
    /// The replica of `shard` leased to `provider` (and that shard exists).
    pub(crate) fn leased_replica(&self, shard: u16, provider: Address) -> Result<u8, MarketRejection> {
        self.check_task(shard, 0)?;
        (0..self.slots())
            .find(|&r| matches!(self.task(shard, r).state, TaskState::Leased { provider: p, .. } if p == provider))
            .ok_or(MarketRejection::NotLeased { shard })
    }
    pub(crate) fn is_finished(&self) -> bool {
        self.tasks
            .iter()
            .all(|t| matches!(t.state, TaskState::Settled { .. } | TaskState::Cancelled | TaskState::Spare))
    }
}

/// m·k·n, saturating: an ML job's shard commitment is not shape-limited, and m·k·n of three
/// u32s overflows u64 (issue 10), which would wrap a job block's burn in release builds.
pub(crate) fn macs_of(w: &WorkCommitment) -> u64 {
    (w.m as u64).saturating_mul(w.k as u64).saturating_mul(w.n as u64)
}

/// First 8 hex digits of a hash, for log lines.
pub fn short(h: &Hash) -> String {
    h.to_hex()[..8].to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn macs_of_the_largest_shapes_saturates_instead_of_wrapping() {
        let w = ergon_pouw::WorkCommitment { m: u32::MAX, k: u32::MAX, n: u32::MAX, root_a: [0; 32], root_b: [0; 32] };
        assert_eq!(super::macs_of(&w), u64::MAX);
        let w = ergon_pouw::WorkCommitment { m: 3, k: 5, n: 7, ..w };
        assert_eq!(super::macs_of(&w), 105);
    }
}
