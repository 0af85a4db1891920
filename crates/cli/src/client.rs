//! The client's side of a job (`ergon job submit … --out FILE`), as the CLI shows it: the
//! SDK follows the job and verifies every result (`ergon_sdk::job`); this prints its progress,
//! writes the result, measures an ML result and prints the receipt.

use std::collections::HashSet;
use std::path::Path;
use std::process::ExitCode;

use ergon_jobdata::Output;
use ergon_kernels::npy::write_npy;
use ergon_ml::{Dataset, Exact, Mlp};
use ergon_sdk::api::market::{JobStatus, Task, TaskState};
use ergon_sdk::job::assemble;
use ergon_sdk::{Event, Finished, JobRun, Work};
use ergon_types::JobKind;

use crate::CmdResult;

/// Assumed power per claimed core under AVX2 load, for the receipt's energy estimate.
const WATTS_PER_CORE: f64 = 10.0;

/// Follows `run` to its end, printing what happens, then writes the result to `out`,
/// measures an ML result on `measure_on` (the examples held out of training, or the labelled
/// data inferred on) and prints the receipt.
pub fn run_job(run: &JobRun, out: &Path, measure_on: Option<&Dataset>) -> CmdResult {
    let short = run.id.to_hex()[..8].to_string();
    let finished = run.follow(&mut |event| match event {
        Event::Progress { .. } => println!("job {short}: {event}"),
        _ => println!("{event}"),
    })?;
    finish(run, out, measure_on, finished)
}

fn finish(run: &JobRun, out: &Path, measure_on: Option<&Dataset>, finished: Finished) -> CmdResult {
    let Finished { results, job: v, took } = finished;
    let (written, quality) = match &run.work {
        Work::Matmul { .. } => {
            let c = assemble(results)?;
            write_npy(out, &c).map_err(|e| format!("{}: {e}", out.display()))?;
            (format!("{}×{} int32", c.rows(), c.cols()), None)
        }
        Work::Ml { kind, .. } => {
            let bytes = results.into_iter().next().map(Output::into_plaintext).unwrap_or_default();
            std::fs::write(out, &bytes).map_err(|e| format!("{}: {e}", out.display()))?;
            let quality = measure_on.map(|data| ml_quality(*kind, &bytes, data)).transpose()?;
            (format!("{} bytes, blake3 {}", bytes.len(), blake3::hash(&bytes).to_hex()), quality)
        }
    };
    // Receipt: work and money from the chain; energy estimated from each provider's claims.
    let mut macs = 0u64;
    let mut joules = 0.0;
    let mut providers = HashSet::new();
    let settled: Vec<&Task> = v.tasks.iter().filter(|t| matches!(t.state, TaskState::Settled { .. })).collect();
    for t in &settled {
        let w = match &run.work {
            Work::Matmul { a, b, bounds } => {
                let (r0, r1) = bounds[t.shard as usize];
                ((r1 - r0) * a.cols() * b.cols()) as u64
            }
            Work::Ml { .. } => v.macs_per_shard,
        };
        macs += w;
        let who = t.state.provider().unwrap_or_default().to_string();
        if let Ok(p) = who.parse().map_err(|_| ()).and_then(|a| run.client.provider(&a).map_err(|_| ())) {
            let gmacs = (p.provider.profile.int8_gmacs as f64).max(1.0);
            let cores = p.provider.profile.cpu_cores as f64;
            joules += w as f64 / (gmacs * 1e9) * cores * WATTS_PER_CORE;
        }
        providers.insert(who);
    }
    println!("wrote {} ({written})", out.display());
    println!("receipt for job {} ({}):", v.summary.id, v.summary.kind);
    println!(
        "  work: {macs} multiply-adds over {} shard(s) × {} replica(s) by {} provider(s)",
        run.work.shards(),
        v.summary.replicas,
        providers.len()
    );
    if v.summary.status == JobStatus::Done {
        let (paid, burned, escrowed) = (v.summary.paid, v.summary.burned, v.summary.escrowed_at_submission);
        println!(
            "  cost: {} (paid {paid} to providers, burned {burned}) of the {escrowed} escrowed; refunded {}, plus the transactions' fees",
            paid + burned,
            escrowed.saturating_sub(paid + burned)
        );
    } else {
        println!("  payment: settles on chain when the challenge window ends (`ergon job status` shows it)");
    }
    println!("  time: {:.1} s from submission to verified result", took.as_secs_f64());
    println!(
        "  energy: ≈ {:.3} J (estimate: multiply-adds ÷ the provider's claimed int8 throughput × {WATTS_PER_CORE} W per claimed core; not measured)",
        joules
    );
    match &run.work {
        Work::Matmul { .. } => println!(
            "  verification: every shard matched its posted commitment and passed Freivalds (false accept < 2^-120)"
        ),
        Work::Ml { .. } if settled.len() > 1 => println!(
            "  verification: {} replicas computed it independently{}; the chain paid only the result a majority agreed on, and these bytes match it",
            settled.len(),
            if settled.iter().any(|t| t.check) {
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
