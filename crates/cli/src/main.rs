//! `ergon`: the command-line entry point. Thin: parsing, files, printing; the work lives in the
//! `ergon-kernels` and `ergon-pouw` crates.

mod bench;
mod bench_api;
mod bench_market;
mod bench_matmul;
mod bench_mempool;
mod bench_network;
mod bench_restart;
mod bench_useful;
mod challenge_cmds;
mod client;
mod demo;
mod devnet;
mod market_cmds;
mod matrix_cmds;
mod mine_local;
mod ml_cmds;
mod node_cmds;
mod progress;
mod sim;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ergon", version, about = "Ergon: AI compute that secures a blockchain (Proof of Useful Work)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local network of node processes on loopback, with a live status table.
    Devnet(devnet::DevnetArgs),
    /// Mine a block on a generated job end to end: product, tickets, proof, verification.
    Demo(demo::DemoArgs),
    /// C = A·B for int8 .npy matrices (exact int32 result), optionally mining on the product.
    Matmul(matrix_cmds::MatmulArgs),
    /// Check that C = A·B (Freivalds over 2^61−1). Exit 0 if it is, 1 with the reason if not.
    Verify {
        a: PathBuf,
        b: PathBuf,
        c: PathBuf,
        /// Rounds; false accept ≤ 2^(−60·rounds).
        #[arg(long, default_value_t = ergon_kernels::freivalds::DEFAULT_ROUNDS)]
        rounds: u32,
    },
    /// Check a winning-ticket proof file written by `matmul --mine --proof-out`.
    VerifyProof { proof: PathBuf },
    /// Quantize a float32 .npy matrix to int8 with per-row or per-column scales.
    Quantize(matrix_cmds::QuantizeArgs),
    /// Write a genesis file.
    Genesis(node_cmds::GenesisArgs),
    /// Run a node: store, HTTP API (JSON + /metrics), optional mining.
    Node(node_cmds::NodeArgs),
    /// Keys.
    Key {
        #[command(subcommand)]
        cmd: node_cmds::KeyCommand,
    },
    /// Balances and transfers through a node's API.
    Wallet {
        #[command(subcommand)]
        cmd: node_cmds::WalletCommand,
    },
    /// Offer this machine's compute: register, deregister, status (and why it gets no work).
    Provider {
        #[command(subcommand)]
        cmd: market_cmds::ProviderCommand,
    },
    /// Rent compute: submit a job, follow it, cancel it.
    Job {
        #[command(subcommand)]
        cmd: market_cmds::JobCommand,
    },
    /// Train the quantized MLP (default: the shipped digits) and write a safetensors model.
    Train(ml_cmds::TrainArgs),
    /// Batch inference of a trained model over a data set.
    Infer(ml_cmds::InferArgs),
    /// Run one node without a network: replay its store, mine filler blocks, persist each.
    MineLocal(mine_local::MineLocalArgs),
    /// Run the deterministic network simulator over many seeds and check its invariants.
    Sim(sim::SimArgs),
    /// Proof of AI: the challenges a validator sends, run on this machine.
    Challenge {
        #[command(subcommand)]
        cmd: challenge_cmds::ChallengeCommand,
    },
    /// Benchmarks that print side-by-side measurements from one run.
    Bench {
        #[command(subcommand)]
        which: bench::BenchCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Devnet(args) => devnet::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Matmul(args) => matrix_cmds::matmul(args),
        Command::Verify { a, b, c, rounds } => matrix_cmds::verify(&a, &b, &c, rounds),
        Command::VerifyProof { proof } => matrix_cmds::verify_proof(&proof),
        Command::Quantize(args) => matrix_cmds::quantize(args),
        Command::Sim(args) => sim::run_sim(args),
        Command::MineLocal(args) => mine_local::run(args),
        Command::Node(args) => node_cmds::node(args),
        Command::Genesis(args) => node_cmds::genesis(args),
        Command::Key { cmd } => node_cmds::key(cmd),
        Command::Wallet { cmd } => node_cmds::wallet(cmd),
        Command::Provider { cmd } => market_cmds::provider(cmd),
        Command::Job { cmd } => market_cmds::job(cmd),
        Command::Train(args) => ml_cmds::train(args),
        Command::Infer(args) => ml_cmds::infer(args),
        Command::Bench { which } => bench::run(which),
        Command::Challenge { cmd } => challenge_cmds::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Errors end the command with one line and exit status 2 (1 is reserved for "checked and false").
pub type CmdResult = Result<ExitCode, String>;
