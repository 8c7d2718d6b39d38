"""Harder views of the LFW training photos through the teacher (`siamese teach views=K`).

LFW's photos are large, sharp and well lit; the student distilled on them alone loses most where
photos are not (docs/distill.md). This cache gives each face-cache image `K` harder views, each
the original photo made harder by one of `siamese.data.degrade.KINDS` (small ~40 px face, JPEG 30,
blur, grey, strong light; drawn per view, seeded by (seed, row, view)), and keeps for each view
what the two networks see of that same harder photo:

    <face cache>/teacher_dlib/views/
        faces.npy       (N, K, S, S, 3) uint8 RGB: the student's crop, aligned from the cache's
                        landmarks moved with the photo (as the face cache aligns its crops)
        embeddings.npy  (N, K, 128) float32 raw dlib descriptors of the same view's chip
        kinds.npy       (N, K) uint8: index into KINDS; mirrored.npy (N, K) bool: the view was
                        mirrored (crop and chip alike: half of them, so training need not flip them)
        status.npy      (N, K) uint8: 0 pending, 1 done, 3 the photo could not be read
        config.json     the teacher's version and file hashes, the face cache's index, K and seed:
                        a views cache built otherwise is refused
        build.json      counts and seconds

One descriptor per view (the plain cache holds two per image: the image and its mirror), so K
views cost about K / 2 of `siamese teach`'s pass (K = 1: 1,204 s here, beside a training run). It resumes after a
kill. Training reads it through `view_targets` when `distill.views_p` > 0
(`siamese.train.batches.PairBatches`). The kinds of damage are the ones `siamese bench degraded`
measures thresholds on (its photos are of people no training run sees).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from siamese.data.cache import load as load_cache
from siamese.data.degrade import KINDS, degrade
from siamese.data.lfw import LFW
from siamese.faces.align import align, resize_faces
from siamese.faces.detect import Face
from siamese.io.files import atomic_write_text
from siamese.io.images import ImageError, read_image
from siamese.model.dlib_resnet import DIM, DlibTeacher, identity
from siamese.model.preprocess import normalise
from siamese.model.teacher_cache import (
    cache_identity,
    claim,
    face_box,
    finished,
    in_chunks,
    open_arrays,
    save_progress,
    seconds_so_far,
    teacher_dir,
)

__all__ = ["build_views", "view_targets", "views_dir"]

log = logging.getLogger(__name__)

PENDING, DONE, ERROR = 0, 1, 3
_worker: dict = {}


def views_dir(cache_dir: str | os.PathLike) -> Path:
    """Where the harder views of a face cache live."""
    return teacher_dir(cache_dir) / "views"


def _init_worker(size: int, padding: float, seed: int) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2

    cv2.setNumThreads(1)
    _worker.update(teacher=DlibTeacher(), size=size, padding=padding, seed=seed)


def _process(item: tuple[int, int, str, np.ndarray, np.ndarray]):
    """One view: (row, view, crop | None, descriptor | None, kind, mirrored, error | None)."""
    i, v, path, box, landmarks = item
    rng = np.random.default_rng([_worker["seed"], i, v])
    kind, mirrored = int(rng.integers(len(KINDS))), bool(rng.random() < 0.5)
    try:
        image = read_image(path)
    except ImageError as err:
        return i, v, None, None, kind, mirrored, str(err)
    hard, face = degrade(image, Face(box, landmarks, 0.0), KINDS[kind], rng)
    crop = align(hard, face.landmarks, _worker["size"], _worker["padding"])
    chip = _worker["teacher"].chip(hard, face.box)
    if mirrored:
        crop, chip = crop[:, ::-1], chip[:, ::-1]
    return i, v, np.ascontiguousarray(crop), _worker["teacher"].describe([chip])[0], kind, mirrored, None


def _config(cache_dir: Path, views: int, seed: int) -> dict:
    return {**identity(), **cache_identity(cache_dir), "views": int(views), "seed": int(seed),
            "kinds": list(KINDS)}


def build_views(cache_dir: str | os.PathLike, lfw_root: str | os.PathLike, views: int = 1, seed: int = 0,
                workers: int = 2, chunk: int = 256, progress: bool = True) -> dict:
    """Make `views` harder views of every image of a face cache and run the teacher on each,
    resuming a partial run.

    Args:
        cache_dir: a finished face cache (`siamese prepare`); the views go inside its teacher dir.
        lfw_root: the LFW copy the face cache was built from (its photos are made harder).
        views: harder views per image (K).
        seed: draws each view's kind of damage, its variant and whether it is mirrored.
        workers: processes (each loads the teacher, ~100 MB).
        chunk: views per saved step of progress.

    Returns:
        Stats: images, views, done, errors, per-kind counts, seconds, views_per_s.

    Raises:
        TeacherMissing: without the teacher extra.
        ValueError: `views` < 1, or an existing views cache built with another teacher, face cache,
            K or seed (named in the message).
    """
    from tqdm import tqdm

    if views < 1:
        raise ValueError(f"views={views}: ask for at least one harder view per image")
    cache_dir = Path(cache_dir)
    faces = load_cache(cache_dir)
    lfw = LFW(lfw_root)
    out = views_dir(cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    claim(out, _config(cache_dir, views, seed))
    n, size = len(faces.refs), faces.images.shape[1]
    padding = float(faces.config.get("padding", 0.0))
    arrays = {"faces": ((n, views, size, size, 3), np.uint8), "embeddings": ((n, views, DIM), np.float32),
              "kinds": ((n, views), np.uint8), "mirrored": ((n, views), np.bool_)}
    mm, status = open_arrays(out, arrays, (n, views))
    todo = np.argwhere(status == PENDING)
    t0 = time.perf_counter()
    if len(todo):
        log.info("teacher views %s: %d of %d views to go, %d workers", out, len(todo), status.size, workers)
        items = [(int(i), int(v), str(lfw.path(faces.refs[i])), face_box(faces, i)[0],
                  faces.meta["landmarks"][i].copy()) for i, v in todo]
        bar = tqdm(total=status.size, initial=status.size - len(todo), desc="teacher views", unit="view",
                   disable=not progress)
        for results in in_chunks(items, _process, _init_worker, (size, padding, seed), workers, chunk, bar):
            for i, v, crop, vector, kind, mirrored, err in results:
                if err:
                    log.warning("teacher views: %s", err)
                    status[i, v] = ERROR
                else:
                    mm["faces"][i, v], mm["embeddings"][i, v] = crop, vector
                    mm["kinds"][i, v], mm["mirrored"][i, v] = kind, mirrored
                    status[i, v] = DONE
            save_progress(out, mm, status)
        bar.close()
    seconds = seconds_so_far(out, t0)
    done = status == DONE
    kinds = np.asarray(mm["kinds"])
    stats = {"images": n, "views": int(views), "done": int(done.sum()), "errors": int((status == ERROR).sum()),
             "pending": int((status == PENDING).sum()),
             "kinds": {k: int((done & (kinds == j)).sum()) for j, k in enumerate(KINDS)},
             "seconds": seconds, "views_per_s": round(status.size / seconds, 1) if seconds else None,
             "workers": workers}
    atomic_write_text(out / "build.json", json.dumps(stats, indent=2))
    return stats


def view_targets(cache_dir: str | os.PathLike, rows: np.ndarray, center: np.ndarray, size: int,
                 check_files: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The harder views of face-cache `rows` for training.

    Args:
        cache_dir: the face cache whose views (`build_views`) to read.
        rows: (n,) face-cache rows (the training images).
        center: (128,) the mean raw descriptor the plain targets were centred on
            (`siamese.model.teacher_cache.targets`), so both kinds of target share one frame.
        size: the model's input size (the crops are resized to it).
        check_files: as in `teacher_cache.load` (off only on a box without the teacher installed).

    Returns:
        ((n, K, size, size, 3) uint8 crops, (n, K, 128) float32 unit targets; all zero where a
        view failed).

    Raises:
        FileNotFoundError: no finished views cache — with the command that builds it.
        ValueError: built by another teacher version or from another face cache.
    """
    out = views_dir(cache_dir)
    status, config = finished(out, cache_dir, "cache of harder views", "siamese teach views=1", check_files)
    k = int(config["views"])
    raw = np.asarray(np.load(out / "embeddings.npy", mmap_mode="r")[rows], np.float32)
    ok = status[rows] == DONE
    t = normalise((raw - center).reshape(-1, DIM)).reshape(raw.shape)
    t[~ok] = 0.0
    crops = np.load(out / "faces.npy", mmap_mode="r")[rows]
    s = crops.shape[2]
    crops = resize_faces(crops.reshape(-1, s, s, 3), size).reshape(len(rows), k, size, size, 3)
    return crops, t
