//! Protocol constants of PoUW version 1. Changing any of them changes every ticket: a hard fork.

use ergon_kernels::gemm::{MR, NR};

/// Protocol version, mixed into every domain-separation label.
pub const VERSION: u8 = 1;

/// Rank of the noise E = E_L·E_R and F = F_L·F_R, and the inner depth of one transcript step.
/// Equal on purpose: each step's share of the noise product is then a fresh rank-r term, so a
/// miner who knows A·B still pays about tile area × r multiply-adds per step (docs/pouw.md).
pub const RANK: usize = 32;

/// Rows of a ticket tile and of one Merkle leaf of A.
pub const TILE_ROWS: usize = 4 * MR;
/// Columns of a ticket tile and of one Merkle leaf of B.
pub const TILE_COLS: usize = 2 * NR;

/// Largest |entry| of a job matrix that can be mined on: noise entries are ±1 and A+E must stay
/// in int8 (symmetric, so −128 never appears in a mining operand).
pub const MINING_MAX: i8 = 126;

/// Largest header accepted into a challenge (the chain's header, minus nonce and proof).
pub const MAX_HEADER_BYTES: usize = 4096;

/// Largest side of a mined matrix (keeps every index a u32 and every Merkle path short).
pub const MAX_SIDE: usize = 1 << 24;

const _: () = assert!(RANK == 32, "noise rows are u32 sign masks; a block is two 16-lane halves");
const _: () = assert!(ergon_kernels::gemm::KC.is_multiple_of(RANK));
