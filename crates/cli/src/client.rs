//! The client's side of a job (`ergon job submit … --out C.npy`): follow the job on chain, seal
//! each shard's inputs to whichever provider leases it, fetch and decrypt each result, check it
//! against the posted commitment and by Freivalds, dispute a wrong one, and write the product
//! with a receipt once every shard has settled.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ergon_kernels::freivalds::{self, Verdict};
use ergon_kernels::npy::{decode_npy, encode_npy, write_npy};
use ergon_kernels::{MatI32, MatI8};
use ergon_node::blobs::{name, Part};
use ergon_node::provider::encryption_secret;
use ergon_types::{Address, Hash, SecretKey, TxKind};
use serde_json::{json, Value};

use crate::node_cmds::{http, sign_and_submit};
use crate::CmdResult;

pub struct ClientJob {
    pub api: SocketAddr,
    pub key: SecretKey,
    pub id: Hash,
    pub a: MatI8,
    pub b: MatI8,
    /// Rows of A in each shard.
    pub bounds: Vec<(usize, usize)>,
    pub out: PathBuf,
    pub timeout: Duration,
    pub fee: u64,
    /// Print progress and the receipt (off for benchmarks).
    pub verbose: bool,
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

/// The X25519 key `provider`'s offer publishes.
fn provider_key(api: SocketAddr, provider: &str) -> Result<[u8; 32], String> {
    let p = http(api, "GET", &format!("/providers/{provider}"), None)?;
    ergon_types::hex::decode_array::<32>(p["encryption_key"].as_str().unwrap_or(""))
        .ok_or_else(|| "provider has no encryption key".to_string())
}

/// Seals `plain` to `key` and uploads it under `blob`.
fn upload(api: SocketAddr, key: &[u8; 32], blob: [u8; 32], plain: &[u8]) -> Result<(), String> {
    let sealed = ergon_net::blob::seal(plain, key, entropy()?).map_err(|e| e.to_string())?;
    let body = json!({ "hex": ergon_types::hex::encode(&sealed) }).to_string();
    http(api, "PUT", &format!("/blobs/{}", Hash(blob).to_hex()), Some(&body)).map(|_| ())
}

/// What checking one posted result found.
enum Checked {
    Good(MatI32),
    /// Wrong: the dispute was sent.
    Disputed(String),
    /// Not fetchable yet (or not yet the posted one).
    NotYet,
}

fn check_result(job: &ClientJob, shard: u16, replica: u8, provider: &Address, posted: &str) -> Result<Checked, String> {
    let blob = name(&job.id, shard, replica, provider, Part::Result);
    let v = match http(job.api, "GET", &format!("/blobs/{}", Hash(blob).to_hex()), None) {
        Ok(v) => v,
        Err(_) => return Ok(Checked::NotYet),
    };
    let sealed = ergon_types::hex::decode(v["hex"].as_str().unwrap_or("")).ok_or("node sent bad hex")?;
    let plain = ergon_net::blob::open(&sealed, &encryption_secret(&job.key)).map_err(|e| e.to_string())?;
    let c: MatI32 = decode_npy(&plain).map_err(|e| format!("result is not an int32 .npy: {e}"))?;
    let a = rows(&job.a, job.bounds[shard as usize]);
    let root = Hash(ergon_pouw::result_root(&c)).to_hex();
    if root != posted {
        return Ok(Checked::NotYet); // a stale or foreign blob; the provider's own one will match
    }
    if c.rows() != a.rows() || c.cols() != job.b.cols() {
        return Err("result has the wrong shape".into());
    }
    match freivalds::check(&a, &job.b, &c, freivalds::DEFAULT_ROUNDS, entropy()?).map_err(|e| e.to_string())? {
        Verdict::Accept { .. } => Ok(Checked::Good(c)),
        Verdict::Reject { row } => {
            let exact = ergon_kernels::matmul(&rows(&a, (row, row + 1)), &job.b).map_err(|e| e.to_string())?;
            let n = c.cols();
            let col =
                (0..n).find(|&j| exact.as_slice()[j] != c.as_slice()[row * n + j]).ok_or("Freivalds row check")?;
            let evidence = ergon_pouw::WrongEntry::build(&a, &job.b, &c, row, col).map_err(|e| e.to_string())?;
            sign_and_submit(job.api, &job.key, job.fee, TxKind::Dispute { job: job.id, shard, replica, evidence })?;
            Ok(Checked::Disputed(format!("entry ({row}, {col}) of shard {shard} is wrong; dispute sent")))
        }
    }
}

/// Prints when the job is verbose.
macro_rules! say {
    ($job:expr, $($t:tt)*) => { if $job.verbose { println!($($t)*); } };
}

pub fn run_job(job: ClientJob) -> CmdResult {
    let started = Instant::now();
    let mut uploaded: HashSet<(u16, u8, String)> = HashSet::new();
    let mut results: HashMap<u16, MatI32> = HashMap::new();
    let mut disputed: HashSet<(u16, u8, String)> = HashSet::new();
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
                let a = rows(&job.a, job.bounds[shard as usize]);
                let key = provider_key(job.api, &provider)?;
                upload(job.api, &key, name(&job.id, shard, replica, &holder, Part::InputA), &encode_npy(&a))?;
                upload(job.api, &key, name(&job.id, shard, replica, &holder, Part::InputB), &encode_npy(&job.b))?;
                say!(job, "shard {shard}: leased to {provider}; inputs sealed to it and uploaded");
            }
            let posted = d["result"].as_str().unwrap_or("");
            if matches!(state, "posted" | "settled") && replica == 0 && !results.contains_key(&shard) {
                if disputed.contains(&(shard, replica, provider.clone())) {
                    continue;
                }
                match check_result(&job, shard, replica, &holder, posted)? {
                    Checked::Good(c) => {
                        say!(job, "shard {shard}: result from {provider} fetched, decrypted, verified (Freivalds)");
                        results.insert(shard, c);
                    }
                    Checked::Disputed(why) => {
                        say!(job, "shard {shard}: {why}");
                        disputed.insert((shard, replica, provider));
                    }
                    Checked::NotYet => {}
                }
            }
        }
        let line =
            format!("job {}: {} [{}]", &job.id.to_hex()[..8], v["status"].as_str().unwrap_or(""), states.join(", "));
        if line != last_line {
            say!(job, "{line}");
            last_line = line;
        }
        if v["status"] == "done" && results.len() == job.bounds.len() {
            return finish(&job, &v, results, started.elapsed());
        }
        if v["status"] == "cancelled" && v["finished_at"].is_u64() {
            return Err("the job was cancelled".into());
        }
    }
}

fn finish(job: &ClientJob, v: &Value, mut results: HashMap<u16, MatI32>, took: Duration) -> CmdResult {
    let n = job.b.cols();
    let mut c = Vec::with_capacity(job.a.rows() * n);
    for s in 0..job.bounds.len() as u16 {
        c.extend_from_slice(results.remove(&s).ok_or("a shard's result is missing")?.as_slice());
    }
    let c = MatI32::from_vec(job.a.rows(), n, c).map_err(|e| e.to_string())?;
    write_npy(&job.out, &c).map_err(|e| format!("{}: {e}", job.out.display()))?;
    if !job.verbose {
        return Ok(ExitCode::SUCCESS);
    }
    // Receipt: work and money from the chain; energy estimated from each provider's claims.
    let mut macs = 0u64;
    let mut joules = 0.0;
    let mut providers = HashSet::new();
    for t in v["tasks"].as_array().into_iter().flatten() {
        let shard = t["shard"].as_u64().unwrap_or(0) as usize;
        let (r0, r1) = job.bounds[shard];
        let w = ((r1 - r0) * job.a.cols() * n) as u64;
        macs += w;
        let who = t["detail"]["provider"].as_str().unwrap_or("").to_string();
        if let Ok(p) = http(job.api, "GET", &format!("/providers/{who}"), None) {
            let gmacs = p["profile"]["int8_gmacs"].as_f64().unwrap_or(1.0).max(1.0);
            let cores = p["profile"]["cpu_cores"].as_f64().unwrap_or(1.0);
            joules += w as f64 / (gmacs * 1e9) * cores * WATTS_PER_CORE;
        }
        providers.insert(who.parse::<Address>().map(|a| a.to_string()).unwrap_or(who));
    }
    println!("wrote {} ({}×{} int32)", job.out.display(), c.rows(), c.cols());
    println!("receipt for job {}:", job.id.to_hex());
    println!("  work: {macs} multiply-adds over {} shard(s) by {} provider(s)", job.bounds.len(), providers.len());
    println!("  paid {} to providers, burned {}; the rest of the escrow was refunded", v["paid"], v["burned"]);
    println!("  time: {:.1} s from submission to verified result", took.as_secs_f64());
    println!(
        "  energy: ≈ {:.3} J (estimate: multiply-adds ÷ the provider's claimed int8 throughput × {WATTS_PER_CORE} W per claimed core; not measured)",
        joules
    );
    println!("  verification: every shard matched its posted commitment and passed Freivalds (false accept < 2^-120)");
    Ok(ExitCode::SUCCESS)
}
