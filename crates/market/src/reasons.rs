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

    /// Decisions about `subject`, oldest first.
    pub fn of(&self, subject: &Subject) -> Vec<Decision> {
        self.entries.get(subject).map(|q| q.iter().cloned().collect()).unwrap_or_default()
    }
}
