//! What a miner works on: an opaque header, the committed job matrices and a difficulty; and the
//! per-nonce seed everything random is derived from.

use ergon_kernels::MatI8;

use crate::merkle::{self, Hash};
use crate::params::{MAX_HEADER_BYTES, MAX_SIDE};
use crate::PouwError;

/// Commitment to the job's operands: shapes and Merkle roots of A (m×k) and B (k×n).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkCommitment {
    pub m: u32,
    pub k: u32,
    pub n: u32,
    pub root_a: Hash,
    pub root_b: Hash,
}

/// Encoded size of a [`WorkCommitment`].
pub const WORK_BYTES: usize = 12 + 64;

impl WorkCommitment {
    /// Commits to A and B (hashes every byte once; the client does this when posting a job).
    pub fn compute(a: &MatI8, b: &MatI8) -> Result<Self, PouwError> {
        let (m, k, n) = (a.rows(), a.cols(), b.cols());
        if b.rows() != k {
            return Err(PouwError::Shape(format!("cannot multiply {m}x{k} by {}x{n}", b.rows())));
        }
        check_sides(m, k, n)?;
        let ra = merkle::tree_root(&merkle::leaves_a(a.as_slice(), m, k));
        let rb = merkle::tree_root(&merkle::leaves_b(b.as_slice(), k, n));
        let (m, k, n) = (m as u32, k as u32, n as u32);
        Ok(Self { m, k, n, root_a: merkle::root_a(m, k, &ra), root_b: merkle::root_b(k, n, &rb) })
    }

    pub fn encode(&self) -> [u8; WORK_BYTES] {
        let mut out = [0u8; WORK_BYTES];
        out[0..4].copy_from_slice(&self.m.to_le_bytes());
        out[4..8].copy_from_slice(&self.k.to_le_bytes());
        out[8..12].copy_from_slice(&self.n.to_le_bytes());
        out[12..44].copy_from_slice(&self.root_a);
        out[44..76].copy_from_slice(&self.root_b);
        out
    }

    pub fn decode(bytes: &[u8; WORK_BYTES]) -> Result<Self, PouwError> {
        let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let w = Self {
            m: u32_at(0),
            k: u32_at(4),
            n: u32_at(8),
            root_a: bytes[12..44].try_into().expect("32 bytes"),
            root_b: bytes[44..76].try_into().expect("32 bytes"),
        };
        check_sides(w.m as usize, w.k as usize, w.n as usize)?;
        Ok(w)
    }

    /// (m, k, n) as usize.
    pub fn dims(&self) -> (usize, usize, usize) {
        (self.m as usize, self.k as usize, self.n as usize)
    }
}

pub(crate) fn check_sides(m: usize, k: usize, n: usize) -> Result<(), PouwError> {
    if m == 0 || k == 0 || n == 0 || m > MAX_SIDE || n > MAX_SIDE || k > ergon_kernels::gemm::MAX_K {
        return Err(PouwError::Shape(format!(
            "{m}x{k}x{n} is outside 1..={MAX_SIDE} (m, n) and 1..={} (k)",
            ergon_kernels::gemm::MAX_K
        )));
    }
    Ok(())
}

/// One mining puzzle: the header it will seal, the job matrices and the difficulty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The block header without nonce and proof: opaque here (the chain decides its layout).
    pub header: Vec<u8>,
    pub work: WorkCommitment,
    /// Expected multiply-adds per winning ticket: a ticket covering w multiply-adds wins with
    /// probability w / difficulty.
    pub difficulty: u64,
}

impl Challenge {
    pub fn new(header: Vec<u8>, work: WorkCommitment, difficulty: u64) -> Result<Self, PouwError> {
        if header.len() > MAX_HEADER_BYTES {
            return Err(PouwError::Shape(format!("header of {} bytes exceeds {MAX_HEADER_BYTES}", header.len())));
        }
        if difficulty == 0 {
            return Err(PouwError::Shape("difficulty must be at least 1".into()));
        }
        Ok(Self { header, work, difficulty })
    }

    /// The bytes the seed key is derived from: header length and bytes, work, difficulty.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.header.len() + WORK_BYTES + 8);
        out.extend_from_slice(&(self.header.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&self.work.encode());
        out.extend_from_slice(&self.difficulty.to_le_bytes());
        out
    }

    /// Inverse of [`Challenge::encode`]; also returns the bytes consumed.
    pub fn decode(bytes: &[u8]) -> Result<(Self, usize), PouwError> {
        let short = || PouwError::Decode("challenge truncated".into());
        let len = u32::from_le_bytes(bytes.get(..4).ok_or_else(short)?.try_into().expect("4 bytes")) as usize;
        if len > MAX_HEADER_BYTES {
            return Err(PouwError::Decode(format!("header of {len} bytes exceeds {MAX_HEADER_BYTES}")));
        }
        let header = bytes.get(4..4 + len).ok_or_else(short)?.to_vec();
        let work: &[u8; WORK_BYTES] =
            bytes.get(4 + len..4 + len + WORK_BYTES).ok_or_else(short)?.try_into().expect("fixed size");
        let end = 4 + len + WORK_BYTES + 8;
        let difficulty = u64::from_le_bytes(bytes.get(end - 8..end).ok_or_else(short)?.try_into().expect("8 bytes"));
        let challenge = Self::new(header, WorkCommitment::decode(work)?, difficulty)
            .map_err(|e| PouwError::Decode(e.to_string()))?;
        Ok((challenge, end))
    }

    /// seed = BLAKE3-keyed(key = derive_key("…challenge", encode()), nonce as u64 LE).
    /// Every noise matrix and every ticket of this nonce is derived from it.
    pub fn seed(&self, nonce: u64) -> Seed {
        let key = blake3::derive_key("ergon pouw v1 challenge key", &self.encode());
        Seed(*blake3::keyed_hash(&key, &nonce.to_le_bytes()).as_bytes())
    }
}

/// The 32-byte per-nonce seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seed(pub [u8; 32]);

impl Seed {
    /// An independent XOF stream for one named use of the seed.
    pub(crate) fn stream(&self, label: &str) -> blake3::OutputReader {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(b"ergon pouw v1 stream ");
        h.update(label.as_bytes());
        h.finalize_xof()
    }
}
