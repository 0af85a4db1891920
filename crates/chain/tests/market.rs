//! The compute market through the chain: providers register, a client escrows a job, the market
//! leases its shards, a provider mines a block on its leased matrices, results settle after the
//! challenge window, a silent provider's lease is re-allocated, and coins are conserved.

use std::collections::BTreeMap;

use ergon_chain::{seal, BlockRejection, Chain, ChainParams, Genesis, JobWork, TxRejection};
use ergon_kernels::MatI8;
use ergon_market::{MarketRejection, TaskState};
use ergon_pouw::WorkCommitment;
use ergon_types::{Block, HardwareProfile, Hash, JobKind, JobSpec, Offer, Requirements, SecretKey, SignedTransaction};
use ergon_types::{Transaction, TxKind};

const T: u64 = 10_000;
const CLIENT: u8 = 1;
const P1: u8 = 3;
const P2: u8 = 4;
const MINER: u8 = 9;
/// Enough bond for the collateral of the leases below (about 21× a lease's value).
const STAKE: u64 = 20_000_000;

fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes(&[n; 32])
}

fn genesis() -> Genesis {
    let params =
        ChainParams { min_provider_stake: 1_000, challenge_blocks: 2, max_strikes: 3, ..ChainParams::small(48) };
    let mut balances = BTreeMap::new();
    for (k, v) in [(CLIENT, 10_000_000), (P1, 100_000_000), (P2, 100_000_000)] {
        balances.insert(key(k).public().address().to_string(), v);
    }
    Genesis { network: "market-test".into(), time_ms: 1_000_000, params, balances }
}

fn tx(chain: Hash, from: u8, nonce: u64, kind: TxKind) -> SignedTransaction {
    let k = key(from);
    Transaction { chain, from: k.public(), nonce, fee: 10, kind }.sign(&k)
}

fn offer(price: u64) -> Offer {
    Offer {
        profile: HardwareProfile {
            cpu_cores: 2,
            memory_mib: 4096,
            gpu_model: String::new(),
            gpu_memory_mib: 0,
            int8_gmacs: 100,
        },
        price_per_gmac: price,
        slots: 1,
        encryption_key: [5; 32],
    }
}

fn matrix(rows: usize, cols: usize, seed: u64) -> MatI8 {
    ergon_kernels::rng::random_matrix(rows, cols, 126, seed).unwrap()
}

fn rows(m: &MatI8, from: usize, count: usize) -> MatI8 {
    MatI8::from_vec(count, m.cols(), m.as_slice()[from * m.cols()..(from + count) * m.cols()].to_vec()).unwrap()
}

fn mine(
    chain: &mut Chain,
    miner: u8,
    txs: Vec<SignedTransaction>,
    job: Option<JobWork>,
) -> Result<Block, BlockRejection> {
    let now = chain.tip_header().time_ms + T;
    let address = key(miner).public().address();
    let template = match job {
        None => chain.template(address, txs, now),
        Some(work) => chain.template_on_job(address, txs, now, work)?,
    };
    assert!(template.refused.is_empty(), "{:?}", template.refused.iter().map(|r| r.1.to_string()).collect::<Vec<_>>());
    Ok(seal(template, 0, 10_000).unwrap().expect("a winner within 10000 nonces"))
}

fn supply_holds(chain: &Chain) {
    let l = chain.ledger();
    assert_eq!(l.circulating(), (l.minted - l.burned) as u128, "supply != minted - burned");
}

fn step(chain: &mut Chain, miner: u8, txs: Vec<SignedTransaction>, job: Option<JobWork>) -> Block {
    let block = mine(chain, miner, txs, job).expect("template");
    chain.import(block.clone(), block.header.time_ms).expect("own block imports");
    supply_holds(chain);
    block
}

/// A matmul job at up to 1 coin per 10^9 multiply-adds, one replica.
fn matmul_spec(shards: Vec<WorkCommitment>, macs_per_shard: u64, lease_blocks: u32) -> JobSpec {
    JobSpec {
        kind: JobKind::Matmul,
        inputs: vec![],
        shards,
        macs_per_shard,
        requirements: Requirements { min_memory_mib: 0, min_int8_gmacs: 0, gpu: false, replicas: 1, lease_blocks },
        max_price_per_gmac: 1_000_000_000,
        client_key: [6; 32],
    }
}

#[test]
fn job_lifecycle_through_blocks() {
    let mut chain = Chain::new(genesis()).unwrap();
    let id = chain.chain_id();
    let addr = |k: u8| key(k).public().address();
    // Two providers; P1 is cheaper.
    step(
        &mut chain,
        MINER,
        vec![
            tx(id, P1, 0, TxKind::RegisterProvider { offer: offer(500_000_000), stake: STAKE }),
            tx(id, P2, 0, TxKind::RegisterProvider { offer: offer(600_000_000), stake: STAKE }),
        ],
        None,
    );
    // A 96×64·64×48 product in two 48-row shards.
    let (a, b) = (matrix(96, 64, 1), matrix(64, 48, 2));
    let shards: Vec<(MatI8, WorkCommitment)> = (0..2)
        .map(|s| {
            let part = rows(&a, s * 48, 48);
            let w = WorkCommitment::compute(&part, &b).unwrap();
            (part, w)
        })
        .collect();
    let spec = matmul_spec(shards.iter().map(|s| s.1).collect(), 48 * 64 * 48, 3);
    let escrow = spec.max_cost().unwrap();
    let client_before = chain.ledger().account(&addr(CLIENT)).balance;
    let submit = tx(id, CLIENT, 0, TxKind::SubmitJob { spec });
    let job = ergon_types::job::job_id(&submit.id());
    step(&mut chain, MINER, vec![submit], None);
    assert_eq!(chain.ledger().account(&addr(CLIENT)).balance, client_before - escrow - 10);
    let leased = |chain: &Chain, shard: u16| match chain.ledger().market.job(&job).unwrap().task(shard, 0).state {
        TaskState::Leased { provider, .. } => Some(provider),
        _ => None,
    };
    assert_eq!(leased(&chain, 0), Some(addr(P1)), "cheapest provider gets the first shard");
    assert_eq!(leased(&chain, 1), Some(addr(P2)));

    // Nobody else may mine on P1's shard, and P1 may not mine on P2's.
    let not_leased = mine(&mut chain, MINER, vec![], Some(JobWork { job, a: shards[0].0.clone(), b: b.clone() }));
    assert!(matches!(not_leased, Err(BlockRejection::NotLeased(_))), "{:?}", not_leased.err());
    let wrong_shard = mine(&mut chain, P1, vec![], Some(JobWork { job, a: shards[1].0.clone(), b: b.clone() }));
    assert!(matches!(wrong_shard, Err(BlockRejection::NotLeased(_))));

    // P1 mines a block on its shard and posts the product's commitment in it. The block burns
    // its share of the lease's payment, rounded up, and pays P1 90% of that burn.
    let p1_before = chain.ledger().account(&addr(P1)).balance;
    let post = tx(id, P1, 1, TxKind::PostResult { job, shard: 0, result: Hash::of("C0", &[]), cpu_ms: 0 });
    let block = step(&mut chain, P1, vec![post], Some(JobWork { job, a: shards[0].0.clone(), b: b.clone() }));
    assert_eq!(block.header.job, job);
    assert_eq!(block.header.work, shards[0].1);
    let fee_share = 10 - 10 * chain.params().fee_burn_percent / 100;
    let block_burn = (500_000_000u128 * (48 * 64 * 48u128).min(block.header.difficulty as u128) * 10)
        .div_ceil(100 * 1_000_000_000) as u64;
    assert_eq!(chain.ledger().market.job(&job).unwrap().task(0, 0).prepaid_burn, block_burn);
    let subsidy = ergon_chain::job_block_subsidy(block_burn, chain.params());
    assert_eq!(subsidy, block_burn * 90 / 100);
    assert_eq!(
        chain.ledger().account(&addr(P1)).balance,
        p1_before + subsidy + fee_share - 10,
        "a job block pays 90% of what its mining burned"
    );
    assert!(chain.useful_work_fraction() > 0.0);

    // P2 stays silent: its lease (3 blocks from block 2) closes at block 5 and P1 takes shard 1.
    step(&mut chain, MINER, vec![], None);
    assert_eq!(leased(&chain, 1), Some(addr(P2)));
    step(&mut chain, MINER, vec![], None);
    assert_eq!(leased(&chain, 1), Some(addr(P1)), "re-allocated at the deadline");
    let p2 = chain.ledger().market.provider(&addr(P2)).unwrap();
    assert_eq!((p2.failed, p2.strikes), (1, 1));
    // Shard 0 settled at block 5 (posted at 3, window 2).
    assert!(matches!(chain.ledger().market.job(&job).unwrap().task(0, 0).state, TaskState::Settled { .. }));

    let post = tx(id, P1, 2, TxKind::PostResult { job, shard: 1, result: Hash::of("C1", &[]), cpu_ms: 0 });
    step(&mut chain, MINER, vec![post], None);
    // A result for a shard it no longer holds is refused with the market's reason.
    let again = tx(id, P1, 3, TxKind::PostResult { job, shard: 1, result: Hash::ZERO, cpu_ms: 0 });
    let t = chain.template(addr(MINER), vec![again], chain.tip_header().time_ms + T);
    assert_eq!(t.refused[0].1, TxRejection::Market(MarketRejection::NotLeased { shard: 1 }));
    step(&mut chain, MINER, vec![], None);
    step(&mut chain, MINER, vec![], None);
    let j = chain.ledger().market.job(&job).unwrap().clone();
    assert!(j.finished_at.is_some(), "both shards settled");
    // Every coin of the escrow is accounted for: paid + burned + refunded.
    let price = 500_000_000u128;
    let per_shard = (price * 48 * 64 * 48 / 1_000_000_000) as u64;
    let burned = per_shard * chain.params().job_burn_percent / 100;
    assert_eq!(j.paid, 2 * (per_shard - burned));
    assert_eq!(j.burned, 2 * burned);
    assert_eq!(chain.ledger().account(&addr(CLIENT)).balance, client_before - 10 - 2 * per_shard);
    supply_holds(&chain);
}

#[test]
fn a_job_block_on_an_unknown_job_is_rejected() {
    let mut chain = Chain::new(genesis()).unwrap();
    let now = chain.tip_header().time_ms + T;
    let mut template = chain.template(key(MINER).public().address(), vec![], now);
    template.header.job = Hash::of("no such job", &[]);
    let block = seal(template, 0, 10_000).unwrap().unwrap();
    let err = chain.import(block, now).unwrap_err();
    assert!(matches!(err, BlockRejection::NotLeased(ref why) if why.contains("does not know")), "{err}");
}

#[test]
fn market_transactions_cost_what_they_lock_and_refusals_change_nothing() {
    let mut chain = Chain::new(genesis()).unwrap();
    let id = chain.chain_id();
    let root = chain.ledger().root();
    let now = chain.tip_header().time_ms + T;
    let too_small = tx(id, P1, 0, TxKind::RegisterProvider { offer: offer(1), stake: 999 });
    let unknown = tx(id, CLIENT, 0, TxKind::CancelJob { job: Hash::ZERO });
    let broke = tx(id, P2, 0, TxKind::RegisterProvider { offer: offer(1), stake: 500_000_000 });
    let t = chain.template(key(MINER).public().address(), vec![too_small, unknown, broke], now);
    let reasons: Vec<String> = t.refused.iter().map(|r| r.1.to_string()).collect();
    assert!(reasons[0].contains("at least 1000"), "{reasons:?}");
    assert!(reasons[1].contains("no such job"), "{reasons:?}");
    assert!(reasons[2].contains("needs 500000010"), "{reasons:?}");
    assert_eq!(chain.ledger().root(), root);
}

#[test]
fn a_wrong_result_is_disputed_slashed_and_reallocated() {
    let mut chain = Chain::new(genesis()).unwrap();
    let id = chain.chain_id();
    let addr = |k: u8| key(k).public().address();
    step(
        &mut chain,
        MINER,
        vec![tx(id, P1, 0, TxKind::RegisterProvider { offer: offer(500_000_000), stake: STAKE })],
        None,
    );
    let (a, b) = (matrix(30, 40, 3), matrix(40, 20, 4));
    let work = WorkCommitment::compute(&a, &b).unwrap();
    let spec = matmul_spec(vec![work], 30 * 40 * 20, 10);
    let submit = tx(id, CLIENT, 0, TxKind::SubmitJob { spec });
    let job = ergon_types::job::job_id(&submit.id());
    step(&mut chain, MINER, vec![submit], None);

    // P1 posts the root of a product with one wrong entry.
    let mut c = ergon_kernels::matmul(&a, &b).unwrap();
    let right_root = ergon_pouw::result_root(&c);
    c.as_mut_slice()[7 * 20 + 3] -= 5;
    let wrong_root = ergon_pouw::result_root(&c);
    let post = tx(id, P1, 1, TxKind::PostResult { job, shard: 0, result: Hash(wrong_root), cpu_ms: 0 });
    step(&mut chain, MINER, vec![post], None);

    // Evidence about a correct entry is refused with the reason; about the wrong one, it slashes.
    let honest = ergon_pouw::WrongEntry::build(&a, &b, &c, 0, 0).unwrap();
    let refused = tx(id, CLIENT, 1, TxKind::Dispute { job, shard: 0, replica: 0, evidence: honest });
    let t = chain.template(addr(MINER), vec![refused], chain.tip_header().time_ms + T);
    assert!(t.refused[0].1.to_string().contains("entry (0, 0)") && t.refused[0].1.to_string().contains("is correct"));
    assert_ne!(right_root, wrong_root);

    let evidence = ergon_pouw::WrongEntry::build(&a, &b, &c, 7, 3).unwrap();
    let client_before = chain.ledger().account(&addr(CLIENT)).balance;
    let burned_before = chain.ledger().burned;
    let dispute = tx(id, CLIENT, 1, TxKind::Dispute { job, shard: 0, replica: 0, evidence });
    step(&mut chain, MINER, vec![dispute], None);
    let p1 = chain.ledger().market.provider(&addr(P1)).unwrap();
    let market = chain.params().market();
    let slash = market.collateral(500_000_000 * 30 * 40 * 20 / 1_000_000_000);
    assert_eq!((p1.bond, p1.slashed), (STAKE - slash, slash), "the lease's collateral is slashed");
    assert_eq!(p1.status, ergon_market::ProviderStatus::Demoted);
    assert_eq!(
        chain.ledger().account(&addr(CLIENT)).balance,
        client_before - 10 + market.dispute_bounty,
        "the disputer gets the small fixed bounty"
    );
    assert!(chain.ledger().burned >= burned_before + slash - market.dispute_bounty, "the rest is burned");
    assert_eq!(chain.ledger().market.job(&job).unwrap().task(0, 0).state, TaskState::Queued, "back in the queue");
    let log = chain.ledger().market.decisions(&ergon_market::Subject::Provider(addr(P1)));
    assert!(log.iter().any(|d| d.text.contains(&format!("slashed {slash} and demoted: entry (7, 3) is"))), "{log:?}");
}

/// The self-dealing exploit of issue 9: an offer at price 1 claiming unbounded throughput, a
/// job of zero matrices under 10^9 multiply-adds bought from oneself, mined on for free. The
/// old rules paid the full subsidy (50,000,000) against a burn of 0; now the block pays 90% of
/// what its mining burned, so the attacker ends poorer than it started.
#[test]
fn a_self_dealt_job_block_pays_less_than_its_job_burned() {
    let mut chain = Chain::new(genesis()).unwrap();
    let id = chain.chain_id();
    let me = key(P1).public().address();
    let mut greedy = offer(1);
    greedy.profile.int8_gmacs = u64::MAX;
    step(&mut chain, MINER, vec![tx(id, P1, 0, TxKind::RegisterProvider { offer: greedy, stake: STAKE })], None);
    let zeros = MatI8::from_vec(48, 48, vec![0; 48 * 48]).unwrap();
    let work = WorkCommitment::compute(&zeros, &zeros).unwrap();
    let mut spec = matmul_spec(vec![work], 48 * 48 * 48, 5);
    spec.max_price_per_gmac = 1;
    let submit = tx(id, P1, 1, TxKind::SubmitJob { spec });
    let job = ergon_types::job::job_id(&submit.id());
    step(&mut chain, MINER, vec![submit], None);
    let before = chain.ledger().account(&me).balance + chain.ledger().market.job(&job).unwrap().escrow;
    let minted = chain.ledger().minted;
    let block = step(&mut chain, P1, vec![], Some(JobWork { job, a: zeros.clone(), b: zeros.clone() }));
    assert_eq!(block.header.job, job);
    let gained = chain.ledger().minted - minted;
    let burned = chain.ledger().market.job(&job).unwrap().burned;
    assert_eq!(burned, 1, "price 1 on 110,592 multiply-adds still burns one coin, rounded up");
    assert!(gained < burned, "the block paid {gained}, its job burned {burned}");
    let after = chain.ledger().account(&me).balance + chain.ledger().market.job(&job).unwrap().escrow;
    assert!(after < before, "self-dealing lost money: {before} -> {after}");
    // And the allowance is spent: a second block on the same task is refused.
    let again = mine(&mut chain, P1, vec![], Some(JobWork { job, a: zeros.clone(), b: zeros }));
    assert!(matches!(again, Err(BlockRejection::NotLeased(ref why)) if why.contains("already produced")));
}

/// Withholding (issue 9): a provider posts a root and never serves the result. The client
/// challenges two rows; a provider that reveals them is paid; one that does not, or that posted
/// the root of a wrongly shaped product (which no opening can match), is slashed, not paid, and
/// the task is queued again.
#[test]
fn a_withheld_or_misshapen_result_is_challenged_and_never_paid() {
    let mut chain = Chain::new(genesis()).unwrap();
    let id = chain.chain_id();
    let addr = |k: u8| key(k).public().address();
    let register = |from, price| tx(id, from, 0, TxKind::RegisterProvider { offer: offer(price), stake: STAKE });
    step(&mut chain, MINER, vec![register(P1, 500_000_000), register(P2, 600_000_000)], None);
    let (a, b) = (matrix(30, 40, 5), matrix(40, 20, 6));
    let work = WorkCommitment::compute(&a, &b).unwrap();
    let c = ergon_kernels::matmul(&a, &b).unwrap();
    let submit = |nonce| tx(id, CLIENT, nonce, TxKind::SubmitJob { spec: matmul_spec(vec![work], 30 * 40 * 20, 20) });
    let (first, second) = (submit(0), submit(1));
    let (honest_job, withheld_job) = (ergon_types::job::job_id(&first.id()), ergon_types::job::job_id(&second.id()));
    step(&mut chain, MINER, vec![first, second], None);
    let holder = |chain: &Chain, job| match chain.ledger().market.job(&job).unwrap().task(0, 0).state {
        TaskState::Leased { provider, .. } | TaskState::Posted { provider, .. } => Some(provider),
        _ => None,
    };
    let (hp, wp) = (holder(&chain, honest_job).unwrap(), holder(&chain, withheld_job).unwrap());
    let (honest, withholder) = if hp == addr(P1) { (P1, P2) } else { (P2, P1) };
    assert_eq!(wp, addr(withholder));
    // Both post the right root; the withholder will never serve or reveal its rows.
    let root = Hash(ergon_pouw::result_root(&c));
    step(
        &mut chain,
        MINER,
        vec![
            tx(id, honest, 1, TxKind::PostResult { job: honest_job, shard: 0, result: root, cpu_ms: 0 }),
            tx(id, withholder, 1, TxKind::PostResult { job: withheld_job, shard: 0, result: root, cpu_ms: 0 }),
        ],
        None,
    );
    let challenge =
        |nonce, job| tx(id, CLIENT, nonce, TxKind::ChallengeResult { job, shard: 0, replica: 0, rows: vec![3, 17] });
    // Only the client may challenge, and only rows that exist.
    let stranger = tx(id, MINER, 0, TxKind::ChallengeResult { job: honest_job, shard: 0, replica: 0, rows: vec![3] });
    let outside = tx(id, CLIENT, 2, TxKind::ChallengeResult { job: honest_job, shard: 0, replica: 0, rows: vec![30] });
    let t = chain.template(addr(MINER), vec![stranger, outside], chain.tip_header().time_ms + T);
    assert_eq!(t.refused[0].1, TxRejection::Market(MarketRejection::NotYourJob));
    assert!(t.refused[1].1.to_string().contains("row 30 is outside"), "{}", t.refused[1].1);
    step(&mut chain, MINER, vec![challenge(2, honest_job), challenge(3, withheld_job)], None);
    // A reveal of other rows, or of rows that do not open to the root, is refused.
    let reveal = |from, nonce, job, rows: &[usize]| {
        let rows = rows.iter().map(|&r| ergon_pouw::RevealedRow::build(&c, r).unwrap()).collect();
        tx(id, from, nonce, TxKind::RevealRows { job, shard: 0, replica: 0, rows })
    };
    let mut forged = c.clone();
    forged.as_mut_slice()[3 * 20] += 1;
    let wrong_rows = reveal(honest, 2, honest_job, &[3]);
    let forged_rows = {
        let rows = [3, 17].iter().map(|&r| ergon_pouw::RevealedRow::build(&forged, r).unwrap()).collect();
        tx(id, honest, 2, TxKind::RevealRows { job: honest_job, shard: 0, replica: 0, rows })
    };
    let t = chain.template(addr(MINER), vec![wrong_rows, forged_rows], chain.tip_header().time_ms + T);
    assert!(t.refused[0].1.to_string().contains("exactly the asked rows"), "{}", t.refused[0].1);
    assert!(t.refused[1].1.to_string().contains("does not open"), "{}", t.refused[1].1);
    step(&mut chain, MINER, vec![reveal(honest, 2, honest_job, &[3, 17])], None);
    let withholder_bond = chain.ledger().market.provider(&addr(withholder)).unwrap().bond;
    for _ in 0..4 {
        step(&mut chain, MINER, vec![], None);
    }
    let market = &chain.ledger().market;
    assert!(matches!(market.job(&honest_job).unwrap().task(0, 0).state, TaskState::Settled { .. }), "revealed: paid");
    let w = market.job(&withheld_job).unwrap();
    assert!(!matches!(w.task(0, 0).state, TaskState::Settled { .. } | TaskState::Posted { .. }), "{:?}", w.task(0, 0));
    assert_eq!(w.paid, 0, "a withheld result is never paid");
    let p = market.provider(&addr(withholder)).unwrap();
    assert!(p.bond < withholder_bond && p.status == ergon_market::ProviderStatus::Demoted, "{p:?}");
    let log = market.decisions(&ergon_market::Subject::Provider(addr(withholder)));
    assert!(log.iter().any(|d| d.text.contains("withheld its result")), "{log:?}");
    supply_holds(&chain);

    // A root of a wrongly shaped product: no row of the committed 30×20 shape opens to it.
    let misshapen = ergon_kernels::matmul(&matrix(31, 40, 5), &b).unwrap();
    let row = ergon_pouw::RevealedRow::build(&misshapen, 3).unwrap();
    assert!(row.check(30, 20, &ergon_pouw::result_root(&misshapen)).is_err());
}

#[test]
fn shards_beyond_the_dispute_limits_are_refused_at_submission() {
    let chain = Chain::new(genesis()).unwrap();
    let w = WorkCommitment { m: 24, k: 16_385, n: 32, root_a: [0; 32], root_b: [0; 32] };
    let spec = matmul_spec(vec![w], 24 * 16_385 * 32, 5);
    let mut m = chain.ledger().market.clone();
    let err = m.submit(key(CLIENT).public().address(), Hash::ZERO, spec, 1, &chain.params().market()).unwrap_err();
    assert!(err.to_string().contains("could not be proven on chain"), "{err}");
}

/// Issue 11: matching used the offer's claim, so an offer of `int8_gmacs = u64::MAX` passed every
/// throughput requirement (and, asking less, won the lease). Now only what staked validators
/// judged counts: an unjudged claim counts as 0, a judgment never lifts a provider above its
/// claim, and only staked validators may judge.
#[test]
fn matching_uses_the_throughput_validators_verified_never_the_claim() {
    const VALIDATOR: u8 = 7;
    let mut g = genesis();
    g.balances.insert(key(VALIDATOR).public().address().to_string(), 100_000_000);
    g.params.min_validator_stake = 10_000_000;
    let mut chain = Chain::new(g).unwrap();
    let id = chain.chain_id();
    let addr = |k: u8| key(k).public().address();
    let mut liar = offer(100_000_000);
    liar.profile.int8_gmacs = u64::MAX;
    let mut honest = offer(200_000_000);
    honest.profile.int8_gmacs = 100;
    step(
        &mut chain,
        MINER,
        vec![
            tx(id, P1, 0, TxKind::RegisterProvider { offer: liar, stake: STAKE }),
            tx(id, P2, 0, TxKind::RegisterProvider { offer: honest, stake: STAKE }),
            tx(id, VALIDATOR, 0, TxKind::Stake { amount: 10_000_000 }),
        ],
        None,
    );
    // Only a staked validator judges.
    let unstaked = tx(id, CLIENT, 0, TxKind::Judge { provider: addr(P2), gmacs: 100, reason: "r".into() });
    let now = chain.tip_header().time_ms + T;
    let refused = chain.template(addr(MINER), vec![unstaked], now).refused;
    assert!(matches!(refused[0].1, TxRejection::NotAValidator { stake: 0, min: 10_000_000 }), "{:?}", refused[0].1);
    let judgments = vec![
        tx(id, VALIDATOR, 1, TxKind::Judge { provider: addr(P2), gmacs: 100, reason: "r".into() }),
        tx(id, VALIDATOR, 2, TxKind::Judge { provider: addr(P1), gmacs: 10, reason: "r".into() }),
    ];
    step(&mut chain, MINER, judgments, None);
    let market = &chain.ledger().market;
    assert_eq!(market.provider(&addr(P2)).unwrap().verified_gmacs(), 100);
    assert_eq!(market.provider(&addr(P1)).unwrap().verified_gmacs(), 10, "what the validator saw, not the claim");
    // A job that needs 50 G MAC/s: the cheaper liar does not get it.
    let (a, b) = (matrix(48, 48, 1), matrix(48, 48, 2));
    let mut spec = matmul_spec(vec![WorkCommitment::compute(&a, &b).unwrap()], 48 * 48 * 48, 3);
    spec.requirements.min_int8_gmacs = 50;
    let submits =
        [tx(id, CLIENT, 0, TxKind::SubmitJob { spec: spec.clone() }), tx(id, CLIENT, 1, TxKind::SubmitJob { spec })];
    let jobs: Vec<_> = submits.iter().map(|t| ergon_types::job::job_id(&t.id())).collect();
    step(&mut chain, MINER, submits.to_vec(), None);
    // One is leased to the honest provider; the other waits (P2's one slot is taken, and the
    // cheaper P1 is not verified fast enough).
    let market = &chain.ledger().market;
    let states: Vec<_> = jobs.iter().map(|j| market.job(j).unwrap().task(0, 0).state.clone()).collect();
    let to_p2 =
        states.iter().filter(|s| matches!(s, TaskState::Leased { provider, .. } if *provider == addr(P2))).count();
    let queued = states.iter().filter(|s| matches!(s, TaskState::Queued)).count();
    assert_eq!((to_p2, queued), (1, 1), "{states:?}");
    let params = chain.params().market();
    let outlook = market.provider_outlook(&addr(P1), &params);
    assert!(outlook.contains("than validators have verified"), "{outlook}");
    let decisions = market.decisions(&ergon_market::Subject::Provider(addr(P1)));
    assert!(decisions.iter().any(|d| d.text.contains("verified int8 throughput 0 → 10")), "{decisions:?}");

    // Liveness: P2 stops answering, its validator judges it 0. In that same block P2 loses its
    // lease (no strike) and the task goes to P1, now verified fast enough; P2 takes no lease
    // while absent, and is back once it answers. (Before, a dead provider kept its lease until
    // the lease's deadline.)
    let gone = vec![
        tx(id, VALIDATOR, 3, TxKind::Judge { provider: addr(P1), gmacs: 100, reason: "r".into() }),
        tx(id, VALIDATOR, 4, TxKind::Judge { provider: addr(P2), gmacs: 0, reason: "missed a probe".into() }),
    ];
    step(&mut chain, MINER, gone, None);
    let market = &chain.ledger().market;
    let p2 = market.provider(&addr(P2)).unwrap();
    assert!(p2.absent() && p2.leases.is_empty() && p2.strikes == 0, "{p2:?}");
    let states: Vec<_> = jobs.iter().map(|j| market.job(j).unwrap().task(0, 0).state.clone()).collect();
    let to_p1 =
        states.iter().filter(|s| matches!(s, TaskState::Leased { provider, .. } if *provider == addr(P1))).count();
    let queued = states.iter().filter(|s| matches!(s, TaskState::Queued)).count();
    assert_eq!((to_p1, queued), (1, 1), "P1's one slot took one; P2, absent, takes none: {states:?}");
    let log = jobs.iter().flat_map(|j| market.decisions(&ergon_market::Subject::Job(*j))).map(|d| d.text);
    assert!(log.clone().any(|t| t.contains("stopped answering the validators' challenges; lease released")));
    let outlook = market.provider_outlook(&addr(P2), &params);
    assert!(outlook.contains("absent"), "{outlook}");
    step(
        &mut chain,
        MINER,
        vec![tx(id, VALIDATOR, 5, TxKind::Judge { provider: addr(P2), gmacs: 100, reason: "r".into() })],
        None,
    );
    let market = &chain.ledger().market;
    assert!(!market.provider(&addr(P2)).unwrap().absent());
    let states: Vec<_> = jobs.iter().map(|j| market.job(j).unwrap().task(0, 0).state.clone()).collect();
    assert!(
        states.iter().all(|s| matches!(s, TaskState::Leased { .. })),
        "P2 answers again and takes the other: {states:?}"
    );
    supply_holds(&chain);
}

/// A proven wrong answer to a challenge slashes once per registration: the provider is demoted
/// and its leases go back to the queue; the same proof again, or one given under an earlier
/// registration after it registers again, is refused.
#[test]
fn a_proven_wrong_answer_slashes_once_per_registration() {
    let mut chain = Chain::new(genesis()).unwrap();
    let id = chain.chain_id();
    step(&mut chain, MINER, vec![tx(id, P1, 0, TxKind::RegisterProvider { offer: offer(100), stake: STAKE })], None);
    let params = chain.params().market();
    let mut m = chain.ledger().market.clone();
    let p1 = key(P1).public().address();
    let registered = m.provider(&p1).unwrap().registered_at;
    let reporter = key(MINER).public().address();
    let effects = m.punish_fraud(reporter, p1, registered, "row 3 is wrong", 5, &params).unwrap();
    let p = m.provider(&p1).unwrap();
    assert_eq!(p.status, ergon_market::ProviderStatus::Demoted);
    assert_eq!(p.slashed, params.min_provider_stake.min(STAKE));
    let paid: u64 = effects
        .iter()
        .map(|e| match e {
            ergon_market::Effect::Pay { amount, .. } | ergon_market::Effect::Burn { amount } => *amount,
            _ => 0,
        })
        .sum();
    assert_eq!(paid, p.slashed, "the slash is paid out or burned, nothing else");
    let again = m.punish_fraud(reporter, p1, registered, "row 3 is wrong", 6, &params).unwrap_err();
    assert!(again.to_string().contains("already out of the market"), "{again}");
    m.register(p1, offer(100), STAKE, 9, &params).unwrap();
    let stale = m.punish_fraud(reporter, p1, registered, "row 3 is wrong", 10, &params).unwrap_err();
    assert!(stale.to_string().contains("not the current one"), "{stale}");
    assert_eq!(m.provider(&p1).unwrap().registered_at, 9);
}
