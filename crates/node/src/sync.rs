//! Wiring the chain to the network: serve blocks and headers, import what peers send, fetch
//! missing parents, and catch up with a peer far ahead headers first (its branch's work is
//! judged from headers and proofs before any body is asked for; `docs/chain.md` §6).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use ergon_chain::headers::{check_proofs, RunTail};
use ergon_chain::{BlockRejection, Chain, CheckedBlock, Imported, Refusal, TxRejection};
use ergon_net::{Command, Event, NetConfig, PeerId, Request, Verdict};
use ergon_types::block::{Headers, MAX_HEADERS};
use ergon_types::{Block, BlockHeader, Canonical, Hash, SignedTransaction};

use crate::{now_ms, Shared};

// Every valid block fits one gossip message and one block response; a headers answer too.
const _: () = assert!(<Block as Canonical>::MAX_BYTES <= ergon_net::MAX_MESSAGE_BYTES);
const _: () = assert!(<Headers as Canonical>::MAX_BYTES <= ergon_net::MAX_MESSAGE_BYTES);

/// The active chain's headers and proofs from height `from` (at least 1), at most `count` and
/// as many as fit one message.
fn headers_from(chain: &Chain, from: u64, count: u16) -> Vec<u8> {
    let (mut run, mut bytes) = (vec![], 5);
    for h in from.max(1)..from.max(1).saturating_add(count.min(MAX_HEADERS as u16) as u64) {
        let Some(b) = chain.active_id(h).and_then(|id| chain.block(&id)) else { break };
        let size = <BlockHeader as Canonical>::MAX_BYTES + 4 + b.proof.encode().len();
        if bytes + size > <Headers as Canonical>::MAX_BYTES {
            break;
        }
        bytes += size;
        run.push((b.header.clone(), b.proof.clone()));
    }
    Headers(run).encode()
}

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
            Request::Headers { from, count } => return Some(headers_from(&node.chain, *from, *count)),
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
                Event::Poai { from, bytes, gossip } => {
                    let verdict = crate::poai::on_message(&shared, from, &bytes);
                    shared.send(Command::Verdict { message: gossip, verdict });
                }
                Event::Headers { from, bytes } => {
                    let s = shared.clone();
                    let _ = tokio::task::spawn_blocking(move || on_headers(&s, from, &bytes)).await;
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

/// A block with an unknown parent this far below the tip is a branch to judge by its headers,
/// not an orphan of a gossip race.
const ORPHAN_BELOW_TIP: u64 = 2;

/// How long a headers request may go unanswered before another is sent.
const HEADERS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Following a peer whose chain is far ahead: first its headers, a run at a time, until its
/// branch is shown to have more work than the tip; then its bodies, forward by height from
/// where it forks, a window at a time, so a fresh node syncs any length of chain without
/// holding it all as orphans, and no body of a lighter branch is ever fetched.
#[derive(Default)]
pub struct CatchUp {
    peer: Option<PeerId>,
    target: u64,
    /// Lowest height whose body is fetched (above the fork).
    floor: u64,
    next: u64,
    progress_at: Option<std::time::Instant>,
    headers: Option<HeadersAsked>,
}

/// Headers asked of a peer and not yet answered.
struct HeadersAsked {
    peer: PeerId,
    at: std::time::Instant,
    /// The end of its branch judged so far (None: the first run, which must fork from a block
    /// this node knows).
    tail: Option<RunTail>,
    from: u64,
    /// The height of the block it announced.
    claimed: u64,
}

impl CatchUp {
    /// Notes that `peer`'s branch, forking at `fork_height`, has more work than the tip up to
    /// `height`: its bodies are fetched from above the fork.
    fn aim(&mut self, peer: PeerId, height: u64, fork_height: u64) {
        if height > self.target {
            self.peer = Some(peer);
            self.target = height;
            self.floor = fork_height + 1;
            self.next = self.next.min(self.floor);
            self.progress_at = None;
        }
    }

    /// Whether a block of `peer`'s at `height` is one of the branch being fetched (judged by
    /// its headers already: one that arrives before its parent waits as an orphan).
    fn covers(&self, peer: PeerId, height: u64) -> bool {
        self.peer == Some(peer) && (self.floor..=self.target).contains(&height)
    }

    /// Asks `peer`, which claims a block far above the tip, for headers: from a little below
    /// the tip (a short fork is found at once; a deeper one is asked for again from lower).
    /// `from`: where to start (a retry from lower, or the run after `tail`); by default a
    /// little below the lower of the tip and the claimed height.
    fn ask_headers(
        &mut self,
        shared: &Shared,
        peer: PeerId,
        chain: &Chain,
        claimed: u64,
        from: Option<u64>,
        tail: Option<RunTail>,
    ) {
        if self.headers.as_ref().is_some_and(|h| h.at.elapsed() < HEADERS_PATIENCE) {
            return;
        }
        let from = from.unwrap_or(chain.height().min(claimed).saturating_sub(CATCH_UP_WINDOW).max(1));
        self.headers = Some(HeadersAsked { peer, at: std::time::Instant::now(), tail, from, claimed });
        shared.send(Command::Request { peer, request: Request::Headers { from, count: MAX_HEADERS as u16 } });
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
        if stalled || self.next < self.floor.min(height + 1) {
            self.next = self.floor.min(height + 1).max(1);
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

/// Judges a run of headers a peer sent: a branch shown heavier than the tip has its bodies
/// fetched; a lighter one that may go on is asked for its next headers; a lighter one that
/// ends is left (nothing of it downloaded but headers); invalid headers get the peer banned.
fn on_headers(shared: &Shared, from: PeerId, bytes: &[u8]) {
    let run = match Headers::decode(bytes) {
        Ok(Headers(run)) => run,
        Err(_) => return shared.send(Command::Punish(from)),
    };
    // The proofs outside the lock: milliseconds each.
    if let Err((i, why)) = check_proofs(&run) {
        tracing::warn!(peer = %from, index = i, %why, "refused a peer's headers");
        return shared.send(Command::Punish(from));
    }
    let full = run.len() == MAX_HEADERS;
    let headers: Vec<BlockHeader> = run.into_iter().map(|(h, _)| h).collect();
    let mut node = shared.lock();
    let node = &mut *node;
    let Some(asked) = node.catch_up.headers.take() else { return };
    if asked.peer != from || headers.is_empty() {
        node.catch_up.headers = Some(asked);
        return;
    }
    match node.chain.judge_headers(asked.tail.as_ref(), &headers, now_ms()) {
        Ok(run) if run.heavier => {
            // Heavier already: every later block of the branch only adds work, so its bodies
            // are fetched up to the height it announced (each still judged in full on import).
            let target = run.tail.header.height.max(asked.claimed);
            tracing::info!(peer = %from, fork = run.fork_height, height = run.tail.header.height, target,
                "a peer's branch has more work (judged from headers): fetching its blocks");
            node.catch_up.aim(from, target, run.fork_height);
            let height = node.chain.height();
            node.catch_up.request_more(shared, height);
        }
        Ok(run) if full => {
            let next = Some(run.tail.header.height + 1);
            node.catch_up.ask_headers(shared, from, &node.chain, asked.claimed, next, Some(run.tail));
        }
        Ok(run) => {
            tracing::info!(peer = %from, height = run.tail.header.height, work = %run.tail.work,
                "a peer's branch has less work than the tip (judged from headers): not fetched");
        }
        Err((_, BlockRejection::UnknownParent(_))) if asked.tail.is_none() && asked.from > 1 => {
            // It forks below where we asked: ask again from the reorganisation depth.
            let lower = node.chain.height().saturating_sub(node.chain.params().max_reorg_depth).max(1);
            let retry = Some(lower.min(asked.from - 1));
            node.catch_up.ask_headers(shared, from, &node.chain, asked.claimed, retry, None);
        }
        // Our clock may lag, or our limits differ: no fault of the peer's.
        Err((i, why)) if !why.blames_sender() => {
            tracing::info!(peer = %from, index = i, %why, "not taking a peer's headers (no fault of its own)");
        }
        Err((i, why)) => {
            tracing::warn!(peer = %from, index = i, %why, "refused a peer's headers");
            shared.send(Command::Punish(from));
        }
    }
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
                let judged = node.catch_up.covers(from, height);
                if !judged && (height > tip + CATCH_UP_WINDOW || height + ORPHAN_BELOW_TIP < tip) {
                    // Far ahead, or well below the tip: judge its branch's work from its
                    // headers first (then catch up by height), rather than walk its parents
                    // back one body at a time from here.
                    node.catch_up.ask_headers(shared, from, &node.chain, height, None, None);
                } else {
                    match node.orphans.insert(&node.chain, b, from, solicited) {
                        Ok(()) => shared.send(Command::Request { peer: from, request: Request::Block(parent.0) }),
                        Err(why) => tracing::debug!(height, %why, "orphan not kept"),
                    }
                }
            }
            // Our clock may lag: not proof of a bad peer. Nor are this node's own bounds on side
            // branches: an honest peer on another branch sends such blocks (after a partition,
            // or a chain restarted from an old genesis, whose blocks ASERT makes cheap). Banning
            // it split the network for good: a validator that banned a provider this way never
            // reached it again, and judged it absent.
            Ok(Err(reason)) if !reason.blames_sender() => {
                verdict.get_or_insert(Verdict::Ignore);
                tracing::info!(height, %reason, peer = %from, "not taking a block (no fault of the peer's)");
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
