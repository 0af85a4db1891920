//! Filler matrices: what a miner multiplies when no paid job is available.
//!
//! They are derived from the parent block's id, so nobody knows their product in advance (the
//! zero-matrix shortcut of docs/pouw.md (a) is unavailable) and every node can recompute their
//! commitment to check a filler block.

use ergon_kernels::MatI8;
use ergon_pouw::params::MINING_MAX;
use ergon_pouw::WorkCommitment;
use ergon_types::Hash;

/// The two size × size filler matrices for a child of `parent`, entries uniform in ±126.
pub fn filler_matrices(parent: &Hash, size: usize) -> (MatI8, MatI8) {
    let mut xof = blake3::Hasher::new_derive_key("ergon v1 filler matrices").update(&parent.0).finalize_xof();
    let span = 2 * MINING_MAX as u16 + 1;
    let mut draw = || {
        // Rejection sampling keeps the entries exactly uniform.
        loop {
            let mut b = [0u8; 1];
            xof.fill(&mut b);
            if (b[0] as u16) < span {
                return (b[0] as i16 - MINING_MAX as i16) as i8;
            }
        }
    };
    let a = MatI8::from_fn(size, size, |_, _| draw()).expect("size > 0");
    let b = MatI8::from_fn(size, size, |_, _| draw()).expect("size > 0");
    (a, b)
}

/// The work commitment a filler block on `parent` must carry.
pub fn filler_commitment(parent: &Hash, size: usize) -> WorkCommitment {
    let (a, b) = filler_matrices(parent, size);
    WorkCommitment::compute(&a, &b).expect("filler shapes are valid")
}
