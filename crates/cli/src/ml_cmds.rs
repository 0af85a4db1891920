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
    #[command(flatten)]
    model: TrainOpts,
    /// Compute every product by PoUW mining (difficulty: multiply-adds per winning ticket).
    #[arg(long)]
    mine: Option<u64>,
}

/// How to train: shared by `ergon train` and `ergon job submit --kind train`.
#[derive(Args)]
pub struct TrainOpts {
    /// Epochs over the training examples.
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    pub epochs: usize,
    /// Hidden units.
    #[arg(long, default_value_t = TrainConfig::default().hidden)]
    pub hidden: usize,
    /// Seed of the initial weights and the shuffles.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
}

impl TrainOpts {
    pub fn config(&self) -> TrainConfig {
        TrainConfig { hidden: self.hidden, epochs: self.epochs, seed: self.seed, ..TrainConfig::default() }
    }
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
    use ergon_ml::job::{MAX_EPOCHS, MAX_HIDDEN};
    if args.model.hidden == 0 || args.model.hidden > MAX_HIDDEN || args.model.epochs > MAX_EPOCHS {
        return Err(format!("--hidden must be in 1..={MAX_HIDDEN} and --epochs at most {MAX_EPOCHS}"));
    }
    let config = args.model.config();
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
