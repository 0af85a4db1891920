//! Persistence for a node, on redb (embedded, ACID, pure Rust).
//!
//! The store keeps the genesis file and every block the chain accepted, in the order it accepted
//! them, each in its own write transaction (durable on commit). A node reopening its store
//! replays those blocks through the same [`Chain::import`] that accepted them: the result is the
//! same block tree, the same tip and the same ledger, every block re-validated. A node killed at
//! any instant loses at most the block it was writing, never the consistency of the rest: redb
//! commits atomically, and a block is written only after the chain accepted it.

use std::path::Path;
use std::sync::Arc;

use ergon_chain::{BlockRejection, Chain, CheckedBlock, Genesis, Imported};
use ergon_types::{Block, Canonical};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Accepted blocks by acceptance order.
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// Sealed job blobs this node serves, piece by piece: (name ‖ piece index, big-endian) → the
/// piece's bytes, so serving one piece reads one piece, not the blob.
const BLOB_PIECES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blob_pieces");
/// Each stored blob's metadata (the node's encoding), by name: all a restart reads.
const BLOB_META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blob_meta");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(String),
    #[error("the store holds another network's chain (genesis differs)")]
    WrongGenesis,
    #[error("the store has no genesis: initialise it with one")]
    NoGenesis,
    #[error("stored block {index} is corrupt: {why}")]
    Corrupt { index: u64, why: String },
    #[error("chain: {0}")]
    Chain(String),
}

fn db_err<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

/// A stored blob's name and its metadata bytes.
pub type BlobEntry = ([u8; 32], Vec<u8>);

/// The database, shared by the chain store and the blob store, and reopenable: after an I/O
/// error (a full disk) redb refuses every later write until the file is opened again, so
/// recovering means closing it (no operation may be in flight: they hold the read side of the
/// lock) and opening it anew.
#[derive(Clone)]
struct DbCell {
    path: std::path::PathBuf,
    db: Arc<std::sync::RwLock<Option<Database>>>,
}

impl DbCell {
    fn with<R>(&self, f: impl FnOnce(&Database) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
        let db = guard.as_ref().ok_or_else(|| StoreError::Db("the database is being reopened".into()))?;
        f(db)
    }

    fn reopen(&self) -> Result<(), StoreError> {
        let mut guard = self.db.write().unwrap_or_else(|p| p.into_inner());
        *guard = None; // closes the file (it is open once per process)
        *guard = Some(Database::create(&self.path).map_err(db_err)?);
        Ok(())
    }
}

/// A node's persistent chain: the in-memory [`Chain`] and the database that can rebuild it.
pub struct Store {
    db: DbCell,
    next: u64,
    /// Stored blocks the chain refused when the store was opened (left by a crash between
    /// writing a block and finding it invalid), removed: (index, reason).
    pub dropped_at_open: Vec<(u64, String)>,
}

/// The blob tables of a store, usable from any thread without the node's lock (redb
/// serialises writers and lets readers run alongside).
#[derive(Clone)]
pub struct BlobStore {
    db: DbCell,
}

fn piece_key(name: &[u8; 32], piece: u32) -> [u8; 36] {
    let mut k = [0u8; 36];
    k[..32].copy_from_slice(name);
    k[32..].copy_from_slice(&piece.to_be_bytes());
    k
}

impl BlobStore {
    /// Stores a blob's pieces and metadata in one durable transaction, replacing any earlier
    /// blob of that name.
    pub fn put<'a>(
        &self,
        name: &[u8; 32],
        meta: &[u8],
        pieces: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), StoreError> {
        self.db.with(|db| {
            let w = db.begin_write().map_err(db_err)?;
            {
                let mut table = w.open_table(BLOB_PIECES).map_err(db_err)?;
                table
                    .retain_in(piece_key(name, 0).as_slice()..=piece_key(name, u32::MAX).as_slice(), |_, _| false)
                    .map_err(db_err)?;
                for (i, p) in pieces.into_iter().enumerate() {
                    table.insert(piece_key(name, i as u32).as_slice(), p).map_err(db_err)?;
                }
                w.open_table(BLOB_META).map_err(db_err)?.insert(name.as_slice(), meta).map_err(db_err)?;
            }
            w.commit().map_err(db_err)
        })
    }

    /// Piece `i` of blob `name`, if stored.
    pub fn piece(&self, name: &[u8; 32], i: u32) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.with(|db| {
            let r = db.begin_read().map_err(db_err)?;
            let table = match r.open_table(BLOB_PIECES) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(db_err(e)),
            };
            Ok(table.get(piece_key(name, i).as_slice()).map_err(db_err)?.map(|v| v.value().to_vec()))
        })
    }

    /// Removes blobs (pieces and metadata) in one transaction.
    pub fn delete(&self, names: &[[u8; 32]]) -> Result<(), StoreError> {
        self.db.with(|db| {
            let w = db.begin_write().map_err(db_err)?;
            {
                let mut pieces = w.open_table(BLOB_PIECES).map_err(db_err)?;
                let mut meta = w.open_table(BLOB_META).map_err(db_err)?;
                for name in names {
                    pieces
                        .retain_in(piece_key(name, 0).as_slice()..=piece_key(name, u32::MAX).as_slice(), |_, _| false)
                        .map_err(db_err)?;
                    meta.remove(name.as_slice()).map_err(db_err)?;
                }
            }
            w.commit().map_err(db_err)
        })
    }

    /// Every stored blob's metadata (read at start; the pieces stay on disk).
    pub fn entries(&self) -> Result<Vec<BlobEntry>, StoreError> {
        self.db.with(|db| {
            let r = db.begin_read().map_err(db_err)?;
            let table = match r.open_table(BLOB_META) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![]),
                Err(e) => return Err(db_err(e)),
            };
            let mut out = vec![];
            for entry in table.iter().map_err(db_err)? {
                let (k, v) = entry.map_err(db_err)?;
                let name: [u8; 32] = k
                    .value()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt { index: 0, why: "blob name is not 32 bytes".into() })?;
                out.push((name, v.value().to_vec()));
            }
            Ok(out)
        })
    }
}

impl Store {
    /// Opens (or creates) the store at `path` and rebuilds the chain from it. `genesis` is
    /// required for a new store and must match an existing one when given.
    pub fn open(path: &Path, genesis: Option<&Genesis>) -> Result<(Store, Chain), StoreError> {
        let db = Database::create(path).map_err(db_err)?;
        let stored: Option<Vec<u8>> = {
            let r = db.begin_read().map_err(db_err)?;
            match r.open_table(META) {
                Ok(t) => t.get("genesis").map_err(db_err)?.map(|v| v.value().to_vec()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(db_err(e)),
            }
        };
        let genesis = match (stored, genesis) {
            (Some(bytes), given) => {
                let text = String::from_utf8(bytes)
                    .map_err(|_| StoreError::Corrupt { index: 0, why: "genesis is not text".into() })?;
                let g = Genesis::from_json(&text).map_err(|e| StoreError::Corrupt { index: 0, why: e.to_string() })?;
                if given.is_some_and(|x| x.hash() != g.hash()) {
                    return Err(StoreError::WrongGenesis);
                }
                g
            }
            (None, Some(g)) => {
                let w = db.begin_write().map_err(db_err)?;
                w.open_table(META).map_err(db_err)?.insert("genesis", g.to_json().as_bytes()).map_err(db_err)?;
                w.open_table(BLOCKS).map_err(db_err)?;
                w.commit().map_err(db_err)?;
                g.clone()
            }
            (None, None) => return Err(StoreError::NoGenesis),
        };
        let mut chain = Chain::new(genesis).map_err(|e| StoreError::Chain(e.to_string()))?;
        let r = db.begin_read().map_err(db_err)?;
        let table = r.open_table(BLOCKS).map_err(db_err)?;
        let (mut next, mut dropped) = (0, vec![]);
        for entry in table.iter().map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            let index = k.value();
            let block = Block::decode(v.value()).map_err(|e| StoreError::Corrupt { index, why: e.to_string() })?;
            // Time checks were passed when the block arrived; replay judges everything else again.
            // A block is written before the chain judges it (so the chain never holds a block
            // the disk does not), so a crash in between can leave one the chain refuses: it is
            // the last one written, and it goes.
            match chain.import(block, u64::MAX / 2) {
                Ok(_) => next = index + 1,
                Err(why) => dropped.push((index, why.to_string())),
            }
        }
        drop(table);
        drop(r);
        if !dropped.is_empty() {
            let w = db.begin_write().map_err(db_err)?;
            {
                let mut t = w.open_table(BLOCKS).map_err(db_err)?;
                for (index, _) in &dropped {
                    t.remove(*index).map_err(db_err)?;
                }
            }
            w.commit().map_err(db_err)?;
        }
        let db = DbCell { path: path.to_path_buf(), db: Arc::new(std::sync::RwLock::new(Some(db))) };
        Ok((Store { db, next, dropped_at_open: dropped }, chain))
    }

    /// Persists a block and imports it into `chain`: written first, in one durable transaction,
    /// so the chain (and everything served from it) never holds a block the disk does not; if
    /// the disk refuses, the chain is untouched and the error says why; if the chain refuses,
    /// the block is removed again.
    pub fn import(
        &mut self,
        chain: &mut Chain,
        block: Block,
        now_ms: u64,
    ) -> Result<Result<Imported, BlockRejection>, StoreError> {
        match CheckedBlock::check(block) {
            Ok(checked) => self.import_checked(chain, checked, now_ms),
            Err(why) => Ok(Err(why)),
        }
    }

    /// [`import`](Self::import) of a block whose context-free checks were already run.
    pub fn import_checked(
        &mut self,
        chain: &mut Chain,
        block: CheckedBlock,
        now_ms: u64,
    ) -> Result<Result<Imported, BlockRejection>, StoreError> {
        if chain.knows(&block.block().header.id()) {
            return Ok(chain.import_checked(block, now_ms)); // known or known invalid: nothing to write
        }
        let bytes = block.block().encode();
        let index = self.next;
        self.db.with(|db| {
            let w = db.begin_write().map_err(db_err)?;
            w.open_table(BLOCKS).map_err(db_err)?.insert(index, bytes.as_slice()).map_err(db_err)?;
            w.commit().map_err(db_err)
        })?;
        let outcome = chain.import_checked(block, now_ms);
        if matches!(outcome, Ok(ref i) if *i != Imported::AlreadyKnown) {
            self.next += 1;
        } else {
            // Refused: take it back (if this fails too, the next open drops it).
            let _ = self.db.with(|db| {
                let w = db.begin_write().map_err(db_err)?;
                w.open_table(BLOCKS).map_err(db_err)?.remove(index).map_err(db_err)?;
                w.commit().map_err(db_err)
            });
        }
        Ok(outcome)
    }

    /// Whether the disk takes writes again: reopens the database (which refuses every write
    /// after an I/O error until then) and commits a small probe record.
    pub fn recover(&self) -> Result<(), StoreError> {
        self.db.reopen()?;
        self.db.with(|db| {
            let w = db.begin_write().map_err(db_err)?;
            w.open_table(META).map_err(db_err)?.insert("probe", b"ok".as_slice()).map_err(db_err)?;
            w.commit().map_err(db_err)
        })
    }

    /// The blob tables, for use outside the node's lock.
    pub fn blob_store(&self) -> BlobStore {
        BlobStore { db: self.db.clone() }
    }

    /// Blocks persisted so far.
    pub fn blocks(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ergon_chain::{ChainParams, Genesis};

    #[test]
    fn blobs_are_stored_piece_by_piece_replaced_whole_and_deleted() {
        let dir = std::env::temp_dir().join(format!("ergon-store-blobs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let g =
            Genesis { network: "t".into(), time_ms: 1, params: ChainParams::small(48), balances: Default::default() };
        let (store, _) = Store::open(&dir.join("db"), Some(&g)).unwrap();
        let blobs = store.blob_store();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        blobs.put(&a, b"meta-a", [&b"p0"[..], b"p1", b"p2"]).unwrap();
        blobs.put(&b, b"meta-b", [&b"q0"[..]]).unwrap();
        assert_eq!(blobs.piece(&a, 1).unwrap().as_deref(), Some(&b"p1"[..]));
        assert_eq!(blobs.piece(&a, 3).unwrap(), None);
        // A replacement leaves no piece of the old blob behind.
        blobs.put(&a, b"meta-a2", [&b"r0"[..]]).unwrap();
        assert_eq!(blobs.piece(&a, 1).unwrap(), None);
        assert_eq!(blobs.piece(&a, 0).unwrap().as_deref(), Some(&b"r0"[..]));
        let mut entries = blobs.entries().unwrap();
        entries.sort();
        assert_eq!(entries, vec![(a, b"meta-a2".to_vec()), (b, b"meta-b".to_vec())]);
        blobs.delete(&[a]).unwrap();
        assert_eq!(blobs.piece(&a, 0).unwrap(), None);
        assert_eq!(blobs.entries().unwrap(), vec![(b, b"meta-b".to_vec())]);
        assert_eq!(blobs.piece(&b, 0).unwrap().as_deref(), Some(&b"q0"[..]), "a neighbour's pieces are untouched");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
