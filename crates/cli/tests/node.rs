//! A real node process on a loopback port: mining, the JSON API, a wallet transfer, clean stop.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{ergon, free_port, stdout};

#[test]
fn a_node_mines_serves_its_api_and_applies_a_transfer() {
    let dir = std::env::temp_dir().join(format!("ergon-node-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let alice = stdout(&ergon(&["key", "new", "--out", &p("alice.key")])).split(' ').next().unwrap().to_string();
    let bob = stdout(&ergon(&["key", "new", "--out", &p("bob.key")])).split(' ').next().unwrap().to_string();
    assert!(ergon(&["key", "new", "--out", &p("alice.key")]).status.code() == Some(2), "never overwrites a key");
    let g = ergon(&[
        "genesis",
        "--out",
        &p("g.json"),
        "--alloc",
        &format!("{alice}=1000000"),
        "--block-time-ms",
        "500",
        "--filler-size",
        "96",
    ]);
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));

    let api = format!("127.0.0.1:{}", free_port());
    let mut node = Command::new(env!("CARGO_BIN_EXE_ergon"))
        .args(["node", "--data-dir", &p("data"), "--api", &api, "--mine", "--miner", &bob, "--genesis", &p("g.json")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let wait_for = |what: &str, f: &dyn Fn() -> bool| {
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("the API", &|| ergon(&["wallet", "balance", &alice, "--api", &api]).status.success());

    let sent = ergon(&[
        "wallet",
        "send",
        "--key",
        &p("alice.key"),
        "--to",
        &bob,
        "--amount",
        "4321",
        "--fee",
        "9",
        "--api",
        &api,
    ]);
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    wait_for("the transfer to be mined", &|| {
        stdout(&ergon(&["wallet", "balance", &alice, "--api", &api])).contains("balance 995670,")
    });
    // A replay of the same nonce is refused with a reason.
    let again = ergon(&["wallet", "balance", &alice, "--api", &api]);
    assert!(stdout(&again).contains("next nonce 1"), "{}", stdout(&again));
    let bad = ergon(&["wallet", "balance", "erg123", "--api", &api]);
    assert_eq!(bad.status.code(), Some(2));
    // Strict decoding (issue 10): a JSON array in place of the object, unknown fields, and hex
    // that is not lower case are refused with 400 and a reason.
    let post = |body: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&api).unwrap();
        let req = format!(
            "POST /transactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    for (body, reason) in [
        (r#"["00"]"#, "must be a JSON object"),
        (r#"{"tx":"00","extra":1}"#, "unknown field"),
        (r#"{"tx":"0A"}"#, "not hex"),
    ] {
        let answer = post(body);
        assert!(answer.starts_with("HTTP/1.1 400") && answer.contains(reason), "{body}: {answer}");
    }

    #[cfg(unix)]
    {
        // SIGTERM (what `kill` and service managers send) stops the node as cleanly as Ctrl-C,
        // and a restart resumes from its store.
        Command::new("kill").args(["-TERM", &node.id().to_string()]).status().unwrap();
        let status = node.wait().unwrap();
        assert!(status.success(), "{status:?}");
        let reopened = ergon(&["mine-local", "--data-dir", &p("data"), "--blocks", "0"]);
        assert!(stdout(&reopened).contains("re-validated"), "{}", stdout(&reopened));
    }
    #[cfg(not(unix))]
    node.kill().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kademlia: in a line A ← B ← C (each dials only its predecessor), A still meets C.
#[test]
fn peers_discover_each_other_beyond_their_configured_peers() {
    let dir = std::env::temp_dir().join(format!("ergon-kad-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    assert!(ergon(&["genesis", "--out", &p("g.json"), "--block-time-ms", "1000", "--filler-size", "48"])
        .status
        .success());
    let (apis, p2ps): (Vec<String>, Vec<String>) =
        (0..3).map(|_| (format!("127.0.0.1:{}", free_port()), format!("/ip4/127.0.0.1/tcp/{}", free_port()))).unzip();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ergon"));
        cmd.args([
            "node",
            "--data-dir",
            &p(&format!("n{i}")),
            "--api",
            &apis[i],
            "--genesis",
            &p("g.json"),
            "--listen",
            &p2ps[i],
        ]);
        if i > 0 {
            cmd.args(["--peer", &p2ps[i - 1]]);
        }
        nodes.push(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
        std::thread::sleep(Duration::from_millis(300));
    }
    let status_of_a = || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&apis[0]).ok()?;
        s.write_all(format!("GET /status HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", apis[0]).as_bytes())
            .ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        let body = resp.split_once("\r\n\r\n")?.1;
        serde_json::from_str::<serde_json::Value>(body).ok()
    };
    let peers_of_a = || status_of_a()?["peers"].as_u64();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut seen = None;
    while Instant::now() < deadline {
        seen = peers_of_a();
        if seen == Some(2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let identity = status_of_a().and_then(|s| s["peer_id"].as_str().map(String::from));
    for mut n in nodes {
        let _ = n.kill();
        let _ = n.wait();
    }
    assert_eq!(seen, Some(2), "A should have found C through B's routing table");
    // A keeps its peer identity across a restart (it was new at every start: issue 10).
    let mut again = Command::new(env!("CARGO_BIN_EXE_ergon"))
        .args(["node", "--data-dir", &p("n0"), "--api", &apis[0], "--genesis", &p("g.json"), "--listen", &p2ps[0]])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after = None;
    while Instant::now() < deadline && after.is_none() {
        after = status_of_a().and_then(|s| s["peer_id"].as_str().map(String::from));
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = again.kill();
    let _ = again.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(identity.is_some());
    assert_eq!(after, identity, "the same PeerId after a restart");
}
