//! The pool against the floods and traps of issue 10, on a real chain with real signatures.

use std::collections::BTreeMap;

use ergon_chain::{seal, Chain, ChainParams, Genesis, Mempool, MempoolLimits, Refusal, TxRejection, TxStatus};
use ergon_types::{Hash, SecretKey, SignedTransaction, Transaction, TxKind};

fn key(n: u32) -> SecretKey {
    let mut b = [7u8; 32];
    b[..4].copy_from_slice(&n.to_le_bytes());
    SecretKey::from_bytes(&b)
}

/// Accounts 1..=funded hold 1,000,000 each.
fn chain(funded: u32) -> Chain {
    let mut balances = BTreeMap::new();
    for n in 1..=funded {
        balances.insert(key(n).public().address().to_string(), 1_000_000);
    }
    Chain::new(Genesis { network: "pool".into(), time_ms: 1_000_000, params: ChainParams::small(48), balances })
        .unwrap()
}

fn transfer(c: &Chain, from: u32, nonce: u64, amount: u64, fee: u64) -> SignedTransaction {
    let k = key(from);
    let to = key(999).public().address();
    Transaction { chain: c.chain_id(), from: k.public(), nonce, fee, kind: TxKind::Transfer { to, amount } }.sign(&k)
}

fn mine(c: &mut Chain, txs: Vec<SignedTransaction>) {
    let now = c.tip_header().time_ms + 10_000;
    let t = c.template(key(0).public().address(), txs, now);
    let b = seal(t, 0, 1000).unwrap().expect("a winner");
    c.import(b, now).unwrap();
}

#[test]
fn junk_from_an_empty_account_is_refused_cheaply_and_leaves_nothing() {
    let c = chain(1);
    let mut pool = Mempool::default();
    // The flood of issue 10: transfers of u64::MAX from an account with nothing, fee 0 and 1.
    let t = std::time::Instant::now();
    for i in 0..8_000u32 {
        let k = key(100_000 + i);
        let to = key(1).public().address();
        let tx = Transaction {
            chain: c.chain_id(),
            from: k.public(),
            nonce: 0,
            fee: (i % 2) as u64,
            kind: TxKind::Transfer { to, amount: u64::MAX },
        }
        .sign(&k);
        let refused = pool.admit(&c, tx).unwrap_err();
        assert!(
            matches!(refused, Refusal::FeeTooLow { .. } | Refusal::Invalid(TxRejection::InsufficientBalance { .. })),
            "{refused}"
        );
    }
    assert!(pool.is_empty());
    eprintln!("8,000 junk admissions: {:?}", t.elapsed());
}

#[test]
fn a_transaction_that_cannot_apply_is_refused_and_does_not_block_the_senders_next_nonces() {
    let c = chain(2);
    let mut pool = Mempool::default();
    // A cancel of a job that does not exist (the wrong-key `job cancel` of issue 10).
    let k = key(1);
    let cancel = Transaction {
        chain: c.chain_id(),
        from: k.public(),
        nonce: 0,
        fee: 1,
        kind: TxKind::CancelJob { job: Hash([5; 32]) },
    }
    .sign(&k);
    let why = pool.admit(&c, cancel).unwrap_err();
    assert!(matches!(why, Refusal::Invalid(TxRejection::Market(_))), "{why}");
    assert_eq!(pool.next_nonce(&c, &k.public().address()), 0, "the refused one holds no nonce");
    pool.admit(&c, transfer(&c, 1, 0, 10, 1)).unwrap();
    pool.admit(&c, transfer(&c, 1, 1, 10, 1)).unwrap();
    // Spending more than is left after the pending ones is refused on top of them.
    let why = pool.admit(&c, transfer(&c, 1, 2, 999_990, 1)).unwrap_err();
    assert!(matches!(why, Refusal::Invalid(TxRejection::InsufficientBalance { .. })), "{why}");
    // A nonce gap is refused with the nonce expected.
    let why = pool.admit(&c, transfer(&c, 1, 5, 1, 1)).unwrap_err();
    assert_eq!(why, Refusal::Invalid(TxRejection::WrongNonce { expected: 2, got: 5 }));
    // A forged signature is refused.
    let mut forged = transfer(&c, 2, 0, 1, 1);
    forged.tx.fee = 2;
    assert_eq!(pool.admit(&c, forged).unwrap_err(), Refusal::Invalid(TxRejection::BadSignature));
    assert_eq!(pool.len(), 2);
}

#[test]
fn a_full_pool_evicts_the_cheapest_for_higher_fees_and_each_sender_is_capped() {
    let c = chain(40);
    let limits = MempoolLimits { max_txs: 100, max_per_sender: 10, min_fee: 1, max_dropped: 1000 };
    let mut pool = Mempool::new(limits);
    for n in 1..=10 {
        for nonce in 0..10 {
            pool.admit(&c, transfer(&c, n, nonce, 1, 1 + n as u64)).unwrap();
        }
    }
    assert_eq!(pool.len(), 100);
    let capped = pool.admit(&c, transfer(&c, 1, 10, 1, 50)).unwrap_err();
    assert_eq!(capped, Refusal::TooManyFromSender { max: 10 });
    // Paying no more than the cheapest waiting transaction does not get in.
    let full = pool.admit(&c, transfer(&c, 20, 0, 1, 2)).unwrap_err();
    assert_eq!(full, Refusal::Full { floor: 3 });
    // Paying more evicts the cheapest tenth (sender 1's ten, fee 2, last nonce first).
    let first_cheap = transfer(&c, 1, 0, 1, 2).id();
    let id = pool.admit(&c, transfer(&c, 20, 0, 1, 100)).unwrap();
    assert_eq!(pool.status(&id), TxStatus::Pending);
    assert_eq!(pool.len(), 91);
    assert!(matches!(pool.status(&first_cheap), TxStatus::Dropped(why) if why.contains("evicted")));
    // The floor rose above what was evicted: fee 2 is now too low even with room.
    assert_eq!(pool.floor(), 3);
    assert_eq!(pool.admit(&c, transfer(&c, 21, 0, 1, 2)).unwrap_err(), Refusal::FeeTooLow { fee: 2, floor: 3 });
    // Blocks take the best first, each sender in nonce order.
    let best = pool.best(12);
    assert_eq!(best[0].tx.fee, 100);
    assert!(best[1..11].iter().all(|t| t.tx.fee == 11 && t.tx.sender() == key(10).public().address()));
    assert!(best[1..11].windows(2).all(|w| w[0].tx.nonce + 1 == w[1].tx.nonce));
}

#[test]
fn after_a_block_the_mined_leave_and_what_no_longer_applies_is_dropped_with_its_reason() {
    let mut c = chain(2);
    let mut pool = Mempool::default();
    let a0 = transfer(&c, 1, 0, 10, 1);
    let a1 = transfer(&c, 1, 1, 500_000, 1);
    let b0 = transfer(&c, 2, 0, 10, 1);
    for t in [a0.clone(), a1.clone(), b0.clone()] {
        pool.admit(&c, t).unwrap();
    }
    // Another node's block spends most of account 1 with a different nonce-1 transaction.
    let rival = transfer(&c, 1, 1, 900_000, 1);
    mine(&mut c, vec![a0.clone(), rival]);
    pool.refresh(&c);
    assert_eq!(pool.status(&a0.id()), TxStatus::Unknown, "mined: simply gone");
    assert_eq!(pool.status(&a1.id()), TxStatus::Unknown, "its nonce was taken by the rival");
    assert_eq!(pool.status(&b0.id()), TxStatus::Pending);
    // Account 1 has 99,988 left. Two pending transfers fit; a rival block spends nonce 2
    // elsewhere, and the pending nonce 3 no longer has the funds: dropped, with why.
    let a2 = transfer(&c, 1, 2, 90_000, 1);
    let a3 = transfer(&c, 1, 3, 9_000, 1);
    pool.admit(&c, a2.clone()).unwrap();
    pool.admit(&c, a3.clone()).unwrap();
    let rival = transfer(&c, 1, 2, 99_000, 1);
    mine(&mut c, vec![rival]);
    pool.refresh(&c);
    assert_eq!(pool.status(&a2.id()), TxStatus::Unknown);
    match pool.status(&a3.id()) {
        TxStatus::Dropped(why) => assert!(why.contains("no longer applies") && why.contains("balance"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.next_nonce(&c, &key(1).public().address()), 3);
    assert_eq!(pool.len(), 1, "only account 2's transfer waits");
}
