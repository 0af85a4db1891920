//! Hidden audits (issue 11, `docs/poai.md` §10): a validator node rents the market like any
//! client, with small paid training jobs whose answer it computed first, and doubts on chain
//! any posted result that differs (`TxKind::DoubtResult`). The check replica then decides: a
//! wrong result the check confirms is not paid, is struck, and is slashed when the checker is
//! trusted.
//!
//! What the provider sees is a client's job: its inputs are sealed to the leaseholder, the data
//! is the digits set any client may train on, and the settings (width, epochs, seed, holdout)
//! are drawn fresh each time, so an answer cached from an earlier job is never the right one.
//! The job's client is the validator's *audit account*, a key derived from the validator's, so
//! nothing on the job names a validator; the account is funded by transfers from the
//! validator, which a provider reading the chain can trace (the cost of this evasion is
//! written down in `docs/poai.md` §10).
//!
//! Matching picks the provider, as for any job: audits fall on providers in proportion to the
//! leases they win, which is what cheating on leases would earn them.
//!
//! The job is followed through this node's own API with `ergon_sdk`, the client code any user
//! runs; the loop is a blocking thread.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ergon_jobdata::Output;
use ergon_market::ProviderStatus;
use ergon_ml::{Exact, MlJob, TrainConfig, TrainSpec, DIGITS_CSV_GZ};
use ergon_sdk::{Client, Event, JobRun};
use ergon_types::{Address, Hash, JobKind, Requirements, SecretKey, TxKind};

use crate::Shared;

/// Audits kept for the API.
const KEPT: usize = 64;
/// Fee of each transaction an audit sends.
const FEE: u64 = 1;
/// How long one audit job may take before the validator gives up on it.
const JOB_TIMEOUT: Duration = Duration::from_secs(600);
/// The audit account is topped up to this many audits' worth at a time (fewer transfers to
/// link it to the validator).
const AUDITS_PER_TOP_UP: u64 = 8;

/// The client key of a validator's audits: derived from the validator's key, so it is stable
/// across restarts without another file, and named nowhere as the validator's.
pub fn audit_key(validator: &SecretKey) -> SecretKey {
    SecretKey::from_bytes(&blake3::derive_key("ergon v1 hidden audit client key", &validator.to_bytes()))
}

/// One audit's outcome, for the API.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    pub at_ms: u64,
    pub job: Option<Hash>,
    pub provider: Option<Address>,
    /// "passed", "caught", "not run" or "failed".
    pub outcome: &'static str,
    pub detail: String,
}

/// The audits a validator ran (bounded).
#[derive(Default)]
pub struct AuditLog {
    records: Mutex<VecDeque<AuditRecord>>,
}

impl AuditLog {
    fn push(&self, r: AuditRecord) {
        tracing::info!(outcome = r.outcome, job = ?r.job.map(|j| j.to_hex()), detail = %r.detail, "hidden audit");
        let mut log = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if log.len() == KEPT {
            log.pop_front();
        }
        log.push_back(r);
    }

    pub fn view(&self, key: &SecretKey) -> ergon_api::poai::Audits {
        let log = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let count = |o: &str| log.iter().filter(|r| r.outcome == o).count();
        let records = log
            .iter()
            .rev()
            .map(|r| ergon_api::poai::AuditRecord {
                at_ms: r.at_ms,
                job: r.job.map(|j| j.to_hex()),
                provider: r.provider.map(|p| p.to_string()),
                outcome: r.outcome.to_string(),
                detail: r.detail.clone(),
            })
            .collect();
        ergon_api::poai::Audits {
            account: audit_key(key).public().address().to_string(),
            passed: count("passed"),
            caught: count("caught"),
            records,
        }
    }
}

/// Runs audits every `every` until the node stops (a blocking thread).
pub fn run(shared: Arc<Shared>, validator: SecretKey, api: SocketAddr, every: Duration) {
    let api = if api.ip().is_unspecified() { SocketAddr::from((Ipv4Addr::LOCALHOST, api.port())) } else { api };
    let client = Client::new(api);
    let log = &shared.poai.validator.as_ref().expect("run on a validator node").audits;
    tracing::info!(every_s = every.as_secs_f64(), account = %audit_key(&validator).public().address(), "hidden audits on");
    let mut next = Instant::now() + every;
    while !shared.stop.load(Ordering::Relaxed) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(250));
            continue;
        }
        next = Instant::now() + every;
        let record = match audit_once(&shared, &client, &validator) {
            Ok(r) => r,
            Err(why) => {
                AuditRecord { at_ms: crate::now_ms(), job: None, provider: None, outcome: "failed", detail: why }
            }
        };
        log.push(record);
    }
}

/// A training job drawn fresh: the digits, at a width, length, seed and holdout a client might
/// pick.
fn draw_job() -> Result<[Vec<u8>; 2], String> {
    let mut r = [0u8; 16];
    getrandom::fill(&mut r).map_err(|e| format!("no OS randomness: {e}"))?;
    let seed = u64::from_le_bytes(r[..8].try_into().expect("8 bytes"));
    let config = TrainConfig {
        hidden: [16, 32, 48, 64][r[8] as usize % 4],
        epochs: 1 + r[9] as usize % 3,
        seed,
        ..TrainConfig::default()
    };
    let spec = TrainSpec { config, holdout: [0, 5, 10][r[10] as usize % 3] };
    Ok([DIGITS_CSV_GZ.to_vec(), spec.encode()])
}

fn audit_once(shared: &Arc<Shared>, client: &Client, validator: &SecretKey) -> Result<AuditRecord, String> {
    let key = audit_key(validator);
    let me = key.public().address();
    let not_run =
        |detail: String| AuditRecord { at_ms: crate::now_ms(), job: None, provider: None, outcome: "not run", detail };
    // The job asks at most what the dearest provider taking leases asks, so it is never left
    // unmatched for its price; matching picks who serves it.
    let price = {
        let node = shared.lock();
        let market = &node.chain.ledger().market;
        market
            .providers()
            .filter(|p| p.status == ProviderStatus::Active && !p.absent())
            .map(|p| p.offer.price_per_gmac)
            .max()
    };
    let Some(price) = price else { return Ok(not_run("no provider takes leases".into())) };
    let requirements = Requirements { min_memory_mib: 0, min_int8_gmacs: 0, gpu: false, replicas: 1, lease_blocks: 20 };
    let plan = ergon_sdk::plan::ml_job(JobKind::Train, draw_job()?, requirements, price, &key)?;
    // The answer, computed here first (exact integers: the bytes any honest provider makes).
    let expected = match &plan.job {
        job @ MlJob::Train { .. } => Output::Bytes(job.run(&mut Exact::default()).map_err(|e| e.to_string())?),
        MlJob::Infer { .. } => return Err("audits are training jobs".into()),
    }
    .commitment();
    let cost = plan.spec.max_cost().ok_or("the audit's cost overflows")?;
    if !fund(shared, client, validator, &me, 2 * cost + 2 * FEE)? {
        return Ok(not_run(format!("the validator cannot fund its audit account {me} ({} needed)", 2 * cost)));
    }
    let (tx, _) = client.submit(&key, FEE, TxKind::SubmitJob { spec: plan.spec }).map_err(|e| e.to_string())?;
    let id = ergon_types::job::job_id(&tx);
    let run = JobRun {
        client: client.clone(),
        key,
        id,
        work: plan.work,
        timeout: JOB_TIMEOUT,
        fee: FEE,
        wait_settlement: true,
        expect: Some(vec![expected]),
        progress_every: ergon_sdk::PROGRESS_EVERY,
    };
    let (mut doubted, mut served) = (None, None);
    let finished = run.follow(&mut |e| match e {
        Event::InputsSent { provider, .. } => served = Some(provider),
        Event::Doubted { provider, posted, .. } => doubted = Some((provider, posted)),
        _ => {}
    });
    let at_ms = crate::now_ms();
    let record = match (finished, doubted) {
        (Ok(f), None) => {
            let right = f.results.first().is_some_and(|r| r.commitment() == expected);
            AuditRecord {
                at_ms,
                job: Some(id),
                provider: served,
                outcome: if right { "passed" } else { "failed" },
                detail: if right {
                    "the result is the one computed here".into()
                } else {
                    "the settled result is not the one computed here".into()
                },
            }
        }
        (finished, Some((provider, posted))) => AuditRecord {
            at_ms,
            job: Some(id),
            provider: Some(provider),
            outcome: "caught",
            detail: format!(
                "{provider} posted {posted}, not {}: doubted on chain, the check replica decides{}",
                expected.to_hex(),
                match finished {
                    Ok(f) if f.results.first().is_some_and(|r| r.commitment() == expected) => {
                        "; the job settled on the right result".to_string()
                    }
                    Ok(_) => "; the job settled on another result".to_string(),
                    Err(why) => format!("; {why}"),
                }
            ),
        },
        (Err(why), None) => AuditRecord { at_ms, job: Some(id), provider: served, outcome: "failed", detail: why },
    };
    Ok(record)
}

/// Tops the audit account up from the validator's balance when it holds less than `needed`,
/// and waits for the transfer to be in a block. False when the validator cannot afford it.
fn fund(
    shared: &Arc<Shared>,
    client: &Client,
    validator: &SecretKey,
    me: &Address,
    needed: u64,
) -> Result<bool, String> {
    let balance = |a: &Address| shared.lock().chain.ledger().account(a).balance;
    if balance(me) >= needed {
        return Ok(true);
    }
    let amount = needed.saturating_mul(AUDITS_PER_TOP_UP);
    if balance(&validator.public().address()) < amount.saturating_add(FEE) {
        return Ok(false);
    }
    client.submit(validator, FEE, TxKind::Transfer { to: *me, amount }).map_err(|e| e.to_string())?;
    let since = Instant::now();
    while balance(me) < needed {
        if since.elapsed() > Duration::from_secs(60) || shared.stop.load(Ordering::Relaxed) {
            return Err("the audit account's top-up is not in a block after 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(true)
}
