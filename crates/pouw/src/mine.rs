//! Mining: one pass of the job's product on the noisy operands, with the transcript folded in
//! registers, then tickets, then exact recovery of A·B.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use ergon_kernels::gemm::{gemm_new, transcript_grid, GemmOptions, Isa, TileMut, Transcript};
use ergon_kernels::{MatI32, MatI8};

use crate::challenge::Challenge;
use crate::merkle;
use crate::noise::Noise;
use crate::params::{RANK, TILE_COLS, TILE_ROWS};
use crate::proof::Proof;
use crate::ticket::{self, Ticket};
use crate::PouwError;

/// Options for [`mine`]. `Default` detects the kernel and reports no progress.
#[derive(Default, Clone, Copy)]
pub struct MineOptions<'a> {
    pub isa: Option<Isa>,
    /// Counts multiply-adds of the noisy product as they complete.
    pub progress: Option<&'a AtomicU64>,
}

/// Where the time of one mining pass went.
#[derive(Clone, Copy, Debug, Default)]
pub struct MineTimings {
    pub noise: Duration,
    pub product: Duration,
    pub tickets: Duration,
    /// Preparing the recovery (G = A·F_L, H = E_R·(B+F)); applying it is fused into `product`.
    pub recovery: Duration,
}

/// The result of mining one nonce on one job.
#[derive(Debug)]
pub struct Mined {
    /// A·B, exact: the client's useful result.
    pub product: MatI32,
    pub nonce: u64,
    /// Tickets evaluated (one per ticket tile).
    pub tickets: u64,
    pub winners: Vec<Ticket>,
    pub timings: MineTimings,
}

/// Mines `nonce` of `challenge` on the job (A, B): computes A·B exactly and every ticket on the way.
///
/// A and B must match the challenge's shapes; that they match its Merkle roots is the miner's
/// responsibility (a mismatch only yields proofs that fail to verify), so no hashing happens here.
pub fn mine(
    challenge: &Challenge,
    a: &MatI8,
    b: &MatI8,
    nonce: u64,
    opts: MineOptions<'_>,
) -> Result<Mined, PouwError> {
    let (m, k, n) = challenge.work.dims();
    if (a.rows(), a.cols(), b.rows(), b.cols()) != (m, k, k, n) {
        return Err(PouwError::Shape(format!(
            "job is {m}x{k} times {k}x{n}, matrices are {}x{} and {}x{}",
            a.rows(),
            a.cols(),
            b.rows(),
            b.cols()
        )));
    }
    let seed = challenge.seed(nonce);
    let mut timings = MineTimings::default();

    let t = Instant::now();
    let noise = Noise::derive(&seed, 0..m, k, 0..n);
    let a_noisy = MatI8::from_vec(m, k, noise.perturb_a(a.as_slice())?)?;
    let b_noisy = MatI8::from_vec(k, n, noise.perturb_b(b.as_slice())?)?;
    timings.noise = t.elapsed();

    // G and H depend only on A, B+F and the noise, so the recovery is prepared before the product
    // and applied to each output tile as the kernel finishes it (no second pass over C).
    let t = Instant::now();
    let correction = noise.correction(a, &b_noisy);
    timings.recovery = t.elapsed();

    let t = Instant::now();
    let (grid_rows, grid_cols) = transcript_grid(m, n);
    let mut states = vec![[0u32; 8]; grid_rows * grid_cols];
    let transcript = Transcript { depth: RANK, states: &mut states };
    let epilogue = |tile: TileMut<'_>| correction.apply(tile);
    let gemm = GemmOptions { isa: opts.isa, progress: opts.progress, epilogue: Some(&epilogue) };
    let c = gemm_new(&a_noisy, &b_noisy, Some(transcript), gemm)?;
    timings.product = t.elapsed();

    let t = Instant::now();
    let (tickets, winners) = ticket::evaluate(&seed, &states, (m, k, n), challenge.difficulty);
    timings.tickets = t.elapsed();

    Ok(Mined { product: c, nonce, tickets, winners, timings })
}

/// Builds the proof of a winning ticket: the ticket's row block of A and column block of B with
/// their Merkle paths. Costs one pass of hashing over A and B.
pub fn prove(challenge: &Challenge, a: &MatI8, b: &MatI8, nonce: u64, ticket: &Ticket) -> Result<Proof, PouwError> {
    let (m, k, n) = challenge.work.dims();
    if (a.rows(), a.cols(), b.cols()) != (m, k, n) {
        return Err(PouwError::Shape("matrices do not match the challenge".into()));
    }
    let (tr, tc) = (ticket.tile_row as usize, ticket.tile_col as usize);
    let (grid_rows, grid_cols) = ticket::ticket_grid(m, n);
    if tr >= grid_rows || tc >= grid_cols {
        return Err(PouwError::Shape(format!("ticket tile ({tr}, {tc}) outside the {grid_rows}x{grid_cols} grid")));
    }
    let rows = (m - tr * TILE_ROWS).min(TILE_ROWS);
    let cols = (n - tc * TILE_COLS).min(TILE_COLS);
    Ok(Proof {
        nonce,
        ticket: ticket.value,
        tile_row: ticket.tile_row,
        tile_col: ticket.tile_col,
        k: k as u32,
        a_rows: merkle::row_block(a.as_slice(), k, tr * TILE_ROWS, rows).to_vec(),
        a_path: merkle::path(&merkle::leaves_a(a.as_slice(), m, k), tr),
        b_cols: merkle::column_block(b.as_slice(), k, n, tc * TILE_COLS, cols),
        b_path: merkle::path(&merkle::leaves_b(b.as_slice(), k, n), tc),
    })
}
