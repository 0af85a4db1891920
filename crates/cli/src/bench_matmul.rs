//! `ergon bench matmul`: Ergon's exact int8 product beside the int8 GEMM a user could install
//! instead (ONNX Runtime's `MatMulInteger` on MLAS, on its fastest path that is exact on this
//! CPU), a float32 GEMM, and the machine's measured int8 peak. Everything is measured in one run,
//! shape by shape, on the same threads.
//!
//! ONNX Runtime runs in a python3 subprocess (`bench/ort_matmul.py`, compiled in, run with
//! `--serve`), one product per command, and its runs alternate with Ergon's: on a shared machine
//! a burst of load lasting seconds then lands on both sides instead of taking one side's whole
//! median, and the ratio is the median over those pairs. Each timed run follows an untimed one of
//! the same side, which warms its caches again and lets the other side's spinning worker threads
//! park. Without VNNI, ORT's fast u8 × s8 path saturates (`vpmaddubsw`) and is wrong on
//! full-range inputs; the peer is then its exact u8 × u8 path, and the saturating one is timed
//! beside it for reference only. The peer is skipped, with the reason, when
//! `onnxruntime`, `onnx` or `numpy` is missing (`pip install onnxruntime onnx numpy`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};

use clap::Args;
use ergon_kernels::gemm::Isa;
use ergon_kernels::peak::measure_int8_peak;
use serde::{Deserialize, Serialize};

use crate::matrix_cmds::{gmacs, random_matrix};
use crate::CmdResult;

/// The peer's script, run by python3 from stdin.
const ORT_SCRIPT: &str = include_str!("../../../bench/ort_matmul.py");

#[derive(Args)]
pub struct MatmulArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Square sizes to measure.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1024, 2048, 4096])]
    sizes: Vec<usize>,
    /// Further shapes M×K×N (the skinny ones of ML inference by default); `--shapes none` for
    /// none.
    #[arg(long, value_delimiter = ',', default_values_t = vec!["256x4096x4096".to_string(), "4096x4096x256".to_string()])]
    shapes: Vec<String>,
    /// Runs per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Leave out the float32 GEMM (it is slow at 4096).
    #[arg(long)]
    no_f32: bool,
    /// Leave out ONNX Runtime.
    #[arg(long)]
    no_peer: bool,
}

#[derive(Serialize)]
struct Row {
    m: usize,
    k: usize,
    n: usize,
    int8_seconds: f64,
    int8_gmacs: f64,
    /// ONNX Runtime's median, and Ergon's throughput ÷ its (above 1: Ergon is faster): the
    /// median over interleaved pairs of runs of ORT's time ÷ Ergon's.
    ort_seconds: Option<f64>,
    ort_gmacs: Option<f64>,
    ergon_over_ort: Option<f64>,
    ort_exact: Option<bool>,
    /// ORT's path for this shape: "u8s8", or "u8u8" where u8 × s8 saturates on this CPU.
    ort_kind: Option<String>,
    /// Where ORT's u8 × s8 saturates: its median anyway (not the same job: wrong products), and
    /// Ergon's throughput ÷ its, as the median over the same pairs.
    ort_saturating_gmacs: Option<f64>,
    ergon_over_ort_saturating: Option<f64>,
    /// The fastest run of each, and their ratio: on a shared machine interference only adds
    /// time, and a disturbance lasting seconds can take a whole side's median.
    int8_best_seconds: f64,
    ort_best_seconds: Option<f64>,
    ergon_over_ort_best: Option<f64>,
    f32_seconds: Option<f64>,
    f32_gmacs: Option<f64>,
    fraction_of_int8_peak: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    bench: &'static str,
    threads: usize,
    /// The kernel Ergon ran (chosen at run time) and the CPU's int8 instructions.
    kernel: &'static str,
    int8_peak_gmacs: Option<f64>,
    peak_isa: Option<&'static str>,
    peak_method: Option<&'static str>,
    peer: String,
    f32_library: &'static str,
    results: Vec<Row>,
}

/// One line the peer's script prints.
#[derive(Deserialize)]
struct PeerLine {
    ort: Option<String>,
    skipped: Option<String>,
    exact: Option<bool>,
    kind: Option<String>,
    seconds: Option<f64>,
    error: Option<String>,
}

/// ONNX Runtime in a python3 subprocess, one product per `run`.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    /// Starts the script; its name and version, or why there is no peer.
    fn start(threads: usize) -> Result<(Peer, String), String> {
        let mut child = Command::new("python3")
            .args(["-c", ORT_SCRIPT, "--serve", "--threads", &threads.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("python3 could not be started ({e})"))?;
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, BufReader::new(o)),
            _ => return Err("no pipes to python3".into()),
        };
        let mut peer = Peer { child, stdin, stdout };
        let first = peer.line()?;
        if let Some(why) = first.skipped {
            return Err(why);
        }
        let version = first.ort.ok_or("the ONNX Runtime script did not say its version")?;
        Ok((
            peer,
            format!("ONNX Runtime {version} MatMulInteger (zero points 128; u8 x s8, or u8 x u8 where that saturates)"),
        ))
    }

    fn line(&mut self) -> Result<PeerLine, String> {
        let mut text = String::new();
        match self.stdout.read_line(&mut text) {
            Ok(0) => Err("the ONNX Runtime script stopped".into()),
            Ok(_) => {
                let line: PeerLine = serde_json::from_str(&text)
                    .map_err(|e| format!("the ONNX Runtime script printed {:?} ({e})", text.trim()))?;
                match line.error {
                    Some(e) => Err(format!("the ONNX Runtime script: {e}")),
                    None => Ok(line),
                }
            }
            Err(e) => Err(format!("reading the ONNX Runtime script: {e}")),
        }
    }

    fn send(&mut self, command: &str) -> Result<PeerLine, String> {
        writeln!(self.stdin, "{command}").and_then(|()| self.stdin.flush()).map_err(|e| format!("python3: {e}"))?;
        self.line()
    }

    /// Builds and warms up the sessions for a shape.
    fn shape(&mut self, (m, k, n): (usize, usize, usize)) -> Result<PeerShape, String> {
        let line = self.send(&format!("shape {m} {k} {n}"))?;
        match (line.exact, line.kind) {
            (Some(exact), Some(kind)) => Ok(PeerShape { exact, kind }),
            _ => Err("the ONNX Runtime script did not describe its sessions".into()),
        }
    }

    /// The seconds of one product on the exact path, or on the saturating u8 × s8 one.
    fn run(&mut self, saturating: bool) -> Result<f64, String> {
        self.send(if saturating { "run saturating" } else { "run" })?.seconds.ok_or_else(|| "no time".into())
    }
}

/// What the peer set up for one shape.
struct PeerShape {
    /// Whether the timed path's product was exact.
    exact: bool,
    /// "u8s8", or "u8u8" when u8 × s8 was not exact (its session is then kept, to time for
    /// reference).
    kind: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.wait();
    }
}

fn parse_shape(s: &str) -> Result<(usize, usize, usize), String> {
    let dims: Vec<usize> = s
        .split(['x', '×'])
        .map(|d| d.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("shape {s:?}: expected M×K×N, e.g. 256x4096x4096"))?;
    match dims[..] {
        [m, k, n] if [m, k, n].iter().all(|&d| (1..=16_384).contains(&d)) => Ok((m, k, n)),
        _ => Err(format!("shape {s:?}: expected three sides in 1..=16384, e.g. 256x4096x4096")),
    }
}

pub fn run(args: MatmulArgs) -> CmdResult {
    if args.reps == 0 || args.sizes.iter().any(|&n| n == 0 || n > 16_384) {
        return Err("need --reps >= 1 and --sizes in 1..=16384".into());
    }
    let mut shapes: Vec<(usize, usize, usize)> = args.sizes.iter().map(|&n| (n, n, n)).collect();
    for s in args.shapes.iter().filter(|s| !s.is_empty() && s.as_str() != "none") {
        shapes.push(parse_shape(s)?);
    }
    let threads = rayon::current_num_threads();
    let peak = measure_int8_peak(1000);
    let (mut peer, mut peer_name) = if args.no_peer {
        (None, "not run (--no-peer)".to_string())
    } else {
        match Peer::start(threads) {
            Ok((peer, name)) => (Some(peer), name),
            Err(why) => (None, format!("skipped: {why}")),
        }
    };
    let mut results = Vec::new();
    for (m, k, n) in shapes {
        // Full-range signed int8, −128 included: the product is exact for every input.
        let (a, b) = (random_matrix(m, k, 127, 1)?, random_matrix(k, n, 127, 2)?);
        let mut setup = None;
        if let Some(p) = peer.as_mut() {
            match p.shape((m, k, n)) {
                Ok(s) => setup = Some(s),
                Err(why) => {
                    peer_name = format!("skipped: {why}");
                    peer = None;
                }
            }
        }
        let ergon = || -> Result<f64, String> {
            let (c, s) = crate::bench::time(|| ergon_kernels::matmul(&a, &b));
            std::hint::black_box(c.map_err(|e| e.to_string())?);
            Ok(s)
        };
        // The two sides take turns, each going first every other pair, and each timed run comes
        // right after an untimed one of its own: that run warms its caches, page tables and
        // thread pool again after the other side's, and lets the other side's spinning worker
        // threads (ORT's spin by default, rayon's briefly) park before the timed one.
        let saturating = setup.as_ref().is_some_and(|s| s.kind == "u8u8");
        let (mut ti, mut to, mut ts) = (Vec::new(), Vec::new(), Vec::new());
        for rep in 0..args.reps {
            let Some(p) = peer.as_mut() else {
                ergon()?;
                ti.push(ergon()?);
                continue;
            };
            // The saturating path, where there is one, runs right after the exact one.
            let mut ort_twice = || {
                let exact = p.run(false).and_then(|_| p.run(false))?;
                let fast = if saturating { Some(p.run(true).and_then(|_| p.run(true))?) } else { None };
                Ok::<_, String>((exact, fast))
            };
            let pair = if rep % 2 == 0 {
                let o = ort_twice();
                ergon()?;
                (ergon()?, o)
            } else {
                ergon()?;
                let e = ergon()?;
                (e, ort_twice())
            };
            match pair {
                (e, Ok((o, s))) => {
                    ti.push(e);
                    to.push(o);
                    ts.extend(s);
                }
                (e, Err(why)) => {
                    ti.push(e);
                    peer_name = format!("skipped: {why}");
                    peer = None;
                    to.clear();
                    ts.clear();
                }
            }
        }
        // Every pair ran (a peer that failed part-way leaves no ratio for the shape).
        let paired = !to.is_empty() && to.len() == ti.len();
        let mut tf = Vec::new();
        if !args.no_f32 {
            let af: Vec<f32> = a.as_slice().iter().map(|&v| v as f32).collect();
            let bf: Vec<f32> = b.as_slice().iter().map(|&v| v as f32).collect();
            let mut cf = vec![0f32; m * n];
            for rep in 0..=args.reps {
                let ((), sf) = crate::bench::time(|| sgemm((m, k, n), &af, &bf, &mut cf));
                std::hint::black_box(&cf);
                if rep > 0 {
                    tf.push(sf);
                }
            }
        }
        let macs = (m * k * n) as f64;
        let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let (bi, bo) = (best(&ti), paired.then(|| best(&to)));
        let pairs = paired.then(|| crate::bench::median(to.iter().zip(&ti).map(|(o, e)| o / e).collect()));
        let saturated = (paired && saturating && ts.len() == ti.len()).then(|| {
            (crate::bench::median(ts.clone()), crate::bench::median(ts.iter().zip(&ti).map(|(s, e)| s / e).collect()))
        });
        let si = crate::bench::median(ti);
        let so = paired.then(|| crate::bench::median(to));
        let sf = (!args.no_f32).then(|| crate::bench::median(tf));
        results.push(Row {
            m,
            k,
            n,
            int8_seconds: si,
            int8_gmacs: gmacs(macs, si),
            ort_seconds: so,
            ort_gmacs: so.map(|s| gmacs(macs, s)),
            ergon_over_ort: pairs,
            ort_exact: setup.as_ref().filter(|_| paired).map(|s| s.exact),
            ort_kind: setup.filter(|_| paired).map(|s| s.kind),
            ort_saturating_gmacs: saturated.map(|(s, _)| gmacs(macs, s)),
            ergon_over_ort_saturating: saturated.map(|(_, r)| r),
            int8_best_seconds: bi,
            ort_best_seconds: bo,
            ergon_over_ort_best: bo.map(|s| s / bi),
            f32_seconds: sf,
            f32_gmacs: sf.map(|s| gmacs(macs, s)),
            fraction_of_int8_peak: peak.map(|p| macs / si / p.macs_per_s),
        });
    }
    let report = Report {
        bench: "matmul",
        threads,
        kernel: Isa::detect().name(),
        int8_peak_gmacs: peak.map(|p| p.macs_per_s / 1e9),
        peak_isa: peak.map(|p| p.isa.name()),
        peak_method: peak.map(|p| p.method),
        peer: peer_name,
        f32_library: "matrixmultiply 0.3 (threading)",
        results,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    print_table(&report);
    Ok(ExitCode::SUCCESS)
}

fn print_table(report: &Report) {
    let opt = |v: Option<f64>, digits: usize| v.map_or("—".to_string(), |v| format!("{v:.digits$}"));
    println!("int8 matmul: Ergon's {} kernel, {} threads", report.kernel, report.threads);
    match (report.int8_peak_gmacs, report.peak_isa, report.peak_method) {
        (Some(p), Some(isa), Some(method)) => println!("int8 peak {p:.1} G MAC/s on {isa} ({method})"),
        _ => println!("int8 peak: not measured (no SIMD int8 instruction on this CPU)"),
    }
    println!("peer: {}", report.peer);
    println!(
        "{:>16} {:>10} {:>12} {:>12} {:>11} {:>11} {:>12} {:>8}",
        "M×K×N", "Ergon s", "Ergon G/s", "ORT G/s", "Ergon÷ORT", "(best)", "f32 G/s", "% peak"
    );
    for r in &report.results {
        let exact = match (r.ort_exact, r.ort_kind.as_deref()) {
            (Some(false), _) => " (ORT inexact!)".to_string(),
            (_, Some("u8u8")) => format!(
                " ORT u8×u8; its u8×s8 saturates here ({} G/s, Ergon ÷ it {})",
                opt(r.ort_saturating_gmacs, 1),
                opt(r.ergon_over_ort_saturating, 2)
            ),
            _ => String::new(),
        };
        println!(
            "{:>16} {:>10.4} {:>12.1} {:>12} {:>11} {:>11} {:>12} {:>8}{exact}",
            format!("{}×{}×{}", r.m, r.k, r.n),
            r.int8_seconds,
            r.int8_gmacs,
            opt(r.ort_gmacs, 1),
            opt(r.ergon_over_ort, 2),
            opt(r.ergon_over_ort_best, 2),
            opt(r.f32_gmacs, 1),
            r.fraction_of_int8_peak.map_or("—".into(), |f| format!("{:.0}%", f * 100.0))
        );
    }
    println!("(G/s = 10^9 multiply-adds per second, medians; Ergon÷ORT = median over interleaved pairs of runs;");
    println!(" (best) = fastest Ergon run ÷ fastest ORT run; a float32 FMA counts as one multiply-add)");
    if report.results.iter().any(|r| r.ort_kind.as_deref() == Some("u8u8")) {
        println!("ORT's u8×s8 path here is `vpmaddubsw` (no VNNI): its i16 pair sums saturate, so its products are");
        println!(
            "wrong on full-range int8; the peer is ORT's exact u8×u8 path, the saturating one shown for reference"
        );
    }
}

/// C = A·B in float32 with matrixmultiply (multi-threaded), row-major.
fn sgemm((m, k, n): (usize, usize, usize), a: &[f32], b: &[f32], c: &mut [f32]) {
    // SAFETY: a is m×k, b k×n, c m×n, all row-major with unit column stride.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}
