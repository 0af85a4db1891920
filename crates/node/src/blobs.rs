//! Sealed job blobs (see `ergon_net::blob`): the ones this node serves, and fetching others'
//! piece by piece from peers, decrypting each piece as it arrives.
//!
//! A blob is found by a name both sides can compute from the chain alone: BLAKE3-derive of
//! (job, shard, replica, part, leaseholder). The client uploads a shard's inputs sealed to its leaseholder
//! under the input names; the provider uploads the result sealed to the client under the result
//! name. What the plaintext must be is on chain (the shard's work commitment, the posted result
//! root), so a blob's origin needs no trust.

use std::sync::Arc;
use std::time::Duration;

use ergon_net::blob::{Opener, MAX_PLAINTEXT_BYTES};
use ergon_types::{Address, Hash};
use x25519_dalek::StaticSecret;

use crate::Shared;

/// Which blob of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The job's first input: for `matmul` the shard's rows of A (int8 .npy); for `train` the
    /// data set; for `infer` the model.
    InputA,
    /// The second input: B (int8 .npy); the training spec; the data set to infer on.
    InputB,
    /// The result: the shard's product (int32 .npy); the trained model; the predictions.
    Result,
}

/// The name a task's blob is stored and looked up under. The leaseholder is part of it: after a
/// re-allocation the new provider's blobs never collide with the old one's.
pub fn name(job: &Hash, shard: u16, replica: u8, provider: &Address, part: Part) -> [u8; 32] {
    let tag = match part {
        Part::InputA => b'a',
        Part::InputB => b'b',
        Part::Result => b'c',
    };
    let mut h = blake3::Hasher::new_derive_key("ergon v1 job blob name");
    h.update(&job.0).update(&shard.to_le_bytes()).update(&[replica, tag]).update(&provider.0);
    *h.finalize().as_bytes()
}

impl Shared {
    /// Stores a sealed blob durably and serves it to peers.
    pub fn put_blob(&self, name: [u8; 32], sealed: Vec<u8>) -> Result<(), String> {
        if sealed.len() as u64 > MAX_PLAINTEXT_BYTES + (1 << 20) {
            return Err("blob too large".into());
        }
        self.lock().store.put_blob(&name, &sealed).map_err(|e| e.to_string())?;
        self.blobs.lock().unwrap_or_else(|p| p.into_inner()).insert(name, Arc::new(sealed));
        Ok(())
    }

    pub fn blob(&self, name: &[u8; 32]) -> Option<Arc<Vec<u8>>> {
        self.blobs.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
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

/// The sealed bytes of blob `name`, from this node or its peers.
pub async fn fetch_sealed(shared: &Arc<Shared>, name: [u8; 32]) -> Result<Vec<u8>, String> {
    if let Some(b) = shared.blob(&name) {
        return Ok(b.as_ref().clone());
    }
    let (total, mut out) = piece(shared, name, 0).await?;
    for i in 1..total {
        let (t, bytes) = piece(shared, name, i).await?;
        if t != total {
            return Err("peers disagree on the blob's size".into());
        }
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

/// Fetches blob `name` and decrypts it with `secret` piece by piece as it arrives; a piece that
/// does not authenticate stops the transfer.
pub async fn fetch_open(shared: &Arc<Shared>, name: [u8; 32], secret: &StaticSecret) -> Result<Vec<u8>, String> {
    if let Some(b) = shared.blob(&name) {
        return ergon_net::blob::open(&b, secret).map_err(|e| e.to_string());
    }
    let (total, header) = piece(shared, name, 0).await?;
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
