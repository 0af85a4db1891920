//! Availability challenges: a result is paid only if it was available. A client that cannot
//! get, decrypt or read a posted matmul result names up to 16 of its rows; the provider must
//! publish them on chain, opened against the posted root, within `reveal_blocks`, or it is not
//! paid, is slashed, and the task is queued again. A root of a wrongly shaped product can never
//! be opened, so it cannot be paid either.

use ergon_pouw::dispute::MAX_REVEAL_ROWS;
use ergon_pouw::RevealedRow;
use ergon_types::{Address, JobKind};

use crate::model::{short, Challenge, TaskKey, TaskState};
use crate::reasons::Subject;
use crate::state::Market;
use crate::{Effect, MarketParams, MarketRejection, MAX_CHALLENGES};

impl Market {
    /// The job's client challenges the availability of a posted result: `rows` must be revealed
    /// within `reveal_blocks`. Settlement waits for the answer.
    pub fn challenge_result(
        &mut self,
        client: Address,
        key: TaskKey,
        rows: &[u32],
        height: u64,
        params: &MarketParams,
    ) -> Result<(), MarketRejection> {
        let (id, shard, replica) = key;
        let bad = |why: String| Err(MarketRejection::BadChallenge(why));
        let job = self.jobs.get(&id).ok_or(MarketRejection::UnknownJob)?;
        if job.client != client {
            return Err(MarketRejection::NotYourJob);
        }
        job.check_task(shard, replica)?;
        if job.spec.kind != JobKind::Matmul {
            return bad(format!("a {} result is checked by replication, not row by row", job.spec.kind.name()));
        }
        let task = job.task(shard, replica);
        let TaskState::Posted { settles_at, .. } = task.state else {
            return Err(MarketRejection::NotInChallengeWindow);
        };
        if task.challenge.is_some() {
            return bad("a challenge on this result is already open".into());
        }
        if task.challenges >= MAX_CHALLENGES {
            return bad(format!("this result was already challenged {MAX_CHALLENGES} times"));
        }
        let m = job.spec.shards[shard as usize].m;
        if rows.is_empty() || rows.len() > MAX_REVEAL_ROWS {
            return bad(format!("ask for 1..={MAX_REVEAL_ROWS} rows, not {}", rows.len()));
        }
        if let Some(r) = rows.iter().find(|&&r| r >= m) {
            return bad(format!("row {r} is outside the shard's {m} rows"));
        }
        if (1..rows.len()).any(|i| rows[i] <= rows[i - 1]) {
            return bad("rows must be strictly increasing".into());
        }
        let deadline = height + params.reveal_blocks;
        let later = settles_at.max(deadline + 1);
        let job = self.jobs.get_mut(&id).expect("checked above");
        let task = job.task_mut(shard, replica);
        task.challenge = Some(Challenge { rows: rows.to_vec(), deadline });
        task.challenges += 1;
        let TaskState::Posted { settles_at: at, provider, .. } = &mut task.state else { unreachable!("checked above") };
        *at = later;
        let provider = *provider;
        self.settling.remove(&(settles_at, key));
        self.settling.insert((later, key));
        self.reveals.insert((deadline, key));
        let text = format!(
            "shard {shard} replica {replica}: the client could not get the result and asks for {} row(s); the provider must reveal them by block {deadline}",
            rows.len()
        );
        self.note(Subject::Job(id), height, text.clone());
        self.note(Subject::Provider(provider), height, format!("job {}: {text}", short(&id)));
        Ok(())
    }

    /// The provider answers an open challenge with exactly the asked rows, each opened against
    /// its posted root.
    pub fn reveal_rows(
        &mut self,
        provider: Address,
        key: TaskKey,
        rows: &[RevealedRow],
        height: u64,
    ) -> Result<(), MarketRejection> {
        let (id, shard, replica) = key;
        let bad = |why: String| Err(MarketRejection::BadChallenge(why));
        let job = self.jobs.get(&id).ok_or(MarketRejection::UnknownJob)?;
        job.check_task(shard, replica)?;
        let task = job.task(shard, replica);
        let TaskState::Posted { provider: holder, result, .. } = task.state else {
            return Err(MarketRejection::NotInChallengeWindow);
        };
        if holder != provider {
            return bad("only the provider that posted the result can reveal it".into());
        }
        let Some(challenge) = &task.challenge else { return bad("no challenge is open on this result".into()) };
        if rows.iter().map(|r| r.index).ne(challenge.rows.iter().copied()) {
            return bad(format!("reveal exactly the asked rows {:?}", challenge.rows));
        }
        let w = &job.spec.shards[shard as usize];
        for r in rows {
            r.check(w.m, w.n, &result.0).map_err(|e| MarketRejection::BadChallenge(e.to_string()))?;
        }
        let deadline = challenge.deadline;
        self.jobs.get_mut(&id).expect("checked above").task_mut(shard, replica).challenge = None;
        self.reveals.remove(&(deadline, key));
        let text = format!("shard {shard} replica {replica}: {} row(s) revealed on chain", rows.len());
        self.note(Subject::Job(id), height, text);
        Ok(())
    }

    /// Challenges whose deadline has come without an answer: the result counts as withheld.
    /// The provider is slashed (the client gets the fixed bounty, the rest is burned), not paid,
    /// and the task is queued again.
    pub(crate) fn expire_reveals(&mut self, height: u64, params: &MarketParams, effects: &mut Vec<Effect>) {
        while let Some(&(deadline, key)) = self.reveals.first() {
            if deadline > height {
                break;
            }
            self.reveals.pop_first();
            let job = &self.jobs[&key.0];
            let client = job.client;
            let task = job.task(key.1, key.2);
            let Some(asked) = task.challenge.as_ref().map(|c| c.rows.len()) else { continue };
            let why = format!("withheld its result: {asked} asked row(s) not revealed by block {deadline}");
            let slashed = self.penalize(key, height, params, &why, effects);
            let bounty = slashed.min(params.dispute_bounty);
            if bounty > 0 {
                effects.push(Effect::Pay { to: client, amount: bounty });
            }
            effects.push(Effect::Burn { amount: slashed - bounty });
        }
    }
}
