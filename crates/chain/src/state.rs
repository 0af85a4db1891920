//! The ledger: accounts with balances, nonces and stake, plus the supply counters; how
//! transactions and block rewards change it; and undo records that restore it exactly.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use ergon_market::{Effect, Market, MarketRejection};
use ergon_types::codec::{Reader, Writer};
use ergon_types::{Address, Hash, SignedTransaction, TxKind, TypesError};

use crate::params::ChainParams;

/// Stake on its way out: (height at which it is released, amount).
pub type Unbonding = (u64, u64);

/// One account. Absent accounts are all zeros.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    pub balance: u64,
    /// Transactions sent so far; the next must carry this nonce.
    pub nonce: u64,
    pub stake: u64,
    /// (height at which it is released, amount), in release order.
    pub unbonding: Vec<Unbonding>,
}

impl Account {
    fn is_empty(&self) -> bool {
        *self == Account::default()
    }
}

/// Why a transaction cannot be applied: each reads as a sentence for the sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxRejection {
    WrongChain,
    BadSignature,
    WrongNonce {
        expected: u64,
        got: u64,
    },
    InsufficientBalance {
        needed: u64,
        available: u64,
    },
    InsufficientStake {
        requested: u64,
        staked: u64,
    },
    ZeroAmount,
    Overflow,
    /// A judgment from an account without a validator's stake.
    NotAValidator {
        stake: u64,
        min: u64,
    },
    /// The compute market refused it (offer, job, cancellation or result).
    Market(MarketRejection),
}

impl fmt::Display for TxRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxRejection::WrongChain => write!(f, "signed for another network (genesis hash differs)"),
            TxRejection::BadSignature => write!(f, "signature does not verify for the sender's key"),
            TxRejection::WrongNonce { expected, got } => {
                write!(f, "nonce {got} but the account's next nonce is {expected}")
            }
            TxRejection::InsufficientBalance { needed, available } => {
                write!(f, "needs {needed} (amount + fee) but the balance is {available}")
            }
            TxRejection::InsufficientStake { requested, staked } => {
                write!(f, "unstakes {requested} but only {staked} is staked")
            }
            TxRejection::ZeroAmount => write!(f, "amount must be positive"),
            TxRejection::Overflow => write!(f, "amount overflows the recipient's balance"),
            TxRejection::NotAValidator { stake, min } => {
                write!(f, "judgments count only from validators staking at least {min}; the sender stakes {stake}")
            }
            TxRejection::Market(why) => write!(f, "{why}"),
        }
    }
}

/// What a filler block earns: `filler_subsidy_percent` of the block subsidy.
pub fn filler_subsidy(params: &ChainParams) -> u64 {
    (params.block_subsidy as u128 * params.filler_subsidy_percent as u128 / 100) as u64
}

/// What a job block earns when its mining burned `burned` from its job's escrow: a fixed share
/// below 100% of it, at most the block subsidy.
pub fn job_block_subsidy(burned: u64, params: &ChainParams) -> u64 {
    ((burned as u128 * params.job_block_reward_percent as u128 / 100) as u64).min(params.block_subsidy)
}

/// The full ledger state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    accounts: BTreeMap<Address, Account>,
    /// Coins created: genesis allocations plus every subsidy.
    pub minted: u64,
    /// Coins destroyed: the burned share of fees and job payments, and slashed bonds.
    pub burned: u64,
    /// Providers, jobs, leases, escrow and bonds.
    pub market: Market,
}

const LEDGER_SNAPSHOT_VERSION: u8 = 1;

/// Everything a block changed, so it can be undone exactly.
#[derive(Clone, Debug, Default)]
pub struct Undo {
    accounts: Vec<(Address, Option<Account>)>,
    /// Addresses already saved in `accounts` (a block touches each once, whatever its size).
    touched: HashSet<Address>,
    minted: u64,
    burned: u64,
    /// The market as it was before the block. (A snapshot: simple and exact; per-entry undo is
    /// the upgrade when markets grow past devnet size.)
    market: Option<Market>,
}

impl Ledger {
    pub fn genesis(allocations: &[(Address, u64)]) -> Self {
        let mut l = Ledger::default();
        for &(a, v) in allocations {
            l.accounts.entry(a).or_default().balance += v;
            l.minted += v;
        }
        l
    }

    pub fn account(&self, a: &Address) -> Account {
        self.accounts.get(a).cloned().unwrap_or_default()
    }

    pub fn accounts(&self) -> impl Iterator<Item = (&Address, &Account)> {
        self.accounts.iter()
    }

    /// Balances, stake and unbonding over all accounts, plus the market's escrow and bonds:
    /// must equal minted − burned.
    pub fn circulating(&self) -> u128 {
        let accounts: u128 = self
            .accounts
            .values()
            .map(|a| a.balance as u128 + a.stake as u128 + a.unbonding.iter().map(|u| u.1 as u128).sum::<u128>())
            .sum();
        accounts + self.market.held()
    }

    /// Commitment to the whole state: every non-empty account in address order, then the
    /// supply counters. (Linear in the number of accounts; a Merkle tree replaces it when light
    /// clients need proofs of single accounts.)
    pub fn root(&self) -> Hash {
        let mut w = Writer::new();
        for (a, acc) in &self.accounts {
            w.bytes(&a.0).u64(acc.balance).u64(acc.nonce).u64(acc.stake).u32(acc.unbonding.len() as u32);
            for &(h, v) in &acc.unbonding {
                w.u64(h).u64(v);
            }
        }
        w.u64(self.minted).u64(self.burned).bytes(&self.market.root().0);
        Hash::of("ergon v1 state root", &[&w.finish()])
    }

    fn touch(&mut self, undo: &mut Undo, a: Address) -> &mut Account {
        if undo.touched.insert(a) {
            undo.accounts.push((a, self.accounts.get(&a).cloned()));
        }
        self.accounts.entry(a).or_default()
    }

    /// Starts a block: records counters for undo and releases matured unbonding stake.
    pub fn begin_block(&mut self, height: u64) -> Undo {
        let undo =
            Undo { minted: self.minted, burned: self.burned, market: Some(self.market.clone()), ..Undo::default() };
        self.mature(height, undo)
    }

    /// Starts a block on a ledger that will be thrown away, never undone (the mempool's view):
    /// the same as [`begin_block`](Self::begin_block) without the market snapshot.
    pub fn begin_scratch_block(&mut self, height: u64) -> Undo {
        self.mature(height, Undo::default())
    }

    fn mature(&mut self, height: u64, mut undo: Undo) -> Undo {
        let matured: Vec<Address> = self
            .accounts
            .iter()
            .filter(|(_, acc)| acc.unbonding.first().is_some_and(|&(h, _)| h <= height))
            .map(|(a, _)| *a)
            .collect();
        for a in matured {
            let acc = self.touch(&mut undo, a);
            let (ready, later): (Vec<Unbonding>, Vec<Unbonding>) =
                acc.unbonding.iter().partition(|&&(h, _)| h <= height);
            acc.balance += ready.iter().map(|u| u.1).sum::<u64>();
            acc.unbonding = later;
        }
        undo
    }

    /// Applies one transaction (signature already checked by the caller, possibly in a batch).
    /// Returns the fee collected, or why it cannot apply (in which case nothing changed).
    pub fn apply_tx(
        &mut self,
        undo: &mut Undo,
        tx: &SignedTransaction,
        chain: &Hash,
        height: u64,
        params: &ChainParams,
    ) -> Result<u64, TxRejection> {
        let t = &tx.tx;
        if t.chain != *chain {
            return Err(TxRejection::WrongChain);
        }
        let from = t.sender();
        let sender = self.account(&from);
        if t.nonce != sender.nonce {
            return Err(TxRejection::WrongNonce { expected: sender.nonce, got: t.nonce });
        }
        let amount = match &t.kind {
            TxKind::Transfer { amount, .. } | TxKind::Stake { amount } | TxKind::Unstake { amount } => Some(*amount),
            _ => None,
        };
        if amount == Some(0) {
            return Err(TxRejection::ZeroAmount);
        }
        // What leaves the balance besides the fee.
        let locked = match &t.kind {
            TxKind::Transfer { amount, .. } | TxKind::Stake { amount } => *amount,
            TxKind::RegisterProvider { stake, .. } => *stake,
            TxKind::SubmitJob { spec } => {
                spec.max_cost().ok_or(TxRejection::Market(MarketRejection::BudgetOverflow))?
            }
            TxKind::DoubtResult { job, .. } => {
                self.market.doubt_deposit(job).ok_or(TxRejection::Market(MarketRejection::UnknownJob))?
            }
            _ => 0,
        };
        let spend = locked.checked_add(t.fee).ok_or(TxRejection::Overflow)?;
        if sender.balance < spend {
            return Err(TxRejection::InsufficientBalance { needed: spend, available: sender.balance });
        }
        if let TxKind::Unstake { amount } = t.kind {
            if sender.stake < amount {
                return Err(TxRejection::InsufficientStake { requested: amount, staked: sender.stake });
            }
        }
        if matches!(t.kind, TxKind::Judge { .. } | TxKind::JudgeMemory { .. } | TxKind::ProveFraud { .. })
            && sender.stake < params.min_validator_stake
        {
            return Err(TxRejection::NotAValidator { stake: sender.stake, min: params.min_validator_stake });
        }
        if let TxKind::Transfer { to, amount } = t.kind {
            if to != from && self.account(&to).balance.checked_add(amount).is_none() {
                return Err(TxRejection::Overflow);
            }
        }
        // The market validates before it changes anything, so a refusal leaves no trace.
        let market = params.market();
        let effects = match &t.kind {
            TxKind::RegisterProvider { offer, stake } => {
                self.market.register(from, offer.clone(), *stake, height, &market).map(|()| vec![])
            }
            TxKind::Deregister => self.market.deregister(from, height).map(|()| vec![]),
            TxKind::SubmitJob { spec } => {
                self.market.submit(from, tx.id(), spec.clone(), height, &market).map(|_| vec![])
            }
            TxKind::CancelJob { job } => self.market.cancel(from, *job, height),
            TxKind::PostResult { job, shard, result, cpu_ms } => {
                self.market.post_result(from, *job, *shard, *result, *cpu_ms, height, &market).map(|()| vec![])
            }
            TxKind::Dispute { job, shard, replica, evidence } => {
                self.market.dispute(from, (*job, *shard, *replica), evidence, height, &market)
            }
            TxKind::ReleaseLease { job, shard } => self.market.release_lease(from, *job, *shard, height, &market),
            TxKind::ChallengeResult { job, shard, replica, rows } => {
                self.market.challenge_result(from, (*job, *shard, *replica), rows, height, &market).map(|()| vec![])
            }
            TxKind::RevealRows { job, shard, replica, rows } => {
                self.market.reveal_rows(from, (*job, *shard, *replica), rows, height).map(|()| vec![])
            }
            TxKind::Judge { provider, gmacs, reason } => {
                self.market.judge(from, sender.stake, *provider, *gmacs, reason, height)
            }
            TxKind::DoubtResult { job, shard, expected } => self.market.doubt(from, *job, *shard, *expected, height),
            TxKind::JudgeMemory { provider, memory_mib, reason } => {
                self.market.judge_memory(from, sender.stake, *provider, *memory_mib, reason, height)
            }
            TxKind::ProveFraud { round, answer } => match ergon_poai::check_fraud(&t.chain, round, answer) {
                Ok(f) => {
                    let why = format!("round {} part {} of validator {}: {}", f.round, f.part, f.validator, f.why);
                    self.market.punish_fraud(from, f.provider, f.registered_at, &why, height, &market)
                }
                Err(why) => Err(ergon_market::MarketRejection::NotAFraud(why)),
            },
            _ => Ok(vec![]),
        }
        .map_err(TxRejection::Market)?;
        // All checks passed: mutate.
        let acc = self.touch(undo, from);
        acc.nonce += 1;
        acc.balance -= spend;
        match t.kind {
            TxKind::Transfer { to, amount } => self.touch(undo, to).balance += amount,
            TxKind::Stake { amount } => acc.stake += amount,
            TxKind::Unstake { amount } => {
                acc.stake -= amount;
                acc.unbonding.push((height + params.unbonding_blocks, amount));
            }
            _ => {}
        }
        self.apply_effects(undo, &effects, height, params);
        Ok(t.fee)
    }

    /// Carries out the market's coin movements.
    fn apply_effects(&mut self, undo: &mut Undo, effects: &[Effect], height: u64, params: &ChainParams) {
        for e in effects {
            match *e {
                Effect::Pay { to, amount } => {
                    let acc = self.touch(undo, to);
                    acc.balance = acc.balance.saturating_add(amount);
                }
                Effect::Burn { amount } => self.burned += amount,
                Effect::Unbond { to, amount } => {
                    self.touch(undo, to).unbonding.push((height + params.unbonding_blocks, amount));
                }
            }
        }
    }

    /// Ends a block's market work: closes expired leases, settles results, releases bonds and
    /// matches the queue, then applies the resulting payments and burns.
    /// `parent` is the id of the block before this one: the market's only randomness.
    pub fn end_block(&mut self, undo: &mut Undo, parent: &Hash, height: u64, params: &ChainParams) {
        let effects = self.market.end_block_after(parent, height, &params.market());
        self.apply_effects(undo, &effects, height, params);
    }

    /// The subsidy a block of `difficulty` earns: a filler block (`lease` = None) its fixed
    /// share; a job block mined on the lease `lease` (checked by `Market::check_mining`) makes
    /// the market burn the block's share of the lease's payment from the escrow and earns
    /// `job_block_reward_percent` of that burn, at most `block_subsidy`. So a job block never
    /// pays more than its own job destroyed (`docs/economics.md`).
    pub fn block_subsidy(
        &mut self,
        lease: Option<ergon_market::TaskKey>,
        height: u64,
        difficulty: u64,
        params: &ChainParams,
    ) -> u64 {
        let Some(key) = lease else { return filler_subsidy(params) };
        let burned = self.market.license_block(key, height, difficulty, &params.market());
        self.burned += burned;
        job_block_subsidy(burned, params)
    }

    /// Pays the miner `subsidy` (see [`block_subsidy`](Self::block_subsidy)) plus fees
    /// less the burned share. Returns (minted, burned).
    pub fn reward(
        &mut self,
        undo: &mut Undo,
        miner: Address,
        fees: u64,
        subsidy: u64,
        params: &ChainParams,
    ) -> (u64, u64) {
        let burned = (fees as u128 * params.fee_burn_percent as u128 / 100) as u64;
        let acc = self.touch(undo, miner);
        acc.balance = acc.balance.saturating_add(subsidy + (fees - burned));
        self.minted += subsidy;
        self.burned += burned;
        (subsidy, burned)
    }

    /// The ledger as it was before the blocks whose undo records are `undos` (oldest first,
    /// ending at the block this ledger is the state after): what a checkpoint of an earlier,
    /// final height is made from without disturbing the live ledger. None if an undo record
    /// holds no market snapshot (a scratch block's), so the rewind could not be exact.
    pub fn rewound<'a>(&self, undos: impl DoubleEndedIterator<Item = &'a Undo>) -> Option<Ledger> {
        let (mut accounts, mut minted, mut burned) = (self.accounts.clone(), self.minted, self.burned);
        let mut market = &self.market;
        for undo in undos.rev() {
            for (a, before) in undo.accounts.iter().rev() {
                match before {
                    Some(acc) if !acc.is_empty() => {
                        accounts.insert(*a, acc.clone());
                    }
                    _ => {
                        accounts.remove(a);
                    }
                }
            }
            (minted, burned) = (undo.minted, undo.burned);
            market = undo.market.as_ref()?;
        }
        Some(Ledger { accounts, minted, burned, market: market.clone() })
    }

    /// The whole ledger as bytes (accounts, supply counters, the market's snapshot), for a
    /// checkpoint; [`read_snapshot`](Self::read_snapshot) reads it back equal.
    pub fn write_snapshot(&self, w: &mut Writer) {
        w.u8(LEDGER_SNAPSHOT_VERSION).u32(self.accounts.len() as u32);
        for (a, acc) in &self.accounts {
            w.bytes(&a.0).u64(acc.balance).u64(acc.nonce).u64(acc.stake).u32(acc.unbonding.len() as u32);
            for &(h, v) in &acc.unbonding {
                w.u64(h).u64(v);
            }
        }
        w.u64(self.minted).u64(self.burned);
        self.market.write_snapshot(w);
    }

    pub fn read_snapshot(r: &mut Reader<'_>) -> Result<Ledger, TypesError> {
        r.version(LEDGER_SNAPSHOT_VERSION)?;
        let mut accounts = BTreeMap::new();
        for _ in 0..r.count(usize::MAX, 48)? {
            let a = Address(r.array()?);
            let (balance, nonce, stake) = (r.u64()?, r.u64()?, r.u64()?);
            let unbonding =
                (0..r.count(usize::MAX, 16)?).map(|_| Ok((r.u64()?, r.u64()?))).collect::<Result<_, _>>()?;
            accounts.insert(a, Account { balance, nonce, stake, unbonding });
        }
        let (minted, burned) = (r.u64()?, r.u64()?);
        Ok(Ledger { accounts, minted, burned, market: Market::read_snapshot(r)? })
    }

    /// Reverses a block exactly.
    pub fn undo(&mut self, undo: Undo) {
        for (a, before) in undo.accounts.into_iter().rev() {
            match before {
                Some(acc) if !acc.is_empty() => {
                    self.accounts.insert(a, acc);
                }
                _ => {
                    self.accounts.remove(&a);
                }
            }
        }
        self.minted = undo.minted;
        self.burned = undo.burned;
        if let Some(market) = undo.market {
            self.market = market;
        }
    }
}
