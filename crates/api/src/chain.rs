//! The chain's routes: `/status`, `/blocks`, `/blocks/{hash}`, `/accounts/{address}`,
//! `/transactions`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::market::Decision;

/// `GET /status`: where this node's chain stands, and what this node did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Status {
    pub chain_id: String,
    pub height: u64,
    pub tip: String,
    pub tip_time_ms: u64,
    /// Expected multiply-adds the next block needs.
    pub next_difficulty: u64,
    /// The active chain's total work, as a decimal string (u128).
    pub cumulative_work: String,
    pub minted: u64,
    pub burned: u64,
    /// Every account, stake, unbonding coin, escrow and bond: minted − burned (u128, decimal).
    pub circulating: String,
    /// Share of the chain's work done on paid jobs.
    pub useful_work_fraction: f64,
    pub peers: usize,
    pub peer_id: Option<String>,
    pub mempool: usize,
    /// Why the store refuses writes, while it does (the node then accepts and mines nothing).
    pub storage_error: Option<String>,
    /// What a restart resumes from (0: none yet), and why the latest one failed, if it did.
    pub checkpoint_height: u64,
    pub checkpoint_failure: Option<String>,
    pub mining: bool,
    pub blocks_mined: u64,
    pub blocks_imported: u64,
    pub blocks_rejected: u64,
    pub mining_rate_macs_per_s: f64,
    pub macs_mined: u64,
    /// Of `macs_mined`, those mined on leased job shards.
    pub macs_mined_on_jobs: u64,
    pub uptime_s: f64,
    /// Mining energy: the network's jobs, filler, the useful share, and this node's own.
    pub energy: crate::energy::EnergyStatus,
}

/// A block's matrix dimensions: the product mined was m×k times k×n.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Work {
    pub m: u32,
    pub k: u32,
    pub n: u32,
}

impl Work {
    pub fn macs(&self) -> u64 {
        self.m as u64 * self.k as u64 * self.n as u64
    }
}

/// One block, as lists show it (and as the `block` event carries it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BlockSummary {
    pub height: u64,
    pub id: String,
    pub parent: String,
    pub time_ms: u64,
    pub miner: String,
    pub difficulty: u64,
    /// The job whose shard was mined, or null for a filler block.
    pub job: Option<String>,
    pub work: Work,
    pub transactions: usize,
}

/// `GET /blocks?from=&limit=`: up to `limit` (≤ 200, default 20) active blocks from `from`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Blocks {
    pub height: u64,
    pub blocks: Vec<BlockSummary>,
}

/// `GET /blocks/{hash}`: a block with its transactions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Block {
    #[serde(flatten)]
    pub summary: BlockSummary,
    pub txs: Vec<Tx>,
    pub state_root: String,
    pub nonce: u64,
    /// When this node first accepted it (null: before this node's records).
    pub received_ms: Option<u64>,
}

/// A signed transaction, decoded: who sent it, and what it does (`kind`, with its `detail`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Tx {
    pub id: String,
    pub from: String,
    pub nonce: u64,
    pub fee: u64,
    #[serde(flatten)]
    pub body: TxBody,
}

/// What a transaction does: `kind` names it, `detail` holds its fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum TxBody {
    Transfer {
        to: String,
        amount: u64,
    },
    Stake {
        amount: u64,
    },
    Unstake {
        amount: u64,
    },
    RegisterProvider {
        stake: u64,
        price_per_gmac: u64,
        slots: u8,
        int8_gmacs: u64,
        memory_mib: u64,
    },
    Deregister {},
    /// `escrow` is null when the job's maximum cost overflows (such a job is refused).
    SubmitJob {
        job_kind: String,
        shards: usize,
        escrow: Option<u64>,
        max_price_per_gmac: u64,
    },
    CancelJob {
        job: String,
    },
    PostResult {
        job: String,
        shard: u16,
        result: String,
        /// CPU time the provider reports its computation took (milliseconds).
        cpu_ms: u32,
    },
    Dispute {
        job: String,
        shard: u16,
        replica: u8,
        row: u32,
        col: u32,
    },
    ReleaseLease {
        job: String,
        shard: u16,
    },
    ChallengeResult {
        job: String,
        shard: u16,
        replica: u8,
        rows: Vec<u32>,
    },
    RevealRows {
        job: String,
        shard: u16,
        replica: u8,
        rows: Vec<u32>,
    },
    Judge {
        provider: String,
        gmacs: u64,
        reason: String,
    },
    DoubtResult {
        job: String,
        shard: u16,
        expected: String,
    },
    JudgeMemory {
        provider: String,
        memory_mib: u64,
        reason: String,
    },
    ProveFraud {
        provider: String,
        round: u64,
        part: u32,
    },
}

/// `GET /accounts/{address}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub address: String,
    pub balance: u64,
    /// Transactions applied from this account.
    pub nonce: u64,
    /// Its transactions waiting in this node's pool.
    pub pending: usize,
    /// The nonce its next transaction should carry (pending ones counted).
    pub next_nonce: u64,
    pub stake: u64,
    pub unbonding: Vec<Unbonding>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Unbonding {
    pub release_height: u64,
    pub amount: u64,
}

/// `POST /transactions`: one signed transaction, as the hex of its canonical encoding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitTx {
    pub tx: String,
}

/// Where a transaction stands in this node's pool (`POST /transactions` answers `pending`, 202).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TxState {
    pub id: String,
    pub status: TxPoolStatus,
    /// Why it was dropped (only when dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TxPoolStatus {
    Pending,
    Dropped,
}

/// `PUT /blobs/{name}` stored the sealed blob (201).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BlobStored {
    pub name: String,
    pub bytes: u64,
}

/// Decisions are listed oldest first.
pub type Decisions = Vec<Decision>;
