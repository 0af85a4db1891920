//! The transaction pool (sans-IO): what may wait for a block, in which order blocks take it,
//! and why anything was refused or dropped.
//!
//! In the manner of Bitcoin Core's pool:
//! - **A transaction is admitted only if it applies** on top of the tip and of every transaction
//!   already admitted (the pool keeps a *view*: the tip's ledger with all of them applied, as
//!   the next block would apply them). So an unfunded transfer, a result for someone else's
//!   lease or a cancel of a finished job is refused with the ledger's own reason, and cannot
//!   block the sender's later nonces.
//! - **Bounded**: at most `max_txs` in all and `max_per_sender` per sender; fees of at least
//!   `min_fee`. When full, a newcomer must pay more than the cheapest *leaf* (a sender's last
//!   transaction, so no admitted transaction loses its parent): the cheapest tenth of the
//!   leaves is evicted in one go and the pool's floor rises above their fees (a rolling
//!   minimum fee, back to `min_fee` once the pool is half empty). Eviction rebuilds the view,
//!   so it is batched: a flood of N admissions costs at most N/(max_txs/10) rebuilds.
//! - **Cheap checks first**: chain, duplicate, fee, per-sender count, nonce and the fee against
//!   the view's balance come before the signature (the expensive part), so junk from empty
//!   accounts costs microseconds.
//! - **Blocks take the best first**: each sender's transactions in nonce order, senders by the
//!   fee of their next transaction (highest first, then arrival).
//! - **Dropped with a reason**: after each new tip the view is rebuilt and what no longer
//!   applies leaves the pool; the last `max_dropped` reasons can be looked up by id.
//!
//! Attacks and their cost: filling the pool needs `max_txs` transactions that really apply,
//! each paying a fee at the floor or above, and each mined block removes them while paying
//! their fees to the miner; keeping the pool full for B blocks costs about B × (block's share
//! of the pool) × floor. One sender can hold at most `max_per_sender` slots, so an honest
//! sender's transaction is refused only when the whole pool is full of higher fees.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;

use ergon_types::{Address, Hash, SignedTransaction};

use crate::state::{Ledger, TxRejection};
use crate::Chain;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MempoolLimits {
    pub max_txs: usize,
    pub max_per_sender: usize,
    pub min_fee: u64,
    /// Reasons for dropped transactions kept for lookup.
    pub max_dropped: usize,
}

impl Default for MempoolLimits {
    fn default() -> Self {
        Self { max_txs: 20_000, max_per_sender: 64, min_fee: 1, max_dropped: 10_000 }
    }
}

/// Why a transaction was not admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// It cannot apply on top of the tip and the sender's pending transactions.
    Invalid(TxRejection),
    FeeTooLow {
        fee: u64,
        floor: u64,
    },
    TooManyFromSender {
        max: usize,
    },
    /// Full of transactions paying at least as much.
    Full {
        floor: u64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Invalid(why) => write!(f, "{why}"),
            Refusal::FeeTooLow { fee, floor } => {
                write!(f, "fee {fee} is below the pool's current minimum of {floor}")
            }
            Refusal::TooManyFromSender { max } => {
                write!(f, "the sender already has {max} transactions waiting; wait for a block")
            }
            Refusal::Full { floor } => {
                write!(f, "the pool is full of transactions paying at least {floor}; pay more or retry later")
            }
        }
    }
}

/// Where a transaction stands in this pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxStatus {
    Pending,
    Dropped(String),
    Unknown,
}

struct Entry {
    tx: SignedTransaction,
    id: Hash,
    fee: u64,
    seq: u64,
}

/// The tip's ledger with every pooled transaction applied, as of `tip`.
struct View {
    tip: Hash,
    ledger: Ledger,
}

pub struct Mempool {
    limits: MempoolLimits,
    /// Each sender's transactions, in nonce order.
    senders: HashMap<Address, VecDeque<Entry>>,
    ids: HashMap<Hash, Address>,
    /// (fee, seq) of each sender's last transaction: what may be evicted, cheapest first.
    leaves: BTreeSet<(u64, u64, Address)>,
    len: usize,
    next_seq: u64,
    floor: u64,
    view: Option<View>,
    dropped: HashMap<Hash, String>,
    dropped_order: VecDeque<Hash>,
}

impl Default for Mempool {
    fn default() -> Self {
        Self::new(MempoolLimits::default())
    }
}

impl Mempool {
    pub fn new(limits: MempoolLimits) -> Self {
        assert!(limits.max_txs >= 10 && limits.max_per_sender >= 1);
        Mempool {
            limits,
            senders: HashMap::new(),
            ids: HashMap::new(),
            leaves: BTreeSet::new(),
            len: 0,
            next_seq: 0,
            floor: limits.min_fee,
            view: None,
            dropped: HashMap::new(),
            dropped_order: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The lowest fee a transaction must pay to be considered now.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    pub fn pending_from(&self, from: &Address) -> usize {
        self.senders.get(from).map_or(0, |q| q.len())
    }

    /// The nonce `from`'s next transaction must carry: its account's, past those waiting here.
    pub fn next_nonce(&self, chain: &Chain, from: &Address) -> u64 {
        chain.ledger().account(from).nonce + self.pending_from(from) as u64
    }

    pub fn status(&self, id: &Hash) -> TxStatus {
        if self.ids.contains_key(id) {
            TxStatus::Pending
        } else if let Some(why) = self.dropped.get(id) {
            TxStatus::Dropped(why.clone())
        } else {
            TxStatus::Unknown
        }
    }

    /// Admits `tx` if it applies on top of the tip and everything pooled. Returns its id.
    pub fn admit(&mut self, chain: &Chain, tx: SignedTransaction) -> Result<Hash, Refusal> {
        if tx.tx.chain != chain.chain_id() {
            return Err(Refusal::Invalid(TxRejection::WrongChain));
        }
        let id = tx.id();
        if self.ids.contains_key(&id) {
            return Ok(id);
        }
        let (fee, from) = (tx.tx.fee, tx.tx.sender());
        if fee < self.floor {
            return Err(Refusal::FeeTooLow { fee, floor: self.floor });
        }
        if self.pending_from(&from) >= self.limits.max_per_sender {
            return Err(Refusal::TooManyFromSender { max: self.limits.max_per_sender });
        }
        self.refresh(chain);
        let view = &self.view.as_ref().expect("refreshed").ledger;
        let account = view.account(&from);
        if tx.tx.nonce != account.nonce {
            let (expected, got) = (account.nonce, tx.tx.nonce);
            return Err(Refusal::Invalid(TxRejection::WrongNonce { expected, got }));
        }
        if account.balance < fee {
            return Err(Refusal::Invalid(TxRejection::InsufficientBalance { needed: fee, available: account.balance }));
        }
        if self.len >= self.limits.max_txs {
            let cheapest = self.leaves.first().map_or(u64::MAX, |l| l.0);
            if fee <= cheapest {
                return Err(Refusal::Full { floor: cheapest.saturating_add(1) });
            }
        }
        if tx.verify().is_err() {
            return Err(Refusal::Invalid(TxRejection::BadSignature));
        }
        if self.len >= self.limits.max_txs {
            self.evict(chain);
        }
        let view = &mut self.view.as_mut().expect("refreshed").ledger;
        let mut scratch = crate::state::Undo::default();
        view.apply_tx(&mut scratch, &tx, &chain.chain_id(), chain.height() + 1, chain.params())
            .map_err(Refusal::Invalid)?;
        self.push(from, Entry { tx, id, fee, seq: 0 });
        Ok(id)
    }

    /// Transactions for the next block, best first: per sender in nonce order, senders by the
    /// fee of their next transaction (then arrival), at most `max` of them.
    pub fn best(&self, max: usize) -> Vec<SignedTransaction> {
        let mut heads: BTreeSet<(std::cmp::Reverse<u64>, u64, Address, usize)> = self
            .senders
            .iter()
            .filter_map(|(a, q)| q.front().map(|e| (std::cmp::Reverse(e.fee), e.seq, *a, 0)))
            .collect();
        let mut out = Vec::with_capacity(max.min(self.len));
        while let Some((_, _, a, i)) = heads.pop_first() {
            if out.len() == max {
                break;
            }
            let q = &self.senders[&a];
            out.push(q[i].tx.clone());
            if let Some(e) = q.get(i + 1) {
                heads.insert((std::cmp::Reverse(e.fee), e.seq, a, i + 1));
            }
        }
        out
    }

    /// Brings the view to the chain's tip: rebuilt from the tip's ledger with every pooled
    /// transaction applied in arrival order; what no longer applies (mined, or now invalid)
    /// leaves the pool, the invalid with its reason.
    pub fn refresh(&mut self, chain: &Chain) {
        if self.view.as_ref().is_some_and(|v| v.tip == chain.tip()) {
            return;
        }
        let mut ledger = chain.ledger().clone();
        let height = chain.height() + 1;
        let mut scratch = ledger.begin_scratch_block(height);
        let mut all: Vec<Entry> = self.senders.drain().flat_map(|(_, q)| q).collect();
        all.sort_by_key(|e| e.seq);
        self.ids.clear();
        self.leaves.clear();
        self.len = 0;
        for e in all {
            let from = e.tx.tx.sender();
            if e.tx.tx.nonce < ledger.account(&from).nonce {
                continue; // mined (or replaced by one that was)
            }
            match ledger.apply_tx(&mut scratch, &e.tx, &chain.chain_id(), height, chain.params()) {
                Ok(_) => self.push(from, e),
                Err(why) => self.drop_with(e.id, format!("dropped from the pool: no longer applies ({why})")),
            }
        }
        if self.len <= self.limits.max_txs / 2 {
            self.floor = self.limits.min_fee;
        }
        self.view = Some(View { tip: chain.tip(), ledger });
    }

    /// Evicts the cheapest tenth of the leaves (each sender's last transaction, repeatedly) and
    /// raises the floor above them, then rebuilds the view without them.
    fn evict(&mut self, chain: &Chain) {
        let batch = (self.limits.max_txs / 10).max(1);
        for _ in 0..batch {
            let Some((fee, _, a)) = self.leaves.pop_first() else { break };
            let q = self.senders.get_mut(&a).expect("leaves are senders' last entries");
            let e = q.pop_back().expect("a sender in leaves has an entry");
            if let Some(prev) = q.back() {
                self.leaves.insert((prev.fee, prev.seq, a));
            } else {
                self.senders.remove(&a);
            }
            self.ids.remove(&e.id);
            self.len -= 1;
            self.floor = self.floor.max(fee.saturating_add(1));
            self.drop_with(e.id, format!("evicted from a full pool by higher fees (it paid {fee})"));
        }
        self.view = None;
        self.refresh(chain);
    }

    fn push(&mut self, from: Address, mut e: Entry) {
        e.seq = self.next_seq;
        self.next_seq += 1;
        let q = self.senders.entry(from).or_default();
        if let Some(prev) = q.back() {
            self.leaves.remove(&(prev.fee, prev.seq, from));
        }
        self.leaves.insert((e.fee, e.seq, from));
        self.ids.insert(e.id, from);
        q.push_back(e);
        self.len += 1;
    }

    fn drop_with(&mut self, id: Hash, why: String) {
        if self.dropped.insert(id, why).is_none() {
            self.dropped_order.push_back(id);
        }
        while self.dropped_order.len() > self.limits.max_dropped {
            if let Some(old) = self.dropped_order.pop_front() {
                self.dropped.remove(&old);
            }
        }
    }
}
