//! Transactions: what an account asks the chain to do, signed by its key.
//!
//! Encoding, version 1: `version u8 = 1 ‖ chain Hash ‖ from PublicKey ‖ nonce u64 ‖ fee u64 ‖
//! kind`, where kind is `0 ‖ to Address ‖ amount u64` (transfer), `1 ‖ amount u64` (stake) or
//! `2 ‖ amount u64` (unstake), `3 ‖ offer ‖ stake u64` (register provider), `4` (deregister),
//! `5 ‖ job spec` (submit job), `6 ‖ job Hash` (cancel job) or `7 ‖ job Hash ‖ shard u16 ‖ result
//! Hash` (post result) or `8 ‖ job Hash ‖ shard u16 as u32 ‖ replica u8 ‖ evidence bytes` (dispute,
//! evidence as in `ergon_pouw::dispute`) or `9 ‖ job Hash ‖ shard u16 as u32` (release a lease), `10 ‖ job ‖ shard u32 ‖ replica u8 ‖
//! count u32 ‖ row u32…` (challenge a result's availability) or `11 ‖ job ‖ shard u32 ‖ replica u8
//! ‖ count u32 ‖ (revealed row as var bytes)…` (reveal rows; `ergon_pouw::RevealedRow`) or `12 ‖ provider Address ‖ gmacs u64 ‖ reason
//! (UTF-8 var bytes)` (a validator's judgment) or `13 ‖ round ‖ answer` (a fraud proof: two
//! signed `crate::poai` messages, each as var bytes); offers and job specs are encoded as in [`crate::job`]. A signed transaction appends the 64-byte signature over
//! `"ergon v1 transaction" ‖ encoding`. The chain hash (the genesis hash) stops a transaction
//! signed for one network from being replayed on another.

use crate::codec::{Canonical, Reader, Writer};
use crate::hash::Hash;
use ergon_pouw::dispute::{MAX_DISPUTE_BYTES, MAX_REVEALED_ROW_BYTES, MAX_REVEAL_ROWS};
use ergon_pouw::{RevealedRow, WrongEntry};

use crate::job::{JobSpec, Offer};
use crate::keys::{Address, PublicKey, SecretKey, Signature};
use crate::poai::{PoaiMessage, ANSWER_MAX_BYTES, ROUND_MAX_BYTES};
use crate::TypesError;

const VERSION: u8 = 1;
/// Longest reason a judgment carries.
pub const MAX_JUDGE_REASON: usize = 240;
/// Largest fraud proof: a round announcement and an answer.
const MAX_FRAUD_BYTES: usize = 4 + ROUND_MAX_BYTES + 4 + ANSWER_MAX_BYTES;
/// Largest encoded list of revealed rows.
const MAX_REVEAL_BYTES: usize = MAX_REVEAL_ROWS * (4 + MAX_REVEALED_ROW_BYTES);

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}
const SIGNING_DOMAIN: &[u8] = b"ergon v1 transaction";

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxKind {
    /// Move `amount` to `to`.
    Transfer { to: Address, amount: u64 },
    /// Lock `amount` of the sender's balance as stake.
    Stake { amount: u64 },
    /// Start unbonding `amount` of stake (released after the unbonding period).
    Unstake { amount: u64 },
    /// Become (or update) a compute provider: publish `offer` and bond `stake` more coins to it.
    RegisterProvider { offer: Offer, stake: u64 },
    /// Stop taking new leases; the bond unbonds once the provider's last lease has settled.
    Deregister,
    /// Post a job and escrow its maximum cost.
    SubmitJob { spec: JobSpec },
    /// Withdraw a job: shards not yet leased are refunded; leased ones finish and settle.
    CancelJob { job: Hash },
    /// The leased provider's commitment to a shard's result (Merkle root of its output rows),
    /// with the CPU time its computation took on the provider's mining threads, in
    /// milliseconds: the measurement the energy of a job is derived from. It is the provider's
    /// report, and nothing is paid or matched on it (see `docs/energy.md`).
    PostResult { job: Hash, shard: u16, result: Hash, cpu_ms: u32 },
    /// Evidence that a posted result (still in its challenge window) has a wrong entry: the
    /// provider is slashed, half of it to the sender, and the shard is re-allocated.
    Dispute { job: Hash, shard: u16, replica: u8, evidence: WrongEntry },
    /// The leaseholder gives a lease back because its inputs never arrived (no strike; the
    /// client pays it a small share of the task for the wasted lease).
    ReleaseLease { job: Hash, shard: u16 },
    /// The client could not get (or decrypt, or read) a posted result: the provider must publish
    /// these rows of it, opened against its root, within the reveal bound, or it is not paid and
    /// is slashed.
    ChallengeResult { job: Hash, shard: u16, replica: u8, rows: Vec<u32> },
    /// The provider's answer to a [`TxKind::ChallengeResult`]: the asked rows with their paths.
    RevealRows { job: Hash, shard: u16, replica: u8, rows: Vec<RevealedRow> },
    /// A staked validator's judgment, from its Proof-of-AI engine, that `provider` answers its
    /// challenges at `gmacs` G MAC/s of int8 throughput, 0 meaning it stopped answering
    /// (`docs/poai.md`), and why, in words (at most [`MAX_JUDGE_REASON`] bytes of UTF-8).
    Judge { provider: Address, gmacs: u64, reason: String },
    /// Proof that a provider signed a wrong answer to a validator's challenge round: the round
    /// announcement and the answer, both signed (`ergon_poai::fraud`). Sent by a staked
    /// validator; the provider is slashed and demoted.
    ProveFraud { round: Box<PoaiMessage>, answer: Box<PoaiMessage> },
    /// A staked validator's judgment, from its memory challenges, that `provider` holds
    /// `memory_mib` MiB (its claim, once shown), 0 meaning it did not show its claim
    /// (`docs/poai.md` §7), and why.
    JudgeMemory { provider: Address, memory_mib: u64, reason: String },
    /// The client of an ML job doubts a posted result of `shard` and names the commitment it
    /// expects (a client that knows the answer: a validator's hidden audit, or one that computed
    /// it itself). The shard's check replica is called at once, at the client's cost, and
    /// decides (`docs/poai.md` §10): a result the check and the client both contradict is not
    /// paid and its provider is struck, and slashed when the checker is trusted.
    DoubtResult { job: Hash, shard: u16, expected: Hash },
}

/// An unsigned transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// Genesis hash of the network this transaction is for.
    pub chain: Hash,
    pub from: PublicKey,
    /// The sender's next nonce: each nonce is usable once, in order.
    pub nonce: u64,
    pub fee: u64,
    pub kind: TxKind,
}

impl Transaction {
    pub fn sign(self, key: &SecretKey) -> SignedTransaction {
        let signature = key.sign(&self.signing_bytes());
        SignedTransaction { tx: self, signature }
    }

    fn signing_bytes(&self) -> Vec<u8> {
        let mut m = SIGNING_DOMAIN.to_vec();
        m.extend_from_slice(&self.encode());
        m
    }

    pub fn sender(&self) -> Address {
        self.from.address()
    }
}

impl Canonical for Transaction {
    const MAX_BYTES: usize =
        1 + 32 + 32 + 8 + 8 + 1 + 32 + 4 + 1 + 4 + max(MAX_DISPUTE_BYTES, max(MAX_REVEAL_BYTES, MAX_FRAUD_BYTES));

    fn write(&self, w: &mut Writer) {
        w.u8(VERSION).bytes(&self.chain.0).bytes(&self.from.0).u64(self.nonce).u64(self.fee);
        match &self.kind {
            TxKind::Transfer { to, amount } => w.u8(0).bytes(&to.0).u64(*amount),
            TxKind::Stake { amount } => w.u8(1).u64(*amount),
            TxKind::Unstake { amount } => w.u8(2).u64(*amount),
            TxKind::RegisterProvider { offer, stake } => {
                w.u8(3);
                offer.write(w);
                w.u64(*stake)
            }
            TxKind::Deregister => w.u8(4),
            TxKind::SubmitJob { spec } => {
                w.u8(5);
                spec.write(w);
                w
            }
            TxKind::CancelJob { job } => w.u8(6).bytes(&job.0),
            TxKind::PostResult { job, shard, result, cpu_ms } => {
                w.u8(7).bytes(&job.0).u32(*shard as u32).bytes(&result.0).u32(*cpu_ms)
            }
            TxKind::Dispute { job, shard, replica, evidence } => {
                w.u8(8).bytes(&job.0).u32(*shard as u32).u8(*replica).var_bytes(&evidence.encode())
            }
            TxKind::ReleaseLease { job, shard } => w.u8(9).bytes(&job.0).u32(*shard as u32),
            TxKind::ChallengeResult { job, shard, replica, rows } => {
                w.u8(10).bytes(&job.0).u32(*shard as u32).u8(*replica).u32(rows.len() as u32);
                rows.iter().for_each(|r| {
                    w.u32(*r);
                });
                w
            }
            TxKind::RevealRows { job, shard, replica, rows } => {
                w.u8(11).bytes(&job.0).u32(*shard as u32).u8(*replica).u32(rows.len() as u32);
                rows.iter().for_each(|r| {
                    w.var_bytes(&r.encode());
                });
                w
            }
            TxKind::Judge { provider, gmacs, reason } => {
                w.u8(12).bytes(&provider.0).u64(*gmacs).var_bytes(reason.as_bytes())
            }
            TxKind::ProveFraud { round, answer } => w.u8(13).var_bytes(&round.encode()).var_bytes(&answer.encode()),
            TxKind::JudgeMemory { provider, memory_mib, reason } => {
                w.u8(14).bytes(&provider.0).u64(*memory_mib).var_bytes(reason.as_bytes())
            }
            TxKind::DoubtResult { job, shard, expected } => {
                w.u8(15).bytes(&job.0).u32(*shard as u32).bytes(&expected.0)
            }
        };
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, TypesError> {
        r.version(VERSION)?;
        let chain = Hash(r.array()?);
        let from = PublicKey(r.array()?);
        let (nonce, fee) = (r.u64()?, r.u64()?);
        let kind = match r.u8()? {
            0 => TxKind::Transfer { to: Address(r.array()?), amount: r.u64()? },
            1 => TxKind::Stake { amount: r.u64()? },
            2 => TxKind::Unstake { amount: r.u64()? },
            3 => TxKind::RegisterProvider { offer: Offer::read(r)?, stake: r.u64()? },
            4 => TxKind::Deregister,
            5 => TxKind::SubmitJob { spec: JobSpec::read(r)? },
            6 => TxKind::CancelJob { job: Hash(r.array()?) },
            7 => {
                let job = Hash(r.array()?);
                let shard = read_shard(r)?;
                TxKind::PostResult { job, shard, result: Hash(r.array()?), cpu_ms: r.u32()? }
            }
            8 => {
                let job = Hash(r.array()?);
                let shard = read_shard(r)?;
                let replica = r.u8()?;
                let evidence = match WrongEntry::decode(r.var_bytes(MAX_DISPUTE_BYTES)?) {
                    Ok(e) => e,
                    Err(e) => return r.fail(e.to_string()),
                };
                TxKind::Dispute { job, shard, replica, evidence }
            }
            9 => {
                let job = Hash(r.array()?);
                let shard = read_shard(r)?;
                TxKind::ReleaseLease { job, shard }
            }
            tag @ (10 | 11) => {
                let job = Hash(r.array()?);
                let shard = read_shard(r)?;
                let replica = r.u8()?;
                let count = r.u32()? as usize;
                if count == 0 || count > MAX_REVEAL_ROWS {
                    return r.fail(format!("{count} rows; a challenge asks for 1..={MAX_REVEAL_ROWS}"));
                }
                if tag == 10 {
                    let rows = (0..count).map(|_| r.u32()).collect::<Result<Vec<_>, _>>()?;
                    TxKind::ChallengeResult { job, shard, replica, rows }
                } else {
                    let mut rows = Vec::with_capacity(count);
                    for _ in 0..count {
                        match RevealedRow::decode(r.var_bytes(MAX_REVEALED_ROW_BYTES)?) {
                            Ok(row) => rows.push(row),
                            Err(e) => return r.fail(e.to_string()),
                        }
                    }
                    TxKind::RevealRows { job, shard, replica, rows }
                }
            }
            tag @ (12 | 14) => {
                let (provider, value) = (Address(r.array()?), r.u64()?);
                let reason = match String::from_utf8(r.var_bytes(MAX_JUDGE_REASON)?.to_vec()) {
                    Ok(s) => s,
                    Err(_) => return r.fail("a judgment's reason is not UTF-8"),
                };
                if tag == 12 {
                    TxKind::Judge { provider, gmacs: value, reason }
                } else {
                    TxKind::JudgeMemory { provider, memory_mib: value, reason }
                }
            }
            13 => {
                let round = match PoaiMessage::decode(r.var_bytes(ROUND_MAX_BYTES)?) {
                    Ok(m) => m,
                    Err(e) => return r.fail(e.to_string()),
                };
                let answer = match PoaiMessage::decode(r.var_bytes(ANSWER_MAX_BYTES)?) {
                    Ok(m) => m,
                    Err(e) => return r.fail(e.to_string()),
                };
                TxKind::ProveFraud { round: Box::new(round), answer: Box::new(answer) }
            }
            15 => {
                let job = Hash(r.array()?);
                let shard = read_shard(r)?;
                TxKind::DoubtResult { job, shard, expected: Hash(r.array()?) }
            }
            tag => return r.fail(format!("unknown transaction kind {tag}")),
        };
        Ok(Self { chain, from, nonce, fee, kind })
    }
}

/// A shard index: encoded as u32, at most u16.
fn read_shard(r: &mut Reader<'_>) -> Result<u16, TypesError> {
    let shard = r.u32()?;
    match u16::try_from(shard) {
        Ok(s) => Ok(s),
        Err(_) => r.fail(format!("shard {shard} out of range")),
    }
}

/// A transaction with its sender's signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTransaction {
    pub tx: Transaction,
    pub signature: Signature,
}

impl SignedTransaction {
    /// The transaction's identity: a hash of the unsigned transaction (strict ed25519 admits one
    /// signature per message and key, so the id cannot be malleated through the signature).
    pub fn id(&self) -> Hash {
        Hash::of("ergon v1 transaction id", &[&self.tx.encode()])
    }

    /// Checks the signature against the sender's key.
    pub fn verify(&self) -> Result<(), TypesError> {
        self.tx.from.verify(&self.tx.signing_bytes(), &self.signature)
    }
}

impl Canonical for SignedTransaction {
    const MAX_BYTES: usize = Transaction::MAX_BYTES + 64;

    fn write(&self, w: &mut Writer) {
        self.tx.write(w);
        w.bytes(&self.signature.0);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, TypesError> {
        let tx = Transaction::read(r)?;
        Ok(Self { tx, signature: Signature(r.array()?) })
    }
}
