//! Headers first: a branch's work judged from its headers and their proofs alone, before any
//! of its bodies is fetched or stored (`docs/chain.md` §6).
//!
//! A header commits to its proof (`proof_hash`), and the proof alone shows the work: PoUW
//! verification needs no transaction. So a peer's run of (header, proof) pairs can be judged for
//! everything but what needs the parent's state (a job block's lease, the transactions, the
//! state root), and its cumulative work compared with the tip's, before a node downloads up to
//! 8 MiB of transactions per block of a branch that would lose anyway.
//!
//! Two steps, so a node can run the expensive one without its chain's lock: [`check_proofs`]
//! (context-free, in parallel) and [`Chain::judge_headers`] (links, times, difficulty, work).

use ergon_pouw::Proof;
use ergon_types::block::proof_hash;
use ergon_types::{BlockHeader, Hash};
use rayon::prelude::*;

use crate::chain::{median_time, BlockRejection, Chain, MEDIAN_TIME_SPAN};
use crate::filler::filler_commitment;

/// Where a judged run of headers ends: what the next run from the same peer must extend, and
/// the work behind it. Nothing of it is stored in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunTail {
    /// Its id (the genesis block's id is the network's, not its header's hash).
    pub id: Hash,
    pub header: BlockHeader,
    pub work: u128,
    /// The last `MEDIAN_TIME_SPAN` times, oldest first.
    times: Vec<u64>,
}

/// What a run of headers showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderRun {
    /// Leading headers this node already had (skipped).
    pub known: usize,
    /// Height of the known block the branch leaves this node's tree from.
    pub fork_height: u64,
    pub tail: RunTail,
    /// More work than the tip: only then are the branch's bodies worth fetching.
    pub heavier: bool,
}

/// The context-free half: each proof matches its header and verifies. Returns the index of the
/// first pair that fails. (Milliseconds per proof, so a node runs it outside its lock.)
pub fn check_proofs(run: &[(BlockHeader, Proof)]) -> Result<(), (usize, BlockRejection)> {
    let bad = run.par_iter().position_first(|(h, p)| {
        h.nonce != p.nonce
            || h.proof_hash != proof_hash(p)
            || h.challenge().map_or(true, |c| ergon_pouw::verify(&c, p).is_err())
    });
    match bad {
        None => Ok(()),
        Some(i) => Err((
            i,
            BlockRejection::Malformed(
                "a header's proof does not verify against it (or the header does not commit to it)".into(),
            ),
        )),
    }
}

impl Chain {
    /// Judges a run of headers from a peer whose proofs [`check_proofs`] passed: each the
    /// child of the one before, the first a child of `after` (the tail of this peer's previous
    /// run) or else of a block this node knows, within the reorganisation depth. Leading
    /// headers already known are skipped. Checked: links and heights, the median-time-past and
    /// future bounds, the difficulty the rule gives each, and filler blocks' commitments. A
    /// failure names the index of the offending header.
    pub fn judge_headers(
        &self,
        after: Option<&RunTail>,
        run: &[BlockHeader],
        now_ms: u64,
    ) -> Result<HeaderRun, (usize, BlockRejection)> {
        let known = if after.is_some() { 0 } else { run.iter().take_while(|h| self.knows(&h.id())).count() };
        let fresh = &run[known..];
        if let (Some(last_known), Some(first)) = (known.checked_sub(1).map(|i| &run[i]), fresh.first()) {
            if first.parent != last_known.id() {
                let why = format!("header at height {} does not extend the header before it", first.height);
                return Err((known, BlockRejection::Malformed(why)));
            }
        }
        let start = fresh.first().map_or_else(|| run.last().map_or(self.tip(), |h| h.id()), |h| h.parent);
        let (mut prev_id, mut prev, mut work, mut times, fork_height) = match after {
            Some(t) if fresh.first().is_none_or(|h| h.parent == t.id) => {
                (t.id, t.header.clone(), t.work, t.times.clone(), t.header.height)
            }
            Some(t) => return Err((0, BlockRejection::UnknownParent(t.id))),
            None => match self.header_and_work(&start) {
                Some((h, w)) => (start, h.clone(), w, self.times_ending_at(&start), h.height),
                None if self.knows(&start) => return Err((known, BlockRejection::KnownInvalid)),
                None => return Err((known, BlockRejection::UnknownParent(start))),
            },
        };
        let (tip_height, max_depth) = (self.height(), self.params().max_reorg_depth);
        if after.is_none() && tip_height.saturating_sub(fork_height) > max_depth {
            return Err((known, BlockRejection::ForkTooDeep { fork_height, tip_height, max_depth }));
        }
        for (j, h) in fresh.iter().enumerate() {
            let at = known + j;
            if h.parent != prev_id || h.height != prev.height + 1 {
                let why = format!("header at height {} does not extend the header before it", h.height);
                return Err((at, BlockRejection::Malformed(why)));
            }
            let mtp = median_time(&times);
            if h.time_ms <= mtp {
                return Err((at, BlockRejection::TooEarly { median_past_ms: mtp, got: h.time_ms }));
            }
            if h.time_ms > now_ms.saturating_add(self.params().max_future_ms) {
                return Err((at, BlockRejection::TooFarInFuture { now_ms, got: h.time_ms }));
            }
            let expected = self.expected_difficulty(&prev);
            if h.difficulty != expected {
                return Err((at, BlockRejection::WrongDifficulty { expected, got: h.difficulty }));
            }
            if h.job == Hash::ZERO && h.work != filler_commitment(&h.parent, self.params().filler_size as usize) {
                return Err((at, BlockRejection::WrongFillerMatrices));
            }
            work += h.difficulty as u128;
            times.push(h.time_ms);
            if times.len() > MEDIAN_TIME_SPAN {
                times.remove(0);
            }
            (prev_id, prev) = (h.id(), h.clone());
        }
        let heavier = work > self.tip_work();
        Ok(HeaderRun { known, fork_height, tail: RunTail { id: prev_id, header: prev, work, times }, heavier })
    }
}
