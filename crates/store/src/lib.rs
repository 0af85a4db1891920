//! Persistence for a node, on redb (embedded, ACID, pure Rust).
//!
//! The store keeps the genesis file and every block the chain accepted, in the order it accepted
//! them, each in its own write transaction (durable on commit). A node reopening its store
//! replays those blocks through the same [`Chain::import`] that accepted them: the result is the
//! same block tree, the same tip and the same ledger, every block re-validated. A node killed at
//! any instant loses at most the block it was writing, never the consistency of the rest: redb
//! commits atomically, and a block is written only after the chain accepted it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use ergon_chain::{BlockRejection, Chain, CheckedBlock, Genesis, Imported, Ledger};
use ergon_types::codec::{Reader, Writer};
use ergon_types::{Block, Canonical, Hash};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Accepted blocks by acceptance order.
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// Sealed job blobs this node serves, piece by piece: (name ‖ generation ‖ piece index, all
/// big-endian) → the piece's bytes, so serving one piece reads one piece, not the blob. Each
/// upload writes a new generation beside the one being served and the switch is one commit.
const BLOB_PIECES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blob_pieces_v2");
/// The layout before generations (name ‖ piece): dropped when a store is opened.
const OLD_BLOB_PIECES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blob_pieces");
/// Each stored blob's metadata (the node's encoding), by name: all a restart reads.
const BLOB_META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blob_meta");

/// The latest checkpoint, one record: the ledger at a height `max_reorg_depth` below the tip
/// it was taken at, so no reorganisation can ever undo it.
const CHECKPOINT: TableDefinition<&str, &[u8]> = TableDefinition::new("checkpoint");
const CHECKPOINT_KEY: &str = "latest";
const CHECKPOINT_VERSION: u8 = 1;
/// Blocks between checkpoints: a restart replays at most `max_reorg_depth` + this many blocks.
pub const CHECKPOINT_EVERY: u64 = 100;

/// How [`Store::open`] rebuilt the chain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Opened {
    /// Height of the checkpoint the chain resumed from; None: replayed from genesis.
    pub resumed_from: Option<u64>,
    /// Stored blocks judged again through [`Chain::import`] (those above the checkpoint).
    pub replayed: u64,
    /// Why a stored checkpoint was not used (the chain was then replayed from genesis).
    pub checkpoint_refused: Option<String>,
}

/// A checkpoint record: (height, block id, the ledger after that block).
struct Checkpoint {
    height: u64,
    id: Hash,
    ledger: Ledger,
}

impl Checkpoint {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(CHECKPOINT_VERSION).u64(self.height).bytes(&self.id.0);
        self.ledger.write_snapshot(&mut w);
        w.finish()
    }

    fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
        let mut r = Reader::new(bytes, "checkpoint");
        let read = |r: &mut Reader<'_>| -> Result<Checkpoint, ergon_types::TypesError> {
            r.version(CHECKPOINT_VERSION)?;
            Ok(Checkpoint { height: r.u64()?, id: Hash(r.array()?), ledger: Ledger::read_snapshot(r)? })
        };
        let c = read(&mut r).map_err(|e| format!("undecodable: {e}"))?;
        r.finish().map_err(|e| format!("undecodable: {e}"))?;
        Ok(c)
    }

    /// The positions in `stored` of the checkpoint block and its ancestors (lowest first), with
    /// the ledger, once the ledger is shown to be the state after that block.
    fn ancestry(self, genesis: &Genesis, stored: &[(u64, Option<Block>)]) -> Result<(Ledger, Vec<usize>), String> {
        let at: HashMap<Hash, usize> =
            stored.iter().enumerate().filter_map(|(i, (_, b))| Some((b.as_ref()?.header.id(), i))).collect();
        let mut ancestry = Vec::with_capacity(self.height as usize);
        let (mut cursor, mut height) = (self.id, self.height);
        while height > 0 {
            let i = *at.get(&cursor).ok_or_else(|| format!("block {cursor} (height {height}) is not in the store"))?;
            let header = &stored[i].1.as_ref().expect("indexed blocks are present").header;
            if header.height != height {
                return Err(format!("block {cursor} has height {}, not {height}", header.height));
            }
            ancestry.push(i);
            (cursor, height) = (header.parent, height - 1);
        }
        if cursor != genesis.hash() {
            return Err("its ancestry does not reach this network's genesis".into());
        }
        ancestry.reverse();
        let root = match ancestry.last() {
            Some(&i) => stored[i].1.as_ref().expect("indexed blocks are present").header.state_root,
            None => return Err("a checkpoint at genesis is never written".into()),
        };
        if self.ledger.root() != root {
            return Err(format!(
                "its state does not match the state root of block {} (height {})",
                self.id, self.height
            ));
        }
        Ok((self.ledger, ancestry))
    }
}

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
    /// How the chain was rebuilt when the store was opened.
    pub opened: Opened,
    /// Height of the latest checkpoint written or resumed from.
    checkpoint_height: u64,
    /// Why the latest checkpoint could not be written (retried `CHECKPOINT_EVERY` blocks later;
    /// the blocks themselves are stored).
    pub checkpoint_failure: Option<String>,
}

/// The blob tables of a store, usable from any thread without the node's lock (redb
/// serialises writers and lets readers run alongside).
#[derive(Clone)]
pub struct BlobStore {
    db: DbCell,
}

fn piece_key(name: &[u8; 32], generation: u64, piece: u32) -> [u8; 44] {
    let mut k = [0u8; 44];
    k[..32].copy_from_slice(name);
    k[32..40].copy_from_slice(&generation.to_be_bytes());
    k[40..].copy_from_slice(&piece.to_be_bytes());
    k
}

/// Removes every piece of one generation of a blob.
fn remove_generation(
    table: &mut redb::Table<&[u8], &[u8]>,
    name: &[u8; 32],
    generation: u64,
) -> Result<(), StoreError> {
    let (from, to) = (piece_key(name, generation, 0), piece_key(name, generation, u32::MAX));
    table.retain_in(from.as_slice()..=to.as_slice(), |_, _| false).map_err(db_err)
}

impl BlobStore {
    /// Writes piece `i` of generation `generation` of blob `name`, not yet served: an upload in
    /// progress, one piece at a time, so nothing holds the whole blob in memory. The commit is
    /// not flushed on its own ([`publish`](Self::publish) makes every staged piece durable).
    pub fn stage(&self, name: &[u8; 32], generation: u64, i: u32, bytes: &[u8]) -> Result<(), StoreError> {
        self.db.with(|db| {
            let mut w = db.begin_write().map_err(db_err)?;
            w.set_durability(redb::Durability::None).map_err(db_err)?;
            w.open_table(BLOB_PIECES)
                .map_err(db_err)?
                .insert(piece_key(name, generation, i).as_slice(), bytes)
                .map_err(db_err)?;
            w.commit().map_err(db_err)
        })
    }

    /// Makes a staged generation the blob's, durably, in one commit: its metadata replaces the
    /// old and the `replaced` generation's pieces go.
    pub fn publish(&self, name: &[u8; 32], meta: &[u8], replaced: Option<u64>) -> Result<(), StoreError> {
        self.db.with(|db| {
            let w = db.begin_write().map_err(db_err)?;
            {
                if let Some(old) = replaced {
                    remove_generation(&mut w.open_table(BLOB_PIECES).map_err(db_err)?, name, old)?;
                }
                w.open_table(BLOB_META).map_err(db_err)?.insert(name.as_slice(), meta).map_err(db_err)?;
            }
            w.commit().map_err(db_err)
        })
    }

    /// Drops a staged generation that will not be published (an upload cut short or refused).
    pub fn discard(&self, name: &[u8; 32], generation: u64) -> Result<(), StoreError> {
        self.db.with(|db| {
            let mut w = db.begin_write().map_err(db_err)?;
            w.set_durability(redb::Durability::None).map_err(db_err)?;
            remove_generation(&mut w.open_table(BLOB_PIECES).map_err(db_err)?, name, generation)?;
            w.commit().map_err(db_err)
        })
    }

    /// Piece `i` of generation `generation` of blob `name`, if stored.
    pub fn piece(&self, name: &[u8; 32], generation: u64, i: u32) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.with(|db| {
            let r = db.begin_read().map_err(db_err)?;
            let table = match r.open_table(BLOB_PIECES) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(db_err(e)),
            };
            Ok(table.get(piece_key(name, generation, i).as_slice()).map_err(db_err)?.map(|v| v.value().to_vec()))
        })
    }

    /// Removes blobs (the given generation's pieces and the metadata) in one transaction.
    pub fn delete(&self, blobs: &[([u8; 32], u64)]) -> Result<(), StoreError> {
        self.db.with(|db| {
            let w = db.begin_write().map_err(db_err)?;
            {
                let mut pieces = w.open_table(BLOB_PIECES).map_err(db_err)?;
                let mut meta = w.open_table(BLOB_META).map_err(db_err)?;
                for (name, generation) in blobs {
                    remove_generation(&mut pieces, name, *generation)?;
                    meta.remove(name.as_slice()).map_err(db_err)?;
                }
            }
            w.commit().map_err(db_err)
        })
    }

    /// Removes every piece whose (name, generation) is not in `served`: what uploads cut short
    /// by a crash left behind. Run at start, before any upload; returns how many pieces went.
    pub fn sweep(&self, served: &std::collections::HashSet<([u8; 32], u64)>) -> Result<u64, StoreError> {
        self.db.with(|db| {
            let w = db.begin_write().map_err(db_err)?;
            let mut removed = 0;
            {
                let mut table = w.open_table(BLOB_PIECES).map_err(db_err)?;
                table
                    .retain(|k, _| {
                        let name: [u8; 32] = k[..32].try_into().unwrap_or([0; 32]);
                        let generation = k.get(32..40).and_then(|g| g.try_into().ok()).map_or(0, u64::from_be_bytes);
                        let keep = served.contains(&(name, generation));
                        removed += u64::from(!keep);
                        keep
                    })
                    .map_err(db_err)?;
            }
            w.commit().map_err(db_err)?;
            Ok(removed)
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
        let stored_genesis: Option<Vec<u8>> = {
            let r = db.begin_read().map_err(db_err)?;
            match r.open_table(META) {
                Ok(t) => t.get("genesis").map_err(db_err)?.map(|v| v.value().to_vec()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(db_err(e)),
            }
        };
        let genesis = match (stored_genesis, genesis) {
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
        {
            // Blobs in the layout before generations are transient job data: dropped whole.
            let w = db.begin_write().map_err(db_err)?;
            if w.delete_table(OLD_BLOB_PIECES).map_err(db_err)? {
                w.delete_table(BLOB_META).map_err(db_err)?;
            }
            w.commit().map_err(db_err)?;
        }
        let r = db.begin_read().map_err(db_err)?;
        let mut stored = vec![];
        for entry in r.open_table(BLOCKS).map_err(db_err)?.iter().map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            let index = k.value();
            let block = Block::decode(v.value()).map_err(|e| StoreError::Corrupt { index, why: e.to_string() })?;
            stored.push((index, Some(block)));
        }
        let checkpoint = match r.open_table(CHECKPOINT) {
            Ok(t) => t.get(CHECKPOINT_KEY).map_err(db_err)?.map(|v| v.value().to_vec()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(db_err(e)),
        };
        drop(r);
        let mut opened = Opened::default();
        let resumed = match checkpoint.map(|c| Checkpoint::decode(&c).and_then(|c| c.ancestry(&genesis, &stored))) {
            Some(Ok((ledger, ancestry))) => {
                let blocks = ancestry.iter().filter_map(|&i| stored[i].1.take()).collect();
                Some(Chain::resume(genesis.clone(), blocks, ledger).map_err(|e| StoreError::Chain(e.to_string()))?)
            }
            Some(Err(why)) => {
                opened.checkpoint_refused = Some(why);
                None
            }
            None => None,
        };
        let (mut chain, floor) = match resumed {
            Some(chain) => {
                opened.resumed_from = Some(chain.height());
                let floor = chain.height();
                (chain, floor)
            }
            None => (Chain::new(genesis).map_err(|e| StoreError::Chain(e.to_string()))?, 0),
        };
        let mut dropped = vec![];
        for (index, block) in &mut stored {
            let Some(block) = block.take().filter(|b| b.header.height > floor) else { continue };
            // Time checks were passed when the block arrived; replay judges everything else again.
            // A block is written before the chain judges it (so the chain never holds a block
            // the disk does not), so a crash in between can leave one the chain refuses: it is
            // the last one written, and it goes.
            opened.replayed += 1;
            if let Err(why) = chain.import(block, u64::MAX / 2) {
                dropped.push((*index, why.to_string()));
            }
        }
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
        let next =
            stored.iter().map(|(i, _)| *i).filter(|i| !dropped.iter().any(|(d, _)| d == i)).max().map_or(0, |i| i + 1);
        let db = DbCell { path: path.to_path_buf(), db: Arc::new(std::sync::RwLock::new(Some(db))) };
        let checkpoint_height = opened.resumed_from.unwrap_or(0);
        Ok((Store { db, next, dropped_at_open: dropped, opened, checkpoint_height, checkpoint_failure: None }, chain))
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
            self.checkpoint_if_due(chain);
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

    /// [`import`](Self::import) of many blocks (a catch-up batch) with one durable write for
    /// all of them instead of one each: every new block is written, in one transaction, before
    /// any is imported, and those the chain refuses are removed again. One outcome per block.
    pub fn import_batch(
        &mut self,
        chain: &mut Chain,
        blocks: Vec<Block>,
        now_ms: u64,
    ) -> Result<Vec<Result<Imported, BlockRejection>>, StoreError> {
        let checked: Vec<_> = blocks.into_iter().map(CheckedBlock::check).collect();
        let mut seen = std::collections::HashSet::new();
        let fresh: Vec<usize> = (0..checked.len())
            .filter(|&i| {
                let Ok(b) = &checked[i] else { return false };
                let id = b.block().header.id();
                !chain.knows(&id) && seen.insert(id)
            })
            .collect();
        let first = self.next;
        self.db.with(|db| {
            let w = db.begin_write().map_err(db_err)?;
            {
                let mut t = w.open_table(BLOCKS).map_err(db_err)?;
                for (n, &i) in fresh.iter().enumerate() {
                    let Ok(b) = &checked[i] else { continue };
                    t.insert(first + n as u64, b.block().encode().as_slice()).map_err(db_err)?;
                }
            }
            w.commit().map_err(db_err)
        })?;
        let index_of: HashMap<usize, u64> = fresh.iter().enumerate().map(|(n, &i)| (i, first + n as u64)).collect();
        let (mut outcomes, mut refused) = (Vec::with_capacity(checked.len()), vec![]);
        for (i, block) in checked.into_iter().enumerate() {
            let outcome = block.and_then(|b| chain.import_checked(b, now_ms));
            match (index_of.get(&i), &outcome) {
                (
                    Some(&index),
                    Ok(Imported::Extended { .. } | Imported::SideBranch { .. } | Imported::Reorganized { .. }),
                ) => {
                    self.next = index + 1;
                    self.checkpoint_if_due(chain);
                }
                (Some(&index), _) => refused.push(index),
                (None, _) => {}
            }
            outcomes.push(outcome);
        }
        if !refused.is_empty() {
            // Take them back (if this fails too, the next open drops them).
            let _ = self.db.with(|db| {
                let w = db.begin_write().map_err(db_err)?;
                {
                    let mut t = w.open_table(BLOCKS).map_err(db_err)?;
                    for index in &refused {
                        t.remove(*index).map_err(db_err)?;
                    }
                }
                w.commit().map_err(db_err)
            });
        }
        Ok(outcomes)
    }

    /// Writes a checkpoint of the ledger `max_reorg_depth` below the tip once the tip is
    /// `CHECKPOINT_EVERY` blocks past the last one. A failed write leaves the old checkpoint (a
    /// restart then replays more blocks, nothing is lost) and says why in `checkpoint_failure`.
    fn checkpoint_if_due(&mut self, chain: &Chain) {
        let Some(height) = chain.height().checked_sub(chain.params().max_reorg_depth) else { return };
        if height < self.checkpoint_height + CHECKPOINT_EVERY {
            return;
        }
        let (Some(ledger), Some(id)) = (chain.ledger_at(height), chain.active_id(height)) else { return };
        let bytes = Checkpoint { height, id, ledger }.encode();
        let written = self.db.with(|db| {
            let w = db.begin_write().map_err(db_err)?;
            w.open_table(CHECKPOINT).map_err(db_err)?.insert(CHECKPOINT_KEY, bytes.as_slice()).map_err(db_err)?;
            w.commit().map_err(db_err)
        });
        match written {
            Ok(()) => (self.checkpoint_height, self.checkpoint_failure) = (height, None),
            Err(e) => self.checkpoint_failure = Some(format!("checkpoint at height {height} not written: {e}")),
        }
    }

    /// Height of the latest checkpoint (0: none yet).
    pub fn checkpoint_height(&self) -> u64 {
        self.checkpoint_height
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
    use ergon_chain::{seal, ChainParams, Genesis};
    use ergon_types::{HardwareProfile, JobKind, JobSpec, Offer, Requirements, SecretKey, Transaction, TxKind};

    fn key(n: u8) -> SecretKey {
        SecretKey::from_bytes(&[n; 32])
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ergon-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// 24×24 filler, reorganisations up to 8 deep.
    fn genesis() -> Genesis {
        let params = ChainParams { max_reorg_depth: 8, min_provider_stake: 1_000, ..ChainParams::small(24) };
        let balances = [1u8, 2, 3].iter().map(|&k| (key(k).public().address().to_string(), 100_000_000)).collect();
        Genesis { network: "t".into(), time_ms: 1_000_000, params, balances }
    }

    fn next_block(chain: &mut Chain, miner: u8, txs: Vec<ergon_types::SignedTransaction>) -> Block {
        let now = chain.tip_header().time_ms + 10_000;
        let template = chain.template(key(miner).public().address(), txs, now);
        assert!(
            template.refused.is_empty(),
            "{:?}",
            template.refused.iter().map(|r| r.1.to_string()).collect::<Vec<_>>()
        );
        seal(template, 0, 10_000).unwrap().expect("a winner")
    }

    /// A busy little market: a provider that never posts, jobs whose leases lapse, transfers.
    fn txs_for(chain: &Chain, height: u64) -> Vec<ergon_types::SignedTransaction> {
        let tx = |from: u8, nonce: u64, kind: TxKind| {
            let k = key(from);
            Transaction { chain: chain.chain_id(), from: k.public(), nonce, fee: 10, kind }.sign(&k)
        };
        let nonce = |k: u8| chain.ledger().account(&key(k).public().address()).nonce;
        match height % 10 {
            1 => {
                let profile = HardwareProfile { cpu_cores: 2, memory_mib: 4096, int8_gmacs: 100, ..Default::default() };
                let offer = Offer { profile, price_per_gmac: 1_000, slots: 2, encryption_key: [5; 32] };
                vec![tx(2, nonce(2), TxKind::RegisterProvider { offer, stake: 100_000 })]
            }
            2 => {
                let shard =
                    ergon_pouw::WorkCommitment { m: 48, k: 48, n: 48, root_a: [height as u8; 32], root_b: [1; 32] };
                let requirements =
                    Requirements { min_memory_mib: 0, min_int8_gmacs: 0, gpu: false, replicas: 1, lease_blocks: 3 };
                let spec = JobSpec {
                    kind: JobKind::Matmul,
                    inputs: vec![],
                    shards: vec![shard],
                    macs_per_shard: 48 * 48 * 48,
                    requirements,
                    max_price_per_gmac: 1_000_000,
                    client_key: [6; 32],
                };
                vec![tx(1, nonce(1), TxKind::SubmitJob { spec })]
            }
            _ => vec![tx(3, nonce(3), TxKind::Transfer { to: key(4).public().address(), amount: height })],
        }
    }

    /// Mines `n` blocks through `store` onto `chain`; returns them.
    fn grow(store: &mut Store, chain: &mut Chain, n: u64) -> Vec<Block> {
        (0..n)
            .map(|_| {
                let txs = txs_for(chain, chain.height() + 1);
                let b = next_block(chain, 7, txs);
                store.import(chain, b.clone(), u64::MAX / 2).unwrap().unwrap();
                b
            })
            .collect()
    }

    fn replayed_from_genesis(blocks: &[Block]) -> Chain {
        let mut full = Chain::new(genesis()).unwrap();
        for b in blocks {
            full.import(b.clone(), u64::MAX / 2).unwrap();
        }
        full
    }

    #[test]
    fn a_restart_resumes_from_the_checkpoint_with_the_same_state_and_reorg_reach() {
        let dir = scratch("checkpoint");
        let (mut store, mut chain) = Store::open(&dir.join("db"), Some(&genesis())).unwrap();
        let blocks = grow(&mut store, &mut chain, 130);
        // Tip 108 was the first 100 blocks past genesis plus the reorg depth.
        assert_eq!(store.checkpoint_height(), 100);
        assert!(chain.ledger().market.jobs().count() > 3, "the market is busy");
        drop(store);
        let (store, mut resumed) = Store::open(&dir.join("db"), None).unwrap();
        assert_eq!(store.opened, Opened { resumed_from: Some(100), replayed: 30, checkpoint_refused: None });
        let full = replayed_from_genesis(&blocks);
        assert_eq!((resumed.tip(), resumed.height()), (full.tip(), 130));
        assert_eq!(resumed.ledger(), full.ledger(), "accounts, market, indices and decision log alike");
        assert_eq!(resumed.tip_work(), full.tip_work());
        assert_eq!(resumed.block(&blocks[10].header.id()), Some(&blocks[10]), "old blocks are still served");
        // A fork as deep as the reorg bound still wins on a resumed node.
        let mut rival = replayed_from_genesis(&blocks[..122]);
        let fork: Vec<Block> = (0..9)
            .map(|_| {
                let b = next_block(&mut rival, 8, vec![]);
                rival.import(b.clone(), u64::MAX / 2).unwrap();
                b
            })
            .collect();
        let mut last = None;
        for b in fork {
            last = Some(resumed.import(b, u64::MAX / 2).unwrap());
        }
        assert_eq!(last, Some(Imported::Reorganized { undone: 8, applied: 9, height: 131 }));
        assert_eq!(resumed.ledger(), rival.ledger());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_or_forged_checkpoint_is_refused_and_the_chain_replayed_from_genesis() {
        let dir = scratch("bad-checkpoint");
        let (mut store, mut chain) = Store::open(&dir.join("db"), Some(&genesis())).unwrap();
        let blocks = grow(&mut store, &mut chain, 110);
        let good = store.db.with(|db| {
            let r = db.begin_read().map_err(db_err)?;
            let t = r.open_table(CHECKPOINT).map_err(db_err)?;
            Ok(t.get(CHECKPOINT_KEY).map_err(db_err)?.map(|v| v.value().to_vec()))
        });
        let good = good.unwrap().expect("a checkpoint");
        drop(store);
        let mut forged = Checkpoint::decode(&good).unwrap();
        forged.ledger.minted += 1; // more coins than the chain made
        let mut cut = good.clone();
        cut.truncate(good.len() - 3);
        let full = replayed_from_genesis(&blocks);
        for (bytes, why) in [(forged.encode(), "does not match the state root"), (cut, "undecodable")] {
            let (store, _) = Store::open(&dir.join("db"), None).unwrap();
            store
                .db
                .with(|db| {
                    let w = db.begin_write().map_err(db_err)?;
                    w.open_table(CHECKPOINT)
                        .map_err(db_err)?
                        .insert(CHECKPOINT_KEY, bytes.as_slice())
                        .map_err(db_err)?;
                    w.commit().map_err(db_err)
                })
                .unwrap();
            drop(store);
            let (store, reopened) = Store::open(&dir.join("db"), None).unwrap();
            let refused = store.opened.checkpoint_refused.clone().unwrap_or_default();
            assert!(refused.contains(why), "{refused}");
            assert_eq!((store.opened.resumed_from, store.opened.replayed), (None, 110));
            assert_eq!(reopened.ledger(), full.ledger());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn blobs_are_stored_piece_by_piece_replaced_by_generation_and_deleted() {
        let dir = scratch("blobs");
        let (store, _) = Store::open(&dir.join("db"), Some(&genesis())).unwrap();
        let blobs = store.blob_store();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        for (i, p) in [&b"p0"[..], b"p1", b"p2"].into_iter().enumerate() {
            blobs.stage(&a, 1, i as u32, p).unwrap();
        }
        blobs.publish(&a, b"meta-a", None).unwrap();
        blobs.stage(&b, 2, 0, b"q0").unwrap();
        blobs.publish(&b, b"meta-b", None).unwrap();
        assert_eq!(blobs.piece(&a, 1, 1).unwrap().as_deref(), Some(&b"p1"[..]));
        assert_eq!(blobs.piece(&a, 1, 3).unwrap(), None);
        // A streamed replacement: staged beside the served generation, switched in one commit.
        blobs.stage(&a, 3, 0, b"r0").unwrap();
        assert_eq!(blobs.piece(&a, 1, 1).unwrap().as_deref(), Some(&b"p1"[..]), "still served while staged");
        blobs.publish(&a, b"meta-a3", Some(1)).unwrap();
        assert_eq!(blobs.piece(&a, 1, 1).unwrap(), None, "no piece of the old generation is left");
        assert_eq!(blobs.piece(&a, 3, 0).unwrap().as_deref(), Some(&b"r0"[..]));
        let mut entries = blobs.entries().unwrap();
        entries.sort();
        assert_eq!(entries, vec![(a, b"meta-a3".to_vec()), (b, b"meta-b".to_vec())]);
        // An upload cut short: discarded, or swept at the next start.
        blobs.stage(&b, 4, 0, b"half").unwrap();
        blobs.discard(&b, 4).unwrap();
        assert_eq!(blobs.piece(&b, 4, 0).unwrap(), None);
        blobs.stage(&b, 5, 0, b"crash").unwrap();
        let served = [(a, 3), (b, 2)].into_iter().collect();
        assert_eq!(blobs.sweep(&served).unwrap(), 1);
        assert_eq!(blobs.piece(&b, 2, 0).unwrap().as_deref(), Some(&b"q0"[..]), "served pieces stay");
        blobs.delete(&[(a, 3)]).unwrap();
        assert_eq!(blobs.piece(&a, 3, 0).unwrap(), None);
        assert_eq!(blobs.entries().unwrap(), vec![(b, b"meta-b".to_vec())]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
