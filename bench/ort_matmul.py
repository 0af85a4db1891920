"""ONNX Runtime's int8 GEMM (MatMulInteger on MLAS), timed the way `ergon bench matmul` times
Ergon's, for the side-by-side ratio.

`ergon bench matmul` runs this with --serve (the script text passed to python3 -c): it prints
{"ort": version} (or {"skipped": why}), then answers commands on stdin, one JSON line each:
"shape M K N" builds the sessions, runs them once to warm up and checks them exact
({"exact": bool, "kind": "u8s8" | "u8u8"}), "run" times one product of the exact session
({"seconds": s}), "run saturating" one of the u8 × s8 session when that one was not exact
(kind "u8u8"), "quit" ends. The bench alternates these runs with its own, so a burst of load on a
shared machine lands on both sides. By hand:

    python3 bench/ort_matmul.py --shapes 1024x1024x1024,256x4096x4096 --threads 2 --reps 5

A signed int8 A is fed as A + 128 (uint8) with a_zero_point 128, so MatMulInteger computes the
exact signed product A·B: the way an ONNX Runtime user gets int8 × int8 on its fast u8 × s8 path.
On CPUs without VNNI that path is `vpmaddubsw`, whose i16 pair sums saturate (255·127·2 > 2^15),
so its product is wrong on full-range inputs; then B is fed as B + 128 too (b_zero_point 128) and
MLAS takes its exact u8 × u8 path, which is the peer. Each product is checked exact against an
int64 numpy product (every row up to 2^27 multiply-adds, otherwise 16 rows drawn at random). By
hand it prints one JSON object: {"ort": version, "results": [...]}, or {"skipped": why} when
onnxruntime, onnx or numpy is missing.
"""
import argparse
import json
import sys
import time

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
except ImportError as e:  # the bench prints this and goes on without the peer
    print(json.dumps({"skipped": f"{e.name} is not installed (pip install onnxruntime onnx numpy)"}))
    sys.exit(0)


def model(m, k, n, b_unsigned):
    a = helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])
    b_type = TensorProto.UINT8 if b_unsigned else TensorProto.INT8
    b = helper.make_tensor_value_info("B", b_type, [k, n])
    zero_points = [helper.make_tensor("a_zero_point", TensorProto.UINT8, [], [128])]
    if b_unsigned:
        zero_points.append(helper.make_tensor("b_zero_point", TensorProto.UINT8, [], [128]))
    inputs = ["A", "B"] + [t.name for t in zero_points]
    c = helper.make_tensor_value_info("C", TensorProto.INT32, [m, n])
    node = helper.make_node("MatMulInteger", inputs, ["C"])
    graph = helper.make_graph([node], "int8_gemm", [a, b], [c], initializer=zero_points)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def prepare(m, k, n, threads, spin):
    """Sessions for one shape, warmed up: {"exact": (session, feed), "kind", "saturating",
    "exact_ok"}; "saturating" holds the u8 x s8 session when it was not exact."""
    rng = np.random.default_rng(m * 31 + k * 7 + n)
    a = rng.integers(-127, 128, (m, k), dtype=np.int8)
    b = rng.integers(-127, 128, (k, n), dtype=np.int8)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    # numpy's int64 product has no BLAS: every row up to 2^27 multiply-adds, else 16 rows.
    rows = np.arange(m) if m * k * n <= 1 << 27 else rng.choice(m, 16, replace=False)
    want = a[rows].astype(np.int64) @ b.astype(np.int64)
    a_u8 = (a.astype(np.int16) + 128).astype(np.uint8)

    def session(b_unsigned):
        s = ort.InferenceSession(model(m, k, n, b_unsigned), opts, providers=["CPUExecutionProvider"])
        feed = {"A": a_u8, "B": (b.astype(np.int16) + 128).astype(np.uint8) if b_unsigned else b}
        c = s.run(None, feed)[0]  # warm-up, and the exactness check
        return (s, feed), bool((c[rows].astype(np.int64) == want).all())

    fast, fast_exact = session(False)
    if fast_exact:
        return {"exact": fast, "kind": "u8s8", "saturating": None, "exact_ok": True}
    wide, wide_exact = session(True)
    return {"exact": wide, "kind": "u8u8", "saturating": fast, "exact_ok": wide_exact}


def timed(s, feed):
    t = time.perf_counter()
    s.run(None, feed)
    return time.perf_counter() - t


def serve(threads, spin):
    print(json.dumps({"ort": ort.__version__}), flush=True)
    shape = None
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] == "shape":
            m, k, n = (int(x) for x in words[1:4])
            shape = prepare(m, k, n, threads, spin)
            print(json.dumps({"exact": shape["exact_ok"], "kind": shape["kind"]}), flush=True)
        elif words == ["run"] and shape is not None:
            print(json.dumps({"seconds": timed(*shape["exact"])}), flush=True)
        elif words == ["run", "saturating"] and shape is not None and shape["saturating"] is not None:
            print(json.dumps({"seconds": timed(*shape["saturating"])}), flush=True)
        else:
            print(json.dumps({"error": f"unknown command {line.strip()!r}"}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shapes")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--serve", action="store_true")
    p.add_argument("--spin", type=int, choices=[0, 1], default=None)
    args = p.parse_args()
    if args.serve:
        # Not spinning by default here: ORT's idle workers spin for about 15 ms after each
        # run, on the cores the bench's next run (Ergon's) needs.
        serve(args.threads, bool(args.spin))
        return
    if not args.shapes:
        p.error("--shapes is required without --serve")
    results = []
    for shape in args.shapes.split(","):
        m, k, n = (int(x) for x in shape.split("x"))
        shape = prepare(m, k, n, args.threads, args.spin != 0)
        times = sorted(timed(*shape["exact"]) for _ in range(args.reps))
        row = {"m": m, "k": k, "n": n, "kind": shape["kind"], "seconds": times, "exact": shape["exact_ok"]}
        if shape["saturating"] is not None:
            row["u8s8_saturating_seconds"] = sorted(timed(*shape["saturating"]) for _ in range(args.reps))
        results.append(row)
    print(json.dumps({"ort": ort.__version__, "results": results}))


main()
