//! The fast kernels against the naive reference and the portable kernel's transcript, on odd
//! shapes and depths and extreme values, for every ISA this machine has (the others are named as
//! skipped).

use ergon_kernels::gemm::{
    fold_tile, gemm_into, transcript_grid, FoldState, GemmOptions, Isa, Transcript, MAX_K, MR, NR,
};
use ergon_kernels::reference::matmul_naive;
use ergon_kernels::{matmul_with, KernelError, MatI32, MatI8};
use proptest::prelude::*;

fn random(rows: usize, cols: usize, seed: u64) -> MatI8 {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    MatI8::from_fn(rows, cols, |_, _| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 24) as i8
    })
    .unwrap()
}

/// Every kernel this CPU can run; the others are printed as skipped.
fn isas() -> Vec<Isa> {
    let (run, skip): (Vec<Isa>, Vec<Isa>) = Isa::ALL.into_iter().partition(|isa| isa.supported());
    if !skip.is_empty() {
        let names: Vec<&str> = skip.iter().map(|isa| isa.name()).collect();
        eprintln!("skipped (this CPU lacks them): {}", names.join(", "));
    }
    run
}

#[test]
fn the_detected_kernel_is_the_fastest_supported_and_unsupported_ones_are_refused() {
    assert_eq!(Some(Isa::detect()), Isa::ALL.into_iter().find(|isa| isa.supported()));
    let (a, b) = (random(6, 16, 1), random(16, 16, 2));
    for isa in Isa::ALL.into_iter().filter(|isa| !isa.supported()) {
        let err = matmul_with(&a, &b, GemmOptions { isa: Some(isa), ..GemmOptions::default() }).unwrap_err();
        assert!(matches!(err, KernelError::Unsupported(_)), "{isa:?}: {err}");
    }
}

fn product(a: &MatI8, b: &MatI8, isa: Isa) -> MatI32 {
    matmul_with(a, b, GemmOptions { isa: Some(isa), ..GemmOptions::default() }).unwrap()
}

#[test]
fn odd_shapes_match_the_reference() {
    let shapes = [
        (1, 1, 1),
        (7, 13, 5),
        (6, 16, 16),
        (13, 257, 33),
        (97, 513, 31),
        (5, 1, 300),
        (300, 1, 7),
        (12, 256, 32),
        (25, 259, 65),
        (200, 770, 97),
        // k across the VNNI driver's 2048-deep panels, a partial last quad among them.
        (29, 2051, 70),
        (7, 4099, 33),
    ];
    for &(m, k, n) in &shapes {
        let (a, b) = (random(m, k, m as u64), random(k, n, n as u64 + 7));
        let want = matmul_naive(&a, &b).unwrap();
        for isa in isas() {
            assert_eq!(product(&a, &b, isa), want, "{m}x{k}x{n} on {isa:?}");
        }
    }
}

/// `matmul_with` writes C into fresh memory without zeroing it first: every entry must be stored
/// whatever the memory held, across k-panels (k = 4099 is three of the pair driver's 2048-deep
/// panels), on both of its cuts of the work, and with an epilogue, which gets tiles of C as
/// values (so the row blocks zero their rows of fresh memory first).
#[test]
fn fresh_output_memory_is_stored_in_full() {
    let pools: Vec<_> = [1, 2].map(|t| rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap()).into();
    let plus_one = |tile: ergon_kernels::gemm::TileMut<'_>| {
        for i in 0..tile.rows {
            for v in &mut tile.c[i * tile.ldc..i * tile.ldc + tile.cols] {
                *v += 1;
            }
        }
    };
    // Row blocks (many rows, or n ≤ 16) and column blocks (few rows), on 1 thread and on 2.
    let shapes = [
        (97, 513, 31),
        (200, 770, 97),
        (7, 4099, 33),
        (301, 4099, 70),
        (13, 300, 2000),
        (1000, 300, 50),
        (50, 2100, 9),
    ];
    for (m, k, n) in shapes {
        let (a, b) = (random(m, k, 41), random(k, n, 42));
        let want = matmul_naive(&a, &b).unwrap();
        for pool in &pools {
            for isa in isas() {
                // Memory the allocator will likely hand out again, holding what no product gives.
                drop(std::hint::black_box(vec![0x5EED_5EEDi32; m * n]));
                let c = pool.install(|| product(&a, &b, isa));
                assert_eq!(c, want, "{m}x{k}x{n} on {isa:?}, {} threads", pool.current_num_threads());
                drop(std::hint::black_box(vec![0x5EED_5EEDi32; m * n]));
                let opts = GemmOptions { isa: Some(isa), epilogue: Some(&plus_one), ..GemmOptions::default() };
                let c = pool.install(|| matmul_with(&a, &b, opts)).unwrap();
                assert!(c.as_slice().iter().zip(want.as_slice()).all(|(c, w)| *c == w + 1), "{m}x{k}x{n} on {isa:?}");
            }
        }
    }
}

#[test]
fn large_odd_shape_matches_the_reference() {
    let (a, b) = (random(999, 1001, 1), random(1001, 1000, 2));
    let want = matmul_naive(&a, &b).unwrap();
    assert_eq!(product(&a, &b, Isa::detect()), want);
}

#[test]
fn extreme_values_are_exact() {
    for (va, vb) in [(127, 127), (-127, 127), (-128, -128), (-128, 127), (127, -128)] {
        let (m, k, n) = (19, 1000, 21);
        let a = MatI8::from_fn(m, k, |_, _| va).unwrap();
        let b = MatI8::from_fn(k, n, |_, _| vb).unwrap();
        let want = matmul_naive(&a, &b).unwrap();
        assert_eq!(want.get(0, 0), va as i32 * vb as i32 * k as i32);
        for isa in isas() {
            assert_eq!(product(&a, &b, isa), want, "{va}*{vb} on {isa:?}");
        }
    }
}

#[test]
fn deepest_allowed_k_is_exact_and_deeper_is_refused() {
    let a = MatI8::from_fn(2, MAX_K, |i, _| if i == 0 { 127 } else { -127 }).unwrap();
    let b = MatI8::from_fn(MAX_K, 3, |_, _| 127).unwrap();
    let c = product(&a, &b, Isa::detect());
    assert_eq!(c.get(0, 0), 127 * 127 * MAX_K as i32);
    assert_eq!(c.get(1, 2), -127 * 127 * MAX_K as i32);

    let a = MatI8::from_fn(1, MAX_K + 1, |_, _| 1).unwrap();
    let b = MatI8::from_fn(MAX_K + 1, 1, |_, _| 1).unwrap();
    assert!(matches!(matmul_with(&a, &b, GemmOptions::default()), Err(KernelError::TooDeep { .. })));
    // -128 at k near MAX_K could overflow int32, so it is refused with a reason.
    let a = MatI8::from_fn(1, 132_000, |_, _| -128).unwrap();
    let b = MatI8::from_fn(132_000, 1, |_, _| -128).unwrap();
    assert!(matches!(matmul_with(&a, &b, GemmOptions::default()), Err(KernelError::Overflow { .. })));
}

#[test]
fn mismatched_shapes_are_refused() {
    let err = matmul_with(&random(3, 4, 1), &random(5, 6, 2), GemmOptions::default()).unwrap_err();
    assert!(err.to_string().contains("inner dimensions differ"), "{err}");
}

#[test]
fn thread_count_does_not_change_bits() {
    let (a, b) = (random(200, 300, 5), random(300, 170, 6));
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let c1 = one.install(|| product(&a, &b, Isa::detect()));
    assert_eq!(c1, product(&a, &b, Isa::detect()));
}

/// The thread count picks how the VNNI driver cuts the work: on 1 thread these are row blocks;
/// on 8, too few rows for every thread, so column blocks, over two row blocks at 900 rows and
/// one at 300. Products and folds must not change.
#[test]
fn every_cut_of_the_work_gives_the_same_bits() {
    let pools: Vec<_> = [1, 2, 8].map(|t| rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap()).into();
    for (m, k, n) in [(900, 300, 200), (300, 2100, 100), (1000, 70, 40)] {
        let (a, b) = (random(m, k, 21), random(k, n, 22));
        let want = matmul_naive(&a, &b).unwrap();
        let (_, s0) = folded(&a, &b, 32, Isa::Portable);
        for pool in &pools {
            for isa in isas() {
                assert_eq!(pool.install(|| product(&a, &b, isa)), want, "{m}x{k}x{n} on {isa:?}");
                let (c, s) = pool.install(|| folded(&a, &b, 32, isa));
                assert_eq!(c, want);
                assert_eq!(s, s0, "{m}x{k}x{n} folds on {isa:?}, {} threads", pool.current_num_threads());
            }
        }
    }
}

fn folded(a: &MatI8, b: &MatI8, depth: usize, isa: Isa) -> (MatI32, Vec<FoldState>) {
    let (gr, gc) = transcript_grid(a.rows(), b.cols());
    let mut states = vec![[0u32; 8]; gr * gc];
    let mut c = MatI32::zeros(a.rows(), b.cols()).unwrap();
    let t = Transcript { depth, states: &mut states };
    gemm_into(a, b, &mut c, Some(t), GemmOptions { isa: Some(isa), ..GemmOptions::default() }).unwrap();
    (c, states)
}

#[test]
fn transcript_folds_agree_across_isas_and_do_not_disturb_the_product() {
    let cases = [
        (7, 13, 5, 16),
        (25, 600, 40, 16),
        (12, 512, 32, 32),
        (6, 17, 16, 2),
        (6, 17, 16, 4),
        (13, 37, 20, 8),
        (24, 256, 32, 32),
        (30, 289, 70, 32),
        (200, 700, 97, 32),
        (101, 1030, 33, 64),
        // Enough row blocks that no column split happens (the VNNI driver's other path); on 2
        // threads these are its 48-row blocks.
        (1000, 70, 40, 32),
        // Several of the VNNI driver's 2048-deep k-panels.
        (30, 2100, 50, 32),
        (13, 4100, 20, 64),
    ];
    for &(m, k, n, depth) in &cases {
        let (a, b) = (random(m, k, 11), random(k, n, 12));
        let want = matmul_naive(&a, &b).unwrap();
        let (c0, s0) = folded(&a, &b, depth, Isa::Portable);
        assert_eq!(c0, want);
        for isa in isas() {
            let (c, s) = folded(&a, &b, depth, isa);
            assert_eq!(c, want);
            assert_eq!(s, s0, "{m}x{k}x{n} depth {depth} on {isa:?}");
        }
        // The fold sees every step: once k spans several steps, another depth gives other states.
        if k > 32 {
            let (_, other) = folded(&a, &b, if depth == 16 { 32 } else { 16 }, Isa::Portable);
            assert_ne!(other, s0);
        }
    }
}

/// The transcript as `fold_tile` defines it, from nothing but the naive sums: each 6×16
/// microtile's prefix sums over k-steps 0..t, zero outside C, folded at t = depth, 2·depth, …
/// and at k.
fn naive_folds(a: &MatI8, b: &MatI8, depth: usize) -> Vec<FoldState> {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    let (gr, gc) = transcript_grid(m, n);
    let mut states = vec![[0u32; 8]; gr * gc];
    let mut sums = vec![[[0i32; NR]; MR]; gr * gc];
    for t in 0..k {
        for (tile, acc) in sums.iter_mut().enumerate() {
            let (r0, c0) = (tile / gc * MR, tile % gc * NR);
            for (i, row) in acc.iter_mut().enumerate().filter(|(i, _)| r0 + i < m) {
                let av = a.as_slice()[(r0 + i) * k + t] as i32;
                for (j, v) in row.iter_mut().enumerate().filter(|(j, _)| c0 + j < n) {
                    *v += av * b.as_slice()[t * n + c0 + j] as i32;
                }
            }
        }
        if (t + 1) % depth == 0 || t + 1 == k {
            for (state, acc) in states.iter_mut().zip(&sums) {
                fold_tile(state, acc);
            }
        }
    }
    states
}

/// Every kernel, on both of the pair driver's cuts (row blocks, and column blocks for few rows)
/// and the VNNI driver's where the CPU has one, folds exactly the normative transcript.
#[test]
fn transcripts_match_the_fold_of_the_naive_sums() {
    for (m, k, n, depth) in [(100, 700, 600, 32), (13, 1030, 90, 64), (200, 300, 40, 16), (30, 2100, 50, 32)] {
        let (a, b) = (random(m, k, 31), random(k, n, 32));
        let want = naive_folds(&a, &b, depth);
        for isa in isas() {
            let (c, s) = folded(&a, &b, depth, isa);
            assert_eq!(c, matmul_naive(&a, &b).unwrap(), "{m}x{k}x{n} on {isa:?}");
            assert!(s == want, "{m}x{k}x{n} depth {depth}: {isa:?} folds another transcript");
        }
    }
}

#[test]
fn bad_fold_depth_is_refused() {
    let (a, b) = (random(6, 16, 1), random(16, 16, 2));
    let mut states = vec![[0u32; 8]; 1];
    let mut c = MatI32::zeros(6, 16).unwrap();
    for depth in [0, 3, 24] {
        let t = Transcript { depth, states: &mut states };
        assert!(gemm_into(&a, &b, &mut c, Some(t), GemmOptions::default()).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    #[test]
    fn random_shapes_fold_the_portable_transcript(m in 1usize..60, k in 1usize..700, n in 1usize..80, seed in any::<u64>()) {
        let (a, b) = (random(m, k, seed), random(k, n, seed ^ 0x5eed));
        let want = folded(&a, &b, 32, Isa::Portable);
        for isa in isas() {
            prop_assert_eq!(&folded(&a, &b, 32, isa), &want, "{}x{}x{} on {:?}", m, k, n, isa);
        }
    }

    #[test]
    fn random_shapes_match_the_reference(m in 1usize..40, k in 1usize..600, n in 1usize..50, seed in any::<u64>()) {
        let (a, b) = (random(m, k, seed), random(k, n, seed ^ 0xabc));
        let want = matmul_naive(&a, &b).unwrap();
        for isa in isas() {
            prop_assert_eq!(product(&a, &b, isa), want.clone());
        }
    }
}
