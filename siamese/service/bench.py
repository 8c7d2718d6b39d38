"""`siamese bench serve` (`make bench-serve`): a bounded local load on the real server.

Starts `siamese serve` on a free loopback port with a fresh gallery, enrols the people of the
sample `knn_examples/train/` folder over HTTP, then sends `requests` verify and identify
requests, `concurrency` at a time, and prints p50/p95 latency, throughput, errors and the server's
peak resident memory, measured on this machine.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from siamese.eval.bench.table import machine, table
from siamese.io.paths import SAMPLES

__all__ = ["bench_serve"]

KEY = "bench-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), MB; nan where /proc is missing."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _wait(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the server stopped: {proc.stdout.read()[-500:]}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer within {timeout:.0f} s")


async def _load(url: str, make_request, n: int, concurrency: int) -> dict:
    """`n` requests, `concurrency` in flight: latency percentiles (ms), throughput (req/s), errors."""
    lat, errors, sem = [], 0, asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        async def one(i):
            nonlocal errors
            async with sem:
                t = time.perf_counter()
                r = await make_request(client, i)
                lat.append((time.perf_counter() - t) * 1000)
                errors += r.status_code != 200
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
    return {"p50_ms": round(float(np.percentile(lat, 50)), 1), "p95_ms": round(float(np.percentile(lat, 95)), 1),
            "req_per_s": round(n / wall, 1), "errors": errors}


def bench_serve(requests: int = 500, concurrency: int = 8, workers: int = 2, model_path=None,
                samples: Path = SAMPLES) -> list[dict]:
    """Rows {endpoint, requests, concurrency, p50_ms, p95_ms, req_per_s, errors, server_peak_rss_mb}."""
    train = sorted(p for p in (samples / "knn_examples" / "train").rglob("*") if p.is_file())
    probes = sorted(p for p in (samples / "knn_examples" / "test").glob("*") if p.is_file())
    if not train or not probes:
        raise FileNotFoundError(f"{samples}/knn_examples: the sample photos are missing (set SIAMESE_SAMPLES)")
    data = {p: p.read_bytes() for p in train + probes}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "siamese.cli", "serve", "--port", str(port), "--db", f"{tmp}/gallery.sqlite",
               f"workers={workers}", f"queue={max(64, concurrency * 2)}"]
        if model_path:
            cmd.append(f"model_path={model_path}")
        proc = subprocess.Popen(cmd, env={**os.environ, "SIAMESE_API_KEY": KEY}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            _wait(url, proc)
            for p in train:  # knn_examples/train/<person>/<photo>
                r = httpx.post(f"{url}/v1/subjects/{p.parent.name}/faces", files={"image": (p.name, data[p])},
                               headers={"x-api-key": KEY}, timeout=120)
                r.raise_for_status()

            async def verify(client, i):
                a, b = train[i % len(train)], train[(i + 1) % len(train)]
                files = {"image_a": (a.name, data[a]), "image_b": (b.name, data[b])}
                return await client.post("/v1/verify", files=files)

            async def identify(client, i):
                p = probes[i % len(probes)]
                return await client.post("/v1/identify", files={"image": (p.name, data[p])})

            rows = []
            for name, fn in (("verify (2 photos)", verify), ("identify", identify)):
                r = asyncio.run(_load(url, fn, requests, concurrency))
                rows.append({"endpoint": name, "requests": requests, "concurrency": concurrency, **r})
            rss = round(_peak_rss_mb(proc.pid))
            for row in rows:
                row["server_peak_rss_mb"] = rss
        finally:
            proc.terminate()
            proc.communicate(timeout=30)
    print(f"siamese serve, {workers} workers, {len(train)} enrolled photos of {len({p.parent for p in train})} "
          f"people, sample photos {samples}; {machine()}")
    print(table(rows))
    return rows
