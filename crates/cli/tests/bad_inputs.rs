//! A provider is never struck for a client's bad input (issue 12): a real provider node leases a
//! shard whose client uploads inputs that do not match the job's commitments (a client that
//! skipped the SDK's checks). The provider refuses them, gives the lease back before its
//! deadline, and the chain records no failure against it; the client pays the wasted-lease fee.

use std::time::Duration;

use ergon_jobdata::{name, Part};
use ergon_kernels::npy::{encode_npy, write_npy};
use ergon_kernels::MatI8;
use ergon_types::{Hash, SecretKey};

mod common;
use common::{ergon, get, ok, provider, register_provider, wait, Net};

fn matrix(seed: i64, rows: usize, cols: usize) -> MatI8 {
    MatI8::from_fn(rows, cols, |i, j| ((i as i64 * 31 + j as i64 * 17 + seed) % 253 - 126) as i8).unwrap()
}

#[test]
fn a_provider_refusing_inputs_that_do_not_match_is_not_struck() {
    let dir = std::env::temp_dir().join(format!("ergon-bad-inputs-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut net = Net::new(dir);
    let (client, p1, miner) = (net.key("client.key"), net.key("p1.key"), net.key("miner.key"));
    net.write_genesis(
        &[(&client, "1000000000000"), (&p1, "1000000000")],
        &["--block-time-ms", "1000", "--filler-size", "128", "--initial-difficulty", "measured"],
    );
    let api = net.node("miner", &["--mine", "--miner", &miner]);
    let p1_key = net.p("p1.key");
    net.node("p1", &["--provider-key", &p1_key]);
    register_provider(&p1_key, "100", "1", &[], &api);
    wait("the registration", Duration::from_secs(60), || provider(&api, &p1)["status"] == "active");

    // The job names A and B; the client never runs the SDK's follow, and uploads other
    // matrices under the leased shard's input names, sealed and signed as a client would.
    write_npy(&net.dir.join("A.npy"), &matrix(1, 64, 48)).unwrap();
    write_npy(&net.dir.join("B.npy"), &matrix(2, 48, 32)).unwrap();
    let submitted = ok(ergon(&[
        "job",
        "submit",
        "--key",
        &net.p("client.key"),
        &net.p("A.npy"),
        &net.p("B.npy"),
        "--max-price",
        "1000",
        // Long enough that the provider sees the wrong inputs before it gives the lease back
        // (at half the lease) even while the first blocks come fast.
        "--lease-blocks",
        "40",
        "--api",
        &api,
    ]));
    let id = submitted.split_whitespace().nth(3).unwrap().to_string();
    let job = Hash::from_hex(&id).unwrap();
    let leased = || get(&api, &format!("/jobs/{id}")).is_some_and(|j| j["tasks"][0]["state"] == "leased");
    wait("the lease", Duration::from_secs(60), leased);
    let key_hex = std::fs::read_to_string(net.p("client.key")).unwrap();
    let client_key = SecretKey::from_bytes(&ergon_types::hex::decode_array::<32>(key_hex.trim()).unwrap());
    let holder = p1.parse().unwrap();
    let sdk = ergon_sdk::Client::new(&api);
    let recipient = sdk.provider_key(&holder).unwrap();
    for (part, wrong) in [(Part::InputA, matrix(9, 64, 48)), (Part::InputB, matrix(8, 48, 32))] {
        sdk.upload_sealed(&client_key, &recipient, name(&job, 0, 0, &holder, part), &encode_npy(&wrong)).unwrap();
    }

    // The provider refuses them and gives the lease back: no failure, no strike, still active.
    let given_back = || {
        get(&api, &format!("/jobs/{id}")).is_some_and(|j| {
            j["decisions"].to_string().contains(&format!("lease given back by {p1}, no usable inputs"))
        })
    };
    let started = std::time::Instant::now();
    while !given_back() {
        let j = get(&api, &format!("/jobs/{id}")).unwrap_or_default();
        assert!(started.elapsed() < Duration::from_secs(60), "no give-back: {}", j["decisions"]);
        std::thread::sleep(Duration::from_millis(200));
    }
    let p = provider(&api, &p1);
    assert_eq!((p["failed"].as_u64(), p["status"].as_str()), (Some(0), Some("active")), "{p}");
    assert_eq!(p["leases_given_back"], 1, "{p}");
    let log = std::fs::read_to_string(net.p("p1.log")).unwrap();
    assert!(log.contains("refusing these inputs"), "the provider said why: {log:.3000}");
    let text = ok(ergon(&["provider", "status", &p1, "--api", &api]));
    assert!(text.contains("no usable inputs reached it; no strike"), "{text}");
}
