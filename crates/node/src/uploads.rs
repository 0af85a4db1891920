//! Blob uploads, streamed: a sealed blob is judged on its header alone (who signed it, which
//! open lease its name belongs to, how large its task allows it to be, the author's space and
//! upload rate) before any of its body is read, and then written to disk one piece at a time,
//! so an upload holds one piece in memory, never the blob, and a refused one costs a header.
//!
//! The pieces go in as a new generation beside the one being served; the last piece's arrival
//! publishes it in one durable commit, and an upload cut short (or refused midway) is discarded,
//! or swept at the next start if the node died meanwhile.
//!
//! Limits per author (the job's client for inputs, the leaseholder for results), each an
//! attacker's cheapest way around the others: `AUTHOR_QUOTA_BYTES` stored at once (uploads in
//! progress count), `MAX_UPLOADS_PER_AUTHOR` at once, and bytes at `UPLOAD_RATE_BYTES_PER_S`
//! with a burst of `UPLOAD_BURST_BYTES` (so rewriting the same name forever cannot keep the
//! disk busy). Every author needs an open lease, which costs its escrow or its bond.

use std::collections::HashMap;
use std::sync::Arc;

use ergon_jobdata::seal::{declared_len, piece_len, HEADER_BYTES};
use ergon_types::Address;

use crate::blobs::{lease_part, BlobMeta, AUTHOR_QUOTA_BYTES};
use crate::{now_ms, Shared};
use ergon_jobdata::author;

/// Bytes per second an author may upload to a node, on average.
pub const UPLOAD_RATE_BYTES_PER_S: u64 = 64 << 20;
/// Bytes an author may upload at once after a quiet spell (above the largest sealed blob).
pub const UPLOAD_BURST_BYTES: u64 = 2 << 30;
/// Uploads one author may have in progress at once.
pub const MAX_UPLOADS_PER_AUTHOR: u32 = 4;
/// Rate buckets kept before full ones are forgotten.
const MAX_BUCKETS: usize = 4096;

/// Why an upload is refused, with the HTTP status it maps to.
#[derive(Debug, PartialEq, Eq)]
pub enum UploadRefusal {
    /// Not a sealed blob of the size its header says (400).
    Malformed(String),
    /// A well-formed blob this node will not take under that name (422).
    Refused(String),
    /// The author is over its rate or its concurrent uploads; try again after `retry_after_s` (429).
    Busy { why: String, retry_after_s: u64 },
}

impl std::fmt::Display for UploadRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(why) | Self::Refused(why) | Self::Busy { why, .. } => write!(f, "{why}"),
        }
    }
}

/// Upload bookkeeping shared by the node: generations, reservations, rate buckets.
#[derive(Default)]
pub struct Uploads {
    next_generation: u64,
    /// Author → (bytes reserved by its uploads in progress, how many).
    in_flight: HashMap<Address, (u64, u32)>,
    /// Author → (bytes it may still upload now, at ms).
    buckets: HashMap<Address, (u64, u64)>,
}

impl Uploads {
    /// Starts generations above every one already stored.
    pub fn start_after(&mut self, highest: u64) {
        self.next_generation = self.next_generation.max(highest + 1);
    }

    fn take_tokens(&mut self, author: Address, bytes: u64, now: u64) -> Result<(), u64> {
        if self.buckets.len() >= MAX_BUCKETS {
            self.buckets.retain(|_, (tokens, at)| refill(*tokens, *at, now) < UPLOAD_BURST_BYTES);
        }
        let (tokens, at) = self.buckets.get(&author).copied().unwrap_or((UPLOAD_BURST_BYTES, now));
        let tokens = refill(tokens, at, now);
        if tokens < bytes {
            return Err((bytes - tokens).div_ceil(UPLOAD_RATE_BYTES_PER_S));
        }
        self.buckets.insert(author, (tokens - bytes, now));
        Ok(())
    }
}

fn refill(tokens: u64, at: u64, now: u64) -> u64 {
    let earned = now.saturating_sub(at).saturating_mul(UPLOAD_RATE_BYTES_PER_S) / 1000;
    tokens.saturating_add(earned).min(UPLOAD_BURST_BYTES)
}

/// An upload in progress: the next piece it expects, and its reservation, released (and its
/// staged pieces discarded unless it was published) when dropped.
pub struct Upload {
    shared: Arc<Shared>,
    name: [u8; 32],
    meta: BlobMeta,
    plain_len: u64,
    next: u32,
    published: bool,
}

impl Shared {
    /// Judges an upload of blob `name` on its header (the first `HEADER_BYTES` of the sealed
    /// bytes) and reserves room for it.
    pub fn begin_upload(self: &Arc<Self>, name: [u8; 32], header: &[u8]) -> Result<Upload, UploadRefusal> {
        let header = header.get(..HEADER_BYTES).ok_or(UploadRefusal::Malformed("shorter than a blob header".into()))?;
        let signer = author(&name, header).map_err(UploadRefusal::Malformed)?;
        let (plain_len, sealed_len) = declared_len(header).ok_or(UploadRefusal::Malformed("no blob header".into()))?;
        let (task, part, holder, writer, most) = {
            let node = self.lock();
            lease_part(&node.chain.ledger().market, &name).ok_or_else(|| {
                UploadRefusal::Refused("no open lease has a blob of this name (the lease may have ended)".into())
            })?
        };
        if writer != signer {
            return Err(UploadRefusal::Refused(format!(
                "blob signed by {signer}, but only {writer} may write under this name"
            )));
        }
        if plain_len > most {
            return Err(UploadRefusal::Refused(format!(
                "{plain_len} bytes of plaintext, more than this task's {most}"
            )));
        }
        let held: u64 = {
            let metas = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
            metas.iter().filter(|(n, m)| m.author == signer && **n != name).map(|(_, m)| m.bytes).sum()
        };
        let mut uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        let (reserved, count) = uploads.in_flight.get(&signer).copied().unwrap_or((0, 0));
        if count >= MAX_UPLOADS_PER_AUTHOR {
            return Err(UploadRefusal::Busy {
                why: format!(
                    "{signer} already has {count} uploads in progress here (at most {MAX_UPLOADS_PER_AUTHOR})"
                ),
                retry_after_s: 1,
            });
        }
        if held + reserved + sealed_len > AUTHOR_QUOTA_BYTES {
            return Err(UploadRefusal::Refused(format!(
                "{signer} already has {} bytes stored or arriving here (quota {AUTHOR_QUOTA_BYTES})",
                held + reserved
            )));
        }
        if let Err(wait) = uploads.take_tokens(signer, sealed_len, now_ms()) {
            return Err(UploadRefusal::Busy {
                why: format!("{signer} is over its upload rate here ({UPLOAD_RATE_BYTES_PER_S} bytes/s)"),
                retry_after_s: wait,
            });
        }
        uploads.in_flight.insert(signer, (reserved + sealed_len, count + 1));
        let generation = uploads.next_generation;
        uploads.next_generation += 1;
        let pieces = (0..).take_while(|&i| piece_len(plain_len, i).is_some()).count() as u32;
        let meta = BlobMeta { task, part, holder, author: signer, bytes: sealed_len, pieces, generation };
        Ok(Upload { shared: self.clone(), name, meta, plain_len, next: 0, published: false })
    }

    /// Stores a whole sealed blob (this node's own results) through the same checks.
    pub fn put_blob(self: &Arc<Self>, name: [u8; 32], sealed: Vec<u8>) -> Result<(), String> {
        let mut upload = self.begin_upload(name, &sealed).map_err(|e| e.to_string())?;
        let mut at = 0;
        while let Some(len) = upload.next_len() {
            let piece = sealed
                .get(at..at + len)
                .ok_or_else(|| format!("{} bytes, but its header implies {}", sealed.len(), upload.meta.bytes))?;
            upload.push(piece)?;
            at += len;
        }
        if at != sealed.len() {
            return Err(format!("{} bytes, but its header implies {}", sealed.len(), upload.meta.bytes));
        }
        upload.finish()
    }
}

impl Upload {
    /// The size of the next piece expected; None once every piece has arrived.
    pub fn next_len(&self) -> Option<usize> {
        piece_len(self.plain_len, self.next)
    }

    /// The sealed size its header declares.
    pub fn declared_bytes(&self) -> u64 {
        self.meta.bytes
    }

    /// Writes the next piece (exactly `next_len` bytes) to disk.
    pub fn push(&mut self, piece: &[u8]) -> Result<(), String> {
        if Some(piece.len()) != self.next_len() {
            return Err(format!("piece {} has {} bytes, not {:?}", self.next, piece.len(), self.next_len()));
        }
        if let Err(e) = self.shared.blob_store.stage(&self.name, self.meta.generation, self.next, piece) {
            self.shared.storage_failed(&e.to_string());
            return Err(format!("could not store the blob: {e}"));
        }
        self.next += 1;
        Ok(())
    }

    /// Publishes the blob once every piece has arrived: it is served from now on, in place of
    /// any earlier blob of its name.
    pub fn finish(mut self) -> Result<(), String> {
        if self.next_len().is_some() {
            return Err(format!("the upload ended after {} of {} pieces", self.next, self.meta.pieces));
        }
        let mut metas = self.shared.blobs.lock().unwrap_or_else(|p| p.into_inner());
        let replaced = metas.get(&self.name).map(|m| m.generation);
        if let Err(e) = self.shared.blob_store.publish(&self.name, &self.meta.encode(), replaced) {
            self.shared.storage_failed(&e.to_string());
            return Err(format!("could not store the blob: {e}"));
        }
        metas.insert(self.name, self.meta);
        self.published = true;
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        {
            let mut uploads = self.shared.uploads.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((bytes, count)) = uploads.in_flight.get_mut(&self.meta.author) {
                *bytes = bytes.saturating_sub(self.meta.bytes);
                *count = count.saturating_sub(1);
                if *count == 0 {
                    uploads.in_flight.remove(&self.meta.author);
                }
            }
        }
        if !self.published && self.next > 0 {
            // Best effort: what is left is swept at the next start.
            let _ = self.shared.blob_store.discard(&self.name, self.meta.generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_bucket_refills_at_the_rate_and_holds_at_most_the_burst() {
        let mut u = Uploads::default();
        let a = Address([1; 20]);
        assert_eq!(u.take_tokens(a, UPLOAD_BURST_BYTES, 0), Ok(()));
        // Empty: one rate's worth more needs a second.
        assert_eq!(u.take_tokens(a, UPLOAD_RATE_BYTES_PER_S, 0), Err(1));
        assert_eq!(u.take_tokens(a, UPLOAD_RATE_BYTES_PER_S, 1000), Ok(()));
        assert_eq!(u.take_tokens(a, 3 * UPLOAD_RATE_BYTES_PER_S, 1000), Err(3));
        // A long quiet spell refills to the burst, no more.
        assert_eq!(u.take_tokens(a, UPLOAD_BURST_BYTES + 1, 10_000_000), Err(1));
        assert_eq!(u.take_tokens(a, UPLOAD_BURST_BYTES, 10_000_000), Ok(()));
        // Another author has its own bucket.
        assert_eq!(u.take_tokens(Address([2; 20]), UPLOAD_BURST_BYTES, 10_000_000), Ok(()));
    }
}
