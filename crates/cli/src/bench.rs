//! `ergon bench matmul|pouw`: side-by-side measurements taken in one run, as a table and as JSON.
//!
//! Each figure is the median of `--reps` runs; the runs of the things being compared are
//! interleaved (plain, mining, plain, mining, …) so drift on a shared machine hits both alike.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand};
use ergon_kernels::freivalds;
use ergon_kernels::gemm::Isa;
use ergon_pouw::{mine, prove, verify, Challenge, MineOptions, WorkCommitment};
use rayon::prelude::*;
use serde::Serialize;

use crate::matrix_cmds::{fresh_seed, random_matrix};
use crate::CmdResult;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Ergon's int8 product beside ONNX Runtime's int8 GEMM (when installed), a float32 GEMM
    /// and this machine's measured int8 peak, on squares and the skinny shapes of inference.
    Matmul(crate::bench_matmul::MatmulArgs),
    /// Mining overhead, proof size, verification time, Freivalds cost.
    Pouw(BenchArgs),
    /// Block propagation to N node processes and sync time of a fresh node.
    Network(crate::bench_network::NetworkArgs),
    /// Measure this machine for a provider's hardware profile (cores, memory, int8 throughput).
    Hw {
        #[command(flatten)]
        hw: crate::market_cmds::HwArgs,
        /// Print JSON instead of a line.
        #[arg(long)]
        json: bool,
    },
    /// Matching time over a large order book; provider utilization under saturating load.
    Market(crate::bench_market::MarketArgs),
    /// The transaction pool under junk and paid floods; an honest transaction still gets in.
    Mempool(crate::bench_mempool::MempoolArgs),
    /// API latency under many concurrent clients while the node mines and imports.
    Api(crate::bench_api::ApiArgs),
    /// Reopening a store at a given height from its checkpoint, beside a replay from genesis.
    Restart(crate::bench_restart::RestartArgs),
    /// Signed transfers validated and applied per second; block import time.
    Chain {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Transfers in the measured block.
        #[arg(long, default_value_t = 20_000)]
        transfers: usize,
    },
}

#[derive(Args)]
pub struct BenchArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Square sizes to measure.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1024, 2048, 4096])]
    sizes: Vec<usize>,
    /// Runs per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

pub(crate) fn time<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed().as_secs_f64())
}

pub fn run(which: BenchCommand) -> CmdResult {
    match which {
        BenchCommand::Matmul(args) => crate::bench_matmul::run(args),
        BenchCommand::Pouw(args) => bench_pouw(args),
        BenchCommand::Chain { json, transfers } => bench_chain(json, transfers),
        BenchCommand::Network(args) => crate::bench_network::run(args),
        BenchCommand::Hw { hw, json } => crate::market_cmds::bench_hw(hw, json),
        BenchCommand::Market(args) => crate::bench_market::run(args),
        BenchCommand::Mempool(args) => crate::bench_mempool::run(args),
        BenchCommand::Api(args) => crate::bench_api::run(args),
        BenchCommand::Restart(args) => crate::bench_restart::run(args),
    }
}

fn check_args(args: &BenchArgs) -> Result<(), String> {
    if args.reps == 0 || args.sizes.is_empty() || args.sizes.iter().any(|&n| n == 0 || n > 16_384) {
        return Err("need --reps >= 1 and --sizes in 1..=16384".into());
    }
    Ok(())
}

#[derive(Serialize)]
struct PouwRow {
    n: usize,
    plain_seconds: f64,
    mining_seconds: f64,
    /// Fastest mining run ÷ fastest plain run: interference on a shared machine only ever adds
    /// time, so minima estimate the undisturbed cost of each.
    mining_overhead: f64,
    /// Median over interleaved pairs of (mining time ÷ plain time), for comparison.
    mining_overhead_median_of_pairs: f64,
    noise_seconds: f64,
    product_seconds: f64,
    tickets_seconds: f64,
    recovery_seconds: f64,
    commit_seconds: f64,
    tickets: u64,
    winners: usize,
    proof_bytes: usize,
    verify_ms: f64,
    freivalds_seconds: f64,
    freivalds_fraction_of_product: f64,
    /// Reading A, B and C once on every thread (a sum of their entries), as a share of the
    /// plain product: the floor under any check that must look at every entry of C.
    read_inputs_seconds: f64,
    read_inputs_fraction_of_product: f64,
}

#[derive(Serialize)]
struct PouwReport {
    bench: &'static str,
    threads: usize,
    kernel: &'static str,
    freivalds_rounds: u32,
    results: Vec<PouwRow>,
}

fn bench_pouw(args: BenchArgs) -> CmdResult {
    check_args(&args)?;
    let mut results = Vec::new();
    for &n in &args.sizes {
        let (a, b) = (random_matrix(n, n, 126, 3)?, random_matrix(n, n, 126, 4)?);
        let work = (n * n * n) as u64;
        let (commitment, commit_s) = time(|| WorkCommitment::compute(&a, &b));
        let commitment = commitment.map_err(|e| e.to_string())?;
        // About 16 winners per pass, so a proof is always at hand.
        let challenge =
            Challenge::new(b"ergon bench".to_vec(), commitment, (work / 16).max(1)).map_err(|e| e.to_string())?;
        let (mut plain, mut mining, mut last) = (Vec::new(), Vec::new(), None);
        let mut parts: Vec<[f64; 4]> = Vec::new();
        let (mut fr, mut reads) = (Vec::new(), Vec::new());
        for rep in 0..=args.reps {
            let (c, sp) = time(|| ergon_kernels::matmul(&a, &b));
            let c = c.map_err(|e| e.to_string())?;
            let (mined, sm) = time(|| mine(&challenge, &a, &b, rep as u64, MineOptions::default()));
            let mined = mined.map_err(|e| e.to_string())?;
            if mined.product != c {
                return Err(format!("n={n}: mined product differs from the plain product (bug)"));
            }
            let seed = fresh_seed()?;
            let (verdict, sf) = time(|| freivalds::check(&a, &b, &c, freivalds::DEFAULT_ROUNDS, seed));
            if !matches!(verdict.map_err(|e| e.to_string())?, freivalds::Verdict::Accept { .. }) {
                return Err(format!("n={n}: Freivalds rejected a true product (bug)"));
            }
            let (sum, sr) = time(|| read_once(&a, &b, &c));
            std::hint::black_box(sum);
            if rep > 0 {
                plain.push(sp);
                mining.push(sm);
                fr.push(sf);
                reads.push(sr);
                let t = mined.timings;
                parts.push([t.noise, t.product, t.tickets, t.recovery].map(|d| d.as_secs_f64()));
            }
            last = Some(mined);
        }
        let mined = last.ok_or("no run")?;
        let winner = mined.winners.first().ok_or(format!("n={n}: no winning ticket in the last pass (rerun)"))?;
        let proof = prove(&challenge, &a, &b, mined.nonce, winner).map_err(|e| e.to_string())?;
        let proof_bytes = proof.encode().len();
        let mut vt = Vec::new();
        for _ in 0..7 {
            let (ok, s) = time(|| verify(&challenge, &proof));
            ok.map_err(|e| format!("own proof rejected (bug): {e}"))?;
            vt.push(s * 1e3);
        }
        let part = |i: usize| median(parts.iter().map(|p| p[i]).collect());
        let ratios = plain.iter().zip(&mining).map(|(p, m)| m / p).collect();
        let overhead_pairs = median(ratios);
        let fastest = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
        let overhead = fastest(&mining) / fastest(&plain);
        let (sp, sm) = (median(plain), median(mining));
        let (sf, sr) = (median(fr), median(reads));
        results.push(PouwRow {
            n,
            plain_seconds: sp,
            mining_seconds: sm,
            mining_overhead: overhead,
            mining_overhead_median_of_pairs: overhead_pairs,
            noise_seconds: part(0),
            product_seconds: part(1),
            tickets_seconds: part(2),
            recovery_seconds: part(3),
            commit_seconds: commit_s,
            tickets: mined.tickets,
            winners: mined.winners.len(),
            proof_bytes,
            verify_ms: median(vt),
            freivalds_seconds: sf,
            freivalds_fraction_of_product: sf / sp,
            read_inputs_seconds: sr,
            read_inputs_fraction_of_product: sr / sp,
        });
    }
    let report = PouwReport {
        bench: "pouw",
        threads: rayon::current_num_threads(),
        kernel: Isa::detect().name(),
        freivalds_rounds: freivalds::DEFAULT_ROUNDS,
        results,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Proof of Useful Work ({} kernel, {} threads; {} interleaved runs, times are medians)",
        report.kernel, report.threads, args.reps
    );
    println!(
        "{:>6} {:>9} {:>9} {:>9} {:>9} {:>24} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "n",
        "plain s",
        "mining s",
        "overhead",
        "(pairs)",
        "noise/prod/tix/recov ms",
        "tickets",
        "proof KiB",
        "verify ms",
        "Freivalds",
        "(read)"
    );
    for r in &report.results {
        println!(
            "{:>6} {:>9.4} {:>9.4} {:>9.3} {:>9.3} {:>24} {:>8} {:>10.1} {:>10.2} {:>9.2}% {:>9.2}%",
            r.n,
            r.plain_seconds,
            r.mining_seconds,
            r.mining_overhead,
            r.mining_overhead_median_of_pairs,
            format!(
                "{:.1}/{:.1}/{:.1}/{:.1}",
                r.noise_seconds * 1e3,
                r.product_seconds * 1e3,
                r.tickets_seconds * 1e3,
                r.recovery_seconds * 1e3
            ),
            r.tickets,
            r.proof_bytes as f64 / 1024.0,
            r.verify_ms,
            r.freivalds_fraction_of_product * 100.0,
            r.read_inputs_fraction_of_product * 100.0
        );
    }
    println!("(overhead = fastest mining ÷ fastest plain run, same kernel (interference only adds time);");
    println!(" (pairs) = median over interleaved pairs of mining ÷ plain. Mining includes noise,");
    println!(" tickets and recovery (its preparation shown, its application fused into the product);");
    println!(" Freivalds = its time as a share of the plain product; (read) = reading A, B and C once, the floor");
    println!(" under any check of every entry of C; committing A and B is the client's, not counted)");
    Ok(ExitCode::SUCCESS)
}

/// Σ of every entry of A, B and C, on every thread: what reading the check's inputs once costs.
fn read_once(a: &ergon_kernels::MatI8, b: &ergon_kernels::MatI8, c: &ergon_kernels::MatI32) -> i64 {
    let sum8 = |m: &[i8]| m.par_chunks(1 << 14).map(|ch| ch.iter().map(|&v| v as i64).sum::<i64>()).sum::<i64>();
    let sum32 = c.as_slice().par_chunks(1 << 12).map(|ch| ch.iter().map(|&v| v as i64).sum::<i64>()).sum::<i64>();
    sum8(a.as_slice()) + sum8(b.as_slice()) + sum32
}

#[derive(Serialize)]
struct ChainReport {
    bench: &'static str,
    threads: usize,
    transfers: usize,
    accounts: usize,
    /// Signature checks + ledger application + state root, building the block.
    template_seconds: f64,
    transfers_per_second_building: f64,
    /// Full import of the same block by a second node (all checks, PoUW included).
    import_seconds: f64,
    transfers_per_second_importing: f64,
    block_bytes: usize,
    propagation: &'static str,
}

fn bench_chain(json: bool, transfers: usize) -> CmdResult {
    use ergon_chain::{seal, Chain, ChainParams, Genesis};
    use ergon_types::{Canonical, SecretKey, Transaction, TxKind};
    if transfers == 0 || transfers > ergon_types::block::MAX_TXS {
        return Err(format!("--transfers must be in 1..={}", ergon_types::block::MAX_TXS));
    }
    let accounts = 1000usize;
    let keys: Vec<SecretKey> = (0..accounts)
        .map(|i| {
            let mut b = [7u8; 32];
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            SecretKey::from_bytes(&b)
        })
        .collect();
    let params = ChainParams::small(48);
    let balances = keys.iter().map(|k| (k.public().address().to_string(), 1_000_000_000)).collect();
    let genesis = Genesis { network: "bench".into(), time_ms: 1_000_000, params, balances };
    let (mut builder, mut importer) =
        (Chain::new(genesis.clone()).map_err(|e| e.to_string())?, Chain::new(genesis).map_err(|e| e.to_string())?);
    let chain_id = builder.chain_id();
    let txs: Vec<_> = (0..transfers)
        .into_par_iter()
        .map(|i| {
            let (from, to) = (&keys[i % accounts], &keys[(i * 7 + 1) % accounts]);
            let kind = TxKind::Transfer { to: to.public().address(), amount: 1 + (i % 100) as u64 };
            Transaction { chain: chain_id, from: from.public(), nonce: (i / accounts) as u64, fee: 1, kind }.sign(from)
        })
        .collect();
    let miner = SecretKey::from_bytes(&[200; 32]).public().address();
    let (template, template_s) = time(|| builder.template(miner, txs, 1_010_000));
    if !template.refused.is_empty() {
        return Err(format!("{} transfers refused (bug): {}", template.refused.len(), template.refused[0].1));
    }
    let block = seal(template, 0, 100_000).map_err(|e| e.to_string())?.ok_or("no winning ticket (rerun)")?;
    let block_bytes = block.encode().len();
    let (imported, import_s) = time(|| importer.import(block, 1_010_000));
    imported.map_err(|e| format!("own block refused (bug): {e}"))?;
    let report = ChainReport {
        bench: "chain",
        threads: rayon::current_num_threads(),
        transfers,
        accounts,
        template_seconds: template_s,
        transfers_per_second_building: transfers as f64 / template_s,
        import_seconds: import_s,
        transfers_per_second_importing: transfers as f64 / import_s,
        block_bytes,
        propagation: "see: ergon bench network",
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        println!(
            "chain ({} threads): a block of {transfers} signed transfers among {accounts} accounts ({} KiB)",
            report.threads,
            block_bytes / 1024
        );
        println!(
            "  building (verify + apply + state root): {:.3} s = {:.0} transfers/s",
            template_s, report.transfers_per_second_building
        );
        println!(
            "  importing (all checks incl. PoUW):      {:.3} s = {:.0} transfers/s",
            import_s, report.transfers_per_second_importing
        );
        println!("  block propagation: {}", report.propagation);
    }
    Ok(ExitCode::SUCCESS)
}
