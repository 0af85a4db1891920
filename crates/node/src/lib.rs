//! The node: the async shell around the sans-IO chain core.
//!
//! It owns the chain and its store behind one lock, a mempool, a mining thread that seals filler
//! blocks on the tip, and an HTTP JSON API (axum) with Prometheus metrics. Everything consensus
//! decides happens in `ergon-chain`; this crate only feeds it time, transactions and blocks.

mod api;
pub mod blobs;
mod dashboard;
mod events;
pub mod http;
mod mining;
pub mod orphans;
pub mod poai;
pub mod provider;
mod sync;
pub mod uploads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ergon_chain::{Chain, Genesis, Mempool};
use ergon_store::Store;
use ergon_types::{Address, Hash};

/// How a node is started.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub api: SocketAddr,
    pub mine: bool,
    pub miner: Address,
    /// Required for a new data directory; must match an existing one.
    pub genesis: Option<Genesis>,
    /// Peer-to-peer listen address (a multiaddr such as /ip4/127.0.0.1/tcp/9000); none: no network.
    pub listen: Option<String>,
    /// Peers to dial (multiaddrs).
    pub peers: Vec<String>,
    /// Discover peers on the local network by mDNS.
    pub mdns: bool,
    /// Run the provider agent with this key (its address must be the miner's).
    pub provider: Option<ergon_types::SecretKey>,
    /// Testing only: the provider posts products with one entry off by one (an adversary for
    /// the dispute path's end-to-end test).
    pub corrupt_results: bool,
    /// Run the Proof-of-AI validator with this key (its account must stake at least the
    /// genesis's `min_validator_stake`).
    pub validator: Option<ergon_types::SecretKey>,
    /// Testing only: the provider answers challenges this many times slower than it computes
    /// them (a machine slower than its offer claims).
    pub challenge_slowdown: f64,
    /// Testing only: the provider answers challenges with a wrong product (provably wrong).
    pub corrupt_challenges: bool,
    /// Testing only: the validator's timed rounds this often (seconds) instead of its cadence's.
    pub challenge_every_s: Option<f64>,
    /// Testing only: the share of its memory fill (percent) the provider keeps, rebuilding the
    /// rest when a validator opens it (100: honest).
    pub memory_keep_percent: u8,
    /// The validator's deadline for answers to its memory openings.
    pub memory_deadline_ms: u32,
    /// A validator's hidden audits (`poai::audit`) this often, in seconds; 0: none.
    pub audit_every_s: f64,
    /// The share of its time (percent, 1–100) the miner spends on filler blocks when it has no
    /// leased work: below 100 it rests between passes, and the difficulty follows (ASERT).
    pub filler_duty_percent: u8,
}

/// Counters the API and metrics report.
#[derive(Default)]
pub struct Stats {
    pub blocks_mined: AtomicU64,
    pub macs_mined: AtomicU64,
    /// Of `macs_mined`, those spent on leased job shards (useful work).
    pub macs_mined_on_jobs: AtomicU64,
    /// CPU milliseconds the mining threads spent on filler and on leased job shards: the
    /// node's own measured energy split (see `docs/energy.md`).
    pub cpu_ms_on_filler: AtomicU64,
    pub cpu_ms_on_jobs: AtomicU64,
    pub blocks_imported: AtomicU64,
    pub blocks_rejected: AtomicU64,
}

/// What the API, the miner and (soon) the network share.
pub struct Node {
    pub chain: Chain,
    pub store: Store,
    pub mempool: Mempool,
    /// Blocks received before their parent (bounded; see [`orphans`]).
    pub orphans: orphans::Orphans<ergon_net::PeerId>,
    /// Catching up with a peer far ahead, by height.
    pub catch_up: sync::CatchUp,
    /// When this node first accepted each block (mined or received), for propagation figures.
    pub seen_ms: std::collections::HashMap<Hash, u64>,
}

pub struct Shared {
    pub node: Mutex<Node>,
    pub stats: Stats,
    pub started: Instant,
    pub stop: AtomicBool,
    /// Why the store last refused a write (a full disk, an I/O error), while it does: the node
    /// then accepts no block and mines none, says so on `/status`, and retries every few
    /// seconds. The chain never holds a block the disk does not (blocks are written first).
    pub storage_error: Mutex<Option<String>>,
    pub miner: Address,
    pub mining: bool,
    /// See [`NodeConfig::filler_duty_percent`].
    pub filler_duty_percent: u8,
    pub net: std::sync::OnceLock<ergon_net::NetHandle>,
    /// Leased shards with their inputs checked, for the miner (provider nodes).
    pub ready: Mutex<std::collections::VecDeque<provider::ReadyWork>>,
    /// Products the miner computed on leased shards, for the provider agent to deliver.
    pub computed: Mutex<Vec<provider::Computed>>,
    /// Metadata of the sealed blobs this node stores and serves, by name; their pieces are on
    /// disk in `blob_store`, read outside the node's lock.
    pub blobs: Mutex<std::collections::HashMap<[u8; 32], blobs::BlobMeta>>,
    pub blob_store: ergon_store::BlobStore,
    /// Uploads in progress: generations, per-author reservations and rate buckets.
    pub uploads: Mutex<uploads::Uploads>,
    /// Proof of AI: the validator's engine and the provider's answering, where this node runs them.
    pub poai: poai::Poai,
    /// Places for open `/events` streams (see [`events::MAX_STREAMS`]).
    pub event_streams: Arc<tokio::sync::Semaphore>,
}

impl Shared {
    /// Hands a command to the network, if there is one.
    pub fn send(&self, cmd: ergon_net::Command) {
        if let Some(net) = self.net.get() {
            // Full: the swarm is behind; the command is dropped (a request or a publish that a
            // retry or the next block makes good), never buffered without bound.
            let _ = net.commands.try_send(cmd);
        }
    }

    pub fn peers(&self) -> usize {
        self.net.get().map_or(0, |n| n.peers.load(Ordering::Relaxed))
    }

    pub fn storage_error(&self) -> Option<String> {
        self.storage_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records that the store refused a write: blocks and mining stop until it recovers.
    pub fn storage_failed(&self, why: &str) {
        tracing::error!(error = %why, "the store refused a write; accepting and mining no blocks until it recovers");
        *self.storage_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.to_string());
    }

    /// Locks the node; a panic elsewhere while holding it must not take the API down with it.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Node> {
        self.node.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The secret of this node's peer identity: `p2p.key` in the data directory (32 raw bytes,
/// owner-only), made on first start. A node that changed identity at every start lost what
/// peers had learnt of it, and a banned peer could return as a "new" node by restarting.
fn peer_identity(dir: &std::path::Path) -> Result<[u8; 32], String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("p2p.key");
    match std::fs::read(&path) {
        Ok(bytes) => bytes
            .try_into()
            .map_err(|_| format!("{}: not a 32-byte peer key; remove it to make a new one", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| format!("no OS randomness: {e}"))?;
            let tmp = dir.join("p2p.key.tmp");
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| format!("{}: {e}", tmp.display()))?;
            f.write_all(&key).and_then(|()| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Resolves on Ctrl-C or SIGTERM, so `kill` and service managers stop a node as cleanly as a
/// terminal does (SIGTERM used to end the process on the spot).
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Runs a node until `shutdown` resolves.
pub async fn run(
    cfg: NodeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    // A file-size limit (RLIMIT_FSIZE) must be an I/O error the node recovers from, not the
    // end of the process (SIGXFSZ's default action): listening for the signal replaces it.
    if let Ok(mut xfsz) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(25)) {
        tokio::spawn(async move { while xfsz.recv().await.is_some() {} });
    }
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| format!("{}: {e}", cfg.data_dir.display()))?;
    let db = cfg.data_dir.join("chain.redb");
    let opening = Instant::now();
    let (store, chain) = Store::open(&db, cfg.genesis.as_ref()).map_err(|e| format!("{}: {e}", db.display()))?;
    let blob_store = store.blob_store();
    let o = &store.opened;
    tracing::info!(height = chain.height(), tip = %chain.tip(), resumed_from = ?o.resumed_from, replayed = o.replayed,
        seconds = opening.elapsed().as_secs_f64(), "chain loaded");
    if let Some(why) = &o.checkpoint_refused {
        tracing::warn!(%why, "the stored checkpoint was not used: the chain was replayed from genesis");
    }
    let shared = Arc::new(Shared {
        node: Mutex::new(Node {
            chain,
            store,
            mempool: Mempool::default(),
            orphans: Default::default(),
            catch_up: Default::default(),
            seen_ms: Default::default(),
        }),
        stats: Stats::default(),
        started: Instant::now(),
        stop: AtomicBool::new(false),
        miner: cfg.miner,
        mining: cfg.mine,
        filler_duty_percent: cfg.filler_duty_percent.clamp(1, 100),
        net: std::sync::OnceLock::new(),
        blobs: Mutex::new(Default::default()),
        uploads: Mutex::new(Default::default()),
        storage_error: Mutex::new(None),
        blob_store,
        ready: Mutex::new(Default::default()),
        computed: Mutex::new(Default::default()),
        poai: poai::Poai::new(poai::PoaiOptions {
            validator: cfg.validator.clone(),
            prover: cfg.provider.clone(),
            slowdown: cfg.challenge_slowdown,
            corrupt: cfg.corrupt_challenges,
            memory_keep_percent: cfg.memory_keep_percent,
            memory_deadline_ms: cfg.memory_deadline_ms,
        }),
        event_streams: Arc::new(tokio::sync::Semaphore::new(events::MAX_STREAMS)),
    });
    shared.load_blobs().map_err(|e| format!("{}: {e}", db.display()))?;
    for (index, why) in &shared.lock().store.dropped_at_open {
        tracing::warn!(index, %why, "a stored block the chain refuses was removed (a crash between writing and judging it)");
    }
    {
        // While the store refuses writes, try again every few seconds (reopening the database,
        // which refuses every write after an I/O error until then).
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3));
            while !shared.stop.load(Ordering::Relaxed) {
                tick.tick().await;
                if shared.storage_error().is_none() {
                    continue;
                }
                let s = shared.clone();
                let recovered = tokio::task::spawn_blocking(move || s.lock().store.recover()).await;
                if let Ok(Ok(())) = recovered {
                    tracing::info!("the store takes writes again; resuming");
                    *shared.storage_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
            }
        });
    }
    {
        // Blobs no task needs any more are deleted every few seconds.
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3));
            while !shared.stop.load(Ordering::Relaxed) {
                tick.tick().await;
                match shared.collect_blobs() {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(blobs = n, "collected blobs no task needs any more"),
                    Err(e) => tracing::warn!(error = %e, "could not collect blobs"),
                }
            }
        });
    }
    if let Some(listen) = &cfg.listen {
        let identity = peer_identity(&cfg.data_dir)?;
        sync::start_network(&shared, listen, &cfg.peers, cfg.mdns, identity)?;
        let s = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
            while !s.stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let s = s.clone();
                let _ = tokio::task::spawn_blocking(move || sync::catch_up_tick(&s)).await;
            }
        });
    }
    if let Some(key) = cfg.provider.clone() {
        if key.public().address() != cfg.miner || !cfg.mine {
            return Err("a provider node must mine, with the provider's key as the miner".into());
        }
        tokio::spawn(provider::run(shared.clone(), key, cfg.corrupt_results));
        tokio::spawn(poai::run_prover(shared.clone()));
        tokio::spawn(poai::memory::run_prover(shared.clone()));
    }
    if cfg.validator.is_some() {
        if cfg.listen.is_none() {
            return Err("a validator needs the network (--listen) to reach providers".into());
        }
        tokio::spawn(poai::run_validator(shared.clone(), cfg.challenge_every_s));
        if let Some(key) = cfg.validator.clone().filter(|_| cfg.audit_every_s.is_finite() && cfg.audit_every_s > 0.0) {
            let (s, api, every) = (shared.clone(), cfg.api, std::time::Duration::from_secs_f64(cfg.audit_every_s));
            std::thread::spawn(move || poai::audit::run(s, key, api, every));
        }
    }
    let miner = cfg.mine.then(|| {
        let s = shared.clone();
        std::thread::spawn(move || mining::mine_forever(s))
    });
    let listener = tokio::net::TcpListener::bind(cfg.api).await.map_err(|e| format!("API {}: {e}", cfg.api))?;
    tracing::info!(api = %cfg.api, mining = cfg.mine, "serving");
    let app = api::router(shared.clone());
    let stop = shared.clone();
    http::serve(listener, app, http::EdgeLimits::default(), async move {
        shutdown.await;
        stop.stop.store(true, Ordering::Relaxed);
    })
    .await;
    shared.stop.store(true, Ordering::Relaxed);
    if let Some(m) = miner {
        let _ = m.join();
    }
    tracing::info!("stopped");
    Ok(())
}
