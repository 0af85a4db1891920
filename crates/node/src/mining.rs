//! The mining thread: seal filler blocks on the tip, a few nonces at a time, so a new tip or a
//! shutdown interrupts it within milliseconds.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::time::{Duration, Instant};

use ergon_chain::{seal, Template};
use ergon_types::Hash;

use crate::{now_ms, Shared};

/// Nonces tried before checking whether the tip moved.
const NONCES_PER_ROUND: u64 = 8;

/// A template is rebuilt when the tip moves, or this often to pick up new transactions and time.
const TEMPLATE_REFRESH: Duration = Duration::from_secs(1);

pub fn mine_forever(shared: Arc<Shared>) {
    let mut nonce = 0u64;
    let mut current: Option<(Hash, Instant, Template)> = None;
    while !shared.stop.load(Ordering::Relaxed) {
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
        let mut node = shared.lock();
        if node.chain.tip() != parent {
            continue; // someone else extended the chain meanwhile
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
                return;
            }
        }
    }
}
