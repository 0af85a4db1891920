//! The one boundary for the wire: what an Ergon node's HTTP API sends and accepts.
//!
//! Every response and request body is a type here, serialised by the node and deserialised by
//! the SDK (`ergon-sdk`) from the same definition, so a renamed or retyped field is a compile
//! error on both sides rather than a silent default. [`openapi()`] generates the OpenAPI 3.1
//! document the node serves at `/openapi.json` from these types and the route list in
//! [`routes`]; a node test checks that every route it serves is in the document and that what it
//! serves validates against it.
//!
//! Responses may gain fields: clients ignore the ones they do not know (so no response type
//! denies unknown fields), while the node's test refuses any field the document does not
//! describe. Request bodies are strict: an unknown field is a 400.
//!
//! Conventions: hashes and ids are 64 lowercase hex digits; addresses are `erg…`; amounts are
//! whole coins (u64), except `circulating`, a u128 sent as a decimal string; heights are block
//! heights, `*_ms` Unix milliseconds. Errors are [`ErrorBody`] with a 4xx or 5xx status.

pub mod chain;
pub mod conformance;
pub mod energy;
pub mod events;
pub mod market;
pub mod poai;
pub mod routes;

pub use routes::openapi;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every refusal and failure: a readable reason, with the HTTP status saying whose fault it is
/// (400 malformed, 404 unknown, 422 refused by the chain's rules, 429 a sender's or uploader's
/// cap, 503 the node is busy or full).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}
