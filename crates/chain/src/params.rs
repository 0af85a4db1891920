//! Consensus parameters and the genesis file that fixes them.

use std::collections::BTreeMap;

use ergon_types::{Address, Hash};
use serde::{Deserialize, Serialize};

use crate::ChainError;

/// Rules every node of one network must share (set by its genesis file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainParams {
    /// Target block interval.
    pub block_time_ms: u64,
    /// ASERT half-life: a schedule error of this much time halves or doubles the difficulty.
    pub asert_half_life_ms: u64,
    /// Difficulty of the first block (expected multiply-adds per block).
    pub initial_difficulty: u64,
    /// Difficulty never drops below this.
    pub min_difficulty: u64,
    /// New coins per block mined on a paid job.
    pub block_subsidy: u64,
    /// Share of the subsidy (percent) a block mined on filler matrices earns.
    pub filler_subsidy_percent: u64,
    /// Share of every fee (percent) that is burned rather than paid to the miner.
    pub fee_burn_percent: u64,
    /// Blocks between an unstake and the release of the coins.
    pub unbonding_blocks: u64,
    /// Side of the square filler matrices mined on when no job is available.
    pub filler_size: u32,
    /// How far ahead of a node's clock a block's time may be.
    pub max_future_ms: u64,
    /// Least bond a compute provider must hold.
    #[serde(default = "defaults::min_provider_stake")]
    pub min_provider_stake: u64,
    /// Blocks a posted job result stays open to challenge before it is paid.
    #[serde(default = "defaults::challenge_blocks")]
    pub challenge_blocks: u64,
    /// Share (percent) of every job payment that is burned.
    #[serde(default = "defaults::job_burn_percent")]
    pub job_burn_percent: u64,
    /// Expired leases in a row before a provider is demoted.
    #[serde(default = "defaults::max_strikes")]
    pub max_strikes: u32,
    /// Longest lease a job may ask for, in blocks.
    #[serde(default = "defaults::max_lease_blocks")]
    pub max_lease_blocks: u32,
    /// Share (percent, below 100) of what a job block's mining burned from its job's escrow that
    /// the block pays its miner, capped at `block_subsidy`: a job-licensed block never pays more
    /// than its job burned, so self-dealing cannot pay (`docs/economics.md`).
    #[serde(default = "defaults::job_block_reward_percent")]
    pub job_block_reward_percent: u64,
    /// Blocks a task may wait unleased before it is cancelled and refunded.
    #[serde(default = "defaults::max_queue_blocks")]
    pub max_queue_blocks: u64,
    /// The fixed bounty a disputer gets from a slash; the rest is burned.
    #[serde(default = "defaults::dispute_bounty")]
    pub dispute_bounty: u64,
    /// The audit rate (per mille) and colluding share (percent) lease collateral is sized for.
    #[serde(default = "defaults::audit_permille")]
    pub audit_permille: u64,
    #[serde(default = "defaults::collusion_percent")]
    pub collusion_percent: u64,
    /// Share (percent) of a task's value paid to a provider whose inputs never arrived.
    #[serde(default = "defaults::wasted_lease_percent")]
    pub wasted_lease_percent: u64,
    /// Blocks a provider has to answer an availability challenge.
    #[serde(default = "defaults::reveal_blocks")]
    pub reveal_blocks: u64,
    /// Deepest reorganisation accepted: a block forking from more than this many blocks below
    /// the tip is refused (see `docs/chain.md`).
    #[serde(default = "defaults::max_reorg_depth")]
    pub max_reorg_depth: u64,
    /// Blocks after which a finished job leaves the market's state (see `MarketParams`).
    #[serde(default = "defaults::archive_after_blocks")]
    pub archive_after_blocks: u64,
    /// Least stake an account must hold for its judgments of providers to count.
    #[serde(default = "defaults::min_validator_stake")]
    pub min_validator_stake: u64,
    /// Blocks after which a validator's judgment of a provider no longer counts (see
    /// `MarketParams`).
    #[serde(default = "defaults::judgment_ttl_blocks")]
    pub judgment_ttl_blocks: u64,
    /// Main memory (MiB) any provider is taken to have, up to its claim, unchecked; above it
    /// only what validators' memory challenges showed counts (`docs/poai.md` §7).
    #[serde(default = "defaults::memory_floor_mib")]
    pub memory_floor_mib: u64,
    /// Memory challenges come once per this many blocks: epoch e starts at height
    /// e·`memory_epoch_blocks`, whose block id seeds every provider's fill, ...
    #[serde(default = "defaults::memory_epoch_blocks")]
    pub memory_epoch_blocks: u64,
    /// ... and for the first this many blocks of it (the window): providers fill and commit in
    /// its first half, validators open in its second half, and providers drop their fills when
    /// it ends, so an honest provider gives up its memory for a window per epoch.
    #[serde(default = "defaults::memory_window_blocks")]
    pub memory_window_blocks: u64,
    /// Adaptive replication of ML results (see `MarketParams` and `ergon_market::checks`): paid
    /// results a provider needs, and the reputation (per mille) it must keep, to be trusted;
    /// and how long a called check waits for a provider.
    #[serde(default = "defaults::probation_leases")]
    pub probation_leases: u64,
    #[serde(default = "defaults::trusted_permille")]
    pub trusted_permille: u64,
    #[serde(default = "defaults::check_wait_blocks")]
    pub check_wait_blocks: u64,
}

/// Market parameters a genesis file may leave out (files written before the market existed).
mod defaults {
    use ergon_market::MarketParams;

    pub fn max_reorg_depth() -> u64 {
        500
    }
    pub fn archive_after_blocks() -> u64 {
        MarketParams::devnet().archive_after_blocks
    }
    pub fn min_validator_stake() -> u64 {
        10_000_000
    }
    pub fn judgment_ttl_blocks() -> u64 {
        MarketParams::devnet().judgment_ttl_blocks
    }
    pub fn memory_floor_mib() -> u64 {
        MarketParams::devnet().memory_floor_mib
    }
    /// Two hours of 10 s blocks, with a 5-minute window: an honest provider's memory is held by
    /// its fill 4% of the time, and filling costs it 6 s per GiB per epoch (2% at 24 GiB).
    pub fn memory_epoch_blocks() -> u64 {
        720
    }
    pub fn memory_window_blocks() -> u64 {
        30
    }
    pub fn probation_leases() -> u64 {
        MarketParams::devnet().probation_leases
    }
    pub fn trusted_permille() -> u64 {
        MarketParams::devnet().trusted_permille
    }
    pub fn check_wait_blocks() -> u64 {
        MarketParams::devnet().check_wait_blocks
    }
    pub fn min_provider_stake() -> u64 {
        MarketParams::devnet().min_provider_stake
    }
    pub fn challenge_blocks() -> u64 {
        MarketParams::devnet().challenge_blocks
    }
    pub fn job_burn_percent() -> u64 {
        MarketParams::devnet().job_burn_percent
    }
    pub fn max_strikes() -> u32 {
        MarketParams::devnet().max_strikes
    }
    pub fn max_lease_blocks() -> u32 {
        MarketParams::devnet().max_lease_blocks
    }
    pub fn job_block_reward_percent() -> u64 {
        90
    }
    pub fn max_queue_blocks() -> u64 {
        MarketParams::devnet().max_queue_blocks
    }
    pub fn dispute_bounty() -> u64 {
        MarketParams::devnet().dispute_bounty
    }
    pub fn audit_permille() -> u64 {
        MarketParams::devnet().audit_permille
    }
    pub fn collusion_percent() -> u64 {
        MarketParams::devnet().collusion_percent
    }
    pub fn wasted_lease_percent() -> u64 {
        MarketParams::devnet().wasted_lease_percent
    }
    pub fn reveal_blocks() -> u64 {
        MarketParams::devnet().reveal_blocks
    }
}

impl ChainParams {
    /// Devnet defaults: 10 s blocks, difficulty sized for a 2-core laptop.
    pub fn devnet() -> Self {
        Self {
            block_time_ms: 10_000,
            asert_half_life_ms: 200_000,
            initial_difficulty: 50_000_000_000,
            min_difficulty: 1_000_000,
            block_subsidy: 50_000_000,
            filler_subsidy_percent: 20,
            fee_burn_percent: 30,
            unbonding_blocks: 100,
            filler_size: 512,
            max_future_ms: 120_000,
            min_provider_stake: defaults::min_provider_stake(),
            challenge_blocks: defaults::challenge_blocks(),
            job_burn_percent: defaults::job_burn_percent(),
            max_strikes: defaults::max_strikes(),
            max_lease_blocks: defaults::max_lease_blocks(),
            job_block_reward_percent: defaults::job_block_reward_percent(),
            max_queue_blocks: defaults::max_queue_blocks(),
            dispute_bounty: defaults::dispute_bounty(),
            audit_permille: defaults::audit_permille(),
            collusion_percent: defaults::collusion_percent(),
            wasted_lease_percent: defaults::wasted_lease_percent(),
            reveal_blocks: defaults::reveal_blocks(),
            max_reorg_depth: defaults::max_reorg_depth(),
            archive_after_blocks: defaults::archive_after_blocks(),
            min_validator_stake: defaults::min_validator_stake(),
            judgment_ttl_blocks: defaults::judgment_ttl_blocks(),
            memory_floor_mib: defaults::memory_floor_mib(),
            memory_epoch_blocks: defaults::memory_epoch_blocks(),
            memory_window_blocks: defaults::memory_window_blocks(),
            probation_leases: defaults::probation_leases(),
            trusted_permille: defaults::trusted_permille(),
            check_wait_blocks: defaults::check_wait_blocks(),
        }
    }

    /// The market's share of the rules.
    pub fn market(&self) -> ergon_market::MarketParams {
        ergon_market::MarketParams {
            min_provider_stake: self.min_provider_stake,
            challenge_blocks: self.challenge_blocks,
            job_burn_percent: self.job_burn_percent,
            max_strikes: self.max_strikes,
            max_lease_blocks: self.max_lease_blocks,
            max_queue_blocks: self.max_queue_blocks,
            dispute_bounty: self.dispute_bounty,
            audit_permille: self.audit_permille,
            collusion_percent: self.collusion_percent,
            wasted_lease_percent: self.wasted_lease_percent,
            reveal_blocks: self.reveal_blocks,
            archive_after_blocks: self.archive_after_blocks,
            judgment_ttl_blocks: self.judgment_ttl_blocks,
            memory_floor_mib: self.memory_floor_mib,
            probation_leases: self.probation_leases,
            trusted_permille: self.trusted_permille,
            check_wait_blocks: self.check_wait_blocks,
        }
    }

    /// Filler matrices of side `filler_size` and a first difficulty of one filler product (about
    /// one winning ticket per nonce), floor 1000: blocks in milliseconds, for simulations, tests,
    /// benchmarks and small local networks. Block time and half-life are the devnet's.
    pub fn small(filler_size: u32) -> Self {
        let n = filler_size as u64;
        Self { filler_size, initial_difficulty: n * n * n, min_difficulty: 1000, ..Self::devnet() }
    }

    pub fn check(&self) -> Result<(), ChainError> {
        let bad = |why: &str| Err(ChainError::Genesis(why.to_string()));
        if self.block_time_ms == 0 || self.asert_half_life_ms == 0 {
            return bad("block_time_ms and asert_half_life_ms must be positive");
        }
        if self.min_difficulty == 0 || self.initial_difficulty < self.min_difficulty {
            return bad("need 0 < min_difficulty <= initial_difficulty");
        }
        if self.max_reorg_depth == 0 || self.max_reorg_depth > 10_000 {
            return bad("max_reorg_depth must be in 1..=10000");
        }
        if self.filler_subsidy_percent > 100 || self.fee_burn_percent > 100 || self.job_burn_percent > 100 {
            return bad("percentages must be at most 100");
        }
        if !(ergon_pouw::params::TILE_ROWS as u32..=4096).contains(&self.filler_size) {
            return bad("filler_size must be in 24..=4096");
        }
        if self.max_strikes == 0 || self.max_lease_blocks < ergon_market::MIN_LEASE_BLOCKS {
            return bad("max_strikes must be positive and max_lease_blocks at least 3");
        }
        if self.job_block_reward_percent >= 100 {
            return bad("job_block_reward_percent must be below 100: a job block may not pay all its job burned");
        }
        if self.audit_permille == 0 || self.audit_permille > 1000 || self.collusion_percent >= 100 {
            return bad("audit_permille must be in 1..=1000 and collusion_percent below 100");
        }
        if !(1..=10_000).contains(&self.challenge_blocks) {
            return bad("challenge_blocks must be in 1..=10000: a result nobody may dispute would be paid unchecked");
        }
        if self.wasted_lease_percent > 100 || self.max_queue_blocks == 0 || self.reveal_blocks == 0 {
            return bad("wasted_lease_percent must be at most 100, max_queue_blocks and reveal_blocks positive");
        }
        if self.trusted_permille > 1000 || self.check_wait_blocks == 0 {
            return bad("trusted_permille must be at most 1000 and check_wait_blocks positive");
        }
        if self.memory_window_blocks < 4 || self.memory_window_blocks > self.memory_epoch_blocks {
            return bad("memory_window_blocks must be at least 4 and at most memory_epoch_blocks");
        }
        Ok(())
    }

    /// The memory epoch `height` is in: its first height, and whether `height` is inside its
    /// window.
    pub fn memory_epoch(&self, height: u64) -> (u64, bool) {
        let start = height - height % self.memory_epoch_blocks.max(1);
        (start, height - start < self.memory_window_blocks)
    }
}

/// The genesis file: parameters, the genesis time, and who owns what at the start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Human-readable network name; part of the genesis hash.
    pub network: String,
    pub time_ms: u64,
    pub params: ChainParams,
    /// Initial balances by address (`erg…`).
    pub balances: BTreeMap<String, u64>,
}

impl Genesis {
    pub fn from_json(text: &str) -> Result<Self, ChainError> {
        let g: Genesis = serde_json::from_str(text).map_err(|e| ChainError::Genesis(e.to_string()))?;
        g.params.check()?;
        g.allocations()?;
        Ok(g)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("genesis serialises")
    }

    /// The initial balances, parsed.
    pub fn allocations(&self) -> Result<Vec<(Address, u64)>, ChainError> {
        let mut total: u64 = 0;
        self.balances
            .iter()
            .map(|(a, &v)| {
                total = total.checked_add(v).ok_or_else(|| ChainError::Genesis("total supply overflows".into()))?;
                Ok((a.parse::<Address>().map_err(|e| ChainError::Genesis(e.to_string()))?, v))
            })
            .collect()
    }

    /// Identifies the network: transactions sign over it, so they cannot be replayed elsewhere.
    pub fn hash(&self) -> Hash {
        Hash::of("ergon v1 genesis", &[self.to_json().as_bytes()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_nobody_may_dispute_is_refused_at_genesis() {
        assert!(ChainParams::devnet().check().is_ok());
        let unchecked = ChainParams { challenge_blocks: 0, ..ChainParams::devnet() };
        let why = unchecked.check().unwrap_err().to_string();
        assert!(why.contains("challenge_blocks must be in 1..=10000"), "{why}");
        assert!(ChainParams { challenge_blocks: 10, ..ChainParams::devnet() }.check().is_ok());
    }
}
