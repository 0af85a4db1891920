//! Each fuzz target on its seeds and a fixed set of mutations of them, so `cargo test` catches
//! a decoder that panics or accepts two spellings of one value without a fuzzer installed.
//! `fuzz/run.sh` runs the same targets under libFuzzer for as long as you like.

#[test]
fn every_decoder_survives_its_seeds_and_their_mutations() {
    for t in ergon_fuzz_targets::TARGETS {
        let seeds = (t.seeds)();
        assert!(!seeds.is_empty(), "{}", t.name);
        for s in &seeds {
            (t.run)(s);
        }
        let inputs = ergon_fuzz_targets::mutations(&seeds, 20_000, 0x5eed ^ t.name.len() as u64);
        for (i, input) in inputs.iter().enumerate() {
            let outcome = std::panic::catch_unwind(|| (t.run)(input));
            assert!(
                outcome.is_ok(),
                "target {} panicked on mutation {i}: {:02x?}",
                t.name,
                &input[..input.len().min(64)]
            );
        }
    }
}
