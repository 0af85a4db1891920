//! Storage that tells the truth (issue 10): a node whose disk stops taking writes (here a
//! file-size limit lowered on the running process, which fails writes past it with EFBIG, as a
//! full disk fails them with ENOSPC) stops accepting and mining blocks, says why on `/status`,
//! and resumes by itself once writes succeed again; its store then holds every block it served,
//! and it never died.
//! Needs `prlimit` (util-linux); skipped with a message without it.

use std::process::Command;
use std::time::Duration;

mod common;
use common::{ergon, get, ok, wait, Net};

fn prlimit(pid: u32, fsize: &str) -> bool {
    Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={fsize}")])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_node_whose_disk_fills_stops_with_a_reason_and_resumes_when_writes_succeed_again() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("ergon-storage-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut net = Net::new(dir);
    net.genesis = net.p("g.json");
    ok(ergon(&["genesis", "--out", &net.genesis, "--block-time-ms", "200", "--filler-size", "96"]));
    let api = net.node("n", &["--mine"]);
    let height = || get(&api, "/status").and_then(|s| s["height"].as_u64()).unwrap_or(0);
    let storage_error = || get(&api, "/status").map(|s| s["storage_error"].clone());
    wait("a few blocks", Duration::from_secs(60), || height() >= 5);
    let pid = net.pid("n").unwrap();
    let size = std::fs::metadata(net.dir.join("n/chain.redb")).unwrap().len();
    // Writes past a quarter of the file now fail: the soft limit (raising it back needs no
    // privilege).
    assert!(prlimit(pid, &format!("{}:unlimited", size / 4)), "prlimit could not lower the limit");
    wait("the store to refuse a write", Duration::from_secs(30), || {
        storage_error().is_some_and(|e| e.as_str().is_some_and(|e| e.contains("File too large")))
    });
    // (While the limit stands some writes still land below it, so the node may resume and stop
    // again: what matters is that it never serves a block it could not store, checked below.)
    let stuck = height();
    assert!(prlimit(pid, "unlimited:unlimited"));
    wait("the node to resume", Duration::from_secs(30), || {
        storage_error().is_some_and(|e| e.is_null()) && height() > stuck + 2
    });
    let served = height();
    // SIGTERM, then the store holds at least every block the node served.
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    wait("the node to stop", Duration::from_secs(20), || get(&api, "/status").is_none());
    net.kill("n");
    let reopened = ok(ergon(&["mine-local", "--data-dir", &net.p("n"), "--blocks", "0"]));
    let stored: u64 =
        reopened.split("height ").nth(1).and_then(|t| t.split([' ', ',']).next()).and_then(|h| h.parse().ok()).unwrap();
    assert!(stored >= served, "served {served} but only {stored} stored: {reopened}");
}
