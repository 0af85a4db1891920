//! The locked-coins soak behind `ergon sim economics`: clients, providers and a filler miner
//! doing everything the market allows at random over many blocks (submits of 1–3 shards ×
//! 1–3 replicas, cancels, results right and wrong, expired and given-back leases, challenges
//! answered and not, disputes, job blocks mined on leases, providers leaving, coming back and
//! being demoted, replicas no provider can fill), then a drain: every client cancels, every
//! provider leaves, and the chain runs on until nothing can happen any more. The market must
//! then hold no coin at all (no escrow, no bond), and supply must have been conserved after
//! every block.
//!
//! Every transaction goes through the real ledger and market, as in [`crate::economics`].

use ergon_market::{JobStatus, ProviderStatus, TaskState};
use ergon_types::{Address, Hash, TxKind};
use serde::Serialize;

use crate::economics::{job, offer, operands, World, BOND};

const FILLER: usize = 0;
const PROVIDERS: std::ops::Range<usize> = 1..5;
const CLIENTS: std::ops::Range<usize> = 5..8;
/// Longest the drain may take: the queue limit, the longest lease, the challenge and reveal
/// windows, with room to spare.
const MAX_DRAIN_BLOCKS: u64 = 1000;

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Size {
    pub height: u64,
    pub jobs: usize,
    pub tasks: usize,
    pub log_subjects: usize,
    pub log_entries: usize,
    pub archived_jobs: u64,
}

fn size(w: &World) -> Size {
    let s = w.ledger.market.size();
    Size {
        height: w.height,
        jobs: s.jobs,
        tasks: s.tasks,
        log_subjects: s.log_subjects,
        log_entries: s.log_entries,
        archived_jobs: s.archived_jobs,
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ChurnReport {
    pub seed: u64,
    /// Ledger snapshots (a checkpoint's contents) taken along the way, and how many did not
    /// read back equal to the ledger.
    pub snapshots_checked: u64,
    pub snapshot_mismatches: u64,
    pub blocks: u64,
    pub jobs: u64,
    pub cancels: u64,
    pub departures: u64,
    pub returns: u64,
    /// Leases that lapsed and results outvoted or slashed, over every provider.
    pub provider_failures: u64,
    pub given_back_leases: u64,
    pub wrong_results: u64,
    pub disputes: u64,
    pub challenges: u64,
    pub job_blocks: u64,
    /// Tasks that ended cancelled (the client's cancel, or a replica no one could fill).
    pub tasks_cancelled: u64,
    /// Of those, replicas no provider took within the queue limit (a shortfall).
    pub replica_shortfalls: u64,
    /// What the market held a tenth of the way in and at the end of the random phase: the
    /// state must stay the size of the live market (finished jobs are archived).
    pub market_early: Size,
    pub market_late: Size,
    pub tasks_settled: u64,
    /// Blocks the drain took until the market held nothing (or `MAX_DRAIN_BLOCKS`).
    pub drain_blocks: u64,
    /// Coins the market still holds after the drain (escrow + bonds): must be 0.
    pub coins_locked_after_drain: u128,
    /// Jobs not finished after the drain, each with a reason it could not end: must be 0.
    pub jobs_unfinished_after_drain: u64,
    pub supply_violations: u64,
}

/// What a provider does with one lease, fixed per lease so it acts consistently.
#[derive(Clone, Copy, PartialEq)]
enum Conduct {
    Right,
    Wrong,
    Vanish,
    GiveBack,
}

fn conduct(key: &(Hash, u16, u8), provider: &Address) -> Conduct {
    let h = Hash::of("churn conduct", &[&key.0 .0, &key.1.to_le_bytes(), &[key.2], &provider.0]);
    match h.0[0] % 10 {
        0 => Conduct::Wrong,
        1 => Conduct::Vanish,
        2 => Conduct::GiveBack,
        _ => Conduct::Right,
    }
}

/// (provider, task, leased at, deadline).
type Lease = (Address, (Hash, u16, u8), u64, u64);
/// (provider, task, result, challenged rows?).
type Post = (Address, (Hash, u16, u8), Hash, bool);

pub fn run_churn(seed: u64, blocks: u64) -> ChurnReport {
    let ops = operands();
    let mut w = World::new(seed, CLIENTS.end as u8, "churn");
    let mut r = ChurnReport { seed, blocks, ..Default::default() };
    let price = 11_000_000;
    let setup: Vec<_> = PROVIDERS
        .map(|i| w.tx(i, TxKind::RegisterProvider { offer: offer(price + i as u64, 1000), stake: BOND }))
        .collect();
    w.block(FILLER, setup, None);
    let mut challenged = std::collections::HashSet::new();
    let mut drain_from = None;
    for step in 0..blocks + MAX_DRAIN_BLOCKS {
        let draining = step >= blocks;
        if step == blocks / 10 {
            r.market_early = size(&w);
        }
        if step == blocks {
            r.market_late = size(&w);
        }
        if draining && drain_from.is_none() {
            drain_from = Some(w.height);
        }
        if draining && w.ledger.market.held() == 0 {
            break;
        }
        if step % 25 == 0 {
            // A node's checkpoint must read back as exactly the ledger it was taken of.
            let mut bytes = ergon_types::codec::Writer::new();
            w.ledger.write_snapshot(&mut bytes);
            let bytes = bytes.finish();
            let mut reader = ergon_types::codec::Reader::new(&bytes, "ledger snapshot");
            let back = ergon_chain::Ledger::read_snapshot(&mut reader).ok().filter(|_| reader.finish().is_ok());
            r.snapshots_checked += 1;
            r.snapshot_mismatches += u64::from(back.as_ref() != Some(&w.ledger));
        }
        let h = w.height + 1;
        let mut txs = vec![];
        let client_of = |w: &World, a: &Address| CLIENTS.clone().find(|&i| w.address(i) == *a);
        let agent_of = |w: &World, a: &Address| PROVIDERS.clone().find(|&i| w.address(i) == *a);
        // Clients submit and cancel; in the drain, every one cancels everything still open.
        for c in CLIENTS {
            if !draining && w.rng.below(100) < 10 {
                let mut spec = job(ops.work, 1 + w.rng.below(3) as u8, price * 2, 0);
                spec.shards = vec![ops.work; 1 + w.rng.below(3) as usize];
                spec.requirements.lease_blocks = 3 + w.rng.below(6) as u32;
                txs.push(w.tx(c, TxKind::SubmitJob { spec }));
                r.jobs += 1;
            }
            let me = w.address(c);
            let open: Vec<Hash> =
                w.live_jobs().filter(|j| j.client == me && j.status == JobStatus::Open).map(|j| j.id).collect();
            for id in open {
                if draining || w.rng.below(1000) < 5 {
                    txs.push(w.tx(c, TxKind::CancelJob { job: id }));
                    r.cancels += 1;
                }
            }
        }
        // Providers come and go; a demoted one comes back now and then.
        for p in PROVIDERS {
            let status = w.ledger.market.provider(&w.address(p)).map(|p| p.status);
            let offer = offer(price + p as u64, 1000);
            match status {
                Some(ProviderStatus::Active) if draining || w.rng.below(1000) < 5 => {
                    txs.push(w.tx(p, TxKind::Deregister));
                    r.departures += 1;
                }
                Some(ProviderStatus::Gone) | Some(ProviderStatus::Demoted) if !draining && w.rng.below(100) < 5 => {
                    txs.push(w.tx(p, TxKind::RegisterProvider { offer, stake: BOND }));
                    r.returns += 1;
                }
                Some(ProviderStatus::Demoted) if draining => {
                    txs.push(w.tx(p, TxKind::Deregister));
                    r.departures += 1;
                }
                _ => {}
            }
        }
        // Leaseholders act on their leases as their conduct says.
        let (leases, posts): (Vec<Lease>, Vec<Post>) = {
            let (mut leases, mut posts) = (vec![], vec![]);
            for j in w.live_jobs() {
                for (key, t) in j.keyed_tasks() {
                    match t.state {
                        TaskState::Leased { provider, since, deadline, .. } => {
                            leases.push((provider, key, since, deadline))
                        }
                        TaskState::Posted { provider, result, .. } => {
                            posts.push((provider, key, result, t.challenge.is_some()))
                        }
                        _ => {}
                    }
                }
            }
            (leases, posts)
        };
        let mut minable = vec![];
        for (provider, key, since, deadline) in leases {
            let Some(p) = agent_of(&w, &provider) else { continue };
            match conduct(&key, &provider) {
                Conduct::Vanish => {}
                Conduct::GiveBack if h + 2 >= deadline => {
                    txs.push(w.tx(p, TxKind::ReleaseLease { job: key.0, shard: key.1 }));
                    r.given_back_leases += 1;
                }
                Conduct::GiveBack => {}
                c if h >= since + 1 + key.2 as u64 => {
                    let result = if c == Conduct::Wrong { ops.wrong } else { ops.right };
                    r.wrong_results += (c == Conduct::Wrong) as u64;
                    txs.push(w.tx(p, TxKind::PostResult { job: key.0, shard: key.1, result, cpu_ms: 0 }));
                }
                _ => minable.push((p, key)),
            }
        }
        // Clients dispute wrong products and now and then challenge a right one; providers
        // answer most challenges.
        for (provider, key, result, open_challenge) in posts {
            let Some(client) = w.ledger.market.job(&key.0).and_then(|j| client_of(&w, &j.client)) else { continue };
            if result == ops.wrong && w.rng.below(100) < 60 && challenged.insert((key, 'd')) {
                let evidence = ops.evidence.clone();
                txs.push(w.tx(client, TxKind::Dispute { job: key.0, shard: key.1, replica: key.2, evidence }));
                r.disputes += 1;
            } else if w.rng.below(100) < 5 && challenged.insert((key, 'c')) {
                let c = TxKind::ChallengeResult { job: key.0, shard: key.1, replica: key.2, rows: vec![0] };
                txs.push(w.tx(client, c));
                r.challenges += 1;
            }
            if open_challenge && result == ops.right && challenged.insert((key, 'r')) && w.rng.below(100) < 80 {
                let Some(p) = agent_of(&w, &provider) else { continue };
                let rows = vec![ops.row0.clone()];
                txs.push(w.tx(p, TxKind::RevealRows { job: key.0, shard: key.1, replica: key.2, rows }));
            }
        }
        // A third of the blocks are mined on a lease still being computed, the rest on filler.
        let job_block = (!minable.is_empty() && w.rng.below(3) == 0)
            .then(|| minable[w.rng.below(minable.len() as u64) as usize])
            .filter(|(p, key)| {
                w.ledger.market.check_mining(&w.address(*p), &key.0, &ops.work, w.params.initial_difficulty).is_ok()
            });
        match job_block {
            Some((p, key)) => {
                w.block(p, txs, Some((key.0, ops.work)));
                r.job_blocks += 1;
            }
            None => {
                w.block(FILLER, txs, None);
            }
        }
    }
    let market = &w.ledger.market;
    r.drain_blocks = w.height - drain_from.unwrap_or(w.height);
    r.coins_locked_after_drain = market.held();
    r.jobs_unfinished_after_drain = market.jobs().filter(|j| j.finished_at.is_none()).count() as u64;
    r.provider_failures = market.providers().map(|p| p.failed).sum::<u64>();
    (r.tasks_settled, r.tasks_cancelled, r.replica_shortfalls) =
        (w.ended.settled, w.ended.cancelled, w.ended.shortfalls);
    r.supply_violations = w.supply_violations;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_random_churn_and_a_drain_the_market_holds_nothing() {
        let r = run_churn(3, 600);
        assert_eq!(r.supply_violations, 0, "{r:?}");
        assert_eq!(r.coins_locked_after_drain, 0, "{r:?}");
        assert_eq!(r.jobs_unfinished_after_drain, 0, "{r:?}");
        assert!(r.snapshots_checked >= 24 && r.snapshot_mismatches == 0, "{r:?}");
        // The run exercised what it claims to.
        assert!(r.cancels > 0 && r.departures > 0 && r.returns > 0, "{r:?}");
        assert!(r.given_back_leases > 0 && r.wrong_results > 0 && r.disputes > 0 && r.challenges > 0, "{r:?}");
        assert!(r.job_blocks > 0 && r.tasks_settled > 0 && r.replica_shortfalls > 0, "{r:?}");
    }

    #[test]
    fn finished_jobs_are_archived_so_the_market_stays_the_size_of_its_live_part() {
        // A tenth of the way in is past the 1,000-block archive window: from there on the held
        // state must stay flat while jobs keep finishing.
        let r = run_churn(5, 12_000);
        assert!(r.market_late.archived_jobs > r.market_early.archived_jobs, "{r:?}");
        let (early, late) = (r.market_early, r.market_late);
        assert!(
            late.jobs * 10 <= early.jobs * 13 && late.log_entries * 10 <= early.log_entries * 13,
            "{early:?} -> {late:?}"
        );
        assert_eq!(r.coins_locked_after_drain, 0);
        assert_eq!(r.supply_violations, 0);
    }
}
