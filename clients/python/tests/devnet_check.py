"""The Python client against a running devnet: a product, a training and an inference job,
each verified and with its receipt, and the reads (status, jobs, providers, events).

    python clients/python/tests/devnet_check.py http://127.0.0.1:8080 ergon-devnet/user.key

Prints one JSON line of what it saw; exits non-zero (an assertion) on any failure.
"""

import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

from ergon_client import Client, ErgonError

url, key = sys.argv[1], sys.argv[2]
c = Client(url, key=key)
t0 = time.time()

# Reads, and a refusal with the node's reason and status.
# The devnet registers its providers as it starts: wait for the block that holds them.
while not c.providers() and time.time() - t0 < 60:
    time.sleep(0.5)
assert c.providers(), "no provider registered within 60 s"
status = c.status()
assert status["height"] >= 1, status
try:
    c.job("0" * 64)
    raise AssertionError("an unknown job was found")
except ErgonError as e:
    assert e.status == 404 and "no such job" in str(e), (e.status, str(e))
assert "/jobs/{id}" in c.openapi()["paths"]

# A product: exact, verified by the SDK, with its receipt.
rng = np.random.default_rng(7)
a = rng.integers(-126, 127, (200, 96), dtype=np.int8)
b = rng.integers(-126, 127, (96, 64), dtype=np.int8)
product = c.matmul(a, b, shards=2, max_price=1000, timeout_s=240)
assert product.value.dtype == np.int32 and product.value.shape == (200, 64)
assert (product.value == a.astype(np.int32) @ b.astype(np.int32)).all(), "the product is exact"
r = product.receipt
assert r["settled"] and r["cost"] == r["paid"] + r["burned"] > 0 and r["refunded"] == r["escrowed"] - r["cost"], r
read_back = c.receipt(product.job[:12])
assert read_back["cost"] == r["cost"], "the receipt read back by a printed prefix"
assert read_back["energy"] == r["energy"], (read_back, r)
assert r["energy"]["cpu_seconds"] > 0 and r["energy"]["joules"] > 0, ("the providers' measured energy", r)

# Training on rows the client holds (the shipped digits, read here as numpy), then inference.
digits = Path(__file__).resolve().parents[3] / "crates" / "ml" / "data" / "digits.csv.gz"
rows = np.loadtxt(gzip.open(digits, "rt"), delimiter=",", dtype=np.int64)
x, y = rows[:, :-1].astype(np.uint8), rows[:, -1].astype(np.uint8)
trained = c.train(x[:1200], y[:1200], epochs=2, max_price=200, timeout_s=240)
assert len(trained.value) > 100 and trained.receipt["settled"], trained.receipt
labels = c.infer(trained.value, x[1200:1400], max_price=200, timeout_s=240).value
accuracy = float((labels == y[1200:1400]).mean())
assert labels.shape == (200,) and accuracy > 0.5, accuracy

# The event stream replays what happened to the product's job.
seen = set()
for kind, data in c.events(resume=max(1, status["height"] - 1), timeout=20):
    seen.add(kind)
    if kind == "decision" and data["id"] == product.job:
        break
assert {"hello", "block", "decision"} <= seen, seen

print(json.dumps({
    "matmul_receipt": r, "train_cost": trained.receipt["cost"], "infer_accuracy": accuracy,
    "events": sorted(seen), "seconds": round(time.time() - t0, 1),
}))
