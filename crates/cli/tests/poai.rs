//! Proof of AI through real processes (issue 11): a validator node runs the challenge engine
//! against three provider nodes over the network, and each provider answers by itself.
//! - Two honest providers are confirmed at their claims.
//! - One whose machine is slower than its offer (it answers 20× slower than it computes) is
//!   demoted below a job's throughput requirement, and does not get that job although it asks
//!   the least.
//! - The honest provider holding the job is killed: the validator's probes find it gone, its
//!   judgment of 0 releases the lease, and the other honest provider completes the job, long
//!   before the lease's own deadline.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{ergon, get, ok, provider, register_provider, wait, Net};

fn leaseholder(api: &str, job: &str) -> Option<String> {
    let j = get(api, &format!("/jobs/{job}"))?;
    let t = &j["tasks"][0];
    (t["state"] == "leased").then(|| t["detail"]["provider"].as_str().unwrap_or("").to_string())
}

#[test]
fn validators_confirm_honest_providers_demote_an_over_claim_and_fail_a_dead_one_over() {
    let dir = std::env::temp_dir().join(format!("ergon-poai-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut net = Net::new(dir);
    let (client, validator) = (net.key("client.key"), net.key("validator.key"));
    let (p1, p2, p3) = (net.key("p1.key"), net.key("p2.key"), net.key("p3.key"));
    let block_time_ms = 3000u64;
    let allocs = [
        (client.as_str(), "1000000000000"),
        (&validator, "100000000"),
        (&p1, "1000000000"),
        (&p2, "1000000000"),
        (&p3, "1000000000"),
    ];
    let block_time = block_time_ms.to_string();
    net.write_genesis(
        &allocs,
        &["--block-time-ms", &block_time, "--filler-size", "128", "--initial-difficulty", "measured"],
    );

    let v_key = net.p("validator.key");
    let v_api = net
        .node("validator", &["--mine", "--miner", &validator, "--validator-key", &v_key, "--challenge-every-s", "4"]);
    let client_api = net.node("client", &[]);
    let keys = [net.p("p1.key"), net.p("p2.key"), net.p("p3.key")];
    net.node("p1", &["--provider-key", &keys[0]]);
    net.node("p2", &["--provider-key", &keys[1], "--challenge-slowdown", "20"]);
    net.node("p3", &["--provider-key", &keys[2]]);
    ok(ergon(&["wallet", "stake", "--key", &v_key, "--amount", "10000000", "--api", &client_api]));
    // All three claim 8 G MAC/s; P2 asks least, then P3, then P1.
    for (key, price) in [(&keys[0], "300"), (&keys[1], "100"), (&keys[2], "200")] {
        register_provider(key, price, "1", &["--int8-gmacs", "8"], &client_api);
    }

    // 1. The honest providers are confirmed as claimed; P2 is demoted below 4 G MAC/s.
    let verified = |who: &str| provider(&v_api, who)["verified_gmacs"].as_u64().unwrap_or(0);
    let judged = |who: &str| provider(&v_api, who)["judgments"].as_array().is_some_and(|j| !j.is_empty());
    wait("P1 and P3 confirmed", Duration::from_secs(120), || verified(&p1) == 8 && verified(&p3) == 8);
    wait("P2 demoted below 4 G MAC/s", Duration::from_secs(120), || judged(&p2) && verified(&p2) < 4);
    let p2_state = provider(&v_api, &p2);
    let log = p2_state["decisions"].to_string();
    assert!(log.contains("answers slower than 8 G MAC/s"), "{log}");
    let p1_log = provider(&v_api, &p1)["decisions"].to_string();
    assert!(p1_log.contains("as claimed (sequential test passed)"), "{p1_log}");
    let engine = get(&v_api, "/poai").unwrap();
    assert!(engine["validator"]["answers_checked"].as_u64().unwrap() > 0, "{engine}");
    // `provider status` shows the verified figure and the validator's reason.
    wait("P1's status to show its confirmation", Duration::from_secs(60), || {
        let status = ok(ergon(&["provider", "status", &p1, "--api", &v_api]));
        status.contains("verified 8 by 1 validator") && status.contains("as claimed (sequential test passed)")
    });
    let p1_cost = get(&net.started["p1"].0, "/poai").unwrap();
    assert!(p1_cost["prover"]["rounds_answered"].as_u64().unwrap() >= 1, "{p1_cost}");

    // 2. A job needing 4 G MAC/s: P2 asks least but is not verified that fast; P3 takes it.
    ok(ergon(&["demo", "--size", "1536", "--dir", &net.p("job")]));
    let submit = Command::new(env!("CARGO_BIN_EXE_ergon"))
        .args([
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
            "--lease-blocks",
            "40",
            "--min-gmacs",
            "4",
            "--out",
            &net.p("job/C.npy"),
            "--no-wait-settlement",
            "--timeout-s",
            "240",
            "--api",
            &client_api,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let job = {
        let start = Instant::now();
        loop {
            let jobs = get(&client_api, "/jobs").unwrap_or_default();
            if let Some(id) = jobs["jobs"].as_array().and_then(|j| j.first()).and_then(|j| j["id"].as_str()) {
                break id.to_string();
            }
            assert!(start.elapsed() < Duration::from_secs(60), "the job never appeared");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("the lease", Duration::from_secs(60), || leaseholder(&v_api, &job).is_some());
    // The cheapest provider fast enough is P3 (P1 if P3 happened to miss a probe just then).
    let holder = leaseholder(&v_api, &job).unwrap();
    assert!(holder == p3 || holder == p1, "{holder} got a job it is not verified fast enough for");
    let (dead, other, other_name) = if holder == p3 { ("p3", &p1, "P1") } else { ("p1", &p3, "P3") };
    let outlook = provider(&v_api, &p2)["outlook"].to_string();
    assert!(outlook.contains("than validators have verified") || outlook.contains("no job is waiting"), "{outlook}");

    // 3. The leaseholder dies: found absent, the lease goes to the other honest provider, well
    //    before block `deadline`.
    net.kill(dead);
    let killed_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let (killed_at, killed_height) = (Instant::now(), get(&v_api, "/status").unwrap()["height"].as_u64().unwrap());
    let deadline =
        get(&v_api, &format!("/jobs/{job}")).unwrap()["tasks"][0]["detail"]["deadline"].as_u64().unwrap_or(0);
    wait(&format!("the job to move to {other_name}"), Duration::from_secs(60), || {
        leaseholder(&v_api, &job).as_deref() == Some(other.as_str())
    });
    let moved_s = killed_at.elapsed().as_secs_f64();
    // The block that leased it again, from the job's decisions.
    let decisions = get(&v_api, &format!("/jobs/{job}")).unwrap()["decisions"].clone();
    let moved_height = decisions
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["text"].as_str().is_some_and(|t| t.contains(&format!("leased to {other}"))))
        .filter_map(|d| d["height"].as_u64())
        .max()
        .unwrap();
    // When the validator found it missing (its engine's log), and how fast blocks came.
    let engine = get(&v_api, "/poai").unwrap();
    let missed_ms = engine["validator"]["judgments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["provider"] == holder.as_str() && j["verdict"] == "missed")
        .filter_map(|j| j["at_ms"].as_u64())
        .filter(|&t| t >= killed_ms)
        .min()
        .unwrap_or(killed_ms);
    let status = get(&v_api, "/status").unwrap();
    let first_ms = get(&v_api, "/blocks?from=1&limit=1").unwrap()["blocks"][0]["time_ms"].as_u64().unwrap_or(0);
    let mean_block_s = (status["tip_time_ms"].as_u64().unwrap_or(0).saturating_sub(first_ms)) as f64
        / 1e3
        / status["height"].as_u64().unwrap_or(2).saturating_sub(1).max(1) as f64;
    println!(
        "failover: {moved_s:.1} s and {} blocks after the kill, found missing after {:.1} s (block time {:.1} s, {mean_block_s:.1} s on average so far; the lease ran to block {deadline})",
        moved_height - killed_height,
        (missed_ms - killed_ms) as f64 / 1e3,
        block_time_ms as f64 / 1e3
    );
    assert!(moved_height < deadline, "released by absence, not by the lease's deadline");
    let log = get(&v_api, &format!("/jobs/{job}")).unwrap()["decisions"].to_string();
    assert!(log.contains("stopped answering the validators' challenges; lease released"), "{log}");
    let dead_state = provider(&v_api, &holder);
    assert_eq!(dead_state["absent"], true, "{dead_state}");
    assert_eq!(dead_state["status"], "active", "absence is no strike: {dead_state}");

    // The job completes on the other, verified by the client.
    let out = submit.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("verified (Freivalds)"), "{text}");
    ok(ergon(&["verify", &net.p("job/A.npy"), &net.p("job/B.npy"), &net.p("job/C.npy")]));

    // 4. P2 comes back answering with a wrong product (consistently committed and opened): the
    //    validator proves it on chain with P2's own signed answer, and P2 is slashed and
    //    demoted. A timing verdict never slashes; a proven wrong answer does, once.
    net.kill("p2");
    let bond_before = provider(&v_api, &p2)["bond"].as_u64().unwrap();
    net.node("p2-again", &["--provider-key", &keys[1], "--corrupt-challenges"]);
    wait("P2 slashed for a wrong answer", Duration::from_secs(90), || provider(&v_api, &p2)["status"] == "demoted");
    let p2_state = provider(&v_api, &p2);
    assert!(
        p2_state["slashed"].as_u64().unwrap() > 0 && p2_state["bond"].as_u64().unwrap() < bond_before,
        "{p2_state}"
    );
    let log = p2_state["decisions"].to_string();
    assert!(log.contains("a wrong answer to a challenge") && log.contains("is wrong"), "{log}");
}
