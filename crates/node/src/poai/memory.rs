//! Memory challenges on the network (`docs/poai.md` §7): once per memory epoch every provider
//! claiming more than the unchecked floor fills its claim, seeded by the block that starts the
//! epoch, and gossips a signed commitment; in the second half of the epoch's window each
//! validator opens every committed fill at one moment of its choosing, and times the answers
//! against a deadline a provider rebuilding what it did not keep cannot meet. When the window
//! ends providers drop their fills: an honest provider gives up its memory for one window per
//! epoch.
//!
//! Relay rules (what a node forwards): a commitment from a registered provider, for the
//! current epoch inside its window, seeded by this node's block at the epoch's start, for the
//! memory its offer claims, once per provider and epoch; an opening from a staked validator
//! for the same epoch, at most `OPENS_PER_EPOCH` per validator and epoch, in increasing
//! order; answers at most `ANSWERS_PER_EPOCH` per provider and epoch.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ergon_api::poai as api;
use ergon_net::{Command, Verdict};
use ergon_poai::memory::{Fill, MemoryChallenge};
use ergon_poai::{MemoryEngine, MemoryJudgment, MemoryVerdict};
use ergon_types::poai::{MemoryAnswer, MemoryCommit, MemoryOpen, PoaiBody, PoaiMessage};
use ergon_types::{Address, Canonical, Hash, SecretKey, TxKind};

use super::{lock, now_ns};
use crate::Shared;

/// Openings one validator may make per epoch (relayed, and answered).
const OPENS_PER_EPOCH: u32 = 4;
/// Memory answers one provider may have relayed per epoch (a few hundred KiB each).
const ANSWERS_PER_EPOCH: u32 = 4 * OPENS_PER_EPOCH;
/// Messages waiting for the validator, and openings waiting for the provider.
const INBOX: usize = 4096;
const OPENS_QUEUED: usize = 16;
/// Memory judgments kept for the API.
const LOG_KEPT: usize = 256;
/// Memory a provider leaves free beside its fill.
const HEADROOM_MIB: u64 = 256;

/// The memory epoch as the chain has it now.
#[derive(Clone, Copy, Debug)]
pub(super) struct Epoch {
    start: u64,
    in_window: bool,
    /// Height within the epoch.
    into: u64,
    window: u64,
    seed: Option<Hash>,
    floor_mib: u64,
    block_time_ms: u64,
}

pub(super) fn epoch_now(node: &crate::Node) -> Epoch {
    let params = node.chain.params();
    let height = node.chain.height();
    let (start, in_window) = params.memory_epoch(height);
    Epoch {
        start,
        in_window,
        into: height - start,
        window: params.memory_window_blocks,
        seed: node.chain.active_id(start),
        floor_mib: params.memory_floor_mib,
        block_time_ms: params.block_time_ms,
    }
}

/// A fill held by a provider.
struct Held {
    epoch: u64,
    seed: Hash,
    challenge: MemoryChallenge,
    fill: Arc<Fill>,
    root: [u8; 32],
}

/// The provider's side: its fill, the openings to answer, and what it cost.
pub struct ProverMemory {
    /// Testing only: the share of its fill (percent) a cheating provider keeps; the rest it
    /// rebuilds when opened. 100: honest.
    keep_percent: u8,
    held: Mutex<Option<Held>>,
    filling: AtomicBool,
    opens: Mutex<VecDeque<MemoryOpen>>,
    pub(super) arrived: tokio::sync::Notify,
    /// Openings answered per validator this epoch: (epoch, count, last open number).
    answered: Mutex<HashMap<Address, (u64, u32, u64)>>,
    fills: AtomicU64,
    fill_ns: AtomicU64,
    answers: AtomicU64,
    last_answer_us: AtomicU64,
    /// Why this provider holds no fill now, when it should (for the API).
    not_filled: Mutex<Option<String>>,
}

/// The validator's side.
pub struct ValidatorMemory {
    deadline_ms: u32,
    state: Mutex<ValidatorMemoryState>,
    inbox: Mutex<VecDeque<Incoming>>,
}

struct ValidatorMemoryState {
    engine: MemoryEngine,
    /// The epoch this validator last opened in, and when it opens next (a random moment in the
    /// second half of the window, drawn once per epoch).
    opened_epoch: Option<u64>,
    open_at: Option<(u64, Instant)>,
    /// Its openings (number → id), newest last; answers name the id.
    opens: BTreeMap<u64, Hash>,
    sent: HashMap<Address, (u64, Instant)>,
    log: VecDeque<(u64, u64, MemoryJudgment)>,
}

enum Incoming {
    Commit(MemoryCommit),
    Answer { provider: Address, at_ns: u64, answer: MemoryAnswer },
}

/// Relay bookkeeping, bounded by the registered providers and the staked validators (only
/// their messages get this far), pruned at each epoch.
#[derive(Default)]
pub struct MemoryRelay {
    commits: Mutex<HashMap<Address, u64>>,
    opens: Mutex<HashMap<Address, (u64, u64, u32)>>,
    answers: Mutex<HashMap<Address, (u64, u32)>>,
}

impl ProverMemory {
    pub fn new(keep_percent: u8) -> Self {
        ProverMemory {
            keep_percent: keep_percent.min(100),
            held: Mutex::new(None),
            filling: AtomicBool::new(false),
            opens: Mutex::new(VecDeque::new()),
            arrived: tokio::sync::Notify::new(),
            answered: Mutex::new(HashMap::new()),
            fills: AtomicU64::new(0),
            fill_ns: AtomicU64::new(0),
            answers: AtomicU64::new(0),
            last_answer_us: AtomicU64::new(0),
            not_filled: Mutex::new(None),
        }
    }
}

impl ValidatorMemory {
    pub fn new(deadline_ms: u32) -> Self {
        ValidatorMemory {
            deadline_ms: deadline_ms.clamp(1, ergon_types::poai::memory::MAX_MEMORY_DEADLINE_MS),
            state: Mutex::new(ValidatorMemoryState {
                engine: MemoryEngine::new(),
                opened_epoch: None,
                open_at: None,
                opens: BTreeMap::new(),
                sent: HashMap::new(),
                log: VecDeque::new(),
            }),
            inbox: Mutex::new(VecDeque::new()),
        }
    }

    /// Of `providers`, those filling for the current epoch (under memory test, nothing
    /// committed yet, in the window's first half): a validator does not time their compute
    /// then (their cores are busy filling, honestly).
    pub(super) fn filling(&self, e: &Epoch, providers: &[Address]) -> Vec<Address> {
        if !e.in_window || e.into >= e.window / 2 {
            return vec![];
        }
        let st = lock(&self.state);
        providers
            .iter()
            .filter(|p| st.engine.view(p).is_some_and(|v| v.committed_epoch != Some(e.start)))
            .copied()
            .collect()
    }
}

/// Judges a gossiped memory message (already decoded and its signature checked).
pub(super) fn on_message(shared: &Shared, msg: PoaiMessage, at_ns: u64) -> Verdict {
    let signer = msg.body.signer().address();
    let (epoch, ok) = {
        let node = shared.lock();
        let chain = &node.chain;
        let e = epoch_now(&node);
        let current = |epoch: u64, seed: &Hash| e.in_window && epoch == e.start && e.seed == Some(*seed);
        let provider = chain.ledger().market.provider(&signer);
        let ok = msg.body.chain() == chain.chain_id()
            && match &msg.body {
                PoaiBody::MemoryCommit(c) => {
                    current(c.epoch, &c.seed)
                        && provider.is_some_and(|p| p.offer.profile.memory_mib == c.claimed_mib)
                        && c.claimed_mib > e.floor_mib
                }
                PoaiBody::MemoryOpen(o) => {
                    current(o.epoch, &o.seed)
                        && chain.ledger().account(&signer).stake >= chain.params().min_validator_stake
                }
                PoaiBody::MemoryAnswer(_) => provider.is_some(),
                _ => false,
            };
        (e.start, ok)
    };
    if !ok {
        return Verdict::Ignore;
    }
    let relay = &shared.poai.memory_relay;
    match msg.body {
        PoaiBody::MemoryCommit(c) => {
            {
                let mut seen = lock(&relay.commits);
                if seen.get(&signer).is_some_and(|&e| e >= c.epoch) {
                    return Verdict::Ignore;
                }
                seen.retain(|_, e| *e >= epoch);
                seen.insert(signer, c.epoch);
            }
            if let Some(v) = &shared.poai.validator {
                let mut inbox = lock(&v.memory.inbox);
                if inbox.len() < INBOX {
                    inbox.push_back(Incoming::Commit(c));
                }
            }
            Verdict::Accept
        }
        PoaiBody::MemoryOpen(o) => {
            {
                let mut seen = lock(&relay.opens);
                let (e, last, count) = seen.get(&signer).copied().unwrap_or((0, 0, 0));
                let count = if e == o.epoch { count } else { 0 };
                if (e == o.epoch && last >= o.open) || count >= OPENS_PER_EPOCH || e > o.epoch {
                    return Verdict::Ignore;
                }
                seen.retain(|_, (e, _, _)| *e >= epoch);
                seen.insert(signer, (o.epoch, o.open, count + 1));
            }
            if let Some(prover) = &shared.poai.prover {
                if o.providers.contains(&prover.key.public().address()) {
                    let mut queue = lock(&prover.memory.opens);
                    if queue.len() < OPENS_QUEUED {
                        queue.push_back(o);
                        prover.memory.arrived.notify_one();
                    }
                }
            }
            Verdict::Accept
        }
        PoaiBody::MemoryAnswer(a) => {
            {
                let mut seen = lock(&relay.answers);
                let (e, count) = seen.get(&signer).copied().unwrap_or((epoch, 0));
                let count = if e == epoch { count } else { 0 };
                if count >= ANSWERS_PER_EPOCH {
                    return Verdict::Ignore;
                }
                seen.retain(|_, (e, _)| *e >= epoch);
                seen.insert(signer, (epoch, count + 1));
            }
            if let Some(v) = &shared.poai.validator {
                if a.validator == v.key.public().address() {
                    let mut inbox = lock(&v.memory.inbox);
                    if inbox.len() < INBOX {
                        inbox.push_back(Incoming::Answer { provider: signer, at_ns, answer: a });
                    }
                    return Verdict::Ignore;
                }
            }
            Verdict::Accept
        }
        _ => Verdict::Ignore,
    }
}

/// Runs the provider's memory challenges until the node stops: fills at each epoch's window,
/// answers openings, drops the fill when the window ends.
pub async fn run_prover(shared: Arc<Shared>) {
    let Some(prover) = &shared.poai.prover else { return };
    let me = prover.key.public().address();
    while !shared.stop.load(Ordering::Relaxed) {
        let opens: Vec<MemoryOpen> = lock(&prover.memory.opens).drain(..).collect();
        for open in opens {
            let s = shared.clone();
            tokio::task::spawn_blocking(move || answer_open(&s, open));
        }
        let m = &prover.memory;
        let (e, wanted) = {
            let node = shared.lock();
            let e = epoch_now(&node);
            let claim = node
                .chain
                .ledger()
                .market
                .provider(&me)
                .filter(|p| p.status == ergon_market::ProviderStatus::Active)
                .map(|p| p.offer.profile.memory_mib);
            let wanted = match (claim, e.seed) {
                (Some(mib), Some(seed)) if e.in_window && mib > e.floor_mib => Some((mib, seed)),
                _ => None,
            };
            // Nobody would open a fill on a chain without another staked validator: no fill
            // (a devnet without validators never spends its providers' memory on one).
            let held = lock(&m.held).is_some();
            let min = node.chain.params().min_validator_stake;
            let wanted =
                wanted.filter(|_| held || node.chain.ledger().accounts().any(|(a, acc)| acc.stake >= min && *a != me));
            (e, wanted)
        };
        {
            let mut held = lock(&m.held);
            let stale =
                held.as_ref().is_some_and(|h| wanted.is_none_or(|(_, seed)| h.epoch != e.start || h.seed != seed));
            if stale {
                *held = None;
                tracing::info!("memory window over: fill dropped");
            }
            if let Some((mib, seed)) = wanted {
                if held.is_none() && !m.filling.swap(true, Ordering::Relaxed) {
                    let s = shared.clone();
                    let epoch = e.start;
                    tokio::task::spawn_blocking(move || fill(&s, epoch, seed, mib));
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(250), m.arrived.notified()).await;
    }
}

/// Fills this provider's claim for `epoch` and gossips the commitment.
fn fill(shared: &Shared, epoch: u64, seed: Hash, claimed_mib: u64) {
    let Some(prover) = &shared.poai.prover else { return };
    let m = &prover.memory;
    let me = prover.key.public().address();
    let c = MemoryChallenge::derive(&seed, &me, epoch, claimed_mib);
    let need_mib = c.bytes() / (1 << 20) + HEADROOM_MIB;
    let available = available_mib();
    if available.is_some_and(|a| a < need_mib) {
        let why = format!(
            "the offer claims {claimed_mib} MiB but {} MiB are free: no fill this epoch, so validators will not count the claim (register with less: `--memory-mib`)",
            available.unwrap_or(0)
        );
        tracing::warn!("{why}");
        *lock(&m.not_filled) = Some(why);
        m.filling.store(false, Ordering::Relaxed);
        return;
    }
    let started = Instant::now();
    let f = c.fill();
    let took = started.elapsed();
    let root = f.root();
    m.fill_ns.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    m.fills.fetch_add(1, Ordering::Relaxed);
    let chain = shared.lock().chain.chain_id();
    *lock(&m.held) = Some(Held { epoch, seed, challenge: c, fill: Arc::new(f), root });
    *lock(&m.not_filled) = None;
    m.filling.store(false, Ordering::Relaxed);
    let body =
        PoaiBody::MemoryCommit(MemoryCommit { chain, provider: prover.key.public(), epoch, seed, claimed_mib, root });
    shared.send(Command::PublishPoai(body.sign(&prover.key).encode()));
    tracing::info!(epoch, claimed_mib, seconds = took.as_secs_f64(), "memory filled and committed");
}

/// MemAvailable, in MiB (None where /proc/meminfo cannot be read).
fn available_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?;
    kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|k| k / 1024)
}

/// Answers a validator's opening from the fill held.
fn answer_open(shared: &Shared, open: MemoryOpen) {
    let Some(prover) = &shared.poai.prover else { return };
    let m = &prover.memory;
    let validator = open.validator.address();
    let (held, chain) = {
        let held = lock(&m.held);
        let Some(h) = held.as_ref().filter(|h| h.epoch == open.epoch && h.seed == open.seed) else {
            tracing::info!(%validator, epoch = open.epoch, "a memory opening for a fill not held; not answered");
            return;
        };
        ((h.challenge.clone(), h.fill.clone(), h.root), open.chain)
    };
    {
        let mut answered = lock(&m.answered);
        let (e, count, last) = answered.get(&validator).copied().unwrap_or((open.epoch, 0, 0));
        let (count, last) = if e == open.epoch { (count, last) } else { (0, 0) };
        if count >= OPENS_PER_EPOCH || last >= open.open {
            return;
        }
        answered.retain(|_, (e, _, _)| *e >= open.epoch);
        answered.insert(validator, (open.epoch, count + 1, open.open));
    }
    let started = Instant::now();
    let (c, f, root) = held;
    let indices = c.to_open(&root, &open.nonce);
    let openings = if m.keep_percent >= 100 {
        f.open(&c, &indices)
    } else {
        let keep = m.keep_percent as u64;
        f.open_keeping(&c, &indices, &|b| (b.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % 100 < keep)
    };
    let body = PoaiBody::MemoryAnswer(MemoryAnswer {
        chain,
        provider: prover.key.public(),
        validator,
        open_id: open.id(),
        openings,
    });
    shared.send(Command::PublishPoai(body.sign(&prover.key).encode()));
    let us = started.elapsed().as_micros() as u64;
    m.answers.fetch_add(1, Ordering::Relaxed);
    m.last_answer_us.store(us, Ordering::Relaxed);
    tracing::info!(%validator, open = open.open, micros = us, "memory opening answered");
}

/// One pass of the validator's memory rounds: providers in step with the chain, commitments
/// and answers taken, the epoch's opening when its moment comes, overdue answers judged, and
/// the chain told what changed, as of epoch `e` at `height` of chain `chain_id`. `providers`:
/// (address, memory claim, this validator's memory judgment on chain if fresh).
pub(super) fn validator_step(
    shared: &Shared,
    key: &SecretKey,
    (e, chain_id, height): (Epoch, Hash, u64),
    providers: &[(Address, u64, Option<u64>)],
) {
    let Some(v) = &shared.poai.validator else { return };
    let vm = &v.memory;
    let mut st = lock(&vm.state);
    let st = &mut *st;
    let tested: Vec<Address> = st.engine.providers().map(|(a, _)| *a).collect();
    for a in tested.iter().filter(|a| !providers.iter().any(|(p, mib, _)| p == *a && *mib > e.floor_mib)) {
        st.engine.remove(a);
    }
    for (p, mib, _) in providers.iter().filter(|(_, mib, _)| *mib > e.floor_mib) {
        st.engine.register(*p, *mib);
    }
    let mut judged: Vec<MemoryJudgment> = vec![];
    let incoming: Vec<Incoming> = lock(&vm.inbox).drain(..).collect();
    for msg in incoming {
        match msg {
            Incoming::Commit(c) => {
                let who = c.provider.address();
                if let Err(why) = st.engine.commit(&who, c.epoch, &c.seed, c.claimed_mib, c.root) {
                    tracing::debug!(provider = %who, %why, "memory commitment not taken");
                }
            }
            Incoming::Answer { provider, at_ns, answer } => {
                let Some((&open, _)) = st.opens.iter().find(|(_, id)| **id == answer.open_id) else { continue };
                match st.engine.answer(&provider, open, &answer.openings, at_ns) {
                    Ok(j) => judged.push(j),
                    Err(why) => tracing::debug!(%provider, %why, "memory answer not taken"),
                }
            }
        }
    }
    // The opening: once per epoch, at a moment drawn in the second half of the window (a
    // provider cannot know when, so it must hold its whole fill through the window).
    let now = Instant::now();
    if e.in_window && st.opened_epoch != Some(e.start) && e.into >= e.window / 2 {
        let open_at = match st.open_at {
            Some((epoch, at)) if epoch == e.start => at,
            _ => {
                let span_ms = (e.window / 2).saturating_sub(1).max(1) * e.block_time_ms / 2;
                let mut r = [0u8; 8];
                let delay = match getrandom::fill(&mut r) {
                    Ok(()) => u64::from_le_bytes(r) % span_ms.max(1),
                    Err(_) => 0,
                };
                let at = now + Duration::from_millis(delay);
                st.open_at = Some((e.start, at));
                at
            }
        };
        if now >= open_at {
            if let Some(seed) = e.seed {
                let mut nonce = [0u8; 32];
                if getrandom::fill(&mut nonce).is_ok() {
                    st.opened_epoch = Some(e.start);
                    let deadline_ns = vm.deadline_ms as u64 * 1_000_000;
                    let (open, named, missing) = st.engine.open(e.start, nonce, now_ns(shared), deadline_ns);
                    judged.extend(missing);
                    if !named.is_empty() {
                        let body = MemoryOpen {
                            chain: chain_id,
                            validator: key.public(),
                            epoch: e.start,
                            seed,
                            open,
                            nonce,
                            deadline_ms: vm.deadline_ms,
                            providers: named.clone(),
                        };
                        st.opens.insert(open, body.id());
                        while st.opens.len() > 16 {
                            st.opens.pop_first();
                        }
                        shared.send(Command::PublishPoai(PoaiBody::MemoryOpen(body).sign(key).encode()));
                        tracing::info!(epoch = e.start, providers = named.len(), "memory opening sent");
                    }
                }
            }
        }
    }
    judged.extend(st.engine.tick(now_ns(shared)));
    for j in judged {
        match &j.verdict {
            MemoryVerdict::Shown { .. } => tracing::info!(provider = %j.provider, reason = %j.reason, "memory shown"),
            _ => tracing::warn!(provider = %j.provider, reason = %j.reason, "memory not shown"),
        }
        if st.log.len() == LOG_KEPT {
            st.log.pop_front();
        }
        st.log.push_back((crate::now_ms(), height, j));
    }
    let reason = |p: &Address| {
        st.log.iter().rev().find(|(_, _, j)| j.provider == *p).map_or_else(
            || "no memory opening answered".to_string(),
            |(_, _, j)| format!("memory epoch {}: {}", j.epoch, j.reason),
        )
    };
    let want = |p: &Address| st.engine.on_chain_mib(p);
    let judge = |provider, memory_mib, reason| TxKind::JudgeMemory { provider, memory_mib, reason };
    super::reconcile(shared, key, &mut st.sent, providers, want, reason, judge);
}

/// What `GET /poai` shows of memory challenges.
pub(super) fn view(shared: &Shared) -> (Option<api::MemoryValidator>, Option<api::MemoryProver>) {
    let validator = shared.poai.validator.as_ref().map(|v| {
        let st = lock(&v.memory.state);
        let providers = st
            .engine
            .providers()
            .map(|(a, p)| api::MemoryProvider {
                provider: a.to_string(),
                claimed_mib: p.claimed_mib,
                committed_epoch: p.committed_epoch,
                shown: p.shown,
                failed: p.failed,
                fails_in_a_row: p.fails_in_a_row,
                on_chain_mib: p.on_chain_mib,
            })
            .collect();
        let judgments = st
            .log
            .iter()
            .rev()
            .take(100)
            .map(|(at_ms, height, j)| api::MemoryEngineJudgment {
                at_ms: *at_ms,
                height: *height,
                provider: j.provider.to_string(),
                epoch: j.epoch,
                shown: j.verdict.passed(),
                reason: j.reason.clone(),
            })
            .collect();
        api::MemoryValidator { deadline_ms: v.memory.deadline_ms, opened_epoch: st.opened_epoch, providers, judgments }
    });
    let prover = shared.poai.prover.as_ref().map(|p| {
        let m = &p.memory;
        let held = lock(&m.held);
        api::MemoryProver {
            held_epoch: held.as_ref().map(|h| h.epoch),
            held_mib: held.as_ref().map(|h| h.challenge.bytes() >> 20),
            fills: m.fills.load(Ordering::Relaxed),
            fill_seconds: m.fill_ns.load(Ordering::Relaxed) as f64 / 1e9,
            openings_answered: m.answers.load(Ordering::Relaxed),
            last_answer_ms: m.last_answer_us.load(Ordering::Relaxed) as f64 / 1e3,
            not_filled: lock(&m.not_filled).clone(),
        }
    });
    (validator, prover)
}
