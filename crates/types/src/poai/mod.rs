//! Proof-of-AI messages, gossiped on their own topic (`docs/poai.md` §6): a validator's round
//! announcement, and a provider's answer to one part of it. Both are signed by their sender and
//! bound to one chain by its genesis hash.
//!
//! Encoding: `version u8 ‖ tag u8 ‖ body ‖ signature [64]`, the signature over
//! `"ergon v1 poai message" ‖ version ‖ tag ‖ body`.
//! - Round (tag 0): `chain [32] ‖ validator [32] ‖ round u64 ‖ seed [32] ‖ nonce [32] ‖
//!   probe u8 ‖ target_ns u64 ‖ parts u32 ‖ openings u32 ‖ count u32 ‖ (provider [20] ‖ class
//!   u64)…`
//! - Answer (tag 1): `chain [32] ‖ provider [32] ‖ validator [20] ‖ round u64 ‖ round_id [32] ‖
//!   registered_at u64 ‖ part u32 ‖ commitment [32] ‖ count u32 ‖ (revealed row as var
//!   bytes)…`
//! - Memory commitments, openings and answers (tags 2, 3, 4): [`memory`].

pub mod memory;

use ergon_pouw::dispute::{MAX_REVEALED_ROW_BYTES, MAX_REVEAL_ROWS};
use ergon_pouw::RevealedRow;

use crate::codec::{Canonical, Reader, Writer};
use crate::hash::Hash;
use crate::keys::{Address, PublicKey, SecretKey, Signature};
use crate::TypesError;
pub use memory::{MemoryAnswer, MemoryCommit, MemoryOpen, MemoryOpening, OpenedBlock};

const VERSION: u8 = 1;
const SIGNING_DOMAIN: &[u8] = b"ergon v1 poai message";

/// Providers one announcement may name.
pub const MAX_ROUND_PROVIDERS: usize = 4096;
/// Parts a round may have, and rows an answer may open (what a provider agrees to compute is
/// bounded by these and by its own claim, never by the validator's wish).
pub const MAX_PARTS: u32 = 32;
pub const MAX_OPENINGS: u32 = MAX_REVEAL_ROWS as u32;
/// Longest part a validator may ask for, at the class it names.
pub const MAX_TARGET_NS: u64 = 1_000_000_000;
/// Largest signed answer.
pub const ANSWER_MAX_BYTES: usize =
    2 + 32 + 32 + 20 + 8 + 32 + 8 + 4 + 32 + 4 + MAX_REVEAL_ROWS * (4 + MAX_REVEALED_ROW_BYTES) + 64;
/// Largest signed round announcement.
pub const ROUND_MAX_BYTES: usize = 2 + 32 + 32 + 8 + 32 + 32 + 1 + 8 + 4 + 4 + 4 + MAX_ROUND_PROVIDERS * 28 + 64;

/// A validator's round: every provider it names must answer its parts, derived from `seed` (the
/// id of a recent block), at the class named for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Round {
    pub chain: Hash,
    pub validator: PublicKey,
    pub round: u64,
    /// The id of a recent block of the chain (the round is no older than it), ...
    pub seed: Hash,
    /// ... and the validator's fresh randomness, so nobody can compute the parts before the
    /// announcement (a block id alone is known a block in advance).
    pub nonce: [u8; 32],
    /// A liveness probe: one part of the smallest size, untimed.
    pub probe: bool,
    pub target_ns: u64,
    pub parts: u32,
    pub openings: u32,
    /// (provider, the int8 class in G MAC/s it is tested at; 0 in a probe).
    pub classes: Vec<(Address, u64)>,
}

/// What every part of a round with this block id and nonce is derived from.
pub fn challenge_seed(seed: &Hash, nonce: &[u8; 32]) -> Hash {
    Hash::of("ergon v1 poai round seed", &[&seed.0, nonce])
}

impl Round {
    /// What every part of this round is derived from.
    pub fn challenge_seed(&self) -> Hash {
        challenge_seed(&self.seed, &self.nonce)
    }

    /// The identity of this announcement: answers name it, so an answer signed for one set of
    /// parameters can never be presented as an answer to another.
    pub fn id(&self) -> Hash {
        let mut w = Writer::new();
        PoaiBody::Round(self.clone()).write(&mut w);
        Hash::of("ergon v1 poai round id", &[&w.finish()])
    }
}

/// A provider's answer to part `part` of `validator`'s round `round`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub chain: Hash,
    pub provider: PublicKey,
    pub validator: Address,
    pub round: u64,
    /// [`Round::id`] of the announcement answered.
    pub round_id: Hash,
    /// The height of the provider's latest registration: a proof of a wrong answer slashes
    /// the registration that gave it, once.
    pub registered_at: u64,
    pub part: u32,
    pub commitment: [u8; 32],
    pub openings: Vec<RevealedRow>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoaiBody {
    Round(Round),
    Answer(Answer),
    MemoryCommit(MemoryCommit),
    MemoryOpen(MemoryOpen),
    MemoryAnswer(MemoryAnswer),
}

/// A signed Proof-of-AI message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoaiMessage {
    pub body: PoaiBody,
    pub signature: Signature,
}

impl PoaiBody {
    /// The key that must have signed it.
    pub fn signer(&self) -> &PublicKey {
        match self {
            PoaiBody::Round(r) => &r.validator,
            PoaiBody::Answer(a) => &a.provider,
            PoaiBody::MemoryCommit(c) => &c.provider,
            PoaiBody::MemoryOpen(o) => &o.validator,
            PoaiBody::MemoryAnswer(a) => &a.provider,
        }
    }

    pub fn chain(&self) -> Hash {
        match self {
            PoaiBody::Round(r) => r.chain,
            PoaiBody::Answer(a) => a.chain,
            PoaiBody::MemoryCommit(c) => c.chain,
            PoaiBody::MemoryOpen(o) => o.chain,
            PoaiBody::MemoryAnswer(a) => a.chain,
        }
    }

    fn write(&self, w: &mut Writer) {
        w.u8(VERSION);
        match self {
            PoaiBody::Round(r) => {
                w.u8(0).bytes(&r.chain.0).bytes(&r.validator.0).u64(r.round).bytes(&r.seed.0).bytes(&r.nonce);
                w.u8(r.probe as u8).u64(r.target_ns).u32(r.parts).u32(r.openings).u32(r.classes.len() as u32);
                for (provider, class) in &r.classes {
                    w.bytes(&provider.0).u64(*class);
                }
            }
            PoaiBody::Answer(a) => {
                w.u8(1).bytes(&a.chain.0).bytes(&a.provider.0).bytes(&a.validator.0).u64(a.round);
                w.bytes(&a.round_id.0).u64(a.registered_at).u32(a.part);
                w.bytes(&a.commitment).u32(a.openings.len() as u32);
                for o in &a.openings {
                    w.var_bytes(&o.encode());
                }
            }
            PoaiBody::MemoryCommit(c) => c.write(w.u8(2)),
            PoaiBody::MemoryOpen(o) => o.write(w.u8(3)),
            PoaiBody::MemoryAnswer(a) => a.write(w.u8(4)),
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, TypesError> {
        r.version(VERSION)?;
        Ok(match r.u8()? {
            0 => {
                let (chain, validator, round, seed) =
                    (Hash(r.array()?), PublicKey(r.array()?), r.u64()?, Hash(r.array()?));
                let nonce = r.array()?;
                let probe = match r.u8()? {
                    0 => false,
                    1 => true,
                    b => return r.fail(format!("probe flag {b}")),
                };
                let (target_ns, parts, openings) = (r.u64()?, r.u32()?, r.u32()?);
                if !(1..=MAX_PARTS).contains(&parts) || !(1..=MAX_OPENINGS).contains(&openings) {
                    return r.fail(format!(
                        "{parts} parts opening {openings} rows each; at most {MAX_PARTS} and {MAX_OPENINGS}"
                    ));
                }
                if target_ns > MAX_TARGET_NS {
                    return r.fail(format!("parts of {target_ns} ns; at most {MAX_TARGET_NS}"));
                }
                let count = r.count(MAX_ROUND_PROVIDERS, 28)?;
                let mut classes = Vec::with_capacity(count);
                for _ in 0..count {
                    classes.push((Address(r.array()?), r.u64()?));
                }
                PoaiBody::Round(Round {
                    chain,
                    validator,
                    round,
                    seed,
                    nonce,
                    probe,
                    target_ns,
                    parts,
                    openings,
                    classes,
                })
            }
            1 => {
                let (chain, provider, validator) = (Hash(r.array()?), PublicKey(r.array()?), Address(r.array()?));
                let (round, round_id, registered_at) = (r.u64()?, Hash(r.array()?), r.u64()?);
                let (part, commitment) = (r.u32()?, r.array()?);
                let count = r.count(MAX_OPENINGS as usize, 4)?;
                let mut openings = Vec::with_capacity(count);
                for _ in 0..count {
                    match RevealedRow::decode(r.var_bytes(MAX_REVEALED_ROW_BYTES)?) {
                        Ok(row) => openings.push(row),
                        Err(e) => return r.fail(e.to_string()),
                    }
                }
                PoaiBody::Answer(Answer {
                    chain,
                    provider,
                    validator,
                    round,
                    round_id,
                    registered_at,
                    part,
                    commitment,
                    openings,
                })
            }
            2 => PoaiBody::MemoryCommit(MemoryCommit::read(r)?),
            3 => PoaiBody::MemoryOpen(MemoryOpen::read(r)?),
            4 => PoaiBody::MemoryAnswer(MemoryAnswer::read(r)?),
            tag => return r.fail(format!("unknown Proof-of-AI message {tag}")),
        })
    }

    fn signing_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        let mut m = SIGNING_DOMAIN.to_vec();
        m.extend_from_slice(&w.finish());
        m
    }

    /// Signs it; `key` must be the signer's (see [`PoaiBody::signer`]).
    pub fn sign(self, key: &SecretKey) -> PoaiMessage {
        let signature = key.sign(&self.signing_bytes());
        PoaiMessage { body: self, signature }
    }
}

impl PoaiMessage {
    /// Checks the signature against the signer the body names.
    pub fn verify(&self) -> Result<(), TypesError> {
        self.body.signer().verify(&self.body.signing_bytes(), &self.signature)
    }
}

impl Canonical for PoaiMessage {
    const MAX_BYTES: usize = {
        let memory = 2 + memory::MEMORY_ANSWER_MAX_BYTES + 64;
        let compute = if ROUND_MAX_BYTES > ANSWER_MAX_BYTES { ROUND_MAX_BYTES } else { ANSWER_MAX_BYTES };
        if memory > compute {
            memory
        } else {
            compute
        }
    };

    fn write(&self, w: &mut Writer) {
        self.body.write(w);
        w.bytes(&self.signature.0);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, TypesError> {
        let body = PoaiBody::read(r)?;
        Ok(PoaiMessage { body, signature: Signature(r.array()?) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SecretKey {
        SecretKey::from_bytes(&[b; 32])
    }

    #[test]
    fn messages_round_trip_verify_and_refuse_tampering_and_bad_bounds() {
        let round = PoaiBody::Round(Round {
            chain: Hash([1; 32]),
            validator: key(1).public(),
            round: 7,
            seed: Hash([2; 32]),
            nonce: [5; 32],
            probe: false,
            target_ns: 100_000_000,
            parts: 10,
            openings: 8,
            classes: vec![(Address([3; 20]), 88), (Address([4; 20]), 1)],
        })
        .sign(&key(1));
        let c = ergon_kernels::MatI32::from_vec(2, 3, vec![1, -2, 3, 4, 5, -6]).unwrap();
        let row = RevealedRow::build(&c, 1).unwrap();
        let answer = PoaiBody::Answer(Answer {
            chain: Hash([1; 32]),
            provider: key(2).public(),
            validator: key(1).public().address(),
            round: 7,
            round_id: Hash([6; 32]),
            registered_at: 4,
            part: 3,
            commitment: ergon_pouw::result_root(&c),
            openings: vec![row],
        })
        .sign(&key(2));
        for m in [&round, &answer] {
            let back = PoaiMessage::decode(&m.encode()).unwrap();
            assert_eq!(&back, m);
            assert_eq!(back.verify(), Ok(()));
        }
        // Signed by someone else than the sender it names; a field changed after signing.
        let forged = PoaiMessage { body: answer.body.clone(), signature: key(3).sign(b"anything") };
        assert!(forged.verify().is_err());
        let mut bytes = round.encode();
        bytes[2 + 32 + 32] ^= 1; // the round number
        assert!(PoaiMessage::decode(&bytes).unwrap().verify().is_err());
        // Bounds a validator cannot exceed: too many parts, too long parts.
        let PoaiBody::Round(r) = &round.body else { unreachable!() };
        for bad in [Round { parts: MAX_PARTS + 1, ..r.clone() }, Round { target_ns: MAX_TARGET_NS + 1, ..r.clone() }] {
            let m = PoaiBody::Round(bad).sign(&key(1));
            assert!(PoaiMessage::decode(&m.encode()).is_err());
        }
        // Truncation anywhere is an error, never a panic.
        let bytes = answer.encode();
        for cut in 0..bytes.len() {
            assert!(PoaiMessage::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn memory_messages_round_trip_and_refuse_bad_blocks_and_deadlines() {
        let chain = Hash([1; 32]);
        let commit = PoaiBody::MemoryCommit(MemoryCommit {
            chain,
            provider: key(2).public(),
            epoch: 720,
            seed: Hash([2; 32]),
            claimed_mib: 4096,
            root: [3; 32],
        })
        .sign(&key(2));
        let open = MemoryOpen {
            chain,
            validator: key(1).public(),
            epoch: 720,
            seed: Hash([2; 32]),
            open: 3,
            nonce: [4; 32],
            deadline_ms: 800,
            providers: vec![key(2).public().address()],
        };
        let block = |index: u64| OpenedBlock { index, bytes: vec![7; 1024], path: vec![[8; 32]; 20] };
        let answer = MemoryAnswer {
            chain,
            provider: key(2).public(),
            validator: key(1).public().address(),
            open_id: open.id(),
            openings: vec![MemoryOpening { block: block(9), prev: Some(block(8)), refs: (0..8).map(block).collect() }],
        };
        let signed_open = PoaiBody::MemoryOpen(open.clone()).sign(&key(1));
        let signed_answer = PoaiBody::MemoryAnswer(answer.clone()).sign(&key(2));
        for m in [&commit, &signed_open, &signed_answer] {
            let back = PoaiMessage::decode(&m.encode()).unwrap();
            assert_eq!(&back, m);
            assert_eq!(back.verify(), Ok(()));
        }
        // A whole answer of 32 openings fits the bound.
        let full = MemoryAnswer { openings: vec![answer.openings[0].clone(); 32], ..answer.clone() };
        assert!(PoaiBody::MemoryAnswer(full).sign(&key(2)).encode().len() <= <PoaiMessage as Canonical>::MAX_BYTES);
        // A block of the wrong size; too many openings; a deadline of 0 or over the limit.
        let mut short = answer.clone();
        short.openings[0].block.bytes.pop();
        let too_many = MemoryAnswer { openings: vec![answer.openings[0].clone(); 33], ..answer.clone() };
        for bad in [PoaiBody::MemoryAnswer(short), PoaiBody::MemoryAnswer(too_many)] {
            assert!(PoaiMessage::decode(&bad.sign(&key(2)).encode()).is_err());
        }
        for deadline_ms in [0, memory::MAX_MEMORY_DEADLINE_MS + 1] {
            let m = PoaiBody::MemoryOpen(MemoryOpen { deadline_ms, ..open.clone() }).sign(&key(1));
            assert!(PoaiMessage::decode(&m.encode()).is_err());
        }
        // The opening's id changes with any field (an answer cannot be moved to another one).
        assert_ne!(open.id(), MemoryOpen { nonce: [5; 32], ..open.clone() }.id());
        let bytes = signed_answer.encode();
        for cut in (0..bytes.len()).step_by(97) {
            assert!(PoaiMessage::decode(&bytes[..cut]).is_err());
        }
    }
}
