//! Blocks that arrived before their parent, waiting for it: bounded, checked and evicted.
//!
//! Before this pool existed any peer could park 10,000 blocks of 16 MiB each without a proof of
//! work. Now a block is kept only if its own proof verifies (the PoUW check needs no parent),
//! it carries at least 1/16 of the difficulty the tip's next block needs (the same floor as
//! side branches), and its height is plausible (at most `MAX_AHEAD` above the tip and not below
//! the reorg depth). At most `MAX_ORPHANS` blocks and `MAX_BYTES` in all, `MAX_PER_PEER` from
//! one peer; the oldest goes first when full. A block whose proof fails costs its sender a ban
//! (the caller's job: `check` says why).

use std::collections::{BTreeMap, HashMap};

use ergon_chain::chain::SIDE_DIFFICULTY_DIVISOR;
use ergon_chain::Chain;
use ergon_types::{Block, Canonical, Hash};

pub const MAX_ORPHANS: usize = 256;
pub const MAX_BYTES: usize = 128 << 20;
pub const MAX_PER_PEER: usize = 32;
/// Heights above the tip an orphan may claim (a sync fetches parents one by one).
pub const MAX_AHEAD: u64 = 1_000;

struct Orphan<P> {
    block: Block,
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

/// Why an orphan was not kept.
#[derive(Debug, PartialEq, Eq)]
pub enum NotKept {
    /// Its proof of work does not verify: the sender is at fault.
    Invalid(String),
    /// Plausibly honest but not worth keeping (too cheap, implausible height, sender's quota).
    Declined(String),
}

impl<P: Copy + Eq + std::hash::Hash> Orphans<P> {
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Keeps `block` (whose parent `chain` lacks) from peer `from`, if it passes the checks.
    pub fn insert(&mut self, chain: &Chain, block: Block, from: P) -> Result<(), NotKept> {
        let id = block.header.id();
        if self.blocks.contains_key(&id) {
            return Ok(());
        }
        let (height, tip) = (block.header.height, chain.height());
        if height > tip + MAX_AHEAD || height + chain.params().max_reorg_depth < tip {
            return Err(NotKept::Declined(format!("height {height} is implausible with the tip at {tip}")));
        }
        let floor = chain.expected_difficulty(chain.tip_header()) / SIDE_DIFFICULTY_DIVISOR;
        if block.header.difficulty < floor {
            return Err(NotKept::Declined(format!(
                "difficulty {} is below 1/{SIDE_DIFFICULTY_DIVISOR} of the tip's",
                block.header.difficulty
            )));
        }
        if self.per_peer.get(&from).copied().unwrap_or(0) >= MAX_PER_PEER {
            return Err(NotKept::Declined(format!("{MAX_PER_PEER} orphans from this peer already wait")));
        }
        block.check_self_consistent().map_err(|e| NotKept::Invalid(e.to_string()))?;
        let bytes = block.encode().len();
        while !self.order.is_empty() && (self.blocks.len() >= MAX_ORPHANS || self.bytes + bytes > MAX_BYTES) {
            let (_, oldest) = self.order.pop_first().expect("not empty");
            self.remove(&oldest);
        }
        self.seq += 1;
        self.order.insert(self.seq, id);
        self.by_parent.entry(block.header.parent).or_default().push(id);
        *self.per_peer.entry(from).or_default() += 1;
        self.bytes += bytes;
        self.blocks.insert(id, Orphan { block, from, bytes, seq: self.seq });
        Ok(())
    }

    /// The orphans waiting for `parent`, taken out.
    pub fn take_children(&mut self, parent: &Hash) -> Vec<Block> {
        let ids = self.by_parent.remove(parent).unwrap_or_default();
        ids.iter().filter_map(|id| self.remove(id)).collect()
    }

    fn remove(&mut self, id: &Hash) -> Option<Block> {
        let o = self.blocks.remove(id)?;
        self.order.remove(&o.seq);
        self.bytes -= o.bytes;
        if let Some(n) = self.per_peer.get_mut(&o.from) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&o.from);
            }
        }
        if let Some(siblings) = self.by_parent.get_mut(&o.block.header.parent) {
            siblings.retain(|s| s != id);
            if siblings.is_empty() {
                self.by_parent.remove(&o.block.header.parent);
            }
        }
        Some(o.block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ergon_chain::{seal, ChainParams, Genesis};
    use ergon_types::SecretKey;

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
    fn forged_proofs_are_faults_and_the_pool_stays_within_its_bounds() {
        let c = chain();
        let blocks = ahead(&c, 3, 5);
        let mut pool: Orphans<u8> = Orphans::default();
        // Block 3 waits for block 2; its child list is returned when block 2 arrives.
        pool.insert(&c, blocks[2].clone(), 1).unwrap();
        pool.insert(&c, blocks[1].clone(), 1).unwrap();
        assert_eq!(pool.take_children(&blocks[1].header.id()), vec![blocks[2].clone()]);
        assert_eq!(pool.len(), 1);
        // A forged proof (issue 10: orphans were stored before any proof-of-work check).
        let mut forged = blocks[2].clone();
        forged.header.nonce += 1;
        forged.proof.nonce += 1;
        assert!(matches!(pool.insert(&c, forged, 2), Err(NotKept::Invalid(_))));
        // A claimed difficulty far below the tip's is declined before the proof is checked.
        let mut cheap = blocks[2].clone();
        cheap.header.difficulty = 1;
        assert!(matches!(pool.insert(&c, cheap, 2), Err(NotKept::Declined(_))));
        // Far ahead of the tip: declined.
        let mut far = blocks[2].clone();
        far.header.height = MAX_AHEAD + 5;
        assert!(matches!(pool.insert(&c, far, 2), Err(NotKept::Declined(_))));
        // One peer cannot fill the pool: its quota, then the oldest goes first when full.
        let many = ahead(&c, MAX_PER_PEER + 2, 6);
        for (i, b) in many.iter().enumerate().skip(1) {
            let r = pool.insert(&c, b.clone(), 3);
            assert_eq!(r.is_ok(), i <= MAX_PER_PEER, "block {i}: {r:?}");
        }
        assert_eq!(pool.len(), 1 + MAX_PER_PEER);
        assert!(pool.bytes <= MAX_BYTES);
    }
}
