//! Which blob is which, and who wrote it: the names a task's blobs are stored and looked up
//! under, and the author's signature in every blob's header (`crate::seal` is the format).
//!
//! A blob is found by a name both sides compute from the chain alone: BLAKE3-derive of (job,
//! shard, replica, part, leaseholder). The client uploads a shard's inputs sealed to its
//! leaseholder under the input names; the provider uploads the result sealed to the client under
//! the result name. Only a task's rightful author may write under its names (the job's client
//! for the inputs, the leaseholder for the result): without the signature anyone could seal junk
//! to a provider's public key under a computable name and make it give the lease up.

use ergon_types::{Address, Hash, PublicKey, SecretKey, Signature};

use crate::seal::{header_parts, CORE_BYTES, STAMP_BYTES};

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

impl Part {
    /// Its byte in a blob's name (and in a node's stored record of the blob).
    pub fn tag(self) -> u8 {
        match self {
            Part::InputA => b'a',
            Part::InputB => b'b',
            Part::Result => b'c',
        }
    }

    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            b'a' => Some(Part::InputA),
            b'b' => Some(Part::InputB),
            b'c' => Some(Part::Result),
            _ => None,
        }
    }
}

/// The name a task's blob is stored and looked up under. The leaseholder is part of it: after a
/// re-allocation the new provider's blobs never collide with the old one's.
pub fn name(job: &Hash, shard: u16, replica: u8, provider: &Address, part: Part) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("ergon v1 job blob name");
    h.update(&job.0).update(&shard.to_le_bytes()).update(&[replica, part.tag()]).update(&provider.0);
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
    crate::seal::seal(plain, recipient, entropy, |core| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_names_its_author_and_a_stamp_moved_to_another_name_or_content_fails() {
        let key = |n: u8| SecretKey::from_bytes(&[n; 32]);
        let (client, stranger) = (key(1), key(3));
        let (job, p) = (Hash::of("job", &[]), key(2).public().address());
        let input = name(&job, 0, 0, &p, Part::InputA);
        let result = name(&job, 0, 0, &p, Part::Result);
        assert_ne!(input, result);
        assert_ne!(input, name(&job, 0, 1, &p, Part::InputA), "each replica has its own names");
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

    #[test]
    fn tags_round_trip() {
        for part in [Part::InputA, Part::InputB, Part::Result] {
            assert_eq!(Part::from_tag(part.tag()), Some(part));
        }
        assert_eq!(Part::from_tag(b'z'), None);
    }
}
