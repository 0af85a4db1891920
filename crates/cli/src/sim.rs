//! `ergon sim`: many seeds of the deterministic network simulator, in parallel.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use ergon_sim::{run, SimConfig};
use rayon::prelude::*;
use serde::Serialize;

use crate::CmdResult;

#[derive(Args)]
pub struct SimArgs {
    #[command(subcommand)]
    what: Option<SimWhat>,
    /// How many seeds to run (seeds start..start+N).
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed (to replay a failing one: --start S --seeds 1).
    #[arg(long, default_value_t = 0)]
    start: u64,
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Virtual seconds of mining under faults per seed.
    #[arg(long, default_value_t = 300)]
    seconds: u64,
    /// Print JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Summary {
    seeds: u64,
    violations: usize,
    nodes: usize,
    virtual_seconds_per_seed: u64,
    blocks_mined: u64,
    reorgs: u64,
    messages: u64,
    mean_final_height: f64,
    wall_seconds: f64,
    failing_seeds: Vec<u64>,
    first_violations: Vec<String>,
}

#[derive(clap::Subcommand)]
enum SimWhat {
    /// The reward rules against each way of cheating them, through the real ledger and market:
    /// each strategy's revenue per unit of cost relative to honest filler mining.
    Economics(EconomicsArgs),
    /// The Proof-of-AI engine against honest providers with timing noise and against cheaters:
    /// per conduct, the share caught within an epoch of challenges and the rounds it took.
    Poai(PoaiArgs),
}

#[derive(Args)]
struct PoaiArgs {
    #[arg(long, default_value_t = 4)]
    seeds: u64,
    /// Epochs per seed (each: every provider challenged `ROUNDS_PER_EPOCH` times).
    #[arg(long, default_value_t = 125)]
    epochs: u32,
    /// Honest providers beside the cheaters in every epoch.
    #[arg(long, default_value_t = 20)]
    honest: u32,
    /// Honest timing noise, in log-time.
    #[arg(long, default_value_t = 0.2)]
    sigma: f64,
    /// Memory challenges: fills per way of keeping less, and each fill's size.
    #[arg(long, default_value_t = 4)]
    memory_trials: u32,
    #[arg(long, default_value_t = 256)]
    memory_mib: u64,
    /// The deadline for a memory challenge's openings, in seconds.
    #[arg(long, default_value_t = 1.0)]
    memory_deadline_s: f64,
    #[arg(long)]
    json: bool,
}

fn run_poai(args: PoaiArgs) -> CmdResult {
    if args.seeds == 0 || args.epochs == 0 || args.honest == 0 || !(0.0..=2.0).contains(&args.sigma) {
        return Err("need --seeds, --epochs and --honest ≥ 1 and --sigma in 0..=2".into());
    }
    if args.memory_trials == 0
        || !(1..=4096).contains(&args.memory_mib)
        || !(args.memory_deadline_s.is_finite() && args.memory_deadline_s > 0.0)
    {
        return Err("need --memory-trials ≥ 1, --memory-mib in 1..=4096 and --memory-deadline-s > 0".into());
    }
    let t = Instant::now();
    let reports: Vec<_> = (0..args.seeds)
        .into_par_iter()
        .map(|seed| ergon_sim::poai::run_poai(seed, args.epochs, args.honest, args.sigma))
        .collect();
    let memory = ergon_sim::poai_memory::run_memory(1, args.memory_trials, args.memory_mib, args.memory_deadline_s);
    if args.json {
        let both = serde_json::json!({ "compute": reports, "memory": memory });
        println!("{}", serde_json::to_string_pretty(&both).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    let r0 = &reports[0];
    println!(
        "{} seeds × {} epochs of {} rounds ({} parts each); σ = {} in log-time, overhead {}; α = {}, β = {}, classes {}× apart",
        args.seeds, args.epochs, r0.rounds_per_epoch, r0.parts_per_round, r0.sigma, r0.overhead, r0.alpha, r0.beta, r0.class_ratio
    );
    for (i, c) in r0.conducts.iter().enumerate() {
        let epochs: u64 = reports.iter().map(|r| r.conducts[i].provider_epochs).sum();
        let caught: u64 = reports.iter().map(|r| r.conducts[i].caught).sum();
        let worst = reports.iter().map(|r| r.conducts[i].max_rounds_to_catch).max().unwrap_or(0);
        let mean =
            reports.iter().map(|r| r.conducts[i].mean_rounds_to_catch * r.conducts[i].caught as f64).sum::<f64>()
                / caught.max(1) as f64;
        let slashes: u64 = reports.iter().map(|r| r.conducts[i].slashes_proposed).sum();
        println!(
            "  {:<36} {caught:>6} of {epochs:>6} provider-epochs caught ({:>7.3}%), mean {mean:.1} rounds, worst {worst}, slashes proposed {slashes}",
            c.conduct,
            100.0 * caught as f64 / epochs.max(1) as f64
        );
    }
    let check = reports.iter().map(|r| r.check_cost_ratio).sum::<f64>() / reports.len() as f64;
    println!(
        "  checking cost {:.2}% of the challenge work here (32×32×32 products); {:.3}% at the default size for a 100 G MAC/s claim; {:.1} s",
        check * 100.0,
        r0.check_cost_ratio_at_default_size * 100.0,
        t.elapsed().as_secs_f64()
    );
    println!(
        "memory challenges: {} fills of {} MiB ({:.0} MiB/s here, all cores), {} openings, deadline {} s; a cheater rebuilds what it dropped at the same rate",
        memory.trials, memory.fill_mib, memory.fill_mib_per_second, memory.openings, memory.deadline_seconds
    );
    for s in &memory.strategies {
        let caught = if s.caught_from_gib.is_finite() {
            format!("caught at claims from {:.1} GiB", s.caught_from_gib)
        } else if s.kept >= 1.0 {
            "nothing to rebuild".to_string()
        } else {
            format!(
                "NOT caught: the rebuild dies out as the fill grows ({:.1}% at a quarter of the size)",
                s.mean_rebuild_share_at_quarter_size * 100.0
            )
        };
        println!(
            "  {:<44} keeps {:>5.1}%: rebuilds {:>5.1}% of the fill (least {:>5.1}%); {caught}",
            s.strategy,
            s.kept * 100.0,
            s.mean_rebuild_share * 100.0,
            s.min_rebuild_share * 100.0
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
struct EconomicsArgs {
    #[arg(long, default_value_t = 8)]
    seeds: u64,
    /// Blocks per strategy and seed.
    #[arg(long, default_value_t = 2000)]
    blocks: u64,
    #[arg(long)]
    json: bool,
}

fn run_economics(args: EconomicsArgs) -> CmdResult {
    if args.seeds == 0 || args.blocks == 0 || args.blocks > 1_000_000 {
        return Err("need --seeds ≥ 1 and --blocks in 1..=1000000".into());
    }
    let reports: Vec<_> =
        (0..args.seeds).into_par_iter().map(|seed| ergon_sim::economics::run_economics(seed, args.blocks)).collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports).map_err(|e| e.to_string())?);
    } else {
        println!(
            "{} seeds × {} blocks per strategy (ratio = revenue per unit of cost ÷ honest filler mining's)",
            args.seeds, args.blocks
        );
        for (i, s) in reports[0].strategies.iter().enumerate() {
            let ratios: Vec<f64> = reports.iter().map(|r| r.strategies[i].ratio_vs_honest_mining).collect();
            let worst = ratios.iter().cloned().fold(f64::MIN, f64::max);
            let bad: u64 = reports.iter().map(|r| r.strategies[i].bad_results).sum();
            let paid: u64 = reports.iter().map(|r| r.strategies[i].bad_results_paid).sum();
            let strikes: u64 = reports.iter().map(|r| r.strategies[i].honest_strikes).sum();
            println!(
                "  {:<38} worst ratio {:>10.4}   bad results {bad} (paid {paid})   honest provider strikes {strikes}",
                s.strategy, worst
            );
        }
        let churn = |f: fn(&ergon_sim::churn::ChurnReport) -> u64| reports.iter().map(|r| f(&r.churn)).sum::<u64>();
        println!(
            "  churn: {} jobs, {} cancels, {} departures, {} returns, {} leases given back, {} failures, {} wrong results, {} disputes, {} challenges, {} job blocks; {} tasks settled, {} cancelled ({} replicas no provider took)",
            churn(|c| c.jobs),
            churn(|c| c.cancels),
            churn(|c| c.departures),
            churn(|c| c.returns),
            churn(|c| c.given_back_leases),
            churn(|c| c.provider_failures),
            churn(|c| c.wrong_results),
            churn(|c| c.disputes),
            churn(|c| c.challenges),
            churn(|c| c.job_blocks),
            churn(|c| c.tasks_settled),
            churn(|c| c.tasks_cancelled),
            churn(|c| c.replica_shortfalls),
        );
        let locked_after: u128 = reports.iter().map(|r| r.churn.coins_locked_after_drain).sum();
        let unfinished = churn(|c| c.jobs_unfinished_after_drain);
        let drain = reports.iter().map(|r| r.churn.drain_blocks).max().unwrap_or(0);
        println!(
            "  after the drain (at most {drain} blocks): coins locked {locked_after}, jobs unfinished {unfinished}, supply violations {}",
            churn(|c| c.supply_violations)
        );
        let violations: u64 = reports.iter().map(|r| r.supply_violations).sum();
        let locked: u128 = reports.iter().map(|r| r.coins_locked_at_end).sum();
        let share = reports.iter().map(|r| r.useful_work_share).sum::<f64>() / reports.len() as f64;
        println!(
            "  supply violations {violations}, coins locked in closed jobs {locked}, useful-work share {:.1}%",
            share * 100.0
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_sim(args: SimArgs) -> CmdResult {
    match args.what {
        Some(SimWhat::Economics(e)) => return run_economics(e),
        Some(SimWhat::Poai(p)) => return run_poai(p),
        None => {}
    }
    if args.nodes < 2 || args.nodes > 50 || args.seconds == 0 || args.seconds > 100_000 {
        return Err("need --nodes in 2..=50 and --seconds in 1..=100000".into());
    }
    let cfg = SimConfig { nodes: args.nodes, duration_ms: args.seconds * 1000, ..SimConfig::default() };
    let t = Instant::now();
    let reports: Vec<_> = (args.start..args.start + args.seeds).into_par_iter().map(|seed| run(seed, &cfg)).collect();
    let failing: Vec<_> = reports.iter().filter(|r| !r.violations.is_empty()).collect();
    let summary = Summary {
        seeds: args.seeds,
        violations: reports.iter().map(|r| r.violations.len()).sum(),
        nodes: args.nodes,
        virtual_seconds_per_seed: args.seconds,
        blocks_mined: reports.iter().map(|r| r.blocks_mined).sum(),
        reorgs: reports.iter().map(|r| r.reorgs).sum(),
        messages: reports.iter().map(|r| r.messages).sum(),
        mean_final_height: reports.iter().map(|r| r.final_height as f64).sum::<f64>() / reports.len().max(1) as f64,
        wall_seconds: t.elapsed().as_secs_f64(),
        failing_seeds: failing.iter().map(|r| r.seed).collect(),
        first_violations: failing.iter().take(5).map(|r| format!("seed {}: {}", r.seed, r.violations[0])).collect(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?);
    } else {
        println!(
            "{} seeds x {} nodes x {} virtual s: {} blocks mined, {} reorganisations, {} messages, mean final height {:.1}, {:.1} s wall",
            summary.seeds,
            summary.nodes,
            summary.virtual_seconds_per_seed,
            summary.blocks_mined,
            summary.reorgs,
            summary.messages,
            summary.mean_final_height,
            summary.wall_seconds
        );
        println!("violations: {}", summary.violations);
        for v in &summary.first_violations {
            println!("  {v}");
        }
    }
    Ok(if summary.violations == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
