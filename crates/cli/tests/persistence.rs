//! A mining node killed with SIGKILL at random moments restarts where it was, nothing corrupted.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ergon_chain::{ChainParams, Genesis};

fn ergon() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ergon"))
}

/// Fast blocks (20 ms target) on small filler matrices, so many are committed between kills.
fn write_genesis(dir: &Path) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let params = ChainParams { block_time_ms: 20, asert_half_life_ms: 2_000, ..ChainParams::small(48) };
    let g = Genesis { network: "kill-test".into(), time_ms: now, params, balances: Default::default() };
    let path = dir.join("genesis.json");
    std::fs::write(&path, g.to_json()).unwrap();
    path.to_string_lossy().into_owned()
}

/// Height reported by reopening the store (which re-validates every stored block).
fn reopen(data: &str) -> u64 {
    let out = ergon().args(["mine-local", "--data-dir", data, "--blocks", "0"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "restart failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    let after = text.split("height ").nth(1).expect("height in output");
    after.split(' ').next().unwrap().parse().unwrap()
}

fn kill_cycles(name: &str, cycles: u64) {
    let dir = std::env::temp_dir().join(format!("ergon-kill-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let genesis = write_genesis(&dir);
    let data = dir.join("node").to_string_lossy().into_owned();
    let mut last = 0;
    for i in 0..cycles {
        let mut child = ergon()
            .args(["mine-local", "--data-dir", &data, "--genesis", &genesis, "--blocks", "1000000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Vary the moment of death (from mid-replay to mid-write), deterministically.
        std::thread::sleep(Duration::from_millis(150 + (i * 73) % 400));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let height = reopen(&data);
        assert!(height >= last, "cycle {i}: height went back from {last} to {height}");
        last = height;
    }
    assert!(last > 0, "no block was ever committed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_miner_restarts_where_it_was() {
    kill_cycles("quick", 5);
}

/// The soak of issue 3: `cargo test --release -p ergon-cli --test persistence -- --ignored`.
#[test]
#[ignore]
fn fifty_kill_cycles() {
    kill_cycles("soak", 50);
}
