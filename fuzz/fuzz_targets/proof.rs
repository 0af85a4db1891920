#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let target = ergon_fuzz_targets::target("proof").expect("a known target");
    (target.run)(data);
});
