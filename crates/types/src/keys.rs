//! Keys, signatures and addresses (ed25519).
//!
//! An address is the first 20 bytes of a domain-separated BLAKE3 of the public key, written
//! `erg` + 40 hex digits + 4 hex digits of checksum, so a mistyped address is caught.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::hash::Hash;
use crate::hex::{decode_array as unhex, encode as hex};
use crate::TypesError;

/// A secret signing key. Never printed.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A key from 32 secret bytes (draw them from the OS: `getrandom`).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(bytes))
    }
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(for {})", self.public().address())
    }
}

/// An ed25519 public key, as its 32-byte compressed encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn address(&self) -> Address {
        let h = Hash::of("ergon v1 address", &[&self.0]);
        Address(h.0[..20].try_into().expect("20 bytes"))
    }

    /// Strict verification: rejects non-canonical keys and signatures and small-order points,
    /// so a signature can neither be malleated nor made to verify under two keys.
    pub fn verify(&self, message: &[u8], sig: &Signature) -> Result<(), TypesError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| TypesError::BadSignature("not a valid public key"))?;
        let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
        key.verify_strict(message, &sig).map_err(|_| TypesError::BadSignature("signature does not verify"))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex(&self.0[..8]))
    }
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex(&self.0[..8]))
    }
}

/// An account address: 20 bytes derived from a public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Address(pub [u8; 20]);

impl Address {
    fn checksum(&self) -> [u8; 2] {
        let h = Hash::of("ergon v1 address checksum", &[&self.0]);
        [h.0[0], h.0[1]]
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "erg{}{}", hex(&self.0), hex(&self.checksum()))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl FromStr for Address {
    type Err = TypesError;
    fn from_str(s: &str) -> Result<Self, TypesError> {
        let bad = |why: &str| TypesError::Parse(format!("{s:?} is not an address: {why}"));
        let body = s.strip_prefix("erg").ok_or_else(|| bad("it must start with \"erg\""))?;
        if body.len() != 44 || !body.is_ascii() {
            return Err(bad("it must be \"erg\" and 44 hex digits"));
        }
        let addr = Address(unhex::<20>(&body[..40]).ok_or_else(|| bad("not hex"))?);
        let sum = unhex::<2>(&body[40..]).ok_or_else(|| bad("not hex"))?;
        if sum != addr.checksum() {
            return Err(bad("checksum mismatch (a typo?)"));
        }
        Ok(addr)
    }
}
