//! What the market's integration tests share: parameters, offers, jobs and lookups.
#![allow(dead_code)] // Each test file uses its own part.

use ergon_market::load::address;
use ergon_market::{Market, MarketParams, Subject, TaskState};
use ergon_pouw::WorkCommitment;
use ergon_types::{Address, HardwareProfile, Hash, JobKind, JobSpec, Offer, Requirements};

pub fn params() -> MarketParams {
    MarketParams {
        min_provider_stake: 100,
        challenge_blocks: 2,
        job_burn_percent: 10,
        max_strikes: 2,
        max_lease_blocks: 100,
        // Collateral zero (audited always, nobody colludes) unless a test sizes it.
        audit_permille: 1000,
        collusion_percent: 0,
        // Every memory claim counts (these tests are not about memory challenges, except the
        // one that sets a floor).
        memory_floor_mib: u64::MAX,
        ..MarketParams::devnet()
    }
}

pub fn cpu(price: u64, memory_gib: u64, gmacs: u64) -> Offer {
    Offer {
        profile: HardwareProfile {
            cpu_cores: 8,
            memory_mib: memory_gib << 10,
            gpu_model: String::new(),
            gpu_memory_mib: 0,
            int8_gmacs: gmacs,
        },
        price_per_gmac: price,
        slots: 1,
        encryption_key: [1; 32],
    }
}

/// A matmul job of `shards` shards of 1024×1024×1024 (2^30 multiply-adds each).
pub fn matmul(shards: usize, replicas: u8, max_price: u64) -> JobSpec {
    let w = WorkCommitment { m: 1024, k: 1024, n: 1024, root_a: [3; 32], root_b: [4; 32] };
    JobSpec {
        kind: JobKind::Matmul,
        inputs: vec![],
        shards: vec![w; shards],
        macs_per_shard: 1 << 30,
        requirements: Requirements { min_memory_mib: 0, min_int8_gmacs: 0, gpu: false, replicas, lease_blocks: 5 },
        max_price_per_gmac: max_price,
        client_key: [2; 32],
    }
}

pub const CLIENT: u64 = 1000;

pub fn submit(m: &mut Market, spec: JobSpec, nonce: u64, height: u64) -> Hash {
    m.submit(address(CLIENT), Hash::of("tx", &[&nonce.to_le_bytes()]), spec, height, &params()).unwrap()
}

pub fn leaseholder(m: &Market, job: &Hash, shard: u16, replica: u8) -> Option<Address> {
    match m.job(job).unwrap().task(shard, replica).state {
        TaskState::Leased { provider, .. } => Some(provider),
        _ => None,
    }
}

pub fn log_text(m: &Market, s: Subject) -> String {
    m.decisions(&s).iter().map(|d| format!("{}: {}", d.height, d.text)).collect::<Vec<_>>().join("\n")
}
