#!/usr/bin/env bash
# Fuzzes every decoder under libFuzzer: `fuzz/run.sh [runs per target] [target ...]`.
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Each target starts
# from the seeds the targets crate builds with the real encoders (written to corpus/<target>),
# runs `runs` executions (default 1,000,000), and stops at the first crash, leaving it in
# artifacts/<target>. The same targets run on a fixed corpus inside `cargo test`.
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-1000000}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(transaction block proof dispute npy ml sealed_blob genesis wire)
fi
cargo run --quiet --release --manifest-path ../Cargo.toml -p ergon-fuzz-targets --bin write-seeds -- corpus
for t in "${targets[@]}"; do
    echo "== $t: $runs runs"
    cargo +nightly fuzz run --release "$t" "corpus/$t" -- -runs="$runs" -max_len=65536 -print_final_stats=1 2>&1 \
        | grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|Done|==[0-9]+== ERROR)|SUMMARY" || true
done
