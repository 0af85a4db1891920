//! splitmix64: a tiny deterministic generator for seeded test data, synthetic load, initial
//! weights and simulated faults; and the seeded int8 matrices of demos, benchmarks and tests.
//! The same sequences on every machine; not for secrets.

use crate::{KernelError, MatI8};

#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// In 0..n (0 when n is 0); modulo bias is irrelevant at these uses.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// In lo..=hi.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// A pseudo-random int8 matrix with entries in ±`max` (xorshift64; the demo's and benchmarks'
/// matrices are these, so the sequence stays as it is).
pub fn random_matrix(rows: usize, cols: usize, max: i8, seed: u64) -> Result<MatI8, KernelError> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let span = 2 * max as u64 + 1;
    MatI8::from_fn(rows, cols, |_, _| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (((s >> 32) % span) as i16 - max as i16) as i8
    })
}
