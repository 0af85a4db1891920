//! A job's plan from its inputs, before anything is paid: the spec the chain escrows, and the
//! work the client keeps to seal inputs from and check results against. The client commits to
//! the first product of an ML job (what the provider mines on), so a provider cannot mine on
//! anything else and call it the job.

use ergon_jobdata::encryption_public;
use ergon_ml::MlJob;
use ergon_pouw::WorkCommitment;
use ergon_types::{BlobRef, Hash, JobKind, JobSpec, Requirements, SecretKey};

use crate::Work;

/// A planned ML job: submit `spec`, follow it with `work`; `job` is the work itself, for a
/// client that wants to know the answer in advance (a validator's audit) or measure it.
pub struct MlPlan {
    pub spec: JobSpec,
    pub work: Work,
    pub job: MlJob,
}

/// The chain's name and size of an input blob.
pub fn blob_ref(bytes: &[u8]) -> BlobRef {
    BlobRef { id: Hash(*blake3::hash(bytes).as_bytes()), size: bytes.len() as u64 }
}

/// Plans a training job (inputs: data set, then `TrainSpec`) or an inference job (model, then
/// data set) whose results are sealed to `key`. Refuses inputs a provider would refuse (data
/// that does not parse, shapes that do not fit, a product outside the mining range).
pub fn ml_job(
    kind: JobKind,
    inputs: [Vec<u8>; 2],
    requirements: Requirements,
    max_price_per_gmac: u64,
    key: &SecretKey,
) -> Result<MlPlan, String> {
    let job = match kind {
        JobKind::Train => MlJob::train(&inputs[0], &inputs[1]),
        JobKind::Infer => MlJob::infer(&inputs[0], &inputs[1]),
        JobKind::Matmul => return Err("a product is planned from its matrices, not as an ML job".into()),
    }
    .map_err(|e| e.to_string())?;
    let (a, b) = job.committed_product().map_err(|e| e.to_string())?;
    for (name, m) in [("A", &a), ("B", &b)] {
        ergon_pouw::check_mining_range(name, m).map_err(|e| format!("cannot mine on this job: {e}"))?;
    }
    let first = WorkCommitment::compute(&a, &b).map_err(|e| format!("cannot mine on this job: {e}"))?;
    let spec = JobSpec {
        kind,
        inputs: inputs.iter().map(|b| blob_ref(b)).collect(),
        shards: vec![first],
        macs_per_shard: job.macs(),
        requirements,
        max_price_per_gmac,
        client_key: encryption_public(key),
    };
    Ok(MlPlan { spec, work: Work::Ml { kind, inputs }, job })
}

/// Plans C = A·B in `shards` near-equal ranges of A's rows, each committed to on chain (the
/// product a provider must mine on), with results sealed to `key`. `files` are the two
/// matrices' bytes as uploaded; the chain names the whole files, and each shard's rows are
/// bound by its commitment.
pub fn matmul_job(
    a: ergon_kernels::MatI8,
    b: ergon_kernels::MatI8,
    files: [&[u8]; 2],
    shards: usize,
    requirements: Requirements,
    max_price_per_gmac: u64,
    key: &SecretKey,
) -> Result<(JobSpec, Work), String> {
    if a.cols() != b.rows() {
        return Err(format!("A is {}×{} but B is {}×{}", a.rows(), a.cols(), b.rows(), b.cols()));
    }
    // What every provider would refuse, refused here before anything is paid.
    for (name, m) in [("A", &a), ("B", &b)] {
        ergon_pouw::check_mining_range(name, m).map_err(|e| format!("cannot mine on this job: {e}"))?;
    }
    if shards == 0 || shards > a.rows() || shards > ergon_types::job::MAX_SHARDS {
        return Err(format!("the shard count must be in 1..={}", a.rows().min(ergon_types::job::MAX_SHARDS)));
    }
    let bounds: Vec<(usize, usize)> =
        (0..shards).map(|s| (s * a.rows() / shards, (s + 1) * a.rows() / shards)).collect();
    let commitments: Vec<WorkCommitment> = bounds
        .iter()
        .map(|&range| {
            WorkCommitment::compute(&crate::job::rows(&a, range), &b)
                .map_err(|e| format!("cannot mine on this job: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let macs_per_shard = commitments.iter().map(|w| w.m as u64 * w.k as u64 * w.n as u64).max().unwrap_or(0);
    let spec = JobSpec {
        kind: JobKind::Matmul,
        inputs: files.iter().map(|f| blob_ref(f)).collect(),
        shards: commitments,
        macs_per_shard,
        requirements,
        max_price_per_gmac,
        client_key: encryption_public(key),
    };
    Ok((spec, Work::Matmul { a, b, bounds }))
}
