//! The transcript fold: a cheap compression of one 6×16 register tile of running sums, fused into
//! the microkernel so Proof of Useful Work never re-reads the product from memory.
//!
//! After every `depth` inner steps the microkernel holds the exact prefix sums
//! C'(l)[tile] = Σ_{t < l·depth} A'[i,t]·B'[t,j] for its 6×16 tile. The fold mixes those 96 int32
//! values into an 8-lane u32 state, alternating XOR and wrapping ADD, so it is linear over neither
//! the integers nor GF(2) (only bit 0 of each lane is GF(2)-linear; bit b depends on the tile
//! modulo 2^(b+1), so every high bit needs the exact int32 sums). An adversary cannot obtain the
//! state from a linear sketch of the tile: it needs every entry exactly, at every step. One
//! operation per accumulator vector: 12 per step, against 16·r = 256 for the step's products.
//!
//! Both microkernels call into the same definition below (the AVX2 one via lane-parallel
//! intrinsics that compute exactly these lanes), and tests check them against each other.

use super::{MR, NR};

/// The fold state of one microtile: 8 lanes of u32.
pub type FoldState = [u32; 8];

/// Lanes per fold vector (one AVX2 register of u32).
pub const FOLD_LANES: usize = 8;

/// Folds one tile of prefix sums into `state`. This is the normative definition.
///
/// Vectors v_q for q = 0..12 are tile rows split in halves, v_q = acc[q / 2][8·(q % 2) ..][..8];
/// S ← S ⊕ v_q for even q, S ← S + v_q (mod 2^32) for odd q.
#[inline]
pub fn fold_tile(state: &mut FoldState, acc: &[[i32; NR]; MR]) {
    for lane in 0..FOLD_LANES {
        let mut s = state[lane];
        for q in 0..2 * MR {
            let v = acc[q / 2][(q % 2) * FOLD_LANES + lane] as u32;
            s = if q % 2 == 0 { s ^ v } else { s.wrapping_add(v) };
        }
        state[lane] = s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(seed: i32) -> [[i32; NR]; MR] {
        let mut t = [[0; NR]; MR];
        for (i, row) in t.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = seed.wrapping_mul(7919).wrapping_add((i * 31 + j * 17) as i32 * 104_729);
            }
        }
        t
    }

    #[test]
    fn every_entry_changes_the_state() {
        let base = tile(3);
        let mut s0 = [0u32; 8];
        fold_tile(&mut s0, &base);
        for i in 0..MR {
            for j in 0..NR {
                let mut t = base;
                t[i][j] ^= 1 << 20;
                let mut s = [0u32; 8];
                fold_tile(&mut s, &t);
                assert_ne!(s, s0, "entry ({i},{j}) did not reach the state");
            }
        }
    }

    #[test]
    fn fold_is_not_linear_over_the_integers() {
        // A linear compression f would satisfy f(x + y) = f(x) + f(y) − f(0); this one must not.
        let (x, y) = (tile(1), tile(2));
        let mut sum = [[0i32; NR]; MR];
        for i in 0..MR {
            for j in 0..NR {
                sum[i][j] = x[i][j].wrapping_add(y[i][j]);
            }
        }
        let f = |t: &[[i32; NR]; MR]| {
            let mut s = [0u32; 8];
            fold_tile(&mut s, t);
            s
        };
        let (fx, fy, fxy, f0) = (f(&x), f(&y), f(&sum), f(&[[0; NR]; MR]));
        let linear: Vec<u32> = (0..8).map(|l| fx[l].wrapping_add(fy[l]).wrapping_sub(f0[l])).collect();
        assert_ne!(fxy.to_vec(), linear);
        let xor_linear: Vec<u32> = (0..8).map(|l| fx[l] ^ fy[l] ^ f0[l]).collect();
        let mut xor_tile = x;
        for i in 0..MR {
            for j in 0..NR {
                xor_tile[i][j] ^= y[i][j];
            }
        }
        assert_ne!(f(&xor_tile).to_vec(), xor_linear);
    }
}
