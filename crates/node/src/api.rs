//! The HTTP JSON API and Prometheus metrics.
//!
//! `GET /status`, `GET /blocks?from=&limit=`, `GET /blocks/{hash}`, `GET /accounts/{address}`,
//! `POST /transactions` (`{"tx": "<hex of the signed transaction's canonical encoding>"}`),
//! `GET /providers`, `GET /providers/{address}` (offer, bond, leases, why it is or is not
//! getting work, its decision log), `GET /jobs`, `GET /jobs/{id}` (every task's state, why a
//! queued one waits, the job's decision log), `GET /metrics`. Errors are JSON `{"error": "..."}` with a 4xx status and a readable reason.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ergon_chain::{Refusal, TxStatus};
use ergon_market::{Decision, Job, Provider, Subject, TaskState};
use ergon_types::{Address, Block, Canonical, Hash, SignedTransaction, TxKind};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::Shared;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/blocks", get(blocks))
        .route("/blocks/{hash}", get(block))
        .route("/accounts/{address}", get(account))
        .route("/transactions", post(submit))
        .route("/transactions/{id}", get(transaction))
        .route("/providers", get(providers))
        .route("/providers/{address}", get(provider))
        .route("/jobs", get(jobs))
        .route("/jobs/{id}", get(job))
        .route("/blobs/{name}", get(get_blob).put(put_blob))
        .route("/poai", get(poai))
        .route("/metrics", get(metrics))
        // Blobs and dispute evidence are bigger than axum's 2 MB default.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

/// Largest request body: a 256 MiB sealed blob.
const MAX_BODY_BYTES: usize = 256 << 20;

fn error(code: StatusCode, why: impl Into<String>) -> Response {
    (code, Json(json!({ "error": why.into() }))).into_response()
}

/// Proof of AI as this node runs it: its validator's engine and judgments, its provider's
/// answering and what that costs (`docs/poai.md` §6).
async fn poai(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(crate::poai::view(&s))
}

async fn status(State(s): State<Arc<Shared>>) -> Json<Value> {
    let node = s.lock();
    let tip = node.chain.tip_header();
    let uptime = s.started.elapsed().as_secs_f64().max(1e-9);
    Json(json!({
        "chain_id": node.chain.chain_id().to_hex(),
        "height": node.chain.height(),
        "tip": node.chain.tip().to_hex(),
        "tip_time_ms": tip.time_ms,
        "next_difficulty": node.chain.expected_difficulty(tip),
        "cumulative_work": node.chain.tip_work().to_string(),
        // Supply: circulating must equal minted − burned (every account, stake, unbonding coin,
        // escrow and bond counted).
        "minted": node.chain.ledger().minted,
        "burned": node.chain.ledger().burned,
        "circulating": node.chain.ledger().circulating().to_string(),
        "useful_work_fraction": node.chain.useful_work_fraction(),
        "peers": s.peers(),
        "peer_id": s.net.get().map(|n| n.peer_id.to_string()),
        "mempool": node.mempool.len(),
        "storage_error": s.storage_error(),
        // What a restart resumes from: the last checkpoint (0: none yet), and why the latest
        // one could not be written, if it could not.
        "checkpoint_height": node.store.checkpoint_height(),
        "checkpoint_failure": node.store.checkpoint_failure,
        "mining": s.mining,
        "blocks_mined": s.stats.blocks_mined.load(Ordering::Relaxed),
        "blocks_imported": s.stats.blocks_imported.load(Ordering::Relaxed),
        "blocks_rejected": s.stats.blocks_rejected.load(Ordering::Relaxed),
        "mining_rate_macs_per_s": s.stats.macs_mined.load(Ordering::Relaxed) as f64 / uptime,
        "macs_mined": s.stats.macs_mined.load(Ordering::Relaxed),
        "macs_mined_on_jobs": s.stats.macs_mined_on_jobs.load(Ordering::Relaxed),
        "uptime_s": uptime,
    }))
}

fn summary(b: &Block) -> Value {
    let h = &b.header;
    json!({
        "height": h.height,
        "id": h.id().to_hex(),
        "parent": h.parent.to_hex(),
        "time_ms": h.time_ms,
        "miner": h.miner.to_string(),
        "difficulty": h.difficulty,
        "job": if h.job == Hash::ZERO { Value::Null } else { Value::String(h.job.to_hex()) },
        "work": { "m": h.work.m, "k": h.work.k, "n": h.work.n },
        "transactions": b.txs.len(),
    })
}

fn tx_json(t: &SignedTransaction) -> Value {
    let (kind, detail) = match &t.tx.kind {
        TxKind::Transfer { to, amount } => ("transfer", json!({ "to": to.to_string(), "amount": amount })),
        TxKind::Stake { amount } => ("stake", json!({ "amount": amount })),
        TxKind::Unstake { amount } => ("unstake", json!({ "amount": amount })),
        TxKind::RegisterProvider { offer, stake } => (
            "register_provider",
            json!({ "stake": stake, "price_per_gmac": offer.price_per_gmac, "slots": offer.slots,
                    "int8_gmacs": offer.profile.int8_gmacs, "memory_mib": offer.profile.memory_mib }),
        ),
        TxKind::Deregister => ("deregister", json!({})),
        TxKind::SubmitJob { spec } => (
            "submit_job",
            json!({ "job_kind": spec.kind.name(), "shards": spec.shards.len(), "escrow": spec.max_cost(),
                    "max_price_per_gmac": spec.max_price_per_gmac }),
        ),
        TxKind::CancelJob { job } => ("cancel_job", json!({ "job": job.to_hex() })),
        TxKind::PostResult { job, shard, result } => {
            ("post_result", json!({ "job": job.to_hex(), "shard": shard, "result": result.to_hex() }))
        }
        TxKind::Dispute { job, shard, replica, evidence } => (
            "dispute",
            json!({ "job": job.to_hex(), "shard": shard, "replica": replica, "row": evidence.row, "col": evidence.col }),
        ),
        TxKind::ReleaseLease { job, shard } => ("release_lease", json!({ "job": job.to_hex(), "shard": shard })),
        TxKind::ChallengeResult { job, shard, replica, rows } => {
            ("challenge_result", json!({ "job": job.to_hex(), "shard": shard, "replica": replica, "rows": rows }))
        }
        TxKind::RevealRows { job, shard, replica, rows } => (
            "reveal_rows",
            json!({ "job": job.to_hex(), "shard": shard, "replica": replica,
                    "rows": rows.iter().map(|r| r.index).collect::<Vec<_>>() }),
        ),
        TxKind::Judge { provider, gmacs, reason } => {
            ("judge", json!({ "provider": provider.to_string(), "gmacs": gmacs, "reason": reason }))
        }
        TxKind::DoubtResult { job, shard, expected } => {
            ("doubt_result", json!({ "job": job.to_hex(), "shard": shard, "expected": expected.to_hex() }))
        }
        TxKind::JudgeMemory { provider, memory_mib, reason } => {
            ("judge_memory", json!({ "provider": provider.to_string(), "memory_mib": memory_mib, "reason": reason }))
        }
        TxKind::ProveFraud { answer, .. } => {
            let (provider, round, part) = match &answer.body {
                ergon_types::poai::PoaiBody::Answer(a) => (a.provider.address().to_string(), a.round, a.part),
                _ => (String::new(), 0, 0),
            };
            ("prove_fraud", json!({ "provider": provider, "round": round, "part": part }))
        }
    };
    json!({ "id": t.id().to_hex(), "from": t.tx.sender().to_string(), "nonce": t.tx.nonce, "fee": t.tx.fee,
            "kind": kind, "detail": detail })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    from: Option<u64>,
    limit: Option<u64>,
}

async fn blocks(State(s): State<Arc<Shared>>, Query(r): Query<Range>) -> Json<Value> {
    let node = s.lock();
    let from = r.from.unwrap_or(1).max(1);
    let limit = r.limit.unwrap_or(20).min(200);
    let list: Vec<Value> = (from..from.saturating_add(limit))
        .map_while(|h| node.chain.active_id(h))
        .filter_map(|id| node.chain.block(&id).map(summary))
        .collect();
    Json(json!({ "height": node.chain.height(), "blocks": list }))
}

async fn block(State(s): State<Arc<Shared>>, Path(hash): Path<String>) -> Response {
    let Ok(id) = Hash::from_hex(&hash) else {
        return error(StatusCode::BAD_REQUEST, format!("{hash:?} is not a 64-digit hex block id"));
    };
    let node = s.lock();
    match node.chain.block(&id) {
        Some(b) => {
            let mut v = summary(b);
            v["txs"] = Value::Array(b.txs.iter().map(tx_json).collect());
            v["state_root"] = Value::String(b.header.state_root.to_hex());
            v["nonce"] = json!(b.header.nonce);
            v["received_ms"] = json!(node.seen_ms.get(&id));
            Json(v).into_response()
        }
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
    Json(json!({
        "address": a.to_string(), "balance": acc.balance, "nonce": acc.nonce, "pending": node.mempool.pending_from(&a),
        "next_nonce": node.mempool.next_nonce(&node.chain, &a), "stake": acc.stake,
        "unbonding": acc.unbonding.iter().map(|(h, v)| json!({"release_height": h, "amount": v})).collect::<Vec<_>>(),
    }))
    .into_response()
}

fn decisions(list: Vec<Decision>) -> Value {
    list.into_iter().map(|d| json!({ "height": d.height, "text": d.text })).collect()
}

fn provider_json(p: &Provider, params: &ergon_market::MarketParams) -> Value {
    let hw = &p.offer.profile;
    let memory_floor_mib = params.memory_floor_mib;
    json!({
        "address": p.owner.to_string(), "status": format!("{:?}", p.status).to_lowercase(),
        "price_per_gmac": p.offer.price_per_gmac, "slots": p.offer.slots, "bond": p.bond,
        "encryption_key": ergon_types::hex::encode(&p.offer.encryption_key),
        "profile": { "cpu_cores": hw.cpu_cores, "memory_mib": hw.memory_mib, "gpu_model": hw.gpu_model,
                     "gpu_memory_mib": hw.gpu_memory_mib, "int8_gmacs": hw.int8_gmacs },
        "leases": p.leases.iter().map(|(j, s, r)| json!({ "job": j.to_hex(), "shard": s, "replica": r })).collect::<Vec<_>>(),
        "results_in_challenge_window": p.pending, "completed": p.completed, "failed": p.failed,
        "reputation_permille": p.reputation(), "challenge_permille": p.challenge_permille(),
        // Why all its ML results are checked by another provider (null: trusted, sampled only).
        "probation": p.probation(params), "vouched_results": p.vouched, "earned": p.earned, "slashed": p.slashed,
        "bond_locked": p.locked, "leases_given_back": p.released,
        // What matching uses: the validators' judgments, never the claim in the profile.
        "verified_gmacs": p.verified_gmacs(), "absent": p.absent(),
        "judgments": p.judged.iter().map(|(v, (stake, g, at))| json!({ "validator": v.to_string(), "stake": stake, "gmacs": g, "height": at })).collect::<Vec<_>>(),
        // Main memory matching uses: what memory challenges showed, or the claim up to the
        // unchecked floor.
        "verified_memory_mib": p.verified_memory_mib(memory_floor_mib), "memory_floor_mib": memory_floor_mib,
        "memory_judgments": p.judged_memory.iter().map(|(v, (stake, mib, at))| json!({ "validator": v.to_string(), "stake": stake, "memory_mib": mib, "height": at })).collect::<Vec<_>>(),
    })
}

fn job_json(j: &Job) -> Value {
    let r = j.replicas();
    let slots = j.slots() as usize;
    let tasks: Vec<Value> = j
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (state, detail) = match &t.state {
                TaskState::Queued => ("queued", json!({ "why": t.waiting.map(|w| w.to_string()) })),
                TaskState::Leased { provider, price, since, deadline } => (
                    "leased",
                    json!({ "provider": provider.to_string(), "price_per_gmac": price, "since": since,
                            "deadline": deadline, "blocks_mined": t.mined, "burned_by_blocks": t.prepaid_burn,
                            "collateral": t.collateral }),
                ),
                TaskState::Posted { provider, price, result, settles_at } => (
                    "posted",
                    json!({ "provider": provider.to_string(), "price_per_gmac": price, "result": result.to_hex(),
                            "settles_at": settles_at }),
                ),
                TaskState::Settled { provider, result, paid } => {
                    ("settled", json!({ "provider": provider.to_string(), "result": result.to_hex(), "paid": paid }))
                }
                TaskState::Cancelled => ("cancelled", json!({})),
                TaskState::Spare => ("spare", json!({})),
            };
            let replica = i % slots;
            // The check replica (ML jobs): another provider's run of the shard, called when its
            // providers are on probation or sampled (`ergon_market::checks`).
            let check = j.check_replica() == Some(replica as u8);
            // A client's doubt, on the check replica: the result it expects (`TxKind::DoubtResult`).
            let doubt = t.doubt.map(|h| h.to_hex());
            json!({ "shard": i / slots, "replica": replica, "check": check, "state": state, "detail": detail,
                    "doubt": doubt })
        })
        .collect();
    json!({
        "id": j.id.to_hex(), "client": j.client.to_string(), "kind": j.spec.kind.name(),
        "status": format!("{:?}", j.status).to_lowercase(), "submitted_at": j.submitted_at,
        "finished_at": j.finished_at, "shards": j.spec.shards.len(), "replicas": r,
        "macs_per_shard": j.spec.macs_per_shard, "max_price_per_gmac": j.spec.max_price_per_gmac,
        "escrow": j.escrow, "paid": j.paid, "burned": j.burned, "tasks": tasks,
    })
}

async fn providers(State(s): State<Arc<Shared>>) -> Json<Value> {
    let node = s.lock();
    let params = node.chain.params().market();
    let list: Vec<Value> = node.chain.ledger().market.providers().map(|p| provider_json(p, &params)).collect();
    Json(json!({ "providers": list }))
}

async fn provider(State(s): State<Arc<Shared>>, Path(address): Path<String>) -> Response {
    let a: Address = match address.parse() {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let node = s.lock();
    let market = &node.chain.ledger().market;
    let params = node.chain.params().market();
    let mut v =
        market.provider(&a).map(|p| provider_json(p, &params)).unwrap_or_else(|| json!({ "address": a.to_string() }));
    v["outlook"] = json!(market.provider_outlook(&a, &params));
    v["decisions"] = decisions(market.decisions(&Subject::Provider(a)));
    Json(v).into_response()
}

async fn jobs(State(s): State<Arc<Shared>>) -> Json<Value> {
    let node = s.lock();
    let list: Vec<Value> = node
        .chain
        .ledger()
        .market
        .jobs()
        .map(|j| {
            json!({ "id": j.id.to_hex(), "client": j.client.to_string(), "kind": j.spec.kind.name(),
                    "status": format!("{:?}", j.status).to_lowercase(), "escrow": j.escrow })
        })
        .collect();
    Json(json!({ "jobs": list }))
}

async fn job(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Ok(id) = Hash::from_hex(&id) else {
        return error(StatusCode::BAD_REQUEST, format!("{id:?} is not a 64-digit hex job id"));
    };
    let node = s.lock();
    let market = &node.chain.ledger().market;
    match market.job(&id) {
        Some(j) => {
            let mut v = job_json(j);
            v["decisions"] = decisions(market.decisions(&Subject::Job(id)));
            Json(v).into_response()
        }
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
            (StatusCode::CREATED, Json(json!({ "name": Hash(name).to_hex(), "bytes": declared }))).into_response()
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Submit {
    tx: String,
}

/// The request body as exactly one JSON object of `T`'s fields: serde's derive would also take
/// an array of the values in order, and unknown fields are refused too.
fn strict_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    if !value.is_object() {
        return Err("the body must be a JSON object".into());
    }
    serde_json::from_value(value).map_err(|e| format!("bad request body: {e}"))
}

async fn submit(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let body: Submit = match strict_json(&body) {
        Ok(b) => b,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    if body.tx.len() > 2 * SignedTransaction::MAX_BYTES || body.tx.len() % 2 != 0 {
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
            (StatusCode::ACCEPTED, Json(json!({ "id": id.to_hex(), "status": "pending" }))).into_response()
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
        TxStatus::Pending => Json(json!({ "id": id.to_hex(), "status": "pending" })).into_response(),
        TxStatus::Dropped(why) => {
            Json(json!({ "id": id.to_hex(), "status": "dropped", "reason": why })).into_response()
        }
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
