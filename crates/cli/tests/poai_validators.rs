//! Proof of AI with two validators over the network (its own test binary, so its processes
//! never share the 2 cores with `poai.rs`'s): they take the timed-round slots in turn, both
//! judge every provider, and both find a killed provider absent.

use std::time::Duration;

mod common;
use common::{ergon, get, ok, provider, register_provider, wait, Net};

/// Two validators over the network: they take the timed-round slots in turn, both judge every
/// provider, the chain holds both judgments (the verified figure is their stake-weighted
/// median), and both find a killed provider absent.
#[test]
fn two_validators_take_turns_and_both_judge_every_provider() {
    let dir = std::env::temp_dir().join(format!("ergon-poai2-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut net = Net::new(dir);
    let (va, vb) = (net.key("va.key"), net.key("vb.key"));
    let (p1, p2) = (net.key("p1.key"), net.key("p2.key"));
    net.write_genesis(
        &[(&va, "100000000"), (&vb, "100000000"), (&p1, "1000000000"), (&p2, "1000000000")],
        &["--block-time-ms", "3000", "--filler-size", "128", "--initial-difficulty", "measured"],
    );
    let (ka, kb) = (net.p("va.key"), net.p("vb.key"));
    let a_api = net.node("va", &["--mine", "--miner", &va, "--validator-key", &ka, "--challenge-every-s", "2"]);
    let b_api = net.node("vb", &["--validator-key", &kb, "--challenge-every-s", "2"]);
    let keys = [net.p("p1.key"), net.p("p2.key")];
    net.node("p1", &["--provider-key", &keys[0]]);
    net.node("p2", &["--provider-key", &keys[1]]);
    for key in [&ka, &kb] {
        ok(ergon(&["wallet", "stake", "--key", key, "--amount", "10000000", "--api", &a_api]));
    }
    for key in &keys {
        register_provider(key, "100", "1", &["--int8-gmacs", "8"], &a_api);
    }
    let judgments = |who: &str| -> Vec<(String, u64)> {
        get(&a_api, &format!("/providers/{who}")).unwrap_or_default()["judgments"]
            .as_array()
            .map(|j| {
                j.iter()
                    .map(|j| (j["validator"].as_str().unwrap_or("").to_string(), j["gmacs"].as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let both_at = |who: &str, g: u64| {
        let j = judgments(who);
        j.len() == 2 && j.iter().all(|(_, x)| *x == g)
    };
    wait("both validators confirm both providers", Duration::from_secs(120), || both_at(&p1, 8) && both_at(&p2, 8));
    assert_eq!(provider(&a_api, &p1)["verified_gmacs"], 8);
    // They took turns: each ran timed rounds, neither all of them.
    let rounds = |api: &str| get(api, "/poai").unwrap()["validator"]["rounds"].as_u64().unwrap_or(0);
    let (ra, rb) = (rounds(&a_api), rounds(&b_api));
    assert!(ra >= 1 && rb >= 1, "validator A ran {ra} timed rounds, B {rb}");
    // A provider dies: both validators judge it 0, and it is absent.
    net.kill("p2");
    wait("both validators find P2 gone", Duration::from_secs(60), || both_at(&p2, 0));
    assert_eq!(provider(&a_api, &p2)["absent"], true);
    assert!(both_at(&p1, 8), "the living provider is untouched: {:?}", judgments(&p1));
}
