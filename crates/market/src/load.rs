//! Synthetic load for `ergon bench market`: a varied order book, and a saturating-load run in
//! virtual time that measures how busy providers are kept. Deterministic from a seed; the bench
//! does the timing (this crate reads no clock).

use std::collections::{BTreeSet, HashMap, VecDeque};

use ergon_pouw::WorkCommitment;
use ergon_types::{Address, HardwareProfile, Hash, JobKind, JobSpec, Offer, Requirements};

use crate::model::TaskKey;
use crate::state::Market;
use crate::MarketParams;

/// The seeded generator synthetic load is drawn from.
pub use ergon_kernels::rng::SplitMix64 as Rng;

/// Synthetic providers bond enough to cover the collateral of any synthetic order in every slot.
pub const SYNTHETIC_BOND: u64 = 1 << 40;

pub fn address(i: u64) -> Address {
    let mut a = [0u8; 20];
    a[..8].copy_from_slice(&i.to_le_bytes());
    a[8] = 0xA5;
    Address(a)
}

/// A varied provider: CPU boxes and GPU boxes, prices 50..=150 per G MAC.
pub fn offer(rng: &mut Rng, slots: u8) -> Offer {
    let gpu = rng.range(0, 4) == 0;
    Offer {
        profile: HardwareProfile {
            cpu_cores: rng.range(2, 64) as u32,
            memory_mib: rng.range(4, 256) << 10,
            gpu_model: if gpu { "H100".into() } else { String::new() },
            gpu_memory_mib: if gpu { 80 << 10 } else { 0 },
            int8_gmacs: if gpu { rng.range(500, 2000) } else { rng.range(20, 200) },
        },
        price_per_gmac: rng.range(50, 150),
        slots,
        encryption_key: [7; 32],
    }
}

/// A one-shard matmul order of `macs` multiply-adds (k = n = 1024, m = macs / 1024², so every
/// order stays within the dispute limits) whose
/// requirements vary like real demand: most fit most machines, some need a GPU or a lot of memory.
pub fn order(rng: &mut Rng, macs: u64, lease_blocks: u32) -> JobSpec {
    let m = (macs / (1 << 20)).clamp(1, 1 << 22) as u32;
    let mut root = [0u8; 32];
    root[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    let shard = WorkCommitment { m, k: 1024, n: 1024, root_a: root, root_b: root };
    let wants_gpu = rng.range(0, 9) == 0;
    JobSpec {
        kind: JobKind::Matmul,
        inputs: vec![],
        shards: vec![shard],
        macs_per_shard: 1024 * 1024 * m as u64,
        requirements: Requirements {
            min_memory_mib: rng.range(1, 32) << 10,
            min_int8_gmacs: if wants_gpu { 400 } else { rng.range(0, 50) },
            gpu: wants_gpu,
            replicas: 1,
            lease_blocks,
        },
        max_price_per_gmac: rng.range(40, 200),
        client_key: [9; 32],
    }
}

/// A synthetic validator's judgments that `provider` answers at its claim and holds the memory
/// it claims (matching uses only what validators verified; these synthetic machines are as
/// they say).
fn verify_claim(m: &mut Market, provider: Address, profile: &HardwareProfile) {
    let v = address(u64::MAX);
    m.judge(v, 1, provider, profile.int8_gmacs, "synthetic", 0).expect("a registered provider");
    m.judge_memory(v, 1, provider, profile.memory_mib, "synthetic", 0).expect("a registered provider");
}

/// A market with `providers` registered and `orders` one-shard jobs submitted, not yet matched:
/// the next `end_block` does the matching.
pub fn order_book(providers: u64, orders: u64, seed: u64, params: &MarketParams) -> Market {
    let mut rng = Rng::new(seed);
    let mut m = Market::default();
    for i in 0..providers {
        let offer = offer(&mut rng, 2);
        let profile = offer.profile.clone();
        m.register(address(i), offer, SYNTHETIC_BOND, 0, params).expect("synthetic offers are valid");
        verify_claim(&mut m, address(i), &profile);
    }
    for i in 0..orders {
        let macs = rng.range(1, 64) << 30;
        let spec = order(&mut rng, macs, 50);
        let tx = Hash::of("bench order", &[&i.to_le_bytes()]);
        m.submit(address(1 << 40 | i), tx, spec, 0, params).expect("synthetic orders are valid");
    }
    m
}

/// What a saturating-load run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadReport {
    pub providers: u64,
    pub blocks: u64,
    pub block_seconds: f64,
    /// Time providers spent computing over the time they could have, after warm-up.
    pub utilization: f64,
    pub tasks_completed: u64,
    pub mean_task_seconds: f64,
}

/// Runs `blocks` blocks of virtual time with more work queued than providers can do. Each
/// provider computes its leases one after another at its claimed throughput, posts each result
/// in the block after it finishes, and is matched again at the end of that block. Utilization
/// counts compute time only, from block `blocks / 5` on (the first fifth is warm-up).
pub fn saturating_load(providers: u64, blocks: u64, block_seconds: f64, slots: u8, seed: u64) -> LoadReport {
    let params = MarketParams { challenge_blocks: 1, ..MarketParams::devnet() };
    let mut rng = Rng::new(seed);
    let mut m = Market::default();
    let mut speed = HashMap::new();
    for i in 0..providers {
        let mut o = offer(&mut rng, slots);
        // Everyone fits everything: this run measures idle time from matching, not from mismatch.
        o.profile.memory_mib = 1 << 20;
        o.profile.gpu_model = "any".into();
        o.profile.gpu_memory_mib = 1 << 20;
        speed.insert(address(i), o.profile.int8_gmacs as f64 * 1e9);
        let profile = o.profile.clone();
        m.register(address(i), o, SYNTHETIC_BOND, 0, &params).expect("valid offer");
        verify_claim(&mut m, address(i), &profile);
    }
    // Per provider: leased tasks not started or in progress (seconds left), and those finished
    // but not yet posted.
    let mut work: HashMap<Address, VecDeque<(TaskKey, f64)>> = HashMap::new();
    let mut done: Vec<(Address, TaskKey)> = vec![];
    let mut known: BTreeSet<TaskKey> = BTreeSet::new();
    let (mut busy, mut available, mut completed, mut task_seconds) = (0.0, 0.0, 0u64, 0.0);
    let mut submitted = 0u64;
    let warmup = blocks / 5;
    for h in 1..=blocks {
        // Results finished during the last block go into this one.
        for (p, (id, shard, _)) in done.drain(..) {
            m.post_result(p, id, shard, Hash::of("result", &[&id.0]), 0, h, &params).expect("leaseholder posts");
            completed += 1;
        }
        // Keep the queue deeper than the providers' slots.
        while (m.queued() as u64) < providers * slots as u64 {
            // 10 G to 4 T multiply-adds: seconds to minutes on these machines.
            let macs = rng.range(10, 4000) << 30;
            let mut spec = order(&mut rng, macs, 1000);
            spec.requirements = Requirements { replicas: 1, lease_blocks: 1000, ..Requirements::default() };
            spec.max_price_per_gmac = 1000;
            let tx = Hash::of("load order", &[&submitted.to_le_bytes()]);
            m.submit(address(1 << 40 | submitted), tx, spec, h, &params).expect("valid order");
            submitted += 1;
        }
        m.end_block(h, &params);
        for p in m.providers() {
            for key in &p.leases {
                if known.insert(*key) {
                    let job = m.job(&key.0).expect("leased jobs exist");
                    let seconds = job.shard_macs(key.1) as f64 / speed[&p.owner];
                    task_seconds += seconds;
                    work.entry(p.owner).or_default().push_back((*key, seconds));
                }
            }
        }
        // Compute during the next block interval.
        for i in 0..providers {
            let owner = address(i);
            let q = work.entry(owner).or_default();
            let mut left = block_seconds;
            while left > 0.0 {
                let Some((key, need)) = q.front_mut() else { break };
                let step = need.min(left);
                *need -= step;
                left -= step;
                if h > warmup {
                    busy += step;
                }
                if *need <= 0.0 {
                    done.push((owner, *key));
                    q.pop_front();
                }
            }
            if h > warmup {
                available += block_seconds;
            }
        }
    }
    LoadReport {
        providers,
        blocks,
        block_seconds,
        utilization: busy / available,
        tasks_completed: completed,
        mean_task_seconds: task_seconds / known.len().max(1) as f64,
    }
}
