//! The encryption key a key file's owner receives job data under.

use ergon_types::SecretKey;
use x25519_dalek::StaticSecret;

/// The X25519 secret a key file's owner decrypts job data with: derived from the ed25519 secret
/// (one file to keep), in its own BLAKE3 context so the two keys never share bytes.
pub fn encryption_secret(key: &SecretKey) -> StaticSecret {
    StaticSecret::from(blake3::derive_key("ergon v1 x25519 secret from the ed25519 key file", &key.to_bytes()))
}

/// Its public half: what a provider's offer publishes and a job's spec names for the client.
pub fn encryption_public(key: &SecretKey) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&encryption_secret(key)).to_bytes()
}
