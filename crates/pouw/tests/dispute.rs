//! A wrong entry of a committed result is provable from three Merkle openings; a right one is not.

use ergon_kernels::{matmul, MatI8};
use ergon_pouw::{result_root, WorkCommitment, WrongEntry};

fn matrix(rows: usize, cols: usize, seed: u64) -> MatI8 {
    ergon_kernels::rng::random_matrix(rows, cols, 126, seed).unwrap()
}

#[test]
fn a_wrong_entry_is_proven_and_a_right_one_is_not() {
    for (m, k, n) in [(50, 70, 45), (1, 1, 1), (24, 33, 32), (97, 5, 65)] {
        let (a, b) = (matrix(m, k, 1), matrix(k, n, 2));
        let work = WorkCommitment::compute(&a, &b).unwrap();
        let mut c = matmul(&a, &b).unwrap();
        let (i, j) = (m / 2, n - 1);
        let right = result_root(&c);
        let honest = WrongEntry::build(&a, &b, &c, i, j).unwrap();
        let e = honest.check(&work, &right).unwrap_err().to_string();
        assert!(e.contains("is correct"), "{e}");

        c.as_mut_slice()[i * n + j] += 1;
        let wrong = result_root(&c);
        let proof = WrongEntry::build(&a, &b, &c, i, j).unwrap();
        let (claimed, correct) = proof.check(&work, &wrong).unwrap();
        assert_eq!(claimed as i64, correct + 1);
        // The same evidence against the honest root, or with any opened byte changed, fails.
        assert!(proof.check(&work, &right).is_err());
        let mut bad = proof.clone();
        bad.a_block[0] = bad.a_block[0].wrapping_add(1);
        assert!(bad.check(&work, &wrong).unwrap_err().to_string().contains("A's block"));
        let mut bad = proof.clone();
        bad.b_block[0] = bad.b_block[0].wrapping_add(1);
        assert!(bad.check(&work, &wrong).unwrap_err().to_string().contains("B's block"));
        if m > 1 {
            let mut bad = proof.clone();
            bad.row = (bad.row + 1) % m as u32;
            assert!(bad.check(&work, &wrong).is_err(), "another row's index with this row's openings");
        }

        let bytes = proof.encode();
        assert_eq!(WrongEntry::decode(&bytes).unwrap(), proof);
        for cut in [0, 1, 7, bytes.len() / 2, bytes.len() - 1] {
            assert!(WrongEntry::decode(&bytes[..cut]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(WrongEntry::decode(&longer).is_err());
    }
}
