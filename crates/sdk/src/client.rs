//! The HTTP side: one node's API, its answers as JSON, its refusals as typed errors.

use std::fmt::Display;
use std::time::Duration;

use ergon_api::chain::{Account, Block, Blocks, Status, TxState};
use ergon_api::market::{Job, Jobs, ProviderDetail, Providers};
use ergon_api::poai::PoaiView;
use ergon_types::{Address, Canonical, Hash, SecretKey, Transaction, TxKind};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Largest answer read: a sealed result blob of an 8192² int32 product (256 MiB) and more.
pub const MAX_RESPONSE_BYTES: u64 = 300 << 20;

/// Why a request to a node failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    /// No answer: the node is down, unreachable, or too slow.
    #[error("node at {node}: {reason}")]
    Unreachable { node: String, reason: String },
    /// The node answered with an error status and its reason (the API's `error` field).
    #[error("{message}")]
    Refused { status: u16, message: String },
    /// The node answered something this client cannot read.
    #[error("node at {node}: {what}")]
    BadAnswer { node: String, what: String },
    /// What the caller asked for cannot be sent as it is (nothing was asked of the node, or
    /// the node's answer shows it names nothing).
    #[error("{0}")]
    BadRequest(String),
}

impl ApiError {
    /// The HTTP status of a refusal (404 for something the node does not know, 400 or 422 for
    /// a bad request, 429 for too many).
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client of one node's HTTP API.
#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// Held from reading an account's next nonce to posting the transaction, so threads
    /// sharing a client (and its clones) never sign two transactions at one nonce.
    submitting: std::sync::Arc<std::sync::Mutex<()>>,
}

impl Client {
    /// A client of the node whose API listens at `node` (`127.0.0.1:8080`, or a full
    /// `http://` URL).
    pub fn new(node: impl Display) -> Self {
        let node = node.to_string();
        let base = if node.starts_with("http://") || node.starts_with("https://") {
            node.trim_end_matches('/').to_string()
        } else {
            format!("http://{node}")
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Client { base, agent, submitting: Default::default() }
    }

    /// The node's base URL.
    pub fn node(&self) -> &str {
        &self.base
    }

    /// The job a printed id names: a whole 64-digit id as it is, or a unique prefix of one the
    /// node knows (`ergon job list` and the devnet print 12 digits).
    pub fn job_id(&self, text: &str) -> Result<Hash, ApiError> {
        let text = text.trim().to_ascii_lowercase();
        if let Ok(id) = Hash::from_hex(&text) {
            return Ok(id);
        }
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::BadRequest(format!("{text:?} is not a job id (hex digits, or a prefix of them)")));
        }
        let jobs = self.jobs()?;
        let matching: Vec<&str> = jobs.jobs.iter().map(|j| j.id.as_str()).filter(|id| id.starts_with(&text)).collect();
        match matching.as_slice() {
            [one] => Hash::from_hex(one).map_err(|e| self.bad(format!("job id {one:?}: {e}"))),
            [] => Err(ApiError::BadRequest(format!("no job this node knows starts with {text}"))),
            many => Err(ApiError::BadRequest(format!("{text} is the start of {} jobs; give more digits", many.len()))),
        }
    }

    /// `GET path`, read as the API type `T` (`ergon_api`): a field missing or of the wrong type
    /// is a [`ApiError::BadAnswer`] naming it, never a default.
    pub fn typed<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let v = self.get(path)?;
        serde_json::from_value(v).map_err(|e| self.bad(format!("GET {path}: {e}")))
    }

    pub fn status(&self) -> Result<Status, ApiError> {
        self.typed(ergon_api::routes::STATUS)
    }

    pub fn account(&self, address: &Address) -> Result<Account, ApiError> {
        self.typed(&format!("/accounts/{address}"))
    }

    /// Up to `limit` (at most 200) blocks of the active chain from height `from`.
    pub fn blocks(&self, from: u64, limit: u64) -> Result<Blocks, ApiError> {
        self.typed(&format!("/blocks?from={from}&limit={limit}"))
    }

    pub fn block(&self, id: &Hash) -> Result<Block, ApiError> {
        self.typed(&format!("/blocks/{}", id.to_hex()))
    }

    /// Where a transaction stands in the node's pool (404 once mined or forgotten).
    pub fn transaction(&self, id: &Hash) -> Result<TxState, ApiError> {
        self.typed(&format!("/transactions/{}", id.to_hex()))
    }

    pub fn providers(&self) -> Result<Providers, ApiError> {
        self.typed(ergon_api::routes::PROVIDERS)
    }

    /// A provider with its decision log (404 with how to register for one that never did).
    pub fn provider(&self, address: &Address) -> Result<ProviderDetail, ApiError> {
        self.typed(&format!("/providers/{address}"))
    }

    /// Every job the state holds, newest first.
    pub fn jobs(&self) -> Result<Jobs, ApiError> {
        self.typed(ergon_api::routes::JOBS)
    }

    pub fn job(&self, id: &Hash) -> Result<Job, ApiError> {
        self.typed(&format!("/jobs/{}", id.to_hex()))
    }

    pub fn poai(&self) -> Result<PoaiView, ApiError> {
        self.typed(ergon_api::routes::POAI)
    }

    pub fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.json("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.json("POST", path, Some(&body.to_string()))
    }

    /// A JSON request by method name; an error status becomes [`ApiError::Refused`] with the
    /// node's reason.
    pub fn json(&self, method: &str, path: &str, body: Option<&str>) -> Result<Value, ApiError> {
        let (status, bytes) = self.send(method, path, "application/json", body.map(str::as_bytes))?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| self.bad(format!("not JSON ({e})")))?;
        if status >= 400 {
            let message = v["error"].as_str().unwrap_or("request failed").to_string();
            return Err(ApiError::Refused { status, message });
        }
        Ok(v)
    }

    /// Stores a sealed blob under `name` (the node checks its author, lease, size and quota).
    pub fn put_blob(&self, name: &Hash, sealed: &[u8]) -> Result<(), ApiError> {
        let path = format!("/blobs/{}", name.to_hex());
        let (status, bytes) = self.send("PUT", &path, "application/octet-stream", Some(sealed))?;
        refusal(status, &bytes)
    }

    /// A sealed blob's bytes, from the node or (through it) its peers.
    pub fn get_blob(&self, name: &Hash) -> Result<Vec<u8>, ApiError> {
        let path = format!("/blobs/{}", name.to_hex());
        let (status, bytes) = self.send("GET", &path, "application/octet-stream", None)?;
        refusal(status, &bytes)?;
        Ok(bytes)
    }

    /// Signs `kind` with `key` at the account's next nonce (as the node counts it, pending
    /// transactions included) and submits it, one at a time per client and its clones. Returns the transaction id and the nonce used.
    pub fn submit(&self, key: &SecretKey, fee: u64, kind: TxKind) -> Result<(Hash, u64), ApiError> {
        let from = key.public().address();
        let _one_at_a_time = self.submitting.lock().unwrap_or_else(|p| p.into_inner());
        let chain = Hash::from_hex(&self.status()?.chain_id).map_err(|e| self.bad(format!("chain id: {e}")))?;
        let nonce = self.account(&from)?.next_nonce;
        let tx = Transaction { chain, from: key.public(), nonce, fee, kind }.sign(key);
        let body = ergon_api::chain::SubmitTx { tx: ergon_types::hex::encode(&tx.encode()) };
        let body = serde_json::to_string(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        self.json("POST", ergon_api::routes::TRANSACTIONS, Some(&body))?;
        Ok((tx.id(), nonce))
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), ApiError> {
        let url = format!("{}{path}", self.base);
        let sent = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("PUT", b) => self.agent.put(&url).content_type(content_type).send(b.unwrap_or(&[])),
            ("POST", b) => self.agent.post(&url).content_type(content_type).send(b.unwrap_or(&[])),
            _ => return Err(self.bad(format!("method {method} is not part of the API"))),
        };
        let mut resp = sent.map_err(|e| ApiError::Unreachable { node: self.base.clone(), reason: e.to_string() })?;
        let status = resp.status().as_u16();
        let bytes = resp.body_mut().with_config().limit(MAX_RESPONSE_BYTES).read_to_vec().map_err(|e| {
            ApiError::Unreachable { node: self.base.clone(), reason: format!("reading the answer: {e}") }
        })?;
        Ok((status, bytes))
    }

    fn bad(&self, what: String) -> ApiError {
        ApiError::BadAnswer { node: self.base.clone(), what }
    }
}

/// An error status's reason, from a JSON body if it has one.
fn refusal(status: u16, bytes: &[u8]) -> Result<(), ApiError> {
    if status < 400 {
        return Ok(());
    }
    let v: Value = serde_json::from_slice(bytes).unwrap_or_default();
    let message = v["error"].as_str().unwrap_or("blob request failed").to_string();
    Err(ApiError::Refused { status, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_address_becomes_a_base_url() {
        assert_eq!(Client::new("127.0.0.1:8080").node(), "http://127.0.0.1:8080");
        assert_eq!(Client::new("http://example:9/").node(), "http://example:9");
    }

    #[test]
    fn a_dead_node_is_unreachable_and_a_refusal_keeps_its_status_and_reason() {
        // Nothing listens on a port just released.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = Client::new(format!("127.0.0.1:{port}")).get("/status").unwrap_err();
        assert!(matches!(err, ApiError::Unreachable { .. }), "{err:?}");
        assert_eq!(err.status(), None);
        let body = br#"{"error":"nonce 3 already used"}"#;
        assert_eq!(refusal(422, body), Err(ApiError::Refused { status: 422, message: "nonce 3 already used".into() }));
        assert_eq!(refusal(200, b""), Ok(()));
    }
}
