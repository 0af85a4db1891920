//! What a verified job cost and did: the receipt a client keeps, from the chain's figures.

use std::collections::BTreeSet;
use std::time::Duration;

use ergon_api::market::{Job, JobStatus, TaskState};
use serde::Serialize;

use crate::Work;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Receipt {
    pub job: String,
    pub kind: String,
    /// Multiply-adds of the settled results.
    pub macs: u64,
    pub shards: usize,
    pub replicas: usize,
    /// Providers whose results settled.
    pub providers: Vec<String>,
    /// Whether the chain has closed the job (paid, burned and refunded are final).
    pub settled: bool,
    pub escrowed: u64,
    pub paid: u64,
    pub burned: u64,
    /// paid + burned, once settled (the transactions' fees come on top).
    pub cost: Option<u64>,
    /// escrowed − cost, once settled.
    pub refunded: Option<u64>,
    /// From the first look at the job to its verified result.
    pub seconds: f64,
    /// The CPU time the job's providers measured and reported with their results (every
    /// result posted, re-done shards and check replicas included), and its joules under the
    /// power model `energy_method` states.
    pub energy: ergon_api::energy::Energy,
    pub energy_method: String,
    /// Settled results per shard beyond the first (replicas or a check) and whether the chain
    /// called a check.
    pub results_settled: usize,
    pub checked_by_second_provider: bool,
    pub verification: String,
}

impl Receipt {
    /// The receipt of `job` (as the node last showed it) for the work `run` followed.
    pub fn of(work: &Work, job: &Job, took: Duration) -> Self {
        let s = &job.summary;
        let settled: Vec<_> = job.tasks.iter().filter(|t| matches!(t.state, TaskState::Settled { .. })).collect();
        let (mut macs, mut providers) = (0u64, BTreeSet::new());
        for t in &settled {
            macs += work.shard_macs(t.shard, job.macs_per_shard);
            providers.insert(t.state.provider().unwrap_or_default().to_string());
        }
        let done = s.status == JobStatus::Done;
        let cost = done.then_some(s.paid + s.burned);
        let checked = settled.iter().any(|t| t.check);
        let verification = match work {
            Work::Matmul { .. } => {
                "every shard matched its posted commitment and passed Freivalds (false accept < 2^-120)".to_string()
            }
            Work::Ml { .. } if settled.len() > 1 => format!(
                "{} replicas computed it independently{}; the chain paid only the result a majority agreed on, and these bytes match it",
                settled.len(),
                if checked {
                    ", one of them a check the chain called (its provider was on probation, or sampled for audit)"
                } else {
                    ""
                }
            ),
            Work::Ml { .. } => "one replica, not cross-checked (its provider is trusted and was not sampled for a check, or no other provider could check it; ask for --replicas 2 to always cross-check); the bytes match the posted BLAKE3".to_string(),
        };
        Receipt {
            job: s.id.clone(),
            kind: s.kind.clone(),
            macs,
            shards: s.shards,
            replicas: s.replicas,
            providers: providers.into_iter().collect(),
            settled: done,
            escrowed: s.escrowed_at_submission,
            paid: s.paid,
            burned: s.burned,
            cost,
            refunded: cost.map(|c| s.escrowed_at_submission.saturating_sub(c)),
            seconds: took.as_secs_f64(),
            energy: s.energy,
            energy_method: ergon_api::energy::METHOD.to_string(),
            results_settled: settled.len(),
            checked_by_second_provider: checked,
            verification,
        }
    }
}
