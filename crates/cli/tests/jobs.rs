//! The compute market end to end with real processes on loopback: a validator that mines, two
//! provider nodes, and a client node. A 1024³ matmul completes and verifies, with balances moving
//! exactly as the chain's receipts say; a one-replica training job of a provider on probation is
//! checked by the other provider; a training job replicated on both providers gives the
//! same model bytes from each, reaching the accuracy goal on held-out digits; a provider killed while it holds a lease loses the job to
//! the other, which completes it; a provider that posts a wrong product is caught by the client's
//! Freivalds check, disputed, slashed, and the job still completes.

mod common;
use common::{ergon, get, ok, MarketNet, Net};

fn balance(api: &str, who: &str) -> u64 {
    get(api, &format!("/accounts/{who}")).unwrap()["balance"].as_u64().unwrap()
}

/// Submits a matmul job with `--out` and a lease of `lease_blocks`; returns (job id, stdout).
fn run_job(
    net: &Net,
    api: &str,
    (a, b, out): (&str, &str, &str),
    shards: &str,
    lease_blocks: &str,
) -> (String, String) {
    let o = ergon(&[
        "job",
        "submit",
        "--key",
        &net.p("client.key"),
        a,
        b,
        "--shards",
        shards,
        "--max-price",
        "1000000",
        "--lease-blocks",
        lease_blocks,
        "--out",
        out,
        "--timeout-s",
        "120",
        "--progress-every-s",
        "2",
        "--fee",
        "1",
        "--api",
        api,
    ]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let id = text.split_whitespace().nth(3).unwrap_or("").to_string();
    if !o.status.success() {
        let decisions = get(api, &format!("/jobs/{id}")).map(|j| j["decisions"].to_string()).unwrap_or_default();
        panic!("{text}{}\ndecisions: {decisions}", String::from_utf8_lossy(&o.stderr));
    }
    (id, text)
}

/// Submits a training job on the shipped digits with `replicas` and `--out`; returns stdout.
fn train(net: &Net, api: &str, replicas: &str, out: &str) -> String {
    let key = net.p("client.key");
    ok(ergon(&[
        "job",
        "submit",
        "--kind",
        "train",
        "--replicas",
        replicas,
        "--key",
        &key,
        "--max-price",
        "1000000",
        // Room for a loaded machine: a check replica whose lease ran out has nobody left to
        // take it (each provider holds or failed a replica), and the job would wait out its
        // timeout.
        "--lease-blocks",
        "60",
        "--out",
        out,
        "--timeout-s",
        "120",
        "--api",
        api,
    ]))
}

#[test]
fn jobs_complete_survive_a_dead_provider_and_slash_a_wrong_one() {
    let dir = std::env::temp_dir().join(format!("ergon-jobs-test-{}", std::process::id()));
    let MarketNet { mut net, client, p1, p2, client_api, p2_key, .. } = MarketNet::start(dir);

    // 1. A 1024³ product in two shards: computed while mining, verified, paid.
    ok(ergon(&["demo", "--size", "1024", "--dir", &net.p("big")]));
    let (a, b, c) = (net.p("big/A.npy"), net.p("big/B.npy"), net.p("big/C_out.npy"));
    let before = balance(&client_api, &client);
    // A long lease: the first blocks of a new chain come several times faster than its block
    // time until ASERT finds the rate of three mining processes on these cores (7 a second
    // in one CI run, where a 12-block lease closed before the inputs had arrived).
    let (job, text) = run_job(&net, &client_api, (&a, &b, &c), "2", "60");
    assert!(text.contains("verified (Freivalds)") && text.contains("receipt"), "{text}");
    ok(ergon(&["verify", &a, &b, &c]));
    let j = get(&client_api, &format!("/jobs/{job}")).unwrap();
    let (paid, burned) = (j["paid"].as_u64().unwrap(), j["burned"].as_u64().unwrap());
    assert_eq!(
        before - balance(&client_api, &client),
        paid + burned + 1,
        "escrow refunded but for payments and the fee"
    );
    assert!(paid > 0);
    // The receipt states the total cost and the refund, as the chain counted them.
    let escrowed = j["escrowed_at_submission"].as_u64().unwrap();
    let receipt = format!(
        "cost: {} (paid {paid} to providers, burned {burned}) of the {escrowed} escrowed; refunded {}",
        paid + burned,
        escrowed - paid - burned
    );
    assert!(text.contains(&receipt), "{receipt:?} not in {text}");
    // Each shard's CPU time, measured on the provider's mining threads, is on chain; the job's
    // energy is their sum at the stated power model, and the receipt prints it.
    let cpu_ms: Vec<u64> = j["tasks"].as_array().unwrap().iter().map(|t| t["cpu_ms"].as_u64().unwrap()).collect();
    assert!(cpu_ms.len() == 2 && cpu_ms.iter().all(|&ms| ms >= 1), "measured per shard: {j}");
    let cpu_seconds = j["energy"]["cpu_seconds"].as_f64().unwrap();
    assert_eq!(cpu_seconds, cpu_ms.iter().sum::<u64>() as f64 / 1000.0, "{j}");
    // Summed shard by shard, so equal to the product only up to the last bit or two.
    let joules = j["energy"]["joules"].as_f64().unwrap();
    assert!((joules - cpu_seconds * 3.75).abs() <= 1e-9 * joules.max(1.0), "{j}");
    assert!(text.contains("CPU-seconds measured by its providers × 3.75 W per busy thread"), "{text}");
    let status = get(&client_api, "/status").unwrap();
    assert!(status["energy"]["results_reported"].as_u64().unwrap() >= 2, "{status}");

    // 2. Adaptive replication: a one-replica training job while both providers are new (on
    //    probation): the chain calls a check, the other provider trains too, they agree, and the
    //    check is paid out of the checked provider's pay.
    let before = balance(&client_api, &client);
    let text = train(&net, &client_api, "1", &net.p("checked.safetensors"));
    assert!(text.contains("2 replicas computed it independently, one of them a check"), "{text}");
    let job = text.split_whitespace().nth(3).unwrap().to_string();
    let j = get(&client_api, &format!("/jobs/{job}")).unwrap();
    let tasks = j["tasks"].as_array().unwrap();
    assert_eq!(
        (tasks[0]["state"].as_str(), tasks[1]["state"].as_str(), &tasks[1]["check"]),
        (Some("settled"), Some("settled"), &serde_json::json!(true)),
        "{j}"
    );
    assert_ne!(tasks[0]["detail"]["provider"], tasks[1]["detail"]["provider"], "{j}");
    let log = j["decisions"].to_string();
    assert!(
        log.contains("check replica 1 queued")
            && log.contains("on probation")
            && log.contains("check replica 1 agreed"),
        "{log}"
    );
    let (paid, burned) = (j["paid"].as_u64().unwrap(), j["burned"].as_u64().unwrap());
    assert_eq!(before - balance(&client_api, &client), paid + burned + 1, "the client pays the shard once: {j}");

    // 3. A training job on the shipped digits, replicated on both providers: each trains with
    //    every product through mining, the two models agree byte for byte, the chain pays both,
    //    and the model is the one `ergon train` makes locally from the same data and settings.
    let model = net.p("model.safetensors");
    let before = balance(&client_api, &client);
    let text = train(&net, &client_api, "2", &model);
    assert!(text.contains("2 replicas computed it independently"), "{text}");
    let accuracy: f64 = text
        .split("% accurate on the")
        .next()
        .and_then(|t| t.rsplit(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in {text}"));
    assert!(accuracy >= 95.0, "{text}");
    let job = text.split_whitespace().nth(3).unwrap().to_string();
    let j = get(&client_api, &format!("/jobs/{job}")).unwrap();
    let (paid, burned) = (j["paid"].as_u64().unwrap(), j["burned"].as_u64().unwrap());
    assert_eq!(before - balance(&client_api, &client), paid + burned + 1, "{j}");
    let payees: Vec<&str> =
        j["tasks"].as_array().unwrap().iter().filter_map(|t| t["detail"]["provider"].as_str()).collect();
    assert!(payees.contains(&p1.as_str()) && payees.contains(&p2.as_str()), "{j}");
    let local = net.p("local.safetensors");
    ok(ergon(&["train", "--out", &local]));
    assert_eq!(std::fs::read(&model).unwrap(), std::fs::read(&local).unwrap(), "same bytes from any provider");
    let fetched = net.p("fetched.safetensors");
    ok(ergon(&["job", "result", "--key", &net.p("client.key"), &job, "--out", &fetched, "--api", &client_api]));
    assert_eq!(std::fs::read(&fetched).unwrap(), std::fs::read(&model).unwrap());

    // 4. P2 dies while it holds a lease: the lease closes and P1 completes the job.
    ok(ergon(&["demo", "--size", "256", "--dir", &net.p("small")]));
    let (a, b) = (net.p("small/A.npy"), net.p("small/B.npy"));
    net.kill("p2");
    let (job, text) = run_job(&net, &client_api, (&a, &b, &net.p("small/C1.npy")), "1", "12");
    assert!(text.contains(&format!("leased to {p2}")) && text.contains(&format!("leased to {p1}")), "{text}");
    let log = get(&client_api, &format!("/jobs/{job}")).unwrap()["decisions"].to_string();
    assert!(log.contains("no result within 12 blocks") && log.contains("re-allocating"), "{log}");
    // While the dead provider's lease runs out, the client says how long it has been computing
    // and what its provider's verified throughput would have needed (or that it has none).
    let progress =
        text.lines().find(|l| l.contains("shard 0 replica 0: computing for ")).unwrap_or_else(|| panic!("{text}"));
    assert!(progress.contains(" s to go") || progress.contains("no estimate"), "{progress}");

    // 5. P2 returns dishonest: its wrong product is disputed, it is slashed, P1 completes.
    net.node("p2", &["--provider-key", &p2_key, "--corrupt-results"]);
    let (job, text) = run_job(&net, &client_api, (&a, &b, &net.p("small/C2.npy")), "1", "12");
    assert!(text.contains("dispute sent"), "{text}");
    ok(ergon(&["verify", &a, &b, &net.p("small/C2.npy")]));
    let p2_state = get(&client_api, &format!("/providers/{p2}")).unwrap();
    assert_eq!(p2_state["status"], "demoted", "{p2_state}");
    assert!(p2_state["slashed"].as_u64().unwrap() > 0, "{p2_state}");
    let log = get(&client_api, &format!("/jobs/{job}")).unwrap()["decisions"].to_string();
    assert!(log.contains("provider slashed"), "{log}");
}
