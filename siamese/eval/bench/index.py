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

from siamese.clustering.linkage import agglomerative
from siamese.clustering.neighbours import EXACT_MAX
from siamese.clustering.scores import clustering_scores
from siamese.data.lfw import LFW
from siamese.eval.bench.clustering import planted
from siamese.eval.bench.table import machine, table
from siamese.library.table import META, open_index, write_shard

__all__ = ["bench_cluster_parquet", "bench_index", "tree_peak_rss"]


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


def _synthetic_index(folder: Path, faces: int, dim: int, seed: int, shard_rows: int = 100_000) -> None:
    """`faces` planted-cluster embeddings (`siamese.eval.bench.clustering.planted`) as a face index
    (the true person in `label`; the other columns plausible constants)."""
    emb, truth = planted(faces, dim=dim, seed=seed)
    folder.mkdir(parents=True)
    (folder / META).write_text(json.dumps({"model": "synthetic", "dim": dim, "root": str(folder)}))
    for lo in range(0, faces, shard_rows):
        n = min(shard_rows, faces - lo)
        rows = {"source": [f"p{t}/{lo + i:07d}.jpg" for i, t in enumerate(truth[lo:lo + n])],
                "frame": np.full(n, -1), "time_s": np.full(n, -1.0), "face": np.zeros(n),
                "score": np.full(n, 0.9), "box": np.tile([10, 10, 100, 120], (n, 1)),
                "landmarks": np.tile([40, 50, 80, 50, 60, 70, 45, 95, 75, 95], (n, 1)),
                "image_w": np.full(n, 250), "image_h": np.full(n, 250), "frontalness": np.ones(n),
                "sharpness": np.full(n, 100.0), "embedding": emb[lo:lo + n], "sha256": [""] * n,
                "label": [f"p{t}" for t in truth[lo:lo + n]], "model": ["synthetic"] * n}
        write_shard(folder / f"part-{lo // shard_rows:05d}.parquet", rows, {"dim": dim})


def _cluster_parquet_one(path: str, threshold: float, floor: float, k: int) -> dict:
    import resource


    t0 = time.perf_counter()
    idx = open_index(path)
    emb = idx.embeddings()
    t1 = time.perf_counter()
    labels = agglomerative(emb, threshold, floor, k)
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    truth = [t for b in idx.batches(["label"]) for t in b["label"]]
    s = clustering_scores(truth, labels)
    return {"faces": len(emb), "knn": "exact" if len(emb) <= EXACT_MAX else "approximate (IVF)",
            "read_s": round(t1 - t0, 1), "cluster_s": round(t2 - t1, 1), "total_s": round(t2 - t0, 1),
            "peak_rss_mb": round(peak), "B3_F1": f"{s['bcubed_f1']:.3f}", "clusters": s["clusters"],
            "people": s["people"]}


def bench_cluster_parquet(faces=(1_000_000,), dim: int = 128, seed: int = 0, threshold: float = 0.45,
                          floor: float = 0.2, k: int = 10) -> list[dict]:
    """Agglomerative clustering of planted-cluster embeddings read from a Parquet index, each size
    in a fresh process: reading (row group by row group into one array), clustering (kNN, exact up
    to `siamese.clustering.neighbours.EXACT_MAX` rows, else the inverted file), peak memory
    (ru_maxrss of that process: the embeddings are n x D x 4 bytes of it), and BCubed F1 against
    the planted people (as `siamese bench cluster-scale`)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    rows = []
    for n in faces:
        with tempfile.TemporaryDirectory(prefix="bench_cluster_parquet_") as tmp:
            t = time.perf_counter()
            _synthetic_index(Path(tmp) / "synthetic.parquet", n, dim, seed)
            made = time.perf_counter() - t
            with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
                r = pool.submit(_cluster_parquet_one, str(Path(tmp) / "synthetic.parquet"), threshold, floor,
                                k).result()
            r["write_index_s"] = round(made, 1)
            rows.append(r)
            print(json.dumps(r), flush=True)
    print(f"planted clusters of ~10 faces, D={dim}; agglomerative at threshold {threshold} / floor {floor}, "
          f"k={k}; {machine()}")
    print(table(rows))
    return rows
