//! The HTTP side: one node's API, its answers as JSON, its refusals as typed errors.

use std::fmt::Display;
use std::time::Duration;

use ergon_types::{Canonical, Hash, SecretKey, Transaction, TxKind};
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
        let status = self.get("/status")?;
        let chain = Hash::from_hex(status["chain_id"].as_str().unwrap_or(""))
            .map_err(|e| self.bad(format!("chain id: {e}")))?;
        let nonce = self.get(&format!("/accounts/{from}"))?["next_nonce"]
            .as_u64()
            .ok_or_else(|| self.bad("no next_nonce for the account".into()))?;
        let tx = Transaction { chain, from: key.public(), nonce, fee, kind }.sign(key);
        let hex = ergon_types::hex::encode(&tx.encode());
        self.post("/transactions", &serde_json::json!({ "tx": hex }))?;
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
