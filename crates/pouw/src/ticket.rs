//! Tickets: one per ticket tile (24×32 outputs = 4×2 microtiles), hashed from the tile's folded
//! transcript, winning with probability (multiply-adds it covers) / difficulty.

use ergon_kernels::gemm::{transcript_grid, FoldState};
use rayon::prelude::*;

use crate::challenge::Seed;
use crate::params::{TILE_COLS, TILE_ROWS};
use ergon_kernels::gemm::{MR, NR};

/// A winning ticket (or any ticket, when reported).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub tile_row: u32,
    pub tile_col: u32,
    /// First 8 bytes of the ticket hash, little-endian.
    pub value: u64,
    /// Multiply-adds the tile covers: rows × cols × k, clipped at the matrix edge.
    pub work: u64,
}

/// Grid of ticket tiles of an m×n product.
pub fn ticket_grid(m: usize, n: usize) -> (usize, usize) {
    (m.div_ceil(TILE_ROWS), n.div_ceil(TILE_COLS))
}

/// Multiply-adds covered by ticket tile (tr, tc).
pub fn tile_work(m: usize, k: usize, n: usize, tr: usize, tc: usize) -> u64 {
    let rows = (m - tr * TILE_ROWS).min(TILE_ROWS);
    let cols = (n - tc * TILE_COLS).min(TILE_COLS);
    (rows * cols * k) as u64
}

/// True when a ticket wins: value / 2^64 < work / difficulty, in exact integers.
pub fn wins(value: u64, work: u64, difficulty: u64) -> bool {
    (value as u128) * (difficulty as u128) < (work as u128) << 64
}

/// The ticket of one tile: its microtile fold states (row-major microtile order) are combined as
/// acc ← rotl(acc, 9) ⊕ state per lane, then acc is hashed with BLAKE3 keyed by the seed:
/// `"ergon pouw v1 ticket" ‖ tile_row ‖ tile_col ‖ acc` (one compression). Returns the first 8
/// bytes of the hash, little-endian.
pub fn ticket_value<'a>(seed: &Seed, tile_row: u32, tile_col: u32, states: impl Iterator<Item = &'a FoldState>) -> u64 {
    let mut acc = [0u32; 8];
    for st in states {
        for (a, &s) in acc.iter_mut().zip(st) {
            *a = a.rotate_left(9) ^ s;
        }
    }
    let mut msg = [0u8; 20 + 8 + 32];
    msg[..20].copy_from_slice(b"ergon pouw v1 ticket");
    msg[20..24].copy_from_slice(&tile_row.to_le_bytes());
    msg[24..28].copy_from_slice(&tile_col.to_le_bytes());
    for (chunk, lane) in msg[28..].chunks_exact_mut(4).zip(acc) {
        chunk.copy_from_slice(&lane.to_le_bytes());
    }
    let out = blake3::keyed_hash(&seed.0, &msg);
    u64::from_le_bytes(out.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// The fold states of ticket tile (tr, tc) in row-major microtile order, from the full grid.
pub fn tile_states(states: &[FoldState], m: usize, n: usize, tr: usize, tc: usize) -> impl Iterator<Item = &FoldState> {
    let (grid_rows, grid_cols) = transcript_grid(m, n);
    let (per_row, per_col) = (TILE_ROWS / MR, TILE_COLS / NR);
    let rows = tr * per_row..((tr + 1) * per_row).min(grid_rows);
    let cols = tc * per_col..((tc + 1) * per_col).min(grid_cols);
    rows.flat_map(move |r| cols.clone().map(move |c| &states[r * grid_cols + c]))
}

/// Every ticket of a mined product; returns (tickets evaluated, winners).
pub fn evaluate(seed: &Seed, states: &[FoldState], dims: (usize, usize, usize), difficulty: u64) -> (u64, Vec<Ticket>) {
    let (m, k, n) = dims;
    let (rows, cols) = ticket_grid(m, n);
    let winners = (0..rows * cols)
        .into_par_iter()
        .filter_map(|idx| {
            let (tr, tc) = (idx / cols, idx % cols);
            let value = ticket_value(seed, tr as u32, tc as u32, tile_states(states, m, n, tr, tc));
            let work = tile_work(m, k, n, tr, tc);
            wins(value, work, difficulty).then_some(Ticket { tile_row: tr as u32, tile_col: tc as u32, value, work })
        })
        .collect();
    ((rows * cols) as u64, winners)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn win_probability_is_work_over_difficulty() {
        assert!(wins(0, 1, u64::MAX));
        assert!(!wins(u64::MAX, 1, 2));
        assert!(wins(u64::MAX, 10, 10), "difficulty <= work always wins");
        let half = 1u64 << 63;
        assert!(wins(half - 1, 1, 2) && !wins(half, 1, 2));
        // Over many pseudo-random values the win rate matches work / difficulty.
        let (work, difficulty) = (3u64, 1000u64);
        let hits = (0..200_000u64)
            .filter(|i| {
                wins(
                    blake3::hash(&i.to_le_bytes()).as_bytes()[..8].iter().fold(0u64, |a, &b| a << 8 | b as u64),
                    work,
                    difficulty,
                )
            })
            .count();
        let expected = 200_000.0 * work as f64 / difficulty as f64;
        assert!((hits as f64 - expected).abs() < 5.0 * expected.sqrt(), "{hits} vs {expected}");
    }
}
