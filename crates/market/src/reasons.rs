//! The decision log: every lease, closure, payment, demotion and slash, in words, by the block
//! that made it, kept per job and per provider so `ergon job status` and `ergon provider status`
//! can say what happened and why.
//!
//! The log is derived from the market's transitions, so it is deterministic, but it is not part
//! of the state root: nodes agree on decisions, not on their wording.

use std::collections::{BTreeMap, VecDeque};

use ergon_types::{Address, Hash};

/// Decisions kept per subject (older ones fall off).
pub const KEPT_PER_SUBJECT: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    Job(Hash),
    Provider(Address),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub height: u64,
    pub text: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Log {
    pub(crate) entries: BTreeMap<Subject, VecDeque<Decision>>,
}

impl Log {
    pub fn record(&mut self, subject: Subject, height: u64, text: String) {
        let q = self.entries.entry(subject).or_default();
        if q.len() == KEPT_PER_SUBJECT {
            q.pop_front();
        }
        q.push_back(Decision { height, text });
    }

    /// Drops every decision about `subject` (an archived job's).
    pub fn forget(&mut self, subject: &Subject) {
        self.entries.remove(subject);
    }

    /// (subjects, decisions) held.
    pub fn size(&self) -> (usize, usize) {
        (self.entries.len(), self.entries.values().map(|q| q.len()).sum())
    }

    /// Every decision made at `height`, by subject: what a block decided, for the node's event
    /// stream. A scan of the whole log, which is bounded (`KEPT_PER_SUBJECT` per subject).
    pub fn at(&self, height: u64) -> Vec<(Subject, Decision)> {
        let mut out = Vec::new();
        for (subject, q) in &self.entries {
            // Newest last: only the tail at or after `height` is read, then put back in order.
            let tail = q.iter().rev().take_while(|d| d.height >= height).count();
            out.extend(q.iter().skip(q.len() - tail).filter(|d| d.height == height).map(|d| (*subject, d.clone())));
        }
        out
    }

    /// Decisions about `subject`, oldest first.
    pub fn of(&self, subject: &Subject) -> Vec<Decision> {
        self.entries.get(subject).map(|q| q.iter().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_at_a_height_come_from_every_subject_in_order() {
        let mut log = Log::default();
        let (job, provider) = (Subject::Job(Hash([1; 32])), Subject::Provider(Address([2; 20])));
        log.record(job, 4, "leased".into());
        log.record(job, 5, "posted".into());
        log.record(provider, 5, "earned".into());
        log.record(job, 5, "settled".into());
        log.record(job, 6, "archived".into());
        let at: Vec<String> = log.at(5).into_iter().map(|(_, d)| d.text).collect();
        assert_eq!(at, ["posted", "settled", "earned"]);
        assert!(log.at(7).is_empty());
        assert_eq!(log.at(4).len(), 1);
    }
}
