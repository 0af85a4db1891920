//! Persistence for a node, on redb (embedded, ACID, pure Rust).
//!
//! The store keeps the genesis file and every block the chain accepted, in the order it accepted
//! them, each in its own write transaction (durable on commit). A node reopening its store
//! replays those blocks through the same [`Chain::import`] that accepted them: the result is the
//! same block tree, the same tip and the same ledger, every block re-validated. A node killed at
//! any instant loses at most the block it was writing, never the consistency of the rest: redb
//! commits atomically, and a block is written only after the chain accepted it.

use std::path::Path;

use ergon_chain::{BlockRejection, Chain, Genesis, Imported};
use ergon_types::{Block, Canonical};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Accepted blocks by acceptance order.
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// Sealed job blobs this node serves (inputs it uploaded, results it computed), by name.
const BLOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blobs");

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

/// A stored blob: (name, sealed bytes).
pub type NamedBlob = ([u8; 32], Vec<u8>);

/// A node's persistent chain: the in-memory [`Chain`] and the database that can rebuild it.
pub struct Store {
    db: Database,
    next: u64,
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
        let mut next = 0;
        for entry in table.iter().map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            let index = k.value();
            let block = Block::decode(v.value()).map_err(|e| StoreError::Corrupt { index, why: e.to_string() })?;
            // Time checks were passed when the block arrived; replay judges everything else again.
            chain.import(block, u64::MAX / 2).map_err(|e| StoreError::Corrupt { index, why: e.to_string() })?;
            next = index + 1;
        }
        debug_assert_eq!(next, table.len().map_err(db_err)?);
        drop(table);
        drop(r);
        Ok((Store { db, next }, chain))
    }

    /// Imports a block into `chain` and, if the chain accepted it, persists it in one atomic,
    /// durable transaction before returning.
    pub fn import(
        &mut self,
        chain: &mut Chain,
        block: Block,
        now_ms: u64,
    ) -> Result<Result<Imported, BlockRejection>, StoreError> {
        let bytes = block.encode();
        let outcome = chain.import(block, now_ms);
        if matches!(outcome, Ok(ref i) if *i != Imported::AlreadyKnown) {
            let w = self.db.begin_write().map_err(db_err)?;
            w.open_table(BLOCKS).map_err(db_err)?.insert(self.next, bytes.as_slice()).map_err(db_err)?;
            w.commit().map_err(db_err)?;
            self.next += 1;
        }
        Ok(outcome)
    }

    /// Persists a sealed blob under `name` (replacing any earlier one) in one durable transaction.
    pub fn put_blob(&self, name: &[u8; 32], bytes: &[u8]) -> Result<(), StoreError> {
        let w = self.db.begin_write().map_err(db_err)?;
        w.open_table(BLOBS).map_err(db_err)?.insert(name.as_slice(), bytes).map_err(db_err)?;
        w.commit().map_err(db_err)
    }

    /// Every stored blob (loaded at start so the node serves them again after a restart).
    pub fn blobs(&self) -> Result<Vec<NamedBlob>, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let table = match r.open_table(BLOBS) {
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
    }

    /// Blocks persisted so far.
    pub fn blocks(&self) -> u64 {
        self.next
    }
}
