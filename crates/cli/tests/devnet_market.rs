//! `ergon devnet` as a newcomer runs it: the whole market on one machine. A validator, two
//! providers and a client's jobs; within two minutes products and training jobs are verified and
//! paid, and most of the multiply-adds mined are clients' jobs, not filler.

//!
//! While it runs, the dashboard is opened in a real browser (Debian's chromium, driven by
//! `tests/browser/dashboard.mjs`): a job submitted after the page loaded must appear and reach
//! "settled" live, with no console error. Screenshots land in `target/browser-artifacts/`.
//! Without chromium, node or `tests/browser/node_modules` that part is skipped by name, unless
//! `ERGON_BROWSER_TESTS=1` (set by `.ci/run`, which installs them) makes it a failure.
//! Likewise the Python client (`clients/python/tests/devnet_check.py`: a product, a training
//! and an inference job through it) needs python3 with numpy, or `ERGON_PYTHON_TESTS=1` fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::free_port_base;

#[test]
fn the_devnet_runs_a_market_whose_mined_work_is_mostly_clients_jobs() {
    let base = free_port_base();
    let dir = std::env::temp_dir().join(format!("ergon-devnet-market-test-{}", std::process::id()));
    let mut devnet = Command::new(env!("CARGO_BIN_EXE_ergon"))
        .args(["devnet", "--block-time-s", "2", "--duration-s", "150", "--api-base-port", &base.to_string()])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(devnet.stdout.take().unwrap()).lines();
    let mut text = String::new();
    // The dashboard's URL comes first; the browser opens it once the client's jobs are going.
    let mut url = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        text.push_str(&line);
        text.push('\n');
        if let Some(rest) = line.strip_prefix("dashboard: ") {
            url = rest.split_whitespace().next().map(str::to_string);
        }
        if line.starts_with("  client ") {
            break;
        }
    }
    let url = url.unwrap_or_else(|| panic!("no dashboard URL printed first: {text}"));
    assert_eq!(url, format!("http://127.0.0.1:{base}/"));
    let browser = std::thread::spawn({
        let url = url.clone();
        move || dashboard_in_a_browser(&url)
    });
    // The Python client, with the devnet's spare funded key, beside the devnet's own client.
    let python = std::thread::spawn({
        let key = dir.join("user.key");
        move || python_client(&url, &key)
    });
    // Meanwhile every route's answer, on the validator and on a provider, is checked against
    // the OpenAPI document the node serves.
    let conformance = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(40));
        let checked: Vec<usize> = [base, base + 1].iter().map(|p| api_conforms(&format!("127.0.0.1:{p}"))).collect();
        println!("API conformance: {checked:?} answers checked against /openapi.json");
    });
    for line in lines {
        text.push_str(&line.unwrap());
        text.push('\n');
    }
    let status = devnet.wait().unwrap();
    assert!(status.success(), "{text}");
    browser.join().unwrap();
    conformance.join().unwrap();
    python.join().unwrap();
    assert!(text.contains("node 0 (validator)") && text.contains("node 2 (provider)"), "{text}");
    for kind in ["matmul 4096³ in 2 shards: verified; paid", "train an MLP on the digits: verified; paid"] {
        assert!(text.contains(kind), "no {kind:?} in {text}");
    }
    // The last market line: "…; NN% of the multiply-adds mined were clients' jobs (…"
    let last = text.lines().rev().find(|l| l.starts_with("market: ")).unwrap_or_else(|| panic!("{text}"));
    let share: f64 = last
        .split("% of the multiply-adds mined")
        .next()
        .and_then(|t| t.rsplit(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{last}"));
    println!("{last}");
    assert!(share >= 50.0, "most mined multiply-adds are on jobs: {last}");
    assert!(!text.contains("paid 0 to"), "no job is paid 0: {text}");
    // "energy: N J on clients' jobs, M J on filler (P% useful), …; on chain, R results reported …"
    let energy = text.lines().rev().find(|l| l.starts_with("energy: ")).unwrap_or_else(|| panic!("{text}"));
    println!("{energy}");
    let on_jobs: f64 = energy["energy: ".len()..].split(' ').next().and_then(|j| j.parse().ok()).unwrap_or(0.0);
    assert!(on_jobs > 0.0 && energy.contains("; on chain, "), "measured and reported energy: {energy}");
    let log = std::fs::read(dir.join("node-1.log")).unwrap();
    assert!(!log.is_empty() && !log.contains(&0x1b), "node logs are plain text, without terminal colour codes");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `tests/browser/dashboard.mjs` against the running devnet; panics on its failure.
fn dashboard_in_a_browser(url: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("tests/browser/dashboard.mjs");
    let chromium = std::env::var_os("CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into());
    let node_ok = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    let missing = [
        (!chromium.exists()).then_some("chromium (apt install chromium)"),
        (!node_ok).then_some("node"),
        (!root.join("tests/browser/node_modules/playwright-core").exists())
            .then_some("playwright-core (npm ci --prefix tests/browser)"),
    ];
    let missing: Vec<&str> = missing.into_iter().flatten().collect();
    if !missing.is_empty() {
        assert!(
            std::env::var("ERGON_BROWSER_TESTS").as_deref() != Ok("1"),
            "browser tests required, but missing: {missing:?}"
        );
        println!("skipped: the dashboard in a browser (missing {})", missing.join(", "));
        return;
    }
    let artefacts = root.join("target/browser-artifacts");
    let out = Command::new("node")
        .arg(&script)
        .args([url, &artefacts.to_string_lossy(), "80"])
        .env("CHROMIUM", &chromium)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    println!("dashboard: {report}");
    assert!(
        out.status.success(),
        "the dashboard failed in the browser: {report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (status, JSON body) of `GET path`.
fn get(api: &str, path: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body:.300}")))
}

/// Fetches every JSON route of the node at `api` (every block with transactions, provider and
/// job it knows, and the refusals) and checks each answer against its served `/openapi.json`,
/// which must be the document `ergon-api` generates. Returns how many answers were checked.
fn api_conforms(api: &str) -> usize {
    use ergon_sdk::api::conformance::{check_component, check_response};
    let (code, doc) = get(api, "/openapi.json");
    assert_eq!(code, 200);
    assert_eq!(doc, serde_json::to_value(ergon_sdk::api::openapi()).unwrap(), "the served document is ergon-api's");
    let mut n = 0;
    let mut ok = |template: &str, path: &str, status: u16| -> serde_json::Value {
        let (code, v) = get(api, path);
        assert_eq!(code, status, "GET {path}: {v}");
        check_response(&doc, template, "get", status, &v).unwrap_or_else(|e| panic!("{e}\n{v}"));
        n += 1;
        v
    };
    ok("/status", "/status", 200);
    ok("/poai", "/poai", 200);
    let blocks = ok("/blocks", "/blocks?from=1&limit=200", 200);
    for b in blocks["blocks"].as_array().unwrap().iter().filter(|b| b["transactions"] != 0) {
        ok("/blocks/{hash}", &format!("/blocks/{}", b["id"].as_str().unwrap()), 200);
        ok("/accounts/{address}", &format!("/accounts/{}", b["miner"].as_str().unwrap()), 200);
    }
    let providers = ok("/providers", "/providers", 200);
    for p in providers["providers"].as_array().unwrap() {
        ok("/providers/{address}", &format!("/providers/{}", p["address"].as_str().unwrap()), 200);
    }
    let jobs = ok("/jobs", "/jobs", 200);
    assert!(!jobs["jobs"].as_array().unwrap().is_empty(), "jobs to check");
    for j in jobs["jobs"].as_array().unwrap() {
        ok("/jobs/{id}", &format!("/jobs/{}", j["id"].as_str().unwrap()), 200);
    }
    // Refusals are ErrorBody, with the statuses the document gives.
    let zeros = "0".repeat(64);
    ok("/jobs/{id}", "/jobs/zz", 400);
    ok("/jobs/{id}", &format!("/jobs/{zeros}"), 404);
    ok("/blocks/{hash}", &format!("/blocks/{zeros}"), 404);
    ok("/transactions/{id}", &format!("/transactions/{zeros}"), 404);
    let stranger = ergon_types::SecretKey::from_bytes(&[7; 32]).public().address();
    ok("/providers/{address}", &format!("/providers/{stranger}"), 404);
    ok("/blocks", "/blocks?from=abc", 400);
    // A route that does not exist is an ErrorBody as well, pointing at the document.
    let (code, v) = get(api, "/no/such/route");
    assert_eq!(code, 404);
    check_component(&doc, "ErrorBody", &v).unwrap_or_else(|e| panic!("{e}"));
    assert!(v["error"].as_str().unwrap().contains("/openapi.json"), "{v}");
    // The event stream's data, replayed from block 1.
    let events = read_events(api, "1", 60);
    for (kind, data) in &events {
        let component = match kind.as_str() {
            "hello" => "Hello",
            "block" => "BlockSummary",
            "tx" => "TxEvent",
            "decision" => "DecisionEvent",
            "reorg" => "Reorg",
            other => panic!("an undocumented event {other}"),
        };
        check_component(&doc, component, data).unwrap_or_else(|e| panic!("event {kind}: {e}\n{data}"));
    }
    n + events.len()
}

/// Up to `count` events (type, data) from `/events` with `Last-Event-ID: resume`.
fn read_events(api: &str, resume: &str, count: usize) -> Vec<(String, serde_json::Value)> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET /events HTTP/1.1\r\nHost: {api}\r\nLast-Event-ID: {resume}\r\n\r\n").as_bytes()).unwrap();
    let (mut out, mut kind) = (vec![], String::new());
    for line in BufReader::new(s).lines() {
        let Ok(line) = line else { break };
        if let Some(k) = line.strip_prefix("event: ") {
            kind = k.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            out.push((kind.clone(), serde_json::from_str(d).unwrap_or_else(|e| panic!("event data {d}: {e}"))));
            if out.len() >= count {
                break;
            }
        }
    }
    out
}

/// Runs the Python client's check against the devnet; panics on its failure.
fn python_client(url: &str, key: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let numpy = Command::new("python3").args(["-c", "import numpy"]).output().is_ok_and(|o| o.status.success());
    if !numpy {
        assert!(
            std::env::var("ERGON_PYTHON_TESTS").as_deref() != Ok("1"),
            "the Python client test is required, but python3 with numpy is missing"
        );
        println!("skipped: the Python client (missing python3 with numpy)");
        return;
    }
    let out = Command::new("python3")
        .arg(root.join("clients/python/tests/devnet_check.py"))
        .arg(url)
        .arg(key)
        .env("PYTHONPATH", root.join("clients/python"))
        .env("ERGON_BIN", env!("CARGO_BIN_EXE_ergon"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    println!("python client: {report}");
    assert!(out.status.success(), "the Python client failed: {report}{}", String::from_utf8_lossy(&out.stderr));
}
