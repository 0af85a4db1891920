//! What the process-level tests share: running the binary and picking loopback ports.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn ergon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ergon")).args(args).output().expect("run ergon")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stdout of a run that must succeed (else stdout and stderr in the failure).
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    stdout(&o)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn get(api: &str, path: &str) -> Option<Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    serde_json::from_str(resp.split_once("\r\n\r\n")?.1).ok()
}

/// A provider's state as a node's API shows it (null while unknown).
pub fn provider(api: &str, who: &str) -> Value {
    get(api, &format!("/providers/{who}")).unwrap_or_default()
}

/// Registers the provider whose key file is `key`, asking `price`, with a bond of 1,000,000,
/// `slots` slots and `extra` arguments (e.g. `--int8-gmacs 8`).
pub fn register_provider(key: &str, price: &str, slots: &str, extra: &[&str], api: &str) {
    let mut args = vec!["provider", "register", "--key", key, "--price", price, "--stake", "1000000"];
    args.extend(["--slots", slots]);
    // A claim under the unchecked floor unless the test sets one: no memory fills.
    if !extra.contains(&"--memory-mib") {
        args.extend(["--memory-mib", "512"]);
    }
    args.extend(extra);
    args.extend(["--api", api]);
    ok(ergon(&args));
}

pub struct Net {
    /// (api, p2p, extra args) of each node started, by name, to restart it as it was.
    pub started: std::collections::HashMap<String, (String, String, Vec<String>)>,
    pub dir: std::path::PathBuf,
    pub genesis: String,
    pub validator_p2p: String,
    pub children: Vec<(String, Child)>,
}

impl Net {
    pub fn p(&self, f: &str) -> String {
        self.dir.join(f).to_string_lossy().into_owned()
    }

    /// A new key file `name` in the test directory; returns its address.
    pub fn key(&self, name: &str) -> String {
        ok(ergon(&["key", "new", "--out", &self.p(name)])).split(' ').next().unwrap().to_string()
    }

    /// Writes the genesis (`g.json`): `allocs` as (address, amount), then `params` (flags of
    /// `ergon genesis`).
    pub fn write_genesis(&mut self, allocs: &[(&str, &str)], params: &[&str]) {
        self.genesis = self.p("g.json");
        let allocs: Vec<String> = allocs.iter().map(|(who, amount)| format!("{who}={amount}")).collect();
        let mut args = vec!["genesis", "--out", &self.genesis];
        for a in &allocs {
            args.extend(["--alloc", a]);
        }
        args.extend(params);
        ok(ergon(&args));
    }

    pub fn new(dir: std::path::PathBuf) -> Self {
        Net { started: Default::default(), dir, genesis: String::new(), validator_p2p: String::new(), children: vec![] }
    }

    /// Starts node `name` on fresh loopback ports (the first one started is the one the others
    /// dial) and waits for its API.
    pub fn node(&mut self, name: &str, extra: &[&str]) -> String {
        let api = format!("127.0.0.1:{}", free_port());
        let p2p = format!("/ip4/127.0.0.1/tcp/{}", free_port());
        let data_dir = self.dir.join(name).to_string_lossy().into_owned();
        let mut args: Vec<String> = ["node", "--data-dir", &data_dir].map(String::from).to_vec();
        args.extend(["--api", &api, "--genesis", &self.genesis, "--listen", &p2p].map(String::from));
        if !self.validator_p2p.is_empty() {
            args.extend(["--peer".to_string(), self.validator_p2p.clone()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        if self.validator_p2p.is_empty() {
            self.validator_p2p = p2p.clone();
        }
        self.started.insert(name.to_string(), (api.clone(), p2p, args.clone()));
        self.spawn(name, &args, &api);
        api
    }

    /// Starts node `name` again as it was first started (same data directory and ports).
    pub fn restart(&mut self, name: &str) -> String {
        let (api, _, args) = self.started[name].clone();
        self.spawn(name, &args, &api);
        api
    }

    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children.iter().find(|(n, _)| n == name).map(|(_, c)| c.id())
    }

    fn spawn(&mut self, name: &str, args: &[String], api: &str) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ergon"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push((name.to_string(), child));
        wait("the node's API", Duration::from_secs(30), || get(api, "/status").is_some());
    }

    pub fn kill(&mut self, name: &str) {
        for (n, c) in &mut self.children {
            if n == name {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.children.retain(|(n, _)| n != name);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
            return;
        }
        // A failed test on a CI machine leaves nothing to read afterwards: each node's last
        // warnings (lost leases, missed probes, refused transactions) go to the test's output.
        for name in self.started.keys() {
            let Ok(log) = std::fs::read_to_string(self.dir.join(format!("{name}.log"))) else { continue };
            let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).collect();
            eprintln!("--- {name}: the last of its {} warnings ---", warnings.len());
            for line in &warnings[warnings.len().saturating_sub(30)..] {
                eprintln!("{line}");
            }
        }
    }
}

pub fn wait(what: &str, limit: Duration, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The market devnet the job tests run on: a mining validator, a client node and two provider
/// nodes (P2 asks less, so it is leased first), both providers registered.
pub struct MarketNet {
    pub net: Net,
    pub client: String,
    pub p1: String,
    pub p2: String,
    pub validator: String,
    pub client_api: String,
    pub p2_key: String,
}

impl MarketNet {
    pub fn start(dir: std::path::PathBuf) -> Self {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut net = Net::new(dir);
        let client = net.key("client.key");
        let (p1, p2, miner) = (net.key("p1.key"), net.key("p2.key"), net.key("miner.key"));
        net.write_genesis(
            &[(&client, "1000000000000"), (&p1, "1000000000"), (&p2, "1000000000")],
            // A dispute window of 10 blocks: while the chain catches up on its schedule, blocks
            // come 2–5 a second, and a wrong result was paid 3 blocks after it was posted, before
            // the client's dispute was in a block (jobs.rs, in a full run).
            &[
                "--block-time-ms",
                "1000",
                "--filler-size",
                "128",
                "--initial-difficulty",
                "measured",
                "--challenge-blocks",
                "10",
            ],
        );
        let validator = net.node("validator", &["--mine", "--miner", &miner]);
        let client_api = net.node("client", &[]);
        let (p1_key, p2_key) = (net.p("p1.key"), net.p("p2.key"));
        net.node("p1", &["--provider-key", &p1_key]);
        net.node("p2", &["--provider-key", &p2_key]);
        for (key, price) in [(&p1_key, "200"), (&p2_key, "100")] {
            register_provider(key, price, "2", &[], &client_api);
        }
        wait("both registrations", Duration::from_secs(60), || {
            get(&validator, "/providers").is_some_and(|v| v["providers"].as_array().is_some_and(|p| p.len() == 2))
        });
        MarketNet { net, client, p1, p2, validator, client_api, p2_key }
    }
}

/// A base port whose API ports (base..base+4) and p2p ports (base+100..base+104) are all free
/// now: a base taken from one free port alone collided with another process's port now and then.
pub fn free_port_base() -> u16 {
    for _ in 0..100 {
        let base = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().clamp(20_000, 60_000);
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if (0..4).all(|i| free(base + i) && free(base + 100 + i)) {
            return base;
        }
    }
    panic!("no free run of ports for a devnet")
}
