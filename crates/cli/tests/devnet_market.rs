//! `ergon devnet` as a newcomer runs it: the whole market on one machine. A validator, two
//! providers and a client's jobs; within two minutes products and training jobs are verified and
//! paid, and most of the multiply-adds mined are clients' jobs, not filler.

use std::net::TcpListener;
use std::process::Command;

#[test]
fn the_devnet_runs_a_market_whose_mined_work_is_mostly_clients_jobs() {
    let base = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().clamp(20_000, 60_000);
    let dir = std::env::temp_dir().join(format!("ergon-devnet-market-test-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_ergon"))
        .args(["devnet", "--block-time-s", "2", "--duration-s", "120", "--api-base-port", &base.to_string()])
        .arg("--dir")
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("node 0 (validator)") && text.contains("node 2 (provider)"), "{text}");
    for kind in ["matmul 4096³ in 2 shards: verified; paid", "train an MLP on the digits: verified; paid"] {
        assert!(text.contains(kind), "no {kind:?} in {text}");
    }
    // The last market line: "…; NN% of the multiply-adds mined were clients' jobs (…"
    let last = text.lines().rev().find(|l| l.starts_with("market: ")).unwrap_or_else(|| panic!("{text}"));
    let share: f64 = last
        .split("% of the multiply-adds mined")
        .next()
        .and_then(|t| t.rsplit(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{last}"));
    println!("{last}");
    assert!(share >= 50.0, "most mined multiply-adds are on jobs: {last}");
    assert!(!text.contains("paid 0 to"), "no job is paid 0: {text}");
    let _ = std::fs::remove_dir_all(&dir);
}
