//! Adaptive replication (issue 11, `ergon_market::checks`): an ML result of a provider on
//! probation is computed again by another provider before it is paid, a trusted provider's are
//! sampled at the audit rate, and the check is paid out of the checked provider's pay.

use ergon_market::load::address;
use ergon_market::{payment, Effect, Market, MarketParams, Subject, TaskState};
use ergon_types::job::BlobRef;
use ergon_types::{Address, Hash, JobKind, JobSpec};

mod common;
use common::*;

/// A one-shard training job of 2^30 multiply-adds, one replica.
fn train(max_price: u64) -> JobSpec {
    let mut spec = matmul(1, 1, max_price);
    spec.kind = JobKind::Train;
    spec.inputs =
        vec![BlobRef { id: Hash::of("data", &[]), size: 100 }, BlobRef { id: Hash::of("spec", &[]), size: 10 }];
    spec
}

fn pays(effects: &[Effect]) -> Vec<(Address, u64)> {
    effects
        .iter()
        .filter_map(|e| if let Effect::Pay { to, amount } = e { Some((*to, *amount)) } else { None })
        .collect()
}

fn state(m: &Market, job: &Hash, replica: u8) -> TaskState {
    m.job(job).unwrap().task(0, replica).state.clone()
}

/// Submits `spec` at `h`, checks `provider` leases its replica 0, posts `result` at `h + 1`
/// and ends the block its window closes in (where a check is called, or the shard settles).
fn lease_and_post(
    m: &mut Market,
    p: &MarketParams,
    spec: JobSpec,
    nonce: u64,
    h: u64,
    provider: Address,
    result: &str,
) -> Hash {
    let job = submit(m, spec, nonce, h);
    m.end_block(h, p);
    assert_eq!(leaseholder(m, &job, 0, 0), Some(provider));
    m.post_result(provider, job, 0, Hash::of(result, &[]), 0, h + 1, p).unwrap();
    m.end_block(h + 1 + p.challenge_blocks, p);
    job
}

/// Makes `provider` trusted: `probation_leases` matmul results paid (the client checks those).
fn earn_trust(m: &mut Market, p: &MarketParams, provider: Address, from_height: u64) -> u64 {
    let mut h = from_height;
    for i in 0..p.probation_leases {
        lease_and_post(m, p, matmul(1, 1, 100), 9000 + i + h, h, provider, "product");
        h += 2 + p.challenge_blocks;
    }
    assert_eq!(m.provider(&provider).unwrap().probation(p), None);
    h
}

#[test]
fn a_newcomers_ml_result_is_checked_by_another_provider_and_the_check_is_paid_out_of_its_pay() {
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(90, 64, 100), 100, 0, &p).unwrap();
    let job = submit(&mut m, train(100), 1, 1);
    assert_eq!(state(&m, &job, 1), TaskState::Spare, "the check replica waits unused");
    m.end_block(1, &p);
    assert_eq!(leaseholder(&m, &job, 0, 0), Some(address(1)));
    // A second provider arrives, cheaper, after the lease was made.
    m.register(address(2), cpu(50, 64, 100), 100, 1, &p).unwrap();
    let result = Hash::of("model", &[]);
    m.post_result(address(1), job, 0, result, 0, 2, &p).unwrap();
    let effects = m.end_block(4, &p);
    assert!(effects.is_empty(), "not paid before its check: {effects:?}");
    let text = log_text(&m, Subject::Job(job));
    assert!(text.contains("check replica 1 queued") && text.contains("on probation: 0 of the 3 checked"), "{text}");
    assert_eq!(leaseholder(&m, &job, 0, 1), Some(address(2)), "the check went to the other provider");
    m.post_result(address(2), job, 0, result, 0, 5, &p).unwrap();
    let escrow = m.job(&job).unwrap().escrow;
    let effects = m.end_block(7, &p);
    // The shard is worth the larger lease (90 per G MAC here), as without the check; the
    // checker's value (50) less the burn comes out of the checked provider's share.
    let amount = payment(90, 1 << 30);
    let burned = amount / 10;
    let to_checker = payment(50, 1 << 30) - payment(50, 1 << 30) / 10;
    assert_eq!(
        pays(&effects),
        vec![(address(1), amount - burned - to_checker), (address(2), to_checker), (address(CLIENT), escrow - amount)]
    );
    assert!(effects.contains(&Effect::Burn { amount: burned }));
    for a in [1, 2] {
        let pv = m.provider(&address(a)).unwrap();
        assert_eq!((pv.completed, pv.vouched), (1, 1), "an agreed result counts for both");
    }
    assert!(matches!(state(&m, &job, 1), TaskState::Settled { .. }));
    assert_eq!(m.job(&job).unwrap().finished_at, Some(7));
    let text = log_text(&m, Subject::Job(job));
    assert!(text.contains("check replica 1 agreed"), "{text}");
}

#[test]
fn a_check_that_disagrees_pays_neither_and_both_are_run_again_elsewhere() {
    let p = params();
    let mut m = Market::default();
    for i in 1..=4 {
        m.register(address(i), cpu(50 + i, 64, 100), 100, 0, &p).unwrap();
    }
    let job = submit(&mut m, train(100), 1, 1);
    m.end_block(1, &p);
    m.post_result(address(1), job, 0, Hash::of("wrong", &[]), 0, 2, &p).unwrap();
    m.end_block(4, &p);
    let checker = leaseholder(&m, &job, 0, 1).unwrap();
    m.post_result(checker, job, 0, Hash::of("right", &[]), 0, 5, &p).unwrap();
    let effects = m.end_block(7, &p);
    assert!(pays(&effects).is_empty(), "{effects:?}");
    let text = log_text(&m, Subject::Job(job));
    assert!(text.contains("the check replica's result differs, so no result is paid"), "{text}");
    let now: Vec<Address> = (0..2).map(|r| leaseholder(&m, &job, 0, r).unwrap()).collect();
    assert!(!now.contains(&address(1)) && !now.contains(&checker), "both run again by others: {now:?}");
    for a in [address(1), checker] {
        let pv = m.provider(&a).unwrap();
        assert_eq!((pv.failed, pv.strikes), (0, 0), "a check's dissent counts against nobody");
        assert!(pv.probation(&p).is_some());
    }
}

#[test]
fn with_no_other_provider_a_result_settles_unchecked_and_does_not_end_probation() {
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(90, 64, 100), 100, 0, &p).unwrap();
    let job = submit(&mut m, train(100), 1, 1);
    m.end_block(1, &p);
    m.post_result(address(1), job, 0, Hash::of("model", &[]), 0, 2, &p).unwrap();
    let effects = m.end_block(4, &p);
    let amount = payment(90, 1 << 30);
    assert_eq!(pays(&effects)[0], (address(1), amount - amount / 10), "paid in full");
    let pv = m.provider(&address(1)).unwrap();
    assert_eq!((pv.completed, pv.vouched), (1, 0), "an unchecked result does not end probation");
    assert!(pv.probation(&p).is_some());
    let text = log_text(&m, Subject::Job(job));
    assert!(text.contains("no other provider could check"), "{text}");
    let text = log_text(&m, Subject::Provider(address(1)));
    assert!(text.contains("does not count toward leaving probation"), "{text}");
}

#[test]
fn a_check_nobody_takes_in_time_is_cancelled_and_the_shard_settles_unchecked() {
    let p = MarketParams { check_wait_blocks: 5, ..params() };
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), 100, 0, &p).unwrap();
    // The other provider is busy with a long matmul lease (served first: it offers more) the
    // whole time.
    m.register(address(2), cpu(40, 64, 100), 100, 0, &p).unwrap();
    let job = submit(&mut m, train(100), 1, 1);
    let mut long = matmul(1, 1, 200);
    long.requirements.lease_blocks = 50;
    let busy = submit(&mut m, long, 2, 1);
    m.end_block(1, &p);
    assert_eq!(leaseholder(&m, &busy, 0, 0), Some(address(2)));
    m.post_result(address(1), job, 0, Hash::of("model", &[]), 0, 2, &p).unwrap();
    m.end_block(4, &p);
    assert_eq!(state(&m, &job, 1), TaskState::Queued);
    for h in 5..9 {
        assert!(m.end_block(h, &p).is_empty(), "waiting for its check at {h}");
    }
    assert!(m.end_block(9, &p).is_empty());
    assert_eq!(state(&m, &job, 1), TaskState::Cancelled);
    let effects = m.end_block(10, &p);
    assert_eq!(pays(&effects)[0].0, address(1), "settled unchecked in the block after the check was given up");
    assert_eq!(m.provider(&address(1)).unwrap().vouched, 0);
    let text = log_text(&m, Subject::Job(job));
    assert!(text.contains("check replica 1: cancelled, no provider took it within 5 blocks"), "{text}");
}

#[test]
fn a_trusted_providers_results_are_sampled_at_the_audit_rate() {
    // Collateral for a 10% audit rate: bonds large enough for it.
    let p = MarketParams { audit_permille: 100, ..params() };
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), 1 << 30, 0, &p).unwrap();
    let mut h = earn_trust(&mut m, &p, address(1), 1);
    m.register(address(2), cpu(60, 64, 100), 1 << 30, h, &p).unwrap();
    let (mut checked, jobs) = (0, 200);
    for i in 0..jobs {
        let job = lease_and_post(&mut m, &p, train(100), i, h, address(1), "model");
        h += 2 + p.challenge_blocks;
        if state(&m, &job, 1) != TaskState::Spare {
            checked += 1;
            let checker = leaseholder(&m, &job, 0, 1).unwrap();
            assert_eq!(checker, address(2));
            m.post_result(checker, job, 0, Hash::of("model", &[]), 0, h, &p).unwrap();
            m.end_block(h + p.challenge_blocks, &p);
            h += 1 + p.challenge_blocks;
            let text = log_text(&m, Subject::Job(job));
            assert!(text.contains("sampled for audit (100‰"), "{text}");
        }
        assert!(m.job(&job).unwrap().finished_at.is_some());
    }
    // 10% of 200: 20 expected, standard deviation 4.2.
    assert!((8..=35).contains(&checked), "{checked} of {jobs} checked");
}

#[test]
fn a_provider_the_validators_see_at_half_its_claim_is_on_probation_whatever_its_history() {
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), 100, 0, &p).unwrap();
    let h = earn_trust(&mut m, &p, address(1), 1);
    assert_eq!(m.provider(&address(1)).unwrap().reputation(), 1000);
    m.judge(address(77), 10, address(1), 50, "answers at half the claim", h).unwrap();
    let pv = m.provider(&address(1)).unwrap();
    assert_eq!(pv.challenge_permille(), 500);
    assert_eq!(pv.reputation(), 500);
    assert_eq!(pv.probation(&p).unwrap(), "on probation: reputation 500‰ is below 900‰");
    // So its ML results are checked again, every one.
    m.register(address(2), cpu(60, 64, 100), 100, h, &p).unwrap();
    let job = lease_and_post(&mut m, &p, train(100), 1, h, address(1), "model");
    assert_eq!(leaseholder(&m, &job, 0, 1), Some(address(2)));
    let text = log_text(&m, Subject::Job(job));
    assert!(text.contains("reputation 500‰ is below 900‰"), "{text}");
}

#[test]
fn a_market_with_spare_and_running_checks_survives_a_snapshot_and_commits_to_them() {
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), 100, 0, &p).unwrap();
    m.register(address(2), cpu(60, 64, 100), 100, 0, &p).unwrap();
    let spare = submit(&mut m, train(100), 1, 1);
    let checked = submit(&mut m, train(100), 2, 1);
    m.end_block(1, &p);
    let first = leaseholder(&m, &checked, 0, 0).unwrap();
    m.post_result(first, checked, 0, Hash::of("model", &[]), 0, 2, &p).unwrap();
    let before_check = m.root();
    m.end_block(4, &p);
    assert_eq!(state(&m, &spare, 1), TaskState::Spare);
    assert!(matches!(state(&m, &checked, 1), TaskState::Leased { .. } | TaskState::Queued));
    assert_ne!(m.root(), before_check);
    let mut w = ergon_types::codec::Writer::new();
    m.write_snapshot(&mut w);
    let bytes = w.finish();
    let back = Market::read_snapshot(&mut ergon_types::codec::Reader::new(&bytes, "market")).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.root(), m.root());
}

#[test]
fn a_ring_of_new_identities_holding_every_replica_cannot_outvote_the_check() {
    let p = params();
    let mut m = Market::default();
    // Three identities at the lowest price take all three replicas; an honest provider is left.
    for i in 1..=3 {
        m.register(address(i), cpu(10, 64, 100), 100, 0, &p).unwrap();
    }
    m.register(address(4), cpu(90, 64, 100), 100, 0, &p).unwrap();
    let mut spec = train(100);
    spec.requirements.replicas = 3;
    let job = submit(&mut m, spec, 1, 1);
    m.end_block(1, &p);
    let garbage = Hash::of("garbage", &[]);
    for r in 0..3 {
        let holder = leaseholder(&m, &job, 0, r).unwrap();
        assert!(holder != address(4));
        m.post_result(holder, job, 0, garbage, 0, 2, &p).unwrap();
    }
    assert!(m.end_block(4, &p).is_empty());
    assert_eq!(leaseholder(&m, &job, 0, 3), Some(address(4)), "the check goes to the honest provider");
    m.post_result(address(4), job, 0, Hash::of("model", &[]), 0, 5, &p).unwrap();
    let effects = m.end_block(7, &p);
    assert!(pays(&effects).is_empty(), "3 to 1, and still nobody is paid: {effects:?}");
    let text = log_text(&m, Subject::Job(job));
    assert!(text.contains("the check replica's result differs"), "{text}");
    for i in 1..=3 {
        for r in 0..4 {
            assert!(m.job(&job).unwrap().task(0, r).excluded.contains(&address(i)), "the ring never gets it back");
        }
    }
}

#[test]
fn a_trusted_provider_a_sampled_check_disagrees_with_is_back_on_probation() {
    // params() audits every result (audit_permille = 1000).
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), 100, 0, &p).unwrap();
    let h = earn_trust(&mut m, &p, address(1), 1);
    m.register(address(2), cpu(60, 64, 100), 100, h, &p).unwrap();
    let job = lease_and_post(&mut m, &p, train(100), 1, h, address(1), "garbage");
    assert!(log_text(&m, Subject::Job(job)).contains("sampled for audit"));
    m.post_result(address(2), job, 0, Hash::of("model", &[]), 0, h + 2 + p.challenge_blocks, &p).unwrap();
    let effects = m.end_block(h + 2 + 2 * p.challenge_blocks, &p);
    assert!(pays(&effects).is_empty(), "{effects:?}");
    let pv = m.provider(&address(1)).unwrap();
    assert_eq!(pv.vouched, 0);
    assert_eq!(pv.probation(&p).unwrap(), "on probation: 0 of the 3 checked results it needs");
    let text = log_text(&m, Subject::Provider(address(1)));
    assert!(text.contains("back on probation: a check disagreed"), "{text}");
    assert_eq!(m.provider(&address(2)).unwrap().strikes, 0);
}

/// Leases `job`'s replica 0 to `provider` at `h`, which posts `posted`; the client then doubts
/// it, expecting `expected`, and the check is leased at `h + 1`. Returns the checker.
fn post_and_doubt(
    m: &mut Market,
    p: &MarketParams,
    job: Hash,
    h: u64,
    provider: Address,
    posted: &str,
    expected: &str,
) -> Address {
    m.end_block(h, p);
    assert_eq!(leaseholder(m, &job, 0, 0), Some(provider));
    m.post_result(provider, job, 0, Hash::of(posted, &[]), 0, h + 1, p).unwrap();
    let escrow = m.job(&job).unwrap().escrow;
    m.doubt(address(CLIENT), job, 0, Hash::of(expected, &[]), h + 1).unwrap();
    assert_eq!(
        m.job(&job).unwrap().escrow,
        escrow + m.doubt_deposit(&job).unwrap(),
        "the doubt's deposit joins the escrow"
    );
    assert_eq!(state(m, &job, 1), TaskState::Queued, "the doubt calls the check at once");
    m.end_block(h + 1, p);
    leaseholder(m, &job, 0, 1).expect("the check is leased")
}

#[test]
fn a_doubted_result_the_check_confirms_is_not_paid_and_the_check_is_paid_as_the_shards_result() {
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), 100, 0, &p).unwrap();
    let h = earn_trust(&mut m, &p, address(1), 1);
    m.register(address(2), cpu(60, 64, 100), 100, h, &p).unwrap();
    let job = submit(&mut m, train(100), 1, h);
    let escrow = m.job(&job).unwrap().escrow;
    let deposit = m.doubt_deposit(&job).unwrap();
    assert_eq!(Some(deposit), train(100).max_cost(), "one check at the job's maximum price");
    let checker = post_and_doubt(&mut m, &p, job, h, address(1), "garbage", "model");
    assert_eq!(checker, address(2));
    m.post_result(checker, job, 0, Hash::of("model", &[]), 0, h + 2, &p).unwrap();
    let mut effects = vec![];
    for at in h + 2..=h + 2 + p.challenge_blocks {
        effects.extend(m.end_block(at, &p));
    }
    // The checker (on probation itself) confirmed the client: the wrong result is not paid
    // and counts as a failure, but nothing is slashed on the word of a checker on probation.
    let value = payment(60, 1 << 30);
    let to_checker = value - value / 10;
    assert_eq!(pays(&effects), vec![(address(2), to_checker), (address(CLIENT), escrow + deposit - value)]);
    let cheat = m.provider(&address(1)).unwrap();
    assert_eq!((cheat.failed, cheat.strikes, cheat.vouched, cheat.slashed), (1, 1, 0, 0));
    assert_eq!(m.provider(&address(2)).unwrap().vouched, 1, "a check the client confirmed counts");
    assert_eq!(state(&m, &job, 0), TaskState::Cancelled);
    assert!(m.job(&job).unwrap().finished_at.is_some());
    let text = log_text(&m, Subject::Job(job));
    assert!(text.contains("the client doubts the posted result"), "{text}");
    let text = log_text(&m, Subject::Provider(address(1)));
    assert!(
        text.contains("which the client expected and check replica 1 computed independently (not slashed"),
        "{text}"
    );
}

#[test]
fn a_doubted_result_a_trusted_checker_confirms_is_slashed_and_the_slash_burned() {
    let p = params();
    let mut m = Market::default();
    // The checker earns its trust first, at the lowest price, then asks more than the cheat.
    m.register(address(2), cpu(40, 64, 100), 100, 0, &p).unwrap();
    let h = earn_trust(&mut m, &p, address(2), 1);
    m.register(address(2), cpu(60, 64, 100), 0, h, &p).unwrap();
    m.register(address(1), cpu(50, 64, 100), 100, h, &p).unwrap();
    let h = earn_trust(&mut m, &p, address(1), h);
    let job = submit(&mut m, train(100), 1, h);
    let supply = m.held();
    let checker = post_and_doubt(&mut m, &p, job, h, address(1), "garbage", "model");
    assert_eq!(checker, address(2));
    m.post_result(checker, job, 0, Hash::of("model", &[]), 0, h + 2, &p).unwrap();
    let before = m.root();
    let mut effects = vec![];
    for at in h + 2..=h + 2 + p.challenge_blocks {
        effects.extend(m.end_block(at, &p));
    }
    assert_ne!(m.root(), before);
    let cheat = m.provider(&address(1)).unwrap();
    assert_eq!((cheat.slashed, cheat.bond, cheat.failed, cheat.vouched), (100, 0, 1, 0));
    assert!(effects.contains(&Effect::Burn { amount: 100 }), "the slash is burned: {effects:?}");
    let paid: u64 = pays(&effects).iter().map(|(_, a)| a).sum();
    let burned: u64 = effects.iter().map(|e| if let Effect::Burn { amount } = e { *amount } else { 0 }).sum();
    let deposit = m.doubt_deposit(&job).unwrap();
    assert_eq!(supply as u64 + deposit - m.held() as u64, paid + burned, "every coin accounted for");
    let text = log_text(&m, Subject::Provider(address(1)));
    assert!(text.contains("slashed 100 and demoted: its result differs"), "{text}");
}

#[test]
fn a_doubt_the_check_refutes_costs_the_client_the_check_and_the_provider_is_paid_in_full() {
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), 100, 0, &p).unwrap();
    let h = earn_trust(&mut m, &p, address(1), 1);
    m.register(address(2), cpu(60, 64, 100), 100, h, &p).unwrap();
    let job = submit(&mut m, train(100), 1, h);
    let escrow = m.job(&job).unwrap().escrow;
    let deposit = m.doubt_deposit(&job).unwrap();
    let checker = post_and_doubt(&mut m, &p, job, h, address(1), "model", "what the client wrongly expects");
    m.post_result(checker, job, 0, Hash::of("model", &[]), 0, h + 2, &p).unwrap();
    let mut effects = vec![];
    for at in h + 2..=h + 2 + p.challenge_blocks {
        effects.extend(m.end_block(at, &p));
    }
    let (own, check) = (payment(50, 1 << 30), payment(60, 1 << 30));
    assert_eq!(
        pays(&effects),
        vec![
            (address(1), own - own / 10),
            (address(2), check - check / 10),
            (address(CLIENT), escrow + deposit - own - check)
        ]
    );
    let honest = m.provider(&address(1)).unwrap();
    assert_eq!((honest.failed, honest.strikes, honest.slashed), (0, 0, 0));
    let text = log_text(&m, Subject::Job(job));
    assert!(text.contains("the client pays for the check it asked for"), "{text}");
}

#[test]
fn a_doubt_that_cannot_apply_is_refused_and_changes_nothing() {
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), 100, 0, &p).unwrap();
    m.register(address(2), cpu(60, 64, 100), 100, 0, &p).unwrap();
    let job = submit(&mut m, train(100), 1, 1);
    let product = submit(&mut m, matmul(1, 1, 100), 2, 1);
    m.end_block(1, &p);
    let refusal = |m: &mut Market, who: u64, job: Hash, expected: &str| {
        let before = m.root();
        let why = m.doubt(address(who), job, 0, Hash::of(expected, &[]), 2).unwrap_err().to_string();
        assert_eq!(m.root(), before, "{why}");
        why
    };
    assert!(refusal(&mut m, CLIENT, job, "model").contains("no posted result of shard 0 differs"));
    let holder = leaseholder(&m, &job, 0, 0).unwrap();
    m.post_result(holder, job, 0, Hash::of("model", &[]), 0, 2, &p).unwrap();
    assert!(refusal(&mut m, CLIENT, job, "model").contains("no posted result of shard 0 differs"));
    assert!(refusal(&mut m, 3, job, "other").contains("only the job's client"));
    assert!(refusal(&mut m, CLIENT, product, "other").contains("prove a wrong entry with a dispute"));
    assert!(refusal(&mut m, CLIENT, Hash::of("nothing", &[]), "x").contains("no such job"));
    m.doubt(address(CLIENT), job, 0, Hash::of("other", &[]), 2).unwrap();
    assert!(refusal(&mut m, CLIENT, job, "third").contains("already doubted"));
    // The doubt is part of the state, and of the snapshot.
    let mut w = ergon_types::codec::Writer::new();
    m.write_snapshot(&mut w);
    let bytes = w.finish();
    let back = Market::read_snapshot(&mut ergon_types::codec::Reader::new(&bytes, "market")).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.root(), m.root());
}

#[test]
fn no_check_is_called_on_a_job_its_client_cancelled() {
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), 100, 0, &p).unwrap();
    m.register(address(2), cpu(60, 64, 100), 100, 0, &p).unwrap();
    let job = submit(&mut m, train(100), 1, 1);
    m.end_block(1, &p);
    let holder = leaseholder(&m, &job, 0, 0).unwrap();
    m.post_result(holder, job, 0, Hash::of("model", &[]), 0, 2, &p).unwrap();
    m.cancel(address(CLIENT), job, 3).unwrap();
    let effects = m.end_block(4, &p);
    assert_eq!(state(&m, &job, 1), TaskState::Spare, "no check leased for a withdrawn job");
    assert_eq!(pays(&effects)[0].0, holder, "the leased shard settles as it stands");
    assert!(m.job(&job).unwrap().finished_at.is_some());
}
