//! `ergon challenge self-test`: the Proof-of-AI challenges a validator would send this machine,
//! answered here with the real kernel and judged by the real engine, with the numbers a
//! validator would see: each part's time against the claim, the engine's verdicts, and what the
//! checking cost.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand};
use ergon_poai::{Engine, PoaiParams, Verdict};
use ergon_types::{Address, Hash};
use serde::Serialize;

use crate::CmdResult;

#[derive(Subcommand)]
pub enum ChallengeCommand {
    /// Run the challenges on this machine and print what a validator would see.
    SelfTest(SelfTestArgs),
}

#[derive(Args)]
pub struct SelfTestArgs {
    /// The int8 throughput to claim (G MAC/s); measured here (`ergon bench hw`) if omitted.
    #[arg(long)]
    gmacs: Option<u64>,
    /// Rounds to run (each of the engine's parts).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Also run a memory challenge of this many MiB (the memory claimed): fill, commit, open.
    #[arg(long, default_value_t = 0)]
    memory_mib: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct PartRow {
    round: u32,
    part: u32,
    side: u32,
    compute_ms: f64,
    claimed_ms: f64,
    /// ln(time / claimed time).
    log_ratio: f64,
    check_ms: f64,
}

#[derive(Serialize)]
struct SelfTestReport {
    claimed_gmacs: u64,
    measured_gmacs: f64,
    parts: Vec<PartRow>,
    /// Spread of log_ratio over the parts (the engine assumes σ = 0.2 for an honest machine).
    log_ratio_sd: f64,
    judgments: Vec<String>,
    /// The checker's time over the prover's, per part.
    check_over_compute: f64,
    memory: Option<MemoryRow>,
}

/// A memory challenge as this machine answers it.
#[derive(Serialize)]
struct MemoryRow {
    mib: u64,
    fill_seconds: f64,
    fill_mib_per_second: f64,
    open_ms: f64,
    answer_bytes: u64,
    check_ms: f64,
}

/// Fills, commits and opens a memory challenge of `mib`, and checks the answer.
fn memory_self_test(mib: u64) -> Result<MemoryRow, String> {
    use ergon_poai::memory::MemoryChallenge;
    let c = MemoryChallenge::derive(&Hash([3; 32]), &Address([0x5e; 20]), 1, mib);
    let t = Instant::now();
    let fill = c.fill();
    let fill_seconds = t.elapsed().as_secs_f64();
    let (root, nonce) = (fill.root(), [9u8; 32]);
    let t = Instant::now();
    let answer = fill.open(&c, &c.to_open(&root, &nonce));
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let answer_bytes = answer
        .iter()
        .flat_map(|o| std::iter::once(&o.block).chain(&o.prev).chain(&o.refs))
        .map(|b| (8 + b.bytes.len() + 32 * b.path.len()) as u64)
        .sum();
    let t = Instant::now();
    c.check(&root, &nonce, &answer)?;
    let check_ms = t.elapsed().as_secs_f64() * 1e3;
    let mib_filled = c.bytes() as f64 / (1 << 20) as f64;
    Ok(MemoryRow {
        mib,
        fill_seconds,
        fill_mib_per_second: mib_filled / fill_seconds.max(1e-9),
        open_ms,
        answer_bytes,
        check_ms,
    })
}

pub fn run(cmd: ChallengeCommand) -> CmdResult {
    match cmd {
        ChallengeCommand::SelfTest(args) => self_test(args),
    }
}

fn self_test(args: SelfTestArgs) -> CmdResult {
    if args.rounds == 0 || args.rounds > 100 {
        return Err("--rounds must be in 1..=100".into());
    }
    if args.memory_mib > 1 << 20 {
        return Err("--memory-mib must be at most 1048576 (1 TiB)".into());
    }
    let claimed = match args.gmacs {
        Some(g) if g > 0 => g,
        Some(_) => return Err("--gmacs must be positive".into()),
        None => crate::market_cmds::measure_hw(&Default::default())?.int8_gmacs,
    };
    let params = PoaiParams::default();
    let mut engine = Engine::new(params.clone());
    let me = Address([0x5e; 20]);
    engine.register(me, claimed);
    let (mut parts, mut judgments) = (vec![], vec![]);
    let started = Instant::now();
    let elapsed_ns = |t: &Instant| t.elapsed().as_nanos() as u64;
    for round in 0..args.rounds {
        let seed =
            Hash::of("ergon self-test round", &[&round.to_le_bytes(), &started.elapsed().as_nanos().to_le_bytes()]);
        let (round_no, issued) = engine.issue(&seed, elapsed_ns(&started));
        let class = engine.view(&me).map_or(claimed, |v| v.class_gmacs);
        for (_, challenges) in issued {
            for (j, c) in challenges.iter().enumerate() {
                let t = Instant::now();
                let answer = c.solve();
                let compute_ms = t.elapsed().as_secs_f64() * 1e3;
                let arrived = elapsed_ns(&started);
                let t = Instant::now();
                let judged = engine.answer(&me, round_no, j as u32, &answer, arrived).map_err(|e| e.to_string())?;
                let check_ms = t.elapsed().as_secs_f64() * 1e3;
                let claimed_ms = c.expected_ns(class) / 1e6;
                parts.push(PartRow {
                    round: round + 1,
                    part: j as u32 + 1,
                    side: c.m,
                    compute_ms,
                    claimed_ms,
                    log_ratio: (compute_ms / claimed_ms).ln(),
                    check_ms,
                });
                judgments.extend(judged.into_iter().map(|jd| match jd.verdict {
                    Verdict::Confirm { .. } | Verdict::Demote { .. } => format!("round {}: {}", jd.round, jd.reason),
                    _ => format!("round {}: {:?}: {}", jd.round, jd.verdict, jd.reason),
                }));
            }
        }
    }
    let n = parts.len() as f64;
    let mean = parts.iter().map(|p| p.log_ratio).sum::<f64>() / n;
    let sd = (parts.iter().map(|p| (p.log_ratio - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    let compute: f64 = parts.iter().map(|p| p.compute_ms).sum();
    let check: f64 = parts.iter().map(|p| p.check_ms).sum();
    let macs: f64 = parts.iter().map(|p| (p.side as f64).powi(3)).sum();
    let report = SelfTestReport {
        claimed_gmacs: claimed,
        measured_gmacs: macs / (compute / 1e3) / 1e9,
        parts,
        log_ratio_sd: sd,
        judgments,
        check_over_compute: check / compute,
        memory: if args.memory_mib > 0 { Some(memory_self_test(args.memory_mib)?) } else { None },
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    let side = report.parts.first().map_or(0, |p| p.side);
    println!(
        "claim {} G MAC/s: {} rounds of {} parts, each a {side}³ int8 product to answer in {:.0} ms (commitment, then {} rows the commitment picks)",
        claimed,
        args.rounds,
        params.parts,
        report.parts.first().map_or(0.0, |p| p.claimed_ms),
        params.openings
    );
    for p in &report.parts {
        println!(
            "  round {} part {}: {:>8.1} ms (claimed {:>6.1}), ln(time/claimed) {:>+.3}; checked in {:.2} ms",
            p.round, p.part, p.compute_ms, p.claimed_ms, p.log_ratio, p.check_ms
        );
    }
    println!(
        "measured {:.1} G MAC/s through the challenges; ln-ratio mean {mean:+.3}, spread {sd:.3} (the engine assumes σ = {}); checking cost {:.2}% of answering",
        report.measured_gmacs,
        params.sigma,
        report.check_over_compute * 100.0
    );
    if report.judgments.is_empty() {
        println!("no verdict yet (the sequential test wants more parts: try --rounds 5)");
    }
    for j in &report.judgments {
        println!("  {j}");
    }
    if let Some(m) = &report.memory {
        println!(
            "memory challenge of {} MiB: filled in {:.2} s ({:.0} MiB/s), 32 blocks opened in {:.1} ms ({} KiB of answer), checked in {:.1} ms",
            m.mib,
            m.fill_seconds,
            m.fill_mib_per_second,
            m.open_ms,
            m.answer_bytes / 1024,
            m.check_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}
