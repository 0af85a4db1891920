//! Block headers and blocks.
//!
//! Header encoding, version 1: `version u8 = 1 ‖ parent Hash ‖ height u64 ‖ time_ms u64 ‖
//! state_root Hash ‖ tx_root Hash ‖ job Hash ‖ work (76 bytes, pouw::WorkCommitment) ‖ miner Address
//! ‖ difficulty u64 ‖ nonce u64 ‖ proof_hash Hash`.
//!
//! The PoUW challenge seals everything but the nonce and the proof: its header bytes are the
//! encoding up to and including `difficulty` ([`BlockHeader::sealed_bytes`]). The block id hashes
//! the whole header, whose `proof_hash` commits to the proof carried beside it.
//!
//! Block encoding: `header ‖ proof (u32 length ‖ pouw proof bytes) ‖ count u32 ‖ transactions`.

use ergon_pouw::{Challenge, Proof, WorkCommitment, WORK_BYTES};

use crate::codec::{Canonical, Reader, Writer};
use crate::hash::Hash;
use crate::keys::Address;
use crate::tx::SignedTransaction;
use crate::TypesError;

const VERSION: u8 = 1;

/// Most transactions in one block.
pub const MAX_TXS: usize = 20_000;
/// Most bytes of encoded transactions one block may carry (with the largest proof the block
/// still fits the network's 16 MiB message cap).
pub const MAX_TX_BYTES: usize = 8 << 20;

/// A block header: everything needed to check the block's proof of useful work and its place in
/// the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    pub parent: Hash,
    pub height: u64,
    /// Milliseconds since the Unix epoch, as claimed by the miner (bounded by consensus rules).
    pub time_ms: u64,
    /// Commitment to the ledger state after this block.
    pub state_root: Hash,
    /// Commitment to the block's transactions ([`tx_root`]).
    pub tx_root: Hash,
    /// The job whose product was mined on; [`Hash::ZERO`] for filler matrices.
    pub job: Hash,
    /// Shapes and Merkle roots of the matrices the PoUW was computed on.
    pub work: WorkCommitment,
    pub miner: Address,
    /// Expected multiply-adds per winning ticket.
    pub difficulty: u64,
    pub nonce: u64,
    /// BLAKE3 of the encoded PoUW proof.
    pub proof_hash: Hash,
}

impl BlockHeader {
    /// The bytes the PoUW seals: the encoding without `nonce` and `proof_hash`.
    pub fn sealed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write_sealed(&mut w);
        w.finish()
    }

    fn write_sealed(&self, w: &mut Writer) {
        w.u8(VERSION)
            .bytes(&self.parent.0)
            .u64(self.height)
            .u64(self.time_ms)
            .bytes(&self.state_root.0)
            .bytes(&self.tx_root.0)
            .bytes(&self.job.0)
            .bytes(&self.work.encode())
            .bytes(&self.miner.0)
            .u64(self.difficulty);
    }

    /// The PoUW puzzle this header poses.
    pub fn challenge(&self) -> Result<Challenge, TypesError> {
        Challenge::new(self.sealed_bytes(), self.work, self.difficulty).map_err(|e| TypesError::Invalid(e.to_string()))
    }

    /// The block id.
    pub fn id(&self) -> Hash {
        Hash::of("ergon v1 block id", &[&self.encode()])
    }
}

impl Canonical for BlockHeader {
    const MAX_BYTES: usize = 1 + 32 + 8 + 8 + 32 * 3 + WORK_BYTES + 20 + 8 + 8 + 32;

    fn write(&self, w: &mut Writer) {
        self.write_sealed(w);
        w.u64(self.nonce).bytes(&self.proof_hash.0);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, TypesError> {
        r.version(VERSION)?;
        let parent = Hash(r.array()?);
        let (height, time_ms) = (r.u64()?, r.u64()?);
        let (state_root, tx_root, job) = (Hash(r.array()?), Hash(r.array()?), Hash(r.array()?));
        let work = WorkCommitment::decode(&r.array::<WORK_BYTES>()?).map_err(|e| TypesError::Invalid(e.to_string()))?;
        let miner = Address(r.array()?);
        let (difficulty, nonce) = (r.u64()?, r.u64()?);
        Ok(Self {
            parent,
            height,
            time_ms,
            state_root,
            tx_root,
            job,
            work,
            miner,
            difficulty,
            nonce,
            proof_hash: Hash(r.array()?),
        })
    }
}

/// Commitment to an ordered list of transactions: a binary Merkle tree over their ids (a node
/// without a sibling moves up unchanged), so a light client can check one transaction's inclusion.
pub fn tx_root(txs: &[SignedTransaction]) -> Hash {
    let mut level: Vec<Hash> = txs.iter().map(SignedTransaction::id).collect();
    if level.is_empty() {
        return Hash::of("ergon v1 empty tx root", &[]);
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| if p.len() == 2 { Hash::of("ergon v1 tx node", &[&p[0].0, &p[1].0]) } else { p[0] })
            .collect();
    }
    level[0]
}

/// A block: header, the PoUW proof it commits to, and its transactions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub header: BlockHeader,
    pub proof: Proof,
    pub txs: Vec<SignedTransaction>,
}

impl Block {
    /// Checks what a block's bytes alone can show: the proof and transaction commitments and the
    /// PoUW proof against the header. (Signatures, nonces, balances, time and difficulty are the
    /// chain's business.)
    pub fn check_self_consistent(&self) -> Result<ergon_pouw::Ticket, TypesError> {
        if self.header.nonce != self.proof.nonce {
            return Err(TypesError::Invalid(format!(
                "header nonce {} differs from the proof's nonce {}",
                self.header.nonce, self.proof.nonce
            )));
        }
        if self.header.proof_hash != proof_hash(&self.proof) {
            return Err(TypesError::Invalid("header's proof hash does not match the proof".into()));
        }
        if self.txs.len() > MAX_TXS {
            return Err(TypesError::Invalid(format!("{} transactions exceed the limit {MAX_TXS}", self.txs.len())));
        }
        let tx_bytes: usize = self.txs.iter().map(|t| t.encode().len()).sum();
        if tx_bytes > MAX_TX_BYTES {
            return Err(TypesError::Invalid(format!(
                "{tx_bytes} bytes of transactions exceed the limit {MAX_TX_BYTES}"
            )));
        }
        if self.header.tx_root != tx_root(&self.txs) {
            return Err(TypesError::Invalid("header's transaction root does not match the transactions".into()));
        }
        ergon_pouw::verify(&self.header.challenge()?, &self.proof).map_err(|e| TypesError::Invalid(e.to_string()))
    }
}

/// Most (header, proof) pairs one [`Headers`] message carries.
pub const MAX_HEADERS: usize = 256;

/// A run of block headers, each with its proof, as a peer sends them for headers-first sync:
/// enough to check a branch's work without its transactions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Headers(pub Vec<(BlockHeader, Proof)>);

impl Headers {
    const VERSION: u8 = 1;
}

impl Canonical for Headers {
    /// The network's message bound: a sender stops adding pairs before it.
    const MAX_BYTES: usize = 16 << 20;

    fn write(&self, w: &mut Writer) {
        w.u8(Self::VERSION).u32(self.0.len() as u32);
        for (h, p) in &self.0 {
            h.write(w);
            w.var_bytes(&p.encode());
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, TypesError> {
        r.version(Self::VERSION)?;
        let n = r.count(MAX_HEADERS, BlockHeader::MAX_BYTES / 2)?;
        let mut run = Vec::with_capacity(n);
        for _ in 0..n {
            let header = BlockHeader::read(r)?;
            let proof = Proof::decode(r.var_bytes(ergon_pouw::MAX_PROOF_BYTES)?)
                .map_err(|e| TypesError::Invalid(e.to_string()))?;
            run.push((header, proof));
        }
        Ok(Headers(run))
    }
}

/// The hash a header commits to for its proof.
pub fn proof_hash(proof: &Proof) -> Hash {
    Hash::of("ergon v1 pouw proof", &[&proof.encode()])
}

impl Canonical for Block {
    const MAX_BYTES: usize = BlockHeader::MAX_BYTES + 4 + ergon_pouw::MAX_PROOF_BYTES + 4 + MAX_TX_BYTES;

    fn write(&self, w: &mut Writer) {
        self.header.write(w);
        w.var_bytes(&self.proof.encode());
        w.u32(self.txs.len() as u32);
        for tx in &self.txs {
            tx.write(w);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, TypesError> {
        let header = BlockHeader::read(r)?;
        let proof =
            Proof::decode(r.var_bytes(ergon_pouw::MAX_PROOF_BYTES)?).map_err(|e| TypesError::Invalid(e.to_string()))?;
        // The smallest transaction (stake/unstake) is 124 bytes.
        let count = r.count(MAX_TXS, 124)?;
        let txs = (0..count).map(|_| SignedTransaction::read(r)).collect::<Result<_, _>>()?;
        Ok(Self { header, proof, txs })
    }
}
