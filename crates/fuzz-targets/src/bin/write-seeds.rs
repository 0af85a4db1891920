//! Writes each target's seeds to DIR/<target>/seed-N, the starting corpus `fuzz/run.sh` uses.

fn main() -> std::process::ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: write-seeds DIR");
        return std::process::ExitCode::from(2);
    };
    for t in ergon_fuzz_targets::TARGETS {
        let d = std::path::Path::new(&dir).join(t.name);
        for (i, s) in (t.seeds)().iter().enumerate() {
            let written = std::fs::create_dir_all(&d).and_then(|()| std::fs::write(d.join(format!("seed-{i}")), s));
            if let Err(e) = written {
                eprintln!("{}: {e}", d.display());
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    std::process::ExitCode::SUCCESS
}
