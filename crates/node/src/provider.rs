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
use ergon_pouw::WorkCommitment;
use ergon_types::{Hash, SecretKey, Transaction, TxKind};
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

/// A leased shard whose inputs are here and checked, waiting for the miner.
pub struct ReadyWork {
    pub key: TaskKey,
    pub work: JobWork,
}

/// What the miner hands back: the exact product of a leased shard.
pub struct Computed {
    pub key: TaskKey,
    pub product: MatI32,
    pub macs: u64,
}

/// Runs until the node stops.
pub async fn run(shared: Arc<Shared>, key: SecretKey, corrupt: bool) {
    let me = key.public().address();
    let secret = encryption_secret(&key);
    let mut started: HashSet<TaskKey> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    while !shared.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let leases: Vec<(TaskKey, WorkCommitment)> = {
            let node = shared.lock();
            let market = &node.chain.ledger().market;
            market
                .provider(&me)
                .map(|p| {
                    p.leases
                        .iter()
                        .filter_map(|k| market.job(&k.0).map(|j| (*k, j.spec.shards[k.1 as usize])))
                        .collect()
                })
                .unwrap_or_default()
        };
        for (task, commitment) in leases {
            if started.insert(task) {
                let (shared, secret) = (shared.clone(), secret.clone());
                tokio::spawn(async move { prepare(shared, me, task, commitment, secret).await });
            }
        }
        let computed: Vec<Computed> = std::mem::take(&mut *shared.computed.lock().unwrap_or_else(|p| p.into_inner()));
        for mut c in computed {
            if corrupt {
                tracing::warn!("corrupting a result on purpose (--corrupt-results)");
                c.product.as_mut_slice()[0] = c.product.as_slice()[0].wrapping_add(1);
            }
            if let Err(why) = deliver(&shared, &key, c) {
                tracing::warn!(%why, "could not deliver a result");
            }
        }
    }
}

/// Fetches and checks a task's inputs, retrying while the lease lasts (the client uploads them
/// once it sees the lease), then queues the work for the miner.
async fn prepare(
    shared: Arc<Shared>,
    me: ergon_types::Address,
    task: TaskKey,
    commitment: WorkCommitment,
    secret: StaticSecret,
) {
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
        let decoded = decode_npy::<i8>(&a).and_then(|a| Ok((a, decode_npy::<i8>(&b)?)));
        let (a, b): (MatI8, MatI8) = match decoded {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(job = %job.to_hex(), shard, %e, "inputs are not int8 .npy; waiting for the lease to close");
                return;
            }
        };
        if WorkCommitment::compute(&a, &b).ok() != Some(commitment) {
            tracing::warn!(job = %job.to_hex(), shard, "inputs do not match the shard's commitment on chain");
            return;
        }
        tracing::info!(job = %job.to_hex(), shard, "inputs fetched and checked; computing while mining");
        shared
            .ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(ReadyWork { key: task, work: JobWork { job, a, b } });
        return;
    }
}

/// Seals the product to the client, serves it, and posts its commitment.
fn deliver(shared: &Arc<Shared>, key: &SecretKey, c: Computed) -> Result<(), String> {
    let (job, shard, replica) = c.key;
    let client_key = shared.lock().chain.ledger().market.job(&job).map(|j| j.spec.client_key).ok_or("job vanished")?;
    let mut entropy = [0u8; 32];
    getrandom::fill(&mut entropy).map_err(|e| e.to_string())?;
    let sealed = ergon_net::blob::seal(&encode_npy(&c.product), &client_key, entropy).map_err(|e| e.to_string())?;
    shared.put_blob(name(&job, shard, replica, &key.public().address(), Part::Result), sealed)?;
    let result = Hash(ergon_pouw::result_root(&c.product));
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
