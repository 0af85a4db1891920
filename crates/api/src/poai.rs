//! `GET /poai`: Proof of AI as this node runs it (`docs/poai.md` §6): its validator's engine,
//! judgments, memory challenges and hidden audits; its provider's answering and what it costs.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoaiView {
    /// Null unless this node runs a validator (`--validator-key`).
    pub validator: Option<ValidatorView>,
    /// Null unless this node is a provider (`--provider-key`).
    pub prover: Option<ProverView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ValidatorView {
    pub address: String,
    pub rounds: u64,
    pub probes: u64,
    pub answers_checked: u64,
    pub providers: Vec<EngineProvider>,
    /// Newest first, at most 100.
    pub judgments: Vec<EngineJudgment>,
    pub audits: Audits,
    pub memory: MemoryValidator,
}

/// The engine's view of one provider's throughput.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EngineProvider {
    pub provider: String,
    pub claimed_gmacs: u64,
    /// The class the sequential test runs against.
    pub class_gmacs: u64,
    pub verified_gmacs: Option<u64>,
    /// What the chain holds from staked validators' judgments.
    pub on_chain_gmacs: Option<u64>,
    pub rounds: u64,
    pub faults: u64,
    pub missed_in_a_row: u32,
    /// The sequential test's log-likelihood ratio.
    pub llr: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EngineJudgment {
    pub at_ms: u64,
    pub height: u64,
    pub provider: String,
    pub round: u64,
    /// `confirm G`, `demote A → B`, `missed`, `fraud …`.
    pub verdict: String,
    pub reason: String,
}

/// Hidden audits: the validator's own jobs whose answers it computed first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Audits {
    /// The account audits are submitted from (derived from the validator's key).
    pub account: String,
    pub passed: usize,
    pub caught: usize,
    /// Newest first.
    pub records: Vec<AuditRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    pub at_ms: u64,
    pub job: Option<String>,
    pub provider: Option<String>,
    /// `passed`, `caught`, `failed` (the audit itself could not run) …
    pub outcome: String,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemoryValidator {
    pub deadline_ms: u32,
    pub opened_epoch: Option<u64>,
    pub providers: Vec<MemoryProvider>,
    /// Newest first, at most 100.
    pub judgments: Vec<MemoryEngineJudgment>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemoryProvider {
    pub provider: String,
    pub claimed_mib: u64,
    pub committed_epoch: Option<u64>,
    pub shown: u64,
    pub failed: u64,
    pub fails_in_a_row: u32,
    pub on_chain_mib: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemoryEngineJudgment {
    pub at_ms: u64,
    pub height: u64,
    pub provider: String,
    pub epoch: u64,
    pub shown: bool,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProverView {
    pub address: String,
    pub rounds_answered: u64,
    pub probes_answered: u64,
    pub parts_answered: u64,
    /// Time spent answering challenges, and its share of the node's uptime (the ≤ 5% goal).
    pub busy_seconds: f64,
    pub share_of_uptime: f64,
    pub memory: MemoryProver,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemoryProver {
    pub held_epoch: Option<u64>,
    pub held_mib: Option<u64>,
    pub fills: u64,
    pub fill_seconds: f64,
    pub openings_answered: u64,
    pub last_answer_ms: f64,
    /// Why the last epoch's fill was not made, if it was not.
    pub not_filled: Option<String>,
}
