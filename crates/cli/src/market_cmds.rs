//! `ergon provider …`, `ergon job …` and `ergon bench hw`: the market through a node's API.
//! Transactions are signed here, with the user's key file, and submitted like `wallet send`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand};
use ergon_kernels::npy::read_npy;
use ergon_ml::{Dataset, MlJob, TrainSpec};
use ergon_sdk::api::market::{Decision, JobStatus, TaskState};
use ergon_types::TxKind;
use ergon_types::{Address, HardwareProfile, Hash, JobKind, JobSpec, Offer, Requirements};

use crate::matrix_cmds::random_matrix;
use crate::node_cmds::{read_key, sign_and_submit};
use crate::CmdResult;
use ergon_sdk::Work;

use ergon_jobdata::{encryption_public, Output};

#[derive(Args, Clone, Default)]
pub struct HwArgs {
    /// GPU model to claim (GPUs are not detected yet; leave empty for none).
    #[arg(long, default_value = "")]
    gpu_model: String,
    #[arg(long, default_value_t = 0)]
    gpu_memory_mib: u64,
    /// Claim this int8 throughput (G MAC/s) instead of measuring it: for a provider that lends
    /// only part of a machine. Validators test the claim, so an over-claim is demoted.
    #[arg(long)]
    int8_gmacs: Option<u64>,
    /// Claim this much main memory (MiB) instead of three quarters of what is free now.
    /// Validators' memory challenges make the provider fill it once per memory epoch, so
    /// claim what the node can hold beside its work (above the genesis's `memory_floor_mib`
    /// only what a challenge showed counts).
    #[arg(long)]
    memory_mib: Option<u64>,
}

/// Measures this machine: cores, memory, and its int8 throughput as validators' Proof-of-AI
/// challenges see it: a 1024³ product gives a first figure, then a challenge sized to it is
/// answered (its matrices expanded, the product, the commitment and openings; best of three).
/// Claiming the bare product's speed would get an honest machine demoted: answering costs
/// more than the product alone.
pub fn measure_hw(args: &HwArgs) -> Result<HardwareProfile, String> {
    let cpu_cores = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let free_mib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib / 1024)
        .unwrap_or(1024);
    let memory_mib = args.memory_mib.filter(|&m| m > 0).unwrap_or(free_mib / 4 * 3);
    let claimed = args.int8_gmacs.filter(|&g| g > 0);
    let measured = match claimed {
        Some(g) => g,
        None => measure_gmacs()?,
    };
    Ok(HardwareProfile {
        cpu_cores,
        memory_mib,
        gpu_model: args.gpu_model.clone(),
        gpu_memory_mib: args.gpu_memory_mib,
        int8_gmacs: measured.max(1),
    })
}

/// This machine's int8 throughput as a challenge sees it.
pub(crate) fn measure_gmacs() -> Result<u64, String> {
    let n = 1024;
    let (a, b) = (random_matrix(n, n, 126, 1)?, random_matrix(n, n, 126, 2)?);
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        ergon_kernels::matmul(&a, &b).map_err(|e| e.to_string())?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    let rough = (((n * n * n) as f64 / best / 1e9) as u64).max(1);
    Ok(challenge_gmacs(rough))
}

/// G MAC/s at which this machine answers a Proof-of-AI challenge part sized to `rough`.
fn challenge_gmacs(rough: u64) -> u64 {
    let target = ergon_poai::PoaiParams::default().target_ns;
    let c =
        ergon_poai::ComputeChallenge::derive(&ergon_types::Hash([1; 32]), &Default::default(), 0, 0, rough, target, 8);
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        std::hint::black_box(c.solve());
        best = best.min(t.elapsed().as_secs_f64());
    }
    ((c.macs() as f64 / best / 1e9) as u64).max(1)
}

pub fn bench_hw(args: HwArgs, json: bool) -> CmdResult {
    let p = measure_hw(&args)?;
    if json {
        let v = serde_json::json!({ "cpu_cores": p.cpu_cores, "memory_mib": p.memory_mib, "gpu_model": p.gpu_model,
                                     "gpu_memory_mib": p.gpu_memory_mib, "int8_gmacs": p.int8_gmacs });
        println!("{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
    } else {
        println!(
            "this machine: {} cores, {} MiB memory, {} G int8 multiply-adds/s (1024³, best of 3){}",
            p.cpu_cores,
            p.memory_mib,
            p.int8_gmacs,
            if p.gpu_model.is_empty() { String::from(", no GPU claimed") } else { format!(", GPU {}", p.gpu_model) }
        );
        println!("`ergon provider register` claims these figures; the challenge engine checks them.");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
pub enum ProviderCommand {
    /// Offer this machine (measured now) at a price, bonding stake.
    Register {
        #[arg(long)]
        key: PathBuf,
        /// Asking price per 10^9 multiply-adds.
        #[arg(long)]
        price: u64,
        /// Coins to add to the bond.
        #[arg(long, default_value_t = 0)]
        stake: u64,
        /// Leases held at once (a work buffer).
        #[arg(long, default_value_t = 2)]
        slots: u8,
        #[command(flatten)]
        hw: HwArgs,
        #[arg(long, default_value_t = 1)]
        fee: u64,
        #[arg(long, env = "ERGON_API", default_value = "127.0.0.1:8080")]
        api: SocketAddr,
    },
    /// Take no new leases; the bond unbonds after the last lease settles.
    Deregister {
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value_t = 1)]
        fee: u64,
        #[arg(long, env = "ERGON_API", default_value = "127.0.0.1:8080")]
        api: SocketAddr,
    },
    /// A provider's offer, leases, earnings, why it is or is not getting work, and its decisions.
    Status {
        address: Address,
        /// The API's answer as JSON (schema: the node's `/openapi.json`).
        #[arg(long)]
        json: bool,
        #[arg(long, env = "ERGON_API", default_value = "127.0.0.1:8080")]
        api: SocketAddr,
    },
}

#[derive(Subcommand)]
pub enum JobCommand {
    /// Submit a job: `matmul` C = A·B on int8 .npy files A B, split by rows of A into shards;
    /// `train` the quantized MLP on a gzip CSV data set (default: the shipped digits); `infer`
    /// with a safetensors MODEL over a gzip CSV data set (default: the shipped digits).
    Submit {
        #[arg(long)]
        key: PathBuf,
        /// matmul: A.npy B.npy · train: [DATA.csv.gz] · infer: MODEL.safetensors [DATA.csv.gz]
        inputs: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = KindArg::Matmul)]
        kind: KindArg,
        #[arg(long, default_value_t = 1)]
        shards: usize,
        #[command(flatten)]
        train: crate::ml_cmds::TrainOpts,
        /// train: every N-th example is held out of training, for the client to measure the
        /// model on (0: none).
        #[arg(long, default_value_t = 5)]
        holdout: u32,
        #[arg(long, default_value_t = 1)]
        replicas: u8,
        /// Highest price per 10^9 multiply-adds.
        #[arg(long)]
        max_price: u64,
        /// Blocks a provider has per shard before the lease closes and the shard moves on.
        #[arg(long, default_value_t = 6)]
        lease_blocks: u32,
        /// Stay until the job is done: upload each shard's inputs sealed to its provider, fetch,
        /// decrypt and verify each result (dispute a wrong product), and write the result here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// With --out: leave once every product is verified instead of waiting for the chain
        /// to settle payment after the challenge window (matmul only: ML results are checked
        /// by the replicas' settlement).
        #[arg(long)]
        no_wait_settlement: bool,
        /// Give up waiting after this long.
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
        /// With --out: report each leased shard's elapsed time and ETA this often.
        #[arg(long, default_value_t = 15)]
        progress_every_s: u64,
        /// One JSON object per line: `{"submitted": …}`, then with --out each event and the
        /// receipt (what the Python client reads).
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 0)]
        min_memory_mib: u64,
        #[arg(long, default_value_t = 0)]
        min_gmacs: u64,
        #[arg(long, default_value_t = 1)]
        fee: u64,
        #[arg(long, env = "ERGON_API", default_value = "127.0.0.1:8080")]
        api: SocketAddr,
    },
    /// Every job the node knows, newest first (or only those of `--client`): id, kind, status,
    /// escrow.
    List {
        #[arg(long)]
        client: Option<Address>,
        /// Print the node's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(long, env = "ERGON_API", default_value = "127.0.0.1:8080")]
        api: SocketAddr,
    },
    /// Every shard's state, why a waiting one waits, payments, and the job's decisions. ID may
    /// be any unique prefix of the job's id.
    Status {
        id: String,
        /// The API's answer as JSON (schema: the node's `/openapi.json`).
        #[arg(long)]
        json: bool,
        #[arg(long, env = "ERGON_API", default_value = "127.0.0.1:8080")]
        api: SocketAddr,
    },
    /// Fetch a settled job's result, decrypt it, check it against the commitments on chain and
    /// write it: C as int32 .npy, the trained model, or the predictions.
    Result {
        #[arg(long)]
        key: PathBuf,
        id: String,
        /// Only this shard's result (a matmul shard's rows of C): how a cancelled job's
        /// settled shards are still obtained.
        #[arg(long)]
        shard: Option<u16>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, env = "ERGON_API", default_value = "127.0.0.1:8080")]
        api: SocketAddr,
    },
    /// Withdraw a job: queued shards are cancelled and refunded when the job closes.
    Cancel {
        #[arg(long)]
        key: PathBuf,
        id: String,
        #[arg(long, default_value_t = 1)]
        fee: u64,
        #[arg(long, env = "ERGON_API", default_value = "127.0.0.1:8080")]
        api: SocketAddr,
    },
}

/// Signs `kind` with the key file and submits it; returns the transaction id.
fn send(api: SocketAddr, key: &ergon_types::SecretKey, fee: u64, kind: TxKind) -> Result<Hash, String> {
    sign_and_submit(api, key, fee, kind).map(|(id, _)| id)
}

fn print_decisions(list: &[Decision]) {
    for d in list {
        println!("  block {:>6}: {}", d.height, d.text);
    }
}

/// `--json`: the API's own answer, as the node sent it (its schema is `/openapi.json`'s).
fn print_json(v: &impl serde::Serialize) -> CmdResult {
    println!("{}", serde_json::to_string_pretty(v).map_err(|e| e.to_string())?);
    Ok(ExitCode::SUCCESS)
}

pub fn provider(cmd: ProviderCommand) -> CmdResult {
    match cmd {
        ProviderCommand::Register { key, price, stake, slots, hw, fee, api } => {
            let key = read_key(&key)?;
            let profile = measure_hw(&hw)?;
            let offer = Offer { profile, price_per_gmac: price, slots, encryption_key: encryption_public(&key) };
            let summary = format!(
                "{} cores, {} MiB, {} G MAC/s int8, {price} per G MAC, {slots} slots",
                offer.profile.cpu_cores, offer.profile.memory_mib, offer.profile.int8_gmacs
            );
            let id = send(api, &key, fee, TxKind::RegisterProvider { offer, stake })?;
            println!(
                "submitted registration {} for {} ({summary}; +{stake} bond)",
                id.to_hex(),
                key.public().address()
            );
            println!("see `ergon provider status {}` once it is in a block", key.public().address());
            Ok(ExitCode::SUCCESS)
        }
        ProviderCommand::Deregister { key, fee, api } => {
            let key = read_key(&key)?;
            let id = send(api, &key, fee, TxKind::Deregister)?;
            println!("submitted deregistration {}", id.to_hex());
            Ok(ExitCode::SUCCESS)
        }
        ProviderCommand::Status { address, json, api } => {
            let detail = ergon_sdk::Client::new(api).provider(&address).map_err(|e| e.to_string())?;
            if json {
                return print_json(&detail);
            }
            let p = &detail.provider;
            println!("{address}: {}", p.outlook);
            println!(
                "  status {}, bond {}, price {} per G MAC, {} slot(s), leases {}, completed {}, failed {}, earned {} from clients' escrow, slashed {}",
                p.status.name(),
                p.bond,
                p.price_per_gmac,
                p.slots,
                p.leases.len(),
                p.completed,
                p.failed,
                p.earned,
                p.slashed
            );
            println!(
                "  int8 throughput: claimed {} G MAC/s, verified {} by {} validator(s) (matching uses the verified figure)",
                p.profile.int8_gmacs,
                p.verified_gmacs,
                p.judgments.len()
            );
            for j in &p.judgments {
                println!(
                    "    validator {} (stake {}): {} G MAC/s{} at block {}",
                    j.validator,
                    j.stake,
                    j.gmacs,
                    if j.gmacs == 0 { " (not answering)" } else { "" },
                    j.height
                );
            }
            println!(
                "  memory: claimed {} MiB, matching uses {} MiB (memory challenges by {} validator(s); up to {} MiB counts unchecked)",
                p.profile.memory_mib,
                p.verified_memory_mib,
                p.memory_judgments.len(),
                p.memory_floor_mib
            );
            for j in &p.memory_judgments {
                println!(
                    "    validator {} (stake {}): {} MiB{} at block {}",
                    j.validator,
                    j.stake,
                    j.memory_mib,
                    if j.memory_mib == 0 { " (claim not shown)" } else { " shown" },
                    j.height
                );
            }
            if p.absent {
                println!("  absent: validators saw it stop answering their challenges; it takes no lease until it answers again");
            }
            let checks = match &p.probation {
                Some(why) => {
                    format!("{why}: every ML result of it is computed again by another provider, paid out of its pay")
                }
                None => "trusted: its ML results are only sampled for a check".to_string(),
            };
            println!(
                "  reputation {}‰ (job history × challenges {}‰); {checks}",
                p.reputation_permille, p.challenge_permille
            );
            print_decisions(&detail.decisions);
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn job(cmd: JobCommand) -> CmdResult {
    match cmd {
        JobCommand::Submit {
            key,
            inputs,
            kind,
            shards,
            train,
            holdout,
            replicas,
            max_price,
            lease_blocks,
            min_memory_mib,
            min_gmacs,
            out,
            no_wait_settlement,
            timeout_s,
            progress_every_s,
            json,
            fee,
            api,
        } => {
            let key = read_key(&key)?;
            let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
            let requirements =
                Requirements { min_memory_mib, min_int8_gmacs: min_gmacs, gpu: false, replicas, lease_blocks };
            let (spec, work, measure_on) = match kind {
                KindArg::Matmul => {
                    let [a, b] = inputs.as_slice() else { return Err("matmul takes two inputs: A.npy B.npy".into()) };
                    let (ma, mb) = (
                        read_npy::<i8>(a).map_err(|e| format!("{}: {e}", a.display()))?,
                        read_npy::<i8>(b).map_err(|e| format!("{}: {e}", b.display()))?,
                    );
                    let files = [read(a)?, read(b)?];
                    let (spec, work) = ergon_sdk::plan::matmul_job(
                        ma,
                        mb,
                        [&files[0], &files[1]],
                        shards,
                        requirements,
                        max_price,
                        &key,
                    )?;
                    (spec, work, None)
                }
                KindArg::Train | KindArg::Infer => {
                    let data = |p: Option<&PathBuf>| p.map_or(Ok(ergon_ml::DIGITS_CSV_GZ.to_vec()), read);
                    let spec = TrainSpec { config: train.config(), holdout };
                    let inputs = match (kind, inputs.as_slice()) {
                        (KindArg::Train, [] | [_]) => [data(inputs.first())?, spec.encode()],
                        (KindArg::Train, _) => return Err("train takes at most one input: DATA.csv.gz".into()),
                        (_, [m]) => [read(m)?, data(None)?],
                        (_, [m, d]) => [read(m)?, data(Some(d))?],
                        _ => return Err("infer takes MODEL.safetensors [DATA.csv.gz]".into()),
                    };
                    let plan = ergon_sdk::plan::ml_job(kind.into(), inputs, requirements, max_price, &key)?;
                    // What the client measures the result on: the held-out examples of a
                    // training job, the whole data set of an inference job.
                    let measure_on = match (&plan.job, &plan.work) {
                        (MlJob::Train { .. }, Work::Ml { inputs, .. }) => {
                            spec.split(&Dataset::from_csv_gz(&inputs[0]).map_err(|e| e.to_string())?).1
                        }
                        (MlJob::Infer { data, .. }, _) => data.clone(),
                        _ => return Err("an ML plan holds ML work".into()),
                    };
                    (plan.spec, plan.work, Some(measure_on))
                }
            };
            let follow = out.map(|out| (out, !no_wait_settlement));
            let waits = (timeout_s, progress_every_s.max(1), json);
            submit_and_follow(api, key, fee, spec, (work, measure_on), follow, waits)
        }
        JobCommand::Result { key, id, shard, out, api } => {
            let key = read_key(&key)?;
            let job = ergon_sdk::Client::new(api).job_id(&id).map_err(|e| e.to_string())?;
            fetch_job_result(api, &key, &job, shard, &out)
        }
        JobCommand::List { client, json, api } => {
            let mut jobs = ergon_sdk::Client::new(api).jobs().map_err(|e| e.to_string())?.jobs;
            jobs.retain(|j| client.is_none_or(|c| j.client == c.to_string()));
            if json {
                return print_json(&jobs);
            }
            println!("{:<14} {:<7} {:<10} {:>14}  client", "job", "kind", "status", "escrow");
            for j in &jobs {
                println!(
                    "{:<14} {:<7} {:<10} {:>14}  {}",
                    &j.id[..12.min(j.id.len())],
                    j.kind,
                    j.status.name(),
                    j.escrow,
                    j.client
                );
            }
            if jobs.is_empty() {
                println!("(no jobs{})", client.map_or(String::new(), |c| format!(" of {c}")));
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Status { id, json, api } => {
            let client = ergon_sdk::Client::new(api);
            let v = client.job(&client.job_id(&id).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
            if json {
                return print_json(&v);
            }
            let j = &v.summary;
            println!(
                "job {} ({}, {} shard(s) × {}): {}; escrow {}, paid {}, burned {}",
                j.id,
                j.kind,
                j.shards,
                j.replicas,
                j.status.name(),
                j.escrow,
                j.paid,
                j.burned
            );
            for t in &v.tasks {
                let what = match &t.state {
                    TaskState::Queued { why } => {
                        why.clone().unwrap_or_else(|| "waiting for the next block's matching".to_string())
                    }
                    TaskState::Leased { provider, deadline, .. } => {
                        format!("leased to {provider} until block {deadline}")
                    }
                    TaskState::Posted { settles_at, .. } => format!("result posted, paid at block {settles_at}"),
                    TaskState::Settled { paid, provider, .. } => format!("settled, {paid} paid to {provider}"),
                    TaskState::Spare {} => "spare: no check called".to_string(),
                    TaskState::Cancelled {} => "cancelled".to_string(),
                };
                let replica = if t.check { "check replica" } else { "replica" };
                println!("  shard {} {replica} {}: {what}", t.shard, t.replica);
            }
            print_decisions(&v.decisions);
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Cancel { key, id, fee, api } => {
            let key = read_key(&key)?;
            let job = ergon_sdk::Client::new(api).job_id(&id).map_err(|e| e.to_string())?;
            let tx = send(api, &key, fee, TxKind::CancelJob { job })?;
            println!("submitted cancellation {}", tx.to_hex());
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    Matmul,
    Train,
    Infer,
}

impl From<KindArg> for JobKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Matmul => JobKind::Matmul,
            KindArg::Train => JobKind::Train,
            KindArg::Infer => JobKind::Infer,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn submit_and_follow(
    api: SocketAddr,
    key: ergon_types::SecretKey,
    fee: u64,
    spec: JobSpec,
    (work, measure_on): (Work, Option<Dataset>),
    follow: Option<(PathBuf, bool)>,
    (timeout_s, progress_every_s, json): (u64, u64, bool),
) -> CmdResult {
    let shards = spec.shards.len();
    let (kind, replicas) = (spec.kind, spec.requirements.replicas);
    let escrow = spec.max_cost().ok_or("the job's maximum cost overflows")?;
    let macs = spec.macs_per_shard;
    let tx = send(api, &key, fee, TxKind::SubmitJob { spec })?;
    let id = ergon_types::job::job_id(&tx);
    if json {
        let submitted = serde_json::json!({ "job": id.to_hex(), "tx": tx.to_hex(), "kind": kind.name(), "shards": shards,
                                            "replicas": replicas, "macs_per_shard": macs, "escrow": escrow });
        println!("{}", serde_json::json!({ "submitted": submitted }));
    } else {
        println!(
            "submitted {} job {} ({shards} shard(s) × {replicas}, {macs} multiply-adds per shard, escrow {escrow})",
            kind.name(),
            id.to_hex()
        );
        println!("follow it with `ergon job status {}`", id.to_hex());
    }
    match follow {
        None if json => Ok(ExitCode::SUCCESS),
        None => {
            println!(
                "note: without --out nothing uploads the inputs: they are sealed to each leaseholder once the chain picks it, so a lease will close unserved unless a client follows the job"
            );
            Ok(ExitCode::SUCCESS)
        }
        Some((out, wait_settlement)) => {
            let run = ergon_sdk::JobRun {
                client: ergon_sdk::Client::new(api),
                key,
                id,
                work,
                timeout: std::time::Duration::from_secs(timeout_s),
                fee,
                wait_settlement,
                expect: None,
                progress_every: std::time::Duration::from_secs(progress_every_s),
            };
            crate::client::run_job(&run, &out, measure_on.as_ref(), json)
        }
    }
}

/// `ergon job result`: one settled result per shard, checked against its commitment on chain.
fn fetch_job_result(
    api: SocketAddr,
    key: &ergon_types::SecretKey,
    id: &Hash,
    shard: Option<u16>,
    out: &PathBuf,
) -> CmdResult {
    let client = ergon_sdk::Client::new(api);
    let v = client.job(id).map_err(|e| e.to_string())?;
    let shards: Vec<u16> = match shard {
        Some(s) => vec![s],
        None => (0..v.summary.shards as u16).collect(),
    };
    let mut parts = vec![];
    for s in shards {
        parts.push(client.settled_result(key, &v, s).map_err(|why| match shard {
            // A cancelled job keeps its settled shards' results: say how to get them.
            None if v.summary.status == JobStatus::Cancelled => {
                format!("{why}; the job was cancelled, so take the settled shards one at a time (--shard N)")
            }
            _ => why,
        })?);
    }
    let kind = if v.summary.kind == "matmul" { JobKind::Matmul } else { JobKind::Train };
    match kind {
        JobKind::Matmul => {
            let c = ergon_sdk::job::assemble(parts)?;
            ergon_kernels::npy::write_npy(out, &c).map_err(|e| format!("{}: {e}", out.display()))?;
            println!("wrote {} ({}×{} int32)", out.display(), c.rows(), c.cols());
        }
        _ => {
            let bytes: Vec<u8> = parts.into_iter().flat_map(Output::into_plaintext).collect();
            std::fs::write(out, &bytes).map_err(|e| format!("{}: {e}", out.display()))?;
            println!("wrote {} ({} bytes, blake3 {})", out.display(), bytes.len(), blake3::hash(&bytes).to_hex());
        }
    }
    println!("every shard's result matched its settled commitment on chain");
    Ok(ExitCode::SUCCESS)
}
