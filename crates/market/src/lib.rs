//! Ergon's compute market as a deterministic state machine (sans-IO).
//!
//! Providers publish offers and bond stake; clients post jobs and escrow their maximum cost.
//! Each job is cut into tasks, one per (output shard, replica). At the end of every block the
//! market closes leases that ran past their deadline, settles results whose challenge window
//! has passed, releases the bonds of providers who left, and matches the queue:
//!
//! - [`model`]: providers, jobs and tasks.
//! - [`state`]: the market and the transitions transactions cause; `settlement`: the end of
//!   every block (expiry, settlement, bonds) and penalties; `rules`: static checks of offers and
//!   jobs; `root`: the state commitment; `snapshot`: the whole market as bytes, for checkpoints.
//! - [`checks`]: adaptive replication: which ML results another provider computes again (all of
//!   a provider's on probation, a sample of a trusted one's) and who pays for it.
//! - [`matching`]: the order book and the matching rule (price, then reputation, then whoever
//!   waited longest), with the reason an order is still waiting.
//! - [`reasons`]: the decision log, so every lease, closure, payment or demotion can be read back.
//! - [`load`]: synthetic order books and a saturating-load run, for `ergon bench market`.
//!
//! The chain drives it from block processing with the block height as its only clock; the
//! market never reads a clock, a socket or a random source. Coins move only through the
//! [`Effect`]s it returns, which the ledger applies, so supply accounting stays in one place.

mod availability;
pub mod checks;
pub mod load;
pub mod matching;
pub mod model;
mod penalties;
pub mod reasons;
mod root;
mod rules;
mod settlement;
mod snapshot;
pub mod state;
pub mod verification;

pub use model::{short, Challenge, Job, JobStatus, Judgments, Provider, ProviderStatus, Task, TaskKey, TaskState};
pub use reasons::{Decision, Subject};
pub use state::{EnergyTotals, Market, MarketSize};

use std::fmt;

/// Market rules every node shares (from the genesis parameters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarketParams {
    /// Least bond a provider must hold to take leases.
    pub min_provider_stake: u64,
    /// Blocks a posted result waits, open to challenge, before it is paid.
    pub challenge_blocks: u64,
    /// Share (percent) of every job payment that is burned, so a job bought from oneself to mine
    /// on costs real coins.
    pub job_burn_percent: u64,
    /// Leases in a row a provider may let expire before it is demoted.
    pub max_strikes: u32,
    /// Longest lease a job may ask for.
    pub max_lease_blocks: u32,
    /// Blocks a task may wait in the queue before it is cancelled and its escrow refunded (a
    /// replica nobody can take must not hold the client's coins, or its siblings' payment,
    /// for ever).
    pub max_queue_blocks: u64,
    /// What a disputer receives from a slash, at most: small and fixed, the rest is burned, so
    /// disputing oneself loses the slash less this, and front-running a dispute wins only this.
    pub dispute_bounty: u64,
    /// The audit rate p (per mille) and colluding share r (percent) the collateral of a lease is
    /// sized for: S ≥ G/(p·q·(1−r)) − R with q = 1 and G = R = the lease's value (see
    /// `docs/economics.md`).
    pub audit_permille: u64,
    pub collusion_percent: u64,
    /// Share (percent) of a task's value the client pays a provider that gives its lease back
    /// because the inputs never arrived.
    pub wasted_lease_percent: u64,
    /// Blocks a provider has to reveal the rows an availability challenge asks for.
    pub reveal_blocks: u64,
    /// Blocks after which a finished job, with its decision log, leaves the market's state, so
    /// the state stays the size of the live market, not of its history.
    pub archive_after_blocks: u64,
    /// Blocks after which a validator's judgment of a provider no longer counts: a validator
    /// that stops judging (gone, or cut off) must not hold a provider absent, or verified, for
    /// ever. Validators renew theirs well before.
    pub judgment_ttl_blocks: u64,
    /// Main memory (MiB) matching takes any provider to have, up to its claim, without a
    /// validator's memory challenge: claims this small are rebuilt inside any deadline, so a
    /// challenge could not tell an honest one from a fake (`docs/poai.md` §7). Above it, only
    /// what validators' memory challenges showed counts.
    pub memory_floor_mib: u64,
    /// Paid results a provider needs, with a reputation of at least `trusted_permille`, before
    /// its ML results are only sampled instead of all checked by another provider
    /// (`checks`).
    pub probation_leases: u64,
    pub trusted_permille: u64,
    /// Blocks a called check waits for a provider before the shard settles unchecked.
    pub check_wait_blocks: u64,
}

impl MarketParams {
    pub fn devnet() -> Self {
        Self {
            min_provider_stake: 1_000_000,
            challenge_blocks: 3,
            job_burn_percent: 10,
            max_strikes: 3,
            max_lease_blocks: 10_000,
            max_queue_blocks: 200,
            dispute_bounty: 1_000,
            audit_permille: 50,
            collusion_percent: 10,
            wasted_lease_percent: 2,
            reveal_blocks: 3,
            archive_after_blocks: 1_000,
            judgment_ttl_blocks: 8_640,
            memory_floor_mib: 1024,
            probation_leases: 3,
            trusted_permille: 900,
            check_wait_blocks: 20,
        }
    }

    /// Bond a provider must have free to take a lease worth `value` (its payment at the lease
    /// price): S = ⌈G / (p·(1 − r))⌉ − R with G = R = `value`, so that for a provider audited at
    /// rate p by validators of whom a share r collude, cheating on the lease loses in
    /// expectation. Rounded up, saturating.
    pub fn collateral(&self, value: u64) -> u64 {
        let denominator =
            self.audit_permille.max(1) as u128 * 100u128.saturating_sub(self.collusion_percent as u128).max(1);
        let s = (value as u128 * 100_000).div_ceil(denominator);
        s.saturating_sub(value as u128).min(u64::MAX as u128) as u64
    }

    /// What a proven fault on a lease with `collateral` at risk takes from a bond of `bond`.
    pub fn slash_amount(&self, collateral: u64, bond: u64) -> u64 {
        collateral.max(self.min_provider_stake).min(bond)
    }
}

/// Shortest lease a job may ask for: time for the leaseholder to fetch its inputs and, if they
/// never arrive, to give the lease back without a strike before the deadline.
pub const MIN_LEASE_BLOCKS: u32 = 3;

/// Availability challenges a client may make on one posted result (each asks for up to
/// `ergon_pouw::dispute::MAX_REVEAL_ROWS` rows), so a client cannot keep a provider revealing for
/// ever, while a withheld result can still be recovered row by row up to this bound.
pub const MAX_CHALLENGES: u8 = 8;

/// A movement of coins the ledger must carry out. Escrow and bonds live in the market until an
/// effect releases them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Credit `amount` to `to`'s balance.
    Pay { to: ergon_types::Address, amount: u64 },
    /// Destroy `amount`.
    Burn { amount: u64 },
    /// Return a bond to `to` through the ledger's unbonding queue.
    Unbond { to: ergon_types::Address, amount: u64 },
}

/// Why a market transaction cannot apply. Each reads as a sentence for its sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarketRejection {
    BadOffer(String),
    BondTooSmall {
        bond: u64,
        min: u64,
    },
    NotAProvider,
    BadJob(String),
    UnknownJob,
    NotYourJob,
    JobClosed,
    NoSuchShard {
        shard: u16,
        shards: usize,
    },
    NotLeased {
        shard: u16,
    },
    BudgetOverflow,
    /// The evidence does not prove the result wrong.
    DisputeFailed(String),
    NotInChallengeWindow,
    /// A lease with blocks mined on it cannot be given back as "inputs never arrived".
    MinedOnLease,
    /// An availability challenge or its answer that cannot apply.
    BadChallenge(String),
    /// A validator's judgment of a provider that cannot apply.
    BadJudgment(String),
    /// A fraud proof that proves nothing (the answer is right, or is not the provider's).
    NotAFraud(String),
    /// A client's doubt of a result that cannot apply (`checks`).
    BadDoubt(String),
}

impl fmt::Display for MarketRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadOffer(why) => write!(f, "offer refused: {why}"),
            Self::BondTooSmall { bond, min } => {
                write!(f, "a provider must bond at least {min}; this registration leaves {bond}")
            }
            Self::NotAProvider => write!(f, "the sender is not a registered provider"),
            Self::BadJob(why) => write!(f, "job refused: {why}"),
            Self::UnknownJob => write!(f, "no such job"),
            Self::NotYourJob => write!(f, "only the client who submitted a job can cancel it"),
            Self::JobClosed => write!(f, "the job is already finished or cancelled"),
            Self::NoSuchShard { shard, shards } => write!(f, "shard {shard} does not exist (the job has {shards})"),
            Self::NotLeased { shard } => {
                write!(
                    f,
                    "the sender holds no open lease on shard {shard} of this job (expired, posted or never leased)"
                )
            }
            Self::BudgetOverflow => write!(f, "the job's maximum cost overflows"),
            Self::DisputeFailed(why) => write!(f, "dispute refused: {why}"),
            Self::BadChallenge(why) => write!(f, "challenge refused: {why}"),
            Self::BadJudgment(why) => write!(f, "judgment refused: {why}"),
            Self::NotAFraud(why) => write!(f, "fraud proof refused: {why}"),
            Self::BadDoubt(why) => write!(f, "doubt refused: {why}"),
            Self::MinedOnLease => {
                write!(f, "blocks were mined on this lease, so its inputs arrived: post the result instead")
            }
            Self::NotInChallengeWindow => {
                write!(f, "that task has no posted result in its challenge window (already settled, or never posted)")
            }
        }
    }
}

/// Integer payment for `macs` multiply-adds at `price_per_gmac`, rounded up to a whole unit, so
/// no work is paid 0 (the escrow rounds each task up the same way at the maximum price, so it
/// always covers it).
pub fn payment(price_per_gmac: u64, macs: u64) -> u64 {
    (price_per_gmac as u128 * macs as u128).div_ceil(1_000_000_000).min(u64::MAX as u128) as u64
}
