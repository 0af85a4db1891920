//! `ergon sim economics`: the reward rules against each way of cheating them, played through
//! the real ledger and market (`ergon_chain::Ledger`, every transaction signed and applied, the
//! market's end of every block) over many blocks. Mining is not run: who wins each block is
//! drawn from the miners' shares of the work, and what mining costs is counted in coins.
//!
//! Cost unit: the honest filler miner's cost per multiply-add, set so honest filler mining
//! breaks even (c = filler subsidy / difficulty). A strategy's figure is its revenue per unit
//! of cost (coins received ÷ (compute at c + coins it burned, paid to others or lost in
//! slashes)); `ratio` divides it by the honest filler miner's, measured in the same run.

use ergon_chain::{ChainParams, Ledger};
use ergon_kernels::matmul;
use ergon_kernels::rng::{random_matrix, SplitMix64};
use ergon_market::{Job, TaskState};
use ergon_pouw::{result_root, RevealedRow, WorkCommitment, WrongEntry};
use ergon_types::{Address, HardwareProfile, Hash, JobKind, JobSpec, Offer, Requirements, SecretKey};
use ergon_types::{SignedTransaction, Transaction, TxKind};
use serde::Serialize;

/// The deviations of issue 9, and the two honest roles they are measured against.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Strategy {
    HonestFiller,
    HonestProvider,
    /// Buys jobs from itself to mine on; `f` is what mining on its own matrices costs relative
    /// to honest work (0: free, e.g. a shortcut on zero matrices).
    SelfDealer {
        f_percent: u64,
    },
    /// Three identities at the lowest price take every replica of a replicated job and post
    /// the same garbage root without computing.
    SybilRing,
    /// Takes jobs, posts a root, never serves the result.
    Withholder,
    /// A client whose inputs never arrive, to waste providers' leases.
    NoShowGriefer,
    /// Undercuts the honest provider and, on `wrong_permille` of its shards, posts a wrong
    /// product instead of computing it (saving that compute); the client checks each product
    /// (Freivalds) and disputes a wrong one with a provably wrong entry.
    LazyProvider {
        wrong_permille: u64,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct StrategyReport {
    pub strategy: String,
    pub revenue: u128,
    pub cost: u128,
    pub revenue_per_cost: f64,
    /// revenue_per_cost ÷ the honest filler miner's in the same run.
    pub ratio_vs_honest_mining: f64,
    /// Results the deviator posted that were never available or wrong, and how many were paid.
    pub bad_results: u64,
    pub bad_results_paid: u64,
    /// Strikes and demotions honest providers took (the griefer's aim).
    pub honest_strikes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct EconomicsReport {
    pub seed: u64,
    pub blocks: u64,
    pub strategies: Vec<StrategyReport>,
    /// Share of mined work (by difficulty) on paid jobs.
    pub useful_work_share: f64,
    /// Blocks after which minted − burned ≠ circulating: must be 0.
    pub supply_violations: u64,
    /// Coins still in escrow or bonds of jobs and providers that can no longer settle at the end.
    pub coins_locked_at_end: u128,
    /// The random-churn soak over as many blocks, and its drain.
    pub churn: crate::churn::ChurnReport,
}

pub(crate) const DIFFICULTY: u64 = 1 << 30;
pub(crate) const BOND: u64 = 1 << 40;

pub(crate) struct Agent {
    key: SecretKey,
    /// Transactions built for the block being assembled (nonces follow the ledger's).
    pending: u64,
    /// Fees paid: part of its cost.
    fees: u128,
}

/// The ledger every simulated block goes through, and the agents that sign its transactions.
pub(crate) struct World {
    pub(crate) ledger: Ledger,
    pub(crate) params: ChainParams,
    chain: Hash,
    agents: Vec<Agent>,
    pub(crate) rng: SplitMix64,
    pub(crate) height: u64,
    useful: u64,
    mined: u64,
    pub(crate) supply_violations: u64,
    /// Jobs not yet finished, so a block's work does not grow with every job ever submitted.
    live: Vec<Hash>,
    /// How the tasks of finished jobs ended, tallied as each job finishes (the market archives
    /// finished jobs later, with their logs).
    pub(crate) ended: Ended,
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ended {
    pub(crate) settled: u64,
    pub(crate) cancelled: u64,
    /// Replicas cancelled because no provider took them within the queue limit.
    pub(crate) shortfalls: u64,
}

impl World {
    /// `agents` funded accounts on a devnet ledger at difficulty D, all drawn from `seed`.
    pub(crate) fn new(seed: u64, agents: u8, label: &str) -> Self {
        let mut params = ChainParams::devnet();
        params.initial_difficulty = DIFFICULTY;
        let agents: Vec<Agent> = (0..agents)
            .map(|i| {
                let mut b = [i + 1; 32];
                b[..8].copy_from_slice(&seed.to_le_bytes());
                Agent { key: SecretKey::from_bytes(&b), pending: 0, fees: 0 }
            })
            .collect();
        let balances: Vec<(Address, u64)> = agents.iter().map(|a| (a.key.public().address(), 1 << 50)).collect();
        World {
            ledger: Ledger::genesis(&balances),
            params,
            chain: Hash::of(label, &[&seed.to_le_bytes()]),
            agents,
            rng: SplitMix64::new(seed),
            height: 0,
            useful: 0,
            mined: 0,
            supply_violations: 0,
            live: vec![],
            ended: Ended::default(),
        }
    }

    /// The tasks of unfinished jobs whose result `provider` posted: (task, the job's client, the
    /// posted result).
    pub(crate) fn posted_by(&self, provider: Address) -> Vec<((Hash, u16, u8), Address, Hash)> {
        self.live_jobs()
            .flat_map(|j| {
                j.keyed_tasks().filter_map(move |(key, t)| match t.state {
                    TaskState::Posted { provider: p, result, .. } if p == provider => Some((key, j.client, result)),
                    _ => None,
                })
            })
            .collect()
    }

    /// The jobs that have not finished.
    pub(crate) fn live_jobs(&self) -> impl Iterator<Item = &Job> {
        self.live.iter().filter_map(|id| self.ledger.market.job(id))
    }

    pub(crate) fn address(&self, i: usize) -> Address {
        self.agents[i].key.public().address()
    }
    pub(crate) fn tx(&mut self, i: usize, kind: TxKind) -> SignedTransaction {
        let nonce = self.ledger.account(&self.address(i)).nonce;
        let a = &mut self.agents[i];
        a.pending += 1;
        a.fees += 1;
        Transaction { chain: self.chain, from: a.key.public(), nonce: nonce + a.pending - 1, fee: 1, kind }.sign(&a.key)
    }
    /// One block: `txs` applied (refusals dropped), the job block licence of `job_miner`'s
    /// lease if any, the market's end of block, the reward. Returns the miner's subsidy.
    pub(crate) fn block(
        &mut self,
        miner: usize,
        txs: Vec<SignedTransaction>,
        job_lease: Option<(Hash, WorkCommitment)>,
    ) -> u64 {
        self.height += 1;
        let h = self.height;
        self.agents.iter_mut().for_each(|a| a.pending = 0);
        let me = self.address(miner);
        let key = job_lease.and_then(|(job, w)| self.ledger.market.check_mining(&me, &job, &w, DIFFICULTY).ok());
        // Never undone: no market snapshot (it would make each block cost as much as the market).
        let mut undo = self.ledger.begin_scratch_block(h);
        let subsidy = self.ledger.block_subsidy(key, h, DIFFICULTY, &self.params);
        let mut fees = 0;
        for t in &txs {
            if let Ok(fee) = self.ledger.apply_tx(&mut undo, t, &self.chain, h, &self.params) {
                fees += fee;
            }
        }
        // No blocks to take an id from: the seed is the height's.
        let seed = Hash::of("ergon sim block", &[&h.to_le_bytes()]);
        self.ledger.end_block(&mut undo, &seed, h, &self.params);
        self.live.extend(
            txs.iter()
                .filter(|t| matches!(t.tx.kind, TxKind::SubmitJob { .. }))
                .map(|t| ergon_types::job::job_id(&t.id())),
        );
        let market = &self.ledger.market;
        let ended = &mut self.ended;
        self.live.retain(|id| {
            let Some(j) = market.job(id) else { return false };
            if j.finished_at.is_none() {
                return true;
            }
            for t in &j.tasks {
                match t.state {
                    TaskState::Settled { .. } => ended.settled += 1,
                    TaskState::Cancelled => ended.cancelled += 1,
                    _ => {}
                }
            }
            let decisions = market.decisions(&ergon_market::Subject::Job(*id));
            ended.shortfalls +=
                decisions.iter().filter(|d| d.text.contains("no provider took it within")).count() as u64;
            false
        });
        self.ledger.reward(&mut undo, me, fees, subsidy, &self.params);
        self.mined += 1;
        if key.is_some() {
            self.useful += 1;
        }
        if self.ledger.circulating() != (self.ledger.minted - self.ledger.burned) as u128 {
            self.supply_violations += 1;
        }
        subsidy
    }
}

pub(crate) fn offer(price: u64, gmacs: u64) -> Offer {
    Offer {
        profile: HardwareProfile {
            cpu_cores: 8,
            memory_mib: 1 << 16,
            gpu_model: String::new(),
            gpu_memory_mib: 0,
            int8_gmacs: gmacs,
        },
        price_per_gmac: price,
        slots: 4,
        encryption_key: [7; 32],
    }
}

/// Real operands every job commits to (1024³: D multiply-adds, so a job block's licence is
/// what a real shard's would be), their product's root, and the root of the product with one
/// wrong entry with the proof of that entry, so a dispute in the simulation is the real check.
/// Made once per process.
pub(crate) struct Operands {
    pub(crate) work: WorkCommitment,
    pub(crate) right: Hash,
    pub(crate) wrong: Hash,
    pub(crate) evidence: WrongEntry,
    /// Row 0 of the right product with its opening: what an availability challenge asks.
    pub(crate) row0: RevealedRow,
}

pub(crate) fn operands() -> &'static Operands {
    static OPERANDS: std::sync::OnceLock<Operands> = std::sync::OnceLock::new();
    OPERANDS.get_or_init(make_operands)
}

fn make_operands() -> Operands {
    let a = random_matrix(1024, 1024, 126, 1).expect("valid shape");
    let b = random_matrix(1024, 1024, 126, 2).expect("valid shape");
    let c = matmul(&a, &b).expect("shapes agree");
    let mut bad = c.clone();
    bad.as_mut_slice()[5 * 1024 + 7] += 1;
    Operands {
        work: WorkCommitment::compute(&a, &b).expect("valid operands"),
        right: Hash(result_root(&c)),
        wrong: Hash(result_root(&bad)),
        evidence: WrongEntry::build(&a, &b, &bad, 5, 7).expect("entry in range"),
        row0: RevealedRow::build(&c, 0).expect("row in range"),
    }
}

pub(crate) fn job(w: WorkCommitment, replicas: u8, max_price: u64, min_gmacs: u64) -> JobSpec {
    JobSpec {
        kind: JobKind::Matmul,
        inputs: vec![],
        shards: vec![w],
        macs_per_shard: DIFFICULTY,
        requirements: Requirements {
            min_memory_mib: 0,
            min_int8_gmacs: min_gmacs,
            gpu: false,
            replicas,
            lease_blocks: 6,
        },
        max_price_per_gmac: max_price,
        client_key: [2; 32],
    }
}

/// (leaseholder, task, leased at, deadline, client).
type LeaseView = (Address, (Hash, u16, u8), u64, u64, Address);

/// Role indices in a run's agents.
const FILLER: usize = 0;
const PROVIDER: usize = 1;
const CLIENT: usize = 2;
const DEVIATOR: usize = 3; // and 4, 5 for the Sybil ring

/// Plays `blocks` blocks of honest filler mining, an honest provider serving an honest client,
/// and the deviator `s`. Returns the deviator's report and the world as it ended.
fn play(seed: u64, blocks: u64, s: Strategy) -> (StrategyReport, World) {
    let mut w = World::new(seed, 6, "economics");
    // The accounting below reads every job at the end: keep them all (the churn soak archives).
    w.params.archive_after_blocks = u64::MAX;
    let filler = ergon_chain::filler_subsidy(&w.params) as u128;
    // c: the honest filler miner's cost per multiply-add, in coins ×1 (break-even at D MACs).
    let cost_of = |macs: u128| macs * filler / DIFFICULTY as u128;
    // The honest price: what the work would earn mining filler, plus 10%.
    let honest_price = (filler * 1_000_000_000 / DIFFICULTY as u128 * 11 / 10) as u64;
    let mut setup = vec![w.tx(PROVIDER, TxKind::RegisterProvider { offer: offer(honest_price, 1000), stake: BOND })];
    let deviant_ids: &[usize] = match s {
        Strategy::SybilRing => &[3, 4, 5],
        Strategy::HonestFiller | Strategy::HonestProvider | Strategy::NoShowGriefer => &[],
        _ => &[3],
    };
    let deviant_price = match s {
        Strategy::SelfDealer { .. } => 1,
        _ => honest_price - 1,
    };
    // The lazy provider claims the honest hardware; the others claim all there is.
    let deviant_gmacs = if matches!(s, Strategy::LazyProvider { .. }) { 1000 } else { u64::MAX };
    for &i in deviant_ids {
        setup.push(w.tx(i, TxKind::RegisterProvider { offer: offer(deviant_price, deviant_gmacs), stake: BOND }));
    }
    let ops = operands();
    w.block(FILLER, setup, None);

    let (mut dev_rev, mut dev_cost) = (0u128, 0u128);
    let (mut fill_rev, mut fill_cost) = (0u128, 0u128);
    let (mut prov_rev, mut prov_cost) = (0u128, 0u128);
    let mut bad = 0u64;
    let mut challenged = std::collections::HashSet::new();
    for _ in 0..blocks {
        let h = w.height + 1;
        let mut txs = vec![];
        // The honest client keeps one job in flight (three replicas against the ring).
        let open = w.live_jobs().filter(|j| j.client == w.address(CLIENT) && j.finished_at.is_none()).count();
        if open < 2 {
            let replicas = if s == Strategy::SybilRing { 3 } else { 1 };
            let mut spec = job(ops.work, replicas, honest_price * 2, 0);
            if s == Strategy::SybilRing {
                // Replication-checked work (a training job): no entry can be proven wrong, so
                // the ring can only be outvoted, and three new identities are all on
                // probation: the chain calls a check, which they cannot outvote.
                spec.kind = JobKind::Train;
                spec.inputs = vec![ergon_types::job::BlobRef { id: Hash::of("data", &[]), size: 1 }; 2];
            }
            txs.push(w.tx(CLIENT, TxKind::SubmitJob { spec }));
        }
        // A caught withholder or lazy provider registers again and goes on (the demotion's own
        // advice), so one run plays many withholdings, not one.
        if matches!(s, Strategy::Withholder | Strategy::LazyProvider { .. }) {
            let demoted = w.ledger.market.provider(&w.address(DEVIATOR)).map(|p| p.status);
            if demoted == Some(ergon_market::ProviderStatus::Demoted) {
                let offer = offer(deviant_price, deviant_gmacs);
                txs.push(w.tx(DEVIATOR, TxKind::RegisterProvider { offer, stake: 1 }));
            }
        }
        // A griefing client floods jobs whose inputs never come.
        if s == Strategy::NoShowGriefer {
            let spec = job(ops.work, 1, honest_price * 2, 0);
            txs.push(w.tx(DEVIATOR, TxKind::SubmitJob { spec }));
        }
        // A self-dealer keeps one job from itself in flight.
        if let Strategy::SelfDealer { .. } = s {
            let me = w.address(DEVIATOR);
            if w.live_jobs().all(|j| j.client != me || j.finished_at.is_some()) {
                // Price 1: no honest provider asks so little, so the job is its own (a
                // throughput requirement no longer keeps others out: matching counts only
                // verified throughput, and its claim of everything is unverified).
                let spec = job(ops.work, 1, 1, 0);
                txs.push(w.tx(DEVIATOR, TxKind::SubmitJob { spec }));
            }
        }
        // Leaseholders act on their leases.
        let leases: Vec<LeaseView> = w
            .live_jobs()
            .flat_map(|j| {
                j.keyed_tasks().filter_map(move |(key, t)| match t.state {
                    TaskState::Leased { provider, since, deadline, .. } => {
                        Some((provider, key, since, deadline, j.client))
                    }
                    _ => None,
                })
            })
            .collect();
        for (provider, (job_id, shard, _), since, deadline, client) in leases {
            let who = (0..6).find(|&i| w.address(i) == provider).unwrap_or(FILLER);
            let griefed = s == Strategy::NoShowGriefer && client == w.address(DEVIATOR);
            if griefed {
                // No inputs: the node gives the lease back two blocks before the deadline.
                if h + 2 >= deadline {
                    txs.push(w.tx(who, TxKind::ReleaseLease { job: job_id, shard }));
                }
                continue;
            }
            if h < since + 2 {
                continue; // computing: a shard of D multiply-adds takes two blocks of its share
            }
            // The ring's garbage is replication-checked work (a training job, say): no single
            // entry can be proven wrong, only outvoted.
            let result = match s {
                _ if who == PROVIDER => ops.right,
                Strategy::LazyProvider { wrong_permille } => {
                    if w.rng.below(1000) < wrong_permille {
                        ops.wrong
                    } else {
                        dev_cost += cost_of(DIFFICULTY as u128); // it computed this one
                        ops.right
                    }
                }
                _ => Hash::of("garbage", &[&job_id.0]),
            };
            if result != ops.right && !matches!(s, Strategy::SelfDealer { .. }) {
                bad += 1;
            }
            txs.push(w.tx(who, TxKind::PostResult { job: job_id, shard, result, cpu_ms: 0 }));
        }
        // The honest client challenges results it cannot fetch: the withholder's.
        if s == Strategy::Withholder {
            let client = w.address(CLIENT);
            for (key, _, _) in w.posted_by(w.address(DEVIATOR)).into_iter().filter(|p| p.1 == client) {
                if challenged.insert(key) {
                    txs.push(w.tx(
                        CLIENT,
                        TxKind::ChallengeResult { job: key.0, shard: key.1, replica: key.2, rows: vec![0] },
                    ));
                }
            }
        }
        // The honest client checks every product it receives and disputes a wrong one.
        if let Strategy::LazyProvider { .. } = s {
            for (key, _, _) in w.posted_by(w.address(DEVIATOR)).into_iter().filter(|p| p.2 == ops.wrong) {
                if challenged.insert(key) {
                    let evidence = ops.evidence.clone();
                    txs.push(w.tx(CLIENT, TxKind::Dispute { job: key.0, shard: key.1, replica: key.2, evidence }));
                }
            }
        }
        // Who mines this block: the self-dealer wins one on its own lease whenever it has one
        // (its cost f of honest work), else the two honest miners take turns by lot.
        let self_lease = match s {
            Strategy::SelfDealer { f_percent } => {
                let me = w.address(DEVIATOR);
                let market = &w.ledger.market;
                market.provider(&me).and_then(|p| p.leases.iter().next().copied()).map(|k| (k, f_percent)).filter(
                    |(k, _)| {
                        let work = market.job(&k.0).map(|j| j.spec.shards[k.1 as usize]);
                        work.is_some_and(|wk| market.check_mining(&me, &k.0, &wk, DIFFICULTY).is_ok())
                    },
                )
            }
            _ => None,
        };
        if let Some(((job_id, shard, _), f)) = self_lease {
            let work = w.ledger.market.job(&job_id).map(|j| j.spec.shards[shard as usize]);
            let subsidy = w.block(DEVIATOR, txs, work.map(|wk| (job_id, wk)));
            dev_rev += subsidy as u128;
            dev_cost += cost_of(DIFFICULTY as u128) * f as u128 / 100;
            // It posts its (free) result at once.
            let post = w.tx(DEVIATOR, TxKind::PostResult { job: job_id, shard, result: Hash::ZERO, cpu_ms: 0 });
            w.block(FILLER, vec![post], None);
            fill_rev += ergon_chain::filler_subsidy(&w.params) as u128;
            fill_cost += cost_of(DIFFICULTY as u128) / 2;
            prov_cost += cost_of(DIFFICULTY as u128) / 2;
            continue;
        }
        let provider_wins = w.rng.next_u64().is_multiple_of(2);
        let p_addr = w.address(PROVIDER);
        // It can mine only on a lease whose inputs it has: never a griefer's.
        let griefer = (s == Strategy::NoShowGriefer).then(|| w.address(DEVIATOR));
        let job_lease = if provider_wins {
            w.ledger.market.provider(&p_addr).and_then(|p| {
                p.leases.iter().find_map(|k| {
                    let j = w.ledger.market.job(&k.0).filter(|j| Some(j.client) != griefer)?;
                    Some((k.0, j.spec.shards[k.1 as usize]))
                })
            })
        } else {
            None
        };
        let miner = if provider_wins { PROVIDER } else { FILLER };
        let subsidy = w.block(miner, txs, job_lease) as u128;
        if provider_wins {
            prov_rev += subsidy
        } else {
            fill_rev += subsidy
        }
        fill_cost += cost_of(DIFFICULTY as u128) / 2;
        prov_cost += cost_of(DIFFICULTY as u128) / 2;
    }
    // Payments, burns, bonds lost, from the market's own records.
    let market = &w.ledger.market;
    let dev_addrs: Vec<Address> = deviant_ids.iter().map(|&i| w.address(i)).collect();
    let mut bad_paid = 0;
    for j in market.jobs() {
        for t in &j.tasks {
            if let TaskState::Settled { provider, paid, result } = t.state {
                let from_outside = !dev_addrs.contains(&j.client);
                if provider == w.address(PROVIDER) {
                    prov_rev += paid as u128;
                }
                if dev_addrs.contains(&provider) && from_outside {
                    dev_rev += paid as u128;
                    if !matches!(s, Strategy::SelfDealer { .. }) && result != ops.right {
                        bad_paid += 1;
                    }
                }
            }
        }
        if dev_addrs.contains(&j.client) || (s == Strategy::NoShowGriefer && j.client == w.address(DEVIATOR)) {
            dev_cost += j.burned as u128;
            let self_paid: u64 = j
                .tasks
                .iter()
                .filter_map(|t| match t.state {
                    TaskState::Settled { provider, paid, .. } if dev_addrs.contains(&provider) => Some(paid),
                    _ => None,
                })
                .sum();
            dev_cost += (j.paid - self_paid) as u128; // paid to others, wasted-lease fees included
        }
    }
    for a in &dev_addrs {
        if let Some(p) = market.provider(a) {
            dev_cost += p.slashed as u128;
        }
    }
    let dev_fees: u128 = match s {
        Strategy::NoShowGriefer => w.agents[DEVIATOR].fees,
        _ => deviant_ids.iter().map(|&i| w.agents[i].fees).sum(),
    };
    dev_cost += dev_fees;
    let honest_strikes = market.provider(&w.address(PROVIDER)).map_or(0, |p| p.failed + p.strikes as u64);
    let rpc = |r: u128, c: u128| if c == 0 { f64::INFINITY } else { r as f64 / c as f64 };
    let fill = rpc(fill_rev, fill_cost);
    let (rev, cost) = match s {
        Strategy::HonestFiller => (fill_rev, fill_cost),
        Strategy::HonestProvider => (prov_rev, prov_cost),
        _ => (dev_rev, dev_cost),
    };
    let report = StrategyReport {
        strategy: format!("{s:?}"),
        revenue: rev,
        cost,
        revenue_per_cost: rpc(rev, cost),
        ratio_vs_honest_mining: rpc(rev, cost) / fill,
        bad_results: bad,
        bad_results_paid: bad_paid,
        honest_strikes,
    };
    (report, w)
}

/// Every strategy on one seed.
pub fn run_economics(seed: u64, blocks: u64) -> EconomicsReport {
    let strategies = [
        Strategy::HonestFiller,
        Strategy::HonestProvider,
        Strategy::SelfDealer { f_percent: 0 },
        Strategy::SelfDealer { f_percent: 50 },
        Strategy::SelfDealer { f_percent: 100 },
        Strategy::SybilRing,
        Strategy::Withholder,
        Strategy::NoShowGriefer,
        Strategy::LazyProvider { wrong_permille: 20 },
        Strategy::LazyProvider { wrong_permille: 200 },
    ];
    let (mut reports, mut useful, mut mined, mut violations, mut locked) = (vec![], 0, 0, 0, 0u128);
    for s in strategies {
        let (r, w) = play(seed, blocks, s);
        useful += w.useful;
        mined += w.mined;
        violations += w.supply_violations;
        locked += w
            .live_jobs()
            .filter(|j| j.finished_at.is_none() && j.status != ergon_market::JobStatus::Open && j.escrow > 0)
            .map(|j| j.escrow as u128)
            .sum::<u128>();
        reports.push(r);
    }
    EconomicsReport {
        seed,
        blocks,
        strategies: reports,
        useful_work_share: useful as f64 / mined.max(1) as f64,
        supply_violations: violations,
        coins_locked_at_end: locked,
        churn: crate::churn::run_churn(seed, blocks),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_deviation_loses_and_supply_is_conserved() {
        let r = run_economics(7, 300);
        assert_eq!(r.supply_violations, 0);
        assert_eq!(r.coins_locked_at_end, 0);
        for s in &r.strategies {
            let deviates = !s.strategy.starts_with("Honest");
            if deviates {
                assert!(s.ratio_vs_honest_mining <= 0.95, "{s:?}");
                assert_eq!(s.honest_strikes, 0, "{s:?}");
            }
            if s.strategy == "Withholder" || s.strategy.starts_with("LazyProvider") || s.strategy == "SybilRing" {
                assert!(s.bad_results > 0 && s.bad_results_paid == 0, "{s:?}");
            }
        }
    }
}
