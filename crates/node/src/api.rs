//! The HTTP JSON API and Prometheus metrics.
//!
//! `GET /status`, `GET /blocks?from=&limit=`, `GET /blocks/{hash}`, `GET /accounts/{address}`,
//! `POST /transactions` (`{"tx": "<hex of the signed transaction's canonical encoding>"}`),
//! `GET /providers`, `GET /providers/{address}` (offer, bond, leases, why it is or is not
//! getting work, its decision log), `GET /jobs`, `GET /jobs/{id}` (every task's state, why a
//! queued one waits, the job's decision log), `GET /metrics`. Errors are JSON `{"error": "..."}` with a 4xx status and a readable reason.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ergon_api as api;
use ergon_chain::{Refusal, TxStatus};
use ergon_market::{Decision, Job, JobStatus, Provider, ProviderStatus, Subject, TaskState};
use ergon_types::{Address, Block, Canonical, Hash, SignedTransaction, TxKind};
use futures::StreamExt as _;
use serde::Deserialize;

use crate::Shared;

pub fn router(shared: Arc<Shared>) -> Router {
    use ergon_api::routes as r;
    Router::new()
        .route(r::STATUS, get(status))
        .route(r::BLOCKS, get(blocks))
        .route(r::BLOCK, get(block))
        .route(r::ACCOUNT, get(account))
        .route(r::TRANSACTIONS, post(submit))
        .route(r::TRANSACTION, get(transaction))
        .route(r::PROVIDERS, get(providers))
        .route(r::PROVIDER, get(provider))
        .route(r::JOBS, get(jobs))
        .route(r::JOB, get(job))
        .route(r::BLOB, get(get_blob).put(put_blob))
        .route(r::POAI, get(poai))
        .route(r::METRICS, get(metrics))
        .route(r::EVENTS, get(crate::events::events))
        .route(r::OPENAPI, get(openapi))
        .route(r::DASHBOARD, get(crate::dashboard::page))
        // Anything else is an ErrorBody too, not an empty 404.
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route: /openapi.json lists every one") })
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "this route does not take that method: see /openapi.json")
        })
        // Blobs and dispute evidence are bigger than axum's 2 MB default.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

/// Largest request body: a 256 MiB sealed blob.
const MAX_BODY_BYTES: usize = 256 << 20;

pub(crate) fn error(code: StatusCode, why: impl Into<String>) -> Response {
    (code, Json(api::ErrorBody { error: why.into() })).into_response()
}

/// The OpenAPI document, generated once from `ergon-api`'s types.
async fn openapi() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| ergon_api::openapi().to_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")));
    ([(axum::http::header::CONTENT_TYPE, "application/json")], doc.as_str()).into_response()
}

/// Proof of AI as this node runs it: its validator's engine and judgments, its provider's
/// answering and what that costs (`docs/poai.md` §6).
async fn poai(State(s): State<Arc<Shared>>) -> Json<api::poai::PoaiView> {
    Json(crate::poai::view(&s))
}

async fn status(State(s): State<Arc<Shared>>) -> Json<api::chain::Status> {
    let node = s.lock();
    let tip = node.chain.tip_header();
    let uptime = s.started.elapsed().as_secs_f64().max(1e-9);
    let ledger = node.chain.ledger();
    Json(api::chain::Status {
        chain_id: node.chain.chain_id().to_hex(),
        height: node.chain.height(),
        tip: node.chain.tip().to_hex(),
        tip_time_ms: tip.time_ms,
        next_difficulty: node.chain.expected_difficulty(tip),
        cumulative_work: node.chain.tip_work().to_string(),
        // Supply: circulating must equal minted − burned (every account, stake, unbonding coin,
        // escrow and bond counted).
        minted: ledger.minted,
        burned: ledger.burned,
        circulating: ledger.circulating().to_string(),
        useful_work_fraction: node.chain.useful_work_fraction(),
        peers: s.peers(),
        peer_id: s.net.get().map(|n| n.peer_id.to_string()),
        mempool: node.mempool.len(),
        storage_error: s.storage_error(),
        // What a restart resumes from: the last checkpoint (0: none yet), and why the latest
        // one could not be written, if it could not.
        checkpoint_height: node.store.checkpoint_height(),
        checkpoint_failure: node.store.checkpoint_failure.clone(),
        mining: s.mining,
        blocks_mined: s.stats.blocks_mined.load(Ordering::Relaxed),
        blocks_imported: s.stats.blocks_imported.load(Ordering::Relaxed),
        blocks_rejected: s.stats.blocks_rejected.load(Ordering::Relaxed),
        mining_rate_macs_per_s: s.stats.macs_mined.load(Ordering::Relaxed) as f64 / uptime,
        macs_mined: s.stats.macs_mined.load(Ordering::Relaxed),
        macs_mined_on_jobs: s.stats.macs_mined_on_jobs.load(Ordering::Relaxed),
        uptime_s: uptime,
        energy: {
            let e = ledger.market.energy();
            let this_node = api::energy::NodeEnergy::of_cpu_ms(
                s.stats.cpu_ms_on_jobs.load(Ordering::Relaxed),
                s.stats.cpu_ms_on_filler.load(Ordering::Relaxed),
            );
            api::energy::EnergyStatus::new(
                (e.results, e.cpu_ms, e.macs),
                node.chain.tip_work(),
                node.chain.tip_useful_work(),
                this_node,
            )
        },
    })
}

pub(crate) fn summary(b: &Block) -> api::chain::BlockSummary {
    let h = &b.header;
    api::chain::BlockSummary {
        height: h.height,
        id: h.id().to_hex(),
        parent: h.parent.to_hex(),
        time_ms: h.time_ms,
        miner: h.miner.to_string(),
        difficulty: h.difficulty,
        job: (h.job != Hash::ZERO).then(|| h.job.to_hex()),
        work: api::chain::Work { m: h.work.m, k: h.work.k, n: h.work.n },
        transactions: b.txs.len(),
    }
}

pub(crate) fn tx_json(t: &SignedTransaction) -> api::chain::Tx {
    use api::chain::TxBody as B;
    let body = match &t.tx.kind {
        TxKind::Transfer { to, amount } => B::Transfer { to: to.to_string(), amount: *amount },
        TxKind::Stake { amount } => B::Stake { amount: *amount },
        TxKind::Unstake { amount } => B::Unstake { amount: *amount },
        TxKind::RegisterProvider { offer, stake } => B::RegisterProvider {
            stake: *stake,
            price_per_gmac: offer.price_per_gmac,
            slots: offer.slots,
            int8_gmacs: offer.profile.int8_gmacs,
            memory_mib: offer.profile.memory_mib,
        },
        TxKind::Deregister => B::Deregister {},
        TxKind::SubmitJob { spec } => B::SubmitJob {
            job_kind: spec.kind.name().to_string(),
            shards: spec.shards.len(),
            escrow: spec.max_cost(),
            max_price_per_gmac: spec.max_price_per_gmac,
        },
        TxKind::CancelJob { job } => B::CancelJob { job: job.to_hex() },
        TxKind::PostResult { job, shard, result, cpu_ms } => {
            B::PostResult { job: job.to_hex(), shard: *shard, result: result.to_hex(), cpu_ms: *cpu_ms }
        }
        TxKind::Dispute { job, shard, replica, evidence } => {
            B::Dispute { job: job.to_hex(), shard: *shard, replica: *replica, row: evidence.row, col: evidence.col }
        }
        TxKind::ReleaseLease { job, shard } => B::ReleaseLease { job: job.to_hex(), shard: *shard },
        TxKind::ChallengeResult { job, shard, replica, rows } => {
            B::ChallengeResult { job: job.to_hex(), shard: *shard, replica: *replica, rows: rows.clone() }
        }
        TxKind::RevealRows { job, shard, replica, rows } => B::RevealRows {
            job: job.to_hex(),
            shard: *shard,
            replica: *replica,
            rows: rows.iter().map(|r| r.index).collect(),
        },
        TxKind::Judge { provider, gmacs, reason } => {
            B::Judge { provider: provider.to_string(), gmacs: *gmacs, reason: reason.clone() }
        }
        TxKind::DoubtResult { job, shard, expected } => {
            B::DoubtResult { job: job.to_hex(), shard: *shard, expected: expected.to_hex() }
        }
        TxKind::JudgeMemory { provider, memory_mib, reason } => {
            B::JudgeMemory { provider: provider.to_string(), memory_mib: *memory_mib, reason: reason.clone() }
        }
        TxKind::ProveFraud { answer, .. } => {
            let (provider, round, part) = match &answer.body {
                ergon_types::poai::PoaiBody::Answer(a) => (a.provider.address().to_string(), a.round, a.part),
                _ => (String::new(), 0, 0),
            };
            B::ProveFraud { provider, round, part }
        }
    };
    api::chain::Tx { id: t.id().to_hex(), from: t.tx.sender().to_string(), nonce: t.tx.nonce, fee: t.tx.fee, body }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    from: Option<u64>,
    limit: Option<u64>,
}

async fn blocks(State(s): State<Arc<Shared>>, r: Result<Query<Range>, QueryRejection>) -> Response {
    // A bad query string is an ErrorBody like every other refusal (axum's own is plain text).
    let Query(r) = match r {
        Ok(q) => q,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, format!("from and limit must be whole numbers: {}", e.body_text()))
        }
    };
    let node = s.lock();
    let from = r.from.unwrap_or(1).max(1);
    let limit = r.limit.unwrap_or(20).min(200);
    let blocks = (from..from.saturating_add(limit))
        .map_while(|h| node.chain.active_id(h))
        .filter_map(|id| node.chain.block(&id).map(summary))
        .collect();
    Json(api::chain::Blocks { height: node.chain.height(), blocks }).into_response()
}

async fn block(State(s): State<Arc<Shared>>, Path(hash): Path<String>) -> Response {
    let Ok(id) = Hash::from_hex(&hash) else {
        return error(StatusCode::BAD_REQUEST, format!("{hash:?} is not a 64-digit hex block id"));
    };
    let node = s.lock();
    match node.chain.block(&id) {
        Some(b) => Json(api::chain::Block {
            summary: summary(b),
            txs: b.txs.iter().map(tx_json).collect(),
            state_root: b.header.state_root.to_hex(),
            nonce: b.header.nonce,
            received_ms: node.seen_ms.get(&id).copied(),
        })
        .into_response(),
        None => error(StatusCode::NOT_FOUND, "no such block"),
    }
}

async fn account(State(s): State<Arc<Shared>>, Path(address): Path<String>) -> Response {
    let a: Address = match address.parse() {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let node = s.lock();
    let acc = node.chain.ledger().account(&a);
    Json(api::chain::Account {
        address: a.to_string(),
        balance: acc.balance,
        nonce: acc.nonce,
        pending: node.mempool.pending_from(&a),
        next_nonce: node.mempool.next_nonce(&node.chain, &a),
        stake: acc.stake,
        unbonding: acc
            .unbonding
            .iter()
            .map(|(h, v)| api::chain::Unbonding { release_height: *h, amount: *v })
            .collect(),
    })
    .into_response()
}

fn decisions(list: Vec<Decision>) -> Vec<api::market::Decision> {
    list.into_iter().map(|d| api::market::Decision { height: d.height, text: d.text }).collect()
}

fn provider_json(
    p: &Provider,
    market: &ergon_market::Market,
    params: &ergon_market::MarketParams,
) -> api::market::Provider {
    use api::market as m;
    let hw = &p.offer.profile;
    let status = match p.status {
        ProviderStatus::Active => m::ProviderStatus::Active,
        ProviderStatus::Leaving => m::ProviderStatus::Leaving,
        ProviderStatus::Demoted => m::ProviderStatus::Demoted,
        ProviderStatus::Gone => m::ProviderStatus::Gone,
    };
    m::Provider {
        address: p.owner.to_string(),
        status,
        price_per_gmac: p.offer.price_per_gmac,
        slots: p.offer.slots,
        bond: p.bond,
        encryption_key: ergon_types::hex::encode(&p.offer.encryption_key),
        profile: m::Profile {
            cpu_cores: hw.cpu_cores,
            memory_mib: hw.memory_mib,
            gpu_model: hw.gpu_model.clone(),
            gpu_memory_mib: hw.gpu_memory_mib,
            int8_gmacs: hw.int8_gmacs,
        },
        leases: p.leases.iter().map(|(j, s, r)| m::Lease { job: j.to_hex(), shard: *s, replica: *r }).collect(),
        results_in_challenge_window: p.pending,
        completed: p.completed,
        failed: p.failed,
        reputation_permille: p.reputation(),
        challenge_permille: p.challenge_permille(),
        // Why all its ML results are checked by another provider (null: trusted, sampled only).
        probation: p.probation(params),
        vouched_results: p.vouched,
        earned: p.earned,
        slashed: p.slashed,
        bond_locked: p.locked,
        leases_given_back: p.released,
        // What matching uses: the validators' judgments, never the claim in the profile.
        verified_gmacs: p.verified_gmacs(),
        absent: p.absent(),
        judgments: p
            .judged
            .iter()
            .map(|(v, (stake, g, at))| m::ThroughputJudgment {
                validator: v.to_string(),
                stake: *stake,
                gmacs: *g,
                height: *at,
            })
            .collect(),
        // Main memory matching uses: what memory challenges showed, or the claim up to the
        // unchecked floor.
        verified_memory_mib: p.verified_memory_mib(params.memory_floor_mib),
        memory_floor_mib: params.memory_floor_mib,
        memory_judgments: p
            .judged_memory
            .iter()
            .map(|(v, (stake, mib, at))| m::MemoryJudgment {
                validator: v.to_string(),
                stake: *stake,
                memory_mib: *mib,
                height: *at,
            })
            .collect(),
        outlook: market.provider_outlook(&p.owner, params),
    }
}

fn task_json(t: &ergon_market::Task) -> api::market::TaskState {
    use api::market::TaskState as S;
    match &t.state {
        TaskState::Queued => S::Queued { why: t.waiting.map(|w| w.to_string()) },
        TaskState::Leased { provider, price, since, deadline } => S::Leased {
            provider: provider.to_string(),
            price_per_gmac: *price,
            since: *since,
            deadline: *deadline,
            blocks_mined: t.mined,
            burned_by_blocks: t.prepaid_burn,
            collateral: t.collateral,
        },
        TaskState::Posted { provider, price, result, settles_at } => S::Posted {
            provider: provider.to_string(),
            price_per_gmac: *price,
            result: result.to_hex(),
            settles_at: *settles_at,
        },
        TaskState::Settled { provider, result, paid } => {
            S::Settled { provider: provider.to_string(), result: result.to_hex(), paid: *paid }
        }
        TaskState::Cancelled => S::Cancelled {},
        TaskState::Spare => S::Spare {},
    }
}

fn job_status(j: &Job) -> api::market::JobStatus {
    match j.status {
        JobStatus::Open => api::market::JobStatus::Open,
        JobStatus::Cancelled => api::market::JobStatus::Cancelled,
        JobStatus::Done => api::market::JobStatus::Done,
    }
}

/// A job at a glance: its money, its tasks by state, and why the first queued one waits.
fn job_summary(j: &Job) -> api::market::JobSummary {
    let mut progress = std::collections::BTreeMap::<String, usize>::new();
    for t in &j.tasks {
        *progress.entry(t.state.name().to_string()).or_default() += 1;
    }
    let waiting = j.tasks.iter().find(|t| t.state == TaskState::Queued).and_then(|t| t.waiting);
    api::market::JobSummary {
        id: j.id.to_hex(),
        client: j.client.to_string(),
        kind: j.spec.kind.name().to_string(),
        status: job_status(j),
        escrow: j.escrow,
        // Never None: the market admits only jobs whose maximum cost fits.
        escrowed_at_submission: j.spec.max_cost().unwrap_or(j.escrow),
        paid: j.paid,
        burned: j.burned,
        shards: j.spec.shards.len(),
        replicas: j.replicas(),
        submitted_at: j.submitted_at,
        finished_at: j.finished_at,
        progress,
        waiting: waiting.map(|w| w.to_string()),
        energy: api::energy::Energy::of_cpu_ms(j.tasks.iter().map(|t| t.cpu_ms as u64).sum()),
    }
}

fn job_json(j: &Job, decisions: Vec<api::market::Decision>) -> api::market::Job {
    let slots = j.slots() as usize;
    let tasks = j
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let replica = i % slots;
            api::market::Task {
                shard: (i / slots) as u16,
                replica: replica as u8,
                // The check replica (ML jobs): another provider's run of the shard, called when
                // its providers are on probation or sampled (`ergon_market::checks`).
                check: j.check_replica() == Some(replica as u8),
                state: task_json(t),
                // A client's doubt, on the check replica: the result it expects.
                doubt: t.doubt.map(|h| h.to_hex()),
                cpu_ms: t.cpu_ms,
            }
        })
        .collect();
    api::market::Job {
        summary: job_summary(j),
        macs_per_shard: j.spec.macs_per_shard,
        max_price_per_gmac: j.spec.max_price_per_gmac,
        tasks,
        decisions,
    }
}

async fn providers(State(s): State<Arc<Shared>>) -> Json<api::market::Providers> {
    let node = s.lock();
    let params = node.chain.params().market();
    let market = &node.chain.ledger().market;
    let providers = market.providers().map(|p| provider_json(p, market, &params)).collect();
    Json(api::market::Providers { providers })
}

async fn provider(State(s): State<Arc<Shared>>, Path(address): Path<String>) -> Response {
    let a: Address = match address.parse() {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let node = s.lock();
    let market = &node.chain.ledger().market;
    let params = node.chain.params().market();
    match market.provider(&a) {
        Some(p) => Json(api::market::ProviderDetail {
            provider: provider_json(p, market, &params),
            decisions: decisions(market.decisions(&Subject::Provider(a))),
        })
        .into_response(),
        None => error(StatusCode::NOT_FOUND, format!("{a} is {}", market.provider_outlook(&a, &params))),
    }
}

async fn jobs(State(s): State<Arc<Shared>>) -> Json<api::market::Jobs> {
    let node = s.lock();
    let mut jobs: Vec<api::market::JobSummary> = node.chain.ledger().market.jobs().map(job_summary).collect();
    // Newest first.
    jobs.sort_by(|a, b| b.submitted_at.cmp(&a.submitted_at).then_with(|| a.id.cmp(&b.id)));
    Json(api::market::Jobs { jobs })
}

async fn job(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Ok(id) = Hash::from_hex(&id) else {
        return error(StatusCode::BAD_REQUEST, format!("{id:?} is not a 64-digit hex job id"));
    };
    let node = s.lock();
    let market = &node.chain.ledger().market;
    match market.job(&id) {
        Some(j) => Json(job_json(j, decisions(market.decisions(&Subject::Job(id))))).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such job (submitted jobs appear once their block is accepted; finished jobs leave the state archive_after_blocks, 1,000 by default, after they finish)"),
    }
}

fn blob_name(name: &str) -> Option<[u8; 32]> {
    Hash::from_hex(name).map(|h| h.0).ok()
}

const BAD_BLOB_NAME: &str = "blob name must be 64 hex digits";

/// Blobs travel as raw bytes (`application/octet-stream`): they are the bulk of a job's data,
/// and hex in JSON would double them and cost a parse on each side.
/// A sealed blob, streamed: judged on its header before the body is read, then written one piece
/// at a time (see `crate::uploads`), so the request holds at most a piece in memory.
async fn put_blob(State(s): State<Arc<Shared>>, Path(name): Path<String>, body: axum::body::Body) -> Response {
    use crate::uploads::UploadRefusal;
    let Some(name) = blob_name(&name) else { return error(StatusCode::BAD_REQUEST, BAD_BLOB_NAME) };
    let refused = |r: UploadRefusal| match r {
        UploadRefusal::Malformed(why) => error(StatusCode::BAD_REQUEST, why),
        UploadRefusal::Refused(why) => error(StatusCode::UNPROCESSABLE_ENTITY, why),
        UploadRefusal::Busy { why, retry_after_s } => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, why);
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, retry_after_s.into());
            r
        }
    };
    let mut stream = body.into_data_stream();
    let (mut buf, mut upload, mut received) = (Vec::new(), None, 0u64);
    loop {
        let chunk = match stream.next().await {
            Some(Ok(c)) => c,
            Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("the upload broke off: {e}")),
            None => break,
        };
        received += chunk.len() as u64;
        buf.extend_from_slice(&chunk);
        if upload.is_none() && buf.len() >= ergon_jobdata::seal::HEADER_BYTES {
            match s.begin_upload(name, &buf) {
                Ok(u) => upload = Some(u),
                Err(r) => {
                    drain(stream).await;
                    return refused(r);
                }
            }
        }
        let Some(mut u) = upload.take() else { continue };
        if received > u.declared_bytes() {
            return error(
                StatusCode::BAD_REQUEST,
                format!("more than the {} bytes its header implies", u.declared_bytes()),
            );
        }
        // Whole pieces go to disk as they complete (off the async workers).
        let mut at = 0;
        while let Some(len) = u.next_len().filter(|&len| buf.len() - at >= len) {
            let piece = buf[at..at + len].to_vec();
            at += len;
            let (back, stored) = match tokio::task::spawn_blocking(move || {
                let r = u.push(&piece);
                (u, r)
            })
            .await
            {
                Ok(done) => done,
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("storing a piece failed: {e}")),
            };
            if let Err(why) = stored {
                return error(StatusCode::UNPROCESSABLE_ENTITY, why);
            }
            u = back;
        }
        upload = Some(u);
        buf.drain(..at);
    }
    let Some(u) = upload else {
        return error(StatusCode::BAD_REQUEST, "shorter than a blob header");
    };
    let declared = u.declared_bytes();
    if received != declared {
        return error(StatusCode::BAD_REQUEST, format!("{received} bytes, but its header implies {declared}"));
    }
    match tokio::task::spawn_blocking(move || u.finish()).await {
        Ok(Ok(())) => {
            (StatusCode::CREATED, Json(api::chain::BlobStored { name: Hash(name).to_hex(), bytes: declared }))
                .into_response()
        }
        Ok(Err(why)) => error(StatusCode::UNPROCESSABLE_ENTITY, why),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("publishing the blob failed: {e}")),
    }
}

/// Bytes of a refused upload still read (and thrown away) before the refusal is sent, for at
/// most `DRAIN_SECONDS`: a client that writes its whole body before reading gets the reason
/// rather than a reset connection, up to this size. Beyond it the connection closes.
const DRAIN_BYTES: u64 = 16 << 20;
const DRAIN_SECONDS: u64 = 5;

async fn drain(mut stream: axum::body::BodyDataStream) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(DRAIN_SECONDS), async {
        let mut read = 0u64;
        while read < DRAIN_BYTES {
            match stream.next().await {
                Some(Ok(c)) => read += c.len() as u64,
                _ => break,
            }
        }
    })
    .await;
}

/// A sealed blob, streamed piece by piece: from this node's disk, or fetched from its peers.
async fn get_blob(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let Some(name) = blob_name(&name) else { return error(StatusCode::BAD_REQUEST, BAD_BLOB_NAME) };
    // The first piece says how many follow; a blob nobody has is a 404 before any byte is sent.
    let (total, first) = match crate::blobs::blob_piece_anywhere(&s, name, 0).await {
        Ok(found) => found,
        Err(why) => return error(StatusCode::NOT_FOUND, why),
    };
    let rest = futures::stream::unfold((s, 1u32), move |(s, i)| async move {
        if i >= total {
            return None;
        }
        let piece = match crate::blobs::blob_piece_anywhere(&s, name, i).await {
            Ok((t, _)) if t != total => Err(std::io::Error::other("the blob changed while it was read")),
            Ok((_, bytes)) => Ok(axum::body::Bytes::from(bytes)),
            Err(why) => Err(std::io::Error::other(why)),
        };
        Some((piece, (s, i + 1)))
    });
    let length = ergon_jobdata::seal::declared_len(&first).map_or(0, |(_, sealed)| sealed);
    let body = futures::stream::once(async move { Ok(axum::body::Bytes::from(first)) }).chain(rest);
    let headers = [
        (axum::http::header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (axum::http::header::CONTENT_LENGTH, length.to_string()),
    ];
    (headers, axum::body::Body::from_stream(body)).into_response()
}

/// The request body as exactly one JSON object of `T`'s fields: serde's derive would also take
/// an array of the values in order, and unknown fields are refused too.
fn strict_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    if !value.is_object() {
        return Err("the body must be a JSON object".into());
    }
    serde_json::from_value(value).map_err(|e| format!("bad request body: {e}"))
}

async fn submit(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let body: api::chain::SubmitTx = match strict_json(&body) {
        Ok(b) => b,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    if body.tx.len() > 2 * SignedTransaction::MAX_BYTES || !body.tx.len().is_multiple_of(2) {
        return error(StatusCode::BAD_REQUEST, "tx must be the hex of one signed transaction");
    }
    let Some(bytes) = ergon_types::hex::decode(&body.tx) else {
        return error(StatusCode::BAD_REQUEST, "tx is not hex");
    };
    let tx = match SignedTransaction::decode(&bytes) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let mut node = s.lock();
    let node = &mut *node;
    match node.mempool.admit(&node.chain, tx) {
        Ok(id) => {
            s.send(ergon_net::Command::PublishTx(bytes));
            let state =
                api::chain::TxState { id: id.to_hex(), status: api::chain::TxPoolStatus::Pending, reason: None };
            (StatusCode::ACCEPTED, Json(state)).into_response()
        }
        Err(why) => {
            let status = match why {
                Refusal::Invalid(_) | Refusal::FeeTooLow { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                Refusal::TooManyFromSender { .. } => StatusCode::TOO_MANY_REQUESTS,
                Refusal::Full { .. } => StatusCode::SERVICE_UNAVAILABLE,
            };
            error(status, format!("refused: {why}"))
        }
    }
}

/// Where a transaction stands in this node's pool: pending, or dropped with the reason.
async fn transaction(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Ok(id) = Hash::from_hex(&id) else { return error(StatusCode::BAD_REQUEST, "id must be 64 hex digits") };
    match s.lock().mempool.status(&id) {
        TxStatus::Pending => {
            Json(api::chain::TxState { id: id.to_hex(), status: api::chain::TxPoolStatus::Pending, reason: None })
                .into_response()
        }
        TxStatus::Dropped(why) => Json(api::chain::TxState {
            id: id.to_hex(),
            status: api::chain::TxPoolStatus::Dropped,
            reason: Some(why.to_string()),
        })
        .into_response(),
        TxStatus::Unknown => error(
            StatusCode::NOT_FOUND,
            "not in this node's pool: mined (see the sender's nonce), never received, or dropped long ago",
        ),
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let node = s.lock();
    let st = &s.stats;
    let body = format!(
        "# HELP ergon_height Height of the active chain.\n# TYPE ergon_height gauge\nergon_height {}\n\
         # HELP ergon_mempool_transactions Transactions waiting for a block.\n# TYPE ergon_mempool_transactions gauge\nergon_mempool_transactions {}\n\
         # HELP ergon_blocks_mined_total Blocks this node mined.\n# TYPE ergon_blocks_mined_total counter\nergon_blocks_mined_total {}\n\
         # HELP ergon_blocks_imported_total Blocks accepted from peers.\n# TYPE ergon_blocks_imported_total counter\nergon_blocks_imported_total {}\n\
         # HELP ergon_blocks_rejected_total Blocks from peers refused as invalid.\n# TYPE ergon_blocks_rejected_total counter\nergon_blocks_rejected_total {}\n\
         # HELP ergon_mined_multiply_adds_total Multiply-adds spent mining.\n# TYPE ergon_mined_multiply_adds_total counter\nergon_mined_multiply_adds_total {}\n\
         # HELP ergon_mined_multiply_adds_on_jobs_total Multiply-adds spent mining on leased job shards.\n# TYPE ergon_mined_multiply_adds_on_jobs_total counter\nergon_mined_multiply_adds_on_jobs_total {}\n\
         # HELP ergon_useful_work_fraction Share of the chain's work done on paid jobs.\n# TYPE ergon_useful_work_fraction gauge\nergon_useful_work_fraction {}\n\
         # HELP ergon_peers Connected peers.\n# TYPE ergon_peers gauge\nergon_peers {}\n\
         # HELP ergon_market_providers Registered providers.\n# TYPE ergon_market_providers gauge\nergon_market_providers {}\n\
         # HELP ergon_market_queued_tasks Job tasks waiting for a provider.\n# TYPE ergon_market_queued_tasks gauge\nergon_market_queued_tasks {}\n\
         # HELP ergon_market_open_leases Leases not yet posted or expired.\n# TYPE ergon_market_open_leases gauge\nergon_market_open_leases {}\n\
         # HELP ergon_market_held Coins held by the market (escrow and bonds).\n# TYPE ergon_market_held gauge\nergon_market_held {}\n",
        node.chain.height(),
        node.mempool.len(),
        st.blocks_mined.load(Ordering::Relaxed),
        st.blocks_imported.load(Ordering::Relaxed),
        st.blocks_rejected.load(Ordering::Relaxed),
        st.macs_mined.load(Ordering::Relaxed),
        st.macs_mined_on_jobs.load(Ordering::Relaxed),
        node.chain.useful_work_fraction(),
        s.peers(),
        node.chain.ledger().market.providers().count(),
        node.chain.ledger().market.queued(),
        node.chain.ledger().market.open_leases(),
        node.chain.ledger().market.held(),
    );
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
