//! Hidden audits through real processes (issue 11, `docs/poai.md` §10): a validator rents the
//! market with small training jobs whose answer it computed first.
//! - P1 earns trust with three products a client checked (and passes the audits it serves).
//! - P2 arrives cheaper and posts wrong results (`--corrupt-results`): the audit it wins is
//!   doubted on chain, P1 checks it, P2 is not paid, is slashed, and the job settles on the
//!   right model.

use std::time::Duration;

mod common;
use common::{ergon, get, ok, provider, register_provider, wait, Net};

#[test]
fn a_validators_hidden_audit_catches_a_provider_posting_wrong_results_and_a_trusted_check_slashes_it() {
    let dir = std::env::temp_dir().join(format!("ergon-poai-audit-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut net = Net::new(dir);
    let (client, validator) = (net.key("client.key"), net.key("validator.key"));
    let (p1, p2) = (net.key("p1.key"), net.key("p2.key"));
    let allocs =
        [(client.as_str(), "1000000000000"), (&validator, "1000000000000"), (&p1, "1000000000"), (&p2, "1000000000")];
    net.write_genesis(
        &allocs,
        // The lowest sampling rate: a sampled check of trusted P1's audit result, taken by P2
        // as it joins, would leave that audit with two disagreeing results and no third
        // provider to settle them (at 50‰ it happened about once in twenty runs).
        &[
            "--block-time-ms",
            "1000",
            "--filler-size",
            "128",
            "--initial-difficulty",
            "measured",
            "--audit-permille",
            "1",
        ],
    );
    let v_key = net.p("validator.key");
    let v_api =
        net.node("validator", &["--mine", "--miner", &validator, "--validator-key", &v_key, "--audit-every-s", "4"]);
    let client_api = net.node("client", &[]);
    let keys = [net.p("p1.key"), net.p("p2.key")];
    net.node("p1", &["--provider-key", &keys[0]]);
    ok(ergon(&["wallet", "stake", "--key", &v_key, "--amount", "10000000", "--api", &client_api]));
    // Claims well under these machines' speed, so challenges confirm them under any load.
    let claim = ["--int8-gmacs", "4"];
    register_provider(&keys[0], "200", "2", &claim, &client_api);

    // 1. P1 earns trust: three products its client verified.
    ok(ergon(&["demo", "--size", "256", "--dir", &net.p("small")]));
    let (a, b) = (net.p("small/A.npy"), net.p("small/B.npy"));
    for i in 0..3 {
        let out = net.p(&format!("small/C{i}.npy"));
        let text = ok(ergon(&[
            "job",
            "submit",
            "--key",
            &net.p("client.key"),
            &a,
            &b,
            "--max-price",
            "1000000",
            // Long enough that P1's first deliveries outlast a loaded CI machine: with 12 blocks
            // a lease once closed unanswered while P1's node was busy, and with P1 the only
            // provider the job then waited out its timeout.
            "--lease-blocks",
            "30",
            "--out",
            &out,
            "--timeout-s",
            "120",
            "--api",
            &client_api,
        ]));
        assert!(text.contains("verified (Freivalds)"), "{text}");
    }
    wait("P1 trusted", Duration::from_secs(90), || provider(&v_api, &p1)["probation"].is_null());

    // 2. P2 arrives cheaper and dishonest: the next audit goes to it, is doubted, P1 checks it.
    net.node("p2", &["--provider-key", &keys[1], "--corrupt-results"]);
    register_provider(&keys[1], "100", "2", &claim, &client_api);
    let audits = || get(&v_api, "/poai").map(|v| v["validator"]["audits"].clone()).unwrap_or_default();
    wait("an audit catches P2", Duration::from_secs(240), || {
        audits()["records"].as_array().is_some_and(|r| {
            r.iter().any(|r| {
                r["outcome"] == "caught"
                    && r["provider"] == p2.as_str()
                    && r["detail"].as_str().is_some_and(|d| d.contains("settled on the right result"))
            })
        })
    });
    let log = audits();
    let caught = log["records"].as_array().unwrap().iter().find(|r| r["outcome"] == "caught").unwrap().clone();
    let p2_state = provider(&v_api, &p2);
    assert!(p2_state["slashed"].as_u64().unwrap() > 0, "{p2_state}");
    assert_eq!(p2_state["status"], "demoted", "{p2_state}");
    let job = caught["job"].as_str().unwrap();
    let j = get(&v_api, &format!("/jobs/{job}")).unwrap();
    let tasks = j["tasks"].as_array().unwrap();
    assert_eq!((tasks[0]["state"].as_str(), tasks[1]["state"].as_str()), (Some("cancelled"), Some("settled")), "{j}");
    assert_eq!(tasks[1]["detail"]["provider"], p1.as_str(), "the trusted provider checked it: {j}");
    assert!(tasks[1]["doubt"].is_string(), "{j}");
    let decisions = j["decisions"].to_string();
    assert!(decisions.contains("the client doubts the posted result"), "{decisions}");
    let text = ok(ergon(&["provider", "status", &p2, "--api", &v_api]));
    assert!(text.contains("which the client expected and check replica 1 computed independently"), "{text}");
    // The audit account is not the validator's, and P1's audits passed.
    assert_ne!(log["account"], validator.as_str());
    println!("audits: {} passed, {} caught; {}", log["passed"], log["caught"], caught["detail"]);
    // P2's node started before its registration was in a block: it said so, then saw it.
    let p2_log = std::fs::read_to_string(net.p("p2.log")).unwrap();
    let (warned, seen) =
        (p2_log.find("is not a registered provider"), p2_log.find("registered as a provider: taking leases"));
    assert!(warned.is_some() && warned < seen, "{p2_log:.2000}");
}
