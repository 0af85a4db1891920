//! Proof of AI on the network (`docs/poai.md` §6): a validator node (`--validator-key`) runs
//! the challenge engine of `ergon-poai` against every registered provider, and a provider node
//! answers by itself.
//!
//! - **Rounds.** Every `round_interval` the validator gossips one signed announcement naming
//!   every provider and the class it is tested at, seeded by the tip's id; between rounds,
//!   *probes* (one product of the smallest size) ask only whether the provider is there.
//! - **Answers.** A provider derives its parts from the announcement, computes them one after
//!   another and gossips each answer, signed, as soon as it is done. The validator times each
//!   arrival on its own clock and feeds the engine, which checks it exactly.
//! - **Judgments.** Whenever what the engine would hold on chain for a provider differs from
//!   what the chain holds from this validator, it sends a `Judge` transaction with the reason:
//!   the confirmed or demoted class, or 0 when the provider stopped answering (its leases are
//!   then released in that block, `ergon-market`'s verification module).
//!
//! What a provider agrees to compute is bounded by what it claims: it answers only staked
//! validators, rounds seeded by a recent block of its chain, one round per validator at a time,
//! parts within the wire's limits, and a class no higher than its own offer's.
//!
//! Memory challenges, once per memory epoch, are in [`memory`]; hidden audits (paid jobs whose
//! answer the validator knows) in [`audit`].

pub mod audit;
pub mod memory;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ergon_net::{Command, PeerId, Verdict};
use ergon_poai::{ComputeChallenge, Engine, Judgment, PoaiParams, Verdict as PoaiVerdict};
use ergon_types::poai::{Answer, PoaiBody, PoaiMessage, Round};
use ergon_types::tx::MAX_JUDGE_REASON;
use ergon_types::{Address, Canonical, SecretKey, TxKind};

use crate::Shared;

/// A round's seed must be the id of one of the last this many blocks of this node's chain.
const SEED_WITHIN_BLOCKS: u64 = 8;
/// Judgments kept for the API.
const JUDGMENTS_KEPT: usize = 512;
/// Announcements a validator keeps (a round is over long before this many more are made).
const ANNOUNCEMENTS_KEPT: usize = 256;
/// Answers waiting to be checked, and rounds waiting to be answered (bounded queues).
const ANSWERS_QUEUED: usize = 4096;
const ROUNDS_QUEUED: usize = 16;
/// A judgment sent but not yet on chain is sent again after this long.
const RESEND_AFTER: Duration = Duration::from_secs(20);
/// Least time between two announcements of one validator that a node relays, and between two
/// timed rounds of one validator that a provider answers: a staked validator cannot make
/// providers compute (or the network carry) more than this allows.
const MIN_ANNOUNCE_GAP: Duration = Duration::from_millis(100);
const MIN_TIMED_ROUND_GAP: Duration = Duration::from_secs(1);
/// Answers one provider may have relayed per second.
const ANSWERS_PER_SECOND: u32 = 64;

/// How often a validator tests, for a chain whose blocks come every `block_time_ms`.
#[derive(Clone, Debug)]
pub struct Cadence {
    /// A timed round (10 parts of 100 ms at the claim) per slot of this length, the staked
    /// validators taking the slots in turn (address order), so a provider answers one round
    /// at a time however many validators there are: 1 s of an honest
    /// provider's time every 30 s is 3.3% of it at the claim (the goal is at most 5%; answering
    /// measured 1.2 s a round on a 2-core machine shared with a validator: 4%).
    pub round_interval: Duration,
    /// A liveness probe this often between rounds: a dead provider is found within this plus
    /// the probe's grace, well inside two blocks.
    pub probe_interval: Duration,
}

impl Cadence {
    pub fn for_block_time(block_time_ms: u64, params: &PoaiParams) -> Self {
        let round_ns = params.parts as u64 * params.target_ns;
        Cadence {
            round_interval: Duration::from_nanos(round_ns * 30),
            probe_interval: Duration::from_millis((block_time_ms / 4).clamp(250, 2000)),
        }
    }
}

/// One judgment as the API shows it.
#[derive(Clone, Debug)]
struct Logged {
    at_ms: u64,
    height: u64,
    judgment: Judgment,
}

/// An answer received, with its arrival on the validator's clock.
struct Arrived {
    provider: Address,
    at_ns: u64,
    /// The signed answer as received (checked, and the evidence should it be wrong).
    signed: PoaiMessage,
}

impl Arrived {
    fn answer(&self) -> Option<&Answer> {
        match &self.signed.body {
            PoaiBody::Answer(a) => Some(a),
            _ => None,
        }
    }
}

struct ValidatorState {
    engine: Engine,
    /// Answers that came before the part they follow (gossip may reorder), by provider.
    early: HashMap<Address, BTreeMap<(u64, u32), Arrived>>,
    log: VecDeque<Logged>,
    /// What this validator last sent on chain per provider, and when.
    sent: HashMap<Address, (u64, Instant)>,
    /// This validator's recent announcements by round number (evidence for fraud proofs, and
    /// what answers must name).
    announced: BTreeMap<u64, (PoaiMessage, ergon_types::Hash)>,
    rounds: u64,
    probes: u64,
    answers_checked: u64,
    last_round: Option<Instant>,
    /// The round slot (wall clock ÷ round interval) of this validator's last timed round.
    last_slot: Option<u64>,
    last_probe: Option<Instant>,
}

/// The validator side: its key, its engine and the answers waiting for it.
pub struct Validator {
    key: SecretKey,
    /// The staked validators in address order, as of a height: timed rounds take turns by it.
    roster: Mutex<(u64, Vec<Address>)>,
    state: Mutex<ValidatorState>,
    inbox: Mutex<VecDeque<Arrived>>,
    memory: memory::ValidatorMemory,
    /// Hidden audits this validator ran ([`audit`]).
    pub audits: audit::AuditLog,
}

/// The provider side: the rounds to answer, and what answering cost.
pub struct Prover {
    key: SecretKey,
    /// Testing only: answers take this many times as long (a machine slower than its offer).
    slowdown: f64,
    /// Testing only: answers are for a wrong product, consistently committed and opened (the
    /// cheat a validator must prove on chain).
    corrupt: bool,
    rounds: Mutex<VecDeque<Round>>,
    /// Wakes the answering task when a round arrives (timing starts at the announcement: no
    /// polling delay may be added to the first part).
    arrived: tokio::sync::Notify,
    /// Set while a timed round is being answered: the miner pauses.
    answering: std::sync::atomic::AtomicBool,
    /// The last round answered per validator (a round is answered once), and when its last
    /// timed round was.
    answered: Mutex<HashMap<Address, (u64, Option<Instant>)>>,
    busy_ns: AtomicU64,
    parts_answered: AtomicU64,
    rounds_answered: AtomicU64,
    probes_answered: AtomicU64,
    memory: memory::ProverMemory,
}

/// What a node runs of Proof of AI.
#[derive(Default)]
pub struct Poai {
    pub validator: Option<Validator>,
    pub prover: Option<Prover>,
    /// The last round number seen per announcing validator, and when (replays and floods are
    /// not relayed); bounded by the staked validators, since only their rounds are kept.
    seen_rounds: Mutex<HashMap<Address, (u64, Instant)>>,
    /// Answers relayed per provider in the current second; bounded by the registered providers.
    relayed: Mutex<HashMap<Address, (Instant, u32)>>,
    memory_relay: memory::MemoryRelay,
}

/// How a node takes part in Proof of AI, and the testing-only ways a provider cheats.
#[derive(Clone, Debug, Default)]
pub struct PoaiOptions {
    pub validator: Option<SecretKey>,
    pub prover: Option<SecretKey>,
    /// Testing only: answers take this many times as long (≤ 1: honest).
    pub slowdown: f64,
    /// Testing only: answers for a wrong product.
    pub corrupt: bool,
    /// Testing only: the share of its memory fill (percent) a provider keeps, rebuilding the
    /// rest when opened (100: honest).
    pub memory_keep_percent: u8,
    /// The validator's deadline for memory answers.
    pub memory_deadline_ms: u32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Poai {
    pub fn new(o: PoaiOptions) -> Self {
        let (slowdown, corrupt) = (o.slowdown, o.corrupt);
        let validator = o.validator.map(|key| Validator {
            key,
            roster: Mutex::new((u64::MAX, vec![])),
            state: Mutex::new(ValidatorState {
                engine: {
                    let mut e = Engine::new(PoaiParams::default());
                    e.number_rounds_after(crate::now_ms());
                    e
                },
                early: HashMap::new(),
                announced: BTreeMap::new(),
                log: VecDeque::new(),
                sent: HashMap::new(),
                rounds: 0,
                probes: 0,
                answers_checked: 0,
                last_round: None,
                last_slot: None,
                last_probe: None,
            }),
            inbox: Mutex::new(VecDeque::new()),
            memory: memory::ValidatorMemory::new(o.memory_deadline_ms),
            audits: audit::AuditLog::default(),
        });
        let prover = o.prover.map(|key| Prover {
            key,
            slowdown: slowdown.max(1.0),
            corrupt,
            rounds: Mutex::new(VecDeque::new()),
            arrived: tokio::sync::Notify::new(),
            answering: std::sync::atomic::AtomicBool::new(false),
            answered: Mutex::new(HashMap::new()),
            busy_ns: AtomicU64::new(0),
            parts_answered: AtomicU64::new(0),
            rounds_answered: AtomicU64::new(0),
            probes_answered: AtomicU64::new(0),
            memory: memory::ProverMemory::new(o.memory_keep_percent),
        });
        Poai {
            validator,
            prover,
            seen_rounds: Mutex::default(),
            relayed: Mutex::default(),
            memory_relay: memory::MemoryRelay::default(),
        }
    }

    /// Whether this node's provider is answering a timed round (its miner then waits).
    pub fn answering(&self) -> bool {
        self.prover.as_ref().is_some_and(|p| p.answering.load(Ordering::Relaxed))
    }
}

fn now_ns(shared: &Shared) -> u64 {
    shared.started.elapsed().as_nanos() as u64
}

/// Judges a gossiped Proof-of-AI message: forwards only what a node should relay, hands rounds
/// naming this node's provider to it and answers for this node's validator to it.
pub fn on_message(shared: &Shared, from: PeerId, bytes: &[u8]) -> Verdict {
    let at_ns = now_ns(shared);
    let Ok(msg) = PoaiMessage::decode(bytes) else {
        shared.send(Command::Punish(from));
        return Verdict::Reject;
    };
    if msg.verify().is_err() {
        return Verdict::Reject;
    }
    if matches!(msg.body, PoaiBody::MemoryCommit(_) | PoaiBody::MemoryOpen(_) | PoaiBody::MemoryAnswer(_)) {
        return memory::on_message(shared, msg, at_ns);
    }
    let signer = msg.body.signer().address();
    // What the chain says of it, under one lock: a round must come from a staked validator and
    // be seeded by one of this node's last blocks; an answer from a registered provider.
    let known = {
        let node = shared.lock();
        let chain = &node.chain;
        msg.body.chain() == chain.chain_id()
            && match &msg.body {
                PoaiBody::Round(round) => {
                    let tip = chain.height();
                    chain.ledger().account(&signer).stake >= chain.params().min_validator_stake
                        && (tip.saturating_sub(SEED_WITHIN_BLOCKS)..=tip)
                            .any(|h| chain.active_id(h) == Some(round.seed))
                }
                PoaiBody::Answer(_) => chain.ledger().market.provider(&signer).is_some(),
                _ => false,
            }
    };
    if !known {
        return Verdict::Ignore;
    }
    match &msg.body {
        PoaiBody::Round(round) => {
            {
                let mut seen = lock(&shared.poai.seen_rounds);
                let now = Instant::now();
                if seen
                    .get(&signer)
                    .is_some_and(|&(r, at)| r >= round.round || now.duration_since(at) < MIN_ANNOUNCE_GAP)
                {
                    return Verdict::Ignore;
                }
                seen.insert(signer, (round.round, now));
            }
            if let Some(prover) = &shared.poai.prover {
                let me = prover.key.public().address();
                if round.classes.iter().any(|(p, _)| *p == me) {
                    let mut queue = lock(&prover.rounds);
                    if queue.len() < ROUNDS_QUEUED {
                        let PoaiBody::Round(round) = msg.body else { unreachable!("matched above") };
                        queue.push_back(round);
                        prover.arrived.notify_one();
                    }
                }
            }
            Verdict::Accept
        }
        PoaiBody::Answer(answer) => {
            {
                let mut relayed = lock(&shared.poai.relayed);
                let now = Instant::now();
                let (since, count) = relayed.entry(signer).or_insert((now, 0));
                if now.duration_since(*since) >= Duration::from_secs(1) {
                    (*since, *count) = (now, 0);
                }
                *count += 1;
                if *count > ANSWERS_PER_SECOND {
                    return Verdict::Ignore;
                }
            }
            if let Some(v) = &shared.poai.validator {
                if answer.validator == v.key.public().address() {
                    let mut inbox = lock(&v.inbox);
                    if inbox.len() < ANSWERS_QUEUED {
                        inbox.push_back(Arrived { provider: signer, at_ns, signed: msg });
                    }
                    // Addressed to this node: nobody else needs it.
                    return Verdict::Ignore;
                }
            }
            Verdict::Accept
        }
        _ => Verdict::Ignore,
    }
}

/// Runs the validator until the node stops.
pub async fn run_validator(shared: Arc<Shared>, round_every_s: Option<f64>) {
    let (me, block_time_ms, min_stake) = {
        let node = shared.lock();
        let v = shared.poai.validator.as_ref().expect("run only on a validator node");
        let p = node.chain.params();
        (v.key.public().address(), p.block_time_ms, p.min_validator_stake)
    };
    let params = PoaiParams::default();
    let mut cadence = Cadence::for_block_time(block_time_ms, &params);
    if let Some(s) = round_every_s.filter(|s| s.is_finite() && *s > 0.0) {
        cadence.round_interval = Duration::from_secs_f64(s);
    }
    tracing::info!(validator = %me, round_every_s = cadence.round_interval.as_secs_f64(),
        probe_every_s = cadence.probe_interval.as_secs_f64(), "Proof-of-AI validator started");
    let mut warned_stake = false;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while !shared.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let stake = shared.lock().chain.ledger().account(&me).stake;
        if stake < min_stake {
            if !warned_stake {
                tracing::warn!(stake, min_stake, "this validator's stake is below the minimum: it runs no rounds until it stakes (`ergon wallet stake`)");
                warned_stake = true;
            }
            continue;
        }
        let s = shared.clone();
        let c = cadence.clone();
        let _ = tokio::task::spawn_blocking(move || validator_step(&s, &c)).await;
    }
}

/// One pass of the validator: providers in step with the chain, rounds and probes due, answers
/// checked, overdue ones judged, and the chain told what changed.
fn validator_step(shared: &Shared, cadence: &Cadence) {
    let Some(v) = &shared.poai.validator else { return };
    let me = v.key.public().address();
    // What the chain says: providers taking leases, with their claims and this validator's
    // judgment of each.
    let (chain_id, seed_block, height, providers, memory_claims, epoch, (turn, turns)) = {
        let node = shared.lock();
        let market = &node.chain.ledger().market;
        // A judgment past half its lifetime is sent again, so it never expires while this
        // validator is there to renew it.
        let renew_below = node.chain.height().saturating_sub(node.chain.params().judgment_ttl_blocks / 2);
        let active = || {
            market
                .providers()
                .filter(|p| p.owner != me)
                .filter(|p| matches!(p.status, ergon_market::ProviderStatus::Active))
        };
        let mine = |j: &ergon_market::Judgments| {
            j.get(&me).filter(|&&(_, _, at)| at > renew_below).map(|&(_, figure, _)| figure)
        };
        let providers: Vec<(Address, u64, Option<u64>)> =
            active().map(|p| (p.owner, p.offer.profile.int8_gmacs, mine(&p.judged))).collect();
        let memory_claims: Vec<(Address, u64, Option<u64>)> =
            active().map(|p| (p.owner, p.offer.profile.memory_mib, mine(&p.judged_memory))).collect();
        // One block below the tip: every provider has it by now (a round seeded by a block a
        // provider has not received yet is ignored there, and missed).
        let h = node.chain.height();
        let seed_block = node.chain.active_id(h.saturating_sub(1)).unwrap_or_else(|| node.chain.tip());
        // Validators take turns at timed rounds, one per slot, in address order: two rounds at
        // once would make an honest provider look like one machine serving two identities,
        // and k validators at one round each per slot would cost a provider k times 3.3%.
        let mut roster = lock(&v.roster);
        if roster.0 != h {
            let min = node.chain.params().min_validator_stake;
            let staked: Vec<Address> =
                node.chain.ledger().accounts().filter(|(_, a)| a.stake >= min).map(|(a, _)| *a).collect();
            *roster = (h, staked);
        }
        let turns = roster.1.len().max(1) as u64;
        let turn = roster.1.iter().position(|a| *a == me).unwrap_or(0) as u64;
        drop(roster);
        let epoch = memory::epoch_now(&node);
        (node.chain.chain_id(), seed_block, h, providers, memory_claims, epoch, (turn, turns))
    };
    memory::validator_step(shared, &v.key, (epoch, chain_id, height), &memory_claims);
    // Providers filling their memory challenge sit out timed rounds (probes still reach them).
    let resting = v.memory.filling(&epoch, &providers.iter().map(|(p, _, _)| *p).collect::<Vec<_>>());
    let mut st = lock(&v.state);
    let st = &mut *st;
    let known: Vec<Address> = st.engine.providers().map(|(a, _)| *a).collect();
    for a in known.iter().filter(|a| !providers.iter().any(|(p, _, _)| p == *a)) {
        st.engine.remove(a);
        st.early.remove(a);
    }
    for (p, claim, _) in &providers {
        st.engine.register(*p, *claim);
    }
    let now = Instant::now();
    let mut judged = vec![];
    let due = |last: Option<Instant>, every: Duration| last.is_none_or(|t| now.duration_since(t) >= every);
    // Nodes relay a validator's announcements no closer than MIN_ANNOUNCE_GAP: one sooner would
    // be dropped everywhere and every provider would miss it.
    let spaced = due(st.last_probe.max(st.last_round), MIN_ANNOUNCE_GAP * 3);
    // A round starts only in the first quarter of its slot, so two in a row are at least three
    // quarters of a slot apart (a provider answers one validator's timed rounds no closer than
    // MIN_TIMED_ROUND_GAP: one at the end of a slot and one at the start of the next were).
    let interval_ms = (cadence.round_interval.as_millis() as u64).max(1);
    let (slot, into_slot) = (crate::now_ms() / interval_ms, crate::now_ms() % interval_ms);
    let my_slot = slot % turns == turn && st.last_slot != Some(slot) && into_slot < interval_ms / 4;
    // A timed round in this validator's slot, else a probe when one is due.
    let announcing = if providers.is_empty() || !spaced {
        None
    } else if my_slot {
        Some(false)
    } else if due(st.last_probe, cadence.probe_interval) {
        Some(true)
    } else {
        None
    };
    if let Some(probe) = announcing {
        if probe {
            st.last_probe = Some(now);
        } else {
            (st.last_slot, st.last_round, st.last_probe) = (Some(slot), Some(now), Some(now));
        }
        let mut nonce = [0u8; 32];
        match getrandom::fill(&mut nonce) {
            Ok(()) => issue_round(shared, st, &v.key, (chain_id, seed_block, nonce), probe, &resting),
            Err(_) => tracing::error!("no OS randomness for a round's nonce; no round this time"),
        }
    }
    let mut frauds = vec![];
    // Answers, in the order of their parts (an early one waits for the part before it).
    let arrived: Vec<Arrived> = lock(&v.inbox).drain(..).collect();
    for a in arrived {
        let Some(key) = a.answer().map(|w| (w.round, w.part)) else { continue };
        let early = st.early.entry(a.provider).or_default();
        if early.len() < 64 {
            early.insert(key, a);
        }
    }
    for (provider, early) in &mut st.early {
        while let Some((&(round, part), _)) = early.first_key_value() {
            match st.engine.expecting(provider) {
                Some(next) if next == (round, part) => {}
                // A later part of the open round: it waits for the one before it.
                Some((r, next)) if r == round && part > next => break,
                // Stale, or never asked: dropped.
                _ => {
                    early.pop_first();
                    continue;
                }
            }
            let a = early.pop_first().expect("first key").1;
            let Some(wire) = a.answer().filter(|w| st.announced.get(&round).is_some_and(|(_, id)| w.round_id == *id))
            else {
                tracing::debug!(%provider, round, part, "an answer naming another announcement; dropped");
                continue;
            };
            let answer = ergon_poai::Answer { commitment: wire.commitment, openings: wire.openings.clone() };
            match st.engine.answer(provider, round, part, &answer, a.at_ns) {
                Ok(j) => {
                    st.answers_checked += 1;
                    if j.iter().any(|j| j.verdict == PoaiVerdict::Wrong) {
                        if let Some((announced, _)) = st.announced.get(&round) {
                            frauds.push((*provider, announced.clone(), a.signed));
                        }
                    }
                    judged.extend(j);
                }
                Err(why) => tracing::debug!(%provider, round, part, %why, "answer not taken"),
            }
        }
    }
    st.early.retain(|_, e| !e.is_empty());
    judged.extend(st.engine.tick(now_ns(shared)));
    for j in &judged {
        match &j.verdict {
            PoaiVerdict::Confirm { .. } => tracing::info!(provider = %j.provider, reason = %j.reason, "confirmed"),
            _ => tracing::warn!(provider = %j.provider, verdict = ?j.verdict, reason = %j.reason, "judged"),
        }
        if st.log.len() == JUDGMENTS_KEPT {
            st.log.pop_front();
        }
        st.log.push_back(Logged { at_ms: crate::now_ms(), height, judgment: j.clone() });
    }
    // A wrong answer is proven on chain at once: the round and the signed answer are the proof.
    for (provider, round, answer) in frauds {
        match crate::provider::submit(
            shared,
            &v.key,
            TxKind::ProveFraud { round: Box::new(round), answer: Box::new(answer) },
        ) {
            Ok(()) => tracing::warn!(%provider, "a wrong answer: fraud proof sent"),
            Err(why) => tracing::warn!(%provider, %why, "could not send a fraud proof"),
        }
    }
    let reason = |p: &Address| {
        st.log.iter().rev().find(|l| l.judgment.provider == *p).map_or_else(
            || "no round answered".to_string(),
            |l| format!("round {}: {}", l.judgment.round, l.judgment.reason),
        )
    };
    let want = |p: &Address| st.engine.on_chain_gmacs(p);
    let judge = |provider, gmacs, reason| TxKind::Judge { provider, gmacs, reason };
    reconcile(shared, &v.key, &mut st.sent, &providers, want, reason, judge);
}

/// Sends a judgment for each of `providers` (address, claim, what the chain holds from this
/// validator) where what its engine would hold (`want`) is something else, with `reason`;
/// the same judgment again only after `RESEND_AFTER` (it may have been lost).
fn reconcile(
    shared: &Shared,
    key: &SecretKey,
    sent: &mut HashMap<Address, (u64, Instant)>,
    providers: &[(Address, u64, Option<u64>)],
    want: impl Fn(&Address) -> Option<u64>,
    reason: impl Fn(&Address) -> String,
    judge: impl Fn(Address, u64, String) -> TxKind,
) {
    let now = Instant::now();
    for (p, _, on_chain) in providers {
        let Some(want) = want(p) else { continue };
        if *on_chain == Some(want) {
            sent.remove(p);
            continue;
        }
        if sent.get(p).is_some_and(|&(g, at)| g == want && now.duration_since(at) < RESEND_AFTER) {
            continue;
        }
        let tx = judge(*p, want, truncate(&reason(p), MAX_JUDGE_REASON));
        match crate::provider::submit(shared, key, tx) {
            Ok(()) => {
                tracing::info!(provider = %p, figure = want, "judgment sent");
                sent.insert(*p, (want, now));
            }
            Err(why) => tracing::warn!(provider = %p, %why, "could not send a judgment"),
        }
    }
}

/// Issues a round (a probe, or a timed round) to every provider not still answering one,
/// then signs and gossips its announcement, keeping it (the evidence a fraud proof needs).
fn issue_round(
    shared: &Shared,
    st: &mut ValidatorState,
    key: &SecretKey,
    (chain, seed, nonce): (ergon_types::Hash, ergon_types::Hash, [u8; 32]),
    probe: bool,
    resting: &[Address],
) {
    let challenge_seed = ergon_types::poai::challenge_seed(&seed, &nonce);
    let (round, classes): (u64, Vec<(Address, u64)>) = if probe {
        let (round, probed) = st.engine.probe(&challenge_seed, now_ns(shared));
        (round, probed.into_iter().map(|(p, _)| (p, 0)).collect())
    } else {
        let (round, issued) = st.engine.issue_except(&challenge_seed, now_ns(shared), resting);
        let classes = issued.iter().map(|(p, _)| (*p, st.engine.view(p).map_or(0, |v| v.class_gmacs))).collect();
        (round, classes)
    };
    if classes.is_empty() {
        return;
    }
    let p = st.engine.params();
    let (target_ns, parts, openings) = (p.target_ns, if probe { 1 } else { p.parts }, p.openings);
    let body = Round { chain, validator: key.public(), round, seed, nonce, probe, target_ns, parts, openings, classes };
    let id = body.id();
    let signed = PoaiBody::Round(body).sign(key);
    shared.send(Command::PublishPoai(signed.encode()));
    st.announced.insert(round, (signed, id));
    while st.announced.len() > ANNOUNCEMENTS_KEPT {
        st.announced.pop_first();
    }
    if probe {
        st.probes += 1;
    } else {
        st.rounds += 1;
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Runs the provider's answering until the node stops: probes at once, timed rounds one after
/// another.
pub async fn run_prover(shared: Arc<Shared>) {
    // Timed rounds one after another (answering two at once would make both look slow); probes
    // at once, never behind another validator's timed round (they are due within a second).
    let mut timed: VecDeque<Round> = VecDeque::new();
    let mut running: Option<tokio::task::JoinHandle<()>> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let Some(prover) = &shared.poai.prover else { return };
        let arrived: Vec<Round> = lock(&prover.rounds).drain(..).collect();
        for round in arrived {
            if round.probe {
                let s = shared.clone();
                tokio::task::spawn_blocking(move || answer_round(&s, round));
            } else if timed.len() < ROUNDS_QUEUED {
                timed.push_back(round);
            }
        }
        if running.as_ref().is_none_or(|r| r.is_finished()) {
            running = timed.pop_front().map(|round| {
                let s = shared.clone();
                tokio::task::spawn_blocking(move || answer_round(&s, round))
            });
        }
        // Woken by a round, or soon enough to start the next timed one.
        let _ = tokio::time::timeout(Duration::from_millis(20), prover.arrived.notified()).await;
    }
}

/// Computes and gossips every part of `round` this provider must answer.
fn answer_round(shared: &Shared, round: Round) {
    let Some(prover) = &shared.poai.prover else { return };
    let me = prover.key.public().address();
    let validator = round.validator.address();
    {
        let mut answered = lock(&prover.answered);
        let now = Instant::now();
        let (last, timed_at) = answered.get(&validator).copied().unwrap_or((0, None));
        let too_soon = !round.probe && timed_at.is_some_and(|t| now.duration_since(t) < MIN_TIMED_ROUND_GAP);
        if last >= round.round || too_soon {
            return;
        }
        answered.insert(validator, (round.round, if round.probe { timed_at } else { Some(now) }));
    }
    let Some(&(_, class)) = round.classes.iter().find(|(p, _)| *p == me) else { return };
    let (claim, registered_at) = shared
        .lock()
        .chain
        .ledger()
        .market
        .provider(&me)
        .map_or((0, 0), |p| (p.offer.profile.int8_gmacs, p.registered_at));
    let (round_id, seed) = (round.id(), round.challenge_seed());
    if class > claim {
        tracing::warn!(%validator, class, claim, "refusing a round above this provider's claim");
        return;
    }
    let started = Instant::now();
    let parts = if round.probe { 1 } else { round.parts };
    if !round.probe {
        prover.answering.store(true, Ordering::Relaxed);
    }
    for part in 0..parts {
        let t = Instant::now();
        let c = ComputeChallenge::derive(&seed, &me, round.round, part, class, round.target_ns, round.openings);
        let a = if prover.corrupt {
            let (ma, mb) = c.matrices();
            let mut product = ergon_kernels::matmul(&ma, &mb).expect("challenge shapes agree");
            product.as_mut_slice().iter_mut().step_by(3).for_each(|v| *v ^= 1);
            c.answer(&product)
        } else {
            c.solve()
        };
        if prover.slowdown > 1.0 {
            std::thread::sleep(t.elapsed().mul_f64(prover.slowdown - 1.0));
        }
        let body = PoaiBody::Answer(Answer {
            chain: round.chain,
            provider: prover.key.public(),
            validator,
            round: round.round,
            round_id,
            registered_at,
            part,
            commitment: a.commitment,
            openings: a.openings,
        });
        shared.send(Command::PublishPoai(body.sign(&prover.key).encode()));
        prover.parts_answered.fetch_add(1, Ordering::Relaxed);
    }
    if !round.probe {
        prover.answering.store(false, Ordering::Relaxed);
    }
    prover.busy_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    let counter = if round.probe { &prover.probes_answered } else { &prover.rounds_answered };
    counter.fetch_add(1, Ordering::Relaxed);
    if !round.probe {
        tracing::info!(%validator, round = round.round, class, parts, seconds = started.elapsed().as_secs_f64(), "challenge round answered");
    }
}

/// What `GET /poai` shows: the validator's engine (every provider's class, test state and the
/// judgments with their reasons) and the provider's answering and its cost.
pub fn view(shared: &Shared) -> ergon_api::poai::PoaiView {
    use ergon_api::poai as api;
    let uptime = shared.started.elapsed().as_secs_f64().max(1e-9);
    let (memory_validator, memory_prover) = memory::view(shared);
    let validator = shared.poai.validator.as_ref().zip(memory_validator).map(|(v, memory)| {
        let st = lock(&v.state);
        let providers = st
            .engine
            .providers()
            .map(|(a, p)| api::EngineProvider {
                provider: a.to_string(),
                claimed_gmacs: p.claimed_gmacs,
                class_gmacs: p.class_gmacs,
                verified_gmacs: p.verified_gmacs,
                on_chain_gmacs: st.engine.on_chain_gmacs(a),
                rounds: p.rounds,
                faults: p.faults,
                missed_in_a_row: p.missed_in_a_row,
                llr: p.llr,
            })
            .collect();
        let judgments = st
            .log
            .iter()
            .rev()
            .take(100)
            .map(|l| api::EngineJudgment {
                at_ms: l.at_ms,
                height: l.height,
                provider: l.judgment.provider.to_string(),
                round: l.judgment.round,
                verdict: verdict_name(&l.judgment.verdict),
                reason: l.judgment.reason.clone(),
            })
            .collect();
        api::ValidatorView {
            address: v.key.public().address().to_string(),
            rounds: st.rounds,
            probes: st.probes,
            answers_checked: st.answers_checked,
            providers,
            judgments,
            audits: v.audits.view(&v.key),
            memory,
        }
    });
    let prover = shared.poai.prover.as_ref().zip(memory_prover).map(|(p, memory)| {
        let busy = p.busy_ns.load(Ordering::Relaxed) as f64 / 1e9;
        api::ProverView {
            address: p.key.public().address().to_string(),
            rounds_answered: p.rounds_answered.load(Ordering::Relaxed),
            probes_answered: p.probes_answered.load(Ordering::Relaxed),
            parts_answered: p.parts_answered.load(Ordering::Relaxed),
            busy_seconds: busy,
            share_of_uptime: busy / uptime,
            memory,
        }
    });
    api::PoaiView { validator, prover }
}

fn verdict_name(v: &PoaiVerdict) -> String {
    match v {
        PoaiVerdict::Confirm { gmacs } => format!("confirm {gmacs}"),
        PoaiVerdict::Demote { from, to } => format!("demote {from} → {to}"),
        PoaiVerdict::Missed => "missed".into(),
        PoaiVerdict::Wrong => "wrong answer".into(),
        PoaiVerdict::ProposeSlash => "propose slash".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_cut_on_a_character_boundary() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("a→b", 2), "a");
        assert_eq!(truncate("a→b", 4), "a→");
    }
}
