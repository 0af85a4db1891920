//! The memory challenge's messages (`docs/poai.md` §7): a provider's commitment to its fill for
//! one memory epoch, a validator's opening of every committed fill at one moment, and a
//! provider's answer with the opened blocks.
//!
//! Encodings (inside a [`super::PoaiMessage`]):
//! - MemoryCommit (tag 2): `chain [32] ‖ provider [32] ‖ epoch u64 ‖ seed [32] ‖ claimed_mib u64
//!   ‖ root [32]`
//! - MemoryOpen (tag 3): `chain [32] ‖ validator [32] ‖ epoch u64 ‖ seed [32] ‖ open u64 ‖ nonce
//!   [32] ‖ deadline_ms u32 ‖ count u32 ‖ provider [20]…`
//! - MemoryAnswer (tag 4): `chain [32] ‖ provider [32] ‖ validator [20] ‖ open_id [32] ‖ count u32
//!   ‖ opening…`, an opening `block ‖ has_prev u8 ‖ [block] ‖ count u32 ‖ block…`, a block
//!   `index u64 ‖ bytes (var, exactly MEMORY_BLOCK_BYTES) ‖ count u32 ‖ sibling [32]…`

use crate::codec::{Reader, Writer};
use crate::hash::Hash;
use crate::keys::{Address, PublicKey};
use crate::TypesError;

/// Bytes per block of a fill.
pub const MEMORY_BLOCK_BYTES: usize = 1024;
/// Earlier blocks each block is computed from (besides its predecessor).
pub const MEMORY_REFS: usize = 8;
/// Blocks an answer opens.
pub const MEMORY_OPENINGS: usize = 32;
/// Longest Merkle path (2⁴⁸ blocks of 1 KiB: more memory than any machine has).
pub const MAX_MEMORY_PATH: usize = 48;
/// Longest answer deadline a validator may set.
pub const MAX_MEMORY_DEADLINE_MS: u32 = 60_000;

const BLOCK_MAX_BYTES: usize = 8 + 4 + MEMORY_BLOCK_BYTES + 4 + MAX_MEMORY_PATH * 32;
const OPENING_MAX_BYTES: usize = BLOCK_MAX_BYTES * 2 + 1 + 4 + MEMORY_REFS * BLOCK_MAX_BYTES;
/// Largest memory answer body.
pub const MEMORY_ANSWER_MAX_BYTES: usize = 32 + 32 + 20 + 32 + 4 + MEMORY_OPENINGS * OPENING_MAX_BYTES;

/// A provider's commitment to the fill of memory epoch `epoch` (the height it starts at, whose
/// block id is `seed`), sized to `claimed_mib`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryCommit {
    pub chain: Hash,
    pub provider: PublicKey,
    pub epoch: u64,
    pub seed: Hash,
    pub claimed_mib: u64,
    pub root: [u8; 32],
}

/// A validator's opening: every provider named must answer for its committed fill of `epoch`,
/// the blocks chosen by `nonce`, within `deadline_ms` of this message leaving the validator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryOpen {
    pub chain: Hash,
    pub validator: PublicKey,
    pub epoch: u64,
    pub seed: Hash,
    /// The validator's count of its openings (increasing: replays are not relayed).
    pub open: u64,
    pub nonce: [u8; 32],
    pub deadline_ms: u32,
    pub providers: Vec<Address>,
}

/// One block of a fill with its Merkle path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedBlock {
    pub index: u64,
    pub bytes: Vec<u8>,
    pub path: Vec<[u8; 32]>,
}

/// The answer for one chosen block: it, its predecessor (none for a lane's first) and the
/// blocks it references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryOpening {
    pub block: OpenedBlock,
    pub prev: Option<OpenedBlock>,
    pub refs: Vec<OpenedBlock>,
}

/// A provider's answer to the opening whose [`MemoryOpen::id`] is `open_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryAnswer {
    pub chain: Hash,
    pub provider: PublicKey,
    pub validator: Address,
    pub open_id: Hash,
    pub openings: Vec<MemoryOpening>,
}

impl MemoryOpen {
    /// The identity of this opening: an answer names it.
    pub fn id(&self) -> Hash {
        let mut w = Writer::new();
        self.write(&mut w);
        Hash::of("ergon v1 poai memory open id", &[&w.finish()])
    }

    pub(super) fn write(&self, w: &mut Writer) {
        w.bytes(&self.chain.0).bytes(&self.validator.0).u64(self.epoch).bytes(&self.seed.0).u64(self.open);
        w.bytes(&self.nonce).u32(self.deadline_ms).u32(self.providers.len() as u32);
        for p in &self.providers {
            w.bytes(&p.0);
        }
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Result<Self, TypesError> {
        let (chain, validator, epoch, seed) = (Hash(r.array()?), PublicKey(r.array()?), r.u64()?, Hash(r.array()?));
        let (open, nonce, deadline_ms) = (r.u64()?, r.array()?, r.u32()?);
        if deadline_ms == 0 || deadline_ms > MAX_MEMORY_DEADLINE_MS {
            return r.fail(format!("a deadline of {deadline_ms} ms; 1..={MAX_MEMORY_DEADLINE_MS}"));
        }
        let count = r.count(super::MAX_ROUND_PROVIDERS, 20)?;
        let providers = (0..count).map(|_| r.array().map(Address)).collect::<Result<_, _>>()?;
        Ok(MemoryOpen { chain, validator, epoch, seed, open, nonce, deadline_ms, providers })
    }
}

impl MemoryCommit {
    pub(super) fn write(&self, w: &mut Writer) {
        w.bytes(&self.chain.0).bytes(&self.provider.0).u64(self.epoch).bytes(&self.seed.0);
        w.u64(self.claimed_mib).bytes(&self.root);
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Result<Self, TypesError> {
        let (chain, provider, epoch, seed) = (Hash(r.array()?), PublicKey(r.array()?), r.u64()?, Hash(r.array()?));
        Ok(MemoryCommit { chain, provider, epoch, seed, claimed_mib: r.u64()?, root: r.array()? })
    }
}

impl OpenedBlock {
    fn write(&self, w: &mut Writer) {
        w.u64(self.index).var_bytes(&self.bytes).u32(self.path.len() as u32);
        for s in &self.path {
            w.bytes(s);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, TypesError> {
        let index = r.u64()?;
        let bytes = r.var_bytes(MEMORY_BLOCK_BYTES)?.to_vec();
        if bytes.len() != MEMORY_BLOCK_BYTES {
            return r.fail(format!("a block of {} bytes; blocks are {MEMORY_BLOCK_BYTES}", bytes.len()));
        }
        let count = r.count(MAX_MEMORY_PATH, 32)?;
        let path = (0..count).map(|_| r.array()).collect::<Result<_, _>>()?;
        Ok(OpenedBlock { index, bytes, path })
    }
}

impl MemoryAnswer {
    pub(super) fn write(&self, w: &mut Writer) {
        w.bytes(&self.chain.0).bytes(&self.provider.0).bytes(&self.validator.0).bytes(&self.open_id.0);
        w.u32(self.openings.len() as u32);
        for o in &self.openings {
            o.block.write(w);
            match &o.prev {
                Some(p) => {
                    w.u8(1);
                    p.write(w);
                }
                None => {
                    w.u8(0);
                }
            }
            w.u32(o.refs.len() as u32);
            for b in &o.refs {
                b.write(w);
            }
        }
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Result<Self, TypesError> {
        let (chain, provider, validator, open_id) =
            (Hash(r.array()?), PublicKey(r.array()?), Address(r.array()?), Hash(r.array()?));
        let count = r.count(MEMORY_OPENINGS, 8 + 4 + MEMORY_BLOCK_BYTES)?;
        let mut openings = Vec::with_capacity(count);
        for _ in 0..count {
            let block = OpenedBlock::read(r)?;
            let prev = match r.u8()? {
                0 => None,
                1 => Some(OpenedBlock::read(r)?),
                b => return r.fail(format!("predecessor flag {b}")),
            };
            let refs_count = r.count(MEMORY_REFS, 8 + 4 + MEMORY_BLOCK_BYTES)?;
            let refs = (0..refs_count).map(|_| OpenedBlock::read(r)).collect::<Result<_, _>>()?;
            openings.push(MemoryOpening { block, prev, refs });
        }
        Ok(MemoryAnswer { chain, provider, validator, open_id, openings })
    }
}
