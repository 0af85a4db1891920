"""The client: HTTP for every read, the `ergon` binary (the Rust SDK) for a job's cryptography."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

PathLike = Union[str, os.PathLike]


class ErgonError(Exception):
    """A request the node refused (its reason and HTTP status), or that could not be made."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


class JobFailed(ErgonError):
    """A job that did not finish verified: refused, timed out, or its result failed its check.
    `output` holds what the job printed; the open job and its escrow stay on chain."""

    def __init__(self, message: str, output: str, job: Optional[str] = None):
        super().__init__(message)
        self.output = output
        self.job = job


@dataclass
class Result:
    """A verified job's result (`value`), its id, its receipt and the events seen on the way."""

    value: Any
    job: str
    receipt: dict
    events: list = field(default_factory=list)


def _find_ergon(explicit: Optional[PathLike]) -> str:
    candidates = [explicit, os.environ.get("ERGON_BIN"), shutil.which("ergon")]
    # The repository's own build, when the package is used from a checkout.
    here = Path(__file__).resolve()
    candidates += [str(p / "target" / "release" / "ergon") for p in here.parents]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return str(c)
    raise ErgonError(
        "no `ergon` binary: build it (`cargo build --release`), put it on PATH, set ERGON_BIN, or pass ergon="
    )


class Client:
    """A client of one node's HTTP API.

    `key` is a key file (`ergon key new`) that pays for and receives jobs; reads need none.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        key: Optional[PathLike] = None,
        ergon: Optional[PathLike] = None,
        fee: int = 1,
        timeout_s: float = 60.0,
    ):
        if "://" not in url:
            url = "http://" + url
        self.url = url.rstrip("/")
        parsed = urllib.parse.urlparse(self.url)
        if not parsed.hostname or not parsed.port:
            raise ErgonError(f"{url!r}: expected http://HOST:PORT")
        host = "127.0.0.1" if parsed.hostname == "localhost" else parsed.hostname
        self._api = f"{host}:{parsed.port}"
        self.key = os.fspath(key) if key is not None else None
        self._ergon = ergon
        self.fee = fee
        self.timeout_s = timeout_s

    # ---- reads: the API's own JSON (schemas in /openapi.json) ----

    def _request(self, path: str, timeout: Optional[float] = None):
        try:
            return urllib.request.urlopen(self.url + path, timeout=timeout or self.timeout_s)
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                message = json.loads(body)["error"]
            except (ValueError, KeyError, TypeError):
                message = body.decode("utf-8", "replace") or e.reason
            raise ErgonError(message, e.code) from None
        except (urllib.error.URLError, OSError) as e:
            raise ErgonError(f"node at {self.url}: {e}") from None

    def get(self, path: str) -> Any:
        """`GET path` as JSON; a refusal raises ErgonError with the node's reason."""
        with self._request(path) as r:
            return json.loads(r.read())

    def status(self) -> dict:
        return self.get("/status")

    def openapi(self) -> dict:
        return self.get("/openapi.json")

    def jobs(self, client: Optional[str] = None) -> list:
        """Every job the node's state holds, newest first (`client`: only that address's)."""
        jobs = self.get("/jobs")["jobs"]
        return [j for j in jobs if client is None or j["client"] == client]

    def job_id(self, prefix: str) -> str:
        """The whole id of the job a printed prefix names."""
        prefix = prefix.strip().lower()
        if len(prefix) == 64:
            return prefix
        found = [j["id"] for j in self.jobs() if j["id"].startswith(prefix)]
        if len(found) != 1:
            raise ErgonError(f"{prefix!r} names {len(found)} jobs; give more digits" if found else f"no job starts with {prefix!r}")
        return found[0]

    def job(self, job: str) -> dict:
        """A job with every task's state, its decisions and money (a prefix of its id will do)."""
        return self.get("/jobs/" + self.job_id(job))

    def receipt(self, job: str) -> dict:
        """What a job cost: paid to providers, burned, escrowed, refunded (once it closed)."""
        return _receipt(self.job(job))

    def providers(self) -> list:
        return self.get("/providers")["providers"]

    def provider(self, address: str) -> dict:
        return self.get("/providers/" + address)

    def account(self, address: str) -> dict:
        return self.get("/accounts/" + address)

    def poai(self) -> dict:
        return self.get("/poai")

    def events(self, resume: Optional[int] = None, timeout: Optional[float] = None) -> Iterator[Tuple[str, dict]]:
        """The node's server-sent events as (type, data): hello, block, tx, decision, reorg.
        `resume`: start after this height (as an SSE client's Last-Event-ID)."""
        req = urllib.request.Request(self.url + "/events", headers={"Accept": "text/event-stream"})
        if resume is not None:
            req.add_header("Last-Event-ID", str(resume))
        try:
            resp = urllib.request.urlopen(req, timeout=timeout or self.timeout_s)
        except urllib.error.HTTPError as e:
            raise ErgonError(e.read().decode("utf-8", "replace"), e.code) from None
        with resp:
            kind, data = "message", []
            for raw in resp:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif line == "" and data:
                    yield kind, json.loads("\n".join(data))
                    kind, data = "message", []

    # ---- jobs: submitted, followed and verified by the SDK ----

    def matmul(
        self,
        a: np.ndarray,
        b: np.ndarray,
        shards: int = 1,
        max_price: int = 1000,
        replicas: int = 1,
        lease_blocks: int = 6,
        timeout_s: int = 600,
    ) -> Result:
        """C = A·B exact (int32), computed by the market's providers and verified here."""
        a, b = _int8(a, "a"), _int8(b, "b")
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"a is {a.shape} and b is {b.shape}: not a product")
        with tempfile.TemporaryDirectory(prefix="ergon-") as d:
            pa, pb, out = Path(d, "A.npy"), Path(d, "B.npy"), Path(d, "C.npy")
            np.save(pa, a)
            np.save(pb, b)
            args = [str(pa), str(pb), "--shards", str(shards), "--replicas", str(replicas)]
            r = self._submit(args, out, max_price, lease_blocks, timeout_s)
            r.value = np.load(out)
        return r

    def train(
        self,
        x: Optional[np.ndarray] = None,
        y: Optional[np.ndarray] = None,
        max_price: int = 200,
        epochs: Optional[int] = None,
        hidden: Optional[int] = None,
        seed: Optional[int] = None,
        holdout: int = 5,
        replicas: int = 1,
        lease_blocks: int = 6,
        timeout_s: int = 600,
    ) -> Result:
        """Trains the quantized MLP on rows `x` (uint8 features) with labels `y` (the shipped
        digits without them); `value` is the model's safetensors bytes, for `infer`."""
        with tempfile.TemporaryDirectory(prefix="ergon-") as d:
            args = ["--kind", "train", "--holdout", str(holdout), "--replicas", str(replicas)]
            if x is not None:
                if y is None:
                    raise ValueError("training needs labels y with the features x")
                data = Path(d, "data.csv.gz")
                data.write_bytes(_csv_gz(x, y))
                args.insert(0, str(data))
            for flag, v in (("--epochs", epochs), ("--hidden", hidden), ("--seed", seed)):
                if v is not None:
                    args += [flag, str(v)]
            out = Path(d, "model.safetensors")
            r = self._submit(args, out, max_price, lease_blocks, timeout_s)
            r.value = out.read_bytes()
        return r

    def infer(
        self,
        model: Union[bytes, PathLike],
        x: np.ndarray,
        y: Optional[np.ndarray] = None,
        max_price: int = 200,
        replicas: int = 1,
        lease_blocks: int = 6,
        timeout_s: int = 600,
    ) -> Result:
        """One predicted class per row of `x`, from `model` (bytes or a .safetensors file)."""
        with tempfile.TemporaryDirectory(prefix="ergon-") as d:
            m = Path(d, "model.safetensors")
            m.write_bytes(model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes())
            labels = np.zeros(len(x), dtype=np.uint8) if y is None else y
            data = Path(d, "data.csv.gz")
            data.write_bytes(_csv_gz(x, labels))
            out = Path(d, "predictions.txt")
            args = [str(m), str(data), "--kind", "infer", "--replicas", str(replicas)]
            r = self._submit(args, out, max_price, lease_blocks, timeout_s)
            r.value = np.array([int(v) for v in out.read_text().split()], dtype=np.uint8)
        return r

    def cancel(self, job: str) -> str:
        """Withdraws a job: its queued shards are refunded when it closes. Returns the output."""
        return self._ergon_run(["job", "cancel", "--key", self._key(), self.job_id(job), "--api", self._api]).stdout

    def _key(self) -> str:
        if self.key is None:
            raise ErgonError("this needs a key: Client(url, key='client.key')")
        return self.key

    def _ergon_run(self, args: Sequence[str], timeout: Optional[float] = None) -> subprocess.CompletedProcess:
        exe = _find_ergon(self._ergon)
        try:
            p = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise JobFailed(f"`ergon {args[0]}` did not finish in {timeout} s", str(e.stdout or "")) from None
        if p.returncode != 0:
            raise JobFailed((p.stderr.strip() or p.stdout.strip()).splitlines()[-1], p.stdout + p.stderr)
        return p

    def _submit(self, args: list, out: Path, max_price: int, lease_blocks: int, timeout_s: int) -> Result:
        full = ["job", "submit", "--key", self._key(), *args, "--max-price", str(max_price)]
        full += ["--lease-blocks", str(lease_blocks), "--timeout-s", str(timeout_s), "--fee", str(self.fee)]
        full += ["--out", str(out), "--json", "--api", self._api]
        exe = _find_ergon(self._ergon)
        p = subprocess.run([exe, *full], capture_output=True, text=True, timeout=timeout_s + 60)
        lines = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
        job = next((l["submitted"]["job"] for l in lines if "submitted" in l), None)
        events = [l["event"] for l in lines if "event" in l]
        receipt = next((l["receipt"] for l in lines if "receipt" in l), None)
        if p.returncode != 0 or receipt is None:
            why = (p.stderr.strip() or "no receipt").splitlines()[-1]
            raise JobFailed(why, p.stdout + p.stderr, job)
        return Result(value=None, job=receipt["job"], receipt=receipt, events=events)


def _int8(m: np.ndarray, name: str) -> np.ndarray:
    m = np.asarray(m)
    if m.dtype != np.int8:
        if not np.issubdtype(m.dtype, np.integer) or m.min(initial=0) < -128 or m.max(initial=0) > 127:
            raise ValueError(f"{name} must hold int8 values")
        m = m.astype(np.int8)
    return np.ascontiguousarray(m)


def _csv_gz(x: np.ndarray, y: np.ndarray) -> bytes:
    """The data format jobs take: gzip CSV, each line the features then the label (0..=255)."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"x must be rows × features and y one label per row (got {x.shape} and {y.shape})")
    if x.min(initial=0) < 0 or x.max(initial=0) > 255 or y.min(initial=0) < 0 or y.max(initial=0) > 255:
        raise ValueError("features and labels must be integers in 0..=255")
    text = io.StringIO()
    for row, label in zip(x.astype(np.int64), y.astype(np.int64)):
        text.write(",".join(map(str, row.tolist())) + f",{int(label)}\n")
    return gzip.compress(text.getvalue().encode())


def _receipt(job: dict) -> dict:
    done = job["status"] != "open"
    cost = job["paid"] + job["burned"]
    return {
        "job": job["id"],
        "kind": job["kind"],
        "status": job["status"],
        "escrowed": job["escrowed_at_submission"],
        "paid": job["paid"],
        "burned": job["burned"],
        "cost": cost,
        "refunded": job["escrowed_at_submission"] - cost if done else None,
        # CPU time its providers measured, and joules under the node's stated power model.
        "energy": job["energy"],
    }
