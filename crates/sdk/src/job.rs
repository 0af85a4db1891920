//! The client's side of a job: follow it on chain, seal the inputs to whichever provider leases
//! each shard, fetch and decrypt each result, check it against its commitment on chain, and
//! hand back every shard's result with what the chain did (for a receipt).
//!
//! How a result is checked depends on the kind:
//! - `matmul`: each posted product is checked against its Merkle root and by Freivalds while its
//!   challenge window is open; a wrong one is disputed with one provably wrong entry, and one no
//!   node serves is challenged for its availability.
//! - `train` and `infer`: exact integer work with one right answer, checked by replication: the
//!   chain pays only results a majority of replicas (and a check replica, when the chain calls
//!   one) agree on, and the client checks the bytes it receives against that BLAKE3.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use ergon_api::market::{Job, JobStatus, TaskState};
use ergon_jobdata::{name, Output, Part};
use ergon_kernels::freivalds::{self, Verdict};
use ergon_kernels::npy::encode_npy;
use ergon_kernels::{MatI32, MatI8};
use ergon_types::{Address, Hash, JobKind, SecretKey, TxKind};

use crate::{ApiError, Client};

/// What the client computes its inputs from and checks its results against.
pub enum Work {
    /// C = A·B, split by rows of A: `bounds` are each shard's rows.
    Matmul { a: MatI8, b: MatI8, bounds: Vec<(usize, usize)> },
    /// A training or inference job and its two input blobs.
    Ml { kind: JobKind, inputs: [Vec<u8>; 2] },
}

impl Work {
    pub fn kind(&self) -> JobKind {
        match self {
            Work::Matmul { .. } => JobKind::Matmul,
            Work::Ml { kind, .. } => *kind,
        }
    }

    pub fn shards(&self) -> usize {
        match self {
            Work::Matmul { bounds, .. } => bounds.len(),
            Work::Ml { .. } => 1,
        }
    }

    /// Multiply-adds of `shard` (`job_macs`: the job's per-shard figure, for ML work).
    pub fn shard_macs(&self, shard: u16, job_macs: u64) -> u64 {
        match self {
            Work::Matmul { a, b, bounds } => {
                bounds.get(shard as usize).map_or(0, |&(r0, r1)| ((r1 - r0) * a.cols() * b.cols()) as u64)
            }
            Work::Ml { .. } => job_macs,
        }
    }

    /// The plaintext inputs of `shard`, in blob order.
    fn inputs(&self, shard: u16) -> [Vec<u8>; 2] {
        match self {
            Work::Matmul { a, b, bounds } => [encode_npy(&rows(a, bounds[shard as usize])), encode_npy(b)],
            Work::Ml { inputs, .. } => inputs.clone(),
        }
    }
}

/// A submitted job to follow to its end.
pub struct JobRun {
    pub client: Client,
    /// The client's key: it signs the inputs and disputes, and results are sealed to it.
    pub key: SecretKey,
    pub id: Hash,
    pub work: Work,
    pub timeout: Duration,
    /// Fee of each dispute or challenge sent.
    pub fee: u64,
    /// Stay until the job has settled on chain. Off: leave as soon as every product is
    /// verified (nothing is left to dispute), and let the chain pay after the window.
    pub wait_settlement: bool,
    /// For an ML job whose answer the client already knows (a validator's hidden audit, a job
    /// run before): each shard's expected commitment. A posted result that differs is doubted
    /// on chain at once (`TxKind::DoubtResult`): the check replica decides, and the client pays
    /// for it if the check sides with the provider.
    pub expect: Option<Vec<Hash>>,
    /// How often a leased task's progress (elapsed time and ETA) is reported while it computes.
    pub progress_every: Duration,
}

/// Something that happened while following a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A task was leased and its inputs were sealed to the leaseholder and uploaded.
    InputsSent { shard: u16, replica: u8, provider: Address },
    /// A leased task is being computed: for how long so far, and how long its provider's
    /// verified throughput says it takes (None: not verified yet). Sent every
    /// `JobRun::progress_every`.
    Computing { shard: u16, replica: u8, elapsed_s: u64, expected_s: Option<u64> },
    /// A shard's result was fetched, decrypted and verified.
    Verified { shard: u16, provider: Address, how: &'static str },
    /// A wrong product: the dispute was sent.
    Disputed { shard: u16, why: String },
    /// A posted product no node serves, or one that cannot be read: challenged on chain.
    Challenged { shard: u16, why: String },
    /// An ML result's copy that cannot be used; another replica's is waited for.
    Skipped { shard: u16, provider: Address, why: String },
    /// The job's state changed: its status and each task's state, in task order.
    Progress { status: String, states: Vec<String> },
    /// A posted ML result differs from the one the client expected: the doubt was sent.
    Doubted { shard: u16, provider: Address, posted: String, expected: Hash },
    /// A task waits for a provider, and the chain says why (the lowest ask against the job's
    /// maximum price, no provider with the memory, all busy…): sent when the reason changes.
    Waiting { shard: u16, replica: u8, why: String },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::InputsSent { shard, replica, provider } => {
                write!(f, "shard {shard} replica {replica}: leased to {provider}; inputs sealed to it and uploaded")
            }
            Event::Verified { shard, provider, how } => {
                write!(f, "shard {shard}: result from {provider} fetched, decrypted, verified ({how})")
            }
            Event::Disputed { shard, why } => write!(f, "shard {shard}: {why}"),
            Event::Doubted { shard, provider, posted, expected } => write!(
                f,
                "shard {shard}: {provider} posted {posted}, not the expected {}; doubt sent (the check replica decides)",
                expected.to_hex()
            ),
            Event::Challenged { shard, why } => write!(
                f,
                "shard {shard}: {why}; availability challenge sent (the provider must reveal rows on chain or be slashed)"
            ),
            Event::Skipped { shard, provider, why } => {
                write!(f, "shard {shard}: the copy from {provider} is unusable ({why}); waiting for another")
            }
            Event::Progress { status, states } => write!(f, "{status} [{}]", states.join(", ")),
            Event::Waiting { shard, replica, why } => write!(f, "shard {shard} replica {replica} waits: {why}"),
            Event::Computing { shard, replica, elapsed_s, expected_s } => match expected_s {
                Some(e) => write!(
                    f,
                    "shard {shard} replica {replica}: computing for {elapsed_s} s; ≈ {e} s at its provider's verified throughput, so ≈ {} s to go",
                    e.saturating_sub(*elapsed_s)
                ),
                None => write!(f, "shard {shard} replica {replica}: computing for {elapsed_s} s (its provider's throughput is not verified yet: no estimate)"),
            },
        }
    }
}

/// A followed job's end: every shard's verified result in shard order, the job as the node
/// last showed it, and how long it took from the first look.
pub struct Finished {
    pub results: Vec<Output>,
    /// The job as the node showed it last: every task settled, paid and burned.
    pub job: Job,
    pub took: Duration,
}

/// A leased task as the client follows it: first seen, the expected seconds, last reported.
type Computing = (Instant, Option<u64>, Instant);

/// How often a long-running leased task's progress is reported, unless the caller says.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// How long a posted result may stay unfetchable before the client challenges its availability.
const WITHHELD_AFTER: Duration = Duration::from_secs(4);

/// What checking one posted result found.
enum Checked {
    /// The result, decoded.
    Good(Output),
    /// Wrong: the dispute was sent.
    Disputed(String),
    /// Not fetchable yet (or not yet the posted one).
    NotYet,
    /// Fetched but undecryptable, unreadable or misshapen: challenged, never a reason to quit.
    Unusable(String),
}

impl JobRun {
    /// Follows the job until every shard's result is verified (and, for ML jobs or with
    /// `wait_settlement`, the job is done), telling `on_event` what happens.
    pub fn follow(&self, on_event: &mut dyn FnMut(Event)) -> Result<Finished, String> {
        let started = Instant::now();
        let kind = self.work.kind();
        let mut uploaded: HashSet<(u16, u8, Address)> = HashSet::new();
        let mut results: HashMap<u16, Output> = HashMap::new();
        let mut disputed: HashSet<(u16, u8, Address)> = HashSet::new();
        // When each posted result was first found missing: after WITHHELD_AFTER it is challenged.
        let mut missing: HashMap<(u16, u8, Address), Instant> = HashMap::new();
        // Results challenged once: they are still fetched, in case the provider serves them late.
        let mut challenged: HashSet<(u16, u8, Address)> = HashSet::new();
        // Shards doubted once (the chain takes one doubt per shard).
        let mut doubted: HashSet<u16> = HashSet::new();
        // The last waiting reason reported per queued task.
        let mut waiting: HashMap<(u16, u8), String> = HashMap::new();
        // Leased tasks: when this client first saw the lease, the time the provider's verified
        // throughput implies, and when progress was last reported.
        let mut computing: HashMap<(u16, u8, Address), Computing> = HashMap::new();
        let mut last = None;
        loop {
            if started.elapsed() > self.timeout {
                let id = self.id.to_hex();
                return Err(format!(
                    "gave up after {} s; `ergon job status {id}` says why. The job stays open with its \
                     escrow: shards still queued may be leased later (follow it again with `ergon job \
                     status`), or `ergon job cancel --key KEY {id}` withdraws them and refunds their \
                     escrow when the job closes; settled shards stay paid and `ergon job result \
                     --shard N` fetches them",
                    self.timeout.as_secs(),
                ));
            }
            std::thread::sleep(Duration::from_millis(300));
            let v = match self.client.job(&self.id) {
                Ok(v) => v,
                // Not in a block yet, or the node is briefly busy.
                Err(ApiError::Refused { status: 404 | 429 | 503, .. } | ApiError::Unreachable { .. }) => continue,
                Err(e) => return Err(e.to_string()),
            };
            let mut states = vec![];
            for t in &v.tasks {
                let (shard, replica) = (t.shard, t.replica);
                let state = t.state.name();
                states.push(state.to_string());
                if let TaskState::Queued { why: Some(why) } = &t.state {
                    if waiting.get(&(shard, replica)) != Some(why) {
                        waiting.insert((shard, replica), why.clone());
                        on_event(Event::Waiting { shard, replica, why: why.clone() });
                    }
                }
                let Some(Ok(holder)) = t.state.provider().map(str::parse::<Address>) else { continue };
                let posted = match &t.state {
                    TaskState::Posted { result, .. } | TaskState::Settled { result, .. } => result.as_str(),
                    _ => "",
                };
                let task = (shard, replica, holder);
                if state == "leased" && uploaded.insert(task) {
                    // One look at the provider: the key its inputs are sealed to, and the
                    // verified throughput the ETA comes from.
                    let p = self.client.provider(&holder).map_err(|e| e.to_string())?.provider;
                    let recipient = self.client.encryption_key_of(&p).map_err(|e| e.to_string())?;
                    self.send_inputs(shard, replica, &holder, &recipient)?;
                    on_event(Event::InputsSent { shard, replica, provider: holder });
                    let gmacs = p.verified_gmacs;
                    let macs = self.work.shard_macs(shard, v.macs_per_shard);
                    let expected = (gmacs > 0).then(|| macs.div_ceil(gmacs.saturating_mul(1_000_000_000)).max(1));
                    computing.insert(task, (Instant::now(), expected, Instant::now()));
                }
                if let Some((since, expected, last)) = computing.get_mut(&task) {
                    if state == "leased" && last.elapsed() >= self.progress_every {
                        *last = Instant::now();
                        let elapsed_s = since.elapsed().as_secs();
                        on_event(Event::Computing { shard, replica, elapsed_s, expected_s: *expected });
                    }
                }
                let expected = self.expect.as_ref().and_then(|e| e.get(shard as usize));
                if let Some(expected) = expected.filter(|_| kind != JobKind::Matmul && !t.check) {
                    if state == "posted" && posted != expected.to_hex() && doubted.insert(shard) {
                        let doubt = TxKind::DoubtResult { job: self.id, shard, expected: *expected };
                        self.client.submit(&self.key, self.fee, doubt).map_err(|e| e.to_string())?;
                        let posted = posted.to_string();
                        on_event(Event::Doubted { shard, provider: holder, posted, expected: *expected });
                    }
                }
                // Products are checked while they can still be disputed; ML results once the
                // replicas' vote has settled them.
                let checkable = match kind {
                    JobKind::Matmul => matches!(state, "posted" | "settled"),
                    _ => state == "settled",
                };
                if !checkable || results.contains_key(&shard) || disputed.contains(&task) {
                    continue;
                }
                match self.check_result(shard, replica, &holder, posted)? {
                    Checked::Good(output) => {
                        let how = if kind == JobKind::Matmul { "Freivalds" } else { "BLAKE3 of the settled result" };
                        on_event(Event::Verified { shard, provider: holder, how });
                        results.insert(shard, output);
                    }
                    Checked::Disputed(why) => {
                        on_event(Event::Disputed { shard, why });
                        disputed.insert(task);
                    }
                    Checked::NotYet => {
                        let since = *missing.entry(task).or_insert_with(Instant::now);
                        let due = state == "posted" && since.elapsed() > WITHHELD_AFTER;
                        if kind == JobKind::Matmul && due && challenged.insert(task) {
                            let why =
                                format!("no node serves the result {} s after it was posted", WITHHELD_AFTER.as_secs());
                            self.challenge(shard, replica)?;
                            on_event(Event::Challenged { shard, why });
                        }
                    }
                    Checked::Unusable(why) if kind == JobKind::Matmul => {
                        if state == "posted" && challenged.insert(task) {
                            self.challenge(shard, replica)?;
                            on_event(Event::Challenged { shard, why });
                        }
                        disputed.insert(task);
                    }
                    Checked::Unusable(why) => {
                        // An ML result is checked by its replicas' vote; a bad copy is skipped.
                        on_event(Event::Skipped { shard, provider: holder, why });
                        disputed.insert(task);
                    }
                }
            }
            let status = v.summary.status;
            let progress = (status.name().to_string(), states);
            if last.as_ref() != Some(&progress) {
                on_event(Event::Progress { status: progress.0.clone(), states: progress.1.clone() });
                last = Some(progress);
            }
            let verified = results.len() == self.work.shards();
            if verified && (status == JobStatus::Done || (!self.wait_settlement && kind == JobKind::Matmul)) {
                let results = (0..self.work.shards() as u16)
                    .map(|s| results.remove(&s).ok_or("a shard's result is missing"))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(Finished { results, job: v, took: started.elapsed() });
            }
            if status == JobStatus::Cancelled && v.summary.finished_at.is_some() {
                return Err("the job was cancelled".into());
            }
        }
    }

    /// Seals `shard`'s inputs to `holder`'s published key and uploads them under its names.
    fn send_inputs(&self, shard: u16, replica: u8, holder: &Address, key: &[u8; 32]) -> Result<(), String> {
        let [first, second] = self.work.inputs(shard);
        let (id, me) = (&self.id, &self.key);
        self.client.upload_sealed(me, key, name(id, shard, replica, holder, Part::InputA), &first)?;
        self.client.upload_sealed(me, key, name(id, shard, replica, holder, Part::InputB), &second)
    }

    fn check_result(&self, shard: u16, replica: u8, holder: &Address, posted: &str) -> Result<Checked, String> {
        let plain = match self.client.fetch_result(&self.key, &self.id, shard, replica, holder) {
            Ok(Some(plain)) => plain,
            Ok(None) => return Ok(Checked::NotYet),
            Err(why) => return Ok(Checked::Unusable(format!("the result does not decrypt: {why}"))),
        };
        let output = match Output::from_plaintext(self.work.kind(), plain) {
            Ok(o) => o,
            Err(why) => return Ok(Checked::Unusable(why)),
        };
        if output.commitment().to_hex() != posted {
            return Ok(Checked::NotYet); // a stale or foreign blob; the provider's own one will match
        }
        let (Work::Matmul { a, b, bounds }, Output::Product(c)) = (&self.work, &output) else {
            return Ok(Checked::Good(output)); // the chain's replica vote settled it; the bytes match
        };
        let a = rows(a, bounds[shard as usize]);
        if c.rows() != a.rows() || c.cols() != b.cols() {
            return Ok(Checked::Unusable(format!(
                "the result is {}×{}, not {}×{}",
                c.rows(),
                c.cols(),
                a.rows(),
                b.cols()
            )));
        }
        match freivalds::check(&a, b, c, freivalds::DEFAULT_ROUNDS, entropy()?).map_err(|e| e.to_string())? {
            Verdict::Accept { .. } => Ok(Checked::Good(output)),
            Verdict::Reject { row } => {
                let exact = ergon_kernels::matmul(&rows(&a, (row, row + 1)), b).map_err(|e| e.to_string())?;
                let n = c.cols();
                let col =
                    (0..n).find(|&j| exact.as_slice()[j] != c.as_slice()[row * n + j]).ok_or("Freivalds row check")?;
                let evidence = ergon_pouw::WrongEntry::build(&a, b, c, row, col).map_err(|e| e.to_string())?;
                let dispute = TxKind::Dispute { job: self.id, shard, replica, evidence };
                self.client.submit(&self.key, self.fee, dispute).map_err(|e| e.to_string())?;
                Ok(Checked::Disputed(format!("entry ({row}, {col}) of shard {shard} is wrong; dispute sent")))
            }
        }
    }

    /// Challenges the availability of a posted matmul result: the provider must reveal its
    /// first rows on chain or be slashed, and the shard goes to someone else.
    fn challenge(&self, shard: u16, replica: u8) -> Result<(), String> {
        let Work::Matmul { bounds, .. } = &self.work else { return Err("only products can be challenged".into()) };
        let (r0, r1) = bounds[shard as usize];
        let rows: Vec<u32> = (0..((r1 - r0).min(ergon_pouw::dispute::MAX_REVEAL_ROWS)) as u32).collect();
        let challenge = TxKind::ChallengeResult { job: self.id, shard, replica, rows };
        self.client.submit(&self.key, self.fee, challenge).map(|_| ()).map_err(|e| e.to_string())
    }
}

/// Rows r0..r1 of `a`.
pub fn rows(a: &MatI8, (r0, r1): (usize, usize)) -> MatI8 {
    MatI8::from_vec(r1 - r0, a.cols(), a.as_slice()[r0 * a.cols()..r1 * a.cols()].to_vec()).expect("row range")
}

/// Rows of every shard's product stacked into C.
pub fn assemble(shards: Vec<Output>) -> Result<MatI32, String> {
    let mut cols = None;
    let mut c = Vec::new();
    for part in shards {
        let Output::Product(part) = part else { return Err("a shard's result is not a product".into()) };
        if *cols.get_or_insert(part.cols()) != part.cols() {
            return Err("shards disagree on the product's width".into());
        }
        c.extend_from_slice(part.as_slice());
    }
    let cols = cols.unwrap_or(0);
    MatI32::from_vec(c.len() / cols.max(1), cols, c).map_err(|e| e.to_string())
}

fn entropy() -> Result<[u8; 32], String> {
    let mut e = [0u8; 32];
    getrandom::fill(&mut e).map_err(|e| format!("no OS randomness: {e}"))?;
    Ok(e)
}
