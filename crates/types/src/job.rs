//! What the compute market trades: a provider's offer (hardware profile and price) and a client's
//! job (what to compute, on which committed inputs, under which requirements, for how much).
//!
//! Both travel inside transactions, so they share the canonical encoding and its limits. Prices
//! are integers in base units per 10^9 multiply-adds ("per G MAC"), so every node computes the
//! same payment.

use ergon_pouw::{WorkCommitment, WORK_BYTES};

use crate::codec::{Reader, Writer};
use crate::hash::Hash;
use crate::TypesError;

/// A job's id: derived from the id of the transaction that submitted it, so the client knows it
/// before the job is in a block.
pub fn job_id(submit_tx: &Hash) -> Hash {
    Hash::of("ergon v1 job id", &[&submit_tx.0])
}

/// Most output shards one job may be split into.
pub const MAX_SHARDS: usize = 64;
/// Most input blobs one job may name.
pub const MAX_INPUTS: usize = 8;
/// Longest GPU model name in a profile.
pub const MAX_GPU_MODEL: usize = 64;
/// Most replicas of one shard a job may ask for.
pub const MAX_REPLICAS: u8 = 5;

/// What a provider says its machine has. `ergon bench hw` measures it; other nodes cannot, so the
/// challenge engine (PoAI) checks it, and until then matching trusts it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HardwareProfile {
    pub cpu_cores: u32,
    pub memory_mib: u64,
    /// Empty when the machine has no GPU.
    pub gpu_model: String,
    pub gpu_memory_mib: u64,
    /// Measured exact int8 throughput, in 10^9 multiply-adds per second.
    pub int8_gmacs: u64,
}

impl HardwareProfile {
    pub const MAX_BYTES: usize = 4 + 8 + 4 + MAX_GPU_MODEL + 8 + 8;

    pub fn write(&self, w: &mut Writer) {
        w.u32(self.cpu_cores).u64(self.memory_mib).var_bytes(self.gpu_model.as_bytes());
        w.u64(self.gpu_memory_mib).u64(self.int8_gmacs);
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Self, TypesError> {
        let cpu_cores = r.u32()?;
        let memory_mib = r.u64()?;
        let model = r.var_bytes(MAX_GPU_MODEL)?;
        let gpu_model = match std::str::from_utf8(model) {
            Ok(s) => s.to_string(),
            Err(_) => return r.fail("GPU model is not UTF-8"),
        };
        Ok(Self { cpu_cores, memory_mib, gpu_model, gpu_memory_mib: r.u64()?, int8_gmacs: r.u64()? })
    }
}

/// A provider's standing offer.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Offer {
    pub profile: HardwareProfile,
    /// Asking price per 10^9 multiply-adds.
    pub price_per_gmac: u64,
    /// Leases held at once (1..=16): a second one lets the provider fetch inputs while computing.
    pub slots: u8,
    /// X25519 public key clients encrypt job inputs to.
    pub encryption_key: [u8; 32],
}

impl Offer {
    pub const MAX_BYTES: usize = HardwareProfile::MAX_BYTES + 8 + 1 + 32;
    pub const MAX_SLOTS: u8 = 16;

    pub fn write(&self, w: &mut Writer) {
        self.profile.write(w);
        w.u64(self.price_per_gmac).u8(self.slots).bytes(&self.encryption_key);
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Self, TypesError> {
        let profile = HardwareProfile::read(r)?;
        Ok(Self { profile, price_per_gmac: r.u64()?, slots: r.u8()?, encryption_key: r.array()? })
    }
}

/// The kind of work a job asks for. Every kind runs its matrix products through the mining path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum JobKind {
    /// One exact int8 product A·B, optionally split by rows of A into shards.
    Matmul,
    /// Batch inference of a quantized model over a data set.
    Infer,
    /// Training a quantized model on a data set.
    Train,
}

impl JobKind {
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Matmul => "matmul",
            JobKind::Infer => "infer",
            JobKind::Train => "train",
        }
    }
}

/// A content-addressed input: BLAKE3 of its plaintext bytes, and their length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobRef {
    pub id: Hash,
    pub size: u64,
}

/// What a provider must have to take a shard of the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Requirements {
    pub min_memory_mib: u64,
    pub min_int8_gmacs: u64,
    pub gpu: bool,
    /// Independent providers per shard (1 = no replication).
    pub replicas: u8,
    /// Blocks a lease may run before it is closed and the shard re-allocated.
    pub lease_blocks: u32,
}

/// A client's job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSpec {
    pub kind: JobKind,
    pub inputs: Vec<BlobRef>,
    /// The products providers mine on, one per shard: for `matmul`, rows of A times B; for `infer`
    /// and `train`, the first layer's product over the committed data (the later products depend
    /// on results and cannot be committed in advance).
    pub shards: Vec<WorkCommitment>,
    /// Multiply-adds per shard the client pays for (for `matmul` exactly m·k·n of the shard).
    pub macs_per_shard: u64,
    pub requirements: Requirements,
    /// Highest price per 10^9 multiply-adds the client accepts.
    pub max_price_per_gmac: u64,
    /// X25519 public key the results are encrypted to.
    pub client_key: [u8; 32],
}

impl JobSpec {
    pub const MAX_BYTES: usize =
        1 + 4 + MAX_INPUTS * 40 + 4 + MAX_SHARDS * WORK_BYTES + 8 + (8 + 8 + 1 + 1 + 4) + 8 + 32;

    /// What the client escrows: every shard and replica at the maximum price, each task rounded
    /// up to a whole unit (as its payment is), so even a job worth under one unit pays its
    /// provider.
    pub fn max_cost(&self) -> Option<u64> {
        let task = (self.macs_per_shard as u128 * self.max_price_per_gmac as u128).div_ceil(1_000_000_000);
        let cost = task * self.shards.len() as u128 * self.requirements.replicas as u128;
        u64::try_from(cost).ok()
    }

    pub fn write(&self, w: &mut Writer) {
        w.u8(match self.kind {
            JobKind::Matmul => 0,
            JobKind::Infer => 1,
            JobKind::Train => 2,
        });
        w.u32(self.inputs.len() as u32);
        for b in &self.inputs {
            w.bytes(&b.id.0).u64(b.size);
        }
        w.u32(self.shards.len() as u32);
        for s in &self.shards {
            w.bytes(&s.encode());
        }
        let q = &self.requirements;
        w.u64(self.macs_per_shard).u64(q.min_memory_mib).u64(q.min_int8_gmacs).u8(q.gpu as u8);
        w.u8(q.replicas).u32(q.lease_blocks).u64(self.max_price_per_gmac).bytes(&self.client_key);
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Self, TypesError> {
        let kind = match r.u8()? {
            0 => JobKind::Matmul,
            1 => JobKind::Infer,
            2 => JobKind::Train,
            k => return r.fail(format!("unknown job kind {k}")),
        };
        let n = r.count(MAX_INPUTS, 40)?;
        let inputs = (0..n).map(|_| Ok(BlobRef { id: Hash(r.array()?), size: r.u64()? })).collect::<Result<_, _>>()?;
        let n = r.count(MAX_SHARDS, WORK_BYTES)?;
        let mut shards = Vec::with_capacity(n);
        for _ in 0..n {
            let bytes = r.array::<WORK_BYTES>()?;
            shards.push(WorkCommitment::decode(&bytes).map_err(|e| TypesError::Invalid(e.to_string()))?);
        }
        let macs_per_shard = r.u64()?;
        let (min_memory_mib, min_int8_gmacs) = (r.u64()?, r.u64()?);
        let gpu = match r.u8()? {
            0 => false,
            1 => true,
            g => return r.fail(format!("gpu flag {g} is neither 0 nor 1")),
        };
        let requirements =
            Requirements { min_memory_mib, min_int8_gmacs, gpu, replicas: r.u8()?, lease_blocks: r.u32()? };
        Ok(Self {
            kind,
            inputs,
            shards,
            macs_per_shard,
            requirements,
            max_price_per_gmac: r.u64()?,
            client_key: r.array()?,
        })
    }
}
