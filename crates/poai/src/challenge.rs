//! Compute challenges: int8 products sized to a provider's claimed throughput.
//!
//! 1. **Issue.** At height h a validator derives, for every provider P and part j, a seed
//!    BLAKE3(chain seed ‖ P ‖ round ‖ j), the chain seed being the id of block h: fresh, bound to
//!    P (another identity's answer is for other matrices), unknowable before block h. A (m×k)
//!    and B (k×n) are expanded from it, full-range int8.
//! 2. **Commit.** P computes C = A·B and answers with `result_root(C)`, the row commitment
//!    results are posted with. The time the answer takes is what the timing statistic sees.
//! 3. **Open.** The rows to open follow from BLAKE3(seed ‖ commitment), so they cannot be known
//!    before the whole product is committed. P reveals them with their Merkle paths; the checker
//!    recomputes each exactly (k·n multiply-adds) and checks its path.
//!
//! A provider that computed only a share f of the rows passes s openings with probability at
//! most f^s; a replayed or relabelled answer is for other matrices and fails its first row.

use ergon_kernels::{MatI32, MatI8};
use ergon_pouw::{result_leaves, result_root_of_leaves, RevealedRow};
use ergon_types::{Address, Hash};

/// One opened row of a committed product.
pub type Opening = RevealedRow;

/// What a provider sends back for one part: the commitment and the rows it chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub commitment: [u8; 32],
    pub openings: Vec<Opening>,
}

/// Smallest and largest side of a challenge product (the claim sizes it in between).
pub const MIN_SIDE: u32 = 32;
pub const MAX_SIDE: u32 = 4096;

/// One part of a compute challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComputeChallenge {
    pub seed: [u8; 32],
    pub provider: Address,
    pub m: u32,
    pub k: u32,
    pub n: u32,
    /// Rows the answer must open.
    pub openings: u32,
}

fn derive(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("ergon v1 poai compute challenge");
    for p in parts {
        h.update(p);
    }
    *h.finalize().as_bytes()
}

fn seed_u64(seed: &[u8; 32], which: u8) -> u64 {
    let d = derive(&[seed, &[which]]);
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

impl ComputeChallenge {
    /// Part `part` of round `round`'s challenge to `provider`, sized so that a machine with the
    /// claimed int8 throughput takes `target_ns` nanoseconds on it (a cube, its side a multiple
    /// of 16 within `MIN_SIDE..=MAX_SIDE`: an absurd claim gets the largest, and is then slow).
    pub fn derive(
        chain_seed: &Hash,
        provider: &Address,
        round: u64,
        part: u32,
        claimed_gmacs: u64,
        target_ns: u64,
        openings: u32,
    ) -> Self {
        // 1 G MAC/s is one multiply-add per nanosecond.
        let macs = claimed_gmacs as f64 * target_ns as f64;
        let side = (macs.cbrt() / 16.0).round() as u64 * 16;
        let side = side.clamp(MIN_SIDE as u64, MAX_SIDE as u64) as u32;
        let seed = derive(&[&chain_seed.0, &provider.0, &round.to_le_bytes(), &part.to_le_bytes()]);
        ComputeChallenge { seed, provider: *provider, m: side, k: side, n: side, openings: openings.min(side) }
    }

    pub fn macs(&self) -> u64 {
        self.m as u64 * self.k as u64 * self.n as u64
    }

    /// Nanoseconds a machine of `gmacs` int8 throughput needs for the product.
    pub fn expected_ns(&self, gmacs: u64) -> f64 {
        self.macs() as f64 / gmacs.max(1) as f64
    }

    /// A and B, expanded from the seed.
    pub fn matrices(&self) -> (MatI8, MatI8) {
        (self.expand(b'a', 0, self.m as usize, self.k as usize), self.expand(b'b', 0, self.k as usize, self.n as usize))
    }

    /// Rows `from..from + rows` of matrix `which` (a: m×k, b: k×n): BLAKE3's output stream
    /// from the seed, one byte per entry (full-range int8). Fast next to the product (a few
    /// GB/s, so expanding is a few percent of a challenge), and seekable, so a checker makes
    /// only the rows of A it opens.
    fn expand(&self, which: u8, from: usize, rows: usize, cols: usize) -> MatI8 {
        let key = derive(&[&self.seed, &[which]]);
        let mut xof = blake3::Hasher::new_keyed(&key).finalize_xof();
        xof.set_position((from * cols) as u64);
        let mut bytes = vec![0u8; rows * cols];
        xof.fill(&mut bytes);
        let data = bytes.into_iter().map(|b| b as i8).collect();
        MatI8::from_vec(rows, cols, data).expect("rows × cols entries")
    }

    /// The rows an answer with `commitment` must open: distinct, chosen by the commitment.
    pub fn rows_to_open(&self, commitment: &[u8; 32]) -> Vec<u32> {
        let mut rng = ergon_kernels::rng::SplitMix64::new(seed_u64(&derive(&[&self.seed, commitment]), b'o'));
        let mut rows: Vec<u32> = Vec::with_capacity(self.openings as usize);
        while rows.len() < self.openings as usize {
            let r = rng.below(self.m as u64) as u32;
            if !rows.contains(&r) {
                rows.push(r);
            }
        }
        rows
    }

    /// What an honest provider does: expand A and B, compute A·B with the kernel, answer.
    pub fn solve(&self) -> Answer {
        let (a, b) = self.matrices();
        self.answer(&ergon_kernels::matmul(&a, &b).expect("challenge shapes agree"))
    }

    /// An answer for the product `c` (what an honest provider sends: `c` = A·B).
    pub fn answer(&self, c: &MatI32) -> Answer {
        // The rows are hashed once, for the commitment and every opening's path.
        let leaves = result_leaves(c);
        let commitment = result_root_of_leaves(c.rows() as u32, c.cols() as u32, &leaves);
        let rows: Vec<usize> = self.rows_to_open(&commitment).into_iter().map(|r| r as usize).collect();
        let openings = RevealedRow::build_many(c, &leaves, &rows).expect("rows within the product");
        Answer { commitment, openings }
    }

    /// Checks an answer exactly: the rows the commitment chose, each on its path to the
    /// commitment and equal to the row of A·B recomputed here.
    pub fn check(&self, answer: &Answer) -> Result<(), String> {
        let rows = self.rows_to_open(&answer.commitment);
        let opened: Vec<u32> = answer.openings.iter().map(|o| o.index).collect();
        if opened != rows {
            return Err(format!("opened rows {opened:?}, but the commitment chose {rows:?}"));
        }
        for o in &answer.openings {
            o.check(self.m, self.n, &answer.commitment).map_err(|e| e.to_string())?;
        }
        // The opened rows of A·B, recomputed: those rows of A times B, by the kernel.
        let k = self.k as usize;
        let mut a_rows = Vec::with_capacity(rows.len() * k);
        for &r in &rows {
            a_rows.extend_from_slice(self.expand(b'a', r as usize, 1, k).as_slice());
        }
        let a_rows = MatI8::from_vec(rows.len(), k, a_rows).expect("opened rows × k");
        let b = self.expand(b'b', 0, k, self.n as usize);
        let expected = ergon_kernels::matmul(&a_rows, &b).map_err(|e| e.to_string())?;
        let n = self.n as usize;
        for (i, o) in answer.openings.iter().enumerate() {
            if o.row[..] != expected.as_slice()[i * n..(i + 1) * n] {
                return Err(format!("row {} of the product is wrong", o.index));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(gmacs: u64) -> ComputeChallenge {
        ComputeChallenge::derive(&Hash([7; 32]), &Address([1; 20]), 3, 0, gmacs, 1000, 8)
    }

    #[test]
    fn an_honest_answer_passes_and_every_shortcut_fails() {
        let c = challenge(1);
        assert_eq!((c.m, c.openings), (MIN_SIDE, 8));
        let (a, b) = c.matrices();
        let product = ergon_kernels::reference::matmul_naive(&a, &b).unwrap();
        let honest = c.answer(&product);
        assert_eq!(c.check(&honest), Ok(()));
        // One wrong entry in a row the commitment then opens.
        let mut wrong = product.clone();
        let row = c.rows_to_open(&honest.commitment)[0] as usize;
        wrong.as_mut_slice()[row * c.n as usize] ^= 1;
        let mut forged = honest.clone();
        forged.openings[0] = RevealedRow::build(&wrong, row).unwrap();
        assert!(c.check(&forged).unwrap_err().contains("does not open"), "the path no longer fits");
        // A consistent answer for a wrong product: its own openings, but the rows are wrong.
        let mut all_wrong = product.clone();
        all_wrong.as_mut_slice().iter_mut().for_each(|v| *v = v.wrapping_add(1));
        assert!(c.check(&c.answer(&all_wrong)).unwrap_err().contains("is wrong"));
        // Rows other than those the commitment chose.
        let mut picked = honest.clone();
        picked.openings[0] = RevealedRow::build(&product, (row + 1) % c.m as usize).unwrap();
        assert!(c.check(&picked).unwrap_err().contains("chose"));
        // Another provider's (or round's) challenge has other matrices: a replayed answer fails.
        let other = ComputeChallenge::derive(&Hash([7; 32]), &Address([2; 20]), 3, 0, 1, 1, 8);
        assert_ne!(other.seed, c.seed);
        assert!(other.check(&honest).is_err());
    }

    #[test]
    fn a_row_expanded_on_its_own_is_that_row_of_the_whole_matrix() {
        let c = challenge(1);
        let (a, b) = c.matrices();
        let k = c.k as usize;
        for r in [0, 1, 17, c.m as usize - 1] {
            assert_eq!(c.expand(b'a', r, 1, k).as_slice(), &a.as_slice()[r * k..(r + 1) * k]);
        }
        assert_ne!(a.as_slice(), b.as_slice(), "A and B are expanded from different keys");
        assert!(a.as_slice().contains(&-128) && a.as_slice().contains(&127), "full-range int8");
    }

    #[test]
    fn challenges_are_sized_to_the_claim_and_bounded() {
        // 100 G MAC/s for 200 ms: 2·10^10 multiply-adds, a cube of side ≈ 2,714 → 2,720.
        let c = ComputeChallenge::derive(&Hash([1; 32]), &Address([1; 20]), 0, 0, 100, 200_000_000, 8);
        assert_eq!(c.m, 2720);
        assert!((c.expected_ns(100) - 201_236_480.0).abs() < 1.0, "{}", c.expected_ns(100));
        let absurd = ComputeChallenge::derive(&Hash([1; 32]), &Address([1; 20]), 0, 0, u64::MAX, 200_000_000, 8);
        assert_eq!(absurd.m, MAX_SIDE);
        assert!(absurd.expected_ns(u64::MAX) < 1e-6, "such a claim expects the largest product in no time");
    }
}
