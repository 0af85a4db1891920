//! The market's routes: `/providers`, `/providers/{address}`, `/jobs`, `/jobs/{id}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One entry of the decision log: what the block at `height` decided, in words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Decision {
    pub height: u64,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderStatus {
    /// Takes leases.
    Active,
    /// Deregistered: finishes its leases, then its bond unbonds.
    Leaving,
    /// Stopped taking leases (too many expired in a row, or slashed); registering again
    /// reactivates it.
    Demoted,
    /// Left; its bond is unbonding.
    Gone,
}

impl ProviderStatus {
    /// Its name on the wire (`active`, `leaving`, `demoted`, `gone`).
    pub fn name(self) -> &'static str {
        match self {
            ProviderStatus::Active => "active",
            ProviderStatus::Leaving => "leaving",
            ProviderStatus::Demoted => "demoted",
            ProviderStatus::Gone => "gone",
        }
    }
}

/// The hardware a provider's offer claims (matching uses the verified figures instead).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Profile {
    pub cpu_cores: u32,
    pub memory_mib: u64,
    pub gpu_model: String,
    pub gpu_memory_mib: u64,
    pub int8_gmacs: u64,
}

/// A lease a provider holds: a replica of a job's shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Lease {
    pub job: String,
    pub shard: u16,
    pub replica: u8,
}

/// A staked validator's judgment of a provider's int8 throughput.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ThroughputJudgment {
    pub validator: String,
    /// Its stake when it judged (the weight in the median).
    pub stake: u64,
    pub gmacs: u64,
    pub height: u64,
}

/// A staked validator's judgment of a provider's main memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemoryJudgment {
    pub validator: String,
    pub stake: u64,
    pub memory_mib: u64,
    pub height: u64,
}

/// A registered provider as the chain holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Provider {
    pub address: String,
    pub status: ProviderStatus,
    pub price_per_gmac: u64,
    pub slots: u8,
    pub bond: u64,
    /// Its x25519 key (hex): clients seal a leased shard's inputs to it.
    pub encryption_key: String,
    pub profile: Profile,
    pub leases: Vec<Lease>,
    pub results_in_challenge_window: u32,
    pub completed: u64,
    pub failed: u64,
    pub reputation_permille: u64,
    pub challenge_permille: u64,
    /// Why all its ML results are checked by another provider (null: trusted, sampled only).
    pub probation: Option<String>,
    pub vouched_results: u64,
    /// Coins clients' escrow paid it over its life: settled results and wasted-lease fees. The
    /// one meaning of "earned" everywhere (CLI, dashboard); block rewards for the blocks it mined
    /// are not in it: they go to its account as the miner, like any miner's.
    pub earned: u64,
    pub slashed: u64,
    /// Of its bond, what open leases hold as collateral.
    pub bond_locked: u64,
    pub leases_given_back: u64,
    /// What matching uses: the validators' stake-weighted median judgment, never the claim.
    pub verified_gmacs: u64,
    /// It missed liveness probes: matching gives it nothing until it answers again.
    pub absent: bool,
    pub judgments: Vec<ThroughputJudgment>,
    /// Main memory matching uses: what memory challenges showed, or the claim up to the floor.
    pub verified_memory_mib: u64,
    pub memory_floor_mib: u64,
    pub memory_judgments: Vec<MemoryJudgment>,
    /// Whether it is getting work, and if not why, in words.
    pub outlook: String,
}

/// `GET /providers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Providers {
    pub providers: Vec<Provider>,
}

/// `GET /providers/{address}`: the provider and its decision log (404, with how to register, for
/// an address that never registered).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProviderDetail {
    #[serde(flatten)]
    pub provider: Provider,
    pub decisions: Vec<Decision>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Open,
    Cancelled,
    /// Every shard settled or cancelled; the rest of the escrow refunded.
    Done,
}

impl JobStatus {
    /// Its name on the wire (`open`, `cancelled`, `done`).
    pub fn name(self) -> &'static str {
        match self {
            JobStatus::Open => "open",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Done => "done",
        }
    }
}

/// `GET /jobs`: each job the state holds, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Jobs {
    pub jobs: Vec<JobSummary>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobSummary {
    pub id: String,
    pub client: String,
    /// `matmul`, `train` or `infer`.
    pub kind: String,
    pub status: JobStatus,
    /// What the market still holds for it.
    pub escrow: u64,
    pub escrowed_at_submission: u64,
    pub paid: u64,
    pub burned: u64,
    pub shards: usize,
    pub replicas: usize,
    pub submitted_at: u64,
    pub finished_at: Option<u64>,
    /// Its tasks (shard replicas) by state: queued, leased, posted, settled, cancelled, spare.
    pub progress: BTreeMap<String, usize>,
    /// Why its first queued task waits, if one does.
    pub waiting: Option<String>,
    /// CPU time its providers reported for the results they posted (re-done shards and check
    /// replicas included: that energy was spent too), and its joules under the power model.
    pub energy: crate::energy::Energy,
}

/// `GET /jobs/{id}`: a job (its summary, as `/jobs` lists it), every task's state and its
/// decision log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    #[serde(flatten)]
    pub summary: JobSummary,
    pub macs_per_shard: u64,
    pub max_price_per_gmac: u64,
    pub tasks: Vec<Task>,
    pub decisions: Vec<Decision>,
}

/// One replica of one shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    pub shard: u16,
    pub replica: u8,
    /// The check replica (ML jobs): another provider's run of the shard, called when its
    /// providers are on probation or sampled.
    pub check: bool,
    #[serde(flatten)]
    pub state: TaskState,
    /// A client's doubt, on the check replica: the result it expects.
    pub doubt: Option<String>,
    /// CPU milliseconds reported for the results posted on it so far.
    pub cpu_ms: u32,
}

/// A task's state (`state`) and what goes with it (`detail`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a provider; `why` says what it waits for.
    Queued {
        why: Option<String>,
    },
    Leased {
        provider: String,
        price_per_gmac: u64,
        since: u64,
        deadline: u64,
        /// Blocks mined on this shard so far, and what they burned from its escrow.
        blocks_mined: u32,
        burned_by_blocks: u64,
        /// Of the provider's bond, what this lease holds.
        collateral: u64,
    },
    /// Result committed; paid at `settles_at` unless proven wrong before.
    Posted {
        provider: String,
        price_per_gmac: u64,
        result: String,
        settles_at: u64,
    },
    Settled {
        provider: String,
        result: String,
        paid: u64,
    },
    Cancelled {},
    /// A check replica while no check is called.
    Spare {},
}

impl TaskState {
    pub fn name(&self) -> &'static str {
        match self {
            TaskState::Queued { .. } => "queued",
            TaskState::Leased { .. } => "leased",
            TaskState::Posted { .. } => "posted",
            TaskState::Settled { .. } => "settled",
            TaskState::Cancelled {} => "cancelled",
            TaskState::Spare {} => "spare",
        }
    }

    /// The provider holding or having held this task, if any.
    pub fn provider(&self) -> Option<&str> {
        match self {
            TaskState::Leased { provider, .. }
            | TaskState::Posted { provider, .. }
            | TaskState::Settled { provider, .. } => Some(provider),
            _ => None,
        }
    }
}
