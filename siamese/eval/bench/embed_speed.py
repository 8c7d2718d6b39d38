"""How fast models embed a face on this machine (`siamese bench embed`, `make bench-embed`).

For each model: milliseconds per face embedded in batches of 64 and one at a time (flip-averaged,
as every application embeds; an int8 model, e.g. `int8`, as it loads), with 1 and 2 ONNX Runtime
threads, on real aligned faces from the LFW cache. The teacher (dlib on one core, its chip made
from the photo first) is timed the same way when a teacher model dir is given. All rows come from
one run, so they compare fairly even on a busy machine; the machine's load average is printed
with them.
"""

from __future__ import annotations

import time

import numpy as np

from siamese.data.cache import FaceCache
from siamese.data.lfw import LFW
from siamese.eval.bench.table import machine, table
from siamese.model.embedder import Embedder

__all__ = ["embed_speed"]


def _ms_per_face(fn, faces: np.ndarray, batch: int, repeats: int) -> float:
    fn(faces[:batch])  # warm-up: first calls allocate
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(0, len(faces), batch):
            fn(faces[i:i + batch])
        times.append(1000 * (time.perf_counter() - t) / len(faces))
    return float(np.median(times))


def _precision(model) -> str:
    """The model's precision, and what it really runs in where that differs (bf16 on a CPU without
    bfloat16 units runs float32)."""
    return model.precision if model.runs_in == model.precision else f"{model.precision} (runs {model.runs_in})"


def embed_speed(models: list[str], lfw_root, cache: FaceCache, faces: int = 256, repeats: int = 3) -> list[dict]:
    """One row per (model, threads): parameters-free sizes, ms per face batched and single."""
    lfw = LFW(lfw_root)
    refs = cache.refs[:faces]
    rows = []
    for path in models:
        for threads in (1, 2):
            model = Embedder.load(path, threads=threads)
            if model.format == "dlib":  # the teacher: one core whatever `threads` says
                if threads == 2:
                    continue
                t = time.perf_counter()
                model.embed_refs(lfw, refs[:32], None)  # chips from the photos, then the network
                rows.append({"model": str(path), "format": model.format, "precision": _precision(model),
                             "input_px": model.input_size, "threads": 1, "batched_ms": "-",
                             "single_ms": round(1000 * (time.perf_counter() - t) / 32, 1)})
                continue
            crops = model.prepare(np.asarray(cache.images[:faces]))
            rows.append({"model": str(path), "format": model.format, "precision": _precision(model),
                         "input_px": model.input_size, "threads": threads,
                         "batched_ms": round(_ms_per_face(model.embed, crops, 64, repeats), 2),
                         "single_ms": round(_ms_per_face(model.embed, crops[:64], 1, repeats), 2)})
    print(f"\nEmbedding speed, ms per face (flip-averaged), {faces} LFW faces; {machine()}\n")
    print(table(rows))
    return rows
