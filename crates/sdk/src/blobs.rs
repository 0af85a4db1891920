//! A job's data through a node: inputs sealed to a leaseholder and uploaded, results fetched,
//! checked for their author and opened (the format and names are `ergon_jobdata`'s).

use ergon_jobdata::{check_author, encryption_secret, name, seal_signed, Part};
use ergon_types::{Address, Hash, SecretKey};

use crate::{ApiError, Client};

impl Client {
    /// The X25519 key `provider`'s offer publishes (what its inputs are sealed to).
    pub fn provider_key(&self, provider: &Address) -> Result<[u8; 32], ApiError> {
        let p = self.get(&format!("/providers/{provider}"))?;
        ergon_types::hex::decode_array::<32>(p["encryption_key"].as_str().unwrap_or("")).ok_or_else(|| {
            ApiError::BadAnswer {
                node: self.node().to_string(),
                what: format!("provider {provider} has no encryption key"),
            }
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
