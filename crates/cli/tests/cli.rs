//! The `ergon` binary on real files: results, exit codes, and one-line errors for bad input.

use std::path::{Path, PathBuf};
use std::process::Output;

use ergon_kernels::npy::{encode_npy, write_npy};
use ergon_kernels::{MatF32, MatI32, MatI8};

mod common;
use common::ergon;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ergon-cli-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn p(d: &Path, f: &str) -> String {
    d.join(f).to_string_lossy().into_owned()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn write_pair(d: &Path, m: usize, k: usize, n: usize) {
    let a = MatI8::from_fn(m, k, |i, j| ((i * 31 + j * 7) % 253) as i8 / 2).unwrap();
    let b = MatI8::from_fn(k, n, |i, j| ((i * 11 + j * 5) % 251) as i8 / 2).unwrap();
    write_npy(&d.join("A.npy"), &a).unwrap();
    write_npy(&d.join("B.npy"), &b).unwrap();
}

#[test]
fn matmul_then_verify_accepts_and_a_changed_entry_is_caught() {
    let d = dir("verify");
    write_pair(&d, 37, 50, 29);
    let o = ergon(&["matmul", &p(&d, "A.npy"), &p(&d, "B.npy"), "-o", &p(&d, "C.npy")]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = ergon(&["verify", &p(&d, "A.npy"), &p(&d, "B.npy"), &p(&d, "C.npy")]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.starts_with("ok: C = A·B"));

    let mut c: MatI32 = ergon_kernels::npy::read_npy(&d.join("C.npy")).unwrap();
    c.set(20, 3, c.get(20, 3) + 1);
    write_npy(&d.join("C.npy"), &c).unwrap();
    let o = ergon(&["verify", &p(&d, "A.npy"), &p(&d, "B.npy"), &p(&d, "C.npy")]);
    assert_eq!(o.status.code(), Some(1));
    let (out, _) = text(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("row 20"), "{out}");
}

#[test]
fn mining_writes_a_proof_that_verify_proof_accepts_and_tampering_breaks() {
    let d = dir("mine");
    write_pair(&d, 50, 64, 70);
    let o = ergon(&[
        "matmul",
        &p(&d, "A.npy"),
        &p(&d, "B.npy"),
        "-o",
        &p(&d, "C.npy"),
        "--mine",
        "--target",
        "1",
        "--proof-out",
        &p(&d, "proof.bin"),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("9 tickets, 9 winning"), "{out}");
    let o = ergon(&["verify", &p(&d, "A.npy"), &p(&d, "B.npy"), &p(&d, "C.npy")]);
    assert_eq!(o.status.code(), Some(0), "mined product must be the exact product");
    let o = ergon(&["verify-proof", &p(&d, "proof.bin")]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));

    let mut bytes = std::fs::read(d.join("proof.bin")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 4;
    std::fs::write(d.join("bad.bin"), &bytes).unwrap();
    let o = ergon(&["verify-proof", &p(&d, "bad.bin")]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(text(&o).0.starts_with("invalid:"));
}

#[test]
fn bad_files_get_one_line_errors_never_panics() {
    let d = dir("bad");
    write_pair(&d, 5, 6, 7);
    std::fs::write(d.join("text.npy"), b"this is not numpy").unwrap();
    let full = encode_npy(&MatI8::from_fn(4, 4, |i, j| (i + j) as i8).unwrap());
    std::fs::write(d.join("truncated.npy"), &full[..full.len() - 3]).unwrap();
    write_npy(&d.join("int32.npy"), &MatI32::from_fn(6, 7, |i, j| (i * j) as i32).unwrap()).unwrap();
    write_npy(&d.join("wide.npy"), &MatI8::from_fn(9, 9, |_, _| 1).unwrap()).unwrap();
    let a = p(&d, "A.npy");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["matmul".into(), p(&d, "text.npy"), p(&d, "B.npy"), "-o".into(), p(&d, "C.npy")], "not a .npy file"),
        (vec!["matmul".into(), p(&d, "truncated.npy"), p(&d, "B.npy"), "-o".into(), p(&d, "C.npy")], "truncated"),
        (vec!["matmul".into(), a.clone(), p(&d, "int32.npy"), "-o".into(), p(&d, "C.npy")], "expected dtype |i1"),
        (vec!["matmul".into(), a.clone(), p(&d, "wide.npy"), "-o".into(), p(&d, "C.npy")], "inner dimensions differ"),
        (vec!["matmul".into(), a.clone(), p(&d, "missing.npy"), "-o".into(), p(&d, "C.npy")], "No such file"),
        (vec!["verify".into(), a.clone(), p(&d, "B.npy"), p(&d, "A.npy")], "expected dtype <i4"),
        (vec!["verify-proof".into(), p(&d, "A.npy")], "not an ergon proof file"),
        (vec!["quantize".into(), a.clone(), "-o".into(), p(&d, "Q.npy")], "expected dtype <f4"),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = ergon(&args);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {out}{err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: wanted {want:?} in {err}");
    }
    // A 127 cannot be mined on (A+E would leave int8): refused with the position.
    let mut a127 = MatI8::from_fn(5, 6, |_, _| 0).unwrap();
    a127.set(2, 3, 127);
    write_npy(&d.join("A127.npy"), &a127).unwrap();
    let o = ergon(&["matmul", &p(&d, "A127.npy"), &p(&d, "B.npy"), "-o", &p(&d, "C.npy"), "--mine"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("A[2, 3] = 127"), "{err}");
    // `job submit` refuses what a provider would refuse before anything is sent or paid (the
    // API named here is dead), naming the data format and where it is documented.
    assert!(ergon(&["key", "new", "--out", &p(&d, "k.key")]).status.success());
    let (dead, key) = ("127.0.0.1:1", p(&d, "k.key"));
    let submit = |args: &[&str]| {
        let mut all = vec!["job", "submit", "--key", key.as_str()];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--max-price", "100", "--api", dead]);
        let o = ergon(&all);
        let (out, err) = text(&o);
        assert!(!o.status.success() && !out.contains("submitted"), "{args:?}: {out}{err}");
        err
    };
    let err = submit(&["--kind", "train", &p(&d, "text.npy")]);
    assert!(err.contains("data set (gzip-compressed CSV") && err.contains("docs/data.md"), "{err}");
    let err = submit(&[&p(&d, "A127.npy"), &p(&d, "B.npy")]);
    assert!(err.contains("127") && err.contains("cannot mine on this job"), "{err}");
    let err = submit(&[&p(&d, "text.npy"), &p(&d, "B.npy")]);
    assert!(err.contains("not a .npy file") && err.contains("docs/data.md"), "{err}");
}

#[test]
fn quantize_reports_its_error_and_the_result_multiplies() {
    let d = dir("quant");
    let x = MatF32::from_fn(10, 12, |i, j| ((i * 12 + j) as f32 * 0.41).sin() * 3.0).unwrap();
    write_npy(&d.join("X.npy"), &x).unwrap();
    let o = ergon(&[
        "quantize",
        &p(&d, "X.npy"),
        "-o",
        &p(&d, "Q.npy"),
        "--axis",
        "column",
        "--scales-out",
        &p(&d, "S.npy"),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("max abs error") && out.contains("RMS error"), "{out}");
    let q: MatI8 = ergon_kernels::npy::read_npy(&d.join("Q.npy")).unwrap();
    assert!(q.as_slice().iter().all(|v| v.unsigned_abs() <= 126));
    let s: MatF32 = ergon_kernels::npy::read_npy(&d.join("S.npy")).unwrap();
    assert_eq!((s.rows(), s.cols()), (1, 12));
}

/// `bench matmul` beside its peer: with ONNX Runtime installed, both sides' medians and fastest
/// runs and their ratios; without it, the reason it was skipped. Either way Ergon's kernel.
#[test]
fn bench_matmul_reports_ergon_beside_its_peer_or_says_why_not() {
    let o = ergon(&["bench", "matmul", "--sizes", "96", "--shapes", "40x300x70", "--reps", "2", "--no-f32", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let rows = report["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{report}");
    let peer = report["peer"].as_str().unwrap();
    for row in rows {
        assert!(row["int8_gmacs"].as_f64().unwrap() > 0.0 && row["int8_best_seconds"].as_f64().unwrap() > 0.0);
        if peer.starts_with("ONNX Runtime") {
            // Exact on every CPU: where u8 × s8 saturates, the peer is ORT's u8 × u8 path.
            assert_eq!(row["ort_exact"], true, "{row}");
            let kind = row["ort_kind"].as_str().unwrap();
            assert!(kind == "u8s8" || (kind == "u8u8" && row["ergon_over_ort_saturating"].as_f64().is_some()), "{row}");
            let (median, best) =
                (row["ergon_over_ort"].as_f64().unwrap(), row["ergon_over_ort_best"].as_f64().unwrap());
            assert!(median > 0.0 && best > 0.0, "{row}");
        } else {
            assert!(peer.starts_with("skipped: ") && row["ergon_over_ort"].is_null(), "{peer}: {row}");
        }
    }
    assert!(report["kernel"].as_str().is_some_and(|k| !k.is_empty()), "{report}");
}

/// `bench pouw` reports mining's overhead, Freivalds and the floor under it (reading A, B and C
/// once), all as measured shares of the same plain product.
#[test]
fn bench_pouw_reports_freivalds_beside_one_read_of_its_inputs() {
    let o = ergon(&["bench", "pouw", "--sizes", "192", "--reps", "2", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let row = &report["results"][0];
    for field in
        ["mining_overhead", "freivalds_fraction_of_product", "read_inputs_seconds", "read_inputs_fraction_of_product"]
    {
        assert!(row[field].as_f64().is_some_and(|v| v > 0.0), "{field}: {row}");
    }
    let (sp, sr) = (row["plain_seconds"].as_f64().unwrap(), row["read_inputs_seconds"].as_f64().unwrap());
    assert!((row["read_inputs_fraction_of_product"].as_f64().unwrap() - sr / sp).abs() < 1e-9, "{row}");
}
