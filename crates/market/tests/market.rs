use ergon_market::load::{address, offer, order, order_book, saturating_load, Rng};
use ergon_market::{payment, Effect, Market, MarketParams, MarketRejection, ProviderStatus, Subject, TaskState};
use ergon_pouw::WorkCommitment;
use ergon_types::{Address, Hash, JobKind, JobSpec, Requirements};
use proptest::prelude::*;

mod common;
use common::*;

#[test]
fn cheapest_fitting_provider_wins_and_is_paid_after_the_window() {
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(80, 1, 100), 100, 0, &p).unwrap(); // cheap but 1 GiB: too small
    m.register(address(2), cpu(90, 64, 100), 100, 0, &p).unwrap();
    m.register(address(3), cpu(120, 64, 100), 100, 0, &p).unwrap();
    let mut spec = matmul(1, 1, 100);
    spec.requirements.min_memory_mib = 2 << 10;
    let job = submit(&mut m, spec, 1, 1);
    let escrow = m.job(&job).unwrap().escrow;
    assert_eq!(escrow, ((1u128 << 30) * 100).div_ceil(1_000_000_000) as u64);
    assert!(m.end_block(1, &p).is_empty());
    assert_eq!(leaseholder(&m, &job, 0, 0), Some(address(2)));
    assert_eq!(m.post_result(address(3), job, 0, Hash::ZERO, 0, 2, &p), Err(MarketRejection::NotLeased { shard: 0 }));
    m.post_result(address(2), job, 0, Hash::of("r", &[]), 0, 2, &p).unwrap();
    assert!(m.end_block(3, &p).is_empty(), "inside the challenge window nothing is paid");
    let effects = m.end_block(4, &p);
    // 96.6 rounded up: no work is paid a fraction short.
    let amount = ((1u128 << 30) * 90).div_ceil(1_000_000_000) as u64;
    let burned = amount / 10;
    assert_eq!(
        effects,
        vec![
            Effect::Pay { to: address(2), amount: amount - burned },
            Effect::Burn { amount: burned },
            Effect::Pay { to: address(CLIENT), amount: escrow - amount },
        ]
    );
    assert_eq!(m.held(), 300, "only the bonds remain");
    let text = log_text(&m, Subject::Job(job));
    assert!(text.contains("leased to"), "{text}");
    assert!(text.contains("settled"), "{text}");
    assert!(text.contains("refunded"), "{text}");
}

#[test]
fn expired_lease_is_reallocated_and_repeat_offenders_are_demoted() {
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), 100, 0, &p).unwrap();
    m.register(address(2), cpu(60, 64, 100), 100, 0, &p).unwrap();
    let a = submit(&mut m, matmul(1, 1, 100), 1, 1);
    m.end_block(1, &p);
    assert_eq!(leaseholder(&m, &a, 0, 0), Some(address(1)));
    // Provider 1 goes silent: at the deadline (1 + 5) the lease closes and provider 2 takes it.
    m.end_block(5, &p);
    assert_eq!(leaseholder(&m, &a, 0, 0), Some(address(1)));
    m.end_block(6, &p);
    assert_eq!(leaseholder(&m, &a, 0, 0), Some(address(2)));
    let text = log_text(&m, Subject::Job(a));
    assert!(text.contains("no result within 5 blocks") && text.contains("re-allocating"), "{text}");
    // Provider 1 fails a second task and is demoted (max_strikes = 2).
    let b = submit(&mut m, matmul(1, 1, 100), 2, 6);
    m.end_block(7, &p);
    assert_eq!(leaseholder(&m, &b, 0, 0), Some(address(1)));
    m.end_block(12, &p);
    assert_eq!(m.provider(&address(1)).unwrap().status, ProviderStatus::Demoted);
    assert!(m.provider_outlook(&address(1), &params()).contains("demoted"));
    assert!(log_text(&m, Subject::Provider(address(1))).contains("demoted after 2 expired leases in a row"));
    // Registering again brings it back.
    m.register(address(1), cpu(50, 64, 100), 0, 13, &p).unwrap();
    assert_eq!(m.provider(&address(1)).unwrap().status, ProviderStatus::Active);
}

#[test]
fn shards_and_replicas_spread_over_distinct_providers() {
    let p = params();
    let mut m = Market::default();
    for i in 0..4 {
        m.register(address(i), cpu(50, 64, 100), 100, 0, &p).unwrap();
    }
    let job = submit(&mut m, matmul(2, 2, 100), 1, 1);
    m.end_block(1, &p);
    let holders: Vec<Address> =
        (0..2).flat_map(|s| (0..2).map(move |r| (s, r))).map(|(s, r)| leaseholder(&m, &job, s, r).unwrap()).collect();
    let distinct: std::collections::BTreeSet<_> = holders.iter().collect();
    assert_eq!(distinct.len(), 4, "one slot each, four tasks: {holders:?}");
    assert_ne!(holders[0], holders[1], "two replicas of one shard never go to one provider");
}

#[test]
fn equal_providers_take_turns() {
    let p = params();
    let mut m = Market::default();
    for i in 0..3 {
        m.register(address(i), cpu(50, 64, 100), 100, 0, &p).unwrap();
    }
    let mut winners = vec![];
    for h in 1..=6u64 {
        let job = submit(&mut m, matmul(1, 1, 100), h, h);
        m.end_block(h, &p);
        let w = leaseholder(&m, &job, 0, 0).unwrap();
        m.post_result(w, job, 0, Hash::ZERO, 0, h, &p).unwrap();
        winners.push(w);
    }
    for i in 0..3 {
        assert_eq!(winners.iter().filter(|&&w| w == address(i)).count(), 2, "{winners:?}");
    }
}

#[test]
fn waiting_tasks_and_idle_providers_say_why() {
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(150, 64, 100), 100, 0, &p).unwrap();
    let job = submit(&mut m, matmul(1, 1, 100), 1, 1);
    m.end_block(1, &p);
    let w = m.job(&job).unwrap().task(0, 0).waiting.unwrap().to_string();
    assert!(w.contains("1 ask more than the maximum price (the lowest asks 150 per G MAC)"), "{w}");
    let why = m.provider_outlook(&address(1), &params());
    assert!(why.contains("offer less than your price 150"), "{why}");
    assert!(m.provider_outlook(&address(9), &params()).contains("not a provider"));
    let big = JobSpec {
        requirements: Requirements { min_memory_mib: 1 << 20, ..matmul(1, 1, 500).requirements },
        ..matmul(1, 1, 500)
    };
    let big = submit(&mut m, big, 2, 2);
    m.end_block(2, &p);
    let w = m.job(&big).unwrap().task(0, 0).waiting.unwrap().to_string();
    assert!(w.contains("1 have too little memory"), "{w}");
    // Two cheap orders in one block: the second is explained from the first's scan (the memo),
    // and still names the lowest ask above its own price.
    m.register(address(2), cpu(120, 64, 100), 100, 3, &p).unwrap();
    let (a, b) = (submit(&mut m, matmul(1, 1, 110), 3, 3), submit(&mut m, matmul(1, 1, 100), 4, 3));
    m.end_block(4, &p);
    for (job, price) in [(a, 120), (b, 120)] {
        let w = m.job(&job).unwrap().task(0, 0).waiting.unwrap().to_string();
        assert!(w.contains(&format!("(the lowest asks {price} per G MAC)")), "{w}");
    }
}

#[test]
fn cancel_refunds_unleased_work_and_only_the_client_may() {
    let mut m = Market::default();
    let job = submit(&mut m, matmul(3, 1, 100), 1, 1);
    let escrow = m.job(&job).unwrap().escrow;
    assert_eq!(m.cancel(address(5), job, 2), Err(MarketRejection::NotYourJob));
    assert_eq!(m.cancel(address(CLIENT), job, 2).unwrap(), vec![Effect::Pay { to: address(CLIENT), amount: escrow }]);
    assert_eq!(m.held(), 0);
    assert_eq!(m.cancel(address(CLIENT), job, 3), Err(MarketRejection::JobClosed));
}

#[test]
fn slashing_burns_bond_and_reallocates() {
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), 150, 0, &p).unwrap();
    m.register(address(2), cpu(60, 64, 100), 100, 0, &p).unwrap();
    let job = submit(&mut m, matmul(1, 1, 100), 1, 1);
    m.end_block(1, &p);
    m.post_result(address(1), job, 0, Hash::ZERO, 0, 2, &p).unwrap();
    let effects = m.slash((job, 0, 0), 3, &p, "product entry (3, 5) is wrong");
    assert_eq!(effects, vec![Effect::Burn { amount: 100 }]);
    assert_eq!(m.provider(&address(1)).unwrap().bond, 50);
    m.end_block(3, &p);
    assert_eq!(leaseholder(&m, &job, 0, 0), Some(address(2)));
    assert!(log_text(&m, Subject::Provider(address(1))).contains("slashed 100 and demoted"));
}

#[test]
fn leaving_provider_unbonds_after_its_last_result_settles() {
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), 100, 0, &p).unwrap();
    let job = submit(&mut m, matmul(1, 1, 100), 1, 1);
    m.end_block(1, &p);
    m.deregister(address(1), 2).unwrap();
    assert!(m.end_block(2, &p).is_empty(), "its lease is still open");
    m.post_result(address(1), job, 0, Hash::ZERO, 0, 3, &p).unwrap();
    m.end_block(3, &p);
    let effects = m.end_block(5, &p);
    assert!(effects.contains(&Effect::Unbond { to: address(1), amount: 100 }), "{effects:?}");
    assert_eq!(m.provider(&address(1)).unwrap().status, ProviderStatus::Gone);
}

#[test]
fn bad_offers_and_jobs_are_refused_with_reasons() {
    let p = params();
    let mut m = Market::default();
    assert_eq!(
        m.register(address(1), cpu(50, 64, 100), 99, 0, &p),
        Err(MarketRejection::BondTooSmall { bond: 99, min: 100 })
    );
    let mut o = cpu(50, 64, 100);
    o.slots = 0;
    assert!(matches!(m.register(address(1), o, 100, 0, &p), Err(MarketRejection::BadOffer(_))));
    let mut j = matmul(2, 1, 100);
    j.shards[1].k = 7;
    let e = m.submit(address(1), Hash::ZERO, j, 0, &p).unwrap_err().to_string();
    assert!(e.contains("must share k and n"), "{e}");
    let mut j = matmul(1, 1, 100);
    j.macs_per_shard = 5;
    assert!(m.submit(address(1), Hash::ZERO, j, 0, &p).unwrap_err().to_string().contains("more than the declared"));
    let mut j = matmul(2, 1, 100);
    j.kind = JobKind::Train;
    let e = m.submit(address(1), Hash::ZERO, j, 0, &p).unwrap_err().to_string();
    assert!(e.contains("a train job has one shard"), "{e}");
    assert_eq!(m.held(), 0);
}

/// After matching, no queued task could have been given to a free provider: the memo and the
/// early exits never skip a match.
fn assert_maximal(m: &Market, params: &MarketParams) {
    for job in m.jobs() {
        for (i, t) in job.tasks.iter().enumerate() {
            if t.state != TaskState::Queued {
                continue;
            }
            let shard = (i / job.replicas()) as u16;
            let q = &job.spec.requirements;
            for p in m.providers().filter(|p| p.has_free_slot()) {
                let hw = &p.offer.profile;
                let mem = if q.gpu { hw.gpu_memory_mib } else { hw.memory_mib };
                let fits = p.offer.price_per_gmac <= job.spec.max_price_per_gmac
                    && (!q.gpu || !hw.gpu_model.is_empty())
                    && mem >= job.shard_memory_mib(shard)
                    && hw.int8_gmacs >= q.min_int8_gmacs
                    && !t.excluded.contains(&p.owner)
                    && p.free_bond() >= params.collateral(payment(p.offer.price_per_gmac, job.shard_macs(shard)));
                assert!(!fits, "task {i} of {:?} could have gone to {}", job.id, p.owner);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn matching_is_maximal_deterministic_and_conserves_coins(seed in any::<u64>(), providers in 1u64..40, orders in 1u64..120) {
        let p = MarketParams { min_provider_stake: 100, ..MarketParams::devnet() };
        let mut a = order_book(providers, orders, seed, &p);
        let mut b = order_book(providers, orders, seed, &p);
        let deposited = a.held();
        let mut out: u128 = 0;
        let mut rng = Rng::new(seed ^ 1);
        for h in 1..30u64 {
            let effects = a.end_block(h, &p);
            prop_assert_eq!(&effects, &b.end_block(h, &p));
            out += effects.iter().map(|e| match e { Effect::Pay { amount, .. } | Effect::Burn { amount } | Effect::Unbond { amount, .. } => *amount as u128 }).sum::<u128>();
            assert_maximal(&a, &p);
            prop_assert_eq!(a.root(), b.root());
            // Some leaseholders deliver, some do not.
            let leased: Vec<_> = a.providers().flat_map(|p| p.leases.iter().map(move |k| (p.owner, *k))).collect();
            for (owner, (job, shard, _)) in leased {
                if rng.range(0, 2) > 0 {
                    a.post_result(owner, job, shard, Hash::ZERO, 0, h, &p).unwrap();
                    b.post_result(owner, job, shard, Hash::ZERO, 0, h, &p).unwrap();
                }
            }
            prop_assert_eq!(a.held() + out, deposited);
        }
    }
}

#[test]
fn load_helpers_make_valid_books() {
    let mut rng = Rng::new(1);
    let _ = (offer(&mut rng, 2), order(&mut rng, 1 << 30, 5));
    let r = saturating_load(20, 60, 10.0, 2, 7);
    assert!(r.tasks_completed > 0 && r.utilization > 0.5 && r.utilization <= 1.0, "{r:?}");
}

#[test]
fn a_lease_licenses_only_the_blocks_its_paid_work_is_worth() {
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), 100, 0, &p).unwrap();
    let spec = matmul(1, 1, 100);
    let work = spec.shards[0];
    let job = submit(&mut m, spec, 1, 1);
    m.end_block(1, &p);
    assert!(m.check_mining(&address(2), &job, &work, 1 << 20).unwrap_err().contains("not a provider"));
    // 2^30 multiply-adds at difficulty 2^29: two blocks; at a difficulty above the work: one.
    let key = m.check_mining(&address(1), &job, &work, 1 << 29).unwrap();
    m.license_block(key, 2, 1 << 29, &p);
    m.check_mining(&address(1), &job, &work, 1 << 29).unwrap();
    assert!(m.check_mining(&address(1), &job, &work, 1 << 40).unwrap_err().contains("already produced the 1 block"));
    m.license_block(key, 3, 1 << 29, &p);
    assert!(m.check_mining(&address(1), &job, &work, 1 << 29).is_err());
    let other = WorkCommitment { k: 7, ..work };
    assert!(m.check_mining(&address(1), &job, &other, 1).unwrap_err().contains("no open lease"));
}

/// Providers 1–4, each asking one more than the last.
fn four_providers() -> Market {
    let mut m = Market::default();
    for i in 1..=4 {
        m.register(address(i), cpu(50 + i, 64, 100), 100, 0, &params()).unwrap();
    }
    m
}

#[test]
fn replicas_are_paid_when_they_agree_and_outvoted_ones_are_not() {
    let (p, mut m) = (params(), four_providers());
    let job = submit(&mut m, matmul(1, 3, 100), 1, 1);
    m.end_block(1, &p);
    let holders: Vec<Address> = (0..3).map(|r| leaseholder(&m, &job, 0, r).unwrap()).collect();
    let (good, bad) = (Hash::of("right", &[]), Hash::of("wrong", &[]));
    m.post_result(holders[0], job, 0, good, 0, 2, &p).unwrap();
    m.post_result(holders[1], job, 0, bad, 0, 3, &p).unwrap();
    // Replica 0's window ends at 4, but replica 2 is still computing: nobody is paid yet.
    assert!(m.end_block(4, &p).is_empty());
    assert!(matches!(m.job(&job).unwrap().task(0, 0).state, TaskState::Posted { .. }));
    m.post_result(holders[2], job, 0, good, 0, 5, &p).unwrap();
    assert!(m.end_block(6, &p).is_empty(), "replica 2 is inside its window");
    let effects = m.end_block(7, &p);
    let paid: Vec<Address> =
        effects.iter().filter_map(|e| if let Effect::Pay { to, .. } = e { Some(*to) } else { None }).collect();
    assert_eq!(paid, vec![holders[0], holders[2]], "the two that agree are paid, the outvoted one is not");
    assert!(matches!(m.job(&job).unwrap().task(0, 1).state, TaskState::Leased { .. } | TaskState::Queued));
    let text = log_text(&m, Subject::Job(job));
    assert!(text.contains("differs from the majority"), "{text}");
    assert_eq!(m.provider(&holders[1]).unwrap().failed, 1);
    // The replica is re-run by the one provider left, agrees, and the job finishes.
    assert_eq!(leaseholder(&m, &job, 0, 1), Some(address(4)));
    m.post_result(address(4), job, 0, good, 0, 8, &p).unwrap();
    let effects = m.end_block(10, &p);
    assert!(effects.iter().any(|e| matches!(e, Effect::Pay { to, .. } if *to == address(4))));
    assert!(effects.iter().any(|e| matches!(e, Effect::Pay { to, .. } if *to == address(CLIENT))), "refund");
    assert_eq!(m.job(&job).unwrap().finished_at, Some(10));
}

#[test]
fn two_replicas_that_disagree_are_both_re_allocated() {
    let (p, mut m) = (params(), four_providers());
    let job = submit(&mut m, matmul(1, 2, 100), 1, 1);
    m.end_block(1, &p);
    let (h0, h1) = (leaseholder(&m, &job, 0, 0).unwrap(), leaseholder(&m, &job, 0, 1).unwrap());
    m.post_result(h0, job, 0, Hash::of("a", &[]), 0, 2, &p).unwrap();
    m.post_result(h1, job, 0, Hash::of("b", &[]), 0, 2, &p).unwrap();
    assert!(m.end_block(4, &p).is_empty(), "no majority: nobody is paid");
    let text = log_text(&m, Subject::Job(job));
    assert!(text.contains("disagree with no majority"), "{text}");
    let now: Vec<Address> = (0..2).map(|r| leaseholder(&m, &job, 0, r).unwrap()).collect();
    assert!(!now.contains(&h0) && !now.contains(&h1), "both moved to other providers: {now:?}");
}

// ---- Rewards only for real work (issue 9): each exploit of the old rules, played. ----

/// Leases one 2^30-MAC shard at price 50 to provider 1 and returns the job.
fn one_lease(m: &mut Market, p: &MarketParams, replicas: u8) -> Hash {
    let job = submit(m, matmul(1, replicas, 100), 1, 1);
    m.end_block(1, p);
    job
}

#[test]
fn a_job_block_burns_its_share_of_the_payment_rounded_up_even_when_the_payment_rounds_to_zero() {
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(1, 64, u64::MAX), 100, 0, &p).unwrap();
    // The old exploit: price 1, fewer than 10^9 MACs, so the payment and its burn were 0.
    let w = WorkCommitment { m: 64, k: 64, n: 64, root_a: [0; 32], root_b: [0; 32] };
    let mut spec = matmul(1, 1, 1);
    spec.shards = vec![w];
    spec.macs_per_shard = 64 * 64 * 64;
    let job = submit(&mut m, spec, 1, 1);
    m.end_block(1, &p);
    let held = m.held();
    let key = m.check_mining(&address(1), &job, &w, 1 << 40).unwrap();
    let burned = m.license_block(key, 2, 1 << 40, &p);
    assert_eq!(burned, 1, "rounded up: the smallest job block burns a whole coin");
    assert_eq!(m.held(), held - 1);
    assert_eq!(m.job(&job).unwrap().task(0, 0).prepaid_burn, 1);
    m.post_result(address(1), job, 0, Hash::of("r", &[]), 0, 3, &p).unwrap();
    let effects = m.end_block(5, &p);
    assert!(effects.contains(&Effect::Pay { to: address(1), amount: 0 }), "{effects:?}");
    assert_eq!(m.job(&job).unwrap().burned, 1, "the block's burn counts toward the payment's");
    assert_eq!(m.held(), 100, "only the bond is left");
}

#[test]
fn a_lapsed_lease_buys_no_new_block_allowance_and_repays_what_its_blocks_burned() {
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), 100, 0, &p).unwrap();
    m.register(address(2), cpu(60, 64, 100), 100, 0, &p).unwrap();
    let job = one_lease(&mut m, &p, 1);
    let work = m.job(&job).unwrap().spec.shards[0];
    let key = m.check_mining(&address(1), &job, &work, 1 << 30).unwrap();
    let burned = m.license_block(key, 2, 1 << 30, &p);
    assert_eq!(burned, (50u128 * (1 << 30) * 10).div_ceil(100 * 1_000_000_000) as u64);
    let escrow = m.job(&job).unwrap().escrow;
    // Provider 1 lets the lease lapse (5 blocks from block 1); provider 2 takes the task.
    m.end_block(6, &p);
    assert_eq!(leaseholder(&m, &job, 0, 0), Some(address(2)));
    assert_eq!(m.job(&job).unwrap().escrow, escrow + burned, "the lapsed lease repaid its burn to the escrow");
    assert_eq!(m.provider(&address(1)).unwrap().bond, 100 - burned);
    let err = m.check_mining(&address(2), &job, &work, 1 << 30).unwrap_err();
    assert!(err.contains("already produced the 1 block"), "the allowance is per task, never reset: {err}");
}

#[test]
fn cancelling_stops_re_queueing_and_refunds_the_rest() {
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), 100, 0, &p).unwrap();
    let job = one_lease(&mut m, &p, 1);
    m.cancel(address(CLIENT), job, 2).unwrap();
    // The lease lapses: the old rules queued the task again under the cancelled job for ever.
    let effects = m.end_block(6, &p);
    let task = &m.job(&job).unwrap().tasks[0];
    assert_eq!(task.state, TaskState::Cancelled);
    assert!(effects.iter().any(|e| matches!(e, Effect::Pay { to, .. } if *to == address(CLIENT))), "{effects:?}");
    assert_eq!(m.held(), 100, "nothing but the bond is held");
    assert!(log_text(&m, Subject::Job(job)).contains("not re-allocated, the job was cancelled"));
}

#[test]
fn a_replica_nobody_can_take_is_cancelled_after_the_bound_and_bonds_come_back() {
    let p = MarketParams { max_queue_blocks: 10, ..params() };
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), 100, 0, &p).unwrap();
    m.register(address(2), cpu(60, 64, 100), 100, 0, &p).unwrap();
    let job = one_lease(&mut m, &p, 3);
    let root = Hash::of("r", &[]);
    m.post_result(address(1), job, 0, root, 0, 2, &p).unwrap();
    m.post_result(address(2), job, 0, root, 0, 2, &p).unwrap();
    m.deregister(address(1), 2).unwrap();
    m.deregister(address(2), 2).unwrap();
    let mut effects = vec![];
    for h in 2..=12 {
        effects.extend(m.end_block(h, &p));
    }
    let j = m.job(&job).unwrap();
    assert_eq!(j.task(0, 2).state, TaskState::Cancelled);
    assert!(matches!(j.task(0, 0).state, TaskState::Settled { .. }), "{:?}", j.task(0, 0).state);
    assert!(log_text(&m, Subject::Job(job)).contains("no provider took it within 10 blocks"));
    assert_eq!(m.provider(&address(1)).unwrap().status, ProviderStatus::Gone);
    assert_eq!(m.held(), 0, "no escrow and no bond left locked");
    assert!(effects.iter().any(|e| matches!(e, Effect::Unbond { to, amount: 100 } if *to == address(2))));
}

#[test]
fn a_lease_whose_inputs_never_came_is_given_back_without_a_strike_and_paid_for() {
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), 100, 0, &p).unwrap();
    m.register(address(2), cpu(60, 64, 100), 100, 0, &p).unwrap();
    let job = one_lease(&mut m, &p, 1);
    let effects = m.release_lease(address(1), job, 0, 2, &p).unwrap();
    let fee = 50 * (1u64 << 30) / 1_000_000_000 * 2 / 100;
    assert_eq!(effects, vec![Effect::Pay { to: address(1), amount: fee }]);
    let p1 = m.provider(&address(1)).unwrap();
    assert_eq!((p1.strikes, p1.failed, p1.released, p1.status), (0, 0, 1, ProviderStatus::Active));
    m.end_block(2, &p);
    assert_eq!(leaseholder(&m, &job, 0, 0), Some(address(2)), "re-allocated to someone else");
    // A lease with a block mined on it had its inputs: it cannot be given back for free.
    let work = m.job(&job).unwrap().spec.shards[0];
    let key = m.check_mining(&address(2), &job, &work, 1 << 30).unwrap();
    m.license_block(key, 3, 1 << 30, &p);
    assert_eq!(m.release_lease(address(2), job, 0, 3, &p), Err(MarketRejection::MinedOnLease));
    assert_eq!(m.release_lease(address(1), job, 0, 3, &p), Err(MarketRejection::NotLeased { shard: 0 }));
}

#[test]
fn leases_shorter_than_the_time_to_give_them_back_are_refused() {
    let mut m = Market::default();
    let mut spec = matmul(1, 1, 100);
    spec.requirements.lease_blocks = 1;
    let err = m.submit(address(CLIENT), Hash::ZERO, spec, 1, &params()).unwrap_err();
    assert!(err.to_string().contains("lease_blocks must be in 3..="), "{err}");
}

#[test]
fn a_lease_needs_collateral_from_the_deterrence_inequality_and_a_slash_takes_it() {
    // p = 5%, q = 1, r = 10%: S = ⌈G / 0.045⌉ − R for G = R = the lease's value.
    let p = MarketParams { audit_permille: 50, collusion_percent: 10, ..params() };
    let value = (50 * (1u64 << 30)).div_ceil(1_000_000_000); // 54 at price 50
    let collateral = p.collateral(value);
    assert_eq!(collateral, (value * 100_000).div_ceil(50 * 90) - value);
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), collateral - 1, 0, &p).unwrap();
    let job = submit(&mut m, matmul(1, 1, 100), 1, 1);
    m.end_block(1, &p);
    assert_eq!(leaseholder(&m, &job, 0, 0), None);
    let why = m.job(&job).unwrap().tasks[0].waiting.unwrap().to_string();
    assert!(why.contains("too little free bond"), "{why}");
    assert!(m.provider_outlook(&address(1), &p).contains("need more free bond"));
    m.register(address(1), cpu(50, 64, 100), 1, 2, &p).unwrap();
    m.end_block(2, &p);
    assert_eq!(leaseholder(&m, &job, 0, 0), Some(address(1)));
    assert_eq!(m.provider(&address(1)).unwrap().locked, collateral);
    m.post_result(address(1), job, 0, Hash::ZERO, 0, 3, &p).unwrap();
    let effects = m.slash((job, 0, 0), 4, &p, "wrong");
    assert_eq!(effects, vec![Effect::Burn { amount: collateral }]);
    assert_eq!(m.provider(&address(1)).unwrap().locked, 0);
}

#[test]
fn a_finished_job_leaves_the_state_with_its_log_after_the_archive_window() {
    let p = MarketParams { archive_after_blocks: 5, ..params() };
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), 150, 0, &p).unwrap();
    let job = submit(&mut m, matmul(1, 1, 100), 1, 1);
    m.end_block(1, &p);
    let other = submit(&mut m, matmul(2, 1, 100), 2, 2); // waits: the one slot is taken
    m.post_result(address(1), job, 0, Hash::ZERO, 0, 2, &p).unwrap();
    let mut h = 2;
    while m.job(&job).unwrap().finished_at.is_none() {
        h += 1;
        m.end_block(h, &p);
    }
    let finished = m.job(&job).unwrap().finished_at.unwrap();
    let held = m.held();
    for h in h + 1..finished + 5 {
        m.end_block(h, &p);
        assert!(m.job(&job).is_some(), "kept for the window (height {h})");
    }
    m.end_block(finished + 5, &p);
    assert!(m.job(&job).is_none(), "archived");
    assert!(m.decisions(&Subject::Job(job)).is_empty(), "its log goes with it");
    assert!(m.job(&other).is_some(), "an unfinished job stays");
    assert_eq!(m.held(), held, "archiving moves no coin");
    assert_eq!(m.size().archived_jobs, 1);
}

/// A validator that judged a provider absent and then left for good held it absent for ever
/// (judgments never expired). Now a judgment counts for `judgment_ttl_blocks`: after that the
/// provider is unjudged again (verified 0, no longer absent), and the log says why.
#[test]
fn a_judgment_expires_so_a_validator_gone_for_good_holds_nobody_absent() {
    let p = MarketParams { judgment_ttl_blocks: 32, ..params() };
    let mut m = Market::default();
    let (provider, validator) = (address(1), address(9));
    m.register(provider, cpu(50, 64, 100), 100, 0, &p).unwrap();
    m.judge(validator, 10, provider, 0, "missed a probe", 1).unwrap();
    assert!(m.provider(&provider).unwrap().absent());
    for h in 2..32 {
        m.end_block(h, &p);
    }
    assert!(m.provider(&provider).unwrap().absent(), "still within its lifetime");
    for h in 32..=48 {
        m.end_block(h, &p);
    }
    let pr = m.provider(&provider).unwrap();
    assert!(!pr.absent() && pr.judged.is_empty() && pr.verified_gmacs() == 0, "{pr:?}");
    let log = m.decisions(&Subject::Provider(provider));
    assert!(log.iter().any(|d| d.text.contains("expired after 32 blocks")), "{log:?}");
}

/// An offer claiming 64 GiB of memory used to win every job needing memory (issue 11). Now
/// matching counts the claim only up to `memory_floor_mib` until validators' memory challenges
/// show it; a judgment of 0 (not shown) leaves the floor; and the provider's log says why.
#[test]
fn matching_uses_the_memory_validators_saw_beyond_the_unchecked_floor() {
    let p = MarketParams { memory_floor_mib: 1024, ..params() };
    let mut m = Market::default();
    let (big, validator) = (address(1), address(9));
    m.register(big, cpu(10, 64, 100), 100, 0, &p).unwrap();
    let mut spec = matmul(1, 1, 100);
    spec.requirements.min_memory_mib = 8 << 10;
    let job = m.submit(address(CLIENT), Hash::of("tx", &[b"mem"]), spec, 0, &p).unwrap();
    m.end_block(1, &p);
    assert_eq!(leaseholder(&m, &job, 0, 0), None, "a claim alone is worth the floor");
    assert_eq!(m.provider(&big).unwrap().verified_memory_mib(p.memory_floor_mib), 1024);
    let why = m.job(&job).unwrap().task(0, 0).waiting.unwrap().to_string();
    assert!(why.contains("have too little memory"), "{why}");
    // Not shown: still the floor, and said.
    m.judge_memory(validator, 10, big, 0, "memory answer after 2417 ms; the deadline was 400 ms", 2).unwrap();
    m.end_block(2, &p);
    assert_eq!(leaseholder(&m, &job, 0, 0), None);
    assert!(log_text(&m, Subject::Provider(big)).contains("memory claim not shown"));
    // Shown: the claim counts, and the job is leased.
    m.judge_memory(validator, 10, big, 64 << 10, "holds its 65536 MiB", 3).unwrap();
    m.end_block(3, &p);
    assert_eq!(leaseholder(&m, &job, 0, 0), Some(big));
    assert!(log_text(&m, Subject::Provider(big)).contains("memory shown 0 → 65536 MiB"));
    // Never more than the claim, whatever a validator says; a provider cannot judge itself.
    m.judge_memory(validator, 10, big, u64::MAX, "generous", 4).unwrap();
    assert_eq!(m.provider(&big).unwrap().verified_memory_mib(p.memory_floor_mib), 64 << 10);
    assert!(m.judge_memory(big, 10, big, 1, "me", 4).is_err());
}

#[test]
fn work_worth_under_one_unit_is_paid_one_unit_not_zero() {
    // 2^20 multiply-adds at 100 per G MAC is worth 0.1: the escrow and the payment round up.
    let p = params();
    let mut m = Market::default();
    m.register(address(1), cpu(100, 64, 100), 100, 0, &p).unwrap();
    let mut spec = matmul(1, 1, 100);
    spec.macs_per_shard = 1 << 20;
    spec.shards[0].m = 1;
    assert_eq!(spec.max_cost(), Some(1));
    let job = submit(&mut m, spec, 1, 1);
    m.end_block(1, &p);
    m.post_result(address(1), job, 0, Hash::of("r", &[]), 0, 2, &p).unwrap();
    let effects = m.end_block(4, &p);
    assert!(effects.contains(&Effect::Pay { to: address(1), amount: 1 }), "{effects:?}");
}

/// The CPU time a provider reports with its result is kept on the task (summed over re-done
/// leases), in the network's totals (which outlive the job), in the state root and across a
/// snapshot; a report of 0 adds a result to nothing.
#[test]
fn reported_cpu_time_is_kept_per_task_and_in_the_totals_and_outlives_the_job() {
    let p = MarketParams { archive_after_blocks: 3, ..params() };
    let mut m = Market::default();
    m.register(address(1), cpu(50, 64, 100), 150, 0, &p).unwrap();
    let job = submit(&mut m, matmul(2, 1, 100), 1, 1);
    m.end_block(1, &p);
    let before = m.root();
    m.post_result(address(1), job, 0, Hash::ZERO, 1_500, 2, &p).unwrap();
    assert_ne!(m.root(), before, "the report is part of the state");
    assert_eq!(m.job(&job).unwrap().task(0, 0).cpu_ms, 1_500);
    let macs = m.job(&job).unwrap().spec.macs_per_shard;
    assert_eq!(m.energy(), ergon_market::EnergyTotals { results: 1, cpu_ms: 1_500, macs });
    m.end_block(2, &p);
    m.post_result(address(1), job, 1, Hash::ZERO, 0, 3, &p).unwrap();
    assert_eq!(m.energy().results, 1, "a report of 0 says nothing and is not averaged in");

    let mut w = ergon_types::codec::Writer::new();
    m.write_snapshot(&mut w);
    let bytes = w.finish();
    let back = Market::read_snapshot(&mut ergon_types::codec::Reader::new(&bytes, "market")).unwrap();
    assert_eq!(back.root(), m.root());
    assert_eq!(back.energy(), m.energy());
    assert_eq!(back.job(&job).unwrap().task(0, 0).cpu_ms, 1_500);

    let mut h = 3;
    while m.job(&job).is_some() {
        h += 1;
        m.end_block(h, &p);
        assert!(h < 100, "the job finishes and is archived");
    }
    assert_eq!(m.energy().cpu_ms, 1_500, "the totals outlive the archived job");
}
