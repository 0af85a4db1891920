//! `ergon devnet`: a local network of separate node processes on loopback, with a live table.
//! By default it runs the whole market ([`market`]): a validator, providers and a client load;
//! `--filler-only` runs miners alone, as a plain blockchain.

mod market;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use ergon_chain::{ChainParams, Genesis};
use ergon_sdk::api::chain::Status;
use ergon_types::SecretKey;
use indicatif::{ProgressBar, ProgressStyle};

use crate::CmdResult;

#[derive(Args)]
pub struct DevnetArgs {
    /// Node processes to start: a validator and providers (or, with `--filler-only`, miners).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// API of node i listens on this port + i; its peer-to-peer port is this + 100 + i.
    #[arg(long, default_value_t = 8080)]
    api_base_port: u16,
    /// Target block interval.
    #[arg(long, default_value_t = 4)]
    block_time_s: u64,
    /// Where genesis, data and logs go (cleared at start).
    #[arg(long, default_value = "ergon-devnet")]
    dir: PathBuf,
    /// Stop by itself after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration_s: Option<u64>,
    /// Only miners mining filler blocks: no validator, providers or jobs.
    #[arg(long)]
    filler_only: bool,
}

/// Stops every child when dropped, so no node outlives the devnet (even on an error).
pub struct Nodes(pub Vec<Child>);

/// One `ergon node` process: data in `dir/node-{i}`, log in `dir/node-{i}.log`.
pub struct NodeSpec<'a> {
    pub dir: &'a std::path::Path,
    pub index: usize,
    pub genesis: &'a std::path::Path,
    pub api: SocketAddr,
    pub listen: String,
    pub peers: Vec<String>,
    pub miner: Option<String>,
    /// Run as a compute provider with this key file (implies mining with its address).
    pub provider_key: Option<&'a std::path::Path>,
    /// More `ergon node` arguments.
    pub extra: Vec<String>,
}

pub fn spawn_node(spec: NodeSpec<'_>) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let i = spec.index;
    let log = std::fs::File::create(spec.dir.join(format!("node-{i}.log"))).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.args(["node", "--genesis"]).arg(spec.genesis);
    cmd.arg("--data-dir").arg(spec.dir.join(format!("node-{i}")));
    cmd.args(["--api", &spec.api.to_string(), "--listen", &spec.listen]);
    if let Some(m) = &spec.miner {
        cmd.args(["--mine", "--miner", m]);
    }
    if let Some(k) = spec.provider_key {
        cmd.arg("--provider-key").arg(k);
    }
    for p in &spec.peers {
        cmd.args(["--peer", p]);
    }
    cmd.args(&spec.extra);
    cmd.stdin(Stdio::null()).stdout(log.try_clone().map_err(|e| e.to_string())?).stderr(log);
    cmd.spawn().map_err(|e| format!("starting node {i}: {e}"))
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &self.0 {
            let _ = Command::new("kill").args(["-INT", &c.id().to_string()]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for c in &mut self.0 {
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn run(args: DevnetArgs) -> CmdResult {
    if !(1..=16).contains(&args.nodes) || args.block_time_s == 0 {
        return Err("need --nodes in 1..=16 and --block-time-s >= 1".into());
    }
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let filler = 256usize;
    // All nodes share this machine's cores: one block every block_time needs about this much.
    let rate = crate::node_cmds::measure_filler_rate(filler)?;
    let duty = if args.filler_only { 1.0 } else { market::FILLER_DUTY_PERCENT as f64 / 100.0 };
    let difficulty = (rate * duty * args.block_time_s as f64 * 0.5) as u64;
    let market = !args.filler_only;
    if market && args.nodes < 2 {
        return Err("the market needs --nodes 2 or more (a validator and a provider); --filler-only runs one".into());
    }
    let roles = market::Roles::new(args.nodes);
    let keys: Vec<SecretKey> = if market {
        std::iter::once(roles.validator.clone()).chain(roles.providers.iter().cloned()).collect()
    } else {
        (0..args.nodes).map(|i| SecretKey::from_bytes(&[i as u8 + 1; 32])).collect()
    };
    let params = ChainParams {
        block_time_ms: args.block_time_s * 1000,
        asert_half_life_ms: 20 * args.block_time_s * 1000,
        filler_size: filler as u32,
        initial_difficulty: difficulty.max(1_000_000),
        min_difficulty: 1_000_000,
        ..ChainParams::devnet()
    };
    let (min_stake, min_bond) = (params.min_validator_stake, params.min_provider_stake);
    let mut balances: std::collections::BTreeMap<String, u64> =
        keys.iter().map(|k| (k.public().address().to_string(), 1_000_000_000)).collect();
    if market {
        // The validator pays its audits; the client its jobs; the user's key is the newcomer's.
        for k in [&roles.validator, &roles.client, &roles.user] {
            balances.insert(k.public().address().to_string(), 1_000_000_000_000);
        }
    }
    let genesis = Genesis { network: "devnet".into(), time_ms: ergon_node::now_ms(), params, balances };
    let genesis_path = args.dir.join("genesis.json");
    std::fs::write(&genesis_path, genesis.to_json()).map_err(|e| e.to_string())?;
    let (validator_key, provider_keys) = if market { roles.write(&args.dir)? } else { (PathBuf::new(), vec![]) };
    println!(
        "devnet {}: {} nodes{}, {} s blocks, first difficulty {:.2e} multiply-adds (this machine mines {:.1} G/s); files in {}",
        &genesis.hash().to_hex()[..12],
        args.nodes,
        if market { format!(" (a validator and {} providers)", args.nodes - 1) } else { String::new() },
        args.block_time_s,
        difficulty as f64,
        rate / 1e9,
        args.dir.display()
    );

    // The first thing a newcomer opens: every node serves the dashboard; node 0's is printed.
    println!(
        "dashboard: http://{}/  (open it in a browser; every node's API port serves one)",
        SocketAddr::from(([127, 0, 0, 1], args.api_base_port))
    );
    let mut nodes = Nodes(Vec::new());
    let mut apis = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let api: SocketAddr = ([127, 0, 0, 1], args.api_base_port + i as u16).into();
        let p2p = |j: usize| format!("/ip4/127.0.0.1/tcp/{}", args.api_base_port as usize + 100 + j);
        let role = match (market, i) {
            (false, _) => "miner",
            (true, 0) => "validator",
            (true, _) => "provider",
        };
        let (miner, provider_key, extra) = match role {
            // The validator does not mine: the providers' idle time mines the filler blocks,
            // and their leases the job blocks.
            "validator" => {
                let v = validator_key.to_string_lossy().into_owned();
                (None, None, vec!["--validator-key".to_string(), v, "--audit-every-s".into(), "60".into()])
            }
            "provider" => {
                let duty = market::FILLER_DUTY_PERCENT.to_string();
                (None, Some(provider_keys[i - 1].as_path()), vec!["--filler-duty-percent".into(), duty])
            }
            _ => (Some(key.public().address().to_string()), None, vec![]),
        };
        nodes.0.push(spawn_node(NodeSpec {
            dir: &args.dir,
            index: i,
            genesis: &genesis_path,
            api,
            listen: p2p(i),
            peers: (0..i).map(p2p).collect(),
            miner,
            provider_key,
            extra,
        })?);
        apis.push(api);
        println!(
            "  node {i} ({role}): API http://{api}  p2p {}  log {}",
            p2p(i),
            args.dir.join(format!("node-{i}.log")).display()
        );
    }
    let client = ergon_sdk::Client::new(apis[0]);
    let mut jobs = None;

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(ergon_node::shutdown_signal());
                stop.store(true, Ordering::Relaxed);
            }
        });
    }
    let started = Instant::now();
    let bar = ProgressBar::new(3);
    bar.set_style(
        ProgressStyle::with_template("waiting for the first blocks [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let tty = std::io::stdout().is_terminal();
    let mut drawn = 0;
    let mut last_print = Instant::now() - Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) && args.duration_s.is_none_or(|d| started.elapsed() < Duration::from_secs(d)) {
        for (i, c) in nodes.0.iter_mut().enumerate() {
            if let Ok(Some(status)) = c.try_wait() {
                return Err(format!(
                    "node {i} exited ({status}); see {}",
                    args.dir.join(format!("node-{i}.log")).display()
                ));
            }
        }
        let statuses: Vec<Option<Status>> = apis.iter().map(|a| ergon_sdk::Client::new(a).status().ok()).collect();
        let height = statuses.iter().flatten().map(|s| s.height).max().unwrap_or(0);
        // Once node 0 sees every other node, so its transactions reach the miners.
        let connected = statuses[0].as_ref().map_or(0, |s| s.peers) + 1 >= args.nodes;
        if market && jobs.is_none() && connected {
            market::set_up(&client, &roles, min_stake, min_bond)?;
            println!(
                "  client {}: two products, a training and an inference job in flight at all times",
                roles.client.public().address()
            );
            println!(
                "  your key: {} ({}, funded): `ergon job submit --key` it, or `Client(url, key=…)` in clients/python",
                args.dir.join("user.key").display(),
                roles.user.public().address()
            );
            jobs = Some((
                market::start_client(client.clone(), roles.client.clone(), stop.clone()),
                market::Tally::default(),
            ));
        }
        let mut finished = vec![];
        if let Some((reports, tally)) = jobs.as_mut() {
            while let Ok(r) = reports.try_recv() {
                finished.push(tally.record(&r));
            }
        }
        if !bar.is_finished() {
            bar.set_position(height.min(3));
            if height >= 3 {
                bar.finish_and_clear();
            }
        }
        if !finished.is_empty() {
            // Job lines scroll above the table: clear it, print them, draw it again below.
            if tty && drawn > 0 {
                print!("\x1b[{drawn}A\x1b[J");
                drawn = 0;
            }
            for line in &finished {
                println!("{line}");
            }
        }
        if bar.is_finished() && (tty || !finished.is_empty() || last_print.elapsed() >= Duration::from_secs(10)) {
            let mut table = render(&statuses, started.elapsed().as_secs(), tty);
            if let Some((_, tally)) = &jobs {
                let clear = if tty { "\x1b[K" } else { "" };
                table += &format!("{}{clear}\n{}{clear}\n", tally.render(&statuses), market::energy_line(&statuses));
            }
            if tty && drawn > 0 {
                print!("\x1b[{drawn}A");
            }
            print!("{table}");
            let _ = std::io::stdout().flush();
            drawn = table.lines().count();
            last_print = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    bar.finish_and_clear();
    stop.store(true, Ordering::Relaxed);
    let statuses: Vec<Option<Status>> = apis.iter().map(|a| ergon_sdk::Client::new(a).status().ok()).collect();
    print!("{}", render(&statuses, started.elapsed().as_secs(), false));
    if let Some((reports, mut tally)) = jobs {
        while let Ok(r) = reports.try_recv() {
            println!("{}", tally.record(&r));
        }
        println!("{}", tally.render(&statuses));
        println!("{}", market::energy_line(&statuses));
    }
    println!("stopping {} nodes…", nodes.0.len());
    drop(nodes);
    println!("stopped; data and logs kept in {}", args.dir.display());
    Ok(ExitCode::SUCCESS)
}

fn render(statuses: &[Option<Status>], secs: u64, tty: bool) -> String {
    // Erase to end of line when redrawing in place on a terminal.
    let el = if tty { "\x1b[K" } else { "" };
    let mut out = format!(
        "{:<6} {:>7} {:<14} {:>6} {:>7} {:>8} {:>12}{el}\n",
        "node", "height", "tip", "peers", "mined", "mempool", "G mult-add/s"
    );
    for (i, s) in statuses.iter().enumerate() {
        match s {
            Some(s) => {
                out += &format!(
                    "{:<6} {:>7} {:<14} {:>6} {:>7} {:>8} {:>12.2}{el}\n",
                    i,
                    s.height,
                    &s.tip[..12.min(s.tip.len())],
                    s.peers,
                    s.blocks_mined,
                    s.mempool,
                    s.mining_rate_macs_per_s / 1e9
                )
            }
            None => out += &format!("{i:<6} (not answering yet){el}\n"),
        }
    }
    out += &format!("{secs} s running; Ctrl-C stops every node{el}\n");
    out
}
