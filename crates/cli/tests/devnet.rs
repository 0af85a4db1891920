//! `ergon devnet`: separate node processes on loopback find each other and agree on one chain.

use std::process::Command;

mod common;
use common::free_port_base;

#[test]
fn three_node_processes_connect_and_agree() {
    // A base port whose neighbours are very likely free.
    let base = free_port_base();
    let dir = std::env::temp_dir().join(format!("ergon-devnet-test-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_ergon"))
        .args(["devnet", "--filler-only", "--nodes", "3", "--block-time-s", "2", "--duration-s", "25"])
        .args(["--api-base-port", &base.to_string(), "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    // The final table: one row per node with height, tip and peers.
    // (The last one printed: the first can come before every node has dialled the others.)
    let lines: Vec<&str> = text.lines().collect();
    let last_header = lines.iter().rposition(|l| l.starts_with("node ")).unwrap_or(lines.len());
    let table: Vec<Vec<&str>> =
        lines.iter().skip(last_header + 1).take(3).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(table.len(), 3, "{text}");
    let heights: Vec<u64> = table.iter().map(|r| r[1].parse().unwrap()).collect();
    let peers: Vec<u64> = table.iter().map(|r| r[3].parse().unwrap()).collect();
    assert!(peers.iter().all(|&p| p == 2), "every node sees the other two: {text}");
    assert!(*heights.iter().min().unwrap() >= 2, "blocks were mined: {text}");
    assert!(
        heights.iter().max().unwrap() - heights.iter().min().unwrap() <= 1,
        "nodes agree within a block in flight: {text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
