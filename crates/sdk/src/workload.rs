//! A steady client load, for `ergon devnet` and anyone who wants a market with work in it: jobs
//! of each kind planned, submitted, followed to settlement and verified exactly as a client
//! would, one after another, reported as they end.
//!
//! - `matmul`: C = A·B of random int8 matrices in the mining range, in two shards, each checked
//!   by Freivalds;
//! - `train`: an MLP on the shipped digits, one replica (the chain checks it while its
//!   provider is on probation);
//! - `infer`: the last trained model on the digits, once a training job has delivered one.

use ergon_api::market::TaskState;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ergon_jobdata::Output;
use ergon_kernels::npy::encode_npy;
use ergon_ml::{TrainConfig, TrainSpec, DIGITS_CSV_GZ};
use ergon_types::{Hash, JobKind, Requirements, SecretKey, TxKind};

use crate::{Client, JobRun};

/// Who submits, at what price, and how big a product is.
#[derive(Clone)]
pub struct Workload {
    pub client: Client,
    pub key: SecretKey,
    pub max_price_per_gmac: u64,
    pub fee: u64,
    /// A product is `n`×`n` times `n`×`n`.
    pub matmul_n: usize,
    /// How long one job may take before it is given up (and left to the chain to refund).
    pub timeout: Duration,
    /// The model the last training job delivered, for inference jobs.
    pub model: Arc<Mutex<Option<Vec<u8>>>>,
}

/// One job's end, for whoever prints it.
pub struct Report {
    pub kind: JobKind,
    pub id: Option<Hash>,
    pub seconds: f64,
    /// What the chain did, in a line; or why the job did not finish.
    pub outcome: Result<String, String>,
}

impl Workload {
    /// Plans, submits and follows one job of `kind`; `seq` varies its inputs.
    pub fn run(&self, kind: JobKind, seq: u64) -> Report {
        let started = std::time::Instant::now();
        let mut id = None;
        let outcome = self.submit_and_follow(kind, seq, &mut id);
        Report { kind, id, seconds: started.elapsed().as_secs_f64(), outcome }
    }

    fn submit_and_follow(&self, kind: JobKind, seq: u64, id: &mut Option<Hash>) -> Result<String, String> {
        let requirements =
            Requirements { min_memory_mib: 0, min_int8_gmacs: 0, gpu: false, replicas: 1, lease_blocks: 30 };
        let (spec, work) = match kind {
            JobKind::Matmul => {
                let n = self.matmul_n;
                let a = ergon_kernels::rng::random_matrix(n, n, 126, 2 * seq + 1).map_err(|e| e.to_string())?;
                let b = ergon_kernels::rng::random_matrix(n, n, 126, 2 * seq + 2).map_err(|e| e.to_string())?;
                let files = [encode_npy(&a), encode_npy(&b)];
                crate::plan::matmul_job(
                    a,
                    b,
                    [&files[0], &files[1]],
                    2,
                    requirements,
                    self.max_price_per_gmac,
                    &self.key,
                )?
            }
            JobKind::Train => {
                let config = TrainConfig { seed: seq, ..TrainConfig::default() };
                let inputs = [DIGITS_CSV_GZ.to_vec(), TrainSpec { config, holdout: 5 }.encode()];
                let plan = crate::plan::ml_job(kind, inputs, requirements, self.max_price_per_gmac, &self.key)?;
                (plan.spec, plan.work)
            }
            JobKind::Infer => {
                let model = self.model.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let model = model.ok_or("no trained model yet")?;
                let plan = crate::plan::ml_job(
                    kind,
                    [model, DIGITS_CSV_GZ.to_vec()],
                    requirements,
                    self.max_price_per_gmac,
                    &self.key,
                )?;
                (plan.spec, plan.work)
            }
        };
        let (tx, _) = self.client.submit(&self.key, self.fee, TxKind::SubmitJob { spec }).map_err(|e| e.to_string())?;
        let job = ergon_types::job::job_id(&tx);
        *id = Some(job);
        let run = JobRun {
            client: self.client.clone(),
            key: self.key.clone(),
            id: job,
            work,
            timeout: self.timeout,
            fee: self.fee,
            wait_settlement: true,
            expect: None,
            progress_every: crate::PROGRESS_EVERY,
        };
        let finished = run.follow(&mut |_| {})?;
        if kind == JobKind::Train {
            if let Some(Output::Bytes(model)) = finished.results.into_iter().next() {
                *self.model.lock().unwrap_or_else(|p| p.into_inner()) = Some(model);
            }
        }
        let j = &finished.job;
        let settled = j.tasks.iter().filter(|t| matches!(t.state, TaskState::Settled { .. }));
        let providers: std::collections::BTreeSet<&str> = settled.clone().filter_map(|t| t.state.provider()).collect();
        let checked = settled.clone().any(|t| t.check);
        Ok(format!(
            "verified; paid {} to {}, burned {}{}",
            j.summary.paid,
            providers.into_iter().map(|p| &p[..12.min(p.len())]).collect::<Vec<_>>().join(" and "),
            j.summary.burned,
            if checked { "; the chain had it checked by a second provider" } else { "" }
        ))
    }
}
