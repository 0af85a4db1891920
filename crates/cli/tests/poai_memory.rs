//! Memory challenges through real processes (issue 11, `docs/poai.md` §7): a validator opens
//! two providers' memory fills once per memory epoch over the network.
//! - P1 holds its claimed 256 MiB: it answers in milliseconds and is shown at its claim.
//! - P2 claims as much but keeps half of its fill (`--memory-keep-percent 50`) and rebuilds
//!   the rest when opened, for real: late every time, it is judged to hold 0 after two epochs.
//! - A job needing 200 MiB goes to P1, although P2 asks less: matching uses the memory shown,
//!   and for P2 only the unchecked floor (64 MiB here).

use std::time::Duration;

mod common;
use common::{ergon, get, ok, provider, register_provider, wait, Net};

#[test]
fn a_provider_holding_its_memory_is_shown_and_one_keeping_half_is_not_and_gets_no_job_needing_it() {
    let dir = std::env::temp_dir().join(format!("ergon-poai-memory-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut net = Net::new(dir);
    let (client, validator) = (net.key("client.key"), net.key("validator.key"));
    let (p1, p2) = (net.key("p1.key"), net.key("p2.key"));
    let allocs =
        [(client.as_str(), "1000000000000"), (&validator, "100000000"), (&p1, "1000000000"), (&p2, "1000000000")];
    // 2 s blocks; a memory epoch every 16 blocks, its window the first 8 (fill in 4, open in
    // the next 4).
    net.write_genesis(
        &allocs,
        &[
            "--block-time-ms",
            "2000",
            "--filler-size",
            "128",
            "--initial-difficulty",
            "measured",
            "--memory-floor-mib",
            "64",
            "--memory-epoch-blocks",
            "16",
            "--memory-window-blocks",
            "8",
        ],
    );
    let v_key = net.p("validator.key");
    let v_api = net.node(
        "validator",
        &["--mine", "--miner", &validator, "--validator-key", &v_key, "--memory-deadline-ms", "400"],
    );
    let client_api = net.node("client", &[]);
    let keys = [net.p("p1.key"), net.p("p2.key")];
    net.node("p1", &["--provider-key", &keys[0]]);
    net.node("p2", &["--provider-key", &keys[1], "--memory-keep-percent", "50"]);
    ok(ergon(&["wallet", "stake", "--key", &v_key, "--amount", "10000000", "--api", &client_api]));
    for (key, price) in [(&keys[0], "300"), (&keys[1], "100")] {
        register_provider(key, price, "1", &["--int8-gmacs", "8", "--memory-mib", "256"], &client_api);
    }

    // 1. P1 is shown at its claim; P2 is judged to hold 0 (late twice in a row).
    let memory = |who: &str| provider(&v_api, who)["verified_memory_mib"].as_u64().unwrap_or(0);
    let judged_zero = |who: &str| {
        provider(&v_api, who)["memory_judgments"].as_array().is_some_and(|j| j.iter().any(|j| j["memory_mib"] == 0))
    };
    wait("P1's memory shown", Duration::from_secs(240), || memory(&p1) == 256);
    wait("P2's memory judged not shown", Duration::from_secs(240), || judged_zero(&p2));
    assert_eq!(memory(&p2), 64, "only the unchecked floor counts for P2");
    let engine = get(&v_api, "/poai").unwrap();
    let log = engine["validator"]["memory"]["judgments"].to_string();
    assert!(log.contains("holds its 256 MiB"), "{log}");
    assert!(log.contains("the deadline was 400 ms"), "{log}");
    let p1_cost = get(&net.started["p1"].0, "/poai").unwrap();
    let answered_ms = p1_cost["prover"]["memory"]["last_answer_ms"].as_f64().unwrap();
    let p2_cost = get(&net.started["p2"].0, "/poai").unwrap();
    let rebuilt_ms = p2_cost["prover"]["memory"]["last_answer_ms"].as_f64().unwrap();
    println!(
        "memory: the honest provider opened in {answered_ms:.1} ms, the one keeping half rebuilt for {rebuilt_ms:.0} ms (fills of 256 MiB: {:.1} s)",
        p1_cost["prover"]["memory"]["fill_seconds"].as_f64().unwrap_or(0.0)
            / p1_cost["prover"]["memory"]["fills"].as_f64().unwrap_or(1.0).max(1.0)
    );
    let status = ok(ergon(&["provider", "status", &p2, "--api", &v_api]));
    assert!(status.contains("claim not shown") && status.contains("matching uses 64 MiB"), "{status}");
    let decisions = provider(&v_api, &p2)["decisions"].to_string();
    assert!(decisions.contains("memory shown") || decisions.contains("MiB of memory"), "{decisions}");

    // 2. A job needing 200 MiB: P2 asks least, but only P1 showed that much.
    ok(ergon(&["demo", "--size", "256", "--dir", &net.p("job")]));
    let out = ok(ergon(&[
        "job",
        "submit",
        "--key",
        &net.p("client.key"),
        &net.p("job/A.npy"),
        &net.p("job/B.npy"),
        "--shards",
        "1",
        "--max-price",
        "1000000",
        "--min-memory-mib",
        "200",
        // Room for a memory fill (4 s for 256 MiB here) during the lease: this test is about
        // who gets the job, not about how fast it is done.
        "--lease-blocks",
        "20",
        "--out",
        &net.p("job/C.npy"),
        "--no-wait-settlement",
        "--timeout-s",
        "240",
        "--api",
        &client_api,
    ]));
    assert!(out.contains("verified (Freivalds)"), "{out}");
    let jobs = get(&client_api, "/jobs").unwrap();
    let job = jobs["jobs"][0]["id"].as_str().unwrap().to_string();
    let j = get(&v_api, &format!("/jobs/{job}")).unwrap();
    let log = j["decisions"].to_string();
    assert!(log.contains(&format!("leased to {p1}")) && !log.contains(&format!("leased to {p2}")), "{log}");
}
