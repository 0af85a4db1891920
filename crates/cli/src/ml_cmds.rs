//! `ergon train` and `ergon infer`: the quantized MLP on a data set, locally. Every product runs
//! through the int8 kernel, or through PoUW mining with `--mine`; the model bytes are the same.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use ergon_ml::{Dataset, Exact, Mining, Mlp, Multiply, TrainConfig};

use crate::CmdResult;

#[derive(Args)]
pub struct TrainArgs {
    /// Gzip-compressed CSV (features then label per line); default: the shipped digits.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where to write the model (safetensors).
    #[arg(long, default_value = "model.safetensors")]
    out: PathBuf,
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    epochs: usize,
    #[arg(long, default_value_t = TrainConfig::default().hidden)]
    hidden: usize,
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    seed: u64,
    /// Compute every product by PoUW mining (difficulty: multiply-adds per winning ticket).
    #[arg(long)]
    mine: Option<u64>,
}

#[derive(Args)]
pub struct InferArgs {
    #[arg(long)]
    model: PathBuf,
    /// Gzip-compressed CSV; default: the held-out fifth of the shipped digits.
    #[arg(long)]
    data: Option<PathBuf>,
}

fn load(path: &Option<PathBuf>) -> Result<(Dataset, Dataset), String> {
    let data = match path {
        Some(p) => Dataset::from_csv_gz(&std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => Dataset::digits(),
    }
    .map_err(|e| e.to_string())?;
    Ok(data.split(5))
}

pub fn train(args: TrainArgs) -> CmdResult {
    let (train, test) = load(&args.data)?;
    if args.hidden == 0 || args.hidden > 4096 || args.epochs > 10_000 {
        return Err("--hidden must be in 1..=4096 and --epochs at most 10000".into());
    }
    let config = TrainConfig { hidden: args.hidden, epochs: args.epochs, seed: args.seed, ..TrainConfig::default() };
    let mut mul: Box<dyn Multiply> = match args.mine {
        Some(d) => Box::new(Mining::new(b"ergon train".to_vec(), d.max(1))),
        None => Box::new(Exact::default()),
    };
    let t = Instant::now();
    let model = Mlp::train(&train, &config, mul.as_mut()).map_err(|e| e.to_string())?;
    let secs = t.elapsed().as_secs_f64();
    let acc = model.accuracy(&test, &mut Exact::default()).map_err(|e| e.to_string())?;
    let bytes = model.to_safetensors().map_err(|e| e.to_string())?;
    std::fs::write(&args.out, &bytes).map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!(
        "trained {}→{}→{} on {} examples, {} epochs: {} multiply-adds in {secs:.2} s{}",
        model.inputs,
        model.hidden,
        model.classes,
        train.len(),
        config.epochs,
        mul.macs(),
        if args.mine.is_some() { " (every product mined)" } else { "" }
    );
    println!("held-out accuracy {:.2}% on {} examples", acc * 100.0, test.len());
    println!("model: {} ({} bytes, blake3 {})", args.out.display(), bytes.len(), blake3::hash(&bytes).to_hex());
    Ok(ExitCode::SUCCESS)
}

pub fn infer(args: InferArgs) -> CmdResult {
    let bytes = std::fs::read(&args.model).map_err(|e| format!("{}: {e}", args.model.display()))?;
    let model = Mlp::from_safetensors(&bytes).map_err(|e| format!("{}: {e}", args.model.display()))?;
    let (_, test) = load(&args.data)?;
    let mut mul = Exact::default();
    let t = Instant::now();
    let acc = model.accuracy(&test, &mut mul).map_err(|e| e.to_string())?;
    println!(
        "{} examples in {:.1} ms ({} multiply-adds): accuracy {:.2}%",
        test.len(),
        t.elapsed().as_secs_f64() * 1e3,
        mul.macs(),
        acc * 100.0
    );
    Ok(ExitCode::SUCCESS)
}
