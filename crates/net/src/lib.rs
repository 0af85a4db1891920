//! Ergon's peer-to-peer layer (rust-libp2p): TCP with noise encryption and yamux multiplexing;
//! gossipsub for blocks, transactions and Proof-of-AI rounds and answers; a request-response protocol that fetches a block by id
//! or a peer's tip, which is all sync needs at devnet scale; a second one that moves sealed blobs
//! (job inputs and results, see [`blob`]) piece by piece; identify; Kademlia for discovering
//! peers beyond the configured ones; mDNS, off by default.
//!
//! The swarm runs in its own task. The node talks to it through [`Command`]s and receives
//! [`Event`]s; blocks are served through a provider callback, so this crate knows nothing of the
//! chain. Messages are size-bounded by gossipsub and the request-response codec, and a peer the
//! node reports as sending invalid data is disconnected and banned.

pub mod codec;

use codec::RawCodec;

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash as _, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{gossipsub, identify, kad, mdns, noise, tcp, yamux, Multiaddr, StreamProtocol};
pub use libp2p::{Multiaddr as Address, PeerId};
use tokio::sync::mpsc;

/// Largest gossip message: a block with its PoUW proof (≤ ~7.5 MB) and transactions.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Messages buffered between the swarm and the node, each way.
pub const CHANNEL_CAPACITY: usize = 4096;
/// How long an address stays banned after one of its peers sent invalid data.
pub const BAN_SECONDS: u64 = 3600;

/// Gossipsub peer scoring on both topics: an invalid message (a `Reject` verdict) costs -100
/// squared-counted, so one puts a peer below the graylist threshold (-80) and its messages are
/// ignored until the penalty decays. Quietness is never punished (mesh delivery weights are 0:
/// blocks are rare), and peers on loopback are not penalised for sharing an address (devnets).
fn peer_score(chain_id: &[u8; 32]) -> gossipsub::PeerScoreParams {
    let topic_params = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -100.0,
        invalid_message_deliveries_decay: 0.9,
        ..Default::default()
    };
    let mut params = gossipsub::PeerScoreParams::default();
    for t in [topic("blocks", chain_id), topic("txs", chain_id), topic("poai", chain_id)] {
        params.topics.insert(t.hash(), topic_params.clone());
    }
    params
        .ip_colocation_factor_whitelist
        .extend([std::net::IpAddr::from([127, 0, 0, 1]), std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)]);
    params
}

/// The IP a multiaddr dials or came from, if it has one.
fn ip_of(addr: &Multiaddr) -> Option<std::net::IpAddr> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => Some(ip.into()),
        libp2p::multiaddr::Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    })
}

/// How far an address reaches: loopback, a private network, or the internet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Loopback,
    Private,
    Public,
}

fn scope(ip: std::net::IpAddr) -> Scope {
    use std::net::IpAddr;
    match ip {
        _ if ip.is_loopback() => Scope::Loopback,
        IpAddr::V4(v4) if v4.is_private() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast() => {
            Scope::Private
        }
        // fc00::/7 (unique local) and fe80::/10 (link local).
        IpAddr::V6(v6) if (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80 => {
            Scope::Private
        }
        _ if ip.is_unspecified() => Scope::Private,
        _ => Scope::Public,
    }
}

/// Whether to dial `ip`, announced by a peer that connected from `from`: a public address always;
/// a loopback or private one only if the announcer is in that same scope (a devnet on one machine,
/// a LAN), so a peer cannot point this node at its own private network or at other machines'.
fn dialable(ip: std::net::IpAddr, from: Option<std::net::IpAddr>) -> bool {
    match scope(ip) {
        Scope::Public => true,
        s => from.is_some_and(|f| scope(f) == s),
    }
}

/// Bans by address, with expiry, so a punished peer cannot return under a fresh identity from
/// the same machine. Loopback is never banned by address: every node of a local devnet shares it.
#[derive(Default)]
struct IpBans {
    until: HashMap<std::net::IpAddr, std::time::Instant>,
    addr_of: HashMap<PeerId, std::net::IpAddr>,
}

impl IpBans {
    fn seen(&mut self, peer: PeerId, ip: std::net::IpAddr) {
        self.addr_of.insert(peer, ip);
    }
    fn forget(&mut self, peer: &PeerId) {
        self.addr_of.remove(peer);
    }
    fn ban_peer(&mut self, peer: &PeerId) {
        if let Some(&ip) = self.addr_of.get(peer) {
            if !ip.is_loopback() {
                self.until.insert(ip, std::time::Instant::now() + Duration::from_secs(BAN_SECONDS));
            }
        }
    }
    fn is_banned(&mut self, ip: std::net::IpAddr) -> bool {
        let now = std::time::Instant::now();
        self.until.retain(|_, t| *t > now);
        self.until.contains_key(&ip)
    }
}

/// What one peer may ask another.
#[derive(Debug, Clone)]
pub enum Request {
    /// The block with this id.
    Block([u8; 32]),
    /// The peer's current tip block.
    Tip,
    /// The block at this height on the peer's active chain (a node far behind syncs forward
    /// with these, a window at a time, instead of walking parents back from the tip).
    BlockAt(u64),
    /// Up to `count` headers with their proofs of the peer's active chain from height `from`
    /// (an `ergon_types::block::Headers`): a branch's work, checked before its bodies are asked for.
    Headers { from: u64, count: u16 },
}

/// Piece `piece` of the sealed blob named `name` (see [`blob`]).
#[derive(Debug, Clone)]
pub struct PieceRequest {
    pub name: [u8; 32],
    pub piece: u32,
}

/// (pieces in the blob, the piece's bytes), or nothing if the peer does not hold it.
#[derive(Debug, Clone)]
pub struct PieceResponse(pub Option<(u32, Vec<u8>)>);

/// Serves blob pieces from the node's blob store.
pub type BlobProvider = Arc<dyn Fn(&[u8; 32], u32) -> Option<(u32, Vec<u8>)> + Send + Sync>;

/// A block's canonical bytes, or nothing if the peer does not have it.
#[derive(Debug, Clone)]
pub struct Response(pub Option<Vec<u8>>);

/// What the node asks the network to do.
#[derive(Debug)]
pub enum Command {
    PublishBlock(Vec<u8>),
    PublishTx(Vec<u8>),
    /// A Proof-of-AI message (an encoded `ergon_types::poai::PoaiMessage`).
    PublishPoai(Vec<u8>),
    Request {
        peer: PeerId,
        request: Request,
    },
    /// Drop and ban a peer that sent invalid data.
    Punish(PeerId),
    /// Ask connected peers, one after another, for a piece of a blob; the first that has it
    /// answers through `reply` (`None` when nobody does).
    FetchPiece {
        name: [u8; 32],
        piece: u32,
        reply: tokio::sync::oneshot::Sender<Option<(u32, Vec<u8>)>>,
    },
    /// The node's verdict on a gossiped message: only accepted ones are forwarded, and rejected
    /// ones lower the sender's gossipsub score.
    Verdict {
        message: MessageRef,
        verdict: Verdict,
    },
}

/// Identifies a gossiped message awaiting the node's verdict.
#[derive(Debug, Clone)]
pub struct MessageRef {
    id: gossipsub::MessageId,
    source: PeerId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: forward it.
    Accept,
    /// Invalid: drop it and penalise the sender.
    Reject,
    /// Cannot judge (e.g. its parent is missing) or already known: drop it quietly.
    Ignore,
}

/// What the network tells the node.
#[derive(Debug)]
pub enum Event {
    /// A block; `gossip` is set when it came by gossip and awaits a [`Command::Verdict`].
    Block {
        from: PeerId,
        bytes: Vec<u8>,
        gossip: Option<MessageRef>,
    },
    Tx {
        from: PeerId,
        bytes: Vec<u8>,
        gossip: MessageRef,
    },
    /// A Proof-of-AI message (round announcement or answer), awaiting a [`Command::Verdict`].
    Poai {
        from: PeerId,
        bytes: Vec<u8>,
        gossip: MessageRef,
    },
    /// The answer to a [`Request::Headers`] (an encoded `ergon_types::block::Headers`).
    Headers {
        from: PeerId,
        bytes: Vec<u8>,
    },
    PeerConnected(PeerId),
}

/// Serves a peer's request from the node's state.
pub type Provider = Arc<dyn Fn(&Request) -> Option<Vec<u8>> + Send + Sync>;

#[derive(NetworkBehaviour)]
struct Behaviour {
    gossipsub: gossipsub::Behaviour,
    blocks: request_response::Behaviour<RawCodec<Request, Response>>,
    blobs: request_response::Behaviour<RawCodec<PieceRequest, PieceResponse>>,
    identify: identify::Behaviour,
    /// Peer discovery beyond the configured peers: addresses learnt from identify are added, and
    /// peers found in the routing table are dialled.
    kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Local-network discovery, off unless asked for.
    mdns: Toggle<mdns::tokio::Behaviour>,
}

pub struct NetConfig {
    pub listen: Multiaddr,
    pub peers: Vec<Multiaddr>,
    /// Topics are per network, so two devnets on one machine never mix.
    pub chain_id: [u8; 32],
    /// Discover peers on the local network by mDNS.
    pub mdns: bool,
    /// The ed25519 secret of this node's peer identity (kept in the data directory, so the
    /// node's PeerId, and what peers know of it, survives a restart).
    pub identity: [u8; 32],
}

/// The node's side of the network task.
#[derive(Clone)]
pub struct NetHandle {
    pub commands: mpsc::Sender<Command>,
    pub peer_id: PeerId,
    pub peers: Arc<AtomicUsize>,
}

fn topic(kind: &str, chain_id: &[u8; 32]) -> gossipsub::IdentTopic {
    let short: String = chain_id[..8].iter().map(|b| format!("{b:02x}")).collect();
    gossipsub::IdentTopic::new(format!("ergon/{kind}/1/{short}"))
}

/// Starts the swarm on the current tokio runtime.
pub fn spawn(
    cfg: NetConfig,
    provider: Provider,
    blob_provider: BlobProvider,
) -> Result<(NetHandle, mpsc::Receiver<Event>), String> {
    let mdns_on = cfg.mdns;
    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(cfg.identity).map_err(|e| e.to_string())?;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| e.to_string())?
        .with_behaviour(|key| {
            let gossip = gossipsub::ConfigBuilder::default()
                .max_transmit_size(MAX_MESSAGE_BYTES)
                .validation_mode(gossipsub::ValidationMode::Strict)
                .validate_messages()
                .heartbeat_interval(Duration::from_millis(500))
                .message_id_fn(|m: &gossipsub::Message| {
                    let mut h = DefaultHasher::new();
                    m.data.hash(&mut h);
                    gossipsub::MessageId::from(h.finish().to_le_bytes().to_vec())
                })
                .build()
                .map_err(|e| e.to_string())?;
            let mut gossipsub = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossip)?;
            gossipsub.with_peer_score(peer_score(&cfg.chain_id), gossipsub::PeerScoreThresholds::default())?;
            let blocks = request_response::Behaviour::with_codec(
                RawCodec::default(),
                [(StreamProtocol::new("/ergon/blocks/2"), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
            );
            let blobs = request_response::Behaviour::with_codec(
                RawCodec::default(),
                [(StreamProtocol::new("/ergon/blobs/2"), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(60)),
            );
            let identify = identify::Behaviour::new(identify::Config::new("/ergon/1".into(), key.public()));
            let peer_id = key.public().to_peer_id();
            let mut kad_cfg = kad::Config::new(StreamProtocol::new("/ergon/kad/1"));
            kad_cfg.set_query_timeout(Duration::from_secs(30));
            let mut kad = kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_cfg);
            kad.set_mode(Some(kad::Mode::Server));
            let mdns =
                if mdns_on { Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)?) } else { None };
            Ok(Behaviour { gossipsub, blocks, blobs, identify, kad, mdns: Toggle::from(mdns) })
        })
        .map_err(|e| e.to_string())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    let (blocks_topic, txs_topic) = (topic("blocks", &cfg.chain_id), topic("txs", &cfg.chain_id));
    let poai_topic = topic("poai", &cfg.chain_id);
    for t in [&blocks_topic, &txs_topic, &poai_topic] {
        swarm.behaviour_mut().gossipsub.subscribe(t).map_err(|e| e.to_string())?;
    }
    swarm.listen_on(cfg.listen.clone()).map_err(|e| format!("listen on {}: {e}", cfg.listen))?;
    for p in &cfg.peers {
        swarm.dial(p.clone()).map_err(|e| format!("dial {p}: {e}"))?;
    }
    // Bounded both ways: a node busy importing cannot make the swarm buffer without limit (new
    // gossip is dropped while full, and sync asks again), nor the other way round.
    let (cmd_tx, mut cmd_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (ev_tx, ev_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let peers = Arc::new(AtomicUsize::new(0));
    let handle = NetHandle { commands: cmd_tx, peer_id: *swarm.local_peer_id(), peers: peers.clone() };
    let redial = cfg.peers.clone();
    let own_ip = ip_of(&cfg.listen);
    tokio::spawn(async move {
        let mut banned: HashSet<PeerId> = HashSet::new();
        let mut bans = IpBans::default();
        let mut counted: HashSet<PeerId> = HashSet::new();
        let mut fetches: HashMap<request_response::OutboundRequestId, Fetch> = HashMap::new();
        // Requests for headers in flight, so their answers go to the node as headers.
        let mut header_requests: HashSet<request_response::OutboundRequestId> = HashSet::new();
        let mut redial_timer = tokio::time::interval(Duration::from_secs(2));
        let mut discovery_timer = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                cmd = cmd_rx.recv() => match cmd {
                    None => break,
                    Some(Command::PublishBlock(b)) => { let _ = swarm.behaviour_mut().gossipsub.publish(blocks_topic.clone(), b); }
                    Some(Command::PublishTx(b)) => { let _ = swarm.behaviour_mut().gossipsub.publish(txs_topic.clone(), b); }
                    Some(Command::PublishPoai(b)) => { let _ = swarm.behaviour_mut().gossipsub.publish(poai_topic.clone(), b); }
                    Some(Command::Request { peer, request }) => {
                        let headers = matches!(request, Request::Headers { .. });
                        let id = swarm.behaviour_mut().blocks.send_request(&peer, request);
                        if headers {
                            header_requests.insert(id);
                        }
                    }
                    Some(Command::Verdict { message, verdict }) => {
                        let acceptance = match verdict {
                            Verdict::Accept => gossipsub::MessageAcceptance::Accept,
                            Verdict::Reject => gossipsub::MessageAcceptance::Reject,
                            Verdict::Ignore => gossipsub::MessageAcceptance::Ignore,
                        };
                        swarm.behaviour_mut().gossipsub.report_message_validation_result(&message.id, &message.source, acceptance);
                    }
                    Some(Command::FetchPiece { name, piece, reply }) => {
                        let untried = swarm.connected_peers().copied().collect();
                        let fetch = Fetch { request: PieceRequest { name, piece }, reply, untried };
                        fetch.next(&mut swarm.behaviour_mut().blobs, &mut fetches);
                    }
                    Some(Command::Punish(peer)) => {
                        tracing::warn!(%peer, "dropping and banning a peer that sent invalid data");
                        banned.insert(peer);
                        bans.ban_peer(&peer);
                        let _ = swarm.disconnect_peer_id(peer);
                    }
                },
                _ = discovery_timer.tick() => {
                    let _ = swarm.behaviour_mut().kad.bootstrap();
                }
                _ = redial_timer.tick() => {
                    // Keep trying configured peers that are not connected (they may start later).
                    if swarm.connected_peers().count() < redial.len() {
                        for p in &redial { let _ = swarm.dial(p.clone()); }
                    }
                }
                ev = swarm.select_next_some() => match ev {
                    SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, message })) => {
                        let gossip = MessageRef { id: message_id, source: propagation_source };
                        let ev = if message.topic == blocks_topic.hash() {
                            Event::Block { from: propagation_source, bytes: message.data, gossip: Some(gossip) }
                        } else if message.topic == poai_topic.hash() {
                            Event::Poai { from: propagation_source, bytes: message.data, gossip }
                        } else {
                            Event::Tx { from: propagation_source, bytes: message.data, gossip }
                        };
                        // Full: the node is behind; drop it (gossip re-delivers what matters).
                        let _ = ev_tx.try_send(ev);
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Blocks(request_response::Event::Message { peer, message, .. })) => match message {
                        request_response::Message::Request { request, channel, .. } => {
                            let _ = swarm.behaviour_mut().blocks.send_response(channel, Response(provider(&request)));
                        }
                        request_response::Message::Response { request_id, response } => {
                            let headers = header_requests.remove(&request_id);
                            if let Some(bytes) = response.0 {
                                let ev = if headers {
                                    Event::Headers { from: peer, bytes }
                                } else {
                                    Event::Block { from: peer, bytes, gossip: None }
                                };
                                let _ = ev_tx.try_send(ev);
                            }
                        }
                    },
                    SwarmEvent::Behaviour(BehaviourEvent::Blocks(request_response::Event::OutboundFailure { request_id, .. })) => {
                        header_requests.remove(&request_id);
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Blobs(request_response::Event::Message { message, .. })) => match message {
                        request_response::Message::Request { request, channel, .. } => {
                            let answer = PieceResponse(blob_provider(&request.name, request.piece));
                            let _ = swarm.behaviour_mut().blobs.send_response(channel, answer);
                        }
                        request_response::Message::Response { request_id, response } => {
                            if let Some(fetch) = fetches.remove(&request_id) {
                                match response.0 {
                                    Some(found) => { let _ = fetch.reply.send(Some(found)); }
                                    None => fetch.next(&mut swarm.behaviour_mut().blobs, &mut fetches),
                                }
                            }
                        }
                    },
                    SwarmEvent::Behaviour(BehaviourEvent::Blobs(request_response::Event::OutboundFailure { request_id, .. })) => {
                        if let Some(fetch) = fetches.remove(&request_id) {
                            fetch.next(&mut swarm.behaviour_mut().blobs, &mut fetches);
                        }
                    }
                    SwarmEvent::ConnectionEstablished { peer_id, num_established, endpoint, .. } => {
                        let ip = ip_of(endpoint.get_remote_address());
                        if banned.contains(&peer_id) || ip.is_some_and(|ip| bans.is_banned(ip)) {
                            // A banned peer under a new identity, from the same address.
                            let _ = swarm.disconnect_peer_id(peer_id);
                        } else if num_established.get() == 1 && counted.insert(peer_id) {
                            if let Some(ip) = ip {
                                bans.seen(peer_id, ip);
                            }
                            peers.fetch_add(1, Ordering::Relaxed);
                            swarm.behaviour_mut().blocks.send_request(&peer_id, Request::Tip);
                            let _ = ev_tx.try_send(Event::PeerConnected(peer_id));
                        }
                    }
                    SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                        bans.forget(&peer_id);
                        // Only peers counted in (a banned peer's brief connection never was).
                        if counted.remove(&peer_id) {
                            peers.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                    SwarmEvent::NewListenAddr { address, .. } => tracing::info!(%address, "listening for peers"),
                    SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                        // Only addresses worth dialling go into the routing table (and so to
                        // other peers): public ones, or ones in the announcer's own scope.
                        let from = bans.addr_of.get(&peer_id).copied();
                        for addr in info.listen_addrs {
                            if ip_of(&addr).is_none_or(|ip| dialable(ip, from)) {
                                swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                            }
                        }
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, addresses, .. }))
                        if !swarm.is_connected(&peer) && !banned.contains(&peer) =>
                    {
                        // Learnt from other peers' routing tables: a private or loopback address
                        // is dialled only if this node itself listens in that scope.
                        let addr = addresses.first().clone();
                        if ip_of(&addr).is_none_or(|ip| !bans.is_banned(ip) && dialable(ip, own_ip)) {
                            let _ = swarm.dial(addr);
                        }
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                        for (peer, addr) in found {
                            if !swarm.is_connected(&peer) && !banned.contains(&peer) {
                                tracing::info!(%peer, %addr, "found by mDNS");
                                let _ = swarm.dial(addr);
                            }
                        }
                    }
                    _ => {}
                },
            }
        }
    });
    Ok((handle, ev_rx))
}

/// A blob piece being looked for, and the peers not asked yet.
struct Fetch {
    request: PieceRequest,
    reply: tokio::sync::oneshot::Sender<Option<(u32, Vec<u8>)>>,
    untried: Vec<PeerId>,
}

impl Fetch {
    /// Asks the next untried peer, or answers `None` when none is left.
    fn next(
        mut self,
        blobs: &mut request_response::Behaviour<RawCodec<PieceRequest, PieceResponse>>,
        pending: &mut HashMap<request_response::OutboundRequestId, Fetch>,
    ) {
        match self.untried.pop() {
            Some(peer) => {
                let id = blobs.send_request(&peer, self.request.clone());
                pending.insert(id, self);
            }
            None => {
                let _ = self.reply.send(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_punished_peers_address_is_banned_for_a_while_but_never_loopback() {
        let mut bans = IpBans::default();
        let (remote, local) = (PeerId::random(), PeerId::random());
        let ip: std::net::IpAddr = [203, 0, 113, 7].into();
        bans.seen(remote, ip);
        bans.seen(local, [127, 0, 0, 1].into());
        bans.ban_peer(&remote);
        bans.ban_peer(&local);
        assert!(bans.is_banned(ip), "a new identity from the same address is refused");
        assert!(!bans.is_banned([127, 0, 0, 1].into()), "a devnet's nodes all share loopback");
        assert!(!bans.is_banned([203, 0, 113, 8].into()));
        bans.until.insert(ip, std::time::Instant::now());
        assert!(!bans.is_banned(ip), "bans expire");
        let addr: Multiaddr = "/ip4/203.0.113.7/tcp/9000".parse().unwrap();
        assert_eq!(ip_of(&addr), Some(ip));
    }

    #[test]
    fn announced_private_addresses_are_dialled_only_within_their_scope() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let (public, lan, lo) = (ip("203.0.113.9"), ip("192.168.1.7"), ip("127.0.0.1"));
        assert!(dialable(ip("198.51.100.1"), Some(public)), "public addresses are always dialled");
        assert!(!dialable(ip("10.0.0.5"), Some(public)), "a remote peer cannot point us into a private network");
        assert!(!dialable(lo, Some(public)), "nor at our own loopback");
        assert!(dialable(ip("192.168.1.8"), Some(lan)), "a LAN peer announcing its LAN");
        assert!(dialable(ip("127.0.0.1"), Some(lo)), "a devnet on one machine");
        assert!(!dialable(ip("fd00::1"), Some(public)) && !dialable(ip("fe80::1"), None));
        assert!(dialable(ip("2001:db8::1"), None));
    }

    #[test]
    fn the_peer_score_parameters_are_valid() {
        let params = peer_score(&[1; 32]);
        assert!(params.validate().is_ok());
        assert!(gossipsub::PeerScoreThresholds::default().validate().is_ok());
        // One invalid message takes a peer below the graylist threshold.
        let t = params.topics.values().next().unwrap();
        assert!(
            t.invalid_message_deliveries_weight * t.topic_weight
                < gossipsub::PeerScoreThresholds::default().graylist_threshold
        );
    }
}
