//! A deterministic simulator of an Ergon network.
//!
//! N nodes run the very same chain core as the real node (`ergon-chain`), in virtual time driven
//! by one seed: every random choice (who mines when, message delays, losses, duplicates, the
//! partition, crashes) comes from that seed, so a failing seed replays exactly. Blocks are real:
//! mined with real PoUW on small filler matrices and fully validated by every receiver.
//!
//! Faults: delivery delay, loss and duplication; a partition of the nodes into two halves for a
//! while; crashes, after which a node restarts from genesis (no persistence yet) and resyncs by
//! asking peers for the parents it lacks. After the faults end, the network heals and one last
//! block is mined, and the simulator checks:
//! 1. all nodes share one tip;
//! 2. at every node, after every import, supply = genesis + subsidies − burns;
//! 3. no transaction is applied twice on the final chain.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use ergon_chain::{seal, BlockRejection, Chain, ChainParams, Genesis};
use ergon_kernels::rng::SplitMix64;
use ergon_types::{Block, Hash, SecretKey, Transaction, TxKind};
use serde::Serialize;

pub mod churn;
pub mod economics;
pub mod poai;
pub mod poai_memory;

/// Knobs of one simulated run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub nodes: usize,
    /// Virtual time during which faults happen and nodes mine.
    pub duration_ms: u64,
    /// Mean interval between blocks over the whole network.
    pub block_interval_ms: u64,
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
    /// Per-message probabilities, in percent.
    pub loss_percent: u64,
    pub duplicate_percent: u64,
    /// Whether a partition happens (from 1/4 to 1/2 of the duration).
    pub partition: bool,
    /// Crashes per run (each node down for a while, restarting from genesis).
    pub crashes: usize,
    /// Whether the partition ends. Off, the halves never reconcile and the simulator must say so
    /// (its checks are tested that way).
    pub heal: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 5,
            duration_ms: 300_000,
            block_interval_ms: 10_000,
            min_delay_ms: 20,
            max_delay_ms: 2_000,
            loss_percent: 10,
            duplicate_percent: 5,
            partition: true,
            crashes: 2,
            heal: true,
        }
    }
}

/// What one run saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SimReport {
    pub seed: u64,
    pub blocks_mined: u64,
    pub final_height: u64,
    pub reorgs: u64,
    pub messages: u64,
    /// Blocks refused as forking from below the reorg depth or as far cheaper than the tip's:
    /// a node restarted from genesis mines on its own stale tip (behind schedule, so at a low
    /// difficulty) until it has caught up. Policy, not a fault; convergence is still checked.
    pub stale_forks_refused: u64,
    pub violations: Vec<String>,
}

/// The shared seeded generator, with the draws the simulator needs.
struct Rng(SplitMix64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
    /// Exponential with the given mean (inverse CDF on a 53-bit uniform).
    fn exponential(&mut self, mean: u64) -> u64 {
        let u = ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        (-(u.ln()) * mean as f64) as u64 + 1
    }
}

enum Event {
    Mine { node: usize },
    Deliver { to: usize, from: usize, msg: Msg },
    Crash { node: usize, down_ms: u64 },
    Restart { node: usize },
}

#[derive(Clone)]
enum Msg {
    Block(Box<Block>),
    GetBlock(Hash),
}

struct Node {
    chain: Chain,
    up: bool,
    /// Blocks waiting for their parent, by parent id.
    orphans: HashMap<Hash, Vec<Block>>,
}

const GENESIS_TIME: u64 = 1_000_000;
const KEYS: u8 = 4;

fn genesis() -> Genesis {
    let params = ChainParams::small(48);
    let balances =
        (1..=KEYS).map(|k| (SecretKey::from_bytes(&[k; 32]).public().address().to_string(), 1_000_000)).collect();
    Genesis { network: "sim".into(), time_ms: GENESIS_TIME, params, balances }
}

struct Sim {
    cfg: SimConfig,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Event>,
    nodes: Vec<Node>,
    partition: Option<(u64, u64)>,
    report: SimReport,
    genesis: Genesis,
}

impl Sim {
    fn schedule(&mut self, at: u64, e: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, e);
    }

    fn partitioned(&self, a: usize, b: usize) -> bool {
        matches!(self.partition, Some((s, e)) if self.now >= s && self.now < e && (a < self.cfg.nodes / 2) != (b < self.cfg.nodes / 2))
    }

    fn send(&mut self, from: usize, to: usize, msg: Msg, faults: bool) {
        self.report.messages += 1;
        if self.partitioned(from, to) || (faults && self.rng.percent(self.cfg.loss_percent)) {
            return;
        }
        let copies = if faults && self.rng.percent(self.cfg.duplicate_percent) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = self.cfg.min_delay_ms + self.rng.below(self.cfg.max_delay_ms - self.cfg.min_delay_ms + 1);
            self.schedule(self.now + delay, Event::Deliver { to, from, msg: msg.clone() });
        }
    }

    fn faults_on(&self) -> bool {
        self.now < self.cfg.duration_ms + GENESIS_TIME
    }

    fn broadcast(&mut self, from: usize, block: &Block) {
        for to in 0..self.cfg.nodes {
            if to != from {
                let faults = self.faults_on();
                self.send(from, to, Msg::Block(Box::new(block.clone())), faults);
            }
        }
    }

    /// Imports a block and any orphans it unlocks; asks `from` for a missing parent.
    fn receive(&mut self, node: usize, from: usize, block: Block) {
        let mut pending = vec![block];
        while let Some(b) = pending.pop() {
            let id = b.header.id();
            let parent = b.header.parent;
            let now = self.now;
            let result = self.nodes[node].chain.import(b.clone(), now);
            match result {
                Ok(imported) => {
                    if matches!(imported, ergon_chain::Imported::Reorganized { .. }) {
                        self.report.reorgs += 1;
                    }
                    self.check_supply(node);
                    if let Some(children) = self.nodes[node].orphans.remove(&id) {
                        pending.extend(children);
                    }
                }
                Err(BlockRejection::UnknownParent(_)) => {
                    self.nodes[node].orphans.entry(parent).or_default().push(b);
                    let faults = self.faults_on();
                    self.send(node, from, Msg::GetBlock(parent), faults);
                }
                Err(BlockRejection::ForkTooDeep { .. } | BlockRejection::SideBranchTooCheap { .. }) => {
                    self.report.stale_forks_refused += 1
                }
                Err(e) => self.report.violations.push(format!("node {node} refused an honest block: {e}")),
            }
        }
    }

    fn check_supply(&mut self, node: usize) {
        let l = self.nodes[node].chain.ledger();
        if l.circulating() != (l.minted - l.burned) as u128 {
            let msg = format!("node {node}: supply {} != minted {} - burned {}", l.circulating(), l.minted, l.burned);
            self.report.violations.push(msg);
        }
    }

    fn mine(&mut self, node: usize) {
        // One transfer from a random funded key, with the nonce this node's ledger expects.
        let k = SecretKey::from_bytes(&[1 + self.rng.below(KEYS as u64) as u8; 32]);
        let chain = &mut self.nodes[node].chain;
        let to = SecretKey::from_bytes(&[1 + self.rng.below(KEYS as u64) as u8; 32]).public().address();
        let tx = Transaction {
            chain: chain.chain_id(),
            from: k.public(),
            nonce: chain.ledger().account(&k.public().address()).nonce,
            fee: 1 + self.rng.below(10),
            kind: TxKind::Transfer { to, amount: 1 + self.rng.below(100) },
        }
        .sign(&k);
        let miner = SecretKey::from_bytes(&[100 + node as u8; 32]).public().address();
        let template = chain.template(miner, vec![tx], self.now);
        let nonce = self.rng.next();
        let block = match seal(template, nonce, 10_000) {
            Ok(Some(b)) => b,
            other => {
                self.report.violations.push(format!("node {node} could not seal a block: {:?}", other.err()));
                return;
            }
        };
        self.report.blocks_mined += 1;
        self.receive(node, node, block.clone());
        self.broadcast(node, &block);
    }

    fn run(&mut self) {
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            self.now = at;
            let Some(event) = self.events.remove(&seq) else { continue };
            match event {
                Event::Mine { node } => {
                    if self.nodes[node].up {
                        self.mine(node);
                    }
                    if self.faults_on() {
                        let next = self.rng.exponential(self.cfg.block_interval_ms * self.cfg.nodes as u64);
                        self.schedule(self.now + next, Event::Mine { node });
                    }
                }
                Event::Deliver { to, from, msg } => {
                    if !self.nodes[to].up {
                        continue;
                    }
                    match msg {
                        Msg::Block(b) => self.receive(to, from, *b),
                        Msg::GetBlock(id) => {
                            if let Some(b) = self.nodes[to].chain.block(&id).cloned() {
                                let faults = self.faults_on();
                                self.send(to, from, Msg::Block(Box::new(b)), faults);
                            }
                        }
                    }
                }
                Event::Crash { node, down_ms } => {
                    self.nodes[node].up = false;
                    self.schedule(self.now + down_ms, Event::Restart { node });
                }
                Event::Restart { node } => {
                    // No persistence yet: the node comes back empty and resyncs from peers.
                    self.nodes[node] = Node {
                        chain: Chain::new(self.genesis.clone()).expect("valid genesis"),
                        up: true,
                        orphans: HashMap::new(),
                    };
                    let peer = (node + 1) % self.cfg.nodes;
                    let tip = self.nodes[peer].chain.tip();
                    if let Some(b) = self.nodes[peer].chain.block(&tip).cloned() {
                        self.send(peer, node, Msg::Block(Box::new(b)), false);
                    }
                }
            }
        }
    }
}

/// Runs one seed and checks the properties.
pub fn run(seed: u64, cfg: &SimConfig) -> SimReport {
    let genesis = genesis();
    let nodes = (0..cfg.nodes)
        .map(|_| Node { chain: Chain::new(genesis.clone()).expect("valid genesis"), up: true, orphans: HashMap::new() })
        .collect();
    let mut sim = Sim {
        cfg: cfg.clone(),
        rng: Rng(SplitMix64::new(seed)),
        now: GENESIS_TIME,
        seq: 0,
        queue: BinaryHeap::new(),
        events: HashMap::new(),
        nodes,
        partition: None,
        report: SimReport { seed, ..Default::default() },
        genesis,
    };
    let end = GENESIS_TIME + cfg.duration_ms;
    if cfg.partition && cfg.nodes >= 2 {
        let until = if cfg.heal { GENESIS_TIME + cfg.duration_ms / 2 } else { u64::MAX };
        sim.partition = Some((GENESIS_TIME + cfg.duration_ms / 4, until));
    }
    for node in 0..cfg.nodes {
        let first = sim.rng.exponential(cfg.block_interval_ms * cfg.nodes as u64);
        sim.schedule(GENESIS_TIME + first, Event::Mine { node });
    }
    for _ in 0..cfg.crashes {
        let node = sim.rng.below(cfg.nodes as u64) as usize;
        let at = GENESIS_TIME + sim.rng.below(cfg.duration_ms * 3 / 4);
        let down = 1 + sim.rng.below(cfg.duration_ms / 5);
        sim.schedule(at, Event::Crash { node, down_ms: down });
    }
    sim.run();

    // Healed and quiet: every node re-announces its tip, then one node mines a final block
    // on the heaviest chain it knows, which every node must adopt.
    sim.now = sim.now.max(end) + 1;
    for node in 0..cfg.nodes {
        sim.nodes[node].up = true;
        let tip = sim.nodes[node].chain.tip();
        if let Some(b) = sim.nodes[node].chain.block(&tip).cloned() {
            sim.broadcast(node, &b);
        }
    }
    sim.run();
    let heaviest = (0..cfg.nodes).max_by_key(|&n| (sim.nodes[n].chain.tip_work(), Reverse(n))).unwrap_or(0);
    sim.now += sim.cfg.block_interval_ms;
    sim.mine(heaviest);
    sim.run();
    if !cfg.heal && cfg.nodes >= 2 {
        // The other half mines too, so both sides have moved on.
        let other = if heaviest < cfg.nodes / 2 { cfg.nodes - 1 } else { 0 };
        sim.now += sim.cfg.block_interval_ms;
        sim.mine(other);
        sim.run();
    }

    let tips: BTreeMap<Hash, Vec<usize>> = (0..cfg.nodes).fold(BTreeMap::new(), |mut m, n| {
        m.entry(sim.nodes[n].chain.tip()).or_default().push(n);
        m
    });
    if tips.len() != 1 {
        sim.report.violations.push(format!("{} different tips after healing: {tips:?}", tips.len()));
    }
    // No transaction twice on the final chain of node 0.
    let chain = &sim.nodes[0].chain;
    let mut seen = HashSet::new();
    for h in 1..=chain.height() {
        let id = chain.active_id(h).expect("active height");
        for tx in &chain.block(&id).expect("active block").txs {
            if !seen.insert(tx.id()) {
                sim.report.violations.push(format!("transaction {:?} applied twice", tx.id()));
            }
        }
    }
    sim.report.final_height = chain.height();
    sim.report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honest_runs_converge_without_violations() {
        for seed in 0..8 {
            let r = run(seed, &SimConfig::default());
            assert!(r.violations.is_empty(), "seed {seed}: {:?}", r.violations);
            assert!(r.final_height > 5 && r.blocks_mined >= r.final_height);
        }
    }

    #[test]
    fn the_same_seed_replays_exactly() {
        let (a, b) = (run(42, &SimConfig::default()), run(42, &SimConfig::default()));
        assert_eq!(
            (a.blocks_mined, a.reorgs, a.messages, a.final_height),
            (b.blocks_mined, b.reorgs, b.messages, b.final_height)
        );
    }

    #[test]
    fn an_unhealed_partition_is_reported() {
        let cfg = SimConfig { heal: false, crashes: 0, ..SimConfig::default() };
        let flagged = (0..4).filter(|&s| run(s, &cfg).violations.iter().any(|v| v.contains("different tips"))).count();
        assert_eq!(flagged, 4, "the checker must notice two halves that never reconcile");
    }
}
