//! Sealed blobs: job inputs and results encrypted to one recipient, cut into pieces that are
//! authenticated one by one, so a receiver rejects a bad piece the moment it arrives.
//!
//! Layout: piece 0 is the header: its core `version u8 = 2 ‖ ephemeral X25519 public key ‖
//! plaintext length u64 ‖ BLAKE3 of the plaintext`, then a 96-byte author stamp that the caller
//! computes from the core (its author signs it: see `crate::blob`), so whoever stores or
//! opens a blob can tell who wrote it before reading any piece; piece i ≥ 1 is chunk i−1 of the plaintext (1 MiB, the
//! last one shorter; an empty plaintext has one empty chunk) under ChaCha20-Poly1305. The key is
//! BLAKE3-derive("ergon v1 sealed blob key", X25519(ephemeral, recipient) ‖ ephemeral public ‖
//! recipient public); chunk i's nonce is i as 12 little-endian bytes and its associated data is
//! the header and i, so pieces cannot be reordered, dropped or moved between blobs. After the
//! last piece the receiver checks the plaintext's length and hash against the header, and then
//! (its caller) against the commitment on chain.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use x25519_dalek::{PublicKey, StaticSecret};

pub const CHUNK_BYTES: usize = 1 << 20;
const TAG_BYTES: usize = 16;
/// The header's core: version, ephemeral key, length, hash.
pub const CORE_BYTES: usize = 1 + 32 + 8 + 32;
/// The author stamp after the core (the caller's: a public key and a signature).
pub const STAMP_BYTES: usize = 96;
pub const HEADER_BYTES: usize = CORE_BYTES + STAMP_BYTES;
/// Largest plaintext sealed or accepted.
pub const MAX_PLAINTEXT_BYTES: u64 = 1 << 30;
const VERSION: u8 = 2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlobError {
    #[error("sealed blob header: {0}")]
    Header(String),
    #[error("piece {0} does not authenticate (corrupted, reordered, or not for this key)")]
    Piece(u32),
    #[error("plaintext does not match the header ({0})")]
    Plaintext(String),
}

fn key(shared: &[u8; 32], ephemeral: &[u8; 32], recipient: &[u8; 32]) -> ChaCha20Poly1305 {
    let mut h = blake3::Hasher::new_derive_key("ergon v1 sealed blob key");
    h.update(shared).update(ephemeral).update(recipient);
    ChaCha20Poly1305::new(Key::from_slice(h.finalize().as_bytes()))
}

fn nonce(i: u32) -> Nonce {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&i.to_le_bytes());
    *Nonce::from_slice(&n)
}

fn aad(header: &[u8], i: u32) -> Vec<u8> {
    let mut a = header.to_vec();
    a.extend_from_slice(&i.to_le_bytes());
    a
}

fn chunks(len: u64) -> u32 {
    (len.div_ceil(CHUNK_BYTES as u64)).max(1) as u32
}

/// The sealed size of piece `i` of a blob of `plain_len` plaintext bytes (piece 0 is the
/// header); None past the last piece. What a receiver streaming a blob cuts it at.
pub fn piece_len(plain_len: u64, i: u32) -> Option<usize> {
    let total = chunks(plain_len);
    match i {
        0 => Some(HEADER_BYTES),
        _ if i > total => None,
        _ if i < total => Some(CHUNK_BYTES + TAG_BYTES),
        _ => Some((plain_len - (total as u64 - 1) * CHUNK_BYTES as u64) as usize + TAG_BYTES),
    }
}

/// Pieces (header included) of the largest blob anyone seals or opens: a bound on what a peer
/// may claim a blob has.
pub const MAX_PIECES: u32 = (MAX_PLAINTEXT_BYTES / CHUNK_BYTES as u64) as u32 + 1;

/// The plaintext length a sealed blob's header declares, and the exact sealed size that
/// implies, or `None` if `sealed` is shorter than a header.
pub fn declared_len(sealed: &[u8]) -> Option<(u64, u64)> {
    let len = u64::from_le_bytes(sealed.get(33..41)?.try_into().ok()?);
    let sealed_len = HEADER_BYTES as u64 + len + TAG_BYTES as u64 * chunks(len) as u64;
    Some((len, sealed_len))
}

/// Encrypts `plain` to `recipient` (an X25519 public key). `entropy` seeds the ephemeral key:
/// it must be fresh randomness for every blob. `stamp` gives the author stamp for the header's
/// core; every piece's authentication covers it, so it cannot be swapped afterwards.
pub fn seal(
    plain: &[u8],
    recipient: &[u8; 32],
    entropy: [u8; 32],
    stamp: impl FnOnce(&[u8; CORE_BYTES]) -> [u8; STAMP_BYTES],
) -> Result<Vec<u8>, BlobError> {
    if plain.len() as u64 > MAX_PLAINTEXT_BYTES {
        return Err(BlobError::Header(format!("{} bytes exceed {MAX_PLAINTEXT_BYTES}", plain.len())));
    }
    let secret = StaticSecret::from(entropy);
    let ephemeral = PublicKey::from(&secret).to_bytes();
    let shared = secret.diffie_hellman(&PublicKey::from(*recipient)).to_bytes();
    let cipher = key(&shared, &ephemeral, recipient);
    let mut out = Vec::with_capacity(HEADER_BYTES + plain.len() + TAG_BYTES * chunks(plain.len() as u64) as usize);
    out.push(VERSION);
    out.extend_from_slice(&ephemeral);
    out.extend_from_slice(&(plain.len() as u64).to_le_bytes());
    out.extend_from_slice(blake3::hash(plain).as_bytes());
    let core: [u8; CORE_BYTES] = out[..].try_into().expect("the core is complete");
    out.extend_from_slice(&stamp(&core));
    let header = out.clone();
    for i in 0..chunks(plain.len() as u64) {
        let part =
            &plain[(i as usize * CHUNK_BYTES).min(plain.len())..((i as usize + 1) * CHUNK_BYTES).min(plain.len())];
        let ct = cipher
            .encrypt(&nonce(i), Payload { msg: part, aad: &aad(&header, i) })
            .map_err(|_| BlobError::Header("encryption failed".into()))?;
        out.extend_from_slice(&ct);
    }
    Ok(out)
}

/// The header's core and author stamp, read without decrypting anything (a node that stores a
/// blob for others is not its recipient).
pub fn header_parts(header: &[u8]) -> Result<(&[u8; CORE_BYTES], &[u8; STAMP_BYTES]), BlobError> {
    if header.len() < HEADER_BYTES || header[0] != VERSION {
        return Err(BlobError::Header(format!("{} bytes, version {:?}", header.len(), header.first())));
    }
    let core = header[..CORE_BYTES].try_into().expect("length checked");
    let stamp = header[CORE_BYTES..HEADER_BYTES].try_into().expect("length checked");
    Ok((core, stamp))
}

/// Number of pieces of a sealed blob (header included) and piece `i`, or `None` past the end.
pub fn piece(sealed: &[u8], i: u32) -> Option<(u32, &[u8])> {
    let header = sealed.get(..HEADER_BYTES)?;
    let len = u64::from_le_bytes(header[33..41].try_into().ok()?);
    let total = chunks(len) + 1;
    if i == 0 {
        return Some((total, header));
    }
    if i >= total {
        return None;
    }
    let start = HEADER_BYTES + (i as usize - 1) * (CHUNK_BYTES + TAG_BYTES);
    let end = (start + CHUNK_BYTES + TAG_BYTES).min(sealed.len());
    Some((total, sealed.get(start..end)?))
}

/// Decrypts a sealed blob piece by piece as it arrives.
pub struct Opener {
    cipher: ChaCha20Poly1305,
    header: Vec<u8>,
    len: u64,
    hash: [u8; 32],
    next: u32,
    plain: Vec<u8>,
}

impl Opener {
    /// Starts from the header (piece 0) with the recipient's secret.
    pub fn new(header: &[u8], secret: &StaticSecret) -> Result<Self, BlobError> {
        if header.len() != HEADER_BYTES || header[0] != VERSION {
            return Err(BlobError::Header(format!("{} bytes, version {:?}", header.len(), header.first())));
        }
        let ephemeral: [u8; 32] = header[1..33].try_into().expect("32 bytes");
        let len = u64::from_le_bytes(header[33..41].try_into().expect("8 bytes"));
        if len > MAX_PLAINTEXT_BYTES {
            return Err(BlobError::Header(format!("plaintext of {len} bytes exceeds {MAX_PLAINTEXT_BYTES}")));
        }
        let recipient = PublicKey::from(secret).to_bytes();
        let shared = secret.diffie_hellman(&PublicKey::from(ephemeral)).to_bytes();
        Ok(Self {
            cipher: key(&shared, &ephemeral, &recipient),
            header: header.to_vec(),
            len,
            hash: header[41..73].try_into().expect("32 bytes"),
            next: 0,
            plain: Vec::new(),
        })
    }

    /// Pieces in the blob, header included.
    pub fn pieces(&self) -> u32 {
        chunks(self.len) + 1
    }

    /// Authenticates and decrypts the next piece (1, 2, … in order).
    pub fn push(&mut self, piece: &[u8]) -> Result<(), BlobError> {
        let i = self.next;
        if i + 1 >= self.pieces() {
            return Err(BlobError::Piece(i + 1));
        }
        let plain = self
            .cipher
            .decrypt(&nonce(i), Payload { msg: piece, aad: &aad(&self.header, i) })
            .map_err(|_| BlobError::Piece(i + 1))?;
        let expected = (self.len - (i as u64 * CHUNK_BYTES as u64)).min(CHUNK_BYTES as u64) as usize;
        if plain.len() != expected {
            return Err(BlobError::Piece(i + 1));
        }
        self.plain.extend_from_slice(&plain);
        self.next += 1;
        Ok(())
    }

    /// The plaintext, once every piece is in and it matches the header's length and hash.
    pub fn finish(self) -> Result<Vec<u8>, BlobError> {
        if self.next + 1 != self.pieces() {
            return Err(BlobError::Plaintext(format!("{} of {} pieces", self.next + 1, self.pieces())));
        }
        if *blake3::hash(&self.plain).as_bytes() != self.hash || self.plain.len() as u64 != self.len {
            return Err(BlobError::Plaintext("hash differs".into()));
        }
        Ok(self.plain)
    }
}

/// Decrypts a whole sealed blob held in memory.
pub fn open(sealed: &[u8], secret: &StaticSecret) -> Result<Vec<u8>, BlobError> {
    let (total, header) = piece(sealed, 0).ok_or_else(|| BlobError::Header("shorter than a header".into()))?;
    let mut opener = Opener::new(header, secret)?;
    for i in 1..total {
        let (_, p) = piece(sealed, i).ok_or(BlobError::Piece(i))?;
        opener.push(p)?;
    }
    opener.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: u8) -> (StaticSecret, [u8; 32]) {
        let s = StaticSecret::from([n; 32]);
        let p = PublicKey::from(&s).to_bytes();
        (s, p)
    }

    #[test]
    fn seal_and_open_round_trip_for_odd_sizes() {
        let (secret, public) = keys(1);
        for len in [0usize, 1, 1000, CHUNK_BYTES, CHUNK_BYTES + 1, 2 * CHUNK_BYTES + 17] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let sealed = seal(&plain, &public, [len as u8; 32], |_| [3; STAMP_BYTES]).unwrap();
            assert_eq!(open(&sealed, &secret).unwrap(), plain, "{len}");
            assert_eq!(piece(&sealed, 0).unwrap().0 as usize, 1 + len.div_ceil(CHUNK_BYTES).max(1));
        }
    }

    #[test]
    fn wrong_key_corruption_reordering_and_truncation_are_caught() {
        let (secret, public) = keys(1);
        let (other, _) = keys(2);
        let plain: Vec<u8> = (0..CHUNK_BYTES + 5000).map(|i| i as u8).collect();
        let sealed = seal(&plain, &public, [9; 32], |core| {
            let mut stamp = [0; STAMP_BYTES];
            stamp[..32].copy_from_slice(&core[41..73]);
            stamp
        })
        .unwrap();
        assert_eq!(header_parts(&sealed).unwrap().1[..32], *blake3::hash(&plain).as_bytes(), "the stamp saw the core");
        assert_eq!(open(&sealed, &other), Err(BlobError::Piece(1)));
        let mut bad = sealed.clone();
        bad[CORE_BYTES + 50] ^= 1; // a swapped author stamp
        assert_eq!(open(&bad, &secret), Err(BlobError::Piece(1)));
        let mut bad = sealed.clone();
        bad[HEADER_BYTES + 10] ^= 1;
        assert_eq!(open(&bad, &secret), Err(BlobError::Piece(1)));
        let mut bad = sealed.clone();
        bad[40] ^= 1; // the length in the header
        assert!(open(&bad, &secret).is_err());
        let (_, header) = piece(&sealed, 0).unwrap();
        let mut o = Opener::new(header, &secret).unwrap();
        assert_eq!(o.push(piece(&sealed, 2).unwrap().1), Err(BlobError::Piece(1)), "out of order");
        o.push(piece(&sealed, 1).unwrap().1).unwrap();
        assert!(o.finish().is_err(), "a piece missing");
        assert!(open(&sealed[..sealed.len() - 1], &secret).is_err());
        assert!(open(&sealed[..10], &secret).is_err());
    }

    #[test]
    fn piece_len_cuts_a_sealed_blob_where_piece_does() {
        for len in [0usize, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 2 * CHUNK_BYTES + 7] {
            let sealed = seal(&vec![7u8; len], &[9; 32], [1; 32], |_| [0; STAMP_BYTES]).unwrap();
            let mut sum = 0;
            for i in 0.. {
                match (piece(&sealed, i), piece_len(len as u64, i)) {
                    (Some((_, p)), Some(n)) => {
                        assert_eq!(p.len(), n, "piece {i} of a {len}-byte blob");
                        sum += n;
                    }
                    (None, None) => break,
                    (a, b) => panic!("piece {i} of a {len}-byte blob: {:?} vs {b:?}", a.map(|x| x.1.len())),
                }
            }
            assert_eq!(sum, sealed.len());
        }
    }
}
