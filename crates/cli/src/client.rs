//! The client's side of a job (`ergon job submit … --out FILE`): follow the job on chain, seal
//! the inputs to whichever provider leases each shard, fetch and decrypt each result, check it
//! against the commitment on chain, and write it with a receipt once every shard has settled.
//!
//! How a result is checked depends on the kind:
//! - `matmul`: each posted product is checked against its Merkle root and by Freivalds while its
//!   challenge window is open; a wrong one is disputed with one provably wrong entry.
//! - `train` and `infer`: exact integer work with one right answer, checked by replication: the
//!   chain pays only results a majority of replicas agree on, and the client checks the bytes it
//!   receives against that BLAKE3. It also measures what it got: a trained model on the examples
//!   held out of training, predictions against the data set's labels.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ergon_jobdata::{name, Output, Part};
use ergon_kernels::freivalds::{self, Verdict};
use ergon_kernels::npy::{encode_npy, write_npy};
use ergon_kernels::{MatI32, MatI8};
use ergon_ml::{Dataset, Exact, Mlp};
use ergon_sdk::Client;
use ergon_types::{Address, Hash, JobKind, SecretKey, TxKind};
use serde_json::Value;

use crate::node_cmds::{http, sign_and_submit};
use crate::CmdResult;

/// What the client computes its inputs from and checks its results against.
pub enum Work {
    /// C = A·B, split by rows of A: `bounds` are each shard's rows.
    Matmul { a: MatI8, b: MatI8, bounds: Vec<(usize, usize)> },
    /// A training or inference job: its two input blobs, and the examples to measure the
    /// result on (held out of training, or the labelled data inferred on).
    Ml { kind: JobKind, inputs: [Vec<u8>; 2], measure_on: Dataset },
}

impl Work {
    fn shards(&self) -> usize {
        match self {
            Work::Matmul { bounds, .. } => bounds.len(),
            Work::Ml { .. } => 1,
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

pub struct ClientJob {
    pub api: SocketAddr,
    pub key: SecretKey,
    pub id: Hash,
    pub work: Work,
    pub out: PathBuf,
    pub timeout: Duration,
    pub fee: u64,
    /// Print progress and the receipt (off for benchmarks).
    pub verbose: bool,
    /// Stay until the job has settled on chain. Off: leave as soon as every product is
    /// verified (nothing is left to dispute), and let the chain pay after the window.
    pub wait_settlement: bool,
}

/// Assumed power per claimed core under AVX2 load, for the receipt's energy estimate.
const WATTS_PER_CORE: f64 = 10.0;

/// Rows r0..r1 of `a`.
pub fn rows(a: &MatI8, (r0, r1): (usize, usize)) -> MatI8 {
    MatI8::from_vec(r1 - r0, a.cols(), a.as_slice()[r0 * a.cols()..r1 * a.cols()].to_vec()).expect("row range")
}

fn entropy() -> Result<[u8; 32], String> {
    let mut e = [0u8; 32];
    getrandom::fill(&mut e).map_err(|e| format!("no OS randomness: {e}"))?;
    Ok(e)
}

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

fn check_result(
    job: &ClientJob,
    kind: JobKind,
    shard: u16,
    replica: u8,
    holder: &Address,
    posted: &str,
) -> Result<Checked, String> {
    let plain = match Client::new(job.api).fetch_result(&job.key, &job.id, shard, replica, holder) {
        Ok(Some(plain)) => plain,
        Ok(None) => return Ok(Checked::NotYet),
        Err(why) => return Ok(Checked::Unusable(format!("the result does not decrypt: {why}"))),
    };
    let output = match Output::from_plaintext(kind, plain) {
        Ok(o) => o,
        Err(why) => return Ok(Checked::Unusable(why)),
    };
    if output.commitment().to_hex() != posted {
        return Ok(Checked::NotYet); // a stale or foreign blob; the provider's own one will match
    }
    let (Work::Matmul { a, b, bounds }, Output::Product(c)) = (&job.work, &output) else {
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
            sign_and_submit(job.api, &job.key, job.fee, TxKind::Dispute { job: job.id, shard, replica, evidence })?;
            Ok(Checked::Disputed(format!("entry ({row}, {col}) of shard {shard} is wrong; dispute sent")))
        }
    }
}

/// How long a posted result may stay unfetchable before the client challenges its availability.
const WITHHELD_AFTER: Duration = Duration::from_secs(4);

/// Challenges the availability of a posted matmul result: the provider must reveal its first
/// rows on chain or be slashed, and the shard goes to someone else.
fn challenge(job: &ClientJob, shard: u16, replica: u8, why: &str) -> Result<String, String> {
    let Work::Matmul { bounds, .. } = &job.work else { return Err("only products can be challenged".into()) };
    let (r0, r1) = bounds[shard as usize];
    let rows: Vec<u32> = (0..((r1 - r0).min(ergon_pouw::dispute::MAX_REVEAL_ROWS)) as u32).collect();
    sign_and_submit(job.api, &job.key, job.fee, TxKind::ChallengeResult { job: job.id, shard, replica, rows })?;
    Ok(format!("{why}; availability challenge sent (the provider must reveal rows on chain or be slashed)"))
}

/// Prints when the job is verbose.
macro_rules! say {
    ($job:expr, $($t:tt)*) => { if $job.verbose { println!($($t)*); } };
}

pub fn run_job(job: ClientJob) -> CmdResult {
    let started = Instant::now();
    let kind = match &job.work {
        Work::Matmul { .. } => JobKind::Matmul,
        Work::Ml { kind, .. } => *kind,
    };
    let mut uploaded: HashSet<(u16, u8, String)> = HashSet::new();
    let mut results: HashMap<u16, Output> = HashMap::new();
    let mut disputed: HashSet<(u16, u8, String)> = HashSet::new();
    // When each posted result was first found missing: after WITHHELD_AFTER it is challenged.
    let mut missing: HashMap<(u16, u8, String), Instant> = HashMap::new();
    // Results challenged once: they are still fetched, in case the provider serves them late.
    let mut challenged: HashSet<(u16, u8, String)> = HashSet::new();
    let mut last_line = String::new();
    loop {
        if started.elapsed() > job.timeout {
            return Err(format!(
                "gave up after {} s; `ergon job status {}` says why",
                job.timeout.as_secs(),
                job.id.to_hex()
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
        let v = match http(job.api, "GET", &format!("/jobs/{}", job.id.to_hex()), None) {
            Ok(v) => v,
            Err(_) => continue, // not in a block yet
        };
        let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
        let mut states = vec![];
        for t in &tasks {
            let (shard, replica) = (t["shard"].as_u64().unwrap_or(0) as u16, t["replica"].as_u64().unwrap_or(0) as u8);
            let d = &t["detail"];
            let provider = d["provider"].as_str().unwrap_or("").to_string();
            let state = t["state"].as_str().unwrap_or("");
            states.push(state.to_string());
            let Ok(holder) = provider.parse::<Address>() else { continue };
            if state == "leased" && uploaded.insert((shard, replica, provider.clone())) {
                let client = Client::new(job.api);
                let key = client.provider_key(&holder).map_err(|e| e.to_string())?;
                let [first, second] = job.work.inputs(shard);
                client.upload_sealed(&job.key, &key, name(&job.id, shard, replica, &holder, Part::InputA), &first)?;
                client.upload_sealed(&job.key, &key, name(&job.id, shard, replica, &holder, Part::InputB), &second)?;
                say!(job, "shard {shard} replica {replica}: leased to {provider}; inputs sealed to it and uploaded");
            }
            // Products are checked while they can still be disputed; ML results once the
            // replicas' vote has settled them.
            let checkable = match kind {
                JobKind::Matmul => matches!(state, "posted" | "settled"),
                _ => state == "settled",
            };
            if !checkable || results.contains_key(&shard) || disputed.contains(&(shard, replica, provider.clone())) {
                continue;
            }
            match check_result(&job, kind, shard, replica, &holder, d["result"].as_str().unwrap_or(""))? {
                Checked::Good(output) => {
                    let how = if kind == JobKind::Matmul { "Freivalds" } else { "BLAKE3 of the settled result" };
                    say!(job, "shard {shard}: result from {provider} fetched, decrypted, verified ({how})");
                    results.insert(shard, output);
                }
                Checked::Disputed(why) => {
                    say!(job, "shard {shard}: {why}");
                    disputed.insert((shard, replica, provider));
                }
                Checked::NotYet => {
                    let since = *missing.entry((shard, replica, provider.clone())).or_insert_with(Instant::now);
                    let due = state == "posted" && since.elapsed() > WITHHELD_AFTER;
                    if kind == JobKind::Matmul && due && challenged.insert((shard, replica, provider)) {
                        let why =
                            format!("no node serves the result {} s after it was posted", WITHHELD_AFTER.as_secs());
                        say!(job, "shard {shard}: {}", challenge(&job, shard, replica, &why)?);
                    }
                }
                Checked::Unusable(why) if kind == JobKind::Matmul => {
                    if state == "posted" && challenged.insert((shard, replica, provider.clone())) {
                        say!(job, "shard {shard}: {}", challenge(&job, shard, replica, &why)?);
                    }
                    disputed.insert((shard, replica, provider));
                }
                Checked::Unusable(why) => {
                    // An ML result is checked by its replicas' vote; a bad copy is skipped.
                    say!(job, "shard {shard}: the copy from {provider} is unusable ({why}); waiting for another");
                    disputed.insert((shard, replica, provider));
                }
            }
        }
        let line =
            format!("job {}: {} [{}]", &job.id.to_hex()[..8], v["status"].as_str().unwrap_or(""), states.join(", "));
        if line != last_line {
            say!(job, "{line}");
            last_line = line;
        }
        let verified = results.len() == job.work.shards();
        if verified && (v["status"] == "done" || (!job.wait_settlement && kind == JobKind::Matmul)) {
            return finish(&job, &v, results, started.elapsed());
        }
        if v["status"] == "cancelled" && v["finished_at"].is_u64() {
            return Err("the job was cancelled".into());
        }
    }
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

fn finish(job: &ClientJob, v: &Value, mut results: HashMap<u16, Output>, took: Duration) -> CmdResult {
    let ordered = (0..job.work.shards() as u16)
        .map(|s| results.remove(&s).ok_or("a shard's result is missing"))
        .collect::<Result<Vec<_>, _>>()?;
    let (written, quality) = match &job.work {
        Work::Matmul { .. } => {
            let c = assemble(ordered)?;
            write_npy(&job.out, &c).map_err(|e| format!("{}: {e}", job.out.display()))?;
            (format!("{}×{} int32", c.rows(), c.cols()), None)
        }
        Work::Ml { kind, measure_on, .. } => {
            let bytes = ordered.into_iter().next().map(Output::into_plaintext).unwrap_or_default();
            std::fs::write(&job.out, &bytes).map_err(|e| format!("{}: {e}", job.out.display()))?;
            let quality = ml_quality(*kind, &bytes, measure_on)?;
            (format!("{} bytes, blake3 {}", bytes.len(), blake3::hash(&bytes).to_hex()), Some(quality))
        }
    };
    if !job.verbose {
        return Ok(ExitCode::SUCCESS);
    }
    // Receipt: work and money from the chain; energy estimated from each provider's claims.
    let mut macs = 0u64;
    let mut joules = 0.0;
    let mut providers = HashSet::new();
    let settled: Vec<&Value> =
        v["tasks"].as_array().into_iter().flatten().filter(|t| t["state"] == "settled").collect();
    for t in &settled {
        let w = match &job.work {
            Work::Matmul { a, b, bounds } => {
                let (r0, r1) = bounds[t["shard"].as_u64().unwrap_or(0) as usize];
                ((r1 - r0) * a.cols() * b.cols()) as u64
            }
            Work::Ml { .. } => v["macs_per_shard"].as_u64().unwrap_or(0),
        };
        macs += w;
        let who = t["detail"]["provider"].as_str().unwrap_or("").to_string();
        if let Ok(p) = http(job.api, "GET", &format!("/providers/{who}"), None) {
            let gmacs = p["profile"]["int8_gmacs"].as_f64().unwrap_or(1.0).max(1.0);
            let cores = p["profile"]["cpu_cores"].as_f64().unwrap_or(1.0);
            joules += w as f64 / (gmacs * 1e9) * cores * WATTS_PER_CORE;
        }
        providers.insert(who);
    }
    println!("wrote {} ({written})", job.out.display());
    println!("receipt for job {} ({}):", job.id.to_hex(), v["kind"].as_str().unwrap_or(""));
    println!(
        "  work: {macs} multiply-adds over {} shard(s) × {} replica(s) by {} provider(s)",
        job.work.shards(),
        v["replicas"],
        providers.len()
    );
    if v["status"] == "done" {
        println!("  paid {} to providers, burned {}; the rest of the escrow was refunded", v["paid"], v["burned"]);
    } else {
        println!("  payment: settles on chain when the challenge window ends (`ergon job status` shows it)");
    }
    println!("  time: {:.1} s from submission to verified result", took.as_secs_f64());
    println!(
        "  energy: ≈ {:.3} J (estimate: multiply-adds ÷ the provider's claimed int8 throughput × {WATTS_PER_CORE} W per claimed core; not measured)",
        joules
    );
    match &job.work {
        Work::Matmul { .. } => println!(
            "  verification: every shard matched its posted commitment and passed Freivalds (false accept < 2^-120)"
        ),
        Work::Ml { .. } if settled.len() > 1 => println!(
            "  verification: {} replicas computed it independently{}; the chain paid only the result a majority agreed on, and these bytes match it",
            settled.len(),
            if settled.iter().any(|t| t["check"] == true) {
                ", one of them a check the chain called (its provider was on probation, or sampled for audit)"
            } else {
                ""
            }
        ),
        Work::Ml { .. } => println!(
            "  verification: one replica, not cross-checked (its provider is trusted and was not sampled for a check, or no other provider could check it; ask for --replicas 2 to always cross-check); the bytes match the posted BLAKE3"
        ),
    }
    if let Some(q) = quality {
        println!("  result: {q}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What the client measures on an ML result.
fn ml_quality(kind: JobKind, bytes: &[u8], data: &Dataset) -> Result<String, String> {
    match kind {
        JobKind::Train => {
            let model = Mlp::from_safetensors(bytes).map_err(|e| format!("the trained model: {e}"))?;
            if data.is_empty() {
                return Ok(format!("{}→{}→{} model (nothing held out)", model.inputs, model.hidden, model.classes));
            }
            let acc = model.accuracy(data, &mut Exact::default()).map_err(|e| e.to_string())?;
            Ok(format!(
                "{}→{}→{} model, {:.2}% accurate on the {} examples held out of training",
                model.inputs,
                model.hidden,
                model.classes,
                acc * 100.0,
                data.len()
            ))
        }
        _ => {
            let p = ergon_ml::job::parse_predictions(bytes).map_err(|e| e.to_string())?;
            if p.len() != data.len() {
                return Err(format!("{} predictions for {} examples", p.len(), data.len()));
            }
            let right = p.iter().zip(&data.y).filter(|(a, b)| a == b).count();
            Ok(format!(
                "{} predictions, {:.2}% matching the data set's labels",
                p.len(),
                100.0 * right as f64 / p.len().max(1) as f64
            ))
        }
    }
}
