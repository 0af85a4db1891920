//! `ergon bench restart`: how long a node takes to reopen its store at a given height, resumed
//! from its checkpoint, beside replaying the same chain from genesis, and the memory it holds.
//!
//! The chain is built first (small filler matrices so that 100,000 blocks build in minutes; a
//! busy market: a provider whose leases lapse, a job every ten blocks, a transfer in every
//! block), written through the store in batches, then the store is reopened as a restarting
//! node would open it.

use std::time::Instant;

use clap::Args;
use ergon_chain::{seal, Chain, ChainParams, Genesis};
use ergon_store::Store;
use ergon_types::{
    Block, HardwareProfile, JobKind, JobSpec, Offer, Requirements, SecretKey, SignedTransaction, Transaction, TxKind,
};
use serde::Serialize;

use crate::bench_network::in_scratch_dir;
use crate::CmdResult;

#[derive(Args)]
pub struct RestartArgs {
    /// Height of the chain to reopen.
    #[arg(long, default_value_t = 100_000)]
    blocks: u64,
    /// Filler matrix size of the built chain (24..=4096; larger is slower to build and to replay).
    #[arg(long, default_value_t = 24)]
    filler_size: u32,
    /// Print JSON instead of lines.
    #[arg(long)]
    json: bool,
    /// (Internal) open this store as a restarting node would and print what it took, as JSON:
    /// the bench runs the reopen in a process of its own so its memory is the node's alone.
    #[arg(long, hide = true)]
    reopen: Option<std::path::PathBuf>,
}

/// What the reopening process reports.
#[derive(Serialize, serde::Deserialize)]
struct Reopened {
    seconds: f64,
    height: u64,
    resumed_from: Option<u64>,
    replayed: u64,
    resident_mib: Option<u64>,
    jobs_held: usize,
    jobs_archived: u64,
}

fn reopen(path: &std::path::Path) -> CmdResult {
    let t = Instant::now();
    let (store, chain) = Store::open(path, None).map_err(|e| e.to_string())?;
    let size = chain.ledger().market.size();
    let r = Reopened {
        seconds: t.elapsed().as_secs_f64(),
        height: chain.height(),
        resumed_from: store.opened.resumed_from,
        replayed: store.opened.replayed,
        resident_mib: resident_mib(),
        jobs_held: size.jobs,
        jobs_archived: size.archived_jobs,
    };
    println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
    Ok(std::process::ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct RestartReport {
    bench: &'static str,
    blocks: u64,
    filler_size: u32,
    max_reorg_depth: u64,
    build_seconds: f64,
    store_bytes: u64,
    /// Reopening the store in a fresh process: blocks read and decoded, the checkpoint loaded,
    /// the tail replayed.
    restart_seconds: f64,
    resumed_from: Option<u64>,
    blocks_replayed: u64,
    /// The same blocks imported into a fresh chain from genesis (what every restart did before
    /// checkpoints; the blocks are already decoded in memory, so this favours it slightly).
    replay_from_genesis_seconds: f64,
    replay_over_restart: f64,
    /// Resident memory of the reopened process (the chain holds every active block's body).
    resident_mib_after_restart: Option<u64>,
    market_jobs_held: usize,
    market_jobs_archived: u64,
}

fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes(&[n; 32])
}

fn genesis(filler_size: u32) -> Genesis {
    let params = ChainParams { min_provider_stake: 1_000, ..ChainParams::small(filler_size) };
    let balances = [1u8, 2, 3].iter().map(|&k| (key(k).public().address().to_string(), u64::MAX / 8)).collect();
    Genesis { network: "bench-restart".into(), time_ms: 1_000_000, params, balances }
}

/// What block `height` carries: a provider registration at the start, a small job every ten
/// blocks (leased, never answered, so its lease lapses), a transfer otherwise.
fn txs_for(chain: &Chain, height: u64) -> Vec<SignedTransaction> {
    let tx = |from: u8, kind: TxKind| {
        let k = key(from);
        let nonce = chain.ledger().account(&k.public().address()).nonce;
        Transaction { chain: chain.chain_id(), from: k.public(), nonce, fee: 10, kind }.sign(&k)
    };
    if height == 1 {
        let profile = HardwareProfile { cpu_cores: 2, memory_mib: 4096, int8_gmacs: 100, ..Default::default() };
        let offer = Offer { profile, price_per_gmac: 1_000, slots: 4, encryption_key: [5; 32] };
        return vec![tx(2, TxKind::RegisterProvider { offer, stake: 1_000_000_000 })];
    }
    if height % 10 == 2 {
        let mut root_a = [0u8; 32];
        root_a[..8].copy_from_slice(&height.to_le_bytes());
        let shard = ergon_pouw::WorkCommitment { m: 48, k: 48, n: 48, root_a, root_b: [1; 32] };
        let spec = JobSpec {
            kind: JobKind::Matmul,
            inputs: vec![],
            shards: vec![shard],
            macs_per_shard: 48 * 48 * 48,
            requirements: Requirements {
                min_memory_mib: 0,
                min_int8_gmacs: 0,
                gpu: false,
                replicas: 1,
                lease_blocks: 3,
            },
            max_price_per_gmac: 1_000_000,
            client_key: [6; 32],
        };
        return vec![tx(1, TxKind::SubmitJob { spec })];
    }
    vec![tx(3, TxKind::Transfer { to: key(4).public().address(), amount: 1 + height % 1000 })]
}

fn resident_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
}

pub fn run(args: RestartArgs) -> CmdResult {
    if let Some(path) = &args.reopen {
        return reopen(path);
    }
    if args.blocks == 0 || args.blocks > 10_000_000 || !(24..=4096).contains(&args.filler_size) {
        return Err("need --blocks in 1..=10000000 and --filler-size in 24..=4096".into());
    }
    let report = in_scratch_dir("restart", |dir| measure(&args, dir))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        println!(
            "restart at height {} ({}×{} filler, reorganisations up to {} deep, store {} MiB, built in {:.1} s)",
            report.blocks,
            report.filler_size,
            report.filler_size,
            report.max_reorg_depth,
            report.store_bytes >> 20,
            report.build_seconds
        );
        println!(
            "  reopen from the checkpoint at {:?}: {:.2} s ({} blocks replayed)",
            report.resumed_from, report.restart_seconds, report.blocks_replayed
        );
        println!(
            "  replay from genesis:            {:.2} s   ({:.1}× the restart)",
            report.replay_from_genesis_seconds, report.replay_over_restart
        );
        println!(
            "  resident after the reopen: {} MiB; the market holds {} jobs ({} archived)",
            report.resident_mib_after_restart.map_or("?".into(), |m| m.to_string()),
            report.market_jobs_held,
            report.market_jobs_archived
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn measure(args: &RestartArgs, dir: &std::path::Path) -> Result<RestartReport, String> {
    let g = genesis(args.filler_size);
    let path = dir.join("chain.redb");
    let started = Instant::now();
    let mut blocks: Vec<Block> = Vec::with_capacity(args.blocks as usize);
    {
        let (mut store, mut stored) = Store::open(&path, Some(&g)).map_err(|e| e.to_string())?;
        let mut builder = Chain::new(g.clone()).map_err(|e| e.to_string())?;
        let miner = key(7).public().address();
        let progress = indicatif::ProgressBar::new(args.blocks).with_message("building the chain");
        while builder.height() < args.blocks {
            let mut batch = vec![];
            for _ in 0..1000.min(args.blocks - builder.height()) {
                let txs = txs_for(&builder, builder.height() + 1);
                let now = builder.tip_header().time_ms + g.params.block_time_ms;
                let template = builder.template(miner, txs, now);
                if let Some((_, why)) = template.refused.first() {
                    return Err(format!("the bench's own transaction was refused (bug): {why}"));
                }
                let block = seal(template, 0, 100_000).map_err(|e| e.to_string())?.ok_or("no winning ticket")?;
                builder.import(block.clone(), u64::MAX / 2).map_err(|e| format!("own block refused (bug): {e}"))?;
                batch.push(block);
            }
            progress.inc(batch.len() as u64);
            blocks.extend(batch.iter().cloned());
            for outcome in store.import_batch(&mut stored, batch, u64::MAX / 2).map_err(|e| e.to_string())? {
                outcome.map_err(|e| format!("the store refused a block (bug): {e}"))?;
            }
        }
        progress.finish_and_clear();
    }
    let build_seconds = started.elapsed().as_secs_f64();
    let store_bytes = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();

    // The reopen runs in a fresh process, as a restarting node would.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .args(["bench", "restart", "--reopen"])
        .arg(&path)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("the reopening process failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let reopened: Reopened = serde_json::from_slice(&out.stdout).map_err(|e| format!("reopen report: {e}"))?;
    if reopened.height != args.blocks {
        return Err(format!("reopened at height {}, not {} (bug)", reopened.height, args.blocks));
    }

    let t = Instant::now();
    let mut full = Chain::new(g.clone()).map_err(|e| e.to_string())?;
    for b in blocks {
        full.import(b, u64::MAX / 2).map_err(|e| format!("replay refused a block (bug): {e}"))?;
    }
    let replay_seconds = t.elapsed().as_secs_f64();
    Ok(RestartReport {
        bench: "restart",
        blocks: args.blocks,
        filler_size: args.filler_size,
        max_reorg_depth: g.params.max_reorg_depth,
        build_seconds,
        store_bytes,
        restart_seconds: reopened.seconds,
        resumed_from: reopened.resumed_from,
        blocks_replayed: reopened.replayed,
        replay_from_genesis_seconds: replay_seconds,
        replay_over_restart: replay_seconds / reopened.seconds,
        resident_mib_after_restart: reopened.resident_mib,
        market_jobs_held: reopened.jobs_held,
        market_jobs_archived: reopened.jobs_archived,
    })
}
