//! `ergon demo`: the whole mining story on one machine, in one command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use ergon_kernels::freivalds::{self, Verdict};
use ergon_kernels::npy::write_npy;
use ergon_pouw::{mine, prove, verify, Challenge, MineOptions, Proof, WorkCommitment};

use crate::matrix_cmds::{encode_bundle, fresh_seed, gmacs, random_matrix};
use crate::progress::Progress;
use crate::CmdResult;

#[derive(Args)]
pub struct DemoArgs {
    /// Side of the square job matrices.
    #[arg(long, default_value_t = 2048)]
    size: usize,
    /// Where the job's .npy files and the proof are written.
    #[arg(long, default_value = "ergon-demo")]
    dir: PathBuf,
}

pub fn run(args: DemoArgs) -> CmdResult {
    let n = args.size;
    if n == 0 || n > 16_384 {
        return Err(format!("--size {n} must be in 1..=16384"));
    }
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let path = |name: &str| args.dir.join(name);
    println!("1. A client's job: multiply two random {n}x{n} int8 matrices (entries in ±126).");
    let (a, b) = (random_matrix(n, n, 126, 1)?, random_matrix(n, n, 126, 2)?);
    for (name, m) in [("A.npy", &a), ("B.npy", &b)] {
        write_npy(&path(name), m).map_err(|e| e.to_string())?;
    }
    let work = (n * n * n) as u64;

    let t = Instant::now();
    let commitment = WorkCommitment::compute(&a, &b).map_err(|e| e.to_string())?;
    println!(
        "2. The job is committed by Merkle roots: A {}…, B {}… ({:.0} ms).",
        ergon_types::hex::encode(&commitment.root_a[..6]),
        ergon_types::hex::encode(&commitment.root_b[..6]),
        t.elapsed().as_secs_f64() * 1e3
    );
    // About four winning tickets per pass.
    let difficulty = (work / 4).max(1);
    let challenge = Challenge::new(b"ergon demo block".to_vec(), commitment, difficulty).map_err(|e| e.to_string())?;

    let t = Instant::now();
    let plain = ergon_kernels::matmul(&a, &b).map_err(|e| e.to_string())?;
    let plain_s = t.elapsed().as_secs_f64();
    println!("3. Plain product for reference: {:.3} s ({:.1} GMAC/s).", plain_s, gmacs(work as f64, plain_s));

    let (mined, mine_s) = {
        let bar = Progress::start("mining", work);
        let t = Instant::now();
        let mined = mine(&challenge, &a, &b, 0, MineOptions { isa: None, progress: Some(&bar.counter) })
            .map_err(|e| e.to_string())?;
        (mined, t.elapsed().as_secs_f64())
    };
    println!(
        "4. Mined nonce 0 while computing it: {:.3} s ({:.2}x the plain product), {} tickets, {} winning at difficulty {difficulty}.",
        mine_s,
        mine_s / plain_s,
        mined.tickets,
        mined.winners.len()
    );
    if mined.product != plain {
        return Err("the recovered product differs from the plain product (bug)".into());
    }
    println!("   The client's result A·B was recovered exactly from the noisy product.");

    let t = Instant::now();
    match freivalds::check(&a, &b, &mined.product, freivalds::DEFAULT_ROUNDS, fresh_seed()?)
        .map_err(|e| e.to_string())?
    {
        Verdict::Accept { false_accept_bits } => println!(
            "5. The client checks it with Freivalds in {:.1} ms (false accept < 2^-{false_accept_bits}).",
            t.elapsed().as_secs_f64() * 1e3
        ),
        Verdict::Reject { row } => return Err(format!("Freivalds rejected row {row} (bug)")),
    }
    write_npy(&path("C.npy"), &mined.product).map_err(|e| e.to_string())?;

    let Some(winner) = mined.winners.first() else {
        println!("6. No ticket won this time (probability e^-4); run again with another --size.");
        return Ok(ExitCode::SUCCESS);
    };
    let proof = prove(&challenge, &a, &b, 0, winner).map_err(|e| e.to_string())?;
    let bundle = encode_bundle(&challenge, &proof);
    std::fs::write(path("proof.bin"), &bundle).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let decoded = Proof::decode(&proof.encode()).map_err(|e| e.to_string())?;
    verify(&challenge, &decoded).map_err(|e| format!("own proof rejected (bug): {e}"))?;
    println!(
        "6. Winning ticket {:#018x} (tile {},{}): proof of {} KiB checked from the header alone in {:.2} ms.",
        winner.value,
        winner.tile_row,
        winner.tile_col,
        bundle.len() / 1024,
        t.elapsed().as_secs_f64() * 1e3
    );
    let d = args.dir.display();
    println!("\nTry it yourself:\n  ergon verify {d}/A.npy {d}/B.npy {d}/C.npy\n  ergon verify-proof {d}/proof.bin");
    println!("  ergon matmul {d}/A.npy {d}/B.npy -o {d}/C2.npy --mine --proof-out {d}/proof2.bin");
    Ok(ExitCode::SUCCESS)
}
