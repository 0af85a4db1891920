//! The client's side of a job (`ergon job submit … --out FILE`), as the CLI shows it: the
//! SDK follows the job and verifies every result (`ergon_sdk::job`); this prints its progress,
//! writes the result, measures an ML result and prints the receipt.

use std::path::Path;
use std::process::ExitCode;

use ergon_jobdata::Output;
use ergon_kernels::npy::write_npy;
use ergon_ml::{Dataset, Exact, Mlp};
use ergon_sdk::job::assemble;
use ergon_sdk::{Event, Finished, JobRun, Receipt, Work};
use ergon_types::JobKind;

use crate::CmdResult;

/// Follows `run` to its end, printing what happens, then writes the result to `out`,
/// measures an ML result on `measure_on` (the examples held out of training, or the labelled
/// data inferred on) and prints the receipt.
///
/// `json`: one JSON object per line instead, `{"event": "…"}` for each event and a last
/// `{"receipt": …, "wrote": …, "written": …, "quality": …}` (what `clients/python` reads).
pub fn run_job(run: &JobRun, out: &Path, measure_on: Option<&Dataset>, json: bool) -> CmdResult {
    let short = run.id.to_hex()[..8].to_string();
    let finished = run.follow(&mut |event| match event {
        _ if json => println!("{}", serde_json::json!({ "event": event.to_string() })),
        Event::Progress { .. } => println!("job {short}: {event}"),
        _ => println!("{event}"),
    })?;
    finish(run, out, measure_on, finished, json)
}

fn finish(run: &JobRun, out: &Path, measure_on: Option<&Dataset>, finished: Finished, json: bool) -> CmdResult {
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
    let receipt = Receipt::of(&run.work, &v, took);
    if json {
        let line = serde_json::json!({ "receipt": receipt, "wrote": out, "written": written, "quality": quality });
        println!("{line}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("wrote {} ({written})", out.display());
    println!("receipt for job {} ({}):", receipt.job, receipt.kind);
    println!(
        "  work: {} multiply-adds over {} shard(s) × {} replica(s) by {} provider(s)",
        receipt.macs,
        receipt.shards,
        receipt.replicas,
        receipt.providers.len()
    );
    match (receipt.cost, receipt.refunded) {
        (Some(cost), Some(refunded)) => println!(
            "  cost: {cost} (paid {} to providers, burned {}) of the {} escrowed; refunded {refunded}, plus the transactions' fees",
            receipt.paid, receipt.burned, receipt.escrowed
        ),
        _ => println!("  payment: settles on chain when the challenge window ends (`ergon job status` shows it)"),
    }
    println!("  time: {:.1} s from submission to verified result", receipt.seconds);
    println!(
        "  energy: {:.2} J: {:.3} CPU-seconds measured by its providers × {} W per busy thread (docs/energy.md)",
        receipt.energy.joules,
        receipt.energy.cpu_seconds,
        ergon_sdk::api::energy::WATTS_PER_BUSY_THREAD
    );
    println!("  verification: {}", receipt.verification);
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
