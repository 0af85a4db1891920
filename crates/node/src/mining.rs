//! The mining thread: seal filler blocks on the tip, a few nonces at a time, so a new tip or a
//! shutdown interrupts it within milliseconds; on a provider node, leased shards whose inputs
//! are ready come first, each computed by one mining pass on its own matrices.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::time::{Duration, Instant};

use ergon_chain::{mine_once, seal, Template};
use ergon_types::Hash;

use crate::provider::{Computed, ReadyWork};
use crate::{now_ms, Shared};

/// Nonces tried before checking whether the tip moved.
const NONCES_PER_ROUND: u64 = 8;

/// A template is rebuilt when the tip moves, or this often to pick up new transactions and time.
const TEMPLATE_REFRESH: Duration = Duration::from_secs(1);

pub fn mine_forever(shared: Arc<Shared>) {
    let mut nonce = 0u64;
    let mut current: Option<(Hash, Instant, Template)> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let ready = shared.ready.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        if let Some(work) = ready {
            compute_leased(&shared, work);
            continue;
        }
        let template = {
            let mut node = shared.lock();
            let tip = node.chain.tip();
            let stale = current.as_ref().is_none_or(|(t, at, _)| *t != tip || at.elapsed() >= TEMPLATE_REFRESH);
            if stale {
                let pending = node.mempool.pending();
                current = Some((tip, Instant::now(), node.chain.template(shared.miner, pending, now_ms())));
            }
            current.as_ref().map(|c| c.2.clone()).expect("set above")
        };
        let (parent, work) = (template.header.parent, template.header.work);
        let macs = work.m as u64 * work.k as u64 * work.n as u64;
        let sealed = seal(template, nonce, NONCES_PER_ROUND);
        nonce = nonce.wrapping_add(NONCES_PER_ROUND);
        shared.stats.macs_mined.fetch_add(macs * NONCES_PER_ROUND, Ordering::Relaxed);
        let block = match sealed {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(error = %e, "mining failed");
                return;
            }
        };
        if !accept_own(&shared, block, parent) {
            return;
        }
    }
}

/// A leased shard: one mining pass on its matrices computes the client's product exactly, and
/// may win a block. The product goes to the provider agent either way.
fn compute_leased(shared: &Arc<Shared>, ready: ReadyWork) {
    let ReadyWork { key, work } = ready;
    let template = {
        let mut node = shared.lock();
        let pending = node.mempool.pending();
        node.chain.template_on_job(shared.miner, pending, now_ms(), work)
    };
    let template = match template {
        Ok(t) => t,
        Err(reason) => {
            tracing::warn!(job = %key.0.to_hex(), shard = key.1, %reason, "cannot mine on this lease any more");
            return;
        }
    };
    let (parent, w) = (template.header.parent, template.header.work);
    let macs = w.m as u64 * w.k as u64 * w.n as u64;
    match mine_once(&template, 0) {
        Ok((block, product)) => {
            shared.stats.macs_mined.fetch_add(macs, Ordering::Relaxed);
            shared.stats.macs_mined_on_jobs.fetch_add(macs, Ordering::Relaxed);
            shared.computed.lock().unwrap_or_else(|p| p.into_inner()).push(Computed { key, product, macs });
            if let Some(block) = block {
                tracing::info!(job = %key.0.to_hex(), shard = key.1, "a block was won on a leased job");
                accept_own(shared, block, parent);
            }
        }
        Err(e) => tracing::error!(error = %e, "mining a leased shard failed"),
    }
}

/// Imports and publishes a block this node mined; false if the store failed (stop mining).
fn accept_own(shared: &Arc<Shared>, block: ergon_types::Block, parent: Hash) -> bool {
    {
        let mut node = shared.lock();
        if node.chain.tip() != parent {
            return true; // someone else extended the chain meanwhile
        }
        let (height, id) = (block.header.height, block.header.id());
        let bytes = ergon_types::Canonical::encode(&block);
        let node = &mut *node;
        match node.store.import(&mut node.chain, block, now_ms()) {
            Ok(Ok(_)) => {
                shared.stats.blocks_mined.fetch_add(1, Ordering::Relaxed);
                node.seen_ms.insert(id, now_ms());
                node.mempool.prune(&node.chain);
                shared.send(ergon_net::Command::PublishBlock(bytes));
                tracing::info!(height, tip = %node.chain.tip(), "mined a block");
            }
            Ok(Err(reason)) => tracing::error!(height, %reason, "own block refused (bug)"),
            Err(e) => {
                tracing::error!(error = %e, "store failed; stopping the miner");
                return false;
            }
        }
    }
    true
}
