#![allow(dead_code)]
use ergon_kernels::MatI8;
use ergon_pouw::{Challenge, WorkCommitment};

/// A pseudo-random matrix with entries in ±126 (the mining range).
pub fn random(rows: usize, cols: usize, seed: u64) -> MatI8 {
    ergon_kernels::rng::random_matrix(rows, cols, 126, seed).unwrap()
}

pub fn challenge(a: &MatI8, b: &MatI8, header: &[u8], difficulty: u64) -> Challenge {
    Challenge::new(header.to_vec(), WorkCommitment::compute(a, b).unwrap(), difficulty).unwrap()
}
