//! `GET /events` (server-sent events): the data of each event type. Each event's SSE `id` is
//! the height it is about; reconnecting with `Last-Event-ID` resumes after it (up to 200 blocks
//! back).
//!
//! | event      | data                                   |
//! |------------|----------------------------------------|
//! | `hello`    | [`Hello`], when the stream opens       |
//! | `block`    | [`crate::chain::BlockSummary`]          |
//! | `tx`       | [`TxEvent`]: a transaction in that block |
//! | `decision` | [`DecisionEvent`]: what the block decided about a job or provider |
//! | `reorg`    | [`Reorg`]: blocks after `height` are replaced by the `block` events that follow |

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::chain::Tx;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Hello {
    pub height: u64,
    pub tip: String,
    pub chain_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TxEvent {
    pub height: u64,
    #[serde(flatten)]
    pub tx: Tx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    Job,
    Provider,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DecisionEvent {
    pub height: u64,
    pub subject: Subject,
    /// The job's id or the provider's address.
    pub id: String,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Reorg {
    pub height: u64,
}
