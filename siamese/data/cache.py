"""The aligned-face cache: every LFW image detected and aligned once, read by training.

Layout of a cache dir (one per detector + crop size):

    faces.npy     (N, S, S, 3) uint8 RGB aligned crops, memory-mapped, row i = refs[i]
    meta.npy      (N,) structured: status, score, box (4), landmarks (5, 2) — progress lives here
    index.csv     human-readable manifest: row, person, index, file, status, score, box, landmarks
    build.json    what built it (detector, size, padding, LFW root) and how long it took

`build` is resumable: rows are written in chunks and `meta.npy` (status 0 = not done yet) is
replaced atomically after each chunk, so a killed build restarts at the first unfinished chunk.
When no face contains the image centre, the crop is aligned on `LFW_MEDIAN_LANDMARKS` (LFW photos
are centred on the labelled person) and the row is marked "fallback".
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import logging
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from siamese.data.lfw import LFW, ImageRef, Pair
from siamese.faces.align import LFW_MEDIAN_LANDMARKS, align
from siamese.faces.detect import central_face
from siamese.io.files import atomic_save_npy, atomic_write_text
from siamese.io.images import ImageError, read_image

__all__ = ["FaceCache", "build", "load", "load_if_built"]

log = logging.getLogger(__name__)

PENDING, DETECTED, FALLBACK, ERROR = 0, 1, 2, 3
STATUS_NAMES = {PENDING: "pending", DETECTED: "detected", FALLBACK: "fallback", ERROR: "error"}

META_DTYPE = np.dtype([("status", "u1"), ("score", "f4"), ("box", "f4", (4,)),
                       ("landmarks", "f4", (5, 2))])


@dataclass
class FaceCache:
    """A built cache, memory-mapped.

    Attributes:
        images: (N, S, S, 3) uint8 RGB aligned crops (read-only memmap).
        refs: the N LFW images, in row order.
        meta: (N,) structured array (status, score, box, landmarks).
        config: what built it (see build.json).
        path: the cache dir it was loaded from.
    """

    images: np.ndarray
    refs: list[ImageRef]
    meta: np.ndarray
    config: dict
    path: Path | None = None

    def rows(self, refs: list[ImageRef]) -> np.ndarray:
        """(len(refs),) int64 row numbers of `refs`; KeyError names a missing image."""
        lookup = {r: i for i, r in enumerate(self.refs)}
        return np.array([lookup[r] for r in refs], dtype=np.int64)

    def aligned_as(self, size: int, padding: float) -> bool:
        """Whether the crops are aligned at `size` px with `padding` (what a model expects)."""
        return self.images.shape[1] == int(size) and float(self.config.get("padding", 0.0)) == float(padding)

    def pair_faces(self, pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unique cached faces of `pairs`: (images (n, S, S, 3) uint8, (p, 2) rows into them,
        (p,) same)."""
        refs = sorted({r for p in pairs for r in (p.a, p.b)}, key=lambda r: (r.person, r.index))
        local = {r: i for i, r in enumerate(refs)}
        idx = np.array([(local[p.a], local[p.b]) for p in pairs], np.int64).reshape(-1, 2)
        return np.asarray(self.images[self.rows(refs)]), idx, np.array([p.same for p in pairs], bool)


def make(spec: dict):
    """An object from a `{"_target_": "module.Class", **kwargs}` dict (a conf/detector/ entry),
    without Hydra: the cache's worker processes build their own detector from it."""
    kwargs = {k: v for k, v in spec.items() if k != "_target_"}
    module, _, name = spec["_target_"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)


# --- worker side -------------------------------------------------------------------------
_worker: dict = {}


def _init_worker(detector_cfg: dict, size: int, padding: float) -> None:
    # One thread per process: the pool is the parallelism. libfacedetection's OpenMP threads
    # spin-wait, so two processes with two threads each on 2 cores run ~12x slower (measured:
    # 67 ms vs 5.7 ms per LFW image). OpenMP reads this once, before yuface is first imported.
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2

    cv2.setNumThreads(1)
    _worker.update(detector=make(detector_cfg), size=size, padding=padding)


def _process(item: tuple[int, str]):
    i, path = item
    size, padding = _worker["size"], _worker["padding"]
    try:
        image = read_image(path)
    except ImageError as err:
        return i, None, ERROR, 0.0, np.zeros(4), np.zeros((5, 2)), str(err)
    face = central_face(_worker["detector"].detect(image), image.shape)
    if face is None:
        h, w = image.shape[:2]
        lms = LFW_MEDIAN_LANDMARKS * np.array([w / 250.0, h / 250.0], np.float32)
        return i, align(image, lms, size, padding), FALLBACK, 0.0, np.zeros(4), lms, None
    crop = align(image, face.landmarks, size, padding)
    return i, crop, DETECTED, face.score, face.box, face.landmarks, None


# --- driver side -------------------------------------------------------------------------
def build(lfw: LFW, cache_dir: str | os.PathLike, detector: dict, size: int = 112,
          padding: float = 0.0, workers: int = 2, chunk: int = 512,
          limit: int | None = None, refs: list[ImageRef] | None = None,
          progress: bool = True) -> dict:
    """Detect and align every LFW image into `cache_dir`, resuming a previous partial build.

    Args:
        lfw: the dataset.
        cache_dir: output folder (created).
        detector: a Hydra config dict with `_target_` (see conf/detector/), built in each worker.
        size: crop side in pixels; padding: extra context (see `siamese.faces.template`).
        workers: processes; chunk: images per checkpoint of progress.
        limit: only the first `limit` images (sorted by person) — for tests and smoke runs.
        refs: only these images (sorted first) — for tests that need particular faces.
        progress: show a tqdm bar.

    Returns:
        Stats: images, detected, fallback, errors, detection_rate, seconds, images_per_s.
    """
    from tqdm import tqdm

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    refs = sorted(refs, key=lambda r: (r.person, r.index)) if refs is not None else lfw.images()
    refs = refs[:limit] if limit else refs
    n = len(refs)
    config = {"lfw_root": str(lfw.root), "detector": detector, "size": int(size),
              "padding": float(padding), "images": n}
    cfg_path = cache_dir / "config.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old != config:
            raise ValueError(f"{cfg_path}: this cache was built with different settings "
                             f"({old}) — delete {cache_dir} or choose another cache_dir")
    else:
        atomic_write_text(cfg_path, json.dumps(config, indent=2))

    faces_path, meta_path = cache_dir / "faces.npy", cache_dir / "meta.npy"
    if faces_path.exists():
        faces = np.load(faces_path, mmap_mode="r+")
    else:
        faces = np.lib.format.open_memmap(faces_path, "w+", np.uint8, (n, size, size, 3))
    meta = np.load(meta_path) if meta_path.exists() else np.zeros(n, META_DTYPE)

    todo = np.flatnonzero(meta["status"] == PENDING)
    t0 = time.perf_counter()
    errors: list[str] = []
    if len(todo):
        log.info("building %s: %d of %d images to go, %d workers", cache_dir, len(todo), n, workers)
        items = [(int(i), str(lfw.path(refs[i]))) for i in todo]
        ctx = mp.get_context("spawn")  # fresh interpreters: no inherited OpenMP/TF state
        bar = tqdm(total=n, initial=n - len(todo), desc="LFW align", unit="img", disable=not progress)
        with ctx.Pool(workers, _init_worker, (detector, size, padding)) as pool:
            for start in range(0, len(items), chunk):
                for i, crop, status, score, box, lms, err in pool.imap(
                        _process, items[start:start + chunk], chunksize=16):
                    if crop is not None:
                        faces[i] = crop
                    meta[i] = (status, score, box, lms)
                    if err:
                        errors.append(err)
                        log.warning(err)
                    bar.update()
                faces.flush()  # crops reach disk before the progress that points at them
                atomic_save_npy(meta_path, meta)
        bar.close()
    seconds = time.perf_counter() - t0
    stats = _stats(meta)
    previous = json.loads((cache_dir / "build.json").read_text()) if (cache_dir / "build.json").exists() else {}
    stats["seconds"] = round(previous.get("seconds", 0.0) + seconds, 1)
    stats["images_per_s"] = round(n / stats["seconds"], 1) if stats["seconds"] else None
    stats["workers"] = workers
    atomic_write_text(cache_dir / "build.json", json.dumps(stats, indent=2))
    _write_index(cache_dir / "index.csv", refs, meta, lfw)
    log.info("cache %s: %s", cache_dir, stats)
    return stats


def _stats(meta: np.ndarray) -> dict:
    s = meta["status"]
    n = len(s)
    return {"images": n, "detected": int((s == DETECTED).sum()),
            "fallback": int((s == FALLBACK).sum()), "errors": int((s == ERROR).sum()),
            "pending": int((s == PENDING).sum()),
            "detection_rate": round(float((s == DETECTED).mean()), 5) if n else 0.0}


def _write_index(path: Path, refs: list[ImageRef], meta: np.ndarray, lfw: LFW) -> None:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["row", "person", "index", "file", "status", "score", "x", "y", "w", "h",
                *[f"{p}_{c}" for p in ("leye", "reye", "nose", "lmouth", "rmouth") for c in "xy"]])
    for i, (ref, m) in enumerate(zip(refs, meta)):
        w.writerow([i, ref.person, ref.index, ref.rel_path, STATUS_NAMES[int(m["status"])],
                    f"{m['score']:.2f}", *np.round(m["box"], 1), *np.round(m["landmarks"].ravel(), 1)])
    atomic_write_text(path, out.getvalue())


def load_if_built(cache_dir: str | os.PathLike | None) -> FaceCache | None:
    """The finished cache at `cache_dir` when one is built there, else None (callers then align faces
    from the photos)."""
    return load(cache_dir) if cache_dir and (Path(cache_dir) / "build.json").is_file() else None


def load(cache_dir: str | os.PathLike) -> FaceCache:
    """Open a finished cache (memory-mapped, read-only).

    Raises:
        FileNotFoundError: the cache is missing or unfinished — with the command that builds it.
    """
    cache_dir = Path(cache_dir)
    hint = "run `make prepare` (or `siamese prepare`) to build it"
    if not (cache_dir / "build.json").exists():
        raise FileNotFoundError(f"{cache_dir}: no finished face cache here — {hint}")
    meta = np.load(cache_dir / "meta.npy")
    if (meta["status"] == PENDING).any():
        raise FileNotFoundError(f"{cache_dir}: face cache is incomplete — {hint} to resume it")
    with open(cache_dir / "index.csv", newline="") as f:
        refs = [ImageRef(row["person"], int(row["index"])) for row in csv.DictReader(f)]
    config = json.loads((cache_dir / "config.json").read_text())
    return FaceCache(np.load(cache_dir / "faces.npy", mmap_mode="r"), refs, meta, config, cache_dir)

