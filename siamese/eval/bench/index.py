"""Benchmarks of the Parquet index (docs/scale.md): building it, and clustering from it.

    siamese bench index [index.images=10000] [index.num_cpus=2]    # siamese index (Ray, local) vs siamese detect
    siamese bench cluster-parquet [index.faces=1000000]            # 1M synthetic embeddings read from Parquet

Each command under test runs as its own `siamese` process, as a user would run it; its peak memory is
the largest sum of the resident sets of its whole process tree (Ray's raylet, GCS and workers
included), sampled every 0.2 s with psutil.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from siamese.data.lfw import LFW
from siamese.eval.bench.table import machine, table

__all__ = ["bench_index", "tree_peak_rss"]


def tree_peak_rss(cmd: list[str], env: dict | None = None) -> tuple[int, float, int]:
    """Run `cmd`; returns (exit code, wall seconds, peak MB of the summed RSS of it and its descendants)."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, done = [0], threading.Event()

    def sample():
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                total = 0
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                peak[0] = max(peak[0], total)
            except psutil.Error:
                pass
            done.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, _ = proc.communicate()
    done.set()
    th.join()
    if proc.returncode:
        print(out[-3000:], file=sys.stderr)
    return proc.returncode, time.perf_counter() - t0, round(peak[0] / 2**20)


def _lfw_sample(lfw_root, n: int, seed: int, folder: Path) -> int:
    """`n` random LFW photos (seeded) linked into `folder/<person>/<file>`; returns how many."""
    lfw = LFW(lfw_root)
    files = sorted(Path(lfw.images_dir).glob("*/*.jpg"))
    if not files:
        raise FileNotFoundError(f"{lfw.images_dir}: no LFW photos (<person>/<person>_0001.jpg) — set LFW_ROOT")
    pick = np.random.default_rng(seed).choice(len(files), min(n, len(files)), replace=False)
    for i in sorted(pick):
        dst = folder / files[i].parent.name / files[i].name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(files[i], dst)
    return len(pick)


def bench_index(images: int = 10_000, num_cpus: int = 2, shard_size: int = 256, lfw_root=None, seed: int = 0,
                model_path=None, modes=("detect", "local", "ray")) -> list[dict]:
    """`siamese detect` (single process), `siamese index backend=local` and `backend=ray` (a local Ray
    with `num_cpus` CPUs) on the same `images` LFW photos; a table of photos/s and peak memory.

    `detect` finds and aligns faces and writes crops; `index` also embeds every face (the model's
    flip-averaged embedding) and writes Parquet: the same first half of the work, plus the model.
    photos_per_s counts the whole command (start-up included); pipeline_per_s the index's own loop
    (Ray's start-up excluded).
    """
    siamese = [sys.executable, "-m", "siamese.cli"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[3]),
                                                                     os.environ.get("PYTHONPATH")]))}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_index_") as tmp:
        photos = Path(tmp) / "photos"
        n = _lfw_sample(lfw_root, images, seed, photos)
        model = [f"model_path={model_path}"] if model_path else []
        for mode in modes:
            out = Path(tmp) / f"out_{mode}"
            if mode == "detect":
                cmd = [*siamese, "detect", str(photos), "--out", str(out), "progress=false"]
            else:
                cmd = [*siamese, "index", str(photos), "--out", str(out) + ".parquet", f"backend={mode}",
                       f"ray.num_cpus={num_cpus}", f"shard_size={shard_size}", "progress=false", *model]
            rc, wall, peak = tree_peak_rss(cmd, env)
            if rc:
                raise RuntimeError(f"{' '.join(cmd)} failed (exit {rc})")
            s = json.loads(((out.with_suffix(".parquet") if mode != "detect" else out) / (
                "_summary.json" if mode != "detect" else "summary.json")).read_text())
            pipe = s.get("pipeline_seconds")
            rows.append({"command": "siamese detect" if mode == "detect" else f"siamese index backend={mode}",
                         "photos": n, "faces": s["faces"], "seconds": round(wall, 1),
                         "photos_per_s": round(n / wall, 1),
                         "pipeline_per_s": round(n / pipe, 1) if pipe else "-", "peak_rss_mb": peak})
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["photos_per_s"] if rows and modes[0] == "detect" else None
    for r in rows:
        r["vs_detect"] = f"{r['photos_per_s'] / base:.2f}x" if base else "-"
    print(f"{n} LFW photos (seed {seed}); {machine()}; Ray: a local Ray with num_cpus={num_cpus}, "
          f"shard_size={shard_size}")
    print(table(rows))
    return rows
