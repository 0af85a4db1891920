//! `matmul`, `verify`, `verify-proof` and `quantize`: matrices in and out as .npy.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, ValueEnum};
use ergon_kernels::freivalds::{self, Verdict};
use ergon_kernels::gemm::{GemmOptions, Isa};
use ergon_kernels::npy::{read_npy, write_npy, NpyElement};
use ergon_kernels::quantize::{quantize as quantize_matrix, Axis};
use ergon_kernels::{MatF32, MatI8, Matrix};
use ergon_pouw::{mine, prove, verify as verify_pow, Challenge, MineOptions, Proof, WorkCommitment};

use crate::progress::Progress;
use crate::CmdResult;

#[derive(Args)]
pub struct MatmulArgs {
    /// Left operand, int8 .npy (m×k).
    a: PathBuf,
    /// Right operand, int8 .npy (k×n).
    b: PathBuf,
    /// Where to write C = A·B, int32 .npy (m×n).
    #[arg(short, long)]
    output: PathBuf,
    /// Mine on the product (Proof of Useful Work): entries must lie in ±126.
    #[arg(long)]
    mine: bool,
    /// Difficulty: expected multiply-adds per winning ticket. Default: the product's own size, so
    /// about one winner per pass.
    #[arg(long)]
    target: Option<u64>,
    /// Header bytes (as text) the mined block would seal.
    #[arg(long, default_value = "ergon matmul")]
    header: String,
    /// First nonce to mine.
    #[arg(long, default_value_t = 0)]
    nonce: u64,
    /// Nonces to try (each is one full pass of the product).
    #[arg(long, default_value_t = 1)]
    nonces: u64,
    /// Write the first winning ticket's proof (with its challenge) here.
    #[arg(long)]
    proof_out: Option<PathBuf>,
    /// Use the portable kernel even where AVX2 is available.
    #[arg(long)]
    portable: bool,
}

pub fn load<T: NpyElement>(path: &Path) -> Result<Matrix<T>, String> {
    read_npy::<T>(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn save<T: NpyElement>(path: &Path, m: &Matrix<T>) -> Result<(), String> {
    write_npy(path, m).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn gmacs(macs: f64, secs: f64) -> f64 {
    macs / secs / 1e9
}

pub fn matmul(args: MatmulArgs) -> CmdResult {
    let (a, b) = (load::<i8>(&args.a)?, load::<i8>(&args.b)?);
    ergon_kernels::gemm::check_exact(&a, &b).map_err(|e| e.to_string())?;
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    let work = (m * k * n) as u64;
    let isa = if args.portable { Isa::Portable } else { Isa::detect() };
    if !args.mine {
        let bar = Progress::start("multiplying", work);
        let t = Instant::now();
        let c = ergon_kernels::matmul_with(
            &a,
            &b,
            GemmOptions { isa: Some(isa), progress: Some(&bar.counter), epilogue: None },
        )
        .map_err(|e| e.to_string())?;
        let secs = t.elapsed().as_secs_f64();
        drop(bar);
        save(&args.output, &c)?;
        println!(
            "C = A·B ({m}x{k} · {k}x{n}): {work} multiply-adds in {:.3} s ({:.1} GMAC/s, {} kernel) -> {}",
            secs,
            gmacs(work as f64, secs),
            isa.name(),
            args.output.display()
        );
        return Ok(ExitCode::SUCCESS);
    }

    let t = Instant::now();
    let commitment = WorkCommitment::compute(&a, &b).map_err(|e| e.to_string())?;
    println!("committed to A and B in {:.3} s", t.elapsed().as_secs_f64());
    let difficulty = args.target.unwrap_or(work).max(1);
    let challenge =
        Challenge::new(args.header.clone().into_bytes(), commitment, difficulty).map_err(|e| e.to_string())?;
    let (mut tickets, mut winners, mut proof_written, mut product) = (0u64, 0usize, false, None);
    for nonce in args.nonce..args.nonce.saturating_add(args.nonces.max(1)) {
        let bar = Progress::start(&format!("mining nonce {nonce}"), work);
        let t = Instant::now();
        let mined = mine(&challenge, &a, &b, nonce, MineOptions { isa: Some(isa), progress: Some(&bar.counter) })
            .map_err(|e| e.to_string())?;
        let secs = t.elapsed().as_secs_f64();
        drop(bar);
        tickets += mined.tickets;
        winners += mined.winners.len();
        let tm = mined.timings;
        println!(
            "nonce {nonce}: {} tickets, {} winning, {:.3} s ({:.1} GMAC/s; noise {:.1} ms, product {:.1} ms, tickets {:.1} ms, recovery {:.1} ms)",
            mined.tickets,
            mined.winners.len(),
            secs,
            gmacs(work as f64, secs),
            tm.noise.as_secs_f64() * 1e3,
            tm.product.as_secs_f64() * 1e3,
            tm.tickets.as_secs_f64() * 1e3,
            tm.recovery.as_secs_f64() * 1e3,
        );
        if let (Some(path), Some(w), false) = (&args.proof_out, mined.winners.first(), proof_written) {
            let proof = prove(&challenge, &a, &b, nonce, w).map_err(|e| e.to_string())?;
            let bytes = encode_bundle(&challenge, &proof);
            std::fs::write(path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            println!(
                "proof of ticket {:#018x} (tile {},{}) written to {} ({} bytes)",
                w.value,
                w.tile_row,
                w.tile_col,
                path.display(),
                bytes.len()
            );
            proof_written = true;
        }
        product = Some(mined.product);
    }
    let product = product.ok_or("no nonce was mined")?;
    save(&args.output, &product)?;
    println!(
        "difficulty {difficulty} multiply-adds per winning ticket: {tickets} tickets tried, {winners} winning; C -> {}",
        args.output.display()
    );
    if args.proof_out.is_some() && !proof_written {
        println!("no winning ticket, so no proof written (lower --target or raise --nonces)");
    }
    Ok(ExitCode::SUCCESS)
}

const BUNDLE_MAGIC: &[u8; 8] = b"ERGNPOW1";

/// A proof file: magic, the challenge, then the proof.
pub fn encode_bundle(challenge: &Challenge, proof: &Proof) -> Vec<u8> {
    let mut out = BUNDLE_MAGIC.to_vec();
    out.extend_from_slice(&challenge.encode());
    out.extend_from_slice(&proof.encode());
    out
}

pub fn decode_bundle(bytes: &[u8]) -> Result<(Challenge, Proof), String> {
    let rest = bytes.strip_prefix(BUNDLE_MAGIC).ok_or("not an ergon proof file (bad magic)")?;
    let (challenge, used) = Challenge::decode(rest).map_err(|e| e.to_string())?;
    let proof = Proof::decode(&rest[used..]).map_err(|e| e.to_string())?;
    Ok((challenge, proof))
}

pub fn verify_proof(path: &Path) -> CmdResult {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() > ergon_pouw::MAX_PROOF_BYTES + 8 + 8192 {
        return Err(format!("{}: {} bytes is too large for a proof file", path.display(), bytes.len()));
    }
    let (challenge, proof) = decode_bundle(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let t = Instant::now();
    match verify_pow(&challenge, &proof) {
        Ok(ticket) => {
            println!(
                "valid: ticket {:#018x} of tile ({}, {}) covers {} multiply-adds at difficulty {} (checked in {:.2} ms)",
                ticket.value,
                ticket.tile_row,
                ticket.tile_col,
                ticket.work,
                challenge.difficulty,
                t.elapsed().as_secs_f64() * 1e3
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("invalid: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

pub fn fresh_seed() -> Result<[u8; 32], String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no OS randomness: {e}"))?;
    Ok(seed)
}

pub fn verify(a: &Path, b: &Path, c: &Path, rounds: u32) -> CmdResult {
    let (a, b, c) = (load::<i8>(a)?, load::<i8>(b)?, load::<i32>(c)?);
    if a.cols() != b.rows() {
        return Err(format!(
            "A is {}x{} and B is {}x{}: they cannot be multiplied",
            a.rows(),
            a.cols(),
            b.rows(),
            b.cols()
        ));
    }
    if (c.rows(), c.cols()) != (a.rows(), b.cols()) {
        println!("mismatch: C is {}x{} but A·B is {}x{}", c.rows(), c.cols(), a.rows(), b.cols());
        return Ok(ExitCode::from(1));
    }
    let t = Instant::now();
    match freivalds::check(&a, &b, &c, rounds, fresh_seed()?).map_err(|e| e.to_string())? {
        Verdict::Accept { false_accept_bits } => {
            println!(
                "ok: C = A·B (Freivalds, {rounds} rounds over 2^61-1, false accept < 2^-{false_accept_bits}, {:.1} ms)",
                t.elapsed().as_secs_f64() * 1e3
            );
            Ok(ExitCode::SUCCESS)
        }
        Verdict::Reject { row } => {
            println!("mismatch: row {row} of C differs from row {row} of A·B");
            Ok(ExitCode::from(1))
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum AxisArg {
    Row,
    Column,
}

#[derive(Args)]
pub struct QuantizeArgs {
    /// float32 .npy input.
    input: PathBuf,
    /// int8 .npy output.
    #[arg(short, long)]
    output: PathBuf,
    /// One scale per row (left operands) or per column (right operands).
    #[arg(long, value_enum, default_value = "row")]
    axis: AxisArg,
    /// Largest |q|. 126 (the default) keeps the result minable; 127 is the usual int8 range.
    #[arg(long, default_value_t = 126, value_parser = clap::value_parser!(i8).range(1..=127))]
    qmax: i8,
    /// Also write the scales, float32 .npy (1 × groups).
    #[arg(long)]
    scales_out: Option<PathBuf>,
}

pub fn quantize(args: QuantizeArgs) -> CmdResult {
    let x: MatF32 = load(&args.input)?;
    let axis = match args.axis {
        AxisArg::Row => Axis::Row,
        AxisArg::Column => Axis::Column,
    };
    let q = quantize_matrix(&x, axis, args.qmax).map_err(|e| format!("{}: {e}", args.input.display()))?;
    save::<i8>(&args.output, &q.values)?;
    if let Some(path) = &args.scales_out {
        let scales = MatF32::from_vec(1, q.scales.len(), q.scales.clone()).map_err(|e| e.to_string())?;
        save(path, &scales)?;
    }
    println!(
        "quantized {}x{} to int8 in ±{} with {} {} scales: max abs error {:.6}, RMS error {:.6} -> {}",
        x.rows(),
        x.cols(),
        args.qmax,
        q.scales.len(),
        if axis == Axis::Row { "row" } else { "column" },
        q.max_abs_error,
        q.rms_error,
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A pseudo-random int8 matrix with entries in ±`max` (for demos and benchmarks).
pub fn random_matrix(rows: usize, cols: usize, max: i8, seed: u64) -> Result<MatI8, String> {
    ergon_kernels::rng::random_matrix(rows, cols, max, seed).map_err(|e| e.to_string())
}
