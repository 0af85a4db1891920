//! The provider agent (`ergon node --provider`): for every lease the chain gives this node's
//! key, fetch the shard's inputs (sealed to this provider), check them against the shard's work
//! commitment, hand them to the miner, which computes the product while mining on it, then seal
//! the result to the client, serve it, and post its commitment on chain.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ergon_chain::JobWork;
use ergon_kernels::npy::decode_npy;
use ergon_kernels::{MatI32, MatI8};
use ergon_market::TaskKey;
use ergon_ml::MlJob;
use ergon_pouw::WorkCommitment;
use ergon_types::{JobKind, JobSpec, SecretKey, Transaction, TxKind};
use x25519_dalek::StaticSecret;

use crate::blobs::fetch_open;
use crate::Shared;
use ergon_jobdata::{encryption_secret, name, seal_signed, Output, Part};

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
    /// CPU time of the computation on the mining threads (milliseconds), reported on chain.
    pub cpu_ms: u32,
}

/// Runs until the node stops.
pub async fn run(shared: Arc<Shared>, key: SecretKey, corrupt: bool) {
    let me = key.public().address();
    let secret = encryption_secret(&key);
    let mut started: HashSet<TaskKey> = HashSet::new();
    // Products this node posted, kept to answer availability challenges with their rows.
    let mut products: HashMap<TaskKey, MatI32> = HashMap::new();
    let mut answered: HashSet<(TaskKey, u64)> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    // Whether the chain knows this key as a provider, as last said in the log: a node started
    // with a key that never registered would otherwise wait for leases in silence.
    let mut registered: Option<bool> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let known = shared.lock().chain.ledger().market.provider(&me).is_some();
        if registered != Some(known) {
            if known {
                tracing::info!(provider = %me, "registered as a provider: taking leases");
            } else {
                tracing::warn!(
                    provider = %me,
                    "this node's --provider-key is not a registered provider (in the blocks it has so far): it gets no leases until `ergon provider register --key FILE` is in a block"
                );
            }
            registered = Some(known);
        }
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
            let key = key.clone();
            tokio::spawn(async move { prepare(shared, key, task, spec, secret).await });
        }
        answer_challenges(&shared, &key, &mut products, &mut answered);
        let computed: Vec<Computed> = std::mem::take(&mut *shared.computed.lock().unwrap_or_else(|p| p.into_inner()));
        for mut c in computed {
            if corrupt {
                tracing::warn!("corrupting a result on purpose (--corrupt-results)");
                c.output.corrupt();
            }
            let task = c.key;
            match deliver(&shared, &key, c) {
                Ok(Some(product)) => {
                    products.insert(task, product);
                }
                Ok(None) => {}
                Err(why) => tracing::warn!(%why, "could not deliver a result"),
            }
        }
    }
}

/// Publishes the rows any open availability challenge on this node's results asks for (once
/// per challenge), so a client that could not fetch a result gets its rows on chain and an
/// honest provider is never slashed as a withholder.
fn answer_challenges(
    shared: &Arc<Shared>,
    key: &SecretKey,
    products: &mut HashMap<TaskKey, MatI32>,
    answered: &mut HashSet<(TaskKey, u64)>,
) {
    let me = key.public().address();
    let open: Vec<(TaskKey, ergon_market::Challenge)> = {
        let node = shared.lock();
        let market = &node.chain.ledger().market;
        // Keep a product only while its result can still be challenged (bounded memory).
        products.retain(|k, _| {
            market.job(&k.0).is_some_and(|j| match j.task(k.1, k.2).state {
                ergon_market::TaskState::Leased { provider, .. } | ergon_market::TaskState::Posted { provider, .. } => {
                    provider == me
                }
                _ => false,
            })
        });
        answered.retain(|(k, _)| products.contains_key(k));
        products
            .keys()
            .filter_map(|k| {
                let task = market.job(&k.0)?.task(k.1, k.2);
                let mine = matches!(task.state, ergon_market::TaskState::Posted { provider, .. } if provider == me);
                task.challenge.clone().filter(|_| mine).map(|c| (*k, c))
            })
            .collect()
    };
    for (task, challenge) in open {
        if !answered.insert((task, challenge.deadline)) {
            continue;
        }
        let rows: Result<Vec<_>, _> =
            challenge.rows.iter().map(|&r| ergon_pouw::RevealedRow::build(&products[&task], r as usize)).collect();
        let sent = rows.map_err(|e| e.to_string()).and_then(|rows| {
            submit(shared, key, TxKind::RevealRows { job: task.0, shard: task.1, replica: task.2, rows })
        });
        match sent {
            Ok(()) => {
                tracing::info!(job = %task.0.to_hex(), shard = task.1, rows = challenge.rows.len(), "availability challenge answered on chain")
            }
            Err(why) => tracing::warn!(%why, "could not answer an availability challenge"),
        }
    }
}

/// Blocks before the deadline, at least, at which a lease without usable inputs is given back.
const GIVE_BACK_MARGIN_BLOCKS: u64 = 2;

/// Fetches and checks a task's inputs, retrying while the lease lasts (the client uploads them
/// once it sees the lease; inputs that do not check, which anyone could have sealed to this
/// key, are skipped, not trusted), then queues the work for the miner. If nothing usable has
/// arrived by half the lease (or `GIVE_BACK_MARGIN_BLOCKS` before the deadline), the lease is
/// given back without a strike.
async fn prepare(shared: Arc<Shared>, key: SecretKey, task: TaskKey, spec: JobSpec, secret: StaticSecret) {
    let (job, shard, replica) = task;
    let me = key.public().address();
    let lease_state = || {
        let node = shared.lock();
        let market = &node.chain.ledger().market;
        let held = market.provider(&me).is_some_and(|p| p.leases.contains(&task));
        let (since, deadline, client) = match market.job(&job).map(|j| (&j.task(shard, replica).state, j.client)) {
            Some((ergon_market::TaskState::Leased { since, deadline, .. }, client)) => (*since, *deadline, client),
            _ => (0, 0, me),
        };
        (held, since, deadline, client, node.chain.height())
    };
    loop {
        let (held, since, deadline, client, height) = lease_state();
        if shared.stop.load(Ordering::Relaxed) || !held {
            return;
        }
        // The give-back must be in a block before the deadline, or the chain counts the lease
        // as failed: two blocks of margin were not enough when blocks came fast (the release
        // missed the deadline and the provider was struck for the client's bad inputs), so it
        // leaves half the lease for the transaction to land (at least two blocks, and at
        // least one block of the shortest lease, 3 blocks, to wait for the inputs).
        let margin = (deadline.saturating_sub(since) / 2).max(GIVE_BACK_MARGIN_BLOCKS);
        if height + margin >= deadline {
            match submit(&shared, &key, TxKind::ReleaseLease { job, shard }) {
                Ok(()) => {
                    tracing::warn!(job = %job.to_hex(), shard, "no usable inputs arrived; lease given back (no strike)")
                }
                Err(why) => tracing::warn!(%why, "could not give the lease back"),
            }
            return;
        }
        // Only the job's client may have written them: anyone else's blob under these names is
        // refused before a byte of it is decrypted.
        let a = fetch_open(&shared, name(&job, shard, replica, &me, Part::InputA), &client, &secret).await;
        let b = fetch_open(&shared, name(&job, shard, replica, &me, Part::InputB), &client, &secret).await;
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
                tracing::warn!(job = %job.to_hex(), shard, %why, "refusing these inputs; waiting for the client's");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
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

/// Seals the result to the client, serves it, and posts its commitment. Gives back the product
/// of a matmul shard.
fn deliver(shared: &Arc<Shared>, key: &SecretKey, c: Computed) -> Result<Option<MatI32>, String> {
    let (job, shard, replica) = c.key;
    let client_key = shared.lock().chain.ledger().market.job(&job).map(|j| j.spec.client_key).ok_or("job vanished")?;
    let result = c.output.commitment();
    let (plain, product) = c.output.into_plaintext_and_product();
    let blob = name(&job, shard, replica, &key.public().address(), Part::Result);
    shared.put_blob(blob, seal_signed(&plain, &client_key, &blob, key)?)?;
    submit(shared, key, TxKind::PostResult { job, shard, result, cpu_ms: c.cpu_ms })?;
    tracing::info!(job = %job.to_hex(), shard, macs = c.macs, result = %result.to_hex(), "result posted");
    Ok(product)
}

/// Signs `kind` with the provider's key at its next nonce, admits it to this node's pool and
/// gossips it.
pub(crate) fn submit(shared: &Shared, key: &SecretKey, kind: TxKind) -> Result<(), String> {
    let mut node = shared.lock();
    let node = &mut *node;
    let nonce = node.mempool.next_nonce(&node.chain, &key.public().address());
    let tx = Transaction { chain: node.chain.chain_id(), from: key.public(), nonce, fee: 1, kind }.sign(key);
    let bytes = ergon_types::Canonical::encode(&tx);
    node.mempool.admit(&node.chain, tx).map_err(|why| format!("refused by the pool: {why}"))?;
    shared.send(ergon_net::Command::PublishTx(bytes));
    Ok(())
}
