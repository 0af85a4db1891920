//! A job's data through a node: inputs sealed to a leaseholder and uploaded, results fetched,
//! checked for their author and opened (the format and names are `ergon_jobdata`'s).

use ergon_api::market::{Job, Task, TaskState};
use ergon_jobdata::{check_author, encryption_secret, name, seal_signed, Output, Part};
use ergon_types::{Address, Hash, JobKind, SecretKey};

use crate::{ApiError, Client};

impl Client {
    /// The X25519 key `provider`'s offer publishes (what its inputs are sealed to).
    pub fn provider_key(&self, provider: &Address) -> Result<[u8; 32], ApiError> {
        self.encryption_key_of(&self.provider(provider)?.provider)
    }

    /// The X25519 key in a provider's answer from the node.
    pub fn encryption_key_of(&self, p: &ergon_api::market::Provider) -> Result<[u8; 32], ApiError> {
        ergon_types::hex::decode_array::<32>(&p.encryption_key).ok_or_else(|| ApiError::BadAnswer {
            node: self.node().to_string(),
            what: format!("provider {} has no encryption key", p.address),
        })
    }

    /// Seals `plain` to `recipient`, signed by `key`, and uploads it under `blob`.
    pub fn upload_sealed(
        &self,
        key: &SecretKey,
        recipient: &[u8; 32],
        blob: [u8; 32],
        plain: &[u8],
    ) -> Result<(), String> {
        let sealed = seal_signed(plain, recipient, &blob, key)?;
        self.put_blob(&Hash(blob), &sealed).map_err(|e| e.to_string())
    }

    /// The decrypted result `provider` sealed to `key` for (job `id`, `shard`, `replica`), or
    /// `None` while no node serves it. A blob not signed by the provider, or not decrypting, is
    /// an error.
    pub fn fetch_result(
        &self,
        key: &SecretKey,
        id: &Hash,
        shard: u16,
        replica: u8,
        provider: &Address,
    ) -> Result<Option<Vec<u8>>, String> {
        let blob = name(id, shard, replica, provider, Part::Result);
        let Ok(sealed) = self.get_blob(&Hash(blob)) else { return Ok(None) };
        check_author(&blob, &sealed, provider)?;
        ergon_jobdata::seal::open(&sealed, &encryption_secret(key)).map(Some).map_err(|e| e.to_string())
    }
}

impl Client {
    /// `shard`'s settled result of job `id` as the node shows it (`job`: its `/jobs/{id}`),
    /// fetched, opened with `key` and checked against the commitment the chain settled. A shard
    /// that has none says why: cancelled (the job was withdrawn before it was leased, or its
    /// lease was given up), or not settled yet.
    pub fn settled_result(&self, key: &SecretKey, job: &Job, shard: u16) -> Result<Output, String> {
        let id = Hash::from_hex(&job.summary.id).map_err(|e| format!("job id: {e}"))?;
        let kind = match job.summary.kind.as_str() {
            "matmul" => JobKind::Matmul,
            "train" => JobKind::Train,
            "infer" => JobKind::Infer,
            other => return Err(format!("unknown job kind {other:?}")),
        };
        let tasks: Vec<&Task> = job.tasks.iter().filter(|t| t.shard == shard).collect();
        let settled = tasks.iter().find_map(|t| match &t.state {
            TaskState::Settled { provider, result, .. } => Some((t.replica, provider, result)),
            _ => None,
        });
        let Some((replica, holder, committed)) = settled else {
            let cancelled = tasks.iter().filter(|t| !t.check).all(|t| t.state == TaskState::Cancelled {});
            return Err(if cancelled && !tasks.is_empty() {
                format!("shard {shard} was cancelled: no provider computed it, and its escrow was refunded")
            } else {
                format!("shard {shard} has no settled result yet (`ergon job status {}` says why)", id.to_hex())
            });
        };
        let holder: Address = holder.parse().map_err(|e| format!("{e}"))?;
        let plain = self
            .fetch_result(key, &id, shard, replica, &holder)?
            .ok_or_else(|| format!("shard {shard}: no connected peer serves the result of {holder}"))?;
        let output = Output::from_plaintext(kind, plain).map_err(|e| format!("shard {shard}: {e}"))?;
        if output.commitment().to_hex() != *committed {
            return Err(format!("shard {shard}: the result does not match its commitment on chain"));
        }
        Ok(output)
    }
}
