"""The teacher's embedding of every LFW image, computed once (`siamese teach`, `make teach`).

    <face cache>/teacher_dlib/
        embeddings.npy  (N, 2, 128) float32 raw dlib descriptors: row i = face cache row i;
                        [:, 0] the image, [:, 1] its mirror image
        status.npy      (N,) uint8: 0 pending, 1 from the detected box, 2 from a box derived from
                        the cache's fallback landmarks, 3 the photo could not be read (left at 0)
        config.json     what built it: dlib's version, the SHA-256 of both model files, the face
                        cache's index; a cache from another teacher or face cache is refused
        build.json      counts and seconds; failures.csv: the rows not detected or not read, and why

The pass runs in worker processes, saves its progress every `chunk` images and resumes after a
kill; ~26 k descriptors take ~13 min on 2 cores (54 ms each on one core). Training reads it
through `targets` (unit vectors centred on the training images' mean), evaluation through
`cached_descriptors`. The network: `siamese.model.dlib_resnet`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np

from siamese.data.cache import FaceCache
from siamese.data.cache import load as load_cache
from siamese.data.lfw import LFW, ImageRef
from siamese.io.files import atomic_save_npy, atomic_write_text, file_digest
from siamese.io.images import ImageError, read_image
from siamese.model.dlib_resnet import DIM, DlibTeacher, box_from_landmarks, identity
from siamese.model.preprocess import normalise

__all__ = ["ERROR", "STATUS_NAMES", "build", "cache_identity", "cached_descriptors", "claim", "face_box", "finished",
           "in_chunks", "load", "open_arrays", "read_failures", "save_progress", "seconds_so_far", "targets",
           "teacher_dir"]

log = logging.getLogger(__name__)

PENDING, DETECTED, FALLBACK, ERROR = 0, 1, 2, 3
STATUS_NAMES = {PENDING: "pending", DETECTED: "detected", FALLBACK: "fallback", ERROR: "error"}
_worker: dict = {}


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2

    cv2.setNumThreads(1)
    _worker["teacher"] = DlibTeacher()


def _process(item: tuple[int, str, np.ndarray, bool]):
    i, path, box, detected = item
    teacher: DlibTeacher = _worker["teacher"]
    try:
        image = read_image(path)
    except ImageError as err:
        return i, None, ERROR, str(err)
    chip = teacher.chip(image, box)
    return i, teacher.describe([chip, chip[:, ::-1]]), DETECTED if detected else FALLBACK, None


def teacher_dir(cache_dir: str | os.PathLike) -> Path:
    """Where the teacher cache of a face cache lives."""
    return Path(cache_dir) / "teacher_dlib"


def face_box(faces: FaceCache, i: int) -> tuple[np.ndarray, bool]:
    """(the box (x, y, w, h) the teacher aligns face-cache row `i` in, whether a detector found it):
    the detected box, or for the cache's fallback rows one derived from their landmarks."""
    box = faces.meta["box"][i].copy()
    if int(faces.meta["status"][i]) == 1 and box[2] > 0:
        return box, True
    return box_from_landmarks(faces.meta["landmarks"][i]), False


def in_chunks(items: list, process, init, initargs: tuple = (), workers: int = 2, chunk: int = 256, bar=None):
    """Run `process` over `items` in `workers` spawned processes (each set up by `init(*initargs)`),
    `chunk` items at a time: yields each chunk's results in order, so that the caller stores them
    and saves its progress (`save_progress`) between chunks; `bar` (tqdm) counts every item."""
    with mp.get_context("spawn").Pool(workers, init, initargs) as pool:
        for start in range(0, len(items), chunk):
            results = []
            for r in pool.imap(process, items[start:start + chunk], chunksize=8):
                results.append(r)
                if bar is not None:
                    bar.update()
            yield results


def save_progress(out: Path, arrays: dict[str, np.ndarray], status: np.ndarray) -> None:
    """A teacher-made cache's progress: its arrays reach disk before the status.npy marking their rows
    done replaces the old one (atomically), so a kill at any point loses at most the unsaved rows."""
    for a in arrays.values():
        a.flush()
    atomic_save_npy(out / "status.npy", status)


def seconds_so_far(out: Path, t0: float) -> float:
    """The seconds of every call that built the cache at `out` (build.json's, plus this call's since `t0`)."""
    previous = json.loads((out / "build.json").read_text()) if (out / "build.json").exists() else {}
    return round(previous.get("seconds", 0.0) + time.perf_counter() - t0, 1)


def cache_identity(cache_dir: Path) -> dict:
    """What a teacher-made cache depends on in its face cache: the LFW copy and the index's SHA-256."""
    cfg = json.loads((cache_dir / "config.json").read_text())
    return {"face_cache": str(cache_dir), "lfw_root": cfg["lfw_root"], "images": cfg["images"],
            "index_sha256": file_digest(cache_dir / "index.csv")}


def _differs(config: dict, want: dict) -> list[str]:
    """The keys on which a stored teacher cache's config differs from this machine's (the face
    cache's own path is only a note: a cache may be moved)."""
    return sorted(k for k in want if k != "face_cache" and want[k] != config.get(k))


def build(cache_dir: str | os.PathLike, lfw_root: str | os.PathLike, workers: int = 2,
          chunk: int = 256, progress: bool = True) -> dict:
    """Run the teacher over every image of a face cache (and its mirror), resuming a partial run.

    Args:
        cache_dir: a finished face cache (`siamese prepare`); the teacher cache goes inside it.
        lfw_root: the LFW copy the face cache was built from (its images are read again: the
            teacher aligns the original photo its own way, from the cached face box).
        workers: processes (each loads the teacher, ~100 MB).
        chunk: images per saved step of progress.

    Returns:
        Stats: images, detected, fallback, errors, seconds, images_per_s.

    Raises:
        TeacherMissing: without the teacher extra.
        ValueError: an existing teacher cache from another teacher or another face cache.
    """
    from tqdm import tqdm

    cache_dir = Path(cache_dir)
    faces = load_cache(cache_dir)
    lfw = LFW(lfw_root)
    out = teacher_dir(cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    claim(out, {**identity(), **cache_identity(cache_dir)})
    n = len(faces.refs)
    arrays, status = open_arrays(out, {"embeddings": ((n, 2, DIM), np.float32)}, (n,))
    todo = np.flatnonzero(status == PENDING)
    failures = read_failures(out / "failures.csv")
    t0 = time.perf_counter()
    if len(todo):
        log.info("teacher cache %s: %d of %d images to go, %d workers", out, len(todo), n, workers)
        items = [(int(i), str(lfw.path(faces.refs[i])), *face_box(faces, i)) for i in todo]
        bar = tqdm(total=n, initial=n - len(todo), desc="teacher", unit="img", disable=not progress)
        for results in in_chunks(items, _process, _init_worker, (), workers, chunk, bar):
            for i, vectors, st, err in results:
                if vectors is not None:
                    arrays["embeddings"][i] = vectors
                if err:
                    failures[i] = err
                    log.warning("teacher: %s", err)
                status[i] = st
            save_progress(out, arrays, status)
            _write_failures(out / "failures.csv", failures, faces.refs, status)
        bar.close()
    seconds = seconds_so_far(out, t0)
    stats = {"images": n, **{STATUS_NAMES[k]: int((status == k).sum()) for k in (DETECTED, FALLBACK, ERROR)},
             "pending": int((status == PENDING).sum()), "seconds": seconds,
             "images_per_s": round(n / seconds, 1) if seconds else None, "workers": workers}
    atomic_write_text(out / "build.json", json.dumps(stats, indent=2))
    return stats


def read_failures(path: Path) -> dict[int, str]:
    """{row: problem} of a teacher-made cache's failures.csv (empty when there is none)."""
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {int(r["row"]): r["problem"] for r in csv.DictReader(f)}


def _write_failures(path: Path, failures: dict[int, str], refs, status: np.ndarray) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["row", "file", "status", "problem"])
    fallback = {int(i): "no detected face: box derived from the fallback landmarks"
                for i in np.flatnonzero(status == FALLBACK)}
    for i, problem in sorted({**fallback, **failures}.items()):
        w.writerow([i, refs[i].rel_path, STATUS_NAMES[int(status[i])], problem])
    atomic_write_text(path, buf.getvalue())


def load(cache_dir: str | os.PathLike, check_files: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """A finished teacher cache: (embeddings (N, 2, 128) float32, status (N,) uint8, config).

    Args:
        cache_dir: the face cache it belongs to.
        check_files: refuse it when the installed teacher or the face cache's index differs from
            what built it (by hash). Off only where the teacher is not installed (a GPU box that
            only trains from the targets).

    Raises:
        FileNotFoundError: no finished teacher cache — with the command that builds it.
        ValueError: built by another teacher version or from another face cache.
    """
    out = teacher_dir(cache_dir)
    status, config = finished(out, cache_dir, "teacher cache", "siamese teach", check_files)
    return np.load(out / "embeddings.npy", mmap_mode="r"), status, config


def open_arrays(out: Path, specs: dict[str, tuple[tuple, type]], status_shape: tuple
                ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The arrays of a teacher-made cache being built at `out` (this one, or the harder views of
    `siamese.model.teacher_views`), memory-mapped for writing and made (zeros) where missing, and
    its status.npy (`status_shape` uint8, all pending when there is none).

    An array missing beside a status that marks rows done (deleted by hand) would leave those rows
    zero while the status says they are made: then every row is made again, with a warning.

    Args:
        specs: {name: (shape, dtype)}, one `name.npy` each.

    Raises:
        ValueError: an array or the status there has another shape (delete `out` to rebuild).
    """
    fresh = [k for k in specs if not (out / f"{k}.npy").exists()]
    arrays = {}
    for k, (shape, dtype) in specs.items():
        path = out / f"{k}.npy"
        arrays[k] = (np.lib.format.open_memmap(path, "w+", dtype, shape) if k in fresh
                     else np.load(path, mmap_mode="r+"))
        if arrays[k].shape != tuple(shape):
            raise ValueError(f"{path}: shape {arrays[k].shape}, not {tuple(shape)} — delete {out} to rebuild it")
    status_path = out / "status.npy"
    status = np.load(status_path) if status_path.exists() else np.zeros(status_shape, np.uint8)
    if status.shape != tuple(status_shape):
        raise ValueError(f"{status_path}: shape {status.shape}, not {tuple(status_shape)} — delete {out} to rebuild it")
    if fresh and (status != PENDING).any():
        log.warning("%s: %s missing although %d rows were made: making every row again", out,
                    ", ".join(f"{k}.npy" for k in fresh), int((status != PENDING).sum()))
        status[:] = PENDING
        atomic_save_npy(status_path, status)  # at once: a kill before the first chunk must not leave zeros "done"
    return arrays, status


def claim(out: Path, config: dict) -> None:
    """Start or continue a teacher-made cache at `out` built with `config` (its config.json is
    written on the first call); a cache there built otherwise is refused, naming what differs.

    Raises:
        ValueError: `out` holds a cache of another teacher version, face cache or settings.
    """
    path = out / "config.json"
    if path.exists() and (diff := _differs(json.loads(path.read_text()), config)):
        raise ValueError(f"{path}: built with another {', '.join(diff)} (another teacher version, face cache "
                         f"or settings) — delete {out} to rebuild it")
    if not path.exists():
        atomic_write_text(path, json.dumps(config, indent=2))


def finished(out: Path, cache_dir: str | os.PathLike, what: str, command: str, check_files: bool,
             of_face_cache: bool = True) -> tuple[np.ndarray, dict]:
    """(status.npy, config.json) of the finished teacher-made cache at `out` (this one, the harder
    views of `siamese.model.teacher_views`, the extra faces of `siamese.model.teacher_extra`),
    refusing one that is missing, incomplete (any status 0) or, with `check_files`, built by another
    teacher or (when `of_face_cache`: made from the face cache's images) from another face cache.

    Args:
        out: the cache's folder.
        cache_dir: the face cache it belongs to.
        what: its name in the messages ("teacher cache").
        command: the command that builds it, named in the messages ("siamese teach").
        check_files: compare the teacher's and the face cache's hashes (see `load`).
    """
    if not (out / "build.json").exists():
        raise FileNotFoundError(f"{out}: no finished {what} — run `{command}` to build it")
    status = np.load(out / "status.npy")
    if (status == PENDING).any():
        raise FileNotFoundError(f"{out}: the {what} is incomplete — run `{command}` to resume it")
    config = json.loads((out / "config.json").read_text())
    if check_files and (diff := _differs(config, {**identity(), **(cache_identity(Path(cache_dir))
                                                                     if of_face_cache else {})})):
        raise ValueError(f"{out}: built with another {', '.join(diff)} than this machine's "
                         f"— delete it and run `{command}` again")
    return status, config


def cached_descriptors(cache: FaceCache, refs: list[ImageRef]) -> np.ndarray | None:
    """(n, 2, 128) raw descriptors of `refs` (image, mirror) from the teacher cache beside `cache`;
    None when there is no finished cache for this teacher and face cache, or a ref is missing
    from it or failed there (the caller then runs the teacher itself)."""
    cache_dir = cache.path
    if cache_dir is None or not (teacher_dir(cache_dir) / "build.json").exists():
        return None
    try:
        emb, status, _ = load(cache_dir)
        rows = cache.rows(refs)
    except (ValueError, FileNotFoundError, KeyError):
        return None
    if (status[rows] == ERROR).any():
        return None
    return np.asarray(emb[rows])


def targets(cache_dir: str | os.PathLike, rows: np.ndarray, check_files: bool = True
            ) -> tuple[np.ndarray, np.ndarray]:
    """Distillation targets for face-cache `rows` (the training images).

    Returns:
        ((n, 2, 128) float32 unit vectors: each view's descriptor minus the mean descriptor over
        these rows, normalised; all zero where the teacher had no photo), (128,) that mean).
        Centring matters: dlib's descriptors share one large common direction, and matching them
        raw collapsed a student to 0.68 on View 1 (the feasibility check of issue 13).
    """
    emb, status, _ = load(cache_dir, check_files=check_files)
    raw = np.asarray(emb[rows], np.float32)
    ok = status[rows] != ERROR
    center = raw[ok].reshape(-1, DIM).mean(0)
    out = normalise((raw - center).reshape(-1, DIM)).reshape(raw.shape)
    out[~ok] = 0.0
    return out, center
