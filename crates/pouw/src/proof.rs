//! Winning-ticket proofs: their canonical encoding and their verification from the challenge alone.
//!
//! Encoding, version 1 (all integers little-endian):
//! `version u8 = 1 | nonce u64 | ticket u64 | tile_row u32 | tile_col u32 | k u32 | rows u8 | cols u8 |
//!  a_rows [rows·k] i8 | b_cols [k·cols] i8 | a_path_len u8 | a_path [32]… | b_path_len u8 | b_path [32]…`

use ergon_kernels::gemm::{gemm_into, transcript_grid, GemmOptions, Transcript, MAX_K};
use ergon_kernels::{MatI32, MatI8};

use crate::challenge::Challenge;
use crate::merkle::{self, Hash};
use crate::noise::Noise;
use crate::params::{RANK, TILE_COLS, TILE_ROWS, VERSION};
use crate::ticket::{self, Ticket};
use crate::PouwError;

/// Longest Merkle path accepted (2^32 leaves).
const MAX_PATH: usize = 32;
/// Largest encoded proof: the strips at the deepest k plus paths and fixed fields.
pub const MAX_PROOF_BYTES: usize = 31 + (TILE_ROWS + TILE_COLS) * MAX_K + 2 + 2 * MAX_PATH * 32;

/// Everything a verifier needs besides the challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    pub nonce: u64,
    /// The ticket value claimed; verification recomputes it and requires equality.
    pub ticket: u64,
    pub tile_row: u32,
    pub tile_col: u32,
    /// Inner dimension of the job (the strips' shared length).
    pub k: u32,
    /// The ticket tile's rows of A (≤ 24 × k), row-major.
    pub a_rows: Vec<i8>,
    pub a_path: Vec<Hash>,
    /// The ticket tile's columns of B (k × ≤ 32), row-major.
    pub b_cols: Vec<i8>,
    pub b_path: Vec<Hash>,
}

impl Proof {
    /// Canonical bytes. Strip lengths must be multiples of `k` (as `prove` and `decode` make them).
    pub fn encode(&self) -> Vec<u8> {
        let k = (self.k as usize).max(1);
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(VERSION);
        out.extend_from_slice(&self.nonce.to_le_bytes());
        out.extend_from_slice(&self.ticket.to_le_bytes());
        out.extend_from_slice(&self.tile_row.to_le_bytes());
        out.extend_from_slice(&self.tile_col.to_le_bytes());
        out.extend_from_slice(&self.k.to_le_bytes());
        out.push((self.a_rows.len() / k) as u8);
        out.push((self.b_cols.len() / k) as u8);
        out.extend(self.a_rows.iter().map(|&v| v as u8));
        out.extend(self.b_cols.iter().map(|&v| v as u8));
        for path in [&self.a_path, &self.b_path] {
            out.push(path.len() as u8);
            path.iter().for_each(|h| out.extend_from_slice(h));
        }
        out
    }

    pub fn encoded_len(&self) -> usize {
        31 + self.a_rows.len() + self.b_cols.len() + 2 + 32 * (self.a_path.len() + self.b_path.len())
    }

    /// Decodes a proof; any malformed, truncated, oversized or trailing input is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, PouwError> {
        if bytes.len() > MAX_PROOF_BYTES {
            return Err(PouwError::Decode(format!("{} bytes exceed the {MAX_PROOF_BYTES}-byte limit", bytes.len())));
        }
        let mut r = Reader { bytes, at: 0 };
        let version = r.u8()?;
        if version != VERSION {
            return Err(PouwError::Decode(format!("unknown proof version {version}")));
        }
        let nonce = r.u64()?;
        let ticket = r.u64()?;
        let tile_row = r.u32()?;
        let tile_col = r.u32()?;
        let k = r.u32()? as usize;
        let (rows, cols) = (r.u8()? as usize, r.u8()? as usize);
        if k == 0 || k > MAX_K || rows == 0 || rows > TILE_ROWS || cols == 0 || cols > TILE_COLS {
            return Err(PouwError::Decode(format!("strip shape {rows}x{k} / {k}x{cols} out of bounds")));
        }
        let a_rows = r.take(rows * k)?.iter().map(|&v| v as i8).collect();
        let b_cols = r.take(k * cols)?.iter().map(|&v| v as i8).collect();
        let a_path = r.path()?;
        let b_path = r.path()?;
        if r.at != bytes.len() {
            return Err(PouwError::Decode(format!("{} trailing bytes", bytes.len() - r.at)));
        }
        Ok(Self { nonce, ticket, tile_row, tile_col, k: k as u32, a_rows, a_path, b_cols, b_path })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], PouwError> {
        let end = self.at.checked_add(len).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| PouwError::Decode(format!("truncated at byte {}", self.at)))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, PouwError> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, PouwError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn u32(&mut self) -> Result<u32, PouwError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn path(&mut self) -> Result<Vec<Hash>, PouwError> {
        let len = self.u8()? as usize;
        if len > MAX_PATH {
            return Err(PouwError::Decode(format!("Merkle path of {len} levels")));
        }
        (0..len).map(|_| Ok(self.take(32)?.try_into().expect("32 bytes"))).collect()
    }
}

/// Checks a proof against its challenge and returns the winning ticket. Needs nothing else: the
/// strips are authenticated by the roots in the challenge, the noise comes from its seed, and the
/// tile's whole transcript (one tile column of the product, 24·32·k multiply-adds) is recomputed.
pub fn verify(challenge: &Challenge, proof: &Proof) -> Result<Ticket, PouwError> {
    let (m, k, n) = challenge.work.dims();
    let (tr, tc) = (proof.tile_row as usize, proof.tile_col as usize);
    let (grid_rows, grid_cols) = ticket::ticket_grid(m, n);
    if tr >= grid_rows || tc >= grid_cols {
        return Err(PouwError::Invalid(format!("ticket tile ({tr}, {tc}) outside the {grid_rows}x{grid_cols} grid")));
    }
    let (i0, j0) = (tr * TILE_ROWS, tc * TILE_COLS);
    let (rows, cols) = ((m - i0).min(TILE_ROWS), (n - j0).min(TILE_COLS));
    if proof.k as usize != k || proof.a_rows.len() != rows * k || proof.b_cols.len() != k * cols {
        return Err(PouwError::Invalid(format!(
            "strips hold {} and {} entries; tile ({tr}, {tc}) needs {rows}x{k} and {k}x{cols}",
            proof.a_rows.len(),
            proof.b_cols.len()
        )));
    }
    let a_tree = merkle::root_from_path(merkle::leaf_a(tr as u32, &proof.a_rows), tr, grid_rows, &proof.a_path);
    if a_tree.map(|t| merkle::root_a(m as u32, k as u32, &t)) != Some(challenge.work.root_a) {
        return Err(PouwError::Invalid("rows of A do not match the committed root of A".into()));
    }
    let b_tree = merkle::root_from_path(merkle::leaf_b(tc as u32, &proof.b_cols), tc, grid_cols, &proof.b_path);
    if b_tree.map(|t| merkle::root_b(k as u32, n as u32, &t)) != Some(challenge.work.root_b) {
        return Err(PouwError::Invalid("columns of B do not match the committed root of B".into()));
    }

    let seed = challenge.seed(proof.nonce);
    let noise = Noise::derive(&seed, i0..i0 + rows, k, j0..j0 + cols);
    let a_noisy = MatI8::from_vec(rows, k, noise.perturb_a(&proof.a_rows)?)?;
    let b_noisy = MatI8::from_vec(k, cols, noise.perturb_b(&proof.b_cols)?)?;
    let (gr, gc) = transcript_grid(rows, cols);
    let mut states = vec![[0u32; 8]; gr * gc];
    let mut c = MatI32::zeros(rows, cols)?;
    gemm_into(
        &a_noisy,
        &b_noisy,
        &mut c,
        Some(Transcript { depth: RANK, states: &mut states }),
        GemmOptions::default(),
    )?;

    let value = ticket::ticket_value(&seed, tr as u32, tc as u32, states.iter());
    if value != proof.ticket {
        return Err(PouwError::Invalid(format!(
            "recomputed ticket {value:#018x} differs from the claimed {:#018x} (other header, nonce, target or data)",
            proof.ticket
        )));
    }
    let work = ticket::tile_work(m, k, n, tr, tc);
    if !ticket::wins(value, work, challenge.difficulty) {
        return Err(PouwError::Invalid(format!(
            "ticket {value:#018x} of tile ({tr}, {tc}) does not meet difficulty {} for {work} multiply-adds",
            challenge.difficulty
        )));
    }
    Ok(Ticket { tile_row: tr as u32, tile_col: tc as u32, value, work })
}
