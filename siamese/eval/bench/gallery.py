"""The gallery at scale: adding, loading and searching up to a million embeddings
(`siamese bench gallery`, `make bench-gallery`). Prints a table; never a test."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from siamese.eval.bench.table import machine, table
from siamese.gallery.index import Index
from siamese.gallery.recognize import Recognizer
from siamese.gallery.store import Gallery
from siamese.io.paths import DEFAULT_MODEL
from siamese.model.centre import score_norm
from siamese.model.embedder import Embedder

__all__ = ["bench_gallery"]


def bench_gallery(n: int = 1_000_000, per_person: int = 10, add_people: int = 10_000,
                  queries: int = 100, model_path=None, seed: int = 0) -> list[dict]:
    """Time the gallery at scale; prints a table and returns its rows.

    Synthetic faces like real ones: `n / per_person` random unit "people", each stored
    `per_person` times with noise, and queries that are fresh noisy copies (cosine ~0.6 to their
    person's rows, as genuine pairs score). Adds `add_people` people in one transaction; inserts
    the `n` embeddings (100,000 per transaction); loads them into one matrix; times single
    queries, exact float32 and the int8 scan (with its agreement with exact search), and full
    identifications with the default index: nn (shortlist + head) and asnorm (shortlist + AS-norm,
    the default method, for a model with a cohort).
    """
    import shutil
    import tempfile


    embedder = Embedder.load(model_path or DEFAULT_MODEL)
    rng, d, rows = np.random.default_rng(seed), embedder.dim, []
    sigma = np.sqrt((1 / 0.6 - 1) / d)  # two noisy copies of a person: cosine ~0.6

    def unit(m):
        return (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)

    def noisy(c):
        return unit(c + sigma * rng.standard_normal(c.shape, np.float32))

    centres = unit(rng.standard_normal((max(1, n // per_person), d), np.float32))

    def timed(fn, label):  # wall ms (what a user waits) and process CPU ms (less load-bound)
        ms, cpu, out = [], [], []
        for i in range(queries):
            t, c = time.perf_counter(), time.process_time()
            out.append(fn(i))
            ms.append(1000 * (time.perf_counter() - t))
            cpu.append(1000 * (time.process_time() - c))
        rows.append({"step": label, "value": f"median {np.median(ms):.1f} ms (p90 "
                     f"{np.percentile(ms, 90):.1f}, best {min(ms):.1f}); CPU {np.median(cpu):.1f} ms"})
        return np.array(out)

    def step(label, t0, extra=""):
        rows.append({"step": label, "value": f"{time.perf_counter() - t0:.2f} s{extra}"})

    tmp = Path(tempfile.mkdtemp(prefix="bench_gallery_"))
    try:
        with Gallery(tmp / "add.sqlite", embedder.identity()) as g:
            v = unit(rng.standard_normal((add_people, d), np.float32))
            t = time.perf_counter()
            g.add_many({f"person {i:07d}": (v[i:i + 1], None) for i in range(add_people)})
            step(f"add {add_people:,} people (1 face each), one transaction", t)
        with Gallery(tmp / "big.sqlite", embedder.identity()) as g:
            t = time.perf_counter()
            for start in range(0, len(centres), 10_000):  # 100,000 rows per transaction
                m = noisy(np.repeat(centres[start:start + 10_000], per_person, axis=0))
                g.add_many({f"person {start + i // per_person:07d}": (m[i:i + per_person], None)
                            for i in range(0, len(m), per_person)})
            step(f"insert {len(centres) * per_person:,} embeddings ({len(centres):,} people)", t)
            t = time.perf_counter()
            vectors, labels, names, _ = g.embeddings()
            step(f"load {len(vectors):,} x {d} float32 from SQLite into one matrix", t,
                 f", {vectors.nbytes / 2**20:.0f} MiB")
        q = noisy(centres[rng.choice(len(centres), queries)])
        exact = Index(vectors, int8=False)
        truth = timed(lambda i: exact.search(q[i], 1)[0][0, 0], "top-1 query, exact float32")
        t = time.perf_counter()
        fast = Index(vectors, int8=True)
        step("build the int8 copy", t)
        got = timed(lambda i: fast.search(q[i], 1)[0][0, 0], "top-1 query, int8 scan + float32 re-score")
        rows.append({"step": "int8: same top-1 row as exact", "value": f"{np.mean(got == truth):.3f}"})
        rec = Recognizer(embedder, vectors, labels, names, method="nn")
        timed(lambda i: rec.identify(q[i]), "identify, nn (shortlist 32 + head), default index")
        if (norm := score_norm(embedder)) is not None:  # the default method (the threshold: any, it is not timed)
            rec = Recognizer(embedder, vectors, labels, names, method="asnorm", norm=norm, thresholds={"asnorm": 0.0})
            timed(lambda i: rec.identify(q[i]), "identify, asnorm (shortlist 32 + AS-norm, the default), default index")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{machine()}\n")
    print(table(rows))
    return rows
