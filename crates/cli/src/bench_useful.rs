//! The useful-work share of a loaded devnet: one provider node (the only miner) and a client
//! node, with client processes keeping jobs in flight for a while. The provider mines filler
//! only when no leased shard is ready, so the share of its mined multiply-adds spent on paid jobs
//! measures how well the market keeps mining power on useful work.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ergon_chain::{ChainParams, Genesis};
use ergon_kernels::npy::write_npy;
use ergon_types::SecretKey;
use serde::Serialize;

use crate::devnet::{spawn_node, NodeSpec, Nodes};
use crate::matrix_cmds::random_matrix;
use crate::node_cmds::{http, sign_and_submit};

#[derive(Serialize)]
pub struct UsefulReport {
    pub seconds: u64,
    pub clients: usize,
    pub job_size: usize,
    pub jobs_completed: u64,
    pub macs_mined: u64,
    pub macs_mined_on_jobs: u64,
    /// Of the multiply-adds the network mined during the window, the share on paid jobs.
    pub useful_share: f64,
    /// Difficulty-weighted share of blocks mined on jobs, over the whole chain.
    pub chain_useful_block_fraction: f64,
}

fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes(&[n; 32])
}

use crate::bench_network::status;

pub fn measure(dir: &Path, seconds: u64, clients: usize, size: usize, base_port: u16) -> Result<UsefulReport, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let provider = key(1);
    let provider_file = dir.join("provider.key");
    std::fs::write(&provider_file, ergon_types::hex::encode(&provider.to_bytes())).map_err(|e| e.to_string())?;
    let mut balances = std::collections::BTreeMap::new();
    balances.insert(provider.public().address().to_string(), 1_000_000_000);
    for c in 0..clients {
        let k = key(10 + c as u8);
        std::fs::write(dir.join(format!("client{c}.key")), ergon_types::hex::encode(&k.to_bytes()))
            .map_err(|e| e.to_string())?;
        balances.insert(k.public().address().to_string(), 1_000_000_000_000);
    }
    let params = ChainParams {
        block_time_ms: 2000,
        asert_half_life_ms: 40_000,
        initial_difficulty: 20_000_000_000,
        ..ChainParams::small(256)
    };
    let genesis = Genesis { network: "bench-useful".into(), time_ms: ergon_node::now_ms(), params, balances };
    let gpath = dir.join("genesis.json");
    std::fs::write(&gpath, genesis.to_json()).map_err(|e| e.to_string())?;
    let apis: Vec<SocketAddr> = (0..2).map(|i| SocketAddr::from(([127, 0, 0, 1], base_port + i))).collect();
    let p2p: Vec<String> = (0..2).map(|i| format!("/ip4/127.0.0.1/tcp/{}", base_port + 100 + i)).collect();
    let mut nodes = Nodes(vec![]);
    for i in 0..2 {
        nodes.0.push(spawn_node(NodeSpec {
            dir,
            index: i,
            genesis: &gpath,
            api: apis[i],
            listen: p2p[i].clone(),
            peers: if i == 0 { vec![] } else { vec![p2p[0].clone()] },
            miner: None,
            provider_key: (i == 0).then_some(provider_file.as_path()),
            extra: vec![],
        })?);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(apis[1]).is_none_or(|s| s.peers != 1) {
        if Instant::now() > deadline {
            return Err("nodes did not connect".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let profile = crate::market_cmds::measure_hw(&Default::default())?;
    let offer = ergon_types::Offer {
        profile,
        price_per_gmac: 10,
        slots: 16,
        encryption_key: ergon_jobdata::encryption_public(&provider),
    };
    sign_and_submit(apis[0], &provider, 1, ergon_types::TxKind::RegisterProvider { offer, stake: 1_000_000 })?;
    while http(apis[1], "GET", "/providers", None)?["providers"].as_array().is_none_or(|p| p.is_empty()) {
        std::thread::sleep(Duration::from_millis(200));
    }
    for c in 0..clients {
        write_npy(&dir.join(format!("A{c}.npy")), &random_matrix(size, size, 126, 2 * c as u64 + 1)?)
            .map_err(|e| e.to_string())?;
        write_npy(&dir.join(format!("B{c}.npy")), &random_matrix(size, size, 126, 2 * c as u64 + 2)?)
            .map_err(|e| e.to_string())?;
    }
    let start = status(apis[0]).ok_or("provider node is down")?;
    let t0 = Instant::now();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let until = t0 + Duration::from_secs(seconds);
    let client_api = apis[1].to_string();
    let completed: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (exe, dir, api) = (exe.clone(), dir.to_path_buf(), client_api.clone());
                s.spawn(move || {
                    let mut done = 0u64;
                    while Instant::now() < until {
                        let p = |f: String| dir.join(f).to_string_lossy().into_owned();
                        let ok = Command::new(&exe)
                            .args(["job", "submit", "--key", &p(format!("client{c}.key"))])
                            .args([p(format!("A{c}.npy")), p(format!("B{c}.npy"))])
                            .args(["--max-price", "100", "--lease-blocks", "30", "--timeout-s", "300"])
                            .args(["--out", &p(format!("C{c}.npy")), "--no-wait-settlement", "--api", &api])
                            .output()
                            .is_ok_and(|o| o.status.success());
                        done += ok as u64;
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    let end = status(apis[0]).ok_or("provider node is down")?;
    let (mined, on_jobs) = (
        end.macs_mined.saturating_sub(start.macs_mined),
        end.macs_mined_on_jobs.saturating_sub(start.macs_mined_on_jobs),
    );
    drop(nodes);
    Ok(UsefulReport {
        seconds: t0.elapsed().as_secs(),
        clients,
        job_size: size,
        jobs_completed: completed,
        macs_mined: mined,
        macs_mined_on_jobs: on_jobs,
        useful_share: on_jobs as f64 / mined.max(1) as f64,
        chain_useful_block_fraction: end.useful_work_fraction,
    })
}
