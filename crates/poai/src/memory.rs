//! Memory challenges: a data-dependent fill sized to a provider's claimed memory, committed by
//! a Merkle root, then opened at rows chosen after the commitment, under a deadline.
//!
//! 1. **Fill.** `LANES` lanes of 1 KiB blocks, each lane a chain: block 0 is expanded from the
//!    seed; block i hashes block i−1 and `REFS` earlier blocks of its lane chosen by the
//!    contents of block i−1 (so nobody knows which blocks it needs before computing the one
//!    before). The lanes fill in parallel.
//! 2. **Commit.** The Merkle root of the blocks (lane after lane).
//! 3. **Open.** The validator sends a fresh nonce; `OPENINGS` blocks, chosen by BLAKE3(seed ‖
//!    root ‖ nonce), must come back with their predecessor and references, every block on its
//!    path to the root, within a deadline of a few network round trips. The checker verifies
//!    the paths and recomputes each opened block from the others.
//!
//! Why a machine without the memory fails: a block it did not keep must be rebuilt from its
//! predecessor and its `REFS` references, all among the `WINDOW` blocks before it; those it did
//! not keep either must be rebuilt the same way, and so on back along the lane. Keeping 80% of
//! the blocks (a 25% over-claim) leaves each rebuilt block about 1.8 missing dependencies, so
//! the rebuilding runs far back: the openings of one answer cost about a tenth of the whole
//! fill (measured by [`recompute_cost`]), a time that grows with the claim while the deadline
//! does not. Keeping 89% (12.5% over) leaves about one: the rebuilding dies out, and such an
//! over-claim is not caught. `ergon sim poai` measures it for each way of keeping less, and the claim size above
//! which each is caught. A provider who keeps everything answers in a network round trip.
//!
//! What it does not show: that the memory is RAM rather than a fast disk (openings are a few
//! hundred random reads), or anything about claims so small that rebuilding a tenth of them
//! fits in the deadline.

use blake3::Hasher;
use rayon::prelude::*;

use ergon_types::{Address, Hash};

/// Bytes per block.
pub const BLOCK: usize = ergon_types::poai::memory::MEMORY_BLOCK_BYTES;
/// Earlier blocks each block depends on, all among the `WINDOW` before it. (Measured by
/// `ergon sim poai`: with references anywhere before, or among the 8 to 64 before, a cheater
/// keeping 80% rebuilds a share of the fill that shrinks as the fill grows, so large claims
/// were the cheapest to fake; among the 1,024 before, the share stays near 10% from 256 MiB
/// to 1 GiB.)
pub const REFS: usize = ergon_types::poai::memory::MEMORY_REFS;
pub const WINDOW: u64 = 1024;
/// Lanes filled in parallel.
pub const LANES: u32 = 4;
/// Blocks an answer opens.
pub const OPENINGS: u32 = ergon_types::poai::memory::MEMORY_OPENINGS as u32;
/// Smallest lane (a claim below 256 KiB is tested as 256 KiB).
pub const MIN_LANE_BLOCKS: u64 = 64;

/// One memory challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryChallenge {
    pub seed: [u8; 32],
    pub provider: Address,
    pub lane_blocks: u64,
}

/// A filled challenge as the provider keeps it: the blocks and the Merkle tree over them.
pub struct Fill {
    pub blocks: Vec<u8>,
    /// `levels[0]` are the leaves; the last level is the root.
    levels: Vec<Vec<[u8; 32]>>,
}

/// The wire's opened block and opening (`ergon_types::poai::memory`).
pub use ergon_types::poai::{MemoryOpening as Opening, OpenedBlock};

fn key(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Hasher::new_derive_key("ergon v1 poai memory challenge");
    for p in parts {
        h.update(p);
    }
    *h.finalize().as_bytes()
}

fn leaf(bytes: &[u8]) -> [u8; 32] {
    *Hasher::new_derive_key("ergon v1 poai memory leaf").update(bytes).finalize().as_bytes()
}

fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    *Hasher::new_derive_key("ergon v1 poai memory node").update(l).update(r).finalize().as_bytes()
}

impl MemoryChallenge {
    /// Round `round`'s memory challenge to `provider`, sized to `claimed_mib` (15/16 of it in
    /// blocks: the rest is room for the tree and the program).
    pub fn derive(round_seed: &Hash, provider: &Address, round: u64, claimed_mib: u64) -> Self {
        let blocks = (claimed_mib as u128 * 1024 * 15 / 16) as u64;
        let lane_blocks = (blocks / LANES as u64).max(MIN_LANE_BLOCKS);
        MemoryChallenge {
            seed: key(&[&round_seed.0, &provider.0, &round.to_le_bytes()]),
            provider: *provider,
            lane_blocks,
        }
    }

    pub fn blocks(&self) -> u64 {
        self.lane_blocks * LANES as u64
    }

    pub fn bytes(&self) -> u64 {
        self.blocks() * BLOCK as u64
    }

    fn lane_key(&self, lane: u32) -> [u8; 32] {
        key(&[&self.seed, b"lane", &lane.to_le_bytes()])
    }

    /// The lane-local indices block `i` (i ≥ 1) of a lane references, from its predecessor:
    /// among the `WINDOW` blocks before it. (References anywhere before it, uniformly, make a
    /// shallow dependency graph: a block rebuilt from them reaches the lane's start in about
    /// ln i steps. References within a window chain a missing block to the missing blocks
    /// before it, and those to theirs, back along the lane.)
    pub fn refs_of(prev: &[u8], i: u64) -> [u64; REFS] {
        let mut out = [0u64; REFS];
        let span = i.min(WINDOW);
        for (t, o) in out.iter_mut().enumerate() {
            let w = u64::from_le_bytes(prev[t * 8..t * 8 + 8].try_into().expect("8 bytes"));
            *o = i - 1 - w % span;
        }
        out
    }

    /// The global indices of the blocks block `index` (not a lane's first) references, chosen
    /// by `prev`, its predecessor's bytes.
    pub fn refs_at(&self, index: u64, prev: &[u8]) -> [u64; REFS] {
        let base = index - index % self.lane_blocks;
        Self::refs_of(prev, index % self.lane_blocks).map(|j| base + j)
    }

    /// Block `i` of lane `lane` from its predecessor and references (or from the seed, i = 0).
    pub fn block(&self, lane: u32, i: u64, prev: Option<&[u8]>, refs: &[&[u8]]) -> Vec<u8> {
        let mut h = Hasher::new_keyed(&self.lane_key(lane));
        h.update(&i.to_le_bytes());
        if let Some(p) = prev {
            h.update(p);
        }
        for r in refs {
            h.update(r);
        }
        let mut out = vec![0u8; BLOCK];
        h.finalize_xof().fill(&mut out);
        out
    }

    /// The whole fill and its tree: what an honest provider computes and keeps.
    ///
    /// It runs on threads of its own, one per lane (fewer on fewer cores), not on the pool that
    /// every other parallel job shares: each lane is one task of seconds, and on that pool a
    /// liveness probe's product queued behind the whole fill (an honest provider was judged
    /// absent at every memory epoch and lost its leases). Where no thread can be started, it
    /// runs on the shared pool as before.
    pub fn fill(&self) -> Fill {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let own = rayon::ThreadPoolBuilder::new()
            .num_threads(cores.min(LANES as usize))
            .thread_name(|i| format!("memory-fill-{i}"))
            .build();
        match own {
            Ok(pool) => pool.install(|| self.fill_here()),
            Err(_) => self.fill_here(),
        }
    }

    /// [`fill`](Self::fill) on the current pool.
    fn fill_here(&self) -> Fill {
        let lane_bytes = self.lane_blocks as usize * BLOCK;
        let mut blocks = vec![0u8; lane_bytes * LANES as usize];
        blocks.par_chunks_mut(lane_bytes).enumerate().for_each(|(lane, mem)| {
            let lane = lane as u32;
            let first = self.block(lane, 0, None, &[]);
            mem[..BLOCK].copy_from_slice(&first);
            for i in 1..self.lane_blocks {
                let (done, rest) = mem.split_at_mut(i as usize * BLOCK);
                let prev = &done[(i as usize - 1) * BLOCK..];
                let refs = Self::refs_of(prev, i);
                let refs: Vec<&[u8]> =
                    refs.iter().map(|&j| &done[j as usize * BLOCK..(j as usize + 1) * BLOCK]).collect();
                let b = self.block(lane, i, Some(prev), &refs);
                rest[..BLOCK].copy_from_slice(&b);
            }
        });
        let leaves: Vec<[u8; 32]> = blocks.par_chunks(BLOCK).map(leaf).collect();
        Fill { blocks, levels: tree(leaves) }
    }

    /// The blocks to open for a fill with `root`, after the validator's `nonce`.
    pub fn to_open(&self, root: &[u8; 32], nonce: &[u8; 32]) -> Vec<u64> {
        let mut rng = ergon_kernels::rng::SplitMix64::new(u64::from_le_bytes(
            key(&[&self.seed, root, nonce])[..8].try_into().expect("8 bytes"),
        ));
        (0..OPENINGS).map(|_| rng.below(self.blocks())).collect()
    }

    /// Checks an answer against the root: every block on its path, each opened block the hash
    /// of its predecessor and the references its predecessor chooses.
    pub fn check(&self, root: &[u8; 32], nonce: &[u8; 32], openings: &[Opening]) -> Result<(), String> {
        let want = self.to_open(root, nonce);
        if openings.len() != want.len() {
            return Err(format!("{} blocks opened, {} asked for", openings.len(), want.len()));
        }
        let n = self.blocks();
        for (o, &index) in openings.iter().zip(&want) {
            if o.block.index != index {
                return Err(format!("block {} opened, block {index} asked for", o.block.index));
            }
            let (lane, i) = ((index / self.lane_blocks) as u32, index % self.lane_blocks);
            for b in std::iter::once(&o.block).chain(&o.prev).chain(&o.refs) {
                if b.bytes.len() != BLOCK || verify_path(n, b.index, &leaf(&b.bytes), &b.path) != Some(*root) {
                    return Err(format!("block {} is not the one committed to", b.index));
                }
            }
            let expected = if i == 0 {
                self.block(lane, 0, None, &[])
            } else {
                let prev =
                    o.prev.as_ref().filter(|p| p.index == index - 1).ok_or(format!("block {index}: no predecessor"))?;
                let refs = self.refs_at(index, &prev.bytes);
                if o.refs.len() != REFS || o.refs.iter().zip(refs).any(|(r, j)| r.index != j) {
                    return Err(format!("block {index}: not the references its predecessor chooses"));
                }
                let refs: Vec<&[u8]> = o.refs.iter().map(|r| &r.bytes[..]).collect();
                self.block(lane, i, Some(&prev.bytes), &refs)
            };
            if expected != o.block.bytes {
                return Err(format!("block {index} is not the hash of the blocks it depends on"));
            }
        }
        Ok(())
    }
}

impl Fill {
    pub fn root(&self) -> [u8; 32] {
        self.levels.last().expect("a tree has a root")[0]
    }

    fn stored(&self, index: u64) -> &[u8] {
        &self.blocks[index as usize * BLOCK..(index as usize + 1) * BLOCK]
    }

    /// The blocks (global indices) block `index` is computed from: none for a lane's first,
    /// else its predecessor and then its references, in order.
    fn dependencies(&self, c: &MemoryChallenge, index: u64) -> Vec<u64> {
        if index.is_multiple_of(c.lane_blocks) {
            return vec![];
        }
        std::iter::once(index - 1).chain(c.refs_at(index, self.stored(index - 1))).collect()
    }

    /// The answer an honest provider gives for `indices`.
    pub fn open(&self, c: &MemoryChallenge, indices: &[u64]) -> Vec<Opening> {
        self.open_with(c, indices, |b| self.stored(b).to_vec())
    }

    /// The answer of a provider that kept only the blocks `kept` chooses: the same openings
    /// as [`Fill::open`], every missing block they need rebuilt for real, and the missing
    /// blocks those need, back along the lane (what `recompute_cost` counts, played; the
    /// tree is taken as kept, 3% of the fill). For the tests and the cheater of
    /// `ergon node --memory-keep-percent`: an honest provider never calls it.
    pub fn open_keeping(&self, c: &MemoryChallenge, indices: &[u64], kept: &dyn Fn(u64) -> bool) -> Vec<Opening> {
        let mut r = Rebuild { fill: self, c, kept, rebuilt: std::collections::HashMap::new() };
        self.open_with(c, indices, |b| r.get(b))
    }

    /// The openings of `indices`, each block's bytes from `bytes_of` (the references of an
    /// opened block are the ones its predecessor's bytes choose), paths from the tree.
    fn open_with(
        &self,
        c: &MemoryChallenge,
        indices: &[u64],
        mut bytes_of: impl FnMut(u64) -> Vec<u8>,
    ) -> Vec<Opening> {
        let mut opened =
            |index: u64| OpenedBlock { index, bytes: bytes_of(index), path: path(&self.levels, index as usize) };
        indices
            .iter()
            .map(|&index| {
                let block = opened(index);
                if index % c.lane_blocks == 0 {
                    return Opening { block, prev: None, refs: vec![] };
                }
                let prev = opened(index - 1);
                let refs = c.refs_at(index, &prev.bytes).into_iter().map(&mut opened).collect();
                Opening { block, prev: Some(prev), refs }
            })
            .collect()
    }
}

/// A cheater's rebuilding: the blocks it kept, and those it rebuilt so far.
struct Rebuild<'a> {
    fill: &'a Fill,
    c: &'a MemoryChallenge,
    kept: &'a dyn Fn(u64) -> bool,
    rebuilt: std::collections::HashMap<u64, Vec<u8>>,
}

impl Rebuild<'_> {
    fn have(&self, b: u64) -> bool {
        (self.kept)(b) || self.rebuilt.contains_key(&b)
    }

    fn stored(&self, b: u64) -> &[u8] {
        if (self.kept)(b) {
            self.fill.stored(b)
        } else {
            &self.rebuilt[&b]
        }
    }

    /// Block `want`, rebuilt if it was not kept: depth first without recursion, a block
    /// computed once its predecessor and the references its predecessor chooses are at hand.
    fn get(&mut self, want: u64) -> Vec<u8> {
        let c = self.c;
        let mut stack = vec![want];
        while let Some(&b) = stack.last() {
            if self.have(b) {
                stack.pop();
                continue;
            }
            let (lane, i) = ((b / c.lane_blocks) as u32, b % c.lane_blocks);
            if i == 0 {
                self.rebuilt.insert(b, c.block(lane, 0, None, &[]));
                stack.pop();
                continue;
            }
            if !self.have(b - 1) {
                stack.push(b - 1);
                continue;
            }
            let refs = c.refs_at(b, self.stored(b - 1));
            let missing: Vec<u64> = refs.iter().copied().filter(|&r| !self.have(r)).collect();
            if !missing.is_empty() {
                stack.extend(missing);
                continue;
            }
            let refs: Vec<&[u8]> = refs.iter().map(|&r| self.stored(r)).collect();
            let block = c.block(lane, i, Some(self.stored(b - 1)), &refs);
            self.rebuilt.insert(b, block);
            stack.pop();
        }
        self.stored(want).to_vec()
    }
}

/// Levels of a Merkle tree over `leaves` (an odd node is paired with itself).
fn tree(leaves: Vec<[u8; 32]>) -> Vec<Vec<[u8; 32]>> {
    let mut levels = vec![leaves];
    while levels.last().expect("at least the leaves").len() > 1 {
        let below = levels.last().expect("at least the leaves");
        let up = below.par_chunks(2).map(|p| node(&p[0], p.get(1).unwrap_or(&p[0]))).collect();
        levels.push(up);
    }
    levels
}

fn path(levels: &[Vec<[u8; 32]>], mut i: usize) -> Vec<[u8; 32]> {
    let mut out = vec![];
    for level in &levels[..levels.len() - 1] {
        out.push(*level.get(i ^ 1).unwrap_or(&level[i]));
        i /= 2;
    }
    out
}

/// The root that `leaf` at `index` of `n` leaves reaches along `path`, if the path has the
/// tree's depth.
fn verify_path(n: u64, mut index: u64, leaf: &[u8; 32], path: &[[u8; 32]]) -> Option<[u8; 32]> {
    let depth = if n <= 1 { 0 } else { 64 - (n - 1).leading_zeros() as usize };
    if path.len() != depth || index >= n {
        return None;
    }
    let mut h = *leaf;
    for sibling in path {
        h = if index.is_multiple_of(2) { node(&h, sibling) } else { node(sibling, &h) };
        index /= 2;
    }
    Some(h)
}

/// Blocks a provider that kept only `kept` (by global index) must hash to answer `indices`:
/// every missing block they need, and recursively every missing block those need, each once.
pub fn recompute_cost(c: &MemoryChallenge, fill: &Fill, kept: &dyn Fn(u64) -> bool, indices: &[u64]) -> u64 {
    let mut done = std::collections::HashSet::new();
    // The answer holds each opened block and everything it is computed from.
    let mut stack: Vec<u64> = indices.iter().flat_map(|&i| std::iter::once(i).chain(fill.dependencies(c, i))).collect();
    let mut cost = 0;
    while let Some(b) = stack.pop() {
        if kept(b) || !done.insert(b) {
            continue;
        }
        cost += 1;
        stack.extend(fill.dependencies(c, b));
    }
    cost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_honest_fill_opens_and_every_shortcut_fails() {
        let c = MemoryChallenge::derive(&Hash([1; 32]), &Address([2; 20]), 3, 1);
        assert_eq!(c.blocks(), 960, "15/16 of 1 MiB in 1 KiB blocks");
        let fill = c.fill();
        let (root, nonce) = (fill.root(), [7u8; 32]);
        let idx = c.to_open(&root, &nonce);
        let honest = fill.open(&c, &idx);
        assert_eq!(c.check(&root, &nonce, &honest), Ok(()));
        // Another nonce asks for other blocks.
        assert!(c.check(&root, &[8; 32], &honest).is_err());
        // A block changed after committing; a block computed from a wrong reference.
        let mut tampered = honest.clone();
        tampered[0].block.bytes[5] ^= 1;
        assert!(c.check(&root, &nonce, &tampered).unwrap_err().contains("not the one committed"));
        let o = honest.iter().position(|o| !o.refs.is_empty()).expect("some opened block has references");
        let mut wrong_ref = honest.clone();
        wrong_ref[o].refs.swap(0, 1);
        assert!(c.check(&root, &nonce, &wrong_ref).is_err());
        // A fill computed wrongly but committed consistently: its blocks are not the hashes of
        // what they depend on.
        let mut bad = c.fill();
        bad.blocks[BLOCK * 10] ^= 1;
        let bad = Fill { levels: tree(bad.blocks.par_chunks(BLOCK).map(leaf).collect()), blocks: bad.blocks };
        let idx = c.to_open(&bad.root(), &nonce);
        let mut any_covers = false;
        for o in bad.open(&c, &idx) {
            any_covers |= o.block.index == 10 || o.block.index == 11;
        }
        if any_covers {
            assert!(c.check(&bad.root(), &nonce, &bad.open(&c, &idx)).is_err());
        }
    }

    #[test]
    fn keeping_a_fifth_less_costs_a_share_of_the_fill_and_keeping_everything_nothing() {
        let c = MemoryChallenge::derive(&Hash([1; 32]), &Address([2; 20]), 3, 64);
        let fill = c.fill();
        let idx = c.to_open(&fill.root(), &[7; 32]);
        assert_eq!(recompute_cost(&c, &fill, &|_| true, &idx), 0);
        // Every fifth block dropped (a 25% over-claim): the openings need a share of the whole
        // fill rebuilt (about 10% from 256 MiB on, against the 20% dropped; less on small fills,
        // where the lanes are not much longer than the window).
        let cost = recompute_cost(&c, &fill, &|b| b % 5 != 0, &idx);
        assert!(cost as f64 > 0.02 * c.blocks() as f64, "{cost} of {}", c.blocks());
        // Half dropped (two identities on one machine): most of the fill.
        let cost = recompute_cost(&c, &fill, &|b| b % 2 == 0, &idx);
        assert!(cost as f64 > 0.3 * c.blocks() as f64, "{cost} of {}", c.blocks());
    }

    #[test]
    fn a_provider_that_kept_less_rebuilds_the_same_answer_it_just_takes_longer() {
        let c = MemoryChallenge::derive(&Hash([4; 32]), &Address([5; 20]), 1, 16);
        let fill = c.fill();
        let (root, nonce) = (fill.root(), [9u8; 32]);
        let idx = c.to_open(&root, &nonce);
        for kept in [&(|b: u64| !b.is_multiple_of(5)) as &dyn Fn(u64) -> bool, &|b| b % 2 == 0, &|b| b % 64 == 0] {
            // What it did not keep is gone: only rebuilding gives it back.
            let mut holey = Fill { blocks: fill.blocks.clone(), levels: fill.levels.clone() };
            for b in (0..c.blocks()).filter(|&b| !kept(b)) {
                holey.blocks[b as usize * BLOCK..(b as usize + 1) * BLOCK].fill(0);
            }
            let answer = holey.open_keeping(&c, &idx, kept);
            assert_eq!(answer, fill.open(&c, &idx));
            assert_eq!(c.check(&root, &nonce, &answer), Ok(()));
        }
    }
}
