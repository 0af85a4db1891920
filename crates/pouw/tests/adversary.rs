//! Playing the adversaries of docs/pouw.md where they can be played: each test runs the shortcut
//! and checks what it buys (and what it costs), or checks the property that defeats it.

mod common;

use common::{challenge, random};
use ergon_kernels::gemm::{fold_tile, gemm_into, transcript_grid, FoldState, GemmOptions, Transcript, MR, NR};
use ergon_kernels::{MatI32, MatI8};
use ergon_pouw::params::{RANK, TILE_COLS, TILE_ROWS};
use ergon_pouw::{mine, ticket_value, MineOptions, Noise, Seed};

/// The honest fold states of the whole product (A+E)(B+F) for `seed`.
fn honest_states(a: &MatI8, b: &MatI8, seed: &Seed) -> Vec<FoldState> {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    let noise = Noise::derive(seed, 0..m, k, 0..n);
    let ap = MatI8::from_vec(m, k, noise.perturb_a(a.as_slice()).unwrap()).unwrap();
    let bp = MatI8::from_vec(k, n, noise.perturb_b(b.as_slice()).unwrap()).unwrap();
    let (gr, gc) = transcript_grid(m, n);
    let mut states = vec![[0u32; 8]; gr * gc];
    let mut c = MatI32::zeros(m, n).unwrap();
    gemm_into(&ap, &bp, &mut c, Some(Transcript { depth: RANK, states: &mut states }), GemmOptions::default()).unwrap();
    states
}

fn tile_ticket(seed: &Seed, states: &[FoldState], m: usize, n: usize, tr: usize, tc: usize) -> u64 {
    let (_, gc) = transcript_grid(m, n);
    let it = (tr * 4..tr * 4 + 4).flat_map(move |r| (tc * 2..tc * 2 + 2).map(move |c| r * gc + c));
    let tile: Vec<FoldState> = it.map(|i| states[i]).collect();
    ticket_value(seed, tr as u32, tc as u32, tile.iter())
}

/// (a) Zero matrices: with A = B = 0, C'(l) = E_L·M(l)·F_R where M(l) = Σ_{t<l·r} E_R[:,t]·F_L[t,:]
/// is r×r. The adversary never multiplies int8 matrices, yet must still spend rows·cols·r
/// multiply-adds per step and tile (plus rows·r² for E_L·M): no fewer than the honest miner.
#[test]
fn zero_matrices_shortcut_is_real_but_not_cheaper_in_multiply_adds() {
    let (m, k, n) = (2 * TILE_ROWS, 5 * RANK, 2 * TILE_COLS);
    let (a, b) = (MatI8::zeros(m, k).unwrap(), MatI8::zeros(k, n).unwrap());
    let ch = challenge(&a, &b, b"zero job", 1);
    let seed = ch.seed(3);
    let honest = honest_states(&a, &b, &seed);
    let f = Noise::derive(&seed, 0..m, k, 0..n).factors();

    let (tr, tc) = (1, 1);
    let (i0, j0) = (tr * TILE_ROWS, tc * TILE_COLS);
    let mut states = vec![[0u32; 8]; (TILE_ROWS / MR) * (TILE_COLS / NR)];
    let mut mid = [[0i32; RANK]; RANK];
    let (mut shortcut_macs, mut honest_macs) = (0u64, 0u64);
    for step in 0..k.div_ceil(RANK) {
        for t in step * RANK..((step + 1) * RANK).min(k) {
            let ((s, es), (u, fs)) = (f.e_r[t], f.f_l[t]);
            mid[s as usize][u as usize] += es as i32 * fs as i32;
        }
        // G = E_L[tile rows]·M, then the tile = G·F_R[:, tile cols].
        let g: Vec<[i32; RANK]> = (0..TILE_ROWS)
            .map(|i| std::array::from_fn(|u| (0..RANK).map(|s| f.e_l[i0 + i][s] as i32 * mid[s][u]).sum()))
            .collect();
        shortcut_macs += (TILE_ROWS * RANK * RANK + TILE_ROWS * TILE_COLS * RANK) as u64;
        honest_macs += (TILE_ROWS * TILE_COLS * RANK) as u64;
        for (q, state) in states.iter_mut().enumerate() {
            let (r0, c0) = ((q / 2) * MR, (q % 2) * NR);
            let tile: [[i32; NR]; MR] = std::array::from_fn(|i| {
                std::array::from_fn(|j| (0..RANK).map(|u| g[r0 + i][u] * f.f_r[j0 + c0 + j][u] as i32).sum())
            });
            fold_tile(state, &tile);
        }
    }
    let shortcut = ticket_value(&seed, tr as u32, tc as u32, states.iter());
    assert_eq!(shortcut, tile_ticket(&seed, &honest, m, n, tr, tc), "the shortcut reproduces the ticket");
    // (1 + r/cols) times the honest count for one tile (G shared along the row band brings it to
    // 1×); docs/pouw.md weighs what the ±1 entries make of it.
    assert!(shortcut_macs >= honest_macs, "{shortcut_macs} < {honest_macs}");
    assert_eq!(shortcut_macs * TILE_COLS as u64, honest_macs * (TILE_COLS + RANK) as u64);
}

/// (b) One product reused across nonces: every tile's transcript, hence every ticket, is fresh.
#[test]
fn nothing_carries_over_between_nonces() {
    let (m, k, n) = (48, 64, 64);
    let (a, b) = (random(m, k, 1), random(k, n, 2));
    let ch = challenge(&a, &b, b"reuse", 1);
    let (s0, s1) = (ch.seed(0), ch.seed(1));
    let (h0, h1) = (honest_states(&a, &b, &s0), honest_states(&a, &b, &s1));
    assert!(h0.iter().zip(&h1).all(|(x, y)| x != y), "some microtile transcript survived a new nonce");
    let (e0, e1) = (Noise::derive(&s0, 0..m, k, 0..n), Noise::derive(&s1, 0..m, k, 0..n));
    let same = (0..m).flat_map(|i| (0..k).map(move |t| (i, t))).filter(|&(i, t)| e0.e(i, t) == e1.e(i, t)).count();
    let frac = same as f64 / (m * k) as f64;
    assert!((0.4..0.6).contains(&frac), "noise of two nonces agrees on {frac} of entries");
    // The useful product is the same; only the noise (and so the transcript) changes.
    let p0 = mine(&ch, &a, &b, 0, MineOptions::default()).unwrap().product;
    assert_eq!(p0, mine(&ch, &a, &b, 1, MineOptions::default()).unwrap().product);
}

/// (c) A linear sketch of the transcript (BTX's weakness): the fold is not a function of any one
/// linear combination of the tile, so a change invisible to the sketch still changes the state.
#[test]
fn a_change_invisible_to_a_linear_sketch_still_changes_the_fold() {
    let tile: [[i32; NR]; MR] = std::array::from_fn(|i| std::array::from_fn(|j| (i * 1000 + j * 37) as i32 - 2500));
    // Weights w of a sketch; move mass between two entries so that Σ w·x is unchanged.
    let w = |i: usize, j: usize| (i * 7 + j * 3 + 1) as i32;
    for ((i1, j1), (i2, j2)) in [((0, 0), (5, 15)), ((2, 3), (2, 11)), ((1, 8), (4, 8))] {
        let mut moved = tile;
        moved[i1][j1] += w(i2, j2);
        moved[i2][j2] -= w(i1, j1);
        let sketch = |t: &[[i32; NR]; MR]| {
            (0..MR)
                .flat_map(|i| (0..NR).map(move |j| (i, j)))
                .map(|(i, j)| w(i, j) as i64 * t[i][j] as i64)
                .sum::<i64>()
        };
        assert_eq!(sketch(&tile), sketch(&moved));
        let (mut s0, mut s1) = ([0u32; 8], [0u32; 8]);
        fold_tile(&mut s0, &tile);
        fold_tile(&mut s1, &moved);
        assert_ne!(s0, s1);
    }
}

/// (d) Computing only the tiles likely to win: a tile's ticket depends on its first and its last
/// inner step, so it is unknown until the tile's whole column of the product is done.
#[test]
fn a_ticket_depends_on_every_step_of_its_tile() {
    let (m, k, n) = (24, 96, 32);
    let (a, b) = (random(m, k, 5), random(k, n, 6));
    let seed = challenge(&a, &b, b"steps", 1).seed(0);
    let base = tile_ticket(&seed, &honest_states(&a, &b, &seed), m, n, 0, 0);
    for t in [0, RANK - 1, RANK, k / 2, k - 1] {
        let mut a2 = a.clone();
        a2.set(7, t, if a.get(7, t) > 0 { a.get(7, t) - 1 } else { a.get(7, t) + 1 });
        assert_ne!(base, tile_ticket(&seed, &honest_states(&a2, &b, &seed), m, n, 0, 0), "inner index {t}");
    }
}

/// (e) Precomputation before the seed is known: one changed header byte changes all the noise.
#[test]
fn the_seed_binds_header_work_and_difficulty() {
    let (a, b) = (random(30, 40, 7), random(40, 20, 8));
    let ch = challenge(&a, &b, b"header bytes", 1000);
    let noise = |c: &ergon_pouw::Challenge| Noise::derive(&c.seed(0), 0..30, 40, 0..20).factors();
    let base = noise(&ch);
    let mut variants = vec![];
    let mut h = ch.clone();
    h.header[3] ^= 0x10;
    variants.push(h);
    let mut d = ch.clone();
    d.difficulty += 1;
    variants.push(d);
    let mut r = ch.clone();
    r.work.root_a[0] ^= 1;
    variants.push(r);
    for v in variants {
        let other = noise(&v);
        let same_rows = base.e_l.iter().zip(&other.e_l).filter(|(x, y)| x == y).count();
        assert!(same_rows <= 2, "{same_rows} rows of E_L unchanged");
        assert_ne!(base.e_r, other.e_r);
        assert_ne!(base.f_r, other.f_r);
    }
}
