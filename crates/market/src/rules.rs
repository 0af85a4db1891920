//! Static checks of offers and job specs: what a transaction must satisfy before it changes
//! anything.

use ergon_types::job::{MAX_REPLICAS, MAX_SHARDS};
use ergon_types::{JobKind, JobSpec, Offer};

use ergon_pouw::dispute::{MAX_DISPUTE_K, MAX_DISPUTE_N};

use crate::model::macs_of;
use crate::{MarketParams, MarketRejection, MIN_LEASE_BLOCKS};

pub(crate) fn check_offer(offer: &Offer) -> Result<(), MarketRejection> {
    let bad = |why: &str| Err(MarketRejection::BadOffer(why.to_string()));
    if offer.slots == 0 || offer.slots > Offer::MAX_SLOTS {
        return bad("slots must be in 1..=16");
    }
    if offer.price_per_gmac == 0 {
        return bad("price must be positive");
    }
    if offer.profile.int8_gmacs == 0 || offer.profile.cpu_cores == 0 || offer.profile.memory_mib == 0 {
        return bad("profile must claim cores, memory and int8 throughput (run `ergon bench hw`)");
    }
    Ok(())
}

pub(crate) fn check_job(spec: &JobSpec, params: &MarketParams) -> Result<(), MarketRejection> {
    let bad = |why: String| Err(MarketRejection::BadJob(why));
    let q = &spec.requirements;
    if spec.shards.is_empty() || spec.shards.len() > MAX_SHARDS {
        return bad(format!("needs 1..={MAX_SHARDS} shards"));
    }
    if q.replicas == 0 || q.replicas > MAX_REPLICAS {
        return bad(format!("replicas must be in 1..={MAX_REPLICAS}"));
    }
    if q.lease_blocks < MIN_LEASE_BLOCKS || q.lease_blocks > params.max_lease_blocks {
        return bad(format!(
            "lease_blocks must be in {MIN_LEASE_BLOCKS}..={} (a leaseholder needs time to fetch the inputs, or to give the lease back if they never come)",
            params.max_lease_blocks
        ));
    }
    if spec.max_price_per_gmac == 0 {
        return bad("max price must be positive".into());
    }
    if spec.macs_per_shard == 0 {
        return bad("multiply-adds per shard must be positive".into());
    }
    if spec.kind != JobKind::Matmul && (spec.shards.len() != 1 || spec.inputs.len() != 2) {
        return bad(format!(
            "a {} job has one shard (replicas check it) and two inputs, not {} and {}",
            spec.kind.name(),
            spec.shards.len(),
            spec.inputs.len()
        ));
    }
    if spec.kind == JobKind::Matmul {
        let (k, n) = (spec.shards[0].k, spec.shards[0].n);
        for (i, s) in spec.shards.iter().enumerate() {
            if s.k != k || s.n != n {
                return bad(format!("shard {i} is {}×{}×{}, but shards must share k and n", s.m, s.k, s.n));
            }
            if s.k as usize > MAX_DISPUTE_K || s.n as usize > MAX_DISPUTE_N {
                return bad(format!(
                    "shard {i} is {}×{}×{}: a wrong or withheld result could not be proven on chain beyond k, n = {MAX_DISPUTE_K}; split the product",
                    s.m, s.k, s.n
                ));
            }
            if macs_of(s) > spec.macs_per_shard {
                return bad(format!(
                    "shard {i} has {} multiply-adds, more than the declared {}",
                    macs_of(s),
                    spec.macs_per_shard
                ));
            }
        }
    }
    Ok(())
}
