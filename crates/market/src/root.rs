//! The market's state commitment: everything consensus depends on, in a canonical order (not
//! the decision log or the waiting reasons, which are explanations).

use ergon_types::codec::Writer;
use ergon_types::Hash;

use crate::model::TaskState;
use crate::state::Market;

impl Market {
    /// Commitment to the market's state (not its log or waiting reasons).
    pub fn root(&self) -> Hash {
        let mut w = Writer::new();
        self.write_consensus(&mut w);
        Hash::of("ergon v1 market root", &[&w.finish()])
    }

    /// Everything consensus depends on, in canonical order: what [`root`](Self::root) hashes and
    /// what a snapshot begins with (`snapshot::read_consensus` reads it back).
    pub(crate) fn write_consensus(&self, w: &mut Writer) {
        w.u64(self.escrow_total).u64(self.bond_total);
        w.u64(self.energy.results).u64(self.energy.cpu_ms).u64(self.energy.macs);
        w.u32(self.providers.len() as u32);
        for p in self.providers.values() {
            w.bytes(&p.owner.0);
            p.offer.write(w);
            w.u64(p.bond).u8(p.status as u8).u64(p.registered_at).u64(p.last_lease).u32(p.leases.len() as u32);
            for (j, s, r) in &p.leases {
                w.bytes(&j.0).u32(*s as u32).u8(*r);
            }
            w.u32(p.pending).u64(p.completed).u64(p.failed).u32(p.strikes).u64(p.earned).u64(p.slashed);
            w.u64(p.locked).u64(p.released).u64(p.vouched);
            p.judged.write(w);
            p.judged_memory.write(w);
        }
        w.u32(self.jobs.len() as u32);
        for j in self.jobs.values() {
            w.bytes(&j.id.0).bytes(&j.client.0);
            j.spec.write(w);
            w.u64(j.submitted_at).u64(j.escrow).u8(j.status as u8).u64(j.paid).u64(j.burned);
            w.u64(j.finished_at.map_or(u64::MAX, |h| h));
            for t in &j.tasks {
                match &t.state {
                    TaskState::Queued => w.u8(0),
                    TaskState::Leased { provider, price, since, deadline } => {
                        w.u8(1).bytes(&provider.0).u64(*price).u64(*since).u64(*deadline)
                    }
                    TaskState::Posted { provider, price, result, settles_at } => {
                        w.u8(2).bytes(&provider.0).u64(*price).bytes(&result.0).u64(*settles_at)
                    }
                    TaskState::Settled { provider, result, paid } => {
                        w.u8(3).bytes(&provider.0).bytes(&result.0).u64(*paid)
                    }
                    TaskState::Cancelled => w.u8(4),
                    TaskState::Spare => w.u8(5),
                };
                w.u32(t.mined).u32(t.cpu_ms).u64(t.prepaid_burn).u64(t.collateral).u64(t.queued_since).u8(t.challenges);
                match &t.challenge {
                    None => {
                        w.u8(0);
                    }
                    Some(c) => {
                        w.u8(1).u64(c.deadline).u32(c.rows.len() as u32);
                        c.rows.iter().for_each(|r| {
                            w.u32(*r);
                        });
                    }
                }
                match &t.doubt {
                    None => w.u8(0),
                    Some(h) => w.u8(1).bytes(&h.0),
                };
                w.u32(t.excluded.len() as u32);
                for a in &t.excluded {
                    w.bytes(&a.0);
                }
            }
        }
    }
}
