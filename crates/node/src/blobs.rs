//! Sealed job blobs (the format, names and authorship are `ergon_jobdata`'s): the ones this
//! node serves, who may write each one now, and fetching others' piece by piece from peers,
//! decrypting each piece as it arrives.
//!
//! What the plaintext must be is on chain (the shard's work commitment, the posted result
//! root). Only a task's rightful author may write under its names: the job's client for the
//! inputs while the lease is open, the leaseholder for the result ([`rightful_author`]).

use std::sync::Arc;
use std::time::Duration;

use ergon_jobdata::blob::{check_author, name, Part};
use ergon_jobdata::seal::{Opener, MAX_PIECES, MAX_PLAINTEXT_BYTES};
use ergon_market::{Market, TaskKey, TaskState};
use ergon_types::{Address, Hash, JobKind};
use x25519_dalek::StaticSecret;

use crate::Shared;

/// What a node stores about a blob besides its pieces: the task and part it belongs to, its
/// author, and its size. Persisted (`ergon_store::BlobStore`) and held in memory; the bytes stay
/// on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobMeta {
    pub task: TaskKey,
    pub part: Part,
    /// The leaseholder the name was made for.
    pub holder: Address,
    pub author: Address,
    pub bytes: u64,
    pub pieces: u32,
    /// Which upload of this name is served (`ergon_store::BlobStore` keys pieces by it).
    pub generation: u64,
}

impl BlobMeta {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::BYTES);
        v.extend_from_slice(&self.task.0 .0);
        v.extend_from_slice(&self.task.1.to_le_bytes());
        v.extend_from_slice(&[self.task.2, self.part.tag()]);
        v.extend_from_slice(&self.holder.0);
        v.extend_from_slice(&self.author.0);
        v.extend_from_slice(&self.bytes.to_le_bytes());
        v.extend_from_slice(&self.pieces.to_le_bytes());
        v.extend_from_slice(&self.generation.to_le_bytes());
        v
    }

    const BYTES: usize = 32 + 2 + 1 + 1 + 20 + 20 + 8 + 4 + 8;

    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != Self::BYTES {
            return None;
        }
        let part = Part::from_tag(b[35])?;
        Some(BlobMeta {
            task: (Hash(b[..32].try_into().ok()?), u16::from_le_bytes(b[32..34].try_into().ok()?), b[34]),
            part,
            holder: Address(b[36..56].try_into().ok()?),
            author: Address(b[56..76].try_into().ok()?),
            bytes: u64::from_le_bytes(b[76..84].try_into().ok()?),
            pieces: u32::from_le_bytes(b[84..88].try_into().ok()?),
            generation: u64::from_le_bytes(b[88..96].try_into().ok()?),
        })
    }
}

/// Most bytes one author may have stored on a node at once.
pub const AUTHOR_QUOTA_BYTES: u64 = 4 << 30;
/// An ML result (a model or predictions) is not sized by the job; this bounds it.
pub const MAX_ML_RESULT_BYTES: u64 = 64 << 20;
/// Room for a `.npy` header around a matrix's bytes.
const NPY_HEADER_BYTES: u64 = 4096;
/// Blocks a settled result stays after its job finished (for `job result` to fetch it again).
pub const RESULT_KEEP_BLOCKS: u64 = 100;

/// The open lease a blob name belongs to: its task, part, leaseholder, the one address that may
/// write it (the job's client for the inputs, the leaseholder for the result), and the largest
/// plaintext it may hold (from the shard's shape, or the input's declared size).
pub(crate) fn lease_part(market: &Market, name: &[u8; 32]) -> Option<(TaskKey, Part, Address, Address, u64)> {
    market.providers().find_map(|p| {
        p.leases.iter().find_map(|&(job_id, shard, replica)| {
            let job = market.job(&job_id)?;
            [Part::InputA, Part::InputB, Part::Result]
                .into_iter()
                .find(|part| self::name(&job_id, shard, replica, &p.owner, *part) == *name)
                .map(|part| {
                    let writer = if part == Part::Result { p.owner } else { job.client };
                    ((job_id, shard, replica), part, p.owner, writer, max_plaintext(job, shard, part))
                })
        })
    })
}

fn max_plaintext(job: &ergon_market::Job, shard: u16, part: Part) -> u64 {
    let w = job.spec.shards[shard as usize];
    let (m, k, n) = (w.m as u64, w.k as u64, w.n as u64);
    let most = match (job.spec.kind, part) {
        (JobKind::Matmul, Part::InputA) => m.saturating_mul(k),
        (JobKind::Matmul, Part::InputB) => k.saturating_mul(n),
        (JobKind::Matmul, Part::Result) => m.saturating_mul(n).saturating_mul(4),
        (_, Part::InputA) => return job.spec.inputs.first().map_or(0, |i| i.size),
        (_, Part::InputB) => return job.spec.inputs.get(1).map_or(0, |i| i.size),
        (_, Part::Result) => MAX_ML_RESULT_BYTES,
    };
    most.saturating_add(NPY_HEADER_BYTES).min(MAX_PLAINTEXT_BYTES)
}

/// The only address that may write blob `name` now: the client of a leased task for its
/// inputs, the leaseholder for its result. `None` if the name is no open lease's.
pub fn rightful_author(market: &Market, name: &[u8; 32]) -> Option<Address> {
    lease_part(market, name).map(|(_, _, _, writer, _)| writer)
}

/// Whether a stored blob is still of use at `height`: inputs while their lease lasts, a result
/// while it can be challenged and for `RESULT_KEEP_BLOCKS` after its job finished.
fn still_needed(market: &Market, m: &BlobMeta, height: u64) -> bool {
    let Some(job) = market.job(&m.task.0) else { return false };
    if job.spec.shards.len() <= m.task.1 as usize || m.task.2 >= job.slots() {
        return false;
    }
    let recent = job.finished_at.is_none_or(|f| height < f + RESULT_KEEP_BLOCKS);
    match (m.part, &job.task(m.task.1, m.task.2).state) {
        (Part::InputA | Part::InputB, TaskState::Leased { provider, .. }) => *provider == m.holder,
        (Part::Result, TaskState::Leased { provider, .. } | TaskState::Posted { provider, .. }) => {
            *provider == m.holder
        }
        (Part::Result, TaskState::Settled { provider, .. }) => *provider == m.holder && recent,
        _ => false,
    }
}

impl Shared {
    /// Piece `i` of a stored blob, with the blob's piece count: read from disk, nothing else.
    pub fn blob_piece(&self, name: &[u8; 32], i: u32) -> Option<(u32, Vec<u8>)> {
        let m = *self.blobs.lock().unwrap_or_else(|p| p.into_inner()).get(name)?;
        if i >= m.pieces {
            return None;
        }
        self.blob_store.piece(name, m.generation, i).ok().flatten().map(|p| (m.pieces, p))
    }

    /// A whole stored blob (for this node's own use and the API's GET).
    pub fn blob(&self, name: &[u8; 32]) -> Option<Vec<u8>> {
        let m = *self.blobs.lock().unwrap_or_else(|p| p.into_inner()).get(name)?;
        let mut out = Vec::new();
        for i in 0..m.pieces {
            out.extend_from_slice(&self.blob_store.piece(name, m.generation, i).ok().flatten()?);
        }
        Some(out)
    }

    /// Loads the stored blobs' metadata (at start; the pieces stay on disk) and sweeps the
    /// pieces of uploads a crash cut short.
    pub fn load_blobs(&self) -> Result<usize, String> {
        let entries = self.blob_store.entries().map_err(|e| e.to_string())?;
        let mut metas = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        for (name, bytes) in entries {
            if let Some(m) = BlobMeta::decode(&bytes) {
                metas.insert(name, m);
            }
        }
        let served = metas.iter().map(|(n, m)| (*n, m.generation)).collect();
        let swept = self.blob_store.sweep(&served).map_err(|e| e.to_string())?;
        if swept > 0 {
            tracing::info!(pieces = swept, "removed the pieces of uploads cut short");
        }
        let highest = metas.values().map(|m| m.generation).max().unwrap_or(0);
        self.uploads.lock().unwrap_or_else(|p| p.into_inner()).start_after(highest);
        Ok(metas.len())
    }

    /// Deletes the blobs no task needs any more (see [`still_needed`]); returns how many.
    pub fn collect_blobs(&self) -> Result<usize, String> {
        let doomed: Vec<([u8; 32], u64)> = {
            let node = self.lock();
            let (market, height) = (&node.chain.ledger().market, node.chain.height());
            let metas = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
            metas.iter().filter(|(_, m)| !still_needed(market, m, height)).map(|(n, m)| (*n, m.generation)).collect()
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        self.blob_store.delete(&doomed).map_err(|e| e.to_string())?;
        let mut metas = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        for (n, generation) in &doomed {
            // Unless an upload replaced it meanwhile.
            if metas.get(n).is_some_and(|m| m.generation == *generation) {
                metas.remove(n);
            }
        }
        Ok(doomed.len())
    }
}

/// One piece from a peer, if any connected peer has it.
async fn piece(shared: &Shared, name: [u8; 32], index: u32) -> Result<(u32, Vec<u8>), String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if shared.net.get().is_none() {
        return Err("this node has no network".into());
    }
    shared.send(ergon_net::Command::FetchPiece { name, piece: index, reply: tx });
    match tokio::time::timeout(Duration::from_secs(120), rx).await {
        Ok(Ok(Some(found))) => Ok(found),
        Ok(_) => Err(format!("no connected peer has piece {index} of blob {}", Hash(name).to_hex())),
        Err(_) => Err("timed out fetching a blob piece".into()),
    }
}

/// Piece `i` of blob `name` with the blob's piece count: from this node's disk (read off the
/// async workers), or else from a peer, whose piece count is bounded by `MAX_PIECES`.
pub async fn blob_piece_anywhere(shared: &Arc<Shared>, name: [u8; 32], i: u32) -> Result<(u32, Vec<u8>), String> {
    let s = shared.clone();
    if let Ok(Some(found)) = tokio::task::spawn_blocking(move || s.blob_piece(&name, i)).await {
        return Ok(found);
    }
    let (total, bytes) = piece(shared, name, i).await?;
    if total > MAX_PIECES {
        return Err(format!("a peer claims {total} pieces, more than any blob has"));
    }
    Ok((total, bytes))
}

/// Fetches blob `name`, written by `author`, and decrypts it with `secret` piece by piece as it
/// arrives; a header signed by anyone else, or a piece that does not authenticate, stops the
/// transfer.
pub async fn fetch_open(
    shared: &Arc<Shared>,
    name: [u8; 32],
    author: &Address,
    secret: &StaticSecret,
) -> Result<Vec<u8>, String> {
    if let Some(b) = shared.blob(&name) {
        check_author(&name, &b, author)?;
        return ergon_jobdata::seal::open(&b, secret).map_err(|e| e.to_string());
    }
    let (total, header) = piece(shared, name, 0).await?;
    if total > MAX_PIECES {
        return Err(format!("a peer claims {total} pieces, more than any blob has"));
    }
    check_author(&name, &header, author)?;
    let mut opener = Opener::new(&header, secret).map_err(|e| e.to_string())?;
    if opener.pieces() != total {
        return Err("the blob's header and its peer disagree on its size".into());
    }
    for i in 1..total {
        let (_, bytes) = piece(shared, name, i).await?;
        opener.push(&bytes).map_err(|e| e.to_string())?;
    }
    opener.finish().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ergon_market::{MarketParams, TaskState};
    use ergon_pouw::WorkCommitment;
    use ergon_types::{HardwareProfile, JobKind, JobSpec, Offer, Requirements, SecretKey};

    fn key(n: u8) -> SecretKey {
        SecretKey::from_bytes(&[n; 32])
    }

    /// A market where `provider` leases shard 0 of `client`'s job.
    fn leased(client: &SecretKey, provider: &SecretKey) -> (Market, Hash) {
        let params = MarketParams::devnet();
        let mut m = Market::default();
        let offer = Offer {
            profile: HardwareProfile {
                cpu_cores: 8,
                memory_mib: 1 << 16,
                gpu_model: String::new(),
                gpu_memory_mib: 0,
                int8_gmacs: 100,
            },
            price_per_gmac: 10,
            slots: 1,
            encryption_key: [1; 32],
        };
        m.register(provider.public().address(), offer, 1 << 40, 0, &params).unwrap();
        let spec = JobSpec {
            kind: JobKind::Matmul,
            inputs: vec![],
            shards: vec![WorkCommitment { m: 64, k: 64, n: 64, root_a: [3; 32], root_b: [4; 32] }],
            macs_per_shard: 64 * 64 * 64,
            requirements: Requirements {
                min_memory_mib: 0,
                min_int8_gmacs: 0,
                gpu: false,
                replicas: 1,
                lease_blocks: 5,
            },
            max_price_per_gmac: 100,
            client_key: [2; 32],
        };
        let job = m.submit(client.public().address(), Hash::of("tx", &[]), spec, 1, &params).unwrap();
        m.end_block(1, &params);
        assert!(matches!(m.job(&job).unwrap().task(0, 0).state, TaskState::Leased { .. }));
        (m, job)
    }

    #[test]
    fn only_the_client_writes_a_leases_inputs_and_only_the_leaseholder_its_result() {
        let (client, provider, stranger) = (key(1), key(2), key(3));
        let (market, job) = leased(&client, &provider);
        let p = provider.public().address();
        let input = name(&job, 0, 0, &p, Part::InputA);
        let result = name(&job, 0, 0, &p, Part::Result);
        assert_eq!(rightful_author(&market, &input), Some(client.public().address()));
        assert_eq!(rightful_author(&market, &name(&job, 0, 0, &p, Part::InputB)), Some(client.public().address()));
        assert_eq!(rightful_author(&market, &result), Some(p));
        assert_eq!(rightful_author(&market, &name(&job, 0, 1, &p, Part::InputA)), None, "no such replica");
        assert_eq!(rightful_author(&market, &[9; 32]), None);

        // Who signed what is `ergon_jobdata::blob`'s (tested there); this node refuses a blob
        // whose author is not the rightful one (`crate::uploads`).
        let junk = ergon_jobdata::seal_signed(b"junk", &[1; 32], &input, &stranger).unwrap();
        assert!(check_author(&input, &junk, &client.public().address()).is_err());
    }

    #[test]
    fn a_blob_is_sized_by_its_task_and_kept_only_while_its_task_needs_it() {
        let (client, provider) = (key(1), key(2));
        let (mut market, job) = leased(&client, &provider);
        let p = provider.public().address();
        let input = name(&job, 0, 0, &p, Part::InputA);
        let (task, part, holder, writer, most) = lease_part(&market, &input).unwrap();
        assert_eq!((task, part, holder, writer), ((job, 0, 0), Part::InputA, p, client.public().address()));
        assert_eq!(most, 64 * 64 + NPY_HEADER_BYTES, "a 64×64 int8 shard of A and its .npy header");
        let (_, _, _, _, most) = lease_part(&market, &name(&job, 0, 0, &p, Part::Result)).unwrap();
        assert_eq!(most, 64 * 64 * 4 + NPY_HEADER_BYTES);

        let meta =
            |part| BlobMeta { task: (job, 0, 0), part, holder: p, author: p, bytes: 100, pieces: 2, generation: 1 };
        let (inputs, result) = (meta(Part::InputA), meta(Part::Result));
        assert_eq!(BlobMeta::decode(&result.encode()), Some(result));
        assert_eq!(BlobMeta::decode(&result.encode()[1..]), None);
        assert!(still_needed(&market, &inputs, 1) && still_needed(&market, &result, 1));
        // Posted: the inputs are done with; the result is kept while it can be challenged.
        let params = MarketParams::devnet();
        market.post_result(p, job, 0, Hash([7; 32]), 0, 2, &params).unwrap();
        assert!(!still_needed(&market, &inputs, 2));
        assert!(still_needed(&market, &result, 2));
        // Settled: kept for RESULT_KEEP_BLOCKS after the job finished, then collected.
        let mut h = 2;
        while market.job(&job).unwrap().finished_at.is_none() {
            h += 1;
            market.end_block(h, &params);
            assert!(h < 50, "the job settles");
        }
        let finished = market.job(&job).unwrap().finished_at.unwrap();
        assert!(still_needed(&market, &result, finished + RESULT_KEEP_BLOCKS - 1));
        assert!(!still_needed(&market, &result, finished + RESULT_KEEP_BLOCKS));
        // Someone else's task, or no such job: never needed.
        assert!(!still_needed(&market, &BlobMeta { holder: client.public().address(), ..result }, finished));
        assert!(!still_needed(&market, &BlobMeta { task: (Hash([1; 32]), 0, 0), ..result }, finished));
    }
}
