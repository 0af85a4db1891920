#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let target = ergon_fuzz_targets::target("genesis").expect("a known target");
    (target.run)(data);
});
