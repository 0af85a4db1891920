//! Sealed job blobs (see `ergon_net::blob`): the ones this node serves, and fetching others'
//! piece by piece from peers, decrypting each piece as it arrives.
//!
//! A blob is found by a name both sides can compute from the chain alone: BLAKE3-derive of
//! (job, shard, replica, part, leaseholder). The client uploads a shard's inputs sealed to its leaseholder
//! under the input names; the provider uploads the result sealed to the client under the result
//! name. What the plaintext must be is on chain (the shard's work commitment, the posted result
//! root).
//!
//! Every blob is also signed by its author (the header's stamp: ed25519 public key ‖ signature
//! over the name and the header's core), and only a task's rightful author may write under its
//! names: the job's client for the inputs, the leaseholder for the result. Without it anyone
//! could seal junk to a provider's public key under a computable name, overwrite the client's
//! inputs and make the provider give the lease up (the client paying for the wasted lease).

use std::sync::Arc;
use std::time::Duration;

use ergon_market::Market;
use ergon_net::blob::{header_parts, Opener, CORE_BYTES, MAX_PLAINTEXT_BYTES, STAMP_BYTES};
use ergon_types::{Address, Hash, PublicKey, SecretKey, Signature};
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

/// What the author signs: the blob's name and its header's core (which holds the plaintext's
/// hash, so the signature covers the content too).
fn stamp_message(name: &[u8; 32], core: &[u8; CORE_BYTES]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("ergon v1 sealed blob author");
    h.update(name).update(core);
    *h.finalize().as_bytes()
}

/// Seals `plain` to `recipient` under `name`, signed by `author`.
pub fn seal_signed(plain: &[u8], recipient: &[u8; 32], name: &[u8; 32], author: &SecretKey) -> Result<Vec<u8>, String> {
    let mut entropy = [0u8; 32];
    getrandom::fill(&mut entropy).map_err(|e| format!("no OS randomness: {e}"))?;
    ergon_net::blob::seal(plain, recipient, entropy, |core| {
        let mut stamp = [0u8; STAMP_BYTES];
        stamp[..32].copy_from_slice(&author.public().0);
        stamp[32..].copy_from_slice(&author.sign(&stamp_message(name, core)).0);
        stamp
    })
    .map_err(|e| e.to_string())
}

/// Who signed the blob whose header (or whole sealed bytes) is `header`, stored under `name`.
pub fn author(name: &[u8; 32], header: &[u8]) -> Result<Address, String> {
    let (core, stamp) = header_parts(header).map_err(|e| e.to_string())?;
    let key = PublicKey(stamp[..32].try_into().expect("32 bytes"));
    let sig = Signature(stamp[32..].try_into().expect("64 bytes"));
    key.verify(&stamp_message(name, core), &sig)
        .map_err(|_| "the blob's author signature does not verify".to_string())?;
    Ok(key.address())
}

/// Checks that `header` was signed by `expected` for `name`.
pub fn check_author(name: &[u8; 32], header: &[u8], expected: &Address) -> Result<(), String> {
    let signer = author(name, header)?;
    if signer != *expected {
        return Err(format!("blob signed by {signer}, not by {expected} who alone may write it"));
    }
    Ok(())
}

/// The only address that may write blob `name` now: the client of a leased task for its
/// inputs, the leaseholder for its result. `None` if the name is no open lease's.
pub fn rightful_author(market: &Market, name: &[u8; 32]) -> Option<Address> {
    market.providers().find_map(|p| {
        p.leases.iter().find_map(|&(job, shard, replica)| {
            let client = market.job(&job)?.client;
            [(Part::InputA, client), (Part::InputB, client), (Part::Result, p.owner)]
                .into_iter()
                .find(|(part, _)| self::name(&job, shard, replica, &p.owner, *part) == *name)
                .map(|(_, who)| who)
        })
    })
}

impl Shared {
    /// Stores a sealed blob durably and serves it to peers, if it is signed by the one address
    /// that may write under `name` (see [`rightful_author`]).
    pub fn put_blob(&self, name: [u8; 32], sealed: Vec<u8>) -> Result<(), String> {
        if sealed.len() as u64 > MAX_PLAINTEXT_BYTES + (1 << 20) {
            return Err("blob too large".into());
        }
        let signer = author(&name, &sealed)?;
        let node = self.lock();
        match rightful_author(&node.chain.ledger().market, &name) {
            None => return Err("no open lease has a blob of this name (the lease may have ended)".into()),
            Some(who) if who != signer => {
                return Err(format!("blob signed by {signer}, but only {who} may write under this name"))
            }
            Some(_) => {}
        }
        node.store.put_blob(&name, &sealed).map_err(|e| e.to_string())?;
        drop(node);
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
        return ergon_net::blob::open(&b, secret).map_err(|e| e.to_string());
    }
    let (total, header) = piece(shared, name, 0).await?;
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
    use ergon_types::{HardwareProfile, JobKind, JobSpec, Offer, Requirements};

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

        // The injector of issue 9: junk sealed to the provider under the input's name.
        let junk = seal_signed(b"junk", &[1; 32], &input, &stranger).unwrap();
        assert_eq!(author(&input, &junk), Ok(stranger.public().address()));
        assert!(check_author(&input, &junk, &client.public().address()).unwrap_err().contains("not by"));
        let good = seal_signed(b"A", &[1; 32], &input, &client).unwrap();
        assert!(check_author(&input, &good, &client.public().address()).is_ok());
        // A signature is bound to its name: the client's blob moved to another name fails.
        assert!(author(&result, &good).unwrap_err().contains("does not verify"));
        // A stamp lifted onto other content fails too (the core holds the plaintext's hash).
        let other = seal_signed(b"B", &[1; 32], &input, &stranger).unwrap();
        let mut forged = other.clone();
        forged[CORE_BYTES..CORE_BYTES + STAMP_BYTES].copy_from_slice(&good[CORE_BYTES..CORE_BYTES + STAMP_BYTES]);
        assert!(author(&input, &forged).is_err());
        assert!(author(&input, &good[..10]).is_err(), "a cut header is an error, not a panic");
    }
}
