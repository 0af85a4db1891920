#![allow(dead_code)]
use ergon_kernels::MatI8;
use ergon_pouw::{Challenge, WorkCommitment};

/// A pseudo-random matrix with entries in ±126 (the mining range).
pub fn random(rows: usize, cols: usize, seed: u64) -> MatI8 {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    MatI8::from_fn(rows, cols, |_, _| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 32) % 253) as i8 - 126
    })
    .unwrap()
}

pub fn challenge(a: &MatI8, b: &MatI8, header: &[u8], difficulty: u64) -> Challenge {
    Challenge::new(header.to_vec(), WorkCommitment::compute(a, b).unwrap(), difficulty).unwrap()
}
