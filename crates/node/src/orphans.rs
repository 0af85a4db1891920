//! Blocks that arrived before their parent, waiting for it: bounded, checked and evicted.
//!
//! Before this pool existed any peer could park 10,000 blocks of 16 MiB each without a proof of
//! work. Now only a [`CheckedBlock`] can wait here (its own proof and signatures verify; the
//! check needs no parent, and a block failing it costs its sender a ban before it gets here),
//! and only if it carries at least 1/16 of the difficulty the tip's next block needs (the same
//! floor as side branches) and its height is plausible (at most `MAX_AHEAD` above the tip and
//! not below the reorg depth). At most `MAX_ORPHANS` blocks and `MAX_BYTES` in all,
//! `MAX_PER_PEER` from one peer; the oldest goes first when full.

use std::collections::{BTreeMap, HashMap};

use ergon_chain::chain::SIDE_DIFFICULTY_DIVISOR;
use ergon_chain::{Chain, CheckedBlock};
use ergon_types::{Canonical, Hash};

pub const MAX_ORPHANS: usize = 256;
pub const MAX_BYTES: usize = 128 << 20;
pub const MAX_PER_PEER: usize = 32;
/// Heights above the tip an orphan may claim (a sync fetches parents one by one).
pub const MAX_AHEAD: u64 = 1_000;

struct Orphan<P> {
    block: CheckedBlock,
    from: P,
    bytes: usize,
    seq: u64,
}

pub struct Orphans<P> {
    blocks: HashMap<Hash, Orphan<P>>,
    by_parent: HashMap<Hash, Vec<Hash>>,
    order: BTreeMap<u64, Hash>,
    per_peer: HashMap<P, usize>,
    bytes: usize,
    seq: u64,
}

impl<P> Default for Orphans<P> {
    fn default() -> Self {
        Self {
            blocks: HashMap::new(),
            by_parent: HashMap::new(),
            order: BTreeMap::new(),
            per_peer: HashMap::new(),
            bytes: 0,
            seq: 0,
        }
    }
}

impl<P: Copy + Eq + std::hash::Hash> Orphans<P> {
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Keeps `block` (whose parent `chain` lacks) from peer `from`, if it passes the checks.
    /// Keeps `block` (whose parent `chain` lacks) from peer `from`, or says why not: plausibly
    /// honest but not worth keeping (too cheap, an implausible height, the sender's quota).
    /// `solicited`: an answer to this node's own request for a parent, which is not held to the
    /// sender's quota (a fork being walked back comes from one peer).
    pub fn insert(&mut self, chain: &Chain, block: CheckedBlock, from: P, solicited: bool) -> Result<(), String> {
        let header = &block.block().header;
        let id = header.id();
        if self.blocks.contains_key(&id) {
            return Ok(());
        }
        let (height, tip) = (header.height, chain.height());
        if height > tip + MAX_AHEAD || height + chain.params().max_reorg_depth < tip {
            return Err(format!("height {height} is implausible with the tip at {tip}"));
        }
        if header.difficulty < chain.side_difficulty_floor() {
            return Err(format!("difficulty {} is below 1/{SIDE_DIFFICULTY_DIVISOR} of the tip's", header.difficulty));
        }
        if !solicited && self.per_peer.get(&from).copied().unwrap_or(0) >= MAX_PER_PEER {
            return Err(format!("{MAX_PER_PEER} orphans from this peer already wait"));
        }
        let parent = header.parent;
        let bytes = block.block().encode().len();
        while !self.order.is_empty() && (self.blocks.len() >= MAX_ORPHANS || self.bytes + bytes > MAX_BYTES) {
            let (_, oldest) = self.order.pop_first().expect("not empty");
            self.remove(&oldest);
        }
        self.seq += 1;
        self.order.insert(self.seq, id);
        self.by_parent.entry(parent).or_default().push(id);
        *self.per_peer.entry(from).or_default() += 1;
        self.bytes += bytes;
        self.blocks.insert(id, Orphan { block, from, bytes, seq: self.seq });
        Ok(())
    }

    /// The orphans waiting for `parent`, taken out.
    pub fn take_children(&mut self, parent: &Hash) -> Vec<CheckedBlock> {
        let ids = self.by_parent.remove(parent).unwrap_or_default();
        ids.iter().filter_map(|id| self.remove(id)).collect()
    }

    fn remove(&mut self, id: &Hash) -> Option<CheckedBlock> {
        let o = self.blocks.remove(id)?;
        self.order.remove(&o.seq);
        self.bytes -= o.bytes;
        if let Some(n) = self.per_peer.get_mut(&o.from) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&o.from);
            }
        }
        let parent = o.block.block().header.parent;
        if let Some(siblings) = self.by_parent.get_mut(&parent) {
            siblings.retain(|s| s != id);
            if siblings.is_empty() {
                self.by_parent.remove(&parent);
            }
        }
        Some(o.block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ergon_chain::{seal, ChainParams, Genesis};
    use ergon_types::{Block, SecretKey};

    fn chain() -> Chain {
        let g = Genesis {
            network: "orphans".into(),
            time_ms: 1_000_000,
            params: ChainParams::small(48),
            balances: Default::default(),
        };
        Chain::new(g).unwrap()
    }

    /// A chain of `n` blocks beyond `c`'s tip, mined on a copy (so `c` lacks them).
    fn ahead(c: &Chain, n: usize, miner: u8) -> Vec<Block> {
        let mut other = chain();
        assert_eq!(other.tip(), c.tip());
        (0..n)
            .map(|_| {
                let now = other.tip_header().time_ms + 10_000;
                let t = other.template(SecretKey::from_bytes(&[miner; 32]).public().address(), vec![], now);
                let b = seal(t, 0, 1000).unwrap().unwrap();
                other.import(b.clone(), u64::MAX / 2).unwrap();
                b
            })
            .collect()
    }

    #[test]
    fn only_checked_plausible_blocks_wait_and_the_pool_stays_within_its_bounds() {
        let c = chain();
        let checked = |b: &Block| CheckedBlock::check(b.clone()).unwrap();
        let blocks = ahead(&c, 3, 5);
        let mut pool: Orphans<u8> = Orphans::default();
        // Block 3 waits for block 2; its child list is returned when block 2 arrives.
        pool.insert(&c, checked(&blocks[2]), 1, false).unwrap();
        pool.insert(&c, checked(&blocks[1]), 1, false).unwrap();
        let children: Vec<Block> =
            pool.take_children(&blocks[1].header.id()).into_iter().map(|b| b.into_block()).collect();
        assert_eq!(children, vec![blocks[2].clone()]);
        assert_eq!(pool.len(), 1);
        // A forged proof never becomes a CheckedBlock (issue 10: orphans were stored before any
        // proof-of-work check), so it cannot wait here.
        let mut forged = blocks[2].clone();
        forged.header.nonce += 1;
        forged.proof.nonce += 1;
        assert!(CheckedBlock::check(forged).is_err());
        // One peer cannot fill the pool: its quota, then the oldest goes first when full.
        let many = ahead(&c, MAX_PER_PEER + 2, 6);
        for (i, b) in many.iter().enumerate().skip(1) {
            let r = pool.insert(&c, checked(b), 3, false);
            assert_eq!(r.is_ok(), i <= MAX_PER_PEER, "block {i}: {r:?}");
        }
        assert_eq!(pool.len(), 1 + MAX_PER_PEER);
        // Answers to this node's own parent requests are not held to the quota.
        assert!(pool.insert(&c, checked(&many[0]), 3, true).is_ok());
        assert!(pool.bytes <= MAX_BYTES);
    }
}
