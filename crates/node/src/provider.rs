//! The provider agent (`ergon node --provider`): for every lease the chain gives this node's
//! key, fetch the shard's inputs (sealed to this provider), check them against the shard's work
//! commitment, hand them to the miner, which computes the product while mining on it, then seal
//! the result to the client, serve it, and post its commitment on chain.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ergon_chain::JobWork;
use ergon_kernels::npy::{decode_npy, encode_npy};
use ergon_kernels::{MatI32, MatI8};
use ergon_market::TaskKey;
use ergon_ml::MlJob;
use ergon_pouw::WorkCommitment;
use ergon_types::{Hash, JobKind, JobSpec, SecretKey, Transaction, TxKind};
use x25519_dalek::StaticSecret;

use crate::blobs::{fetch_open, name, Part};
use crate::Shared;

/// The X25519 secret a key file's owner decrypts job data with: derived from the ed25519 secret
/// (one file to keep), in its own BLAKE3 context so the two keys never share bytes.
pub fn encryption_secret(key: &SecretKey) -> StaticSecret {
    StaticSecret::from(blake3::derive_key("ergon v1 x25519 secret from the ed25519 key file", &key.to_bytes()))
}

pub fn encryption_public(key: &SecretKey) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&encryption_secret(key)).to_bytes()
}

/// A leased shard whose inputs are here and checked, waiting for the miner. `work` is the
/// product the job committed to; for an ML job, `ml` is the rest of the work, which starts with
/// that product.
pub struct ReadyWork {
    pub key: TaskKey,
    pub work: JobWork,
    pub ml: Option<MlJob>,
}

/// What the miner hands back for a leased shard.
pub struct Computed {
    pub key: TaskKey,
    pub output: Output,
    pub macs: u64,
}

/// A leased shard's result, as the provider computes it and the client reads it back.
pub enum Output {
    /// A matmul shard's exact product; its commitment is the Merkle root of its rows, so a
    /// client can prove one wrong entry on chain.
    Product(MatI32),
    /// An ML job's result bytes; its commitment is their BLAKE3, which replicas compare.
    Bytes(Vec<u8>),
}

impl Output {
    /// The commitment posted on chain for this result.
    pub fn commitment(&self) -> Hash {
        match self {
            Output::Product(c) => Hash(ergon_pouw::result_root(c)),
            Output::Bytes(b) => Hash(*blake3::hash(b).as_bytes()),
        }
    }

    /// The plaintext sealed to the client.
    pub fn into_plaintext(self) -> Vec<u8> {
        match self {
            Output::Product(c) => encode_npy(&c),
            Output::Bytes(b) => b,
        }
    }

    /// Reads a plaintext back as the result of a `kind` job.
    pub fn from_plaintext(kind: JobKind, plain: Vec<u8>) -> Result<Self, String> {
        match kind {
            JobKind::Matmul => {
                decode_npy(&plain).map(Output::Product).map_err(|e| format!("result is not an int32 .npy: {e}"))
            }
            _ => Ok(Output::Bytes(plain)),
        }
    }

    /// What `--corrupt-results` does: one wrong entry, or one flipped byte.
    fn corrupt(&mut self) {
        match self {
            Output::Product(c) => c.as_mut_slice()[0] = c.as_slice()[0].wrapping_add(1),
            Output::Bytes(b) => {
                if let Some(last) = b.last_mut() {
                    *last ^= 1;
                }
            }
        }
    }
}

/// Runs until the node stops.
pub async fn run(shared: Arc<Shared>, key: SecretKey, corrupt: bool) {
    let me = key.public().address();
    let secret = encryption_secret(&key);
    let mut started: HashSet<TaskKey> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    while !shared.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let leases: Vec<(TaskKey, JobSpec)> = {
            let node = shared.lock();
            let market = &node.chain.ledger().market;
            market
                .provider(&me)
                .map(|p| {
                    p.leases
                        .iter()
                        .filter(|k| !started.contains(*k))
                        .filter_map(|k| market.job(&k.0).map(|j| (*k, j.spec.clone())))
                        .collect()
                })
                .unwrap_or_default()
        };
        for (task, spec) in leases {
            started.insert(task);
            let (shared, secret) = (shared.clone(), secret.clone());
            tokio::spawn(async move { prepare(shared, me, task, spec, secret).await });
        }
        let computed: Vec<Computed> = std::mem::take(&mut *shared.computed.lock().unwrap_or_else(|p| p.into_inner()));
        for mut c in computed {
            if corrupt {
                tracing::warn!("corrupting a result on purpose (--corrupt-results)");
                c.output.corrupt();
            }
            if let Err(why) = deliver(&shared, &key, c) {
                tracing::warn!(%why, "could not deliver a result");
            }
        }
    }
}

/// Fetches and checks a task's inputs, retrying while the lease lasts (the client uploads them
/// once it sees the lease), then queues the work for the miner.
async fn prepare(shared: Arc<Shared>, me: ergon_types::Address, task: TaskKey, spec: JobSpec, secret: StaticSecret) {
    let (job, shard, replica) = task;
    let still_leased = || shared.lock().chain.ledger().market.provider(&me).is_some_and(|p| p.leases.contains(&task));
    loop {
        if shared.stop.load(Ordering::Relaxed) || !still_leased() {
            return;
        }
        let a = fetch_open(&shared, name(&job, shard, replica, &me, Part::InputA), &secret).await;
        let b = fetch_open(&shared, name(&job, shard, replica, &me, Part::InputB), &secret).await;
        let (a, b) = match (a, b) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(job = %job.to_hex(), shard, %e, "inputs not available yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let ready = match check_inputs(&spec, shard, a, b) {
            Ok((work, ml)) => ReadyWork { key: task, work: JobWork { job, a: work.0, b: work.1 }, ml },
            Err(why) => {
                tracing::warn!(job = %job.to_hex(), shard, %why, "refusing the inputs; the lease will close");
                return;
            }
        };
        tracing::info!(job = %job.to_hex(), shard, kind = spec.kind.name(), "inputs fetched and checked; computing while mining");
        shared.ready.lock().unwrap_or_else(|p| p.into_inner()).push_back(ready);
        return;
    }
}

/// The work the inputs describe, if it is the work the job committed to on chain: the product
/// to mine on, and for ML jobs the rest of the job.
fn check_inputs(spec: &JobSpec, shard: u16, a: Vec<u8>, b: Vec<u8>) -> Result<((MatI8, MatI8), Option<MlJob>), String> {
    let committed = spec.shards[shard as usize];
    let (operands, ml) = match spec.kind {
        JobKind::Matmul => {
            let a: MatI8 = decode_npy(&a).map_err(|e| format!("A is not an int8 .npy: {e}"))?;
            let b: MatI8 = decode_npy(&b).map_err(|e| format!("B is not an int8 .npy: {e}"))?;
            ((a, b), None)
        }
        kind => {
            for (i, bytes) in [&a, &b].into_iter().enumerate() {
                let want = spec.inputs[i];
                if bytes.len() as u64 != want.size || *blake3::hash(bytes).as_bytes() != want.id.0 {
                    return Err(format!("input {i} is not the blob the job names"));
                }
            }
            let job = match kind {
                JobKind::Train => MlJob::train(&a, &b),
                _ => MlJob::infer(&a, &b),
            }
            .map_err(|e| e.to_string())?;
            if job.macs() != spec.macs_per_shard {
                return Err(format!(
                    "the job declares {} multiply-adds but computes {}",
                    spec.macs_per_shard,
                    job.macs()
                ));
            }
            (job.committed_product().map_err(|e| e.to_string())?, Some(job))
        }
    };
    if WorkCommitment::compute(&operands.0, &operands.1).ok() != Some(committed) {
        return Err("the inputs do not give the product the shard commits to on chain".into());
    }
    Ok((operands, ml))
}

/// Seals the result to the client, serves it, and posts its commitment.
fn deliver(shared: &Arc<Shared>, key: &SecretKey, c: Computed) -> Result<(), String> {
    let (job, shard, replica) = c.key;
    let client_key = shared.lock().chain.ledger().market.job(&job).map(|j| j.spec.client_key).ok_or("job vanished")?;
    let mut entropy = [0u8; 32];
    getrandom::fill(&mut entropy).map_err(|e| e.to_string())?;
    let result = c.output.commitment();
    let plain = c.output.into_plaintext();
    let sealed = ergon_net::blob::seal(&plain, &client_key, entropy).map_err(|e| e.to_string())?;
    shared.put_blob(name(&job, shard, replica, &key.public().address(), Part::Result), sealed)?;
    let mut node = shared.lock();
    let node = &mut *node;
    let me = key.public().address();
    let nonce = node.mempool.next_nonce(&node.chain, &me);
    let tx = Transaction {
        chain: node.chain.chain_id(),
        from: key.public(),
        nonce,
        fee: 1,
        kind: TxKind::PostResult { job, shard, result },
    }
    .sign(key);
    let bytes = ergon_types::Canonical::encode(&tx);
    node.mempool.admit(&node.chain, tx)?;
    shared.send(ergon_net::Command::PublishTx(bytes));
    tracing::info!(job = %job.to_hex(), shard, macs = c.macs, result = %result.to_hex(), "result posted");
    Ok(())
}
