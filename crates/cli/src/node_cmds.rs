//! `ergon node`, `ergon key new`, `ergon wallet balance|send`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use ergon_chain::Genesis;
use ergon_node::NodeConfig;
use ergon_sdk::Client;
use ergon_types::{Address, Hash, SecretKey, TxKind};
use serde_json::Value;

use crate::CmdResult;

#[derive(Args)]
pub struct NodeArgs {
    /// Where the node keeps its database.
    #[arg(long)]
    data_dir: PathBuf,
    /// HTTP API address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    api: SocketAddr,
    /// Mine filler blocks on the tip.
    #[arg(long)]
    mine: bool,
    /// Address paid for mined blocks (default: the zero address).
    #[arg(long)]
    miner: Option<Address>,
    /// Genesis file (JSON), required for a new data directory.
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// Peer-to-peer listen address, e.g. /ip4/127.0.0.1/tcp/9000 (none: no network).
    #[arg(long)]
    listen: Option<String>,
    /// A peer to connect to (repeatable), e.g. /ip4/127.0.0.1/tcp/9001.
    #[arg(long)]
    peer: Vec<String>,
    /// Also discover peers on the local network by mDNS (off by default).
    #[arg(long)]
    mdns: bool,
    /// Work as a compute provider with this key file: compute leased shards while mining on
    /// them, deliver results (implies --mine, with this key's address as the miner). Register
    /// the offer first with `ergon provider register`.
    #[arg(long)]
    provider_key: Option<PathBuf>,
    /// Testing only: a dishonest provider that posts products with one wrong entry.
    #[arg(long, hide = true)]
    corrupt_results: bool,
    /// Run the Proof-of-AI validator with this key file: challenge every registered provider,
    /// judge its throughput and liveness, and send the judgments as transactions. Its account
    /// must stake at least the genesis's `min_validator_stake` (`ergon wallet stake`).
    #[arg(long)]
    validator_key: Option<PathBuf>,
    /// Testing only: answer challenges this many times slower than they are computed (a
    /// provider whose machine is slower than its offer claims).
    #[arg(long, hide = true, default_value_t = 1.0)]
    challenge_slowdown: f64,
    /// Testing only: answer challenges with a wrong product, consistently committed (a cheat
    /// validators prove on chain).
    #[arg(long, hide = true)]
    corrupt_challenges: bool,
    /// Testing only: a validator's timed rounds this often, in seconds, instead of every 20 s
    /// (challenges are then more than 5% of a provider's time).
    #[arg(long, hide = true)]
    challenge_every_s: Option<f64>,
    /// Testing only: keep this share (percent) of the memory challenge's fill and rebuild the
    /// rest when opened (a provider claiming more memory than it has).
    #[arg(long, hide = true, default_value_t = 100)]
    memory_keep_percent: u8,
    /// A validator's deadline for answers to its memory openings, in milliseconds: a few
    /// network round trips (an honest provider opens in about a millisecond; `docs/poai.md`
    /// §7 says which over-claims a deadline catches).
    #[arg(long, default_value_t = 1000)]
    memory_deadline_ms: u32,
    /// A validator's hidden audits: a small paid training job whose answer it computed first,
    /// this often, in seconds (0: none). Each costs the validator about one job at the dearest
    /// provider's price (`docs/poai.md` §10).
    #[arg(long, default_value_t = 300.0)]
    audit_every_s: f64,
    /// The share of its time (percent) the miner spends mining filler blocks while it has no
    /// leased work; it rests the remainder (the difficulty follows). Leased shards are always
    /// mined at full speed.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(1..=100))]
    filler_duty_percent: u8,
}

pub fn node(args: NodeArgs) -> CmdResult {
    // Colour only on a terminal: a log file gets plain text.
    let _ = tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .try_init();
    let genesis = match &args.genesis {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            Some(Genesis::from_json(&text).map_err(|e| format!("{}: {e}", p.display()))?)
        }
        None => None,
    };
    let provider = args.provider_key.as_ref().map(read_key).transpose()?;
    let validator = args.validator_key.as_ref().map(read_key).transpose()?;
    let miner = match &provider {
        Some(k) => k.public().address(),
        None => args.miner.unwrap_or_default(),
    };
    let cfg = NodeConfig {
        data_dir: args.data_dir,
        api: args.api,
        mine: args.mine || provider.is_some(),
        miner,
        provider,
        corrupt_results: args.corrupt_results,
        validator,
        challenge_slowdown: args.challenge_slowdown,
        corrupt_challenges: args.corrupt_challenges,
        challenge_every_s: args.challenge_every_s,
        memory_keep_percent: args.memory_keep_percent,
        memory_deadline_ms: args.memory_deadline_ms,
        audit_every_s: args.audit_every_s,
        filler_duty_percent: args.filler_duty_percent,
        genesis,
        listen: args.listen,
        peers: args.peer,
        mdns: args.mdns,
    };
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(ergon_node::run(cfg, ergon_node::shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Make a new key from OS randomness; writes its secret to a file readable only by you.
    New {
        #[arg(long, default_value = "ergon.key")]
        out: PathBuf,
    },
    /// Print the address of a key file (what others send coins to, and what the chain names).
    Address {
        #[arg(long, default_value = "ergon.key")]
        key: PathBuf,
    },
}

pub fn key(cmd: KeyCommand) -> CmdResult {
    let out = match cmd {
        KeyCommand::New { out } => out,
        KeyCommand::Address { key } => {
            println!("{}", read_key(&key)?.public().address());
            return Ok(ExitCode::SUCCESS);
        }
    };
    if out.exists() {
        return Err(format!("{} exists; refusing to overwrite a key", out.display()));
    }
    let seed = crate::matrix_cmds::fresh_seed()?;
    let key = SecretKey::from_bytes(&seed);
    write_private(&out, &format!("{}\n", ergon_types::hex::encode(&seed)))?;
    println!("{}  (secret key in {})", key.public().address(), out.display());
    Ok(ExitCode::SUCCESS)
}

fn write_private(path: &PathBuf, text: &str) -> Result<(), String> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn read_key(path: &PathBuf) -> Result<SecretKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes = ergon_types::hex::decode_array::<32>(text.trim())
        .ok_or(format!("{}: not a 64-digit hex key", path.display()))?;
    Ok(SecretKey::from_bytes(&bytes))
}

#[derive(Subcommand)]
pub enum WalletCommand {
    /// Balance, stake and nonce of an address.
    Balance {
        address: Address,
        /// The account (and provider bond, if any) as JSON, the API's own types.
        #[arg(long)]
        json: bool,
        #[arg(long, env = "ERGON_API", default_value = "127.0.0.1:8080")]
        api: SocketAddr,
    },
    /// Sign a transfer with a key file and submit it to a node.
    Send {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        to: Address,
        #[arg(long)]
        amount: u64,
        #[arg(long, default_value_t = 1)]
        fee: u64,
        #[arg(long, env = "ERGON_API", default_value = "127.0.0.1:8080")]
        api: SocketAddr,
    },
    /// Lock part of a key's balance as stake (a validator needs the genesis's
    /// `min_validator_stake` to send judgments).
    Stake {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        amount: u64,
        #[arg(long, default_value_t = 1)]
        fee: u64,
        #[arg(long, env = "ERGON_API", default_value = "127.0.0.1:8080")]
        api: SocketAddr,
    },
}

pub fn wallet(cmd: WalletCommand) -> CmdResult {
    match cmd {
        WalletCommand::Balance { address, json, api } => {
            let client = Client::new(api);
            let a = client.account(&address).map_err(|e| e.to_string())?;
            // A provider's bond is held by the market, not the account: shown beside it.
            let provider = match client.provider(&address) {
                Ok(p) => Some(p.provider),
                Err(e) if e.status() == Some(404) => None,
                Err(e) => return Err(e.to_string()),
            };
            if json {
                let v = serde_json::json!({ "account": a, "provider": provider });
                println!("{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{address}: balance {}, staked {}, next nonce {} ({} pending)",
                a.balance, a.stake, a.next_nonce, a.pending
            );
            for u in &a.unbonding {
                println!("  unbonding: {} released at block {}", u.amount, u.release_height);
            }
            if let Some(p) = provider {
                println!(
                    "  provider bond: {} ({} held as collateral by open leases; slashed {} so far)",
                    p.bond, p.bond_locked, p.slashed
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        WalletCommand::Send { key, to, amount, fee, api } => {
            let key = read_key(&key)?;
            let (id, nonce) = sign_and_submit(api, &key, fee, TxKind::Transfer { to, amount })?;
            println!("submitted {} ({amount} to {to}, fee {fee}, nonce {nonce}): pending", id.to_hex());
            Ok(ExitCode::SUCCESS)
        }
        WalletCommand::Stake { key, amount, fee, api } => {
            let key = read_key(&key)?;
            let (id, nonce) = sign_and_submit(api, &key, fee, TxKind::Stake { amount })?;
            println!("submitted {} (stake {amount}, fee {fee}, nonce {nonce}): pending", id.to_hex());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Signs `kind` with `key` at the account's next nonce (as the node counts it, pending
/// transactions included) and submits it. Returns the transaction id and the nonce used.
pub fn sign_and_submit(api: SocketAddr, key: &SecretKey, fee: u64, kind: TxKind) -> Result<(Hash, u64), String> {
    Client::new(api).submit(key, fee, kind).map_err(|e| e.to_string())
}

/// A JSON request to the node at `addr`; a 4xx or 5xx answer becomes its `error` text.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Result<Value, String> {
    Client::new(addr).json(method, path, body).map_err(|e| e.to_string())
}

#[derive(Args)]
pub struct GenesisArgs {
    #[arg(long, default_value = "genesis.json")]
    out: PathBuf,
    /// Initial balance: ADDRESS=AMOUNT (repeatable).
    #[arg(long)]
    alloc: Vec<String>,
    #[arg(long, default_value = "devnet")]
    network: String,
    /// Target block interval.
    #[arg(long, default_value_t = 10_000)]
    block_time_ms: u64,
    /// Side of the filler matrices.
    #[arg(long, default_value_t = 512)]
    filler_size: u32,
    /// First block difficulty in expected multiply-adds, or `measured`: what this machine mines
    /// in half a block time (several nodes sharing its cores then make about one block per block
    /// time from the start). Default: what a 10 G multiply-adds/s machine does in one block time,
    /// so the first blocks do not race past lease deadlines while ASERT finds the real rate.
    #[arg(long)]
    initial_difficulty: Option<InitialDifficulty>,
    /// Blocks a posted result waits, open to a dispute, before it is paid (default 3). Counted
    /// in blocks, so it is shorter in time while the chain catches up on its schedule with
    /// blocks faster than its block time: a client must fetch, check and dispute within it.
    #[arg(long)]
    challenge_blocks: Option<u64>,
    /// Main memory (MiB) any provider is taken to have up to its claim without a memory
    /// challenge (default 1024).
    #[arg(long)]
    memory_floor_mib: Option<u64>,
    /// Blocks per memory epoch, and the window at its start in which providers fill and
    /// validators open (defaults 720 and 30: two hours and five minutes of 10 s blocks).
    #[arg(long)]
    memory_epoch_blocks: Option<u64>,
    #[arg(long)]
    memory_window_blocks: Option<u64>,
    /// Per mille of a trusted provider's one-replica ML results that the market has another
    /// provider check (1..=1000; default 50).
    #[arg(long)]
    audit_permille: Option<u64>,
}

/// `--initial-difficulty N|measured`.
#[derive(Clone, Copy, Debug)]
pub enum InitialDifficulty {
    Fixed(u64),
    Measured,
}

impl std::str::FromStr for InitialDifficulty {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "measured" => Ok(InitialDifficulty::Measured),
            n => n
                .parse()
                .map(InitialDifficulty::Fixed)
                .map_err(|_| format!("{s:?}: expected expected multiply-adds (a whole number) or `measured`")),
        }
    }
}

/// Filler multiply-adds per second this machine mines (every core, the chosen kernel), timed
/// over 300 ms of real mining passes on `size`³ filler.
pub(crate) fn measure_filler_rate(size: usize) -> Result<f64, String> {
    let (a, b) = ergon_chain::filler::filler_matrices(&Hash::ZERO, size);
    let commitment = ergon_pouw::WorkCommitment::compute(&a, &b).map_err(|e| e.to_string())?;
    let ch = ergon_pouw::Challenge::new(vec![], commitment, 1).map_err(|e| e.to_string())?;
    let t = std::time::Instant::now();
    let mut passes = 0;
    while t.elapsed() < std::time::Duration::from_millis(300) {
        ergon_pouw::mine(&ch, &a, &b, passes, Default::default()).map_err(|e| e.to_string())?;
        passes += 1;
    }
    Ok((size * size * size) as f64 * passes as f64 / t.elapsed().as_secs_f64())
}

pub fn genesis(args: GenesisArgs) -> CmdResult {
    let mut balances = std::collections::BTreeMap::new();
    for a in &args.alloc {
        let (addr, amount) = a.split_once('=').ok_or(format!("--alloc {a:?}: expected ADDRESS=AMOUNT"))?;
        addr.parse::<Address>().map_err(|e| e.to_string())?;
        let amount: u64 = amount.parse().map_err(|_| format!("--alloc {a:?}: amount is not a whole number"))?;
        balances.insert(addr.to_string(), amount);
    }
    let n = args.filler_size as u64;
    let params = ergon_chain::ChainParams {
        block_time_ms: args.block_time_ms,
        asert_half_life_ms: 20 * args.block_time_ms,
        filler_size: args.filler_size,
        initial_difficulty: match args.initial_difficulty {
            Some(InitialDifficulty::Fixed(d)) => d,
            Some(InitialDifficulty::Measured) => {
                let rate = measure_filler_rate(args.filler_size as usize)?;
                (rate * args.block_time_ms as f64 / 1000.0 * 0.5) as u64
            }
            None => args.block_time_ms.saturating_mul(10_000_000),
        }
        .max((n * n * n / 1000).max(1)),
        min_difficulty: (n * n * n / 1000).max(1),
        ..ergon_chain::ChainParams::devnet()
    };
    let params = ergon_chain::ChainParams {
        challenge_blocks: args.challenge_blocks.unwrap_or(params.challenge_blocks),
        memory_floor_mib: args.memory_floor_mib.unwrap_or(params.memory_floor_mib),
        memory_epoch_blocks: args.memory_epoch_blocks.unwrap_or(params.memory_epoch_blocks),
        memory_window_blocks: args.memory_window_blocks.unwrap_or(params.memory_window_blocks),
        audit_permille: args.audit_permille.unwrap_or(params.audit_permille),
        ..params
    };
    params.check().map_err(|e| e.to_string())?;
    let g = Genesis { network: args.network, time_ms: ergon_node::now_ms(), params, balances };
    let text = g.to_json();
    Genesis::from_json(&text).map_err(|e| e.to_string())?;
    std::fs::write(&args.out, text).map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!("genesis {} written to {}", g.hash(), args.out.display());
    Ok(ExitCode::SUCCESS)
}
