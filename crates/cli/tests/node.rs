//! A real node process on a loopback port: mining, the JSON API, a wallet transfer, clean stop.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn ergon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ergon")).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

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

    #[cfg(unix)]
    {
        // Ctrl-C: the node stops cleanly and a restart resumes from its store.
        Command::new("kill").args(["-INT", &node.id().to_string()]).status().unwrap();
        let status = node.wait().unwrap();
        assert!(status.success(), "{status:?}");
        let reopened = ergon(&["mine-local", "--data-dir", &p("data"), "--blocks", "0"]);
        assert!(stdout(&reopened).contains("re-validated"), "{}", stdout(&reopened));
    }
    #[cfg(not(unix))]
    node.kill().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
