//! 32-byte BLAKE3 hashes, always domain-separated.

use std::fmt;

use crate::hex::{decode_array as unhex, encode as hex};

/// A 32-byte hash (BLAKE3).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);

    /// BLAKE3 in derive-key mode: `context` names what is hashed, so two kinds of object can
    /// never share a hash.
    pub fn of(context: &str, parts: &[&[u8]]) -> Hash {
        let mut h = blake3::Hasher::new_derive_key(context);
        for p in parts {
            h.update(p);
        }
        Hash(*h.finalize().as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    pub fn from_hex(s: &str) -> Result<Hash, crate::TypesError> {
        Ok(Hash(unhex::<32>(s).ok_or_else(|| crate::TypesError::Parse(format!("not a 64-digit hex hash: {s:?}")))?))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", &self.to_hex()[..12])
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
