"""Morphs of two training faces through the teacher (`siamese teach morphs=K`).

The student learns the teacher's function from LFW's ~9 k DevTrain images only, and where it fails
is between people: it puts different people too close (docs/distill.md, "Why the student clusters
worse"). A morph of two aligned faces of different people — alpha x face A + (1 - alpha) x face B,
both aligned to the same landmarks — is a new face between them, and the teacher's descriptor of it
says how the teacher's embedding moves from one person to the other: new, labelled points exactly
where the student's errors are, made from the training images alone.

For each training image (the first face) of one protocol split, K morphs, each with another
training person's image (the second face): the first partner among the `near` images of other
people the teacher finds most alike (the hard cases), the others at random; alpha drawn in
[0.3, 0.7]; half of them mirrored. The teacher sees the blend of the two faces' dlib chips, the
student the blend of their crops from the face cache (both aligned to the same five points, so they
show the same morph):

    <face cache>/teacher_dlib/morphs/<split>/        (split: e.g. view1_seed42, view2_fold3_seed42)
        rows.npy        (M,) int64 face-cache rows of the split's training images (the first faces)
        partners.npy    (M, K) int64 face-cache row of each morph's second face
        alphas.npy      (M, K) float32 the first face's weight; mirrored.npy (M, K) bool
        embeddings.npy  (M, K, 128) float32 raw dlib descriptors of the morphs' chips
        status.npy      (M,) uint8: 0 pending, 1 done, 3 a photo could not be read
        config.json     the teacher's version and hashes, the face cache's index, the split
                        (protocol, fold, seed, val_fraction) and its rows' hash, K, seed, near:
                        built otherwise, refused
        build.json      counts and seconds

Partners are drawn among the split's training rows only, so a morph never shows a validation or
test person; training checks this again when it loads them (`morph_targets`). About K / 2 of
`siamese teach`'s pass (one descriptor per morph); it resumes after a kill.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from siamese.data.cache import load as load_cache
from siamese.data.lfw import LFW
from siamese.faces.align import resize_faces
from siamese.io.files import atomic_write_text
from siamese.io.images import ImageError, read_image
from siamese.model.dlib_resnet import DIM, DlibTeacher, identity
from siamese.model.preprocess import normalise
from siamese.model.teacher_cache import (
    ERROR,
    PENDING,
    cache_identity,
    claim,
    face_box,
    finished,
    in_chunks,
    load,
    open_arrays,
    save_progress,
    seconds_so_far,
    teacher_dir,
)

__all__ = ["ALPHA", "blend", "build_command", "build_morphs", "morph_targets", "morphs_dir", "rows_digest",
           "split_name"]

log = logging.getLogger(__name__)

DONE = 1
ALPHA = (0.3, 0.7)  # the first face's weight: far enough from either face to be a new one
_worker: dict = {}


def split_name(split: dict) -> str:
    """The folder name of a protocol split's morphs: view1_seed42, view2_fold3_seed42, all_seed42."""
    fold = f"_fold{split['fold']}" if split["protocol"] == "view2" else ""
    return f"{split['protocol']}{fold}_seed{split['seed']}"


def morphs_dir(cache_dir: str | os.PathLike, split: dict) -> Path:
    """Where the morphs of a split's training images live (`split`: protocol, fold, seed, val_fraction)."""
    return teacher_dir(cache_dir) / "morphs" / split_name(split)


def blend(a: np.ndarray, b: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """alpha * a + (1 - alpha) * b, rounded: (n, S, S, 3) uint8 from two such arrays and (n,) weights."""
    w = np.asarray(alpha, np.float32).reshape(-1, 1, 1, 1)
    return np.clip(w * a + (1.0 - w) * b + 0.5, 0, 255).astype(np.uint8)


def _plan(raw: np.ndarray, labels: np.ndarray, k: int, near: int, seed: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(partners (M, K) indices into the M training images, alphas (M, K), mirrored (M, K)).

    raw: (M, 128) the teacher's descriptors of the images (zero where it had none: never partners).
    """
    rng = np.random.default_rng([seed, k, near])
    m = len(labels)
    usable = np.abs(raw).sum(1) > 0
    e = normalise(raw - raw[usable].mean(0))
    partners = np.zeros((m, k), np.int64)
    candidates = np.flatnonzero(usable)
    for start in range(0, m, 1024):  # the first partner: one of the `near` most alike other people
        sims = e[start:start + 1024] @ e.T
        sims[labels[start:start + 1024, None] == labels[None, :]] = -np.inf
        sims[:, ~usable] = -np.inf
        top = np.argpartition(-sims, near, axis=1)[:, :near]
        partners[start:start + 1024, 0] = top[np.arange(len(top)), rng.integers(near, size=len(top))]
    for v in range(1, k):  # the rest: anyone else
        col = candidates[rng.integers(len(candidates), size=m)]
        while (bad := labels[col] == labels).any():
            col[bad] = candidates[rng.integers(len(candidates), size=int(bad.sum()))]
        partners[:, v] = col
    alphas = rng.uniform(*ALPHA, size=(m, k)).astype(np.float32)
    return partners, alphas, rng.random((m, k)) < 0.5


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2

    cv2.setNumThreads(1)
    _worker["teacher"] = DlibTeacher()


def _process(item: tuple[int, tuple[str, np.ndarray], list[tuple[str, np.ndarray]], np.ndarray, np.ndarray]):
    """One training image's K morphs: (index, (K, 128) descriptors | None, error | None)."""
    j, first, seconds, alphas, mirrored = item
    teacher: DlibTeacher = _worker["teacher"]
    try:
        chips = [teacher.chip(read_image(path), box) for path, box in [first, *seconds]]
    except ImageError as err:
        return j, None, str(err)
    morphs = blend(np.stack([chips[0]] * len(seconds)), np.stack(chips[1:]), alphas)
    morphs = [m[:, ::-1] if flip else m for m, flip in zip(morphs, mirrored)]
    return j, teacher.describe(morphs), None


def rows_digest(rows: np.ndarray) -> str:
    """SHA-256 of a split's (M,) training rows as int64: which images a cache of morphs was made of."""
    return hashlib.sha256(np.ascontiguousarray(rows, np.int64).tobytes()).hexdigest()


def build_command(split: dict) -> str:
    """The command that builds a split's morphs, for messages."""
    return (f"siamese teach morphs=2 protocol={split['protocol']} fold={split['fold']} seed={split['seed']} "
            f"val_fraction={split['val_fraction']}")


def _config(cache_dir: Path, split: dict, rows: np.ndarray, k: int, near: int, seed: int) -> dict:
    return {**identity(), **cache_identity(cache_dir), "split": dict(split), "rows_sha256": rows_digest(rows),
            "morphs": int(k), "near": int(near), "seed": int(seed), "alpha": list(ALPHA)}


def build_morphs(cache_dir: str | os.PathLike, lfw_root: str | os.PathLike, rows: np.ndarray, labels: np.ndarray,
                 split: dict, morphs: int = 2, near: int = 20, seed: int = 0, workers: int = 2, chunk: int = 128,
                 progress: bool = True) -> dict:
    """Make `morphs` morphs of every training image of a split and run the teacher on each,
    resuming a partial run.

    Args:
        cache_dir: a face cache with a finished teacher cache (`siamese teach`).
        lfw_root: the LFW copy the face cache was built from (the teacher reads the photos).
        rows: (M,) face-cache rows of the split's training images; labels: (M,) their people.
        split: {protocol, fold, seed, val_fraction}: which split `rows` are (recorded, checked).
        morphs: K per image; near: the first partner is one of the `near` most alike other people's
            images; seed: draws partners, weights and mirroring.
        workers: processes (each loads the teacher, ~100 MB); chunk: images per saved step.

    Returns:
        Stats: images, morphs, done, errors, pending, seconds, morphs_per_s, workers.

    Raises:
        ValueError: `morphs` < 1, or morphs there built with another teacher, face cache, split
            or settings (named in the message).
        FileNotFoundError: no finished teacher cache (its command named).
    """
    from tqdm import tqdm

    if morphs < 1:
        raise ValueError(f"morphs={morphs}: ask for at least one morph per image")
    cache_dir, rows, labels = Path(cache_dir), np.asarray(rows, np.int64), np.asarray(labels)
    faces, lfw = load_cache(cache_dir), LFW(lfw_root)
    raw, teacher_status, _ = load(cache_dir)
    out = morphs_dir(cache_dir, split)
    out.mkdir(parents=True, exist_ok=True)
    claim(out, _config(cache_dir, split, rows, morphs, near, seed))
    m = len(rows)
    specs = {"rows": ((m,), np.int64), "partners": ((m, morphs), np.int64), "alphas": ((m, morphs), np.float32),
             "mirrored": ((m, morphs), np.bool_), "embeddings": ((m, morphs, DIM), np.float32)}
    mm, status = open_arrays(out, specs, (m,))
    if (status == PENDING).all():  # a new plan (the same one again: it is seeded)
        first = np.where((teacher_status[rows] != ERROR)[:, None], np.asarray(raw[rows, 0], np.float32), 0.0)
        partners, alphas, mirrored = _plan(first, labels, morphs, near, seed)
        mm["rows"][:], mm["partners"][:], mm["alphas"][:], mm["mirrored"][:] = rows, rows[partners], alphas, mirrored
        save_progress(out, mm, status)
    todo = np.flatnonzero(status == PENDING)
    t0 = time.perf_counter()
    if len(todo):
        log.info("teacher morphs %s: %d of %d images to go, %d workers", out, len(todo), m, workers)

        def photo(i: int) -> tuple[str, np.ndarray]:
            return str(lfw.path(faces.refs[i])), face_box(faces, i)[0]

        items = [(int(j), photo(int(rows[j])), [photo(int(p)) for p in mm["partners"][j]], mm["alphas"][j].copy(),
                  mm["mirrored"][j].copy()) for j in todo]
        bar = tqdm(total=m, initial=m - len(todo), desc="teacher morphs", unit="img", disable=not progress)
        for results in in_chunks(items, _process, _init_worker, (), workers, chunk, bar):
            for j, vectors, err in results:
                if err:
                    log.warning("teacher morphs: %s", err)
                    status[j] = ERROR
                else:
                    mm["embeddings"][j], status[j] = vectors, DONE
            save_progress(out, mm, status)
        bar.close()
    stats = {"images": m, "morphs": int(morphs), "done": int((status == DONE).sum() * morphs),
             "errors": int((status == ERROR).sum()), "pending": int((status == PENDING).sum()),
             "seconds": seconds_so_far(out, t0), "workers": workers}
    stats["morphs_per_s"] = round(stats["done"] / stats["seconds"], 1) if stats["seconds"] else None
    atomic_write_text(out / "build.json", json.dumps(stats, indent=2))
    return stats


def morph_targets(cache_dir: str | os.PathLike, split: dict, rows: np.ndarray, allowed: np.ndarray,
                  center: np.ndarray, size: int, check_files: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The morphs of face-cache `rows` (training images of `split`) for training.

    Args:
        cache_dir: the face cache whose morphs (`build_morphs`) to read.
        split: the run's {protocol, fold, seed, val_fraction}; morphs of another split are refused.
        rows: (n,) face-cache rows of the images to give morphs (-1: an image with none).
        allowed: face-cache rows the run may learn from: a morph with any other second face (a
            validation or test person) is refused.
        center: (128,) the mean raw descriptor the plain targets were centred on.
        size: the model's input size (the crops are resized to it).
        check_files: as in `teacher_cache.load`.

    Returns:
        ((n, K, size, size, 3) uint8 crops, (n, K, 128) float32 unit targets; all zero for an image
        without morphs).

    Raises:
        FileNotFoundError: no finished morphs for this split — with the command that builds them.
        ValueError: built by another teacher version, from another face cache or for another split,
            or a morph showing someone outside `allowed`.
    """
    out = morphs_dir(cache_dir, split)
    command = build_command(split)
    status, config = finished(out, cache_dir, "cache of morphs", command, check_files)
    if {k: config["split"].get(k) for k in split} != {k: split[k] for k in split}:
        raise ValueError(f"{out}: made for the split {config['split']}, not {dict(split)} — delete it and run "
                         f"`{command}`")
    made, partners = np.load(out / "rows.npy"), np.load(out / "partners.npy")
    if not np.isin(partners, allowed).all():
        raise ValueError(f"{out}: some morphs show people this run must not learn from — delete it and run "
                         f"`{command}`")
    k, fc = partners.shape[1], load_cache(cache_dir)
    where = {int(r): j for j, r in enumerate(made)}
    idx = np.array([where.get(int(r), -1) for r in rows], np.int64)
    ok = idx >= 0
    ok[ok] = status[idx[ok]] == DONE
    crops = np.zeros((len(rows), k, size, size, 3), np.uint8)
    t = np.zeros((len(rows), k, DIM), np.float32)
    if not ok.any():
        return crops, t
    j = idx[ok]
    raw = np.asarray(np.load(out / "embeddings.npy", mmap_mode="r")[j], np.float32)
    t[ok] = normalise((raw - center).reshape(-1, DIM)).reshape(raw.shape)
    alphas, mirrored = np.load(out / "alphas.npy")[j], np.load(out / "mirrored.npy")[j]
    first = resize_faces(fc.images[made[j]], size)
    for v in range(k):
        second = resize_faces(fc.images[partners[j, v]], size)
        morph = blend(first, second, alphas[:, v])
        crops[ok, v] = np.where(mirrored[:, v, None, None, None], morph[:, :, ::-1], morph)
    return crops, t
