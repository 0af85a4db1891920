//! Merkle commitments to job matrices, shaped for the proofs: A is committed by blocks of
//! `TILE_ROWS` rows, B by blocks of `TILE_COLS` columns, so a winning ticket's proof opens exactly
//! one leaf of each.
//!
//! Leaf = BLAKE3(domain ‖ index ‖ bytes); node = BLAKE3(domain ‖ left ‖ right); a node without a
//! sibling moves up unchanged; root = BLAKE3(domain ‖ shape ‖ tree root), so the shape is bound.

use rayon::prelude::*;

use crate::params::{TILE_COLS, TILE_ROWS};

pub type Hash = [u8; 32];

const LEAF_A: &str = "ergon pouw v1 leaf of A (row block)";
const LEAF_B: &str = "ergon pouw v1 leaf of B (column block)";
const NODE: &str = "ergon pouw v1 merkle node";
const ROOT_A: &str = "ergon pouw v1 root of A";
const ROOT_B: &str = "ergon pouw v1 root of B";

fn hash_parts(domain: &str, parts: &[&[u8]]) -> Hash {
    let mut h = blake3::Hasher::new_derive_key(domain);
    for p in parts {
        h.update(p);
    }
    *h.finalize().as_bytes()
}

fn as_bytes(v: &[i8]) -> &[u8] {
    // SAFETY: i8 and u8 have the same size and alignment, and every bit pattern is valid for both.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len()) }
}

/// Hash of A's leaf `index`: rows index·24 .. (clipped), row-major.
pub fn leaf_a(index: u32, rows: &[i8]) -> Hash {
    hash_parts(LEAF_A, &[&index.to_le_bytes(), as_bytes(rows)])
}

/// Hash of B's leaf `index`: columns index·32 .. (clipped), as k rows of that width.
pub fn leaf_b(index: u32, strip: &[i8]) -> Hash {
    hash_parts(LEAF_B, &[&index.to_le_bytes(), as_bytes(strip)])
}

pub fn root_a(m: u32, k: u32, tree: &Hash) -> Hash {
    hash_parts(ROOT_A, &[&m.to_le_bytes(), &k.to_le_bytes(), tree])
}

pub fn root_b(k: u32, n: u32, tree: &Hash) -> Hash {
    hash_parts(ROOT_B, &[&k.to_le_bytes(), &n.to_le_bytes(), tree])
}

fn node(l: &Hash, r: &Hash) -> Hash {
    hash_parts(NODE, &[l, r])
}

/// Rows i0..i0+rows of a row-major matrix with `cols` columns.
pub fn row_block(a: &[i8], cols: usize, i0: usize, rows: usize) -> &[i8] {
    &a[i0 * cols..(i0 + rows) * cols]
}

/// Columns j0..j0+width of a row-major k×n matrix, as k rows of `width`.
pub fn column_block(b: &[i8], k: usize, n: usize, j0: usize, width: usize) -> Vec<i8> {
    let mut out = Vec::with_capacity(k * width);
    for t in 0..k {
        out.extend_from_slice(&b[t * n + j0..t * n + j0 + width]);
    }
    out
}

/// All leaf hashes of A (m×k).
pub fn leaves_a(a: &[i8], m: usize, k: usize) -> Vec<Hash> {
    (0..m.div_ceil(TILE_ROWS))
        .into_par_iter()
        .map(|i| {
            let rows = (m - i * TILE_ROWS).min(TILE_ROWS);
            leaf_a(i as u32, row_block(a, k, i * TILE_ROWS, rows))
        })
        .collect()
}

/// All leaf hashes of B (k×n).
pub fn leaves_b(b: &[i8], k: usize, n: usize) -> Vec<Hash> {
    (0..n.div_ceil(TILE_COLS))
        .into_par_iter()
        .map(|j| {
            let width = (n - j * TILE_COLS).min(TILE_COLS);
            leaf_b(j as u32, &column_block(b, k, n, j * TILE_COLS, width))
        })
        .collect()
}

/// Root of the tree over `leaves` (non-empty).
pub fn tree_root(leaves: &[Hash]) -> Hash {
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = level.chunks(2).map(|p| if p.len() == 2 { node(&p[0], &p[1]) } else { p[0] }).collect();
    }
    level[0]
}

/// Sibling hashes from leaf `index` up to the root (levels where it has no sibling are skipped).
pub fn path(leaves: &[Hash], mut index: usize) -> Vec<Hash> {
    let mut level = leaves.to_vec();
    let mut out = Vec::new();
    while level.len() > 1 {
        let sibling = index ^ 1;
        if sibling < level.len() {
            out.push(level[sibling]);
        }
        level = level.chunks(2).map(|p| if p.len() == 2 { node(&p[0], &p[1]) } else { p[0] }).collect();
        index /= 2;
    }
    out
}

/// The tree root implied by `leaf` at `index` of `count` leaves and its `path`; `None` when the
/// path has the wrong length for that position.
pub fn root_from_path(leaf: Hash, mut index: usize, mut count: usize, path: &[Hash]) -> Option<Hash> {
    if index >= count {
        return None;
    }
    let mut acc = leaf;
    let mut siblings = path.iter();
    while count > 1 {
        let sibling = index ^ 1;
        if sibling < count {
            let s = siblings.next()?;
            acc = if index.is_multiple_of(2) { node(&acc, s) } else { node(s, &acc) };
        }
        index /= 2;
        count = count.div_ceil(2);
    }
    siblings.next().is_none().then_some(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_leads_to_the_root_and_only_there() {
        for count in 1..=9usize {
            let leaves: Vec<Hash> = (0..count).map(|i| [i as u8; 32]).collect();
            let root = tree_root(&leaves);
            for i in 0..count {
                let p = path(&leaves, i);
                assert_eq!(root_from_path(leaves[i], i, count, &p), Some(root), "{i} of {count}");
                assert_ne!(root_from_path([99; 32], i, count, &p), Some(root));
                if count > 1 {
                    let other = (i + 1) % count;
                    assert_ne!(root_from_path(leaves[i], other, count, &p), Some(root));
                }
                let mut longer = p.clone();
                longer.push([0; 32]);
                assert_eq!(root_from_path(leaves[i], i, count, &longer), None);
            }
        }
    }
}
