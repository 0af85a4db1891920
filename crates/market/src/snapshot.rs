//! The whole market as bytes, for a node's checkpoint: the consensus part exactly as the state
//! root hashes it (`root.rs` writes it, this file reads it back), then what the root leaves out
//! but a restarted node must still have: the book and the deadline indices, the waiting reasons
//! and the decision log. A snapshot read back equals the market written, field for field.
//!
//! Decoding is bounded like every decoder here: each count is checked against the bytes left.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ergon_types::codec::{Reader, Writer};
use ergon_types::{Address, Hash, JobSpec, Offer, TypesError};

use crate::matching::{Book, Waiting};
use crate::model::{Challenge, Job, JobStatus, Judgments, Provider, ProviderStatus, Task, TaskKey, TaskState};
use crate::reasons::{Decision, Log, Subject};
use crate::state::Market;

/// 2: `Waiting::lowest_ask`. An older checkpoint is refused and the chain replayed.
const SNAPSHOT_VERSION: u8 = 3;
/// Longest decision text read back.
const MAX_TEXT: usize = 4096;

impl Market {
    /// Appends the whole market (see the module comment).
    pub fn write_snapshot(&self, w: &mut Writer) {
        w.u8(SNAPSHOT_VERSION);
        self.write_consensus(w);
        for job in self.jobs.values() {
            for t in &job.tasks {
                let Some(x) = &t.waiting else {
                    w.u8(0);
                    continue;
                };
                w.u8(1).u32(x.busy).u32(x.too_expensive).u32(x.too_little_memory).u32(x.too_slow);
                w.u32(x.no_gpu).u32(x.bond_too_small).u32(x.excluded).u64(x.lowest_ask);
            }
        }
        w.u32(self.book.queue.len() as u32);
        for (Reverse(price), at, id, shard, replica) in &self.book.queue {
            w.u64(*price).u64(*at).bytes(&id.0).u32(*shard as u32).u8(*replica);
        }
        w.u32(self.book.free.len() as u32);
        for (price, Reverse(reputation), last, owner) in &self.book.free {
            w.u64(*price).u64(*reputation).u64(*last).bytes(&owner.0);
        }
        for index in [&self.deadlines, &self.settling, &self.reveals] {
            w.u32(index.len() as u32);
            for (h, key) in index {
                w.u64(*h);
                write_key(w, key);
            }
        }
        w.u32(self.finished.len() as u32);
        for (h, id) in &self.finished {
            w.u64(*h).bytes(&id.0);
        }
        w.u64(self.archived);
        w.u32(self.log.entries.len() as u32);
        for (subject, decisions) in &self.log.entries {
            match subject {
                Subject::Job(id) => w.u8(0).bytes(&id.0),
                Subject::Provider(a) => w.u8(1).bytes(&a.0),
            };
            w.u32(decisions.len() as u32);
            for d in decisions {
                w.u64(d.height).var_bytes(d.text.as_bytes());
            }
        }
    }

    /// Reads back what [`write_snapshot`](Self::write_snapshot) wrote.
    pub fn read_snapshot(r: &mut Reader<'_>) -> Result<Market, TypesError> {
        r.version(SNAPSHOT_VERSION)?;
        let mut m = read_consensus(r)?;
        for job in m.jobs.values_mut() {
            for t in &mut job.tasks {
                t.waiting = match r.u8()? {
                    0 => None,
                    1 => Some(Waiting {
                        busy: r.u32()?,
                        too_expensive: r.u32()?,
                        too_little_memory: r.u32()?,
                        too_slow: r.u32()?,
                        no_gpu: r.u32()?,
                        bond_too_small: r.u32()?,
                        excluded: r.u32()?,
                        lowest_ask: r.u64()?,
                    }),
                    x => return r.fail(format!("waiting flag {x}")),
                };
            }
        }
        let mut book = Book::default();
        for _ in 0..r.count(usize::MAX, 61)? {
            let (price, at, id, shard, replica) = (r.u64()?, r.u64()?, Hash(r.array()?), read_u16(r)?, r.u8()?);
            book.queue.insert((Reverse(price), at, id, shard, replica));
        }
        for _ in 0..r.count(usize::MAX, 44)? {
            book.free.insert((r.u64()?, Reverse(r.u64()?), r.u64()?, Address(r.array()?)));
        }
        m.book = book;
        let mut indices = [BTreeSet::new(), BTreeSet::new(), BTreeSet::new()];
        for index in &mut indices {
            for _ in 0..r.count(usize::MAX, 45)? {
                let h = r.u64()?;
                index.insert((h, read_key(r)?));
            }
        }
        [m.deadlines, m.settling, m.reveals] = indices;
        for _ in 0..r.count(usize::MAX, 40)? {
            m.finished.insert((r.u64()?, Hash(r.array()?)));
        }
        m.archived = r.u64()?;
        let mut entries = BTreeMap::new();
        for _ in 0..r.count(usize::MAX, 25)? {
            let subject = match r.u8()? {
                0 => Subject::Job(Hash(r.array()?)),
                1 => Subject::Provider(Address(r.array()?)),
                x => return r.fail(format!("log subject tag {x}")),
            };
            let mut decisions = VecDeque::new();
            for _ in 0..r.count(usize::MAX, 12)? {
                let height = r.u64()?;
                let text = String::from_utf8(r.var_bytes(MAX_TEXT)?.to_vec());
                let text = text.or_else(|_| r.fail("decision text is not UTF-8"))?;
                decisions.push_back(Decision { height, text });
            }
            entries.insert(subject, decisions);
        }
        m.log = Log { entries };
        Ok(m)
    }
}

fn write_key(w: &mut Writer, (id, shard, replica): &TaskKey) {
    w.bytes(&id.0).u32(*shard as u32).u8(*replica);
}

fn read_u16(r: &mut Reader<'_>) -> Result<u16, TypesError> {
    let v = r.u32()?;
    u16::try_from(v).or_else(|_| r.fail(format!("shard {v} exceeds u16")))
}

fn read_key(r: &mut Reader<'_>) -> Result<TaskKey, TypesError> {
    Ok((Hash(r.array()?), read_u16(r)?, r.u8()?))
}

fn read_address(r: &mut Reader<'_>) -> Result<Address, TypesError> {
    Ok(Address(r.array()?))
}

/// The consensus part, as `Market::write_consensus` lays it out.
fn read_consensus(r: &mut Reader<'_>) -> Result<Market, TypesError> {
    let mut m = Market { escrow_total: r.u64()?, bond_total: r.u64()?, ..Market::default() };
    m.energy = crate::EnergyTotals { results: r.u64()?, cpu_ms: r.u64()?, macs: r.u64()? };
    for _ in 0..r.count(usize::MAX, 100)? {
        let owner = read_address(r)?;
        let offer = Offer::read(r)?;
        let bond = r.u64()?;
        let status = match r.u8()? {
            0 => ProviderStatus::Active,
            1 => ProviderStatus::Leaving,
            2 => ProviderStatus::Demoted,
            3 => ProviderStatus::Gone,
            x => return r.fail(format!("provider status {x}")),
        };
        let (registered_at, last_lease) = (r.u64()?, r.u64()?);
        let mut leases = BTreeSet::new();
        for _ in 0..r.count(usize::MAX, 37)? {
            leases.insert(read_key(r)?);
        }
        let p = Provider {
            owner,
            offer,
            bond,
            status,
            registered_at,
            last_lease,
            leases,
            pending: r.u32()?,
            completed: r.u64()?,
            failed: r.u64()?,
            strikes: r.u32()?,
            earned: r.u64()?,
            slashed: r.u64()?,
            locked: r.u64()?,
            released: r.u64()?,
            vouched: r.u64()?,
            judged: Judgments::default(),
            judged_memory: Judgments::default(),
        };
        let p = Provider { judged: Judgments::read(r)?, judged_memory: Judgments::read(r)?, ..p };
        m.providers.insert(owner, p);
    }
    for _ in 0..r.count(usize::MAX, 100)? {
        let (id, client) = (Hash(r.array()?), read_address(r)?);
        let spec = JobSpec::read(r)?;
        let (submitted_at, escrow) = (r.u64()?, r.u64()?);
        let status = match r.u8()? {
            0 => JobStatus::Open,
            1 => JobStatus::Cancelled,
            2 => JobStatus::Done,
            x => return r.fail(format!("job status {x}")),
        };
        let (paid, burned) = (r.u64()?, r.u64()?);
        let finished_at = Some(r.u64()?).filter(|&h| h != u64::MAX);
        let tasks = spec.shards.len() * crate::model::slots_of(&spec);
        let mut job =
            Job { id, client, spec, submitted_at, escrow, tasks: Vec::new(), status, paid, burned, finished_at };
        for _ in 0..tasks {
            job.tasks.push(read_task(r)?);
        }
        m.jobs.insert(id, job);
    }
    Ok(m)
}

fn read_task(r: &mut Reader<'_>) -> Result<Task, TypesError> {
    let state = match r.u8()? {
        0 => TaskState::Queued,
        1 => TaskState::Leased { provider: read_address(r)?, price: r.u64()?, since: r.u64()?, deadline: r.u64()? },
        2 => TaskState::Posted {
            provider: read_address(r)?,
            price: r.u64()?,
            result: Hash(r.array()?),
            settles_at: r.u64()?,
        },
        3 => TaskState::Settled { provider: read_address(r)?, result: Hash(r.array()?), paid: r.u64()? },
        4 => TaskState::Cancelled,
        5 => TaskState::Spare,
        x => return r.fail(format!("task state {x}")),
    };
    let (mined, cpu_ms) = (r.u32()?, r.u32()?);
    let (prepaid_burn, collateral, queued_since, challenges) = (r.u64()?, r.u64()?, r.u64()?, r.u8()?);
    let challenge = match r.u8()? {
        0 => None,
        1 => {
            let deadline = r.u64()?;
            let rows = (0..r.count(usize::MAX, 4)?).map(|_| r.u32()).collect::<Result<_, _>>()?;
            Some(Challenge { rows, deadline })
        }
        x => return r.fail(format!("challenge flag {x}")),
    };
    let doubt = match r.u8()? {
        0 => None,
        1 => Some(Hash(r.array()?)),
        x => return r.fail(format!("doubt flag {x}")),
    };
    let mut excluded = BTreeSet::new();
    for _ in 0..r.count(usize::MAX, 20)? {
        excluded.insert(read_address(r)?);
    }
    Ok(Task {
        state,
        excluded,
        waiting: None,
        mined,
        prepaid_burn,
        collateral,
        queued_since,
        challenge,
        challenges,
        doubt,
        cpu_ms,
    })
}
