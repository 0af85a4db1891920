//! A provider fills its memory challenge for seconds while validators keep probing it: the
//! probe (the smallest compute challenge, microseconds of work) must be answered during the
//! fill, not after it. Each of the fill's lanes is one task of seconds; run on the threads every
//! other parallel job shares, it held them all, and a probe's product queued behind it until
//! the fill was done: an honest provider was judged absent at every memory epoch and lost its
//! leases (a CI run of `crates/cli/tests/poai_memory.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ergon_poai::memory::MemoryChallenge;
use ergon_poai::ComputeChallenge;
use ergon_types::{Address, Hash};

#[test]
fn a_probe_is_answered_while_a_memory_fill_runs() {
    // As few shared threads as the fill has lanes or fewer, as on a 2-core provider, whatever
    // this machine has.
    rayon::ThreadPoolBuilder::new().num_threads(2).build_global().expect("the first pool of this test binary");
    let filling = Arc::new(AtomicBool::new(true));
    let fill = {
        let filling = filling.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let fill = MemoryChallenge::derive(&Hash([1; 32]), &Address([2; 20]), 3, 128).fill();
            filling.store(false, Ordering::SeqCst);
            (started.elapsed(), fill.root())
        })
    };
    // Let the fill's lanes start.
    std::thread::sleep(Duration::from_millis(200));
    let mut answered = vec![];
    while filling.load(Ordering::SeqCst) && answered.len() < 5 {
        let probe = ComputeChallenge::derive(&Hash([3; 32]), &Address([4; 20]), 7, 0, 0, 100_000_000, 8);
        let started = Instant::now();
        let answer = probe.solve();
        assert_eq!(probe.check(&answer), Ok(()));
        answered.push((started.elapsed(), filling.load(Ordering::SeqCst)));
        std::thread::sleep(Duration::from_millis(50));
    }
    let (fill_took, _) = fill.join().expect("the fill finishes");
    assert!(fill_took > Duration::from_millis(500), "a fill this short proves nothing: {fill_took:?}");
    assert!(!answered.is_empty(), "no probe was started during the fill ({fill_took:?})");
    // Each probe answered while the fill still ran, in a small share of it.
    for (took, during) in &answered {
        assert!(*during && *took * 8 < fill_took, "a probe took {took:?} beside a fill of {fill_took:?}: {answered:?}");
    }
}
