//! Every type round-trips through its canonical encoding, and every malformed input is an error.

use ergon_kernels::MatI8;
use ergon_pouw::{mine, prove, MineOptions, WorkCommitment};
use ergon_types::block::{proof_hash, tx_root};
use ergon_types::{Address, Block, BlockHeader, Canonical, Hash, SecretKey, SignedTransaction, Transaction, TxKind};
use ergon_types::{BlobRef, HardwareProfile, JobKind, JobSpec, Offer, Requirements};
use proptest::prelude::*;

fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes(&[n; 32])
}

fn tx(n: u8, kind: TxKind) -> SignedTransaction {
    let k = key(n);
    Transaction { chain: Hash([9; 32]), from: k.public(), nonce: n as u64, fee: 10, kind }.sign(&k)
}

fn all_kinds() -> Vec<SignedTransaction> {
    vec![
        tx(1, TxKind::Transfer { to: key(2).public().address(), amount: 1_000 }),
        tx(2, TxKind::Stake { amount: 5 }),
        tx(3, TxKind::Unstake { amount: u64::MAX }),
        tx(4, TxKind::RegisterProvider { offer: offer(), stake: 7 }),
        tx(5, TxKind::Deregister),
        tx(6, TxKind::SubmitJob { spec: job() }),
        tx(7, TxKind::CancelJob { job: Hash([3; 32]) }),
        tx(8, TxKind::PostResult { job: Hash([4; 32]), shard: 65_535, result: Hash([5; 32]), cpu_ms: 1234 }),
        tx(9, TxKind::Dispute { job: Hash([4; 32]), shard: 2, replica: 1, evidence: evidence() }),
        tx(10, TxKind::ReleaseLease { job: Hash([6; 32]), shard: 3 }),
        tx(11, TxKind::ChallengeResult { job: Hash([7; 32]), shard: 1, replica: 2, rows: vec![0, 5, 29] }),
        tx(12, TxKind::RevealRows { job: Hash([7; 32]), shard: 1, replica: 2, rows: revealed() }),
        tx(
            13,
            TxKind::Judge {
                provider: key(3).public().address(),
                gmacs: 125,
                reason: "answers at 125 G MAC/s as claimed".into(),
            },
        ),
        tx(
            14,
            TxKind::JudgeMemory {
                provider: key(3).public().address(),
                memory_mib: 4096,
                reason: "holds its 4096 MiB".into(),
            },
        ),
        tx(15, TxKind::DoubtResult { job: Hash([7; 32]), shard: 2, expected: Hash([8; 32]) }),
    ]
}

fn revealed() -> Vec<ergon_pouw::RevealedRow> {
    let a = MatI8::from_fn(30, 20, |i, j| (i * 3 + j) as i8).unwrap();
    let b = MatI8::from_fn(20, 40, |i, j| (i + j * 5) as i8 - 60).unwrap();
    let c = ergon_kernels::matmul(&a, &b).unwrap();
    [0, 29].iter().map(|&r| ergon_pouw::RevealedRow::build(&c, r).unwrap()).collect()
}

fn evidence() -> ergon_pouw::WrongEntry {
    let a = MatI8::from_fn(30, 20, |i, j| (i * 3 + j) as i8).unwrap();
    let b = MatI8::from_fn(20, 40, |i, j| (i + j * 5) as i8 - 60).unwrap();
    let c = ergon_kernels::matmul(&a, &b).unwrap();
    ergon_pouw::WrongEntry::build(&a, &b, &c, 25, 33).unwrap()
}

fn offer() -> Offer {
    Offer {
        profile: HardwareProfile {
            cpu_cores: 2,
            memory_mib: 24_000,
            gpu_model: "H100 SXM".into(),
            gpu_memory_mib: 80_000,
            int8_gmacs: 115,
        },
        price_per_gmac: 3,
        slots: 2,
        encryption_key: [8; 32],
    }
}

fn job() -> JobSpec {
    let w = WorkCommitment { m: 48, k: 64, n: 32, root_a: [1; 32], root_b: [2; 32] };
    JobSpec {
        kind: JobKind::Train,
        inputs: vec![BlobRef { id: Hash([6; 32]), size: 115_000 }; 2],
        shards: vec![w; 3],
        macs_per_shard: 48 * 64 * 32,
        requirements: Requirements { min_memory_mib: 1, min_int8_gmacs: 2, gpu: true, replicas: 3, lease_blocks: 9 },
        max_price_per_gmac: 11,
        client_key: [7; 32],
    }
}

#[test]
fn market_transactions_refuse_out_of_range_fields() {
    // A shard index past u16, a GPU flag other than 0/1, more shards than the limit.
    let post = tx(8, TxKind::PostResult { job: Hash([4; 32]), shard: 1, result: Hash([5; 32]), cpu_ms: 1234 }).encode();
    let at = 1 + 32 + 32 + 8 + 8 + 1 + 32;
    let mut bad = post.clone();
    bad[at + 2] = 1;
    assert!(SignedTransaction::decode(&bad).unwrap_err().to_string().contains("out of range"));
    let spec_tx = tx(6, TxKind::SubmitJob { spec: job() }).encode();
    let mut w = ergon_types::codec::Writer::new();
    job().write(&mut w);
    let spec = w.finish();
    let gpu_at = 1 + 32 + 32 + 8 + 8 + 1 + spec.len() - (1 + 4 + 8 + 32) - 1;
    let mut bad = spec_tx.clone();
    assert_eq!(bad[gpu_at], 1);
    bad[gpu_at] = 2;
    assert!(SignedTransaction::decode(&bad).unwrap_err().to_string().contains("gpu flag 2"));
    let mut many = job();
    many.shards = vec![many.shards[0]; ergon_types::job::MAX_SHARDS + 1];
    let too_many = tx(6, TxKind::SubmitJob { spec: many }).encode();
    assert!(SignedTransaction::decode(&too_many).is_err());
}

#[test]
fn signatures_verify_and_only_for_their_message_and_key() {
    let k = key(7);
    let sig = k.sign(b"hello");
    assert!(k.public().verify(b"hello", &sig).is_ok());
    assert!(k.public().verify(b"hellO", &sig).is_err());
    assert!(key(8).public().verify(b"hello", &sig).is_err());
    assert_eq!(SecretKey::from_bytes(&k.to_bytes()).public(), k.public());
}

#[test]
fn addresses_print_parse_and_catch_typos() {
    let a = key(1).public().address();
    let text = a.to_string();
    assert!(text.starts_with("erg") && text.len() == 47, "{text}");
    assert_eq!(text.parse::<Address>().unwrap(), a);
    for i in 3..text.len() {
        let mut bad: Vec<char> = text.chars().collect();
        bad[i] = if bad[i] == '0' { '1' } else { '0' };
        let bad: String = bad.into_iter().collect();
        assert!(bad.parse::<Address>().is_err(), "{bad} accepted");
    }
    for junk in ["", "erg", "xyz", "ergzz", &text[..46], &format!("{text}0"), "ergé"] {
        assert!(junk.parse::<Address>().is_err(), "{junk:?}");
    }
}

#[test]
fn transactions_round_trip_and_verify() {
    for t in all_kinds() {
        let bytes = t.encode();
        let back = SignedTransaction::decode(&bytes).unwrap();
        assert_eq!(back, t);
        assert!(back.verify().is_ok());
        assert_eq!(back.id(), t.id());
    }
}

#[test]
fn any_changed_byte_of_a_signed_transaction_is_caught() {
    for t in all_kinds() {
        let bytes = t.encode();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            let ok = SignedTransaction::decode(&bad).and_then(|t| t.verify());
            assert!(ok.is_err(), "flipping byte {i} went unnoticed");
        }
        for cut in 0..bytes.len() {
            assert!(SignedTransaction::decode(&bytes[..cut]).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(SignedTransaction::decode(&long).is_err());
    }
}

/// A real block: a header whose PoUW was mined on a small job, with its proof and transactions.
fn mined_block() -> Block {
    let a = MatI8::from_fn(30, 40, |i, j| ((i * 7 + j) % 200) as i8 - 100).unwrap();
    let b = MatI8::from_fn(40, 20, |i, j| ((i + j * 3) % 200) as i8 - 100).unwrap();
    let txs = all_kinds();
    let mut header = BlockHeader {
        parent: Hash([1; 32]),
        height: 1,
        time_ms: 1_700_000_000_000,
        state_root: Hash([2; 32]),
        tx_root: tx_root(&txs),
        job: Hash([3; 32]),
        work: WorkCommitment::compute(&a, &b).unwrap(),
        miner: key(4).public().address(),
        difficulty: 1,
        nonce: 0,
        proof_hash: Hash::ZERO,
    };
    let challenge = header.challenge().unwrap();
    let mined = mine(&challenge, &a, &b, 5, MineOptions::default()).unwrap();
    let proof = prove(&challenge, &a, &b, 5, &mined.winners[0]).unwrap();
    header.nonce = 5;
    header.proof_hash = proof_hash(&proof);
    Block { header, proof, txs }
}

#[test]
fn a_mined_block_round_trips_and_checks() {
    let block = mined_block();
    let bytes = block.encode();
    let back = Block::decode(&bytes).unwrap();
    assert_eq!(back, block);
    assert!(back.check_self_consistent().is_ok());
    assert_eq!(BlockHeader::decode(&block.header.encode()).unwrap(), block.header);
    assert_ne!(block.header.id(), Hash::ZERO);
}

#[test]
fn a_block_whose_parts_disagree_is_refused_with_a_reason() {
    let block = mined_block();
    let mut b = block.clone();
    b.txs.pop();
    assert!(b.check_self_consistent().unwrap_err().to_string().contains("transaction root"));
    let mut b = block.clone();
    b.header.nonce += 1;
    assert!(b.check_self_consistent().unwrap_err().to_string().contains("nonce"));
    let mut b = block.clone();
    b.header.time_ms += 1; // sealed: the ticket no longer matches
    assert!(b.check_self_consistent().is_err());
    let mut b = block.clone();
    b.proof.a_rows[0] ^= 1;
    assert!(b.check_self_consistent().unwrap_err().to_string().contains("proof hash"));
    // Every single-byte change of the encoded block is caught by decoding or by the checks.
    let bytes = block.encode();
    for i in (0..bytes.len()).step_by(7) {
        let mut bad = bytes.clone();
        bad[i] ^= 0x10;
        let ok = Block::decode(&bad).and_then(|b| b.check_self_consistent().map(|_| b));
        if let Ok(b) = ok {
            // Only the signature-free parts of transactions can change without breaking the
            // block's own checks; their signatures then fail.
            assert!(b.txs.iter().any(|t| t.verify().is_err()), "byte {i} changed undetected");
        }
    }
}

#[test]
fn oversized_and_foreign_inputs_are_refused_before_parsing() {
    let huge = vec![1u8; SignedTransaction::MAX_BYTES + 1];
    assert!(matches!(SignedTransaction::decode(&huge), Err(ergon_types::TypesError::TooLarge { .. })));
    let mut v2 = all_kinds()[0].encode();
    v2[0] = 2;
    assert!(SignedTransaction::decode(&v2).unwrap_err().to_string().contains("unsupported version 2"));
    let mut kind = all_kinds()[1].encode();
    kind[81] = 16;
    assert!(SignedTransaction::decode(&kind).unwrap_err().to_string().contains("unknown transaction kind 16"));
}

proptest! {
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = SignedTransaction::decode(&bytes);
        let _ = BlockHeader::decode(&bytes);
        let _ = Block::decode(&bytes);
        let mut versioned = vec![1u8];
        versioned.extend_from_slice(&bytes);
        let _ = Transaction::decode(&versioned);
        let _ = Block::decode(&versioned);
    }
}
