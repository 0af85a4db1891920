//! The chain core driven as a node would drive it: real mined blocks, real signatures.

use std::collections::BTreeMap;

use ergon_chain::{seal, BlockRejection, Chain, ChainParams, Genesis, Imported, TxRejection};
use ergon_types::{Address, Block, Hash, SecretKey, SignedTransaction, Transaction, TxKind};

const T: u64 = 10_000;

fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes(&[n; 32])
}

fn genesis() -> Genesis {
    // 48×48 filler matrices: 4 tickets per nonce; difficulty = the product's multiply-adds.
    let params = ChainParams::small(48);
    let mut balances = BTreeMap::new();
    balances.insert(key(1).public().address().to_string(), 1_000_000);
    balances.insert(key(2).public().address().to_string(), 5_000);
    Genesis { network: "test".into(), time_ms: 1_000_000, params, balances }
}

fn transfer(chain: Hash, from: u8, nonce: u64, to: Address, amount: u64, fee: u64) -> SignedTransaction {
    let k = key(from);
    Transaction { chain, from: k.public(), nonce, fee, kind: TxKind::Transfer { to, amount } }.sign(&k)
}

fn tx(chain: Hash, from: u8, nonce: u64, kind: TxKind) -> SignedTransaction {
    let k = key(from);
    Transaction { chain, from: k.public(), nonce, fee: 1, kind }.sign(&k)
}

/// Mines the next block on `chain`'s tip, on schedule, with `txs`; checks none were refused.
fn mine_next(chain: &mut Chain, miner: u8, txs: Vec<SignedTransaction>) -> Block {
    let now = chain.tip_header().time_ms + T;
    let template = chain.template(key(miner).public().address(), txs, now);
    assert!(template.refused.is_empty(), "{:?}", template.refused);
    seal(template, 0, 1000).unwrap().expect("a winner within 1000 nonces")
}

fn supply_holds(chain: &Chain) {
    let l = chain.ledger();
    assert_eq!(l.circulating(), (l.minted - l.burned) as u128, "supply != minted - burned");
}

#[test]
fn genesis_round_trips_and_bad_files_are_refused() {
    let g = genesis();
    assert_eq!(Genesis::from_json(&g.to_json()).unwrap(), g);
    assert!(Genesis::from_json("{}").is_err());
    let bad_addr = g.to_json().replace(&key(2).public().address().to_string(), "erg123");
    assert!(Genesis::from_json(&bad_addr).unwrap_err().to_string().contains("not an address"));
    let mut bad = g.clone();
    bad.params.fee_burn_percent = 101;
    assert!(Genesis::from_json(&bad.to_json()).is_err());
}

#[test]
fn blocks_move_balances_exactly_and_keep_supply() {
    let mut chain = Chain::new(genesis()).unwrap();
    let id = chain.chain_id();
    let (alice, bob, miner) = (key(1).public().address(), key(2).public().address(), key(9).public().address());
    let b1 = mine_next(&mut chain, 9, vec![transfer(id, 1, 0, bob, 500, 10)]);
    assert_eq!(chain.import(b1, 2_000_000).unwrap(), Imported::Extended { height: 1 });
    let p = chain.params().clone();
    let filler_subsidy = p.block_subsidy * p.filler_subsidy_percent / 100;
    let burned = 10 * p.fee_burn_percent / 100;
    assert_eq!(chain.ledger().account(&alice).balance, 1_000_000 - 510);
    assert_eq!(chain.ledger().account(&alice).nonce, 1);
    assert_eq!(chain.ledger().account(&bob).balance, 5_500);
    assert_eq!(chain.ledger().account(&miner).balance, filler_subsidy + 10 - burned);
    supply_holds(&chain);

    // Stake, then unstake: coins return only after the unbonding period.
    let b2 = mine_next(&mut chain, 9, vec![tx(id, 1, 1, TxKind::Stake { amount: 1_000 })]);
    chain.import(b2, 3_000_000).unwrap();
    let b3 = mine_next(&mut chain, 9, vec![tx(id, 1, 2, TxKind::Unstake { amount: 400 })]);
    chain.import(b3, 3_000_000).unwrap();
    let acc = chain.ledger().account(&alice);
    assert_eq!((acc.stake, acc.unbonding.clone()), (600, vec![(3 + p.unbonding_blocks, 400)]));
    supply_holds(&chain);
    assert_eq!(chain.useful_work_fraction(), 0.0, "no jobs yet: all work is filler");
}

#[test]
fn transactions_that_cannot_apply_are_refused_with_reasons() {
    let mut chain = Chain::new(genesis()).unwrap();
    let id = chain.chain_id();
    let bob = key(2).public().address();
    let now = chain.tip_header().time_ms + T;
    let cases = vec![
        transfer(id, 1, 5, bob, 1, 1),
        transfer(id, 2, 0, bob, 10_000, 1),
        tx(id, 2, 0, TxKind::Unstake { amount: 1 }),
        transfer(id, 1, 0, bob, 0, 1),
    ];
    let template = chain.template(key(9).public().address(), cases, now);
    let refused = template.refused;
    assert!(template.txs.is_empty());
    let reasons: Vec<String> = refused.iter().map(|(_, r)| r.to_string()).collect();
    assert!(matches!(refused[0].1, TxRejection::WrongNonce { expected: 0, got: 5 }), "{reasons:?}");
    assert!(reasons[1].contains("needs 10001") && reasons[1].contains("balance is 5000"), "{reasons:?}");
    assert!(reasons[2].contains("only 0 is staked"), "{reasons:?}");
    assert!(reasons[3].contains("positive"), "{reasons:?}");
}

#[test]
fn invalid_blocks_are_refused_with_reasons() {
    let mut chain = Chain::new(genesis()).unwrap();
    let good = mine_next(&mut chain, 9, vec![]);
    let now = good.header.time_ms;

    let mut b = good.clone();
    b.header.parent = Hash([7; 32]);
    assert!(matches!(chain.import(b, now), Err(BlockRejection::UnknownParent(_))));

    let mut b = good.clone();
    b.header.difficulty += 1;
    assert!(matches!(chain.import(b, now), Err(BlockRejection::WrongDifficulty { .. })));

    let err = chain.import(good.clone(), good.header.time_ms - 200_000).unwrap_err();
    assert!(err.to_string().contains("too far ahead"), "{err}");

    let mut b = good.clone();
    b.header.time_ms = chain.tip_header().time_ms;
    assert!(matches!(chain.import(b, now), Err(BlockRejection::TooEarly { .. })));

    let mut b = good.clone();
    b.proof.b_cols[3] ^= 1;
    b.header.proof_hash = ergon_types::block::proof_hash(&b.proof);
    assert!(matches!(chain.import(b, now), Err(BlockRejection::Malformed(_))));

    // A correctly mined block whose state root lies.
    let mut template = chain.template(key(9).public().address(), vec![], now);
    template.header.state_root = Hash([5; 32]);
    let liar = seal(template, 0, 1000).unwrap().unwrap();
    assert_eq!(chain.import(liar.clone(), now), Err(BlockRejection::StateRootMismatch));
    assert_eq!(chain.import(liar, now), Err(BlockRejection::KnownInvalid));

    assert_eq!(chain.import(good.clone(), now).unwrap(), Imported::Extended { height: 1 });
    assert_eq!(chain.import(good, now).unwrap(), Imported::AlreadyKnown);
}

#[test]
fn the_heavier_branch_wins_and_its_state_is_exact() {
    let (mut x, mut y) = (Chain::new(genesis()).unwrap(), Chain::new(genesis()).unwrap());
    let id = x.chain_id();
    let bob = key(2).public().address();
    // x: two blocks with a transfer; y: three blocks by another miner with other transfers.
    let a1 = mine_next(&mut x, 8, vec![transfer(id, 1, 0, bob, 100, 5)]);
    x.import(a1.clone(), u64::MAX / 2).unwrap();
    let a2 = mine_next(&mut x, 8, vec![]);
    x.import(a2, u64::MAX / 2).unwrap();
    let mut ys = vec![];
    for i in 0..3 {
        let b = mine_next(&mut y, 7, vec![transfer(id, 2, i, key(3).public().address(), 10 + i, 2)]);
        y.import(b.clone(), u64::MAX / 2).unwrap();
        ys.push(b);
    }
    let before = x.ledger().clone();
    assert!(matches!(x.import(ys[0].clone(), u64::MAX / 2).unwrap(), Imported::SideBranch { height: 1 }));
    assert!(matches!(x.import(ys[1].clone(), u64::MAX / 2).unwrap(), Imported::SideBranch { height: 2 }));
    assert_eq!(x.ledger(), &before, "equal work: the first-seen branch stays");
    assert_eq!(
        x.import(ys[2].clone(), u64::MAX / 2).unwrap(),
        Imported::Reorganized { undone: 2, applied: 3, height: 3 }
    );
    assert_eq!(x.ledger(), y.ledger(), "after the reorg, exactly the winning branch's state");
    assert_eq!(x.tip(), y.tip());
    supply_holds(&x);
    // The losing branch's transfer is gone (bob got nothing from it).
    assert_eq!(x.ledger().account(&bob).balance, 5_000 - (10 + 11 + 12) - 3 * 2);
}

/// `n` blocks mined on `chain` by `miner`, imported, returned.
fn extend(chain: &mut Chain, miner: u8, n: usize) -> Vec<Block> {
    (0..n)
        .map(|_| {
            let b = mine_next(chain, miner, vec![]);
            chain.import(b.clone(), u64::MAX / 2).unwrap();
            b
        })
        .collect()
}

fn shallow_genesis(depth: u64) -> Genesis {
    let mut g = genesis();
    g.params.max_reorg_depth = depth;
    g
}

#[test]
fn forks_from_below_the_reorg_depth_are_refused() {
    let mut x = Chain::new(shallow_genesis(3)).unwrap();
    let xs = extend(&mut x, 8, 6);
    // A fork from genesis, six blocks below the tip: refused, whatever work it would add up to
    // (the ASERT drop of issue 10 needed a fork from an old block).
    let mut y = Chain::new(shallow_genesis(3)).unwrap();
    let ys = extend(&mut y, 7, 1);
    let deep = x.import(ys[0].clone(), u64::MAX / 2).unwrap_err();
    assert_eq!(deep, BlockRejection::ForkTooDeep { fork_height: 0, tip_height: 6, max_depth: 3 });
    assert!(deep.to_string().contains("deeper than the 3"), "{deep}");
    // A fork from three below the tip is still a side branch, and can win.
    let mut z = Chain::new(shallow_genesis(3)).unwrap();
    for b in &xs[..3] {
        z.import(b.clone(), u64::MAX / 2).unwrap();
    }
    let zs = extend(&mut z, 7, 4);
    assert!(matches!(x.import(zs[0].clone(), u64::MAX / 2).unwrap(), Imported::SideBranch { height: 4 }));
    x.import(zs[1].clone(), u64::MAX / 2).unwrap();
    x.import(zs[2].clone(), u64::MAX / 2).unwrap();
    assert_eq!(
        x.import(zs[3].clone(), u64::MAX / 2).unwrap(),
        Imported::Reorganized { undone: 3, applied: 4, height: 7 }
    );
    assert_eq!(x.ledger(), z.ledger());
}

#[test]
fn a_side_branch_block_is_judged_on_its_branch_before_it_is_kept() {
    let mut x = Chain::new(genesis()).unwrap();
    let xs = extend(&mut x, 8, 2);
    let mut y = Chain::new(genesis()).unwrap();
    y.import(xs[0].clone(), u64::MAX / 2).unwrap();
    // A sibling of x's tip claiming to be mined on a job that does not exist (kept unchecked
    // before: "a block on a non-existent job ... was accepted").
    let now = y.tip_header().time_ms + T;
    let mut t = y.template(key(7).public().address(), vec![], now);
    t.header.job = Hash([9; 32]);
    let forged = seal(t, 0, 1000).unwrap().expect("a winner");
    let before = x.ledger().clone();
    assert!(matches!(x.import(forged.clone(), u64::MAX / 2), Err(BlockRejection::NotLeased(_))));
    assert_eq!(x.ledger(), &before, "the tip's state is restored after the trial");
    assert_eq!(x.import(forged, u64::MAX / 2), Err(BlockRejection::KnownInvalid));
    // A side block with a transaction its own branch cannot apply is refused too.
    let mut t = y.template(key(7).public().address(), vec![], now);
    t.txs = vec![transfer(x.chain_id(), 2, 0, key(3).public().address(), 1_000_000, 1)];
    t.header.tx_root = ergon_types::block::tx_root(&t.txs);
    let overspent = seal(t, 0, 1000).unwrap().expect("a winner");
    assert!(matches!(x.import(overspent, u64::MAX / 2), Err(BlockRejection::BadTransaction { index: 0, .. })));
    // And the chain goes on.
    extend(&mut x, 8, 1);
    assert_eq!(x.height(), 3);
}

#[test]
fn siblings_beyond_the_bound_per_height_are_not_kept() {
    let mut x = Chain::new(genesis()).unwrap();
    let xs = extend(&mut x, 8, 2);
    let mut y = Chain::new(genesis()).unwrap();
    y.import(xs[0].clone(), u64::MAX / 2).unwrap();
    let bound = ergon_chain::chain::MAX_SIDE_BLOCKS_PER_HEIGHT;
    for miner in 0..=bound as u8 {
        let b = mine_next(&mut y, 20 + miner, vec![]);
        let outcome = x.import(b, u64::MAX / 2);
        if (miner as usize) < bound {
            assert!(matches!(outcome, Ok(Imported::SideBranch { height: 2 })), "{outcome:?}");
        } else {
            assert!(matches!(outcome, Err(BlockRejection::SideBranchFull(_))), "{outcome:?}");
        }
    }
}

#[test]
fn a_fork_from_an_old_block_stamped_late_cannot_store_cheap_blocks() {
    let mut x = Chain::new(genesis()).unwrap();
    let xs = extend(&mut x, 8, 6);
    let normal = x.tip_header().difficulty;
    // y forks from x's block 2 and stamps its first block an hour late: to ASERT that branch
    // is far behind schedule, so its next block may carry the minimum difficulty (issue 10:
    // 110,592 -> 1,000).
    let mut y = Chain::new(genesis()).unwrap();
    for b in &xs[..2] {
        y.import(b.clone(), u64::MAX / 2).unwrap();
    }
    let late = y.tip_header().time_ms + 3_600_000;
    let first = seal(y.template(key(7).public().address(), vec![], late), 0, 1000).unwrap().unwrap();
    y.import(first.clone(), u64::MAX / 2).unwrap();
    let cheap = mine_next(&mut y, 7, vec![]);
    assert!(cheap.header.difficulty * 16 < normal, "{} vs {normal}", cheap.header.difficulty);
    assert!(matches!(x.import(first, u64::MAX / 2).unwrap(), Imported::SideBranch { height: 3 }));
    let refused = x.import(cheap, u64::MAX / 2).unwrap_err();
    assert!(matches!(refused, BlockRejection::SideBranchTooCheap { .. }), "{refused}");
    assert!(!refused.blames_sender(), "an honest peer on a stale branch sends such blocks");
}

/// Which refusals ban a peer: faults do, this node's own limits do not (a validator banned an
/// honest provider for a cheap side-branch block and never reached it again).
#[test]
fn only_faults_ban_a_peer_not_this_nodes_own_limits() {
    let cheap = BlockRejection::SideBranchTooCheap { difficulty: 1, floor: 16 };
    let deep = BlockRejection::ForkTooDeep { fork_height: 1, tip_height: 600, max_depth: 500 };
    for r in [cheap, deep, BlockRejection::SideBranchFull("full".into())] {
        assert!(!r.blames_sender(), "{r}");
    }
    assert!(BlockRejection::StateRootMismatch.blames_sender());
    assert!(BlockRejection::BadSignature { index: 0 }.blames_sender());
}

/// (header, proof) pairs of blocks, as a peer sends them for headers-first sync.
fn pairs(blocks: &[Block]) -> Vec<(ergon_types::BlockHeader, ergon_pouw::Proof)> {
    blocks.iter().map(|b| (b.header.clone(), b.proof.clone())).collect()
}

fn headers(blocks: &[Block]) -> Vec<ergon_types::BlockHeader> {
    blocks.iter().map(|b| b.header.clone()).collect()
}

#[test]
fn a_branchs_work_is_judged_from_its_headers_before_any_body() {
    use ergon_chain::headers::check_proofs;
    let mut x = Chain::new(genesis()).unwrap();
    let xs = extend(&mut x, 8, 3);
    let mut y = Chain::new(genesis()).unwrap();
    let ys = extend(&mut y, 7, 6);
    // The rival's six headers: valid, forking at genesis, heavier than x's three blocks.
    check_proofs(&pairs(&ys)).unwrap();
    let run = x.judge_headers(None, &headers(&ys), u64::MAX / 2).unwrap();
    assert_eq!((run.known, run.fork_height, run.tail.header.height, run.heavier), (0, 0, 6, true));
    assert_eq!(run.tail.work, y.tip_work());
    // In two runs, the second extending the first's tail: the same verdict.
    let first = x.judge_headers(None, &headers(&ys[..2]), u64::MAX / 2).unwrap();
    assert!(!first.heavier, "two blocks are not more work than three");
    let second = x.judge_headers(Some(&first.tail), &headers(&ys[2..]), u64::MAX / 2).unwrap();
    assert_eq!((second.tail.work, second.heavier), (run.tail.work, true));
    // Seen the other way round, the same branch's headers are lighter: no bodies are worth it.
    let lighter = y.judge_headers(None, &headers(&xs), u64::MAX / 2).unwrap();
    assert!(!lighter.heavier);
    // Headers the node already has are skipped; the rest must go on from them.
    let mixed: Vec<_> = headers(&xs).into_iter().chain(headers(&ys)).collect();
    assert!(matches!(x.judge_headers(None, &mixed, u64::MAX / 2), Err((3, BlockRejection::Malformed(_)))));
    let shared_start: Vec<_> = headers(&ys[..1]).into_iter().chain(headers(&ys[1..])).collect();
    let mut z = Chain::new(genesis()).unwrap();
    z.import(ys[0].clone(), u64::MAX / 2).unwrap();
    assert_eq!(z.judge_headers(None, &shared_start, u64::MAX / 2).unwrap().known, 1);
    let own_then_none = x.judge_headers(None, &headers(&xs), u64::MAX / 2).unwrap();
    assert_eq!((own_then_none.known, own_then_none.heavier), (3, false));

    // A header changed after mining no longer matches its proof.
    let mut forged = pairs(&ys);
    forged[4].0.time_ms += 1;
    assert_eq!(check_proofs(&forged).unwrap_err().0, 4);
    // A run that starts above a block the node lacks.
    assert!(matches!(
        x.judge_headers(None, &headers(&ys[2..]), u64::MAX / 2),
        Err((0, BlockRejection::UnknownParent(_)))
    ));
    // A header mined honestly at a difficulty the rule does not give it.
    let now = y.tip_header().time_ms + T;
    let mut template = y.template(key(7).public().address(), vec![], now);
    template.header.difficulty += 1;
    let odd = seal(template, 0, 1000).unwrap().expect("a winner");
    check_proofs(&pairs(std::slice::from_ref(&odd))).unwrap();
    let with_odd: Vec<_> = headers(&ys).into_iter().chain([odd.header.clone()]).collect();
    assert!(matches!(x.judge_headers(None, &with_odd, u64::MAX / 2), Err((6, BlockRejection::WrongDifficulty { .. }))));
}
