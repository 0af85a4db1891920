//! The market part of `ergon devnet`: node 0 is a staked validator (Proof of AI and hidden
//! audits), every other node a provider offering this machine's measured throughput, shared
//! between them; a client in this process keeps a matmul, a training and an inference job in
//! flight at all times (`ergon_sdk::workload`), and each one's end is printed as it happens.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use ergon_jobdata::encryption_public;
use ergon_sdk::api::chain::Status;
use ergon_sdk::workload::{Report, Workload};
use ergon_sdk::Client;
use ergon_types::{HardwareProfile, JobKind, Offer, SecretKey, TxKind};

/// Each provider's asking price (per G MAC); the client pays up to `MAX_PRICE`.
const PRICE: u64 = 100;
const MAX_PRICE: u64 = 1_000;
/// What a provider bonds, in multiples of the genesis minimum.
const BOND_MINIMUMS: u64 = 2;
/// Memory offered: under the devnet's unchecked floor, so no memory fills load the machine.
const MEMORY_MIB: u64 = 512;
/// The providers mine filler blocks this share of their idle time (`--filler-duty-percent`): a
/// chain secured by its jobs spends little on filler, and ASERT sets the difficulty to match.
pub const FILLER_DUTY_PERCENT: u8 = 5;
/// Each product is N×N times N×N, in two shards (68.7 G multiply-adds at 4096).
pub const MATMUL_N: usize = 4096;

/// The devnet's roles: which key is whose, written where the nodes read them.
pub struct Roles {
    pub validator: SecretKey,
    pub providers: Vec<SecretKey>,
    pub client: SecretKey,
    /// A funded key no devnet process uses: the newcomer's own, for jobs by hand or from the
    /// Python client (sharing the workload's would race it for nonces).
    pub user: SecretKey,
}

impl Roles {
    pub fn new(nodes: usize) -> Self {
        let key = |i: u8| SecretKey::from_bytes(&[i; 32]);
        Roles {
            validator: key(1),
            providers: (1..nodes).map(|i| key(i as u8 + 1)).collect(),
            client: key(200),
            user: key(201),
        }
    }

    /// Writes each key to `dir/{name}.key` and returns the validator's and the providers' paths.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, Vec<PathBuf>), String> {
        let write = |name: String, k: &SecretKey| {
            let p = dir.join(format!("{name}.key"));
            std::fs::write(&p, ergon_types::hex::encode(&k.to_bytes())).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok::<_, String>(p)
        };
        write("client".into(), &self.client)?;
        write("user".into(), &self.user)?;
        let v = write("validator".into(), &self.validator)?;
        let p = self
            .providers
            .iter()
            .enumerate()
            .map(|(i, k)| write(format!("provider-{}", i + 1), k))
            .collect::<Result<_, _>>()?;
        Ok((v, p))
    }
}

/// Stakes the validator and registers every provider with a measured offer, through node 0.
pub fn set_up(client: &Client, roles: &Roles, min_stake: u64, min_bond: u64) -> Result<(), String> {
    let submit = |key: &SecretKey, kind: TxKind| client.submit(key, 1, kind).map(|_| ()).map_err(|e| e.to_string());
    submit(&roles.validator, TxKind::Stake { amount: min_stake })?;
    // The providers share this machine: each offers its share of what a challenge measures.
    let measured = crate::market_cmds::measure_gmacs()?;
    let share = (measured / roles.providers.len() as u64 * 3 / 4).max(1);
    let cores = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    for (i, key) in roles.providers.iter().enumerate() {
        let offer = Offer {
            profile: HardwareProfile {
                cpu_cores: cores,
                memory_mib: MEMORY_MIB,
                gpu_model: String::new(),
                gpu_memory_mib: 0,
                int8_gmacs: share,
            },
            price_per_gmac: PRICE + 10 * i as u64,
            slots: 2,
            encryption_key: encryption_public(key),
        };
        submit(key, TxKind::RegisterProvider { offer, stake: min_bond * BOND_MINIMUMS })?;
        println!(
            "  provider {} ({}): offers {share} G int8 MAC/s (this machine measures {measured}, shared), at {} per G MAC",
            i + 1,
            key.public().address(),
            PRICE + 10 * i as u64
        );
    }
    Ok(())
}

/// Client streams (two of products, one each of training and inference) until `stop`; every job's end goes to the returned
/// channel.
pub fn start_client(client: Client, key: SecretKey, stop: Arc<AtomicBool>) -> Receiver<Report> {
    let (tx, rx): (Sender<Report>, Receiver<Report>) = std::sync::mpsc::channel();
    let workload = Workload {
        client,
        key,
        max_price_per_gmac: MAX_PRICE,
        fee: 1,
        matmul_n: MATMUL_N,
        timeout: Duration::from_secs(300),
        model: Default::default(),
    };
    // Two product streams: the machine's idle time is what the useful-work share measures.
    for (stream, kind) in [JobKind::Matmul, JobKind::Matmul, JobKind::Train, JobKind::Infer].into_iter().enumerate() {
        let (w, tx, stop) = (workload.clone(), tx.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seq = stream as u64 * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                if kind == JobKind::Infer && w.model.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
                    std::thread::sleep(Duration::from_millis(500)); // until a model is trained
                    continue;
                }
                seq += 1;
                let report = w.run(kind, seq);
                if report.outcome.is_err() {
                    std::thread::sleep(Duration::from_secs(2));
                }
                if tx.send(report).is_err() {
                    return;
                }
            }
        });
    }
    rx
}

/// Jobs finished so far, by kind (matmul, train, infer).
#[derive(Default)]
pub struct Tally {
    pub done: [u64; 3],
    pub failed: u64,
}

impl Tally {
    /// The line printed for a finished job.
    pub fn record(&mut self, r: &Report) -> String {
        let id = r.id.map_or("-".to_string(), |id| id.to_hex()[..12].to_string());
        let what = match r.kind {
            JobKind::Matmul => "matmul 4096³ in 2 shards",
            JobKind::Train => "train an MLP on the digits",
            JobKind::Infer => "infer the digits with the last model",
        };
        match &r.outcome {
            Ok(line) => {
                self.done[match r.kind {
                    JobKind::Matmul => 0,
                    JobKind::Train => 1,
                    JobKind::Infer => 2,
                }] += 1;
                format!("job {id} {what}: {line} ({:.1} s)", r.seconds)
            }
            Err(why) => {
                self.failed += 1;
                format!("job {id} {what}: not finished: {why}")
            }
        }
    }

    /// The market line under the table: jobs done and the share of the work that was useful.
    pub fn render(&self, statuses: &[Option<Status>]) -> String {
        let sum = |f: fn(&Status) -> u64| statuses.iter().flatten().map(|s| f(s) as f64).sum::<f64>();
        let (mined, on_jobs) = (sum(|s| s.macs_mined), sum(|s| s.macs_mined_on_jobs));
        let chain = statuses.iter().flatten().next().map_or(0.0, |s| s.useful_work_fraction);
        format!(
            "market: {} matmul, {} training, {} inference jobs verified and paid{}; {:.0}% of the multiply-adds mined were clients' jobs ({:.1} of {:.1} G); job blocks hold {:.0}% of the chain's work",
            self.done[0],
            self.done[1],
            self.done[2],
            if self.failed > 0 { format!(", {} not finished", self.failed) } else { String::new() },
            100.0 * on_jobs / mined.max(1.0),
            on_jobs / 1e9,
            mined / 1e9,
            100.0 * chain
        )
    }
}

/// The energy line under the market line: what the nodes' mining threads measured, on jobs and
/// on filler, and what the providers reported on chain.
pub fn energy_line(statuses: &[Option<Status>]) -> String {
    let nodes = statuses.iter().flatten();
    let (jobs, filler) =
        nodes.fold((0.0, 0.0), |(j, f), s| (j + s.energy.this_node.jobs.joules, f + s.energy.this_node.filler.joules));
    let chain = statuses.iter().flatten().next().map(|s| &s.energy);
    let reported = match chain {
        Some(e) if e.results_reported > 0 => format!(
            "; on chain, {} results reported {:.0} J, {:.2} J per G multiply-adds",
            e.results_reported,
            e.jobs.joules,
            e.joules_per_gmac.unwrap_or(0.0)
        ),
        _ => String::new(),
    };
    format!(
        "energy: {:.0} J on clients' jobs, {:.0} J on filler ({:.0}% useful), measured on the nodes' mining threads at {} W per busy thread{reported}",
        jobs,
        filler,
        100.0 * jobs / (jobs + filler).max(1e-9),
        ergon_sdk::api::energy::WATTS_PER_BUSY_THREAD
    )
}
