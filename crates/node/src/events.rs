//! `GET /events`: the node's life as server-sent events, for the dashboard and any client that
//! would rather be told than poll.
//!
//! Each event's `id` is the height it is about, so a client that reconnects with
//! `Last-Event-ID` resumes after the last block it saw (up to `REPLAY_BLOCKS` back). Event types:
//! - `hello`: where the chain stands when the stream opens (`height`, `tip`, `chain_id`);
//! - `block`: a block joined the active chain (its `/blocks` summary);
//! - `tx`: a transaction in that block (as in `/blocks/{hash}`: results posted, judgments, jobs
//!   submitted, …), with its `height`;
//! - `decision`: what the block decided about a job or a provider, in words (leases, closures,
//!   settlements, payments, demotions, slashes): `{height, subject, id, text}`;
//! - `reorg`: the chain switched branches; blocks after `height` are replaced by the `block`
//!   events that follow.
//!
//! The stream reads the chain on a short tick rather than hooking every place a block is
//! applied: the node's hot path stays as it is, and a slow client only delays itself. The number
//! of open streams is bounded (`MAX_STREAMS`); past it a client gets 503 with the reason.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use ergon_api::events as api;
use ergon_market::Subject;
use ergon_types::Hash;
use tokio::sync::OwnedSemaphorePermit;

use crate::Shared;

/// Open event streams a node serves at once.
pub const MAX_STREAMS: usize = 64;
/// How far back `Last-Event-ID` may resume.
pub const REPLAY_BLOCKS: u64 = 200;
/// Blocks sent per tick at most, so one far-behind stream cannot hold the node's lock long.
const BLOCKS_PER_TICK: u64 = 32;
const TICK: Duration = Duration::from_millis(250);
/// Block ids remembered to notice a reorg (deeper ones are reported from the oldest kept).
const REMEMBERED: usize = 64;

pub async fn events(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Ok(permit) = s.event_streams.clone().try_acquire_owned() else {
        return crate::api::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this node already serves {MAX_STREAMS} event streams; retry later or poll /status"),
        );
    };
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let cursor = Cursor::open(&s, resume);
    // The permit lives as long as the stream: a closed connection gives its place back.
    let stream = futures::stream::unfold(
        (s, cursor, permit),
        |(s, mut cursor, permit): (_, _, OwnedSemaphorePermit)| async move {
            loop {
                if let Some(e) = cursor.queue.pop_front() {
                    return Some((Ok::<Event, Infallible>(e), (s, cursor, permit)));
                }
                tokio::time::sleep(TICK).await;
                cursor.advance(&s);
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

struct Cursor {
    /// The highest block already sent.
    height: u64,
    /// (height, id) of the blocks sent most recently, oldest first.
    sent: VecDeque<(u64, Hash)>,
    queue: VecDeque<Event>,
}

fn event(kind: &str, height: u64, data: &impl serde::Serialize) -> Event {
    let data = serde_json::to_string(data).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    Event::default().event(kind).id(height.to_string()).data(data)
}

impl Cursor {
    fn open(s: &Shared, resume: Option<u64>) -> Self {
        let node = s.lock();
        let height = node.chain.height();
        let start = resume.map_or(height, |r| r.min(height).max(height.saturating_sub(REPLAY_BLOCKS)));
        let hello = api::Hello { height, tip: node.chain.tip().to_hex(), chain_id: node.chain.chain_id().to_hex() };
        let mut sent = VecDeque::new();
        if let Some(id) = node.chain.active_id(start) {
            sent.push_back((start, id));
        }
        let queue = VecDeque::from([event("hello", height, &hello)]);
        drop(node);
        let mut cursor = Self { height: start, sent, queue };
        cursor.advance(s);
        cursor
    }

    /// Queues what happened since the last tick: a reorg first if the blocks sent are no longer
    /// on the active chain, then each new block with its transactions and decisions.
    fn advance(&mut self, s: &Shared) {
        let node = s.lock();
        let chain = &node.chain;
        let mut reorged = false;
        while let Some(&(h, id)) = self.sent.back() {
            if chain.active_id(h) == Some(id) {
                break;
            }
            self.sent.pop_back();
            reorged = true;
        }
        if reorged {
            // The fork point: the newest block sent that is still active (or the oldest kept).
            let to = self.sent.back().map_or(self.height.saturating_sub(REMEMBERED as u64), |&(h, _)| h);
            self.height = to.min(chain.height());
            self.queue.push_back(event("reorg", self.height, &api::Reorg { height: self.height }));
        }
        let last = chain.height().min(self.height + BLOCKS_PER_TICK);
        for h in self.height + 1..=last {
            let Some(b) = chain.active_id(h).and_then(|id| chain.block(&id)) else { break };
            self.queue.push_back(event("block", h, &crate::api::summary(b)));
            for t in &b.txs {
                self.queue.push_back(event("tx", h, &api::TxEvent { height: h, tx: crate::api::tx_json(t) }));
            }
            for (subject, d) in chain.ledger().market.decisions_at(h) {
                let (subject, id) = match subject {
                    Subject::Job(id) => (api::Subject::Job, id.to_hex()),
                    Subject::Provider(a) => (api::Subject::Provider, a.to_string()),
                };
                let data = api::DecisionEvent { height: d.height, subject, id, text: d.text };
                self.queue.push_back(event("decision", h, &data));
            }
            self.sent.push_back((h, b.header.id()));
            if self.sent.len() > REMEMBERED {
                self.sent.pop_front();
            }
            self.height = h;
        }
    }
}
