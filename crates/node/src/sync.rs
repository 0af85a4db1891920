//! Wiring the chain to the network: serve blocks, import what peers send, fetch missing parents.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use ergon_chain::{BlockRejection, CheckedBlock, Imported, Refusal, TxRejection};
use ergon_net::{Command, Event, NetConfig, PeerId, Request, Verdict};
use ergon_types::{Block, Canonical, Hash, SignedTransaction};

use crate::{now_ms, Shared};

// Every valid block fits one gossip message and one block response.
const _: () = assert!(<Block as Canonical>::MAX_BYTES <= ergon_net::MAX_MESSAGE_BYTES);

pub fn start_network(
    shared: &Arc<Shared>,
    listen: &str,
    peers: &[String],
    mdns: bool,
    identity: [u8; 32],
) -> Result<(), String> {
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
            Request::BlockAt(h) => node.chain.active_id(*h)?,
        };
        node.chain.block(&id).map(|b| b.encode())
    });
    let serving = shared.clone();
    let blob_provider: ergon_net::BlobProvider =
        Arc::new(move |name: &[u8; 32], index: u32| serving.blob_piece(name, index));
    let (handle, mut events) =
        ergon_net::spawn(NetConfig { listen, peers, chain_id, mdns, identity }, provider, blob_provider)?;
    tracing::info!(peer_id = %handle.peer_id, "network started");
    let _ = shared.net.set(handle);
    let shared = shared.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            match ev {
                Event::Block { from, bytes, gossip } => {
                    // Off the async workers: checking and importing a block is blocking work.
                    let (s, solicited) = (shared.clone(), gossip.is_none());
                    let verdict = tokio::task::spawn_blocking(move || on_block(&s, from, &bytes, solicited))
                        .await
                        .unwrap_or(Verdict::Ignore);
                    if let Some(message) = gossip {
                        shared.send(Command::Verdict { message, verdict });
                    }
                }
                Event::Tx { from, bytes, gossip } => {
                    let verdict = on_tx(&shared, from, &bytes);
                    shared.send(Command::Verdict { message: gossip, verdict });
                }
                Event::PeerConnected(peer) => tracing::info!(%peer, "peer connected"),
            }
        }
    });
    Ok(())
}

/// Admits a gossiped transaction; forwards only those this node would mine.
fn on_tx(shared: &Shared, from: PeerId, bytes: &[u8]) -> Verdict {
    let Ok(tx) = SignedTransaction::decode(bytes) else {
        shared.send(Command::Punish(from));
        return Verdict::Reject;
    };
    let mut node = shared.lock();
    let node = &mut *node;
    match node.mempool.admit(&node.chain, tx) {
        Ok(_) => Verdict::Accept,
        // Forged: the peer relayed what no honest node would.
        Err(Refusal::Invalid(TxRejection::BadSignature | TxRejection::WrongChain)) => Verdict::Reject,
        // A nonce or balance race, a fee below this pool's floor, a full pool: not forwarded,
        // and no fault of the peer's (its view of the tip may differ from ours).
        Err(_) => Verdict::Ignore,
    }
}

/// Blocks asked for at once while catching up with a peer far ahead.
const CATCH_UP_WINDOW: u64 = 16;
/// A catch-up that made no progress for this long asks again from the tip.
const CATCH_UP_STALL: std::time::Duration = std::time::Duration::from_secs(5);

/// Following a peer whose chain is far ahead: forward by height, a window at a time, so a
/// fresh node syncs any length of chain without holding it all as orphans.
#[derive(Default)]
pub struct CatchUp {
    peer: Option<PeerId>,
    target: u64,
    next: u64,
    progress_at: Option<std::time::Instant>,
}

impl CatchUp {
    /// Notes that `peer` has a chain up to `height`.
    fn aim(&mut self, peer: PeerId, height: u64) {
        if height > self.target {
            self.peer = Some(peer);
            self.target = height;
        }
    }

    /// Asks for the next blocks of the window above `height`; starts again from `height` + 1 if
    /// the last requests went unanswered.
    fn request_more(&mut self, shared: &Shared, height: u64) {
        let Some(peer) = self.peer else { return };
        if self.target <= height {
            *self = CatchUp::default();
            return;
        }
        let stalled = self.progress_at.is_none_or(|t| t.elapsed() > CATCH_UP_STALL);
        if stalled || self.next <= height {
            self.next = height + 1;
            self.progress_at = Some(std::time::Instant::now());
        }
        while self.next <= self.target.min(height + CATCH_UP_WINDOW) {
            shared.send(Command::Request { peer, request: Request::BlockAt(self.next) });
            self.next += 1;
        }
    }
}

/// Nudges a stalled catch-up (answers lost, a peer gone); called every few seconds.
pub fn catch_up_tick(shared: &Shared) {
    let mut node = shared.lock();
    let height = node.chain.height();
    node.catch_up.request_more(shared, height);
}

/// Imports a block (and any orphans it unlocks); asks the sender for a missing parent, or, if it
/// is far ahead, catches up with it by height. Returns the verdict on the block itself (not on
/// the orphans it unlocked). `solicited`: an answer to this node's own request.
fn on_block(shared: &Shared, from: PeerId, bytes: &[u8], solicited: bool) -> Verdict {
    let Ok(block) = Block::decode(bytes) else {
        shared.send(Command::Punish(from));
        return Verdict::Reject;
    };
    if shared.lock().chain.knows(&block.header.id()) || shared.storage_error().is_some() {
        return Verdict::Ignore; // known, or nowhere to keep it until the disk takes writes again
    }
    // The expensive checks (proof of work, every signature) without the node's lock, so the
    // API and the miner go on meanwhile; the lock is taken only to import.
    let height = block.header.height;
    let block = match CheckedBlock::check(block) {
        Ok(b) => b,
        Err(reason) => {
            shared.stats.blocks_rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(height, %reason, peer = %from, "refused a block");
            shared.send(Command::Punish(from));
            return Verdict::Reject;
        }
    };
    let mut verdict = None;
    let mut node = shared.lock();
    let node = &mut *node;
    let before = node.chain.tip();
    let mut pending = vec![block];
    while let Some(b) = pending.pop() {
        let (id, parent, height) = (b.block().header.id(), b.block().header.parent, b.block().header.height);
        match node.store.import_checked(&mut node.chain, b.clone(), now_ms()) {
            Ok(Ok(imported)) => {
                let known = imported == Imported::AlreadyKnown;
                verdict.get_or_insert(if known { Verdict::Ignore } else { Verdict::Accept });
                if !known {
                    node.seen_ms.insert(id, now_ms());
                    shared.stats.blocks_imported.fetch_add(1, Ordering::Relaxed);
                    node.catch_up.progress_at = Some(std::time::Instant::now());
                    tracing::info!(height, %id, ?imported, "imported a block");
                }
                pending.extend(node.orphans.take_children(&id));
            }
            Ok(Err(BlockRejection::UnknownParent(_))) => {
                verdict.get_or_insert(Verdict::Ignore);
                let tip = node.chain.height();
                if height > tip + CATCH_UP_WINDOW {
                    // Far ahead: catch up by height rather than walk parents back from here.
                    node.catch_up.aim(from, height);
                } else {
                    match node.orphans.insert(&node.chain, b, from, solicited) {
                        Ok(()) => shared.send(Command::Request { peer: from, request: Request::Block(parent.0) }),
                        Err(why) => tracing::debug!(height, %why, "orphan not kept"),
                    }
                }
            }
            // Our clock may lag: not proof of a bad peer.
            Ok(Err(BlockRejection::TooFarInFuture { .. })) => {
                verdict.get_or_insert(Verdict::Ignore);
            }
            Ok(Err(reason)) => {
                verdict.get_or_insert(Verdict::Reject);
                shared.stats.blocks_rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(height, %reason, peer = %from, "refused a block");
                shared.send(Command::Punish(from));
            }
            Err(e) => {
                verdict.get_or_insert(Verdict::Ignore);
                shared.storage_failed(&e.to_string());
                break;
            }
        }
    }
    if node.chain.tip() != before {
        node.mempool.refresh(&node.chain);
    }
    let height = node.chain.height();
    node.catch_up.request_more(shared, height);
    verdict.unwrap_or(Verdict::Ignore)
}
