//! `ergon bench api`: the API's latency with many concurrent clients while the node mines and
//! imports. Two mining node processes on loopback exchange blocks (each imports the other's);
//! `--clients` threads each keep one keep-alive connection to the first node's API and ask for
//! `/status` and `/blocks` in turn for `--seconds`. Latency is from writing a request to reading
//! its whole response.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use crate::bench_network::{genesis, in_scratch_dir, status, wait_until};
use crate::devnet::{spawn_node, NodeSpec, Nodes};
use crate::CmdResult;

#[derive(Args)]
pub struct ApiArgs {
    #[arg(long, default_value_t = 500)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 22_600)]
    base_port: u16,
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct ApiReport {
    bench: &'static str,
    clients: usize,
    seconds: u64,
    requests: usize,
    requests_per_second: f64,
    /// Answered 503 (load shed) or failed: counted, not in the latencies.
    shed: usize,
    failed: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    blocks_imported_meanwhile: u64,
}

/// One request on a keep-alive connection; the latency, or None (and the status) if not a 200.
fn ask(stream: &mut BufReader<TcpStream>, path: &str) -> Result<(Duration, u16), String> {
    let t = Instant::now();
    stream
        .get_mut()
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    stream.read_line(&mut line).map_err(|e| e.to_string())?;
    let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("no status line")?;
    let mut length = 0usize;
    loop {
        line.clear();
        stream.read_line(&mut line).map_err(|e| e.to_string())?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().map_err(|_| "bad content-length")?;
        }
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok((t.elapsed(), status))
}

pub fn run(args: ApiArgs) -> CmdResult {
    if args.clients == 0 || args.clients > 4000 || args.seconds == 0 || args.seconds > 600 {
        return Err("need --clients in 1..=4000 and --seconds in 1..=600".into());
    }
    let r = in_scratch_dir("api", |dir| measure(&args, dir))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?);
    } else {
        println!(
            "API under {} concurrent clients for {} s while mining and importing ({} blocks imported): {} requests ({:.0}/s), p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} shed (503), {} failed",
            r.clients, r.seconds, r.blocks_imported_meanwhile, r.requests, r.requests_per_second, r.p50_ms, r.p99_ms, r.max_ms, r.shed, r.failed
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn measure(args: &ApiArgs, dir: &std::path::Path) -> Result<ApiReport, String> {
    let g = genesis(1000, 128);
    let gpath = dir.join("genesis.json");
    std::fs::write(&gpath, g.to_json()).map_err(|e| e.to_string())?;
    let api = |i: usize| -> SocketAddr { ([127, 0, 0, 1], args.base_port + i as u16).into() };
    let p2p = |i: usize| format!("/ip4/127.0.0.1/tcp/{}", args.base_port as usize + 100 + i);
    let mut nodes = Nodes(Vec::new());
    for i in 0..2 {
        nodes.0.push(spawn_node(NodeSpec {
            dir,
            index: i,
            genesis: &gpath,
            api: api(i),
            listen: p2p(i),
            peers: if i == 0 { vec![] } else { vec![p2p(0)] },
            miner: Some(ergon_types::Address::default().to_string()),
            provider_key: None,
            extra: vec![],
        })?);
    }
    wait_until("the nodes to start mining", Duration::from_secs(60), || status(api(0)).is_some_and(|s| s.height >= 2))?;
    let imported = || status(api(0)).map(|s| s.blocks_imported);
    let imported_before = imported().unwrap_or(0);
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let results: Vec<(Vec<Duration>, usize, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.clients)
            .map(|c| {
                s.spawn(move || {
                    let (mut lat, mut shed, mut failed) = (Vec::new(), 0, 0);
                    let mut conn: Option<BufReader<TcpStream>> = None;
                    let mut i = c;
                    while Instant::now() < until {
                        let stream = match conn.as_mut() {
                            Some(s) => s,
                            None => match TcpStream::connect(api(0)) {
                                Ok(s) => {
                                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                                    conn.insert(BufReader::new(s))
                                }
                                Err(_) => {
                                    failed += 1;
                                    std::thread::sleep(Duration::from_millis(50));
                                    continue;
                                }
                            },
                        };
                        let path = if i % 2 == 0 { "/status" } else { "/blocks" };
                        i += 1;
                        match ask(stream, path) {
                            Ok((d, 200)) => lat.push(d),
                            Ok((_, 503)) => shed += 1,
                            Ok(_) | Err(_) => {
                                failed += 1;
                                conn = None;
                            }
                        }
                    }
                    (lat, shed, failed)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let imported_after = imported().unwrap_or(imported_before);
    drop(nodes);
    let mut all: Vec<f64> = results.iter().flat_map(|r| r.0.iter().map(|d| d.as_secs_f64() * 1e3)).collect();
    all.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| if all.is_empty() { f64::NAN } else { all[((all.len() - 1) as f64 * p).round() as usize] };
    Ok(ApiReport {
        bench: "api",
        clients: args.clients,
        seconds: args.seconds,
        requests: all.len(),
        requests_per_second: all.len() as f64 / args.seconds as f64,
        shed: results.iter().map(|r| r.1).sum(),
        failed: results.iter().map(|r| r.2).sum(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: all.last().copied().unwrap_or(f64::NAN),
        blocks_imported_meanwhile: imported_after.saturating_sub(imported_before),
    })
}
