//! The market through real processes: a mining node, a provider and a client using the CLI. The
//! provider here never computes (the provider process is not built yet), which is exactly what
//! exercises re-allocation's reasons: its lease closes at the deadline, with the reason shown to
//! both sides, and the client can cancel and get its escrow back.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ergon_kernels::npy::write_npy;
use ergon_kernels::MatI8;

mod common;
use common::{ergon, free_port, ok, register_provider, stdout};

#[test]
fn provider_and_client_see_leases_closures_and_refunds_with_reasons() {
    let dir = std::env::temp_dir().join(format!("ergon-market-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let new_key = |name: &str| ok(ergon(&["key", "new", "--out", &p(name)])).split(' ').next().unwrap().to_string();
    let (client, provider, miner) = (new_key("client.key"), new_key("provider.key"), new_key("miner.key"));
    ok(ergon(&[
        "genesis",
        "--out",
        &p("g.json"),
        "--alloc",
        &format!("{client}=1000000000"),
        "--alloc",
        &format!("{provider}=1000000000"),
        "--block-time-ms",
        "400",
        "--filler-size",
        "96",
        // Blocks paced by this machine's mining rate, so the 12-block lease outlives the
        // stranger's uploads below (a fixed difficulty let a faster kernel end it first).
        "--initial-difficulty",
        "measured",
    ]));
    let api = format!("127.0.0.1:{}", free_port());
    let mut node = Command::new(env!("CARGO_BIN_EXE_ergon"))
        .args(["node", "--data-dir", &p("data"), "--api", &api, "--mine", "--miner", &miner, "--genesis", &p("g.json")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let wait_for = |what: &str, args: &[&str], needle: &str| -> String {
        loop {
            let out = ergon(args);
            let text = stdout(&out);
            if text.contains(needle) {
                return text;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; last output:\n{text}");
            std::thread::sleep(Duration::from_millis(150));
        }
    };
    wait_for("the API", &["wallet", "balance", &client, "--api", &api], "balance");

    register_provider(&p("provider.key"), "100", "1", &[], &api);
    let status = ["provider", "status", provider.as_str(), "--api", api.as_str()];
    wait_for("the registration", &status, "idle: no job is waiting");

    let m = |seed: i64, r, c| {
        MatI8::from_fn(r, c, |i, j| ((i as i64 * 31 + j as i64 * 17 + seed) % 253 - 126) as i8).unwrap()
    };
    write_npy(&dir.join("A.npy"), &m(1, 96, 64)).unwrap();
    write_npy(&dir.join("B.npy"), &m(2, 64, 48)).unwrap();
    let submitted = ok(ergon(&[
        "job",
        "submit",
        "--key",
        &p("client.key"),
        &p("A.npy"),
        &p("B.npy"),
        "--shards",
        "2",
        "--max-price",
        "200",
        "--lease-blocks",
        "12",
        "--api",
        &api,
    ]));
    let id = submitted.split_whitespace().nth(3).unwrap().to_string();
    let job = ["job", "status", id.as_str(), "--api", api.as_str()];
    let text = wait_for("a lease", &job, &format!("leased to {provider}"));
    assert!(text.contains("no provider is free") || text.contains("leased to"), "{text}");

    // A stranger uploads 10 MiB under the leased shard's input name: refused on the blob's
    // header, with the reason, and nothing stored (issue 10: names follow from chain data, and
    // a PUT replaced whatever was there).
    {
        use ergon_jobdata::{name, seal_signed, Part};
        let (job, holder) = (ergon_types::Hash::from_hex(&id).unwrap(), provider.parse().unwrap());
        let input = name(&job, 0, 0, &holder, Part::InputA);
        let stranger = ergon_types::SecretKey::from_bytes(&[77; 32]);
        let junk = seal_signed(&vec![1u8; 10 << 20], &[5; 32], &input, &stranger).unwrap();
        let (code, body) = raw_put(&api, &format!("/blobs/{}", ergon_types::Hash(input).to_hex()), &junk);
        assert_eq!(code, 422, "{body}");
        assert!(body.contains(&format!("only {client} may write under this name")), "{body}");
        // Judged on the header alone: announcing 10 MiB and sending only the header is answered
        // within the drain's few seconds (the whole body used to be awaited, and held, first).
        let started = Instant::now();
        let (code, body) = raw_put_header_only(&api, &format!("/blobs/{}", ergon_types::Hash(input).to_hex()), &junk);
        assert_eq!(code, 422, "{body}");
        assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    }

    // The provider never delivers: the lease closes at its deadline, with the reason on both sides.
    wait_for("the lease to close", &job, "no result within 12 blocks");
    wait_for("the provider's side of it", &status, "lease closed: no result for job");

    ok(ergon(&["job", "cancel", "--key", &p("client.key"), &id, "--api", &api]));
    let text = wait_for("the cancellation", &job, "cancelled by the client");
    assert!(!text.contains("error"), "{text}");
    // A prefix no job has: "00" named this very job once in 256 runs (ids are hashes).
    let unknown = if id.starts_with("00") { "ff" } else { "00" };
    let bad = ergon(&["job", "status", unknown, "--api", &api]);
    assert_eq!(bad.status.code(), Some(2));

    // Issue 12's rough edges, as a new user meets them.
    // A key's address, without making a new key.
    assert_eq!(ok(ergon(&["key", "address", "--key", &p("provider.key")])).trim(), provider);
    // `ERGON_API` instead of repeating --api; `job list`; a printed 12-digit prefix works.
    let listed =
        Command::new(env!("CARGO_BIN_EXE_ergon")).env("ERGON_API", &api).args(["job", "list"]).output().unwrap();
    let text = stdout(&listed);
    assert!(listed.status.success() && text.contains(&id[..12]) && text.contains("cancelled"), "{text}");
    let mine = ok(ergon(&["job", "list", "--client", &provider, "--api", &api]));
    assert!(mine.contains("(no jobs of"), "{mine}");
    // Its result: the shards were cancelled, and it says so (not "not settled yet").
    let result = ergon(&["job", "result", "--key", &p("client.key"), &id[..12], "--out", &p("C.npy"), "--api", &api]);
    let err = String::from_utf8_lossy(&result.stderr).into_owned();
    assert!(!result.status.success() && err.contains("shard 0 was cancelled") && err.contains("--shard N"), "{err}");
    let by_prefix = ok(ergon(&["job", "status", &id[..12], "--api", &api]));
    assert!(by_prefix.contains("cancelled by the client"), "{by_prefix}");
    // `--json` on every command that prints state: the API's own types, parseable.
    let json = |args: &[&str]| -> serde_json::Value {
        let text = ok(ergon(args));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?} --json: {e}: {text}"))
    };
    let j = json(&["job", "status", &id[..12], "--json", "--api", &api]);
    assert_eq!((j["id"].as_str(), j["status"].as_str()), (Some(id.as_str()), Some("cancelled")), "{j}");
    assert!(j["energy"]["joules"].is_number() && j["tasks"].is_array(), "{j}");
    let list = json(&["job", "list", "--json", "--api", &api]);
    assert!(list.as_array().is_some_and(|jobs| jobs.iter().any(|x| x["id"] == id.as_str())), "{list}");
    let p_json = json(&["provider", "status", &provider, "--json", "--api", &api]);
    assert_eq!(p_json["address"].as_str(), Some(provider.as_str()), "{p_json}");
    assert!(p_json["decisions"].is_array() && p_json["verified_gmacs"].is_number(), "{p_json}");
    let bal = json(&["wallet", "balance", &client, "--json", "--api", &api]);
    assert!(bal["account"]["balance"].is_number() && bal.get("provider").is_some(), "{bal}");
    // A transaction that cannot apply is refused when it is sent, with the chain's reason, and
    // nothing says it was submitted: a stranger cancelling the job, the client cancelling twice.
    for (key, why) in [
        ("provider.key", "only the client who submitted a job can cancel it"),
        ("client.key", "the job is already finished or cancelled"),
    ] {
        let refused = ergon(&["job", "cancel", "--key", &p(key), &id[..12], "--api", &api]);
        let (out, err) = (stdout(&refused), String::from_utf8_lossy(&refused.stderr).into_owned());
        assert!(!refused.status.success() && err.contains(why) && !out.contains("submitted"), "{out}{err}");
    }

    // A client following a job no provider will take hears why while it waits, and on giving up
    // what to do with the open job and its escrow.
    let cheap = ergon(&[
        "job",
        "submit",
        "--key",
        &p("client.key"),
        &p("A.npy"),
        &p("B.npy"),
        "--max-price",
        "50",
        "--out",
        &p("C2.npy"),
        "--timeout-s",
        "6",
        "--api",
        &api,
    ]);
    let (out, err) = (stdout(&cheap), String::from_utf8_lossy(&cheap.stderr).into_owned());
    assert!(!cheap.status.success(), "{out}{err}");
    assert!(
        out.contains(
            "shard 0 replica 0 waits: waiting: of 1 free provider(s), 1 ask more than the maximum price (the lowest asks 100 per G MAC)"
        ),
        "{out}"
    );
    assert!(err.contains("gave up after 6 s") && err.contains("ergon job cancel --key KEY"), "{err}");

    // The event stream, resumed from block 1: every block since, its transactions and what the
    // market decided (the registration, the job, its lease closing, the cancel), in order.
    let events = read_events(&api, "1", "cancelled by the client");
    for needle in
        ["event: hello", "event: block\nid: 2\n", "event: tx\n", "\"kind\":\"submit_job\"", "event: decision\n"]
    {
        assert!(events.contains(needle), "no {needle:?} in {events}");
    }
    assert!(events.find("event: block\nid: 2\n") < events.find("event: block\nid: 3\n"), "blocks in order");
    // The dashboard: one page from the binary, nothing fetched from elsewhere.
    let page = raw_get(&api, "/");
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("text/html") && page.contains("<title>Ergon"),
        "{page:.300}"
    );
    assert!(page.contains("default-src 'self'") && !page.contains("https://"), "no CDN");

    let _ = node.kill();
    let _ = node.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A whole GET response, head and body.
fn raw_get(api: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

/// `/events` from `Last-Event-ID: resume` on, read until `needle` arrives (30 s at most).
fn read_events(api: &str, resume: &str, needle: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let head =
        format!("GET /events HTTP/1.1\r\nHost: {api}\r\nAccept: text/event-stream\r\nLast-Event-ID: {resume}\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let (mut got, mut buf, until) = (String::new(), [0u8; 16384], Instant::now() + Duration::from_secs(30));
    while !got.contains(needle) && Instant::now() < until {
        if let Ok(n) = s.read(&mut buf) {
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    got
}

/// A PUT written whole before its answer is read, as simple clients do: (status, body).
fn raw_put(api: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).unwrap();
    let head =
        format!("PUT {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, resp.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string()))
}

/// A PUT that announces `blob`'s length but sends only its header, then waits for the answer.
fn raw_put_header_only(api: &str, path: &str, blob: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head =
        format!("PUT {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", blob.len());
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&blob[..ergon_jobdata::seal::HEADER_BYTES]).unwrap();
    let mut resp = vec![0u8; 4096];
    let n = s.read(&mut resp).unwrap_or(0);
    let resp = String::from_utf8_lossy(&resp[..n]).into_owned();
    let code = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, resp.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string()))
}
