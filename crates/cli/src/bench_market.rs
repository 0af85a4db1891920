//! `ergon bench market`: matching time over a large order book, and how busy providers are kept
//! under saturating load. The market core is sans-IO; the timing happens here.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use ergon_market::load::{order_book, saturating_load, LoadReport};
use ergon_market::MarketParams;
use serde::Serialize;

use crate::CmdResult;

#[derive(Args)]
pub struct MarketArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Orders (one-shard jobs) in the matched book.
    #[arg(long, default_value_t = 100_000)]
    orders: u64,
    /// Registered providers (two slots each).
    #[arg(long, default_value_t = 10_000)]
    providers: u64,
    /// Providers in the saturating-load runs.
    #[arg(long, default_value_t = 1000)]
    load_providers: u64,
    /// Seconds of the loaded devnet (a provider node and client processes keeping jobs in
    /// flight) that measures the useful-work share; 0 skips it.
    #[arg(long, default_value_t = 60)]
    devnet_seconds: u64,
    /// Concurrent client processes in the loaded devnet.
    #[arg(long, default_value_t = 12)]
    clients: usize,
    /// Side of each job's square matrices in the loaded devnet.
    #[arg(long, default_value_t = 2048)]
    job_size: usize,
    /// First port of the loaded devnet (API on P and P+1, p2p on P+100 and P+101).
    #[arg(long, default_value_t = 23000)]
    base_port: u16,
    /// Seed of the synthetic book.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Serialize)]
struct Utilization {
    providers: u64,
    slots: u8,
    blocks: u64,
    block_seconds: f64,
    mean_task_seconds: f64,
    tasks_completed: u64,
    utilization: f64,
}

#[derive(Serialize)]
struct MarketReport {
    bench: &'static str,
    orders: u64,
    providers: u64,
    /// First block: every order meets the whole provider set.
    match_seconds: f64,
    leased: usize,
    still_queued: usize,
    /// Next block: nothing freed, the saturated queue is walked again.
    rematch_seconds: f64,
    utilization: Vec<Utilization>,
    useful_work: Option<crate::bench_useful::UsefulReport>,
}

pub fn run(args: MarketArgs) -> CmdResult {
    if args.orders == 0 || args.providers == 0 || args.orders > 10_000_000 || args.providers > 1_000_000 {
        return Err("--orders must be in 1..=10000000 and --providers in 1..=1000000".into());
    }
    if args.load_providers == 0 || args.load_providers > 100_000 {
        return Err("--load-providers must be in 1..=100000".into());
    }
    let params = MarketParams::devnet();
    let mut market = order_book(args.providers, args.orders, args.seed, &params);
    let t = Instant::now();
    market.end_block(1, &params);
    let match_seconds = t.elapsed().as_secs_f64();
    let (leased, still_queued) = (market.open_leases(), market.queued());
    let t = Instant::now();
    market.end_block(2, &params);
    let rematch_seconds = t.elapsed().as_secs_f64();
    // Slots are the provider's work buffer: with more leases queued, a short task finishing
    // mid-block does not leave the machine idle until the next block's matching.
    let utilization = [2u8, 4, 8]
        .into_iter()
        .map(|slots| {
            let LoadReport { providers, blocks, block_seconds, utilization, tasks_completed, mean_task_seconds } =
                saturating_load(args.load_providers, 300, 10.0, slots, args.seed);
            Utilization { providers, slots, blocks, block_seconds, mean_task_seconds, tasks_completed, utilization }
        })
        .collect();
    let useful_work = if args.devnet_seconds == 0 {
        None
    } else {
        if args.clients == 0 || args.clients > 32 || !(64..=8192).contains(&args.job_size) {
            return Err("--clients must be in 1..=32 and --job-size in 64..=8192".into());
        }
        let dir = std::env::temp_dir().join(format!("ergon-bench-useful-{}", std::process::id()));
        let r = crate::bench_useful::measure(&dir, args.devnet_seconds, args.clients, args.job_size, args.base_port);
        let _ = std::fs::remove_dir_all(&dir);
        Some(r?)
    };
    let report = MarketReport {
        bench: "market",
        orders: args.orders,
        providers: args.providers,
        match_seconds,
        leased,
        still_queued,
        rematch_seconds,
        utilization,
        useful_work,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("market: {} orders over {} providers (2 slots each)", report.orders, report.providers);
    println!("  matching, first block:  {:.3} s ({} leased, {} still queued)", match_seconds, leased, still_queued);
    println!("  matching, next block:   {:.3} s (saturated queue walked again)", rematch_seconds);
    for u in &report.utilization {
        println!(
            "  utilization under saturating load, {} slots: {:.1}% ({} providers, {} blocks of {} s, mean task {:.1} s)",
            u.slots,
            u.utilization * 100.0,
            u.providers,
            u.blocks,
            u.block_seconds,
            u.mean_task_seconds
        );
    }
    match &report.useful_work {
        None => println!("  useful-work share: skipped (--devnet-seconds 0)"),
        Some(u) => println!(
            "  useful-work share of mined multiply-adds in a loaded devnet: {:.1}% ({} s, {} clients, {}³ jobs, {} completed; {:.1}% of the chain's block work was on jobs)",
            u.useful_share * 100.0,
            u.seconds,
            u.clients,
            u.job_size,
            u.jobs_completed,
            u.chain_useful_block_fraction * 100.0
        ),
    }
    Ok(ExitCode::SUCCESS)
}
