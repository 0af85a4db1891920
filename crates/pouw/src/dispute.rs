//! Result commitments and the proof that a committed product is wrong.
//!
//! A provider commits to a shard's result C (m×n, int32) by a Merkle tree over its rows:
//! leaf = BLAKE3(domain ‖ index ‖ row as little-endian i32), root = BLAKE3(domain ‖ m ‖ n ‖ tree).
//! Anyone holding A, B and C can point at one wrong entry C[i][j] with a [`WrongEntry`]: A's
//! row-block holding row i, B's column-block holding column j, and row i of C, each with its
//! Merkle path. Checking it costs one dot product of length k and three paths, so a chain can
//! judge it and slash the provider without ever seeing the matrices.
//!
//! A client finds such an entry cheaply: a Freivalds check per row (C·x against A·(B·x)) names
//! the wrong rows, and one row of A·B names the entry.

use ergon_kernels::{MatI32, MatI8};

use crate::merkle::{self, Hash};
use crate::params::{TILE_COLS, TILE_ROWS};
use crate::{PouwError, WorkCommitment};

const LEAF_C: &str = "ergon pouw v1 leaf of C (row)";
const ROOT_C: &str = "ergon pouw v1 root of C";

/// Deepest product a dispute can carry (the openings grow with k).
pub const MAX_DISPUTE_K: usize = 16_384;
/// Widest result a dispute can carry (one row of C is opened).
pub const MAX_DISPUTE_N: usize = 16_384;
const MAX_PATH: usize = 40;
/// Largest encoded [`WrongEntry`].
pub const MAX_DISPUTE_BYTES: usize =
    8 + 3 * 4 + (TILE_ROWS + TILE_COLS) * MAX_DISPUTE_K + 4 * MAX_DISPUTE_N + 3 * (4 + 32 * MAX_PATH);

fn as_le_bytes(row: &[i32]) -> Vec<u8> {
    row.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn leaf_c(index: u32, row: &[i32]) -> Hash {
    let mut h = blake3::Hasher::new_derive_key(LEAF_C);
    h.update(&index.to_le_bytes());
    h.update(&as_le_bytes(row));
    *h.finalize().as_bytes()
}

fn root_c(m: u32, n: u32, tree: &Hash) -> Hash {
    let mut h = blake3::Hasher::new_derive_key(ROOT_C);
    h.update(&m.to_le_bytes());
    h.update(&n.to_le_bytes());
    h.update(tree);
    *h.finalize().as_bytes()
}

/// The leaf hashes of a result's rows (in parallel: a wide result is many megabytes).
pub fn result_leaves(c: &MatI32) -> Vec<Hash> {
    use rayon::prelude::*;
    (0..c.rows()).into_par_iter().map(|i| leaf_c(i as u32, &c.as_slice()[i * c.cols()..(i + 1) * c.cols()])).collect()
}

/// The commitment a provider posts for its result.
pub fn result_root(c: &MatI32) -> Hash {
    result_root_of_leaves(c.rows() as u32, c.cols() as u32, &result_leaves(c))
}

/// [`result_root`] from the result's [`result_leaves`].
pub fn result_root_of_leaves(m: u32, n: u32, leaves: &[Hash]) -> Hash {
    root_c(m, n, &merkle::tree_root(leaves))
}

/// Evidence that entry (row, col) of a committed result is not the product of the committed
/// operands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrongEntry {
    pub row: u32,
    pub col: u32,
    /// A's leaf `row / 24`: its rows, row-major.
    pub a_block: Vec<i8>,
    pub a_path: Vec<Hash>,
    /// B's leaf `col / 32`: its columns, as k rows of the block's width.
    pub b_block: Vec<i8>,
    pub b_path: Vec<Hash>,
    pub c_row: Vec<i32>,
    pub c_path: Vec<Hash>,
}

impl WrongEntry {
    /// Builds the evidence for entry (row, col) of `c` as committed for `a`·`b`.
    pub fn build(a: &MatI8, b: &MatI8, c: &MatI32, row: usize, col: usize) -> Result<Self, PouwError> {
        let (m, k, n) = (a.rows(), a.cols(), b.cols());
        if b.rows() != k || c.rows() != m || c.cols() != n || row >= m || col >= n {
            return Err(PouwError::Shape(format!("entry ({row}, {col}) of a {m}×{k}·{k}×{n} product")));
        }
        let (ai, bj) = (row / TILE_ROWS, col / TILE_COLS);
        let rows = (m - ai * TILE_ROWS).min(TILE_ROWS);
        let width = (n - bj * TILE_COLS).min(TILE_COLS);
        Ok(Self {
            row: row as u32,
            col: col as u32,
            a_block: merkle::row_block(a.as_slice(), k, ai * TILE_ROWS, rows).to_vec(),
            a_path: merkle::path(&merkle::leaves_a(a.as_slice(), m, k), ai),
            b_block: merkle::column_block(b.as_slice(), k, n, bj * TILE_COLS, width),
            b_path: merkle::path(&merkle::leaves_b(b.as_slice(), k, n), bj),
            c_row: c.as_slice()[row * n..(row + 1) * n].to_vec(),
            c_path: merkle::path(&result_leaves(c), row),
        })
    }

    /// Checks the evidence against the job shard's commitment and the posted result root.
    /// `Ok((claimed, correct))` means it proves the result wrong; any error means it does not.
    pub fn check(&self, work: &WorkCommitment, result: &Hash) -> Result<(i32, i64), PouwError> {
        let bad = |why: String| Err(PouwError::Invalid(why));
        let (m, k, n) = (work.m as usize, work.k as usize, work.n as usize);
        let (row, col) = (self.row as usize, self.col as usize);
        if row >= m || col >= n {
            return bad(format!("entry ({row}, {col}) is outside the {m}×{n} result"));
        }
        let (ai, bj) = (row / TILE_ROWS, col / TILE_COLS);
        let rows = (m - ai * TILE_ROWS).min(TILE_ROWS);
        let width = (n - bj * TILE_COLS).min(TILE_COLS);
        if self.a_block.len() != rows * k || self.b_block.len() != k * width || self.c_row.len() != n {
            return bad("opened blocks have the wrong size for the committed shape".into());
        }
        let opened = |leaf, index, count, path: &[Hash]| merkle::root_from_path(leaf, index, count, path);
        let a_tree = opened(merkle::leaf_a(ai as u32, &self.a_block), ai, m.div_ceil(TILE_ROWS), &self.a_path);
        if a_tree.map(|t| merkle::root_a(m as u32, k as u32, &t)) != Some(work.root_a) {
            return bad("A's block does not open to the job's commitment".into());
        }
        let b_tree = opened(merkle::leaf_b(bj as u32, &self.b_block), bj, n.div_ceil(TILE_COLS), &self.b_path);
        if b_tree.map(|t| merkle::root_b(k as u32, n as u32, &t)) != Some(work.root_b) {
            return bad("B's block does not open to the job's commitment".into());
        }
        let c_tree = opened(leaf_c(self.row, &self.c_row), row, m, &self.c_path);
        if c_tree.map(|t| root_c(m as u32, n as u32, &t)) != Some(*result) {
            return bad("the result row does not open to the posted result".into());
        }
        let a_row = &self.a_block[(row - ai * TILE_ROWS) * k..][..k];
        let c0 = col - bj * TILE_COLS;
        let correct: i64 = (0..k).map(|t| a_row[t] as i64 * self.b_block[t * width + c0] as i64).sum();
        let claimed = self.c_row[col];
        if claimed as i64 == correct {
            return bad(format!("entry ({row}, {col}) = {claimed} is correct"));
        }
        Ok((claimed, correct))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.row.to_le_bytes());
        out.extend_from_slice(&self.col.to_le_bytes());
        put_block(&mut out, &self.a_block.iter().map(|&v| v as u8).collect::<Vec<_>>());
        put_path(&mut out, &self.a_path);
        put_block(&mut out, &self.b_block.iter().map(|&v| v as u8).collect::<Vec<_>>());
        put_path(&mut out, &self.b_path);
        put_block(&mut out, &as_le_bytes(&self.c_row));
        put_path(&mut out, &self.c_path);
        out
    }

    /// Decodes exactly one `WrongEntry`, refusing oversize input before allocating.
    pub fn decode(bytes: &[u8]) -> Result<Self, PouwError> {
        let mut r = Cursor::new(bytes, MAX_DISPUTE_BYTES)?;
        let (row, col) = (r.u32()?, r.u32()?);
        let a_block = r.block(TILE_ROWS * MAX_DISPUTE_K)?.iter().map(|&v| v as i8).collect();
        let a_path = r.path()?;
        let b_block = r.block(TILE_COLS * MAX_DISPUTE_K)?.iter().map(|&v| v as i8).collect();
        let b_path = r.path()?;
        let c_row = r.result_row()?;
        let c_path = r.path()?;
        r.finish()?;
        Ok(Self { row, col, a_block, a_path, b_block, b_path, c_row, c_path })
    }
}

/// Most rows one availability challenge may ask for (16 rows of the widest result are 1 MiB).
pub const MAX_REVEAL_ROWS: usize = 16;
/// Largest encoded [`RevealedRow`].
pub const MAX_REVEALED_ROW_BYTES: usize = 4 + 4 + 4 * MAX_DISPUTE_N + 4 + 32 * MAX_PATH;

/// One row of a committed result, opened against its root: what a provider publishes on chain
/// when a client says it could not get the result, so that withholding cannot be paid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevealedRow {
    pub index: u32,
    pub row: Vec<i32>,
    pub path: Vec<Hash>,
}

impl RevealedRow {
    /// Opens row `index` of `c`.
    pub fn build(c: &MatI32, index: usize) -> Result<Self, PouwError> {
        let mut one = Self::build_many(c, &result_leaves(c), &[index])?;
        Ok(one.remove(0))
    }

    /// Opens rows `indices` of `c`, whose [`result_leaves`] are `leaves` (`build` hashes every
    /// row for each row it opens).
    pub fn build_many(c: &MatI32, leaves: &[Hash], indices: &[usize]) -> Result<Vec<Self>, PouwError> {
        indices
            .iter()
            .map(|&index| {
                if index >= c.rows() {
                    return Err(PouwError::Shape(format!("row {index} of a result with {} rows", c.rows())));
                }
                let row = c.as_slice()[index * c.cols()..(index + 1) * c.cols()].to_vec();
                Ok(Self { index: index as u32, row, path: merkle::path(leaves, index) })
            })
            .collect()
    }

    /// Whether this is row `index` of the m×n result committed as `result`.
    pub fn check(&self, m: u32, n: u32, result: &Hash) -> Result<(), PouwError> {
        if self.index >= m || self.row.len() != n as usize {
            return Err(PouwError::Invalid(format!(
                "row {} of {} values does not fit the {m}×{n} result",
                self.index,
                self.row.len()
            )));
        }
        let tree = merkle::root_from_path(leaf_c(self.index, &self.row), self.index as usize, m as usize, &self.path);
        if tree.map(|t| root_c(m, n, &t)) != Some(*result) {
            return Err(PouwError::Invalid(format!("row {} does not open to the posted result", self.index)));
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + 4 * self.row.len() + 32 * self.path.len());
        out.extend_from_slice(&self.index.to_le_bytes());
        put_block(&mut out, &as_le_bytes(&self.row));
        put_path(&mut out, &self.path);
        out
    }

    /// Decodes exactly one `RevealedRow`, refusing oversize input before allocating.
    pub fn decode(bytes: &[u8]) -> Result<Self, PouwError> {
        let mut r = Cursor::new(bytes, MAX_REVEALED_ROW_BYTES)?;
        let index = r.u32()?;
        let row = r.result_row()?;
        let path = r.path()?;
        r.finish()?;
        Ok(Self { index, row, path })
    }
}

/// A length-prefixed byte block (u32 length, then the bytes).
fn put_block(out: &mut Vec<u8>, v: &[u8]) {
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    out.extend_from_slice(v);
}

/// A Merkle path: u32 count, then the hashes.
fn put_path(out: &mut Vec<u8>, p: &[Hash]) {
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    p.iter().for_each(|h| out.extend_from_slice(h));
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// Refuses more than `max` bytes before anything is parsed.
    fn new(bytes: &'a [u8], max: usize) -> Result<Self, PouwError> {
        if bytes.len() > max {
            return Err(PouwError::Decode(format!("{} bytes exceed the {max}-byte limit", bytes.len())));
        }
        Ok(Self { bytes, at: 0 })
    }
    /// Everything must have been read.
    fn finish(&self) -> Result<(), PouwError> {
        if self.at != self.bytes.len() {
            return Err(PouwError::Decode(format!("{} trailing bytes", self.bytes.len() - self.at)));
        }
        Ok(())
    }
    /// A row of a result: a block of whole little-endian i32s, at most the widest result.
    fn result_row(&mut self) -> Result<Vec<i32>, PouwError> {
        let bytes = self.block(4 * MAX_DISPUTE_N)?;
        if bytes.len() % 4 != 0 {
            return Err(PouwError::Decode("result row is not whole i32s".into()));
        }
        Ok(bytes.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes"))).collect())
    }
    fn take(&mut self, len: usize) -> Result<&'a [u8], PouwError> {
        let end = self.at.checked_add(len).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| PouwError::Decode(format!("truncated at byte {}", self.at)))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, PouwError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn block(&mut self, max: usize) -> Result<&'a [u8], PouwError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(PouwError::Decode(format!("block of {len} bytes exceeds {max}")));
        }
        self.take(len)
    }
    fn path(&mut self) -> Result<Vec<Hash>, PouwError> {
        let len = self.u32()? as usize;
        if len > MAX_PATH {
            return Err(PouwError::Decode(format!("path of {len} hashes exceeds {MAX_PATH}")));
        }
        (0..len).map(|_| Ok(self.take(32)?.try_into().expect("32 bytes"))).collect()
    }
}
