//! Wiring the chain to the network: serve blocks, import what peers send, fetch missing parents.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use ergon_chain::{BlockRejection, Imported};
use ergon_net::{Command, Event, NetConfig, PeerId, Request};
use ergon_types::{Block, Canonical, Hash, SignedTransaction};

use crate::{now_ms, Shared};

/// Orphans kept at most (blocks whose parent has not arrived yet).
const MAX_ORPHANS: usize = 10_000;

pub fn start_network(shared: &Arc<Shared>, listen: &str, peers: &[String], mdns: bool) -> Result<(), String> {
    let listen = listen.parse().map_err(|e| format!("--listen {listen:?}: {e}"))?;
    let peers = peers
        .iter()
        .map(|p| p.parse().map_err(|e| format!("--peer {p:?}: {e}")))
        .collect::<Result<Vec<_>, String>>()?;
    let chain_id = shared.lock().chain.chain_id().0;
    let serving = shared.clone();
    let provider: ergon_net::Provider = Arc::new(move |req: &Request| {
        let node = serving.lock();
        let id = match req {
            Request::Block(id) => Hash(*id),
            Request::Tip => node.chain.tip(),
        };
        node.chain.block(&id).map(|b| b.encode())
    });
    let (handle, mut events) = ergon_net::spawn(NetConfig { listen, peers, chain_id, mdns }, provider)?;
    tracing::info!(peer_id = %handle.peer_id, "network started");
    let _ = shared.net.set(handle);
    let shared = shared.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            match ev {
                Event::Block { from, bytes } => on_block(&shared, from, &bytes),
                Event::Tx { from, bytes } => on_tx(&shared, from, &bytes),
                Event::PeerConnected(peer) => tracing::info!(%peer, "peer connected"),
            }
        }
    });
    Ok(())
}

fn on_tx(shared: &Shared, from: PeerId, bytes: &[u8]) {
    match SignedTransaction::decode(bytes) {
        Ok(tx) => {
            let mut node = shared.lock();
            let node = &mut *node;
            let _ = node.mempool.admit(&node.chain, tx);
        }
        Err(_) => shared.send(Command::Punish(from)),
    }
}

/// Imports a block (and any orphans it unlocks); asks the sender for a missing parent.
fn on_block(shared: &Shared, from: PeerId, bytes: &[u8]) {
    let Ok(block) = Block::decode(bytes) else {
        shared.send(Command::Punish(from));
        return;
    };
    let mut node = shared.lock();
    let node = &mut *node;
    let mut pending = vec![block];
    while let Some(b) = pending.pop() {
        let (id, parent, height) = (b.header.id(), b.header.parent, b.header.height);
        match node.store.import(&mut node.chain, b.clone(), now_ms()) {
            Ok(Ok(imported)) => {
                if imported != Imported::AlreadyKnown {
                    node.seen_ms.insert(id, now_ms());
                    shared.stats.blocks_imported.fetch_add(1, Ordering::Relaxed);
                    node.mempool.prune(&node.chain);
                    tracing::info!(height, %id, ?imported, "imported a block");
                }
                if let Some(children) = node.orphans.remove(&id) {
                    pending.extend(children);
                }
            }
            Ok(Err(BlockRejection::UnknownParent(_))) => {
                if node.orphans.values().map(Vec::len).sum::<usize>() < MAX_ORPHANS {
                    node.orphans.entry(parent).or_default().push(b);
                }
                shared.send(Command::Request { peer: from, request: Request::Block(parent.0) });
            }
            // Our clock may lag: not proof of a bad peer.
            Ok(Err(BlockRejection::TooFarInFuture { .. })) => {}
            Ok(Err(reason)) => {
                shared.stats.blocks_rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(height, %reason, peer = %from, "refused a block");
                shared.send(Command::Punish(from));
            }
            Err(e) => tracing::error!(error = %e, "store failed"),
        }
    }
}
