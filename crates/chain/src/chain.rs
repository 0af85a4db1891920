//! The block tree and the active chain: block validity, fork choice by cumulative expected work,
//! and reorganisations that restore the winning branch's exact state.
//!
//! Sans-IO: the caller hands in blocks and the current time and gets decisions back. Nothing
//! here reads a clock, a socket or a disk.

use std::collections::HashMap;
use std::fmt;

use ergon_kernels::MatI8;
use ergon_types::block::{proof_hash, tx_root, MAX_TXS, MAX_TX_BYTES};
use ergon_types::{Address, Block, BlockHeader, Canonical, Hash, SignedTransaction};
use rayon::prelude::*;

use crate::asert::{next_difficulty, Anchor};
use crate::filler::{filler_commitment, filler_matrices};
use crate::params::{ChainParams, Genesis};
use crate::state::{Ledger, TxRejection, Undo};
use crate::ChainError;

/// Blocks whose median time the next block must exceed.
pub(crate) const MEDIAN_TIME_SPAN: usize = 11;

/// The median of the last `MEDIAN_TIME_SPAN` block times (at least one): a child must be later.
pub(crate) fn median_time(times: &[u64]) -> u64 {
    let mut recent = times[times.len().saturating_sub(MEDIAN_TIME_SPAN)..].to_vec();
    recent.sort_unstable();
    recent[recent.len() / 2]
}
/// Side-branch blocks kept at any one height (siblings of an active block and of each other).
pub const MAX_SIDE_BLOCKS_PER_HEIGHT: usize = 4;
/// Bytes of side-branch blocks kept in all (they are dropped once below the reorg depth).
pub const MAX_SIDE_BRANCH_BYTES: usize = 256 << 20;
/// A side-branch block must carry at least this fraction (1/n) of the difficulty the tip's
/// next block needs. An honest branch tracks its own miners' share of the work, so it stays
/// above this unless it had under 1/16 of the network; a branch forked from an old block and
/// stamped with the current time looks far behind schedule to ASERT and drops toward the
/// minimum difficulty: those cheap blocks are refused instead of stored and validated.
pub const SIDE_DIFFICULTY_DIVISOR: u64 = 16;

/// Why a block was refused, in words a node operator can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockRejection {
    UnknownParent(Hash),
    WrongHeight {
        expected: u64,
        got: u64,
    },
    TooEarly {
        median_past_ms: u64,
        got: u64,
    },
    TooFarInFuture {
        now_ms: u64,
        got: u64,
    },
    WrongDifficulty {
        expected: u64,
        got: u64,
    },
    /// Mined on a job the miner may not mine on, with the market's reason.
    NotLeased(String),
    WrongFillerMatrices,
    Malformed(String),
    BadSignature {
        index: usize,
    },
    BadTransaction {
        index: usize,
        reason: TxRejection,
    },
    StateRootMismatch,
    KnownInvalid,
    /// Forks from further below the tip than any reorganisation may reach.
    ForkTooDeep {
        fork_height: u64,
        tip_height: u64,
        max_depth: u64,
    },
    /// The side-branch store is at its bound (per height or in bytes).
    SideBranchFull(String),
    /// A side-branch block far cheaper than a block on the tip.
    SideBranchTooCheap {
        difficulty: u64,
        floor: u64,
    },
}

impl BlockRejection {
    /// Whether this refusal shows the block's sender to be faulty (a node bans it), or only
    /// that this node keeps its own limits or another view of time: an honest peer on another
    /// branch (after a partition, or on a chain restarted from an old genesis, whose blocks
    /// ASERT makes cheap) sends blocks refused as too cheap, too deep or over the side-branch
    /// bounds, and banning it split the network for good.
    pub fn blames_sender(&self) -> bool {
        !matches!(
            self,
            BlockRejection::TooFarInFuture { .. }
                | BlockRejection::SideBranchFull(_)
                | BlockRejection::SideBranchTooCheap { .. }
                | BlockRejection::ForkTooDeep { .. }
        )
    }
}

impl fmt::Display for BlockRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownParent(p) => write!(f, "parent {p:?} is unknown (sync it first)"),
            Self::WrongHeight { expected, got } => write!(f, "height {got} but the parent implies {expected}"),
            Self::TooEarly { median_past_ms, got } => {
                write!(f, "time {got} is not after the median {median_past_ms} of the last {MEDIAN_TIME_SPAN} blocks")
            }
            Self::TooFarInFuture { now_ms, got } => {
                write!(f, "time {got} is too far ahead of this node's clock {now_ms}")
            }
            Self::WrongDifficulty { expected, got } => write!(f, "difficulty {got} but ASERT requires {expected}"),
            Self::NotLeased(why) => write!(f, "{why}"),
            Self::WrongFillerMatrices => write!(f, "filler block not mined on the filler matrices of its parent"),
            Self::Malformed(why) => write!(f, "{why}"),
            Self::BadSignature { index } => write!(f, "transaction {index} has a bad signature"),
            Self::BadTransaction { index, reason } => write!(f, "transaction {index} cannot apply: {reason}"),
            Self::StateRootMismatch => write!(f, "state root does not match the state its transactions produce"),
            Self::KnownInvalid => write!(f, "block or an ancestor was already found invalid"),
            Self::ForkTooDeep { fork_height, tip_height, max_depth } => write!(
                f,
                "forks at height {fork_height}, {} blocks below the tip {tip_height}: deeper than the {max_depth} a reorganisation may reach",
                tip_height - fork_height
            ),
            Self::SideBranchFull(why) => write!(f, "side branch not kept: {why}"),
            Self::SideBranchTooCheap { difficulty, floor } => write!(
                f,
                "side-branch block of difficulty {difficulty} is below 1/{SIDE_DIFFICULTY_DIVISOR} of the tip's ({floor} needed)"
            ),
        }
    }
}

/// What importing a valid block did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Imported {
    AlreadyKnown,
    /// Extended the active chain.
    Extended {
        height: u64,
    },
    /// Stored on a side branch with less work than the active chain.
    SideBranch {
        height: u64,
    },
    /// Became the tip of a heavier branch: `undone` blocks were rolled back, `applied` applied.
    Reorganized {
        undone: usize,
        applied: usize,
        height: u64,
    },
}

struct Node {
    header: BlockHeader,
    /// None only for genesis.
    block: Option<Block>,
    /// Σ difficulty from genesis: expected multiply-adds behind this block.
    work: u128,
    /// The part of `work` mined on paid jobs (job blocks), so the useful-work fraction of any
    /// branch is one division, not a walk of the chain.
    useful: u128,
    invalid: bool,
}

impl Node {
    /// (work, useful work) of a child of this block with `header`.
    fn cumulative(&self, header: &BlockHeader) -> (u128, u128) {
        let d = header.difficulty as u128;
        (self.work + d, self.useful + if header.job == Hash::ZERO { 0 } else { d })
    }
}

/// The chain state machine.
pub struct Chain {
    genesis: Genesis,
    chain_id: Hash,
    nodes: HashMap<Hash, Node>,
    /// Active chain, by height.
    active: Vec<Hash>,
    /// Undo records of active blocks (index = height; genesis has none). Only the last
    /// `max_reorg_depth` are kept: no reorganisation reaches below them.
    undos: Vec<Option<Undo>>,
    ledger: Ledger,
    /// Valid blocks off the active chain that still hold their bodies, with their sizes: what a
    /// reorganisation could switch to. Dropped once below the reorg depth.
    side: std::collections::BTreeMap<(u64, Hash), usize>,
    side_bytes: usize,
    /// Undo records at or below this height are gone: no fork may start below it (the tip can
    /// move down after a reorganisation onto a shorter, heavier branch).
    undo_floor: u64,
}

impl Chain {
    pub fn new(genesis: Genesis) -> Result<Self, ChainError> {
        genesis.params.check()?;
        let ledger = Ledger::genesis(&genesis.allocations()?);
        let chain_id = genesis.hash();
        let header = BlockHeader {
            parent: Hash::ZERO,
            height: 0,
            time_ms: genesis.time_ms,
            state_root: ledger.root(),
            tx_root: tx_root(&[]),
            job: Hash::ZERO,
            work: filler_commitment(&chain_id, 24),
            miner: Address::default(),
            difficulty: genesis.params.initial_difficulty,
            nonce: 0,
            proof_hash: Hash::ZERO,
        };
        let mut nodes = HashMap::new();
        nodes.insert(chain_id, Node { header, block: None, work: 0, useful: 0, invalid: false });
        Ok(Self {
            genesis,
            chain_id,
            nodes,
            active: vec![chain_id],
            undos: vec![None],
            ledger,
            side: Default::default(),
            side_bytes: 0,
            undo_floor: 0,
        })
    }

    /// A chain resumed from a checkpoint instead of replayed from genesis: `ancestry` is the
    /// active chain from height 1 up to the checkpoint (blocks this node validated when it
    /// accepted them and kept in its own store, so their proofs and transactions are not judged
    /// again), `ledger` the state after the last of them. The links between the blocks and the
    /// ledger's state root are checked; a reorganisation can reach no lower than the checkpoint,
    /// which is why a checkpoint is only ever taken `max_reorg_depth` below the tip.
    pub fn resume(genesis: Genesis, ancestry: Vec<Block>, ledger: Ledger) -> Result<Self, ChainError> {
        let mut chain = Chain::new(genesis)?;
        let bad = |why: String| Err(ChainError::Checkpoint(why));
        for block in ancestry {
            let (id, parent) = (block.header.id(), &chain.nodes[&chain.tip()]);
            if block.header.parent != chain.tip() || block.header.height != parent.header.height + 1 {
                return bad(format!("block {} at height {} does not extend the one before", id, block.header.height));
            }
            let (work, useful) = parent.cumulative(&block.header);
            let header = block.header.clone();
            chain.nodes.insert(id, Node { header, block: Some(block), work, useful, invalid: false });
            chain.active.push(id);
            chain.undos.push(None);
        }
        if ledger.root() != chain.tip_header().state_root {
            return bad(format!(
                "the state does not match the state root of block {} (height {})",
                chain.tip(),
                chain.height()
            ));
        }
        chain.ledger = ledger;
        chain.undo_floor = chain.height();
        Ok(chain)
    }

    /// The ledger after active block `height`, if the undo records above it are still kept
    /// (at most `max_reorg_depth` below the tip): what a checkpoint stores.
    pub fn ledger_at(&self, height: u64) -> Option<Ledger> {
        let undos = self.undos.get(height as usize + 1..)?;
        let undos: Vec<&Undo> = undos.iter().map(Option::as_ref).collect::<Option<_>>()?;
        self.ledger.rewound(undos.into_iter())
    }

    /// The genesis hash: the network's identity and the id of block 0.
    pub fn chain_id(&self) -> Hash {
        self.chain_id
    }
    pub fn params(&self) -> &ChainParams {
        &self.genesis.params
    }
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
    pub fn tip(&self) -> Hash {
        *self.active.last().expect("genesis is always active")
    }
    pub fn height(&self) -> u64 {
        self.active.len() as u64 - 1
    }
    pub fn tip_header(&self) -> &BlockHeader {
        &self.nodes[&self.tip()].header
    }
    /// Total expected multiply-adds behind the tip.
    pub fn tip_work(&self) -> u128 {
        self.nodes[&self.tip()].work
    }
    /// Of [`tip_work`](Self::tip_work), the part mined on paid jobs (job blocks).
    pub fn tip_useful_work(&self) -> u128 {
        self.nodes[&self.tip()].useful
    }
    pub fn block(&self, id: &Hash) -> Option<&Block> {
        self.nodes.get(id).and_then(|n| n.block.as_ref())
    }
    pub fn active_id(&self, height: u64) -> Option<Hash> {
        self.active.get(height as usize).copied()
    }
    pub fn knows(&self, id: &Hash) -> bool {
        self.nodes.contains_key(id)
    }

    /// The least difficulty a block off the tip (a side-branch block, an orphan) must carry to
    /// be kept: 1/`SIDE_DIFFICULTY_DIVISOR` of what the tip's next block needs.
    pub fn side_difficulty_floor(&self) -> u64 {
        self.expected_difficulty(self.tip_header()) / SIDE_DIFFICULTY_DIVISOR
    }

    /// Difficulty a child of `parent` must carry.
    pub fn expected_difficulty(&self, parent: &BlockHeader) -> u64 {
        let anchor =
            Anchor { difficulty: self.genesis.params.initial_difficulty, time_ms: self.genesis.time_ms, height: 0 };
        next_difficulty(anchor, parent.time_ms, parent.height, &self.genesis.params)
    }

    /// Median time of the last blocks ending at `id`; a child must be strictly later.
    fn median_time_past(&self, id: Hash) -> u64 {
        median_time(&self.times_ending_at(&id))
    }

    /// Times of the last `MEDIAN_TIME_SPAN` blocks ending at `id` (a known block), oldest first.
    pub(crate) fn times_ending_at(&self, id: &Hash) -> Vec<u64> {
        let (mut times, mut id) = (Vec::with_capacity(MEDIAN_TIME_SPAN), *id);
        while times.len() < MEDIAN_TIME_SPAN {
            let Some(n) = self.nodes.get(&id) else { break };
            times.push(n.header.time_ms);
            if n.header.height == 0 {
                break;
            }
            id = n.header.parent;
        }
        times.reverse();
        times
    }

    /// A known, valid block's header and the cumulative work behind it.
    pub(crate) fn header_and_work(&self, id: &Hash) -> Option<(&BlockHeader, u128)> {
        self.nodes.get(id).filter(|n| !n.invalid).map(|n| (&n.header, n.work))
    }

    /// Everything about a block's header that needs the block tree but not its parent's state.
    fn check_header(&self, block: &Block, now_ms: u64) -> Result<(), BlockRejection> {
        let h = &block.header;
        let parent = match self.nodes.get(&h.parent) {
            Some(p) if p.invalid => return Err(BlockRejection::KnownInvalid),
            Some(p) => &p.header,
            None => return Err(BlockRejection::UnknownParent(h.parent)),
        };
        if h.height != parent.height + 1 {
            return Err(BlockRejection::WrongHeight { expected: parent.height + 1, got: h.height });
        }
        let mtp = self.median_time_past(h.parent);
        if h.time_ms <= mtp {
            return Err(BlockRejection::TooEarly { median_past_ms: mtp, got: h.time_ms });
        }
        if h.time_ms > now_ms.saturating_add(self.params().max_future_ms) {
            return Err(BlockRejection::TooFarInFuture { now_ms, got: h.time_ms });
        }
        let expected = self.expected_difficulty(parent);
        if h.difficulty != expected {
            return Err(BlockRejection::WrongDifficulty { expected, got: h.difficulty });
        }
        // A job block's lease is checked against its parent's state, in `apply`.
        if h.job == Hash::ZERO && h.work != filler_commitment(&h.parent, self.params().filler_size as usize) {
            return Err(BlockRejection::WrongFillerMatrices);
        }
        Ok(())
    }

    /// Applies a block (already checked) to the ledger, which must be at its parent's state.
    fn apply(&mut self, block: &Block) -> Result<Undo, BlockRejection> {
        let h = &block.header;
        let params = self.genesis.params.clone();
        let lease = match h.job {
            Hash::ZERO => None,
            job => match self.ledger.market.check_mining(&h.miner, &job, &h.work, h.difficulty) {
                Ok(key) => Some(key),
                Err(why) => return Err(BlockRejection::NotLeased(why)),
            },
        };
        let mut undo = self.ledger.begin_block(h.height);
        let subsidy = self.ledger.block_subsidy(lease, h.height, h.difficulty, &params);
        let mut fees: u64 = 0;
        for (index, tx) in block.txs.iter().enumerate() {
            match self.ledger.apply_tx(&mut undo, tx, &self.chain_id, h.height, &params) {
                Ok(fee) => fees = fees.saturating_add(fee),
                Err(reason) => {
                    self.ledger.undo(undo);
                    return Err(BlockRejection::BadTransaction { index, reason });
                }
            }
        }
        self.ledger.end_block(&mut undo, &h.parent, h.height, &params);
        self.ledger.reward(&mut undo, h.miner, fees, subsidy, &params);
        if self.ledger.root() != h.state_root {
            self.ledger.undo(undo);
            return Err(BlockRejection::StateRootMismatch);
        }
        Ok(undo)
    }

    /// Imports a block received at `now_ms`.
    pub fn import(&mut self, block: Block, now_ms: u64) -> Result<Imported, BlockRejection> {
        match self.nodes.get(&block.header.id()) {
            Some(n) if n.invalid => return Err(BlockRejection::KnownInvalid),
            Some(_) => return Ok(Imported::AlreadyKnown),
            None => {}
        }
        // The cheap header checks first, for the most readable reason (they run again, cheaply,
        // in `import_checked`).
        self.check_header(&block, now_ms)?;
        self.import_checked(CheckedBlock::check(block)?, now_ms)
    }

    /// Imports a block whose context-free checks passed ([`CheckedBlock::check`], which a node
    /// runs without holding its chain).
    pub fn import_checked(&mut self, block: CheckedBlock, now_ms: u64) -> Result<Imported, BlockRejection> {
        let block = block.0;
        let id = block.header.id();
        match self.nodes.get(&id) {
            Some(n) if n.invalid => return Err(BlockRejection::KnownInvalid),
            Some(_) => return Ok(Imported::AlreadyKnown),
            None => {}
        }
        self.check_header(&block, now_ms)?;
        let height = block.header.height;
        let (work, useful) = self.nodes[&block.header.parent].cumulative(&block.header);
        let extends_tip = block.header.parent == self.tip();
        let size = if extends_tip { 0 } else { self.check_side_room(&block)? };
        self.nodes.insert(id, Node { header: block.header.clone(), block: Some(block), work, useful, invalid: false });

        let outcome = if extends_tip {
            let block = self.nodes[&id].block.clone().expect("just inserted");
            match self.apply(&block) {
                Ok(undo) => {
                    self.active.push(id);
                    self.undos.push(Some(undo));
                    Ok(Imported::Extended { height })
                }
                Err(e) => {
                    self.mark_invalid(id);
                    Err(e)
                }
            }
        } else {
            // Every kept block is fully valid: a side block is applied on its branch (its lease
            // and state root judged as of its own parent) and the tip restored unless it wins.
            let switch = work > self.tip_work();
            let outcome = self.switch_or_try(id, switch);
            if matches!(outcome, Ok(Imported::SideBranch { .. })) {
                self.side.insert((height, id), size);
                self.side_bytes += size;
            }
            outcome
        };
        self.forget_below_reorg_depth();
        outcome
    }

    /// Where a block off the tip forks from the active chain, if a reorganisation could reach
    /// it, and whether the side-branch store has room for it; returns its size.
    fn check_side_room(&self, block: &Block) -> Result<usize, BlockRejection> {
        let (tip_height, max_depth) = (self.height(), self.params().max_reorg_depth);
        let mut cursor = block.header.parent;
        loop {
            let h = self.nodes[&cursor].header.height;
            if tip_height.saturating_sub(h) > max_depth || h < self.undo_floor {
                return Err(BlockRejection::ForkTooDeep { fork_height: h, tip_height, max_depth });
            }
            if self.active.get(h as usize) == Some(&cursor) {
                break;
            }
            cursor = self.nodes[&cursor].header.parent;
        }
        let floor = self.side_difficulty_floor();
        if block.header.difficulty < floor {
            return Err(BlockRejection::SideBranchTooCheap { difficulty: block.header.difficulty, floor });
        }
        let height = block.header.height;
        let siblings = self.side.range((height, Hash::ZERO)..=(height, Hash([0xff; 32]))).count();
        if siblings >= MAX_SIDE_BLOCKS_PER_HEIGHT {
            return Err(BlockRejection::SideBranchFull(format!(
                "{siblings} side-branch blocks already kept at height {height}"
            )));
        }
        let size = block.encode().len();
        if self.side_bytes + size > MAX_SIDE_BRANCH_BYTES {
            return Err(BlockRejection::SideBranchFull(format!(
                "{} bytes of side branches already kept (bound {MAX_SIDE_BRANCH_BYTES})",
                self.side_bytes
            )));
        }
        Ok(size)
    }

    /// Drops what no reorganisation can reach any more: undo records and side-branch bodies
    /// more than `max_reorg_depth` below the tip.
    fn forget_below_reorg_depth(&mut self) {
        let Some(floor) = self.height().checked_sub(self.params().max_reorg_depth) else { return };
        self.undo_floor = self.undo_floor.max(floor);
        for undo in self.undos.iter_mut().take(floor as usize + 1).rev() {
            if undo.take().is_none() {
                break; // everything lower went before
            }
        }
        while let Some((&(h, id), _)) = self.side.first_key_value() {
            if h > floor {
                break;
            }
            let size = self.side.remove(&(h, id)).unwrap_or(0);
            self.side_bytes -= size;
            if let Some(n) = self.nodes.get_mut(&id) {
                n.block = None;
            }
        }
    }

    fn mark_invalid(&mut self, id: Hash) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.invalid = true;
            n.block = None;
        }
        if let Some(size) = self.side.remove(&(self.nodes.get(&id).map_or(0, |n| n.header.height), id)) {
            self.side_bytes -= size;
        }
    }

    /// Applies the branch ending at `new_tip`. If `switch`, it becomes the active chain (the
    /// old one's blocks become side blocks); if not, or if a block on it turns out invalid
    /// (that block and its descendants on the branch are then marked invalid and the error
    /// returned), the old chain is restored.
    fn switch_or_try(&mut self, new_tip: Hash, switch: bool) -> Result<Imported, BlockRejection> {
        // The new branch back to the first block on the active chain.
        let mut branch = vec![];
        let mut cursor = new_tip;
        while self.active.get(self.nodes[&cursor].header.height as usize) != Some(&cursor) {
            branch.push(cursor);
            cursor = self.nodes[&cursor].header.parent;
        }
        branch.reverse();
        let fork_height = self.nodes[&cursor].header.height as usize;
        let undone = self.rollback_to(fork_height);
        let mut failure = None;
        for (i, id) in branch.iter().enumerate() {
            let block = self.nodes[id].block.clone().expect("side-branch blocks keep their bodies");
            match self.apply(&block) {
                Ok(undo) => {
                    self.active.push(*id);
                    self.undos.push(Some(undo));
                }
                Err(e) => {
                    for bad in &branch[i..] {
                        self.mark_invalid(*bad);
                    }
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() && switch {
            for id in &branch {
                let h = self.nodes[id].header.height;
                if let Some(size) = self.side.remove(&(h, *id)) {
                    self.side_bytes -= size;
                }
            }
            for id in &undone {
                let n = &self.nodes[id];
                let size = n.block.as_ref().map_or(0, |b| b.encode().len());
                self.side.insert((n.header.height, *id), size);
                self.side_bytes += size;
            }
            return Ok(Imported::Reorganized { undone: undone.len(), applied: branch.len(), height: self.height() });
        }
        // Back to the old branch, block by block.
        self.rollback_to(fork_height);
        for id in &undone {
            let block = self.nodes[id].block.clone().expect("active blocks keep their bodies");
            let undo = self.apply(&block).expect("the old branch applied before");
            self.active.push(*id);
            self.undos.push(Some(undo));
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(Imported::SideBranch { height: self.nodes[&new_tip].header.height }),
        }
    }

    /// Undoes active blocks above `height`; returns their ids, lowest first.
    fn rollback_to(&mut self, height: usize) -> Vec<Hash> {
        let mut undone = Vec::new();
        while self.active.len() > height + 1 {
            let id = self.active.pop().expect("above genesis");
            let undo = self.undos.pop().flatten().expect("active blocks have undo records");
            self.ledger.undo(undo);
            undone.push(id);
        }
        undone.reverse();
        undone
    }

    /// The next block on the tip for `miner`: the transactions that apply (the rest come back
    /// with their reasons) and the filler matrices to mine on. Nonce and proof hash are left
    /// for [`seal`].
    pub fn template(&mut self, miner: Address, candidates: Vec<SignedTransaction>, now_ms: u64) -> Template {
        self.build_template(miner, Candidates::Unchecked(candidates), now_ms, None)
            .expect("filler templates need no lease")
    }

    /// [`template`](Self::template) from candidates whose signatures were already verified (a
    /// [`Mempool`](crate::Mempool)'s: it verifies each on admission), so a node does not verify
    /// thousands of signatures again while holding its chain. A candidate that was not in fact
    /// verified costs only the block: every importer, this node included, checks signatures.
    pub fn template_verified(&mut self, miner: Address, candidates: Vec<SignedTransaction>, now_ms: u64) -> Template {
        self.build_template(miner, Candidates::Verified(candidates), now_ms, None)
            .expect("filler templates need no lease")
    }

    /// Like [`template`](Self::template), but mining on a leased job shard's matrices: refused,
    /// with the market's reason, unless `miner` holds an open lease on the shard they form.
    pub fn template_on_job(
        &mut self,
        miner: Address,
        candidates: Vec<SignedTransaction>,
        now_ms: u64,
        work: JobWork,
    ) -> Result<Template, BlockRejection> {
        self.build_template(miner, Candidates::Unchecked(candidates), now_ms, Some(work))
    }

    /// [`template_on_job`](Self::template_on_job) from verified candidates, as
    /// [`template_verified`](Self::template_verified).
    pub fn template_on_job_verified(
        &mut self,
        miner: Address,
        candidates: Vec<SignedTransaction>,
        now_ms: u64,
        work: JobWork,
    ) -> Result<Template, BlockRejection> {
        self.build_template(miner, Candidates::Verified(candidates), now_ms, Some(work))
    }

    fn build_template(
        &mut self,
        miner: Address,
        candidates: Candidates,
        now_ms: u64,
        work: Option<JobWork>,
    ) -> Result<Template, BlockRejection> {
        let (job, matrices, commitment, lease) = match work {
            None => {
                let m = filler_matrices(&self.tip(), self.genesis.params.filler_size as usize);
                let c = ergon_pouw::WorkCommitment::compute(&m.0, &m.1).expect("valid filler");
                (Hash::ZERO, m, c, None)
            }
            Some(JobWork { job, a, b }) => {
                let c = ergon_pouw::WorkCommitment::compute(&a, &b)
                    .map_err(|e| BlockRejection::Malformed(format!("job matrices: {e}")))?;
                let difficulty = self.expected_difficulty(self.tip_header());
                let key =
                    self.ledger.market.check_mining(&miner, &job, &c, difficulty).map_err(BlockRejection::NotLeased)?;
                (job, (a, b), c, Some(key))
            }
        };
        let parent = self.tip_header().clone();
        let params = self.genesis.params.clone();
        let height = parent.height + 1;
        let time_ms = now_ms.max(self.median_time_past(self.tip()) + 1);
        let difficulty = self.expected_difficulty(&parent);
        let mut undo = self.ledger.begin_block(height);
        let subsidy = self.ledger.block_subsidy(lease, height, difficulty, &params);
        let (mut included, mut refused, mut fees) = (Vec::new(), Vec::new(), 0u64);
        let mut tx_bytes = 0usize;
        let (candidates, signed_ok): (Vec<SignedTransaction>, Vec<bool>) = match candidates {
            Candidates::Unchecked(c) => {
                let ok = c.par_iter().map(|t| t.verify().is_ok()).collect();
                (c, ok)
            }
            Candidates::Verified(c) => {
                let ok = vec![true; c.len()];
                (c, ok)
            }
        };
        for (tx, ok) in candidates.into_iter().zip(signed_ok) {
            if !ok {
                refused.push((tx, TxRejection::BadSignature));
                continue;
            }
            let size = tx.encode().len();
            if included.len() == MAX_TXS || tx_bytes + size > MAX_TX_BYTES {
                continue; // Block full: the rest waits in the pool for the next one.
            }
            match self.ledger.apply_tx(&mut undo, &tx, &self.chain_id, height, &params) {
                Ok(fee) => {
                    fees = fees.saturating_add(fee);
                    tx_bytes += size;
                    included.push(tx);
                }
                Err(r) => refused.push((tx, r)),
            }
        }
        let parent = self.tip();
        self.ledger.end_block(&mut undo, &parent, height, &params);
        self.ledger.reward(&mut undo, miner, fees, subsidy, &params);
        let state_root = self.ledger.root();
        self.ledger.undo(undo);
        let header = BlockHeader {
            parent: self.tip(),
            height,
            time_ms,
            state_root,
            tx_root: tx_root(&included),
            job,
            work: commitment,
            miner,
            difficulty,
            nonce: 0,
            proof_hash: Hash::ZERO,
        };
        Ok(Template { header, txs: included, refused, matrices })
    }

    /// Fraction of the active chain's work that was useful (mined on paid jobs).
    pub fn useful_work_fraction(&self) -> f64 {
        let tip = &self.nodes[&self.tip()];
        if tip.work == 0 {
            0.0
        } else {
            tip.useful as f64 / tip.work as f64
        }
    }
}

/// A leased job shard's matrices to mine on (see [`Chain::template_on_job`]).
pub struct JobWork {
    pub job: Hash,
    pub a: MatI8,
    pub b: MatI8,
}

/// A block to be mined: see [`Chain::template`].
#[derive(Clone)]
pub struct Template {
    pub header: BlockHeader,
    pub txs: Vec<SignedTransaction>,
    /// Candidates left out, and why.
    pub refused: Vec<(SignedTransaction, TxRejection)>,
    /// The matrices (A, B) the header commits to: filler, or a leased job shard's.
    pub matrices: (MatI8, MatI8),
}

/// Transactions offered to a template, and whether their signatures still need checking.
enum Candidates {
    Unchecked(Vec<SignedTransaction>),
    Verified(Vec<SignedTransaction>),
}

/// Transactions from which a block's signatures are checked on the thread pool.
const PARALLEL_SIGNATURES_FROM: usize = 64;

/// A block whose checks that need no chain have passed: its proof of work verifies against its
/// own header, its transaction root and size bounds hold, and every transaction's signature
/// verifies. These are the expensive checks (milliseconds to a second for a full block), so a
/// node runs them before it takes the lock on its chain.
#[derive(Clone, Debug)]
pub struct CheckedBlock(Block);

impl CheckedBlock {
    pub fn check(block: Block) -> Result<Self, BlockRejection> {
        block.check_self_consistent().map_err(|e| BlockRejection::Malformed(e.to_string()))?;
        // Signatures in parallel; position_first keeps the reported index deterministic. A
        // small block is checked on this thread: waking the pool for a handful of signatures
        // cost more than the signatures (a third of a replay's time went to yielding threads).
        let bad = |t: &SignedTransaction| t.verify().is_err();
        let first_bad = if block.txs.len() < PARALLEL_SIGNATURES_FROM {
            block.txs.iter().position(bad)
        } else {
            block.txs.par_iter().position_first(bad)
        };
        if let Some(index) = first_bad {
            return Err(BlockRejection::BadSignature { index });
        }
        Ok(CheckedBlock(block))
    }

    pub fn block(&self) -> &Block {
        &self.0
    }

    pub fn into_block(self) -> Block {
        self.0
    }
}

/// Mines one nonce of a template: the exact product A·B (the job's result, whatever happens)
/// and the sealed block if a ticket won.
pub fn mine_once(template: &Template, nonce: u64) -> Result<(Option<Block>, ergon_kernels::MatI32), ChainError> {
    let err = |e: ergon_pouw::PouwError| ChainError::Mining(e.to_string());
    let challenge = template.header.challenge().map_err(|e| ChainError::Mining(e.to_string()))?;
    let (a, b) = &template.matrices;
    let mined = ergon_pouw::mine(&challenge, a, b, nonce, Default::default()).map_err(err)?;
    let block = match mined.winners.first() {
        Some(w) => {
            let proof = ergon_pouw::prove(&challenge, a, b, nonce, w).map_err(err)?;
            let mut header = template.header.clone();
            header.nonce = nonce;
            header.proof_hash = proof_hash(&proof);
            Some(Block { header, proof, txs: template.txs.clone() })
        }
        None => None,
    };
    Ok((block, mined.product))
}

/// Seals a template by mining nonces from `first_nonce` until a ticket wins (at most `tries`).
pub fn seal(template: Template, first_nonce: u64, tries: u64) -> Result<Option<Block>, ChainError> {
    for nonce in first_nonce..first_nonce.saturating_add(tries) {
        if let (Some(block), _) = mine_once(&template, nonce)? {
            return Ok(Some(block));
        }
    }
    Ok(None)
}
