//! Proof of AI: the challenge engine that checks each provider's claimed hardware, liveness and
//! honesty, as a deterministic state machine (sans-IO, like `ergon-market`).
//!
//! - [`challenge`]: a compute challenge, derived from a chain seed and the provider's address
//!   (fresh every time, bound to one provider, never reusable), sized to its claimed int8
//!   throughput; answered by a commitment to the product's rows and then the rows the
//!   commitment itself chooses, recomputed exactly by the checker.
//! - [`sprt`]: Wald's sequential probability ratio test on log-time, between "as claimed" and
//!   "the next lower class".
//! - [`engine`]: per-provider state: rounds issued to every provider at once, probes between
//!   them, answers and their arrival times in, judgments (confirm, demote, missed, wrong,
//!   propose slash) with reasons out, and what a validator should hold on chain.
//! - [`fraud`]: a signed wrong answer to a signed round, checkable by anyone (the chain slashes
//!   on it).
//! - [`memory`]: memory challenges: a fill sized to the claimed memory, committed, opened at
//!   blocks chosen later; and the rebuild a provider keeping less needs.
//! - [`memory_engine`]: memory rounds: commitments per epoch, one opening of every committed
//!   provider at once, answers checked and timed, and what a validator holds on chain.
//!
//! The engine is driven by the height, the chain's seeds and the times at which answers arrive;
//! it reads no clock, socket or random source, so a validator node and the simulator
//! (`ergon sim poai`) drive the same code. See `docs/poai.md`.

pub mod challenge;
pub mod engine;
pub mod fraud;
pub mod memory;
pub mod memory_engine;
pub mod sprt;

pub use challenge::{Answer, ComputeChallenge, Opening};
pub use engine::{Engine, Judgment, PoaiParams, Verdict};
pub use fraud::{check_fraud, Fraud};
pub use memory_engine::{MemoryEngine, MemoryJudgment, MemoryVerdict};
pub use sprt::{Sprt, SprtDecision};
