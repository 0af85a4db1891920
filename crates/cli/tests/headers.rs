//! Headers first between real processes: two nodes that mined apart meet. The one behind
//! judges the other's branch from its headers, finds it heavier, fetches its blocks and
//! reorganises; the one ahead judges the lighter branch from its headers and fetches none of
//! its blocks (issue 10: bodies used to be fetched, one parent at a time, before any work was
//! known).

use std::time::Duration;

mod common;
use common::{ergon, get, ok, wait, Net};

#[test]
fn a_heavier_branch_is_fetched_after_its_headers_and_a_lighter_one_never() {
    let dir = std::env::temp_dir().join(format!("ergon-headers-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut net = Net::new(dir.clone());
    net.genesis = net.p("g.json");
    ok(ergon(&[
        "genesis",
        "--out",
        &net.genesis,
        "--block-time-ms",
        "1000",
        "--filler-size",
        "48",
        "--initial-difficulty",
        "200000",
    ]));
    let other = ok(ergon(&["key", "new", "--out", &net.p("other.key")])).split(' ').next().unwrap().to_string();
    // A mines 60 blocks alone, B 20 (to another address, so no block is shared).
    ok(ergon(&["mine-local", "--data-dir", &net.p("a"), "--genesis", &net.genesis, "--blocks", "60"]));
    let b_dir = net.p("b");
    ok(ergon(&["mine-local", "--data-dir", &b_dir, "--genesis", &net.genesis, "--blocks", "20", "--miner", &other]));

    let a = net.node("a", &[]);
    let a_tip = get(&a, "/status").unwrap()["tip"].as_str().unwrap().to_string();
    let b = net.node("b", &[]);
    wait("B to reorganise onto A's branch", Duration::from_secs(60), || {
        get(&b, "/status").is_some_and(|s| s["tip"].as_str() == Some(a_tip.as_str()))
    });
    let log = |name: &str| std::fs::read_to_string(net.dir.join(format!("{name}.log"))).unwrap_or_default();
    assert!(log("b").contains("has more work (judged from headers)"), "{}", log("b"));
    // A saw B's tip (on connecting) and judged B's branch from its headers alone.
    wait("A to judge B's branch", Duration::from_secs(30), || log("a").contains("has less work than the tip"));
    let status = get(&a, "/status").unwrap();
    assert_eq!(status["blocks_imported"].as_u64(), Some(0), "A fetched none of B's blocks: {status}");
    assert_eq!(status["tip"].as_str(), Some(a_tip.as_str()));
}
