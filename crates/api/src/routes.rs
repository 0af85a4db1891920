//! Every route the node serves, and the OpenAPI document generated from them and the types.
//!
//! The node builds its router from these path constants, and [`ALL`] must list exactly the
//! document's paths (tested), so no route is served undocumented. The functions below exist only
//! to carry each route's `#[utoipa::path]` description; the handlers live in the node.
#![allow(dead_code)]

use utoipa::OpenApi;

use crate::chain::{Account, BlobStored, Block, BlockSummary, Blocks, Status, SubmitTx, Tx, TxBody, TxState, Work};
use crate::events::{DecisionEvent, Hello, Reorg, TxEvent};
use crate::market::{Job, JobSummary, Jobs, Provider, ProviderDetail, Providers, Task, TaskState};
use crate::poai::PoaiView;
use crate::ErrorBody;

pub const STATUS: &str = "/status";
pub const BLOCKS: &str = "/blocks";
pub const BLOCK: &str = "/blocks/{hash}";
pub const ACCOUNT: &str = "/accounts/{address}";
pub const TRANSACTIONS: &str = "/transactions";
pub const TRANSACTION: &str = "/transactions/{id}";
pub const PROVIDERS: &str = "/providers";
pub const PROVIDER: &str = "/providers/{address}";
pub const JOBS: &str = "/jobs";
pub const JOB: &str = "/jobs/{id}";
pub const BLOB: &str = "/blobs/{name}";
pub const POAI: &str = "/poai";
pub const METRICS: &str = "/metrics";
pub const EVENTS: &str = "/events";
pub const OPENAPI: &str = "/openapi.json";
pub const DASHBOARD: &str = "/";

/// Every path the node serves.
pub const ALL: &[&str] = &[
    STATUS,
    BLOCKS,
    BLOCK,
    ACCOUNT,
    TRANSACTIONS,
    TRANSACTION,
    PROVIDERS,
    PROVIDER,
    JOBS,
    JOB,
    BLOB,
    POAI,
    METRICS,
    EVENTS,
    OPENAPI,
    DASHBOARD,
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ergon node API",
        description = "What an Ergon node serves: the chain, the compute market, Proof of AI, sealed job blobs, metrics, an event stream and the dashboard. Errors are `ErrorBody` with a 4xx or 5xx status and a readable reason."
    ),
    paths(
        status, blocks, block, account, submit_transaction, transaction, providers, provider, jobs, job, get_blob,
        put_blob, poai, metrics, events, openapi_json, dashboard
    ),
    components(schemas(ErrorBody, crate::energy::Energy, crate::energy::NodeEnergy, BlockSummary, Work, Tx, TxBody, Task, TaskState, JobSummary, Provider, Hello, TxEvent, DecisionEvent, Reorg)),
    tags(
        (name = "chain", description = "Blocks, accounts and transactions"),
        (name = "market", description = "Providers and jobs, with every decision's reason"),
        (name = "poai", description = "Proof of AI: challenges, judgments and hidden audits"),
        (name = "blobs", description = "Sealed job inputs and results, moved peer to peer"),
        (name = "node", description = "Metrics, the event stream, this document and the dashboard")
    )
)]
struct Doc;

/// The OpenAPI 3.1 document of the node's API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

#[utoipa::path(get, path = "/status", tag = "chain", responses((status = 200, body = Status)))]
fn status() {}

#[utoipa::path(get, path = "/blocks", tag = "chain",
    params(("from" = Option<u64>, Query, description = "first height (default 1)"),
           ("limit" = Option<u64>, Query, description = "how many (default 20, at most 200)")),
    responses((status = 200, body = Blocks), (status = 400, body = ErrorBody)))]
fn blocks() {}

#[utoipa::path(get, path = "/blocks/{hash}", tag = "chain",
    params(("hash" = String, Path, description = "the block's id, 64 hex digits")),
    responses((status = 200, body = Block), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
fn block() {}

#[utoipa::path(get, path = "/accounts/{address}", tag = "chain",
    params(("address" = String, Path, description = "an `erg…` address")),
    responses((status = 200, body = Account), (status = 400, body = ErrorBody)))]
fn account() {}

#[utoipa::path(post, path = "/transactions", tag = "chain", request_body = SubmitTx,
    responses((status = 202, description = "admitted to the pool and gossiped", body = TxState),
              (status = 400, description = "not a transaction", body = ErrorBody),
              (status = 422, description = "cannot apply: the chain's reason (balance, nonce, key, stake, fee)", body = ErrorBody),
              (status = 429, description = "the sender's pending cap", body = ErrorBody),
              (status = 503, description = "the pool is full", body = ErrorBody)))]
fn submit_transaction() {}

#[utoipa::path(get, path = "/transactions/{id}", tag = "chain",
    params(("id" = String, Path, description = "the transaction's id")),
    responses((status = 200, description = "pending, or dropped with its reason", body = TxState),
              (status = 400, body = ErrorBody), (status = 404, description = "not in this node's pool", body = ErrorBody)))]
fn transaction() {}

#[utoipa::path(get, path = "/providers", tag = "market", responses((status = 200, body = Providers)))]
fn providers() {}

#[utoipa::path(get, path = "/providers/{address}", tag = "market",
    params(("address" = String, Path, description = "the provider's `erg…` address")),
    responses((status = 200, body = ProviderDetail), (status = 400, body = ErrorBody),
              (status = 404, description = "never registered: how to", body = ErrorBody)))]
fn provider() {}

#[utoipa::path(get, path = "/jobs", tag = "market", responses((status = 200, body = Jobs)))]
fn jobs() {}

#[utoipa::path(get, path = "/jobs/{id}", tag = "market",
    params(("id" = String, Path, description = "the job's id, 64 hex digits")),
    responses((status = 200, body = Job), (status = 400, body = ErrorBody),
              (status = 404, description = "not (or no longer) in the state", body = ErrorBody)))]
fn job() {}

#[utoipa::path(get, path = "/blobs/{name}", tag = "blobs",
    params(("name" = String, Path, description = "the blob's name, 64 hex digits")),
    responses((status = 200, description = "the sealed blob, streamed", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 400, body = ErrorBody), (status = 404, description = "no node has it", body = ErrorBody)))]
fn get_blob() {}

#[utoipa::path(put, path = "/blobs/{name}", tag = "blobs",
    params(("name" = String, Path, description = "the blob's name, 64 hex digits")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "a sealed blob (header, then its pieces)"),
    responses((status = 201, body = BlobStored), (status = 400, body = ErrorBody),
              (status = 422, description = "refused: not for a job this node knows, or over a bound", body = ErrorBody),
              (status = 429, description = "the uploader's rate; see Retry-After", body = ErrorBody)))]
fn put_blob() {}

#[utoipa::path(get, path = "/poai", tag = "poai", responses((status = 200, body = PoaiView)))]
fn poai() {}

#[utoipa::path(get, path = "/metrics", tag = "node",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
fn metrics() {}

#[utoipa::path(get, path = "/events", tag = "node",
    params(("Last-Event-ID" = Option<u64>, Header, description = "resume after this height (at most 200 blocks back)")),
    responses((status = 200, description = "server-sent events: `hello` (Hello), `block` (BlockSummary), `tx` (TxEvent), `decision` (DecisionEvent), `reorg` (Reorg); each event's id is its height", content_type = "text/event-stream", body = String),
              (status = 503, description = "too many open streams", body = ErrorBody)))]
fn events() {}

#[utoipa::path(get, path = "/openapi.json", tag = "node",
    responses((status = 200, description = "this document", content_type = "application/json", body = Object)))]
fn openapi_json() {}

#[utoipa::path(get, path = "/", tag = "node",
    responses((status = 200, description = "the dashboard: one page, with everything it needs inside", content_type = "text/html", body = String)))]
fn dashboard() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_exactly_the_served_paths() {
        let doc = openapi();
        let mut documented: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        let mut served = ALL.to_vec();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
    }
}
