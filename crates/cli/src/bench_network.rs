//! `ergon bench network`: block propagation to N node processes on loopback, and the time a fresh
//! node takes to sync a long chain from a peer. Real processes, real sockets, real validation.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use ergon_chain::{ChainParams, Genesis};
use serde::Serialize;

use crate::devnet::{spawn_node, NodeSpec, Nodes};
use crate::node_cmds::http;
use crate::CmdResult;

#[derive(Args)]
pub struct NetworkArgs {
    /// Nodes receiving the miner's blocks.
    #[arg(long, default_value_t = 8)]
    nodes: usize,
    /// Blocks whose propagation is measured.
    #[arg(long, default_value_t = 30)]
    blocks: u64,
    /// Length of the chain a fresh node then syncs.
    #[arg(long, default_value_t = 1000)]
    sync_blocks: u64,
    #[arg(long, default_value_t = 19_500)]
    base_port: u16,
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct NetworkReport {
    bench: &'static str,
    nodes: usize,
    blocks: u64,
    propagation_samples: usize,
    propagation_p50_ms: u64,
    propagation_p99_ms: u64,
    propagation_max_ms: u64,
    sync_blocks: u64,
    sync_seconds: f64,
}

pub(crate) fn genesis(block_time_ms: u64, filler: u32) -> Genesis {
    let params = ChainParams { block_time_ms, asert_half_life_ms: 20 * block_time_ms, ..ChainParams::small(filler) };
    Genesis { network: "bench".into(), time_ms: ergon_node::now_ms(), params, balances: Default::default() }
}

pub(crate) fn status(api: SocketAddr) -> Option<ergon_sdk::api::chain::Status> {
    ergon_sdk::Client::new(api).status().ok()
}

pub(crate) fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Result<(), String> {
    let t = Instant::now();
    while !f() {
        if t.elapsed() > limit {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Runs `f` in a fresh temporary directory for bench `name`, removed afterwards either way.
pub(crate) fn in_scratch_dir<T>(name: &str, f: impl FnOnce(&Path) -> Result<T, String>) -> Result<T, String> {
    let dir = std::env::temp_dir().join(format!("ergon-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let out = f(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn run(args: NetworkArgs) -> CmdResult {
    if !(2..=16).contains(&args.nodes) || args.blocks == 0 {
        return Err("need --nodes in 2..=16 and --blocks >= 1".into());
    }
    let report = in_scratch_dir("network", |dir| measure(&args, dir))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        println!(
            "block propagation from a miner to {} nodes on loopback ({} blocks, {} samples): p50 {} ms, p99 {} ms, max {} ms",
            report.nodes, report.blocks, report.propagation_samples, report.propagation_p50_ms, report.propagation_p99_ms, report.propagation_max_ms
        );
        println!("a fresh node synced {} blocks from a peer in {:.1} s", report.sync_blocks, report.sync_seconds);
    }
    Ok(ExitCode::SUCCESS)
}

fn measure(args: &NetworkArgs, dir: &Path) -> Result<NetworkReport, String> {
    // 1. Propagation: node 0 mines (1 s blocks on 128² filler), the others receive.
    let g = genesis(1000, 128);
    let gpath = dir.join("genesis.json");
    std::fs::write(&gpath, g.to_json()).map_err(|e| e.to_string())?;
    let api = |i: usize| -> SocketAddr { ([127, 0, 0, 1], args.base_port + i as u16).into() };
    let p2p = |i: usize| format!("/ip4/127.0.0.1/tcp/{}", args.base_port as usize + 100 + i);
    let mut nodes = Nodes(Vec::new());
    for i in 0..=args.nodes {
        let miner = (i == 0).then(|| ergon_types::Address::default().to_string());
        // Each node dials the miner and its predecessor: a connected mesh without a full clique.
        let peers = if i == 0 { vec![] } else { vec![p2p(0), p2p(i - 1)] };
        nodes.0.push(spawn_node(NodeSpec {
            dir,
            index: i,
            genesis: &gpath,
            api: api(i),
            listen: p2p(i),
            peers,
            miner,
            provider_key: None,
            extra: vec![],
        })?);
    }
    let target = args.blocks + 2;
    wait_until("the blocks to be mined", Duration::from_secs(30 + 3 * target), || {
        status(api(0)).is_some_and(|s| s.height >= target)
    })?;
    std::thread::sleep(Duration::from_secs(2)); // let the last block arrive everywhere
    let mut samples = Vec::new();
    // Skip the first blocks, mined before every node had connected.
    for h in 3..=target {
        let list = http(api(0), "GET", &format!("/blocks?from={h}&limit=1"), None)?;
        let id = list["blocks"][0]["id"].as_str().ok_or("block list")?.to_string();
        let mined = http(api(0), "GET", &format!("/blocks/{id}"), None)?["received_ms"].as_u64().ok_or("miner time")?;
        for i in 1..=args.nodes {
            if let Some(t) =
                http(api(i), "GET", &format!("/blocks/{id}"), None).ok().and_then(|v| v["received_ms"].as_u64())
            {
                samples.push(t.saturating_sub(mined));
            }
        }
    }
    drop(nodes);
    samples.sort_unstable();

    // 2. Sync: a chain of sync_blocks built by `mine-local`, served by one node, fetched by a new one.
    let sdir = dir.join("sync");
    std::fs::create_dir_all(&sdir).map_err(|e| e.to_string())?;
    let sg = genesis(5, 48);
    let spath = sdir.join("genesis.json");
    std::fs::write(&spath, sg.to_json()).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let built = std::process::Command::new(exe)
        .args(["mine-local", "--blocks", &args.sync_blocks.to_string(), "--genesis"])
        .arg(&spath)
        .arg("--data-dir")
        .arg(sdir.join("node-0"))
        .output()
        .map_err(|e| e.to_string())?;
    if !built.status.success() {
        return Err(format!("building the chain to sync failed: {}", String::from_utf8_lossy(&built.stderr)));
    }
    let server = spawn_node(NodeSpec {
        dir: &sdir,
        index: 0,
        genesis: &spath,
        api: api(0),
        listen: p2p(0),
        peers: vec![],
        miner: None,
        provider_key: None,
        extra: vec![],
    })?;
    let mut nodes = Nodes(vec![server]);
    wait_until("the serving node", Duration::from_secs(60), || status(api(0)).is_some())?;
    let t = Instant::now();
    nodes.0.push(spawn_node(NodeSpec {
        dir: &sdir,
        index: 1,
        genesis: &spath,
        api: api(1),
        listen: p2p(1),
        peers: vec![p2p(0)],
        miner: None,
        provider_key: None,
        extra: vec![],
    })?);
    wait_until("the fresh node to sync", Duration::from_secs(300), || {
        status(api(1)).is_some_and(|s| s.height >= args.sync_blocks)
    })?;
    let sync_seconds = t.elapsed().as_secs_f64();
    drop(nodes);

    Ok(NetworkReport {
        bench: "network",
        nodes: args.nodes,
        blocks: args.blocks,
        propagation_samples: samples.len(),
        propagation_p50_ms: percentile(&samples, 0.5),
        propagation_p99_ms: percentile(&samples, 0.99),
        propagation_max_ms: samples.last().copied().unwrap_or(0),
        sync_blocks: args.sync_blocks,
        sync_seconds,
    })
}
