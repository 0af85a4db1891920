//! Honest mining: exact recovery, proofs that verify, and proofs that fail once anything changes.

mod common;

use common::{challenge, random};
use ergon_kernels::reference::matmul_naive;
use ergon_kernels::MatI8;
use ergon_pouw::{mine, prove, verify, MineOptions, PouwError, Proof};

#[test]
fn mining_recovers_the_exact_product() {
    for &(m, k, n) in &[(1, 1, 1), (7, 13, 5), (24, 32, 32), (50, 300, 70), (97, 1001, 33)] {
        let (a, b) = (random(m, k, 1), random(k, n, 2));
        let ch = challenge(&a, &b, b"header", u64::MAX);
        let mined = mine(&ch, &a, &b, 7, MineOptions::default()).unwrap();
        assert_eq!(mined.product, matmul_naive(&a, &b).unwrap(), "{m}x{k}x{n}");
        assert_eq!(mined.tickets, (m.div_ceil(24) * n.div_ceil(32)) as u64);
    }
}

#[test]
fn extreme_mining_values_are_exact() {
    let a = MatI8::from_fn(30, 500, |i, _| if i % 2 == 0 { 126 } else { -126 }).unwrap();
    let b = MatI8::from_fn(500, 40, |_, j| if j % 3 == 0 { -126 } else { 126 }).unwrap();
    let ch = challenge(&a, &b, b"h", u64::MAX);
    assert_eq!(mine(&ch, &a, &b, 0, MineOptions::default()).unwrap().product, matmul_naive(&a, &b).unwrap());
}

#[test]
fn entries_outside_the_mining_range_are_refused() {
    let mut a = random(10, 10, 1);
    a.set(3, 4, 127);
    let b = random(10, 10, 2);
    let ch = challenge(&a, &b, b"h", 1);
    let err = mine(&ch, &a, &b, 0, MineOptions::default()).unwrap_err();
    assert!(matches!(err, PouwError::OutOfRange(_)), "{err}");
    assert!(err.to_string().contains("A[3, 4] = 127"), "{err}");
}

#[test]
fn every_winning_ticket_proves_and_verifies() {
    let (m, k, n) = (50, 200, 70);
    let (a, b) = (random(m, k, 3), random(k, n, 4));
    // Difficulty 1: every ticket wins, including the clipped edge tiles.
    let ch = challenge(&a, &b, b"block 1", 1);
    let mined = mine(&ch, &a, &b, 42, MineOptions::default()).unwrap();
    assert_eq!(mined.winners.len() as u64, mined.tickets);
    for w in &mined.winners {
        let proof = prove(&ch, &a, &b, 42, w).unwrap();
        let decoded = Proof::decode(&proof.encode()).unwrap();
        assert_eq!(decoded, proof);
        assert_eq!(verify(&ch, &decoded).unwrap(), *w);
    }
}

#[test]
fn win_rate_follows_the_difficulty() {
    let (m, k, n) = (240, 64, 320);
    let (a, b) = (random(m, k, 5), random(k, n, 6));
    // Each full tile covers 24·32·64 = 49,152 multiply-adds; difficulty 4× that → P(win) = 1/4.
    let ch = challenge(&a, &b, b"rate", 4 * 24 * 32 * 64);
    let (mut won, mut tried) = (0, 0);
    for nonce in 0..20 {
        let mined = mine(&ch, &a, &b, nonce, MineOptions::default()).unwrap();
        won += mined.winners.len();
        tried += mined.tickets;
    }
    let expected = tried as f64 / 4.0;
    assert!((won as f64 - expected).abs() < 5.0 * expected.sqrt(), "{won} winners of {tried}");
}

fn one_proof() -> (ergon_pouw::Challenge, Proof) {
    let (a, b) = (random(30, 40, 8), random(40, 20, 9));
    let ch = challenge(&a, &b, b"tamper", 2 * 24 * 20 * 40);
    let (nonce, w) = (0..)
        .find_map(|nonce| {
            mine(&ch, &a, &b, nonce, MineOptions::default()).unwrap().winners.first().map(|w| (nonce, *w))
        })
        .unwrap();
    (ch.clone(), prove(&ch, &a, &b, nonce, &w).unwrap())
}

#[test]
fn any_altered_byte_of_a_proof_is_rejected() {
    let (ch, proof) = one_proof();
    let bytes = proof.encode();
    assert!(verify(&ch, &Proof::decode(&bytes).unwrap()).is_ok());
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80] {
            let mut bad = bytes.clone();
            bad[i] ^= flip;
            let accepted = Proof::decode(&bad).and_then(|p| verify(&ch, &p));
            assert!(accepted.is_err(), "flipping bit {flip:#x} of byte {i} was accepted");
        }
    }
    for cut in 0..bytes.len() {
        assert!(Proof::decode(&bytes[..cut]).is_err());
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Proof::decode(&longer).is_err());
}

#[test]
fn a_proof_fails_under_another_header_nonce_or_target() {
    let (ch, proof) = one_proof();
    let mut other = ch.clone();
    other.header[0] ^= 1;
    assert!(matches!(verify(&other, &proof), Err(PouwError::Invalid(_))));
    let mut other = ch.clone();
    other.difficulty += 1;
    assert!(matches!(verify(&other, &proof), Err(PouwError::Invalid(_))));
    let mut other = ch.clone();
    other.difficulty = 1; // even an easier target changes the seed, hence the ticket
    assert!(matches!(verify(&other, &proof), Err(PouwError::Invalid(_))));
    let mut moved = proof.clone();
    moved.nonce += 1;
    assert!(matches!(verify(&ch, &moved), Err(PouwError::Invalid(_))));
    let mut other = ch.clone();
    other.work.root_b[5] ^= 1;
    assert!(matches!(verify(&other, &proof), Err(PouwError::Invalid(_))));
}

#[test]
fn decoder_survives_garbage() {
    use proptest::prelude::*;
    proptest!(|(bytes in proptest::collection::vec(any::<u8>(), 0..400))| {
        let _ = Proof::decode(&bytes);
        let mut v = vec![1u8];
        v.extend_from_slice(&bytes);
        let _ = Proof::decode(&v);
    });
}

mod properties {
    use super::common::{challenge, random};
    use ergon_kernels::reference::matmul_naive;
    use ergon_pouw::{mine, prove, verify, MineOptions, Proof};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// On any shape: the mined product is exact, and every ticket (difficulty 1 makes them all
        /// winners) proves, survives encoding and verifies to itself.
        #[test]
        fn any_shape_mines_exactly_and_every_ticket_verifies(
            m in 1usize..60, k in 1usize..140, n in 1usize..70, seed in any::<u64>(), nonce in any::<u64>()
        ) {
            let (a, b) = (random(m, k, seed), random(k, n, seed ^ 0x5555));
            let ch = challenge(&a, &b, &seed.to_le_bytes(), 1);
            let mined = mine(&ch, &a, &b, nonce, MineOptions::default()).unwrap();
            prop_assert_eq!(&mined.product, &matmul_naive(&a, &b).unwrap());
            prop_assert_eq!(mined.winners.len() as u64, mined.tickets);
            for w in &mined.winners {
                let proof = Proof::decode(&prove(&ch, &a, &b, nonce, w).unwrap().encode()).unwrap();
                prop_assert_eq!(verify(&ch, &proof).unwrap(), *w);
            }
        }
    }
}

/// Tickets are consensus data: every kernel (AVX-512 VNNI, AVX-VNNI, AVX2, portable) must find
/// exactly the same ones. Kernels this CPU lacks are named as skipped.
#[test]
fn every_kernel_finds_the_same_tickets_as_the_portable_one() {
    use ergon_kernels::gemm::Isa;
    let (simd, skipped): (Vec<Isa>, Vec<Isa>) =
        Isa::ALL.into_iter().filter(|&isa| isa != Isa::Portable).partition(|isa| isa.supported());
    for isa in &skipped {
        eprintln!("skipped {}: this CPU lacks it", isa.name());
    }
    for &(m, k, n) in &[(24, 64, 32), (50, 300, 70), (7, 33, 100), (61, 530, 45)] {
        let (a, b) = (random(m, k, 21), random(k, n, 22));
        let ch = challenge(&a, &b, b"isa", 3 * 24 * 32 * k as u64);
        let run = |isa| mine(&ch, &a, &b, 9, MineOptions { isa: Some(isa), progress: None }).unwrap();
        let portable = run(Isa::Portable);
        for &isa in &simd {
            let mined = run(isa);
            assert_eq!(mined.product, portable.product, "{m}x{k}x{n} on {}", isa.name());
            assert_eq!(mined.winners, portable.winners, "{m}x{k}x{n} on {}", isa.name());
        }
    }
}
