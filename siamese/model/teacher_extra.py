"""Unlabelled faces beyond LFW through the teacher (`siamese teach extra=DIR`, `distill.extra`).

Distillation needs no identity labels: the student learns the teacher's embedding of each face.
What limits it here is the number of faces it learns from (LFW's ~9 k DevTrain images: it follows
the teacher closely on them and much less on new people, docs/distill.md "What the student
lacks"). This cache lets a user's own photos and videos add faces: every face YuNet finds in the
photos under DIR (recursively) and in one frame per `every_s` seconds of its videos, aligned the way
the face cache aligns LFW (the student's crop), and dlib's descriptor of the same face and of its
mirror (the teacher's chip from the detected box):

    <face cache>/teacher_dlib/extra/<folder name>-<8 hex of its path>/
        sources.csv     one row per photo or video: its path under DIR, kind, size and modification time
        status.npy      (N sources,) uint8: 0 pending, 1 done (its faces, if any, in a part), 3 unreadable
        parts/part-<number>.npz   the faces of one chunk of sources, numbered in the order written:
                        crops (n, S, S, 3) uint8, embeddings (n, 2, 128) float32 raw descriptors
                        (face, mirror), photo (n,) int64 row of sources.csv, face (n,) int64 its
                        index in the source, frame (n,) int64 (-1 for a photo), box (n, 4), score (n,)
                        float32 (plain arrays: read without pickle)
        config.json     the teacher's version and hashes, the face cache's alignment, the detector's
                        settings and the SHA-256 of sources.csv: built otherwise, refused
        build.json      counts and seconds; failures.csv: the sources that could not be read, and why

A chunk's part is written before status.npy marks its photos done, so a kill loses at most one
chunk and the same command resumes (a photo made again after a kill between the two is read from
its latest part only). The photos are only read.

**No test person is learned from.** A user's photos may show anyone, LFW's test people included.
Training (`extra_targets`) drops every extra face the teacher takes for a person the run does not
train on (its validation and test people), by `Guard`, set to catch a given share of those people's
own photos, and logs how many it dropped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

from siamese.data.cache import load as load_cache
from siamese.faces.align import align, resize_faces
from siamese.faces.detect import YuNetDetector
from siamese.io.files import atomic_write_bytes, atomic_write_text, safe_name
from siamese.io.images import ImageError, read_image
from siamese.io.media import list_sources
from siamese.io.video import SourceError, iter_frames
from siamese.model.dlib_resnet import DIM, DlibTeacher, identity
from siamese.model.preprocess import normalise
from siamese.model.teacher_cache import (
    claim,
    finished,
    in_chunks,
    open_arrays,
    read_failures,
    save_progress,
    seconds_so_far,
    teacher_dir,
)

__all__ = ["Guard", "build_extra", "extra_dir", "extra_targets", "load_extra"]

log = logging.getLogger(__name__)

PENDING, DONE, ERROR = 0, 1, 3
_worker: dict = {}


def extra_dir(cache_dir: str | os.PathLike, photos: str | os.PathLike) -> Path:
    """Where the extra faces of the photos under `photos` live, beside the face cache."""
    path = Path(photos).expanduser().resolve()
    tag = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    return teacher_dir(cache_dir) / "extra" / f"{safe_name(path.name or 'root', 60)}-{tag}"


def _listing(photos: Path) -> tuple[list[tuple[Path, str]], str, Counter]:
    """([(path, "photo" or "video")] under `photos`, sources.csv's text, what could not be listed,
    by reason)."""
    skipped: Counter = Counter()
    root, images, videos = list_sources(photos, skipped)
    sources = [(p, "photo") for p in images] + [(p, "video") for p in videos]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "path", "kind", "bytes", "mtime_ns"])
    for i, (p, kind) in enumerate(sources):
        try:
            st = p.stat()
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        w.writerow([i, p.relative_to(root).as_posix(), kind, size, mtime])
    return sources, buf.getvalue(), skipped


def _init_worker(size: int, padding: float, min_score: float, min_face: int, every_s: float) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2

    cv2.setNumThreads(1)
    _worker.update(teacher=DlibTeacher(), detector=YuNetDetector(min_score=min_score, min_size=min_face),
                   size=size, padding=padding, every_s=every_s)


def _process(item: tuple[int, str, str]):
    """One photo or video: (row, [(crop, (2, 128) descriptors, box, score, frame), ...] or None,
    error or None)."""
    i, path, kind = item
    faces: list = []
    try:
        if kind == "photo":
            _faces_of(read_image(path), -1, faces)
        else:
            for frame in iter_frames(path, every_s=_worker["every_s"]):
                _faces_of(frame.image, frame.index, faces)
    except (ImageError, SourceError) as err:
        return i, None, str(err)
    return i, faces, None


def _faces_of(image: np.ndarray, frame: int, faces: list) -> None:
    """Append every face of `image` (its crop, the teacher's descriptors of it and its mirror)."""
    teacher = _worker["teacher"]
    for face in _worker["detector"].detect(image):
        crop = align(image, face.landmarks, _worker["size"], _worker["padding"])
        chip = teacher.chip(image, face.box)
        faces.append((crop, teacher.describe([chip, chip[:, ::-1]]), np.asarray(face.box, np.float32),
                      float(face.score), int(frame)))


def build_extra(cache_dir: str | os.PathLike, photos: str | os.PathLike, workers: int = 2, chunk: int = 128,
                min_score: float = 0.8, min_face: int = 32, every_s: float = 2.0, progress: bool = True) -> dict:
    """Find every face in the photos and videos under `photos` and run the teacher on each (and its
    mirror), resuming a partial run; the faces are aligned as the face cache at `cache_dir` aligns LFW's.

    Args:
        cache_dir: a finished face cache (`siamese prepare`): its alignment (size, padding) is used,
            and the extra cache goes inside its teacher dir (`extra_dir`).
        photos: a folder of photos and videos (searched recursively; hidden files skipped), one
            photo or one video.
        workers: processes (each loads the teacher and a detector).
        chunk: photos per saved step of progress (one part file each).
        min_score: the detector's confidence a face needs (higher than detection's 0.5 default: a
            false face would teach the student the teacher's view of a non-face).
        min_face: smallest face box side kept, in pixels of the photo.
        every_s: one frame of a video per this many seconds.

    Returns:
        Stats: sources, videos, done, errors, faces, sources_without_face, not_listed, seconds,
        sources_per_s, workers, dir.

    Raises:
        TeacherMissing: without the teacher extra.
        siamese.io.ImageError: `photos` is missing.
        ValueError: no photos there, or an extra cache there built from another listing of the
            folder, another teacher, alignment or detector settings (named in the message).
    """
    from tqdm import tqdm

    cache_dir, photos = Path(cache_dir), Path(photos).expanduser()
    faces_cache = load_cache(cache_dir)
    paths, listing, skipped = _listing(photos)
    if not paths:
        raise ValueError(f"{photos}: no photos or videos found (jpg, png, webp, mp4, ... searched recursively)")
    size, padding = int(faces_cache.images.shape[1]), float(faces_cache.config.get("padding", 0.0))
    out = extra_dir(cache_dir, photos)
    (out / "parts").mkdir(parents=True, exist_ok=True)
    claim(out, {**identity(), "photos": str(photos.resolve()), "sources_sha256": hashlib.sha256(
        listing.encode()).hexdigest(), "size": size, "padding": padding, "detector": "yunet",
        "min_score": float(min_score), "min_face": int(min_face), "every_s": float(every_s)})
    if not (out / "sources.csv").exists():
        atomic_write_text(out / "sources.csv", listing)
    _, status = open_arrays(out, {}, (len(paths),))
    failures = read_failures(out / "failures.csv")
    todo = np.flatnonzero(status == PENDING)
    t0 = time.perf_counter()
    if len(todo):
        log.info("teacher extra %s: %d of %d photos to go, %d workers", out, len(todo), len(paths), workers)
        items = [(int(i), str(paths[i][0]), paths[i][1]) for i in todo]
        bar = tqdm(total=len(paths), initial=len(paths) - len(todo), desc="teacher extra", unit="source",
                   disable=not progress)
        number = 1 + max((int(p.stem.split("-")[1]) for p in (out / "parts").glob("part-*.npz")), default=0)
        for results in in_chunks(items, _process, _init_worker, (size, padding, min_score, min_face, every_s),
                                 workers, chunk, bar):
            rows = [(i, k, f) for i, found, _ in results if found for k, f in enumerate(found)]
            part = {"crops": np.zeros((0, size, size, 3), np.uint8), "embeddings": np.zeros((0, 2, DIM), np.float32),
                    "photo": np.zeros(0, np.int64), "face": np.zeros(0, np.int64),
                    "box": np.zeros((0, 4), np.float32), "score": np.zeros(0, np.float32),
                    "frame": np.zeros(0, np.int64)}
            if rows:
                part = {"crops": np.stack([f[0] for _, _, f in rows]),
                        "embeddings": np.stack([f[1] for _, _, f in rows]).astype(np.float32),
                        "photo": np.array([i for i, _, _ in rows], np.int64),
                        "face": np.array([k for _, k, _ in rows], np.int64),
                        "box": np.stack([f[2] for _, _, f in rows]),
                        "score": np.array([f[3] for _, _, f in rows], np.float32),
                        "frame": np.array([f[4] for _, _, f in rows], np.int64)}
            buf = io.BytesIO()
            np.savez(buf, **part)
            atomic_write_bytes(out / "parts" / f"part-{number:06d}.npz", buf.getvalue())  # never over an older one
            number += 1
            for i, found, err in results:
                status[i] = ERROR if err else DONE
                if err:
                    failures[i] = err
                    log.warning("teacher extra: %s", err)
            save_progress(out, {}, status)  # the part is on disk before its photos are marked done
            _write_failures(out / "failures.csv", failures)
        bar.close()
    seconds = seconds_so_far(out, t0)
    faces = _read_parts(out, status)
    per_source = np.bincount(faces["photo"], minlength=len(paths)) if len(faces["photo"]) else np.zeros(len(paths))
    stats = {"sources": len(paths), "videos": sum(kind == "video" for _, kind in paths),
             "done": int((status == DONE).sum()), "errors": int((status == ERROR).sum()),
             "faces": int(len(faces["photo"])),
             "sources_without_face": int(((status == DONE) & (per_source == 0)).sum()), "not_listed": dict(skipped),
             "seconds": seconds, "sources_per_s": round(len(paths) / seconds, 1) if seconds else None,
             "workers": workers, "dir": str(out)}
    atomic_write_text(out / "build.json", json.dumps(stats, indent=2))
    return stats


def _write_failures(path: Path, failures: dict[int, str]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "problem"])
    for i, problem in sorted(failures.items()):
        w.writerow([i, problem])
    atomic_write_text(path, buf.getvalue())


def _read_parts(out: Path, status: np.ndarray) -> dict[str, np.ndarray]:
    """Every part's faces, of photos marked done only, each (photo, face) once (a part rewritten
    after a kill between it and the status replaces the older one's faces)."""
    keys = ("crops", "embeddings", "photo", "face", "frame", "box", "score")
    parts = []
    for path in sorted((out / "parts").glob("part-*.npz"), key=lambda p: int(p.stem.split("-")[1])):
        with np.load(path, allow_pickle=False) as z:
            parts.append({k: z[k] for k in keys})
    if not parts:
        return {"crops": np.zeros((0, 1, 1, 3), np.uint8), "embeddings": np.zeros((0, 2, DIM), np.float32),
                **{k: np.zeros(0, np.int64) for k in ("photo", "face", "frame")}, "box": np.zeros((0, 4), np.float32),
                "score": np.zeros(0, np.float32)}
    faces = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    key = faces["photo"] * 2**32 + faces["face"]
    _, last = np.unique(key[::-1], return_index=True)  # the latest part's copy of each face
    keep = np.sort(len(key) - 1 - last)
    keep = keep[status[faces["photo"][keep]] == DONE]
    return {k: v[keep] for k, v in faces.items()}


def load_extra(cache_dir: str | os.PathLike, photos: str | os.PathLike, check_files: bool = True
               ) -> tuple[dict[str, np.ndarray], dict]:
    """A finished extra cache of the photos under `photos`: ({"crops" (M, S, S, 3) uint8,
    "embeddings" (M, 2, 128) float32 raw, "photo" (the source's row), "face", "frame", "box",
    "score"}, config).

    Raises:
        FileNotFoundError: none finished — with the command that builds or resumes it.
        ValueError: built by another teacher version (with `check_files`).
    """
    out = extra_dir(cache_dir, photos)
    status, config = finished(out, cache_dir, f"cache of extra faces for {photos}", f"siamese teach extra={photos}",
                              check_files, of_face_cache=False)  # its faces come from the photos, not the cache
    return _read_parts(out, status), config


def extra_targets(cache_dir: str | os.PathLike, photos: str | os.PathLike, center: np.ndarray,
                  train_raw: np.ndarray, train_labels: np.ndarray, held_raw: np.ndarray, held_labels: np.ndarray,
                  size: int, guard: float = 0.98, check_files: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """The extra faces for training, without any the teacher takes for a held-out person (`Guard`).

    Args:
        cache_dir, photos: the face cache and the folder of `build_extra`.
        center: (128,) the mean raw descriptor the plain targets are centred on (one frame for both).
        train_raw: (n, 128) raw descriptors of the run's training images, of the people `train_labels` (n,).
        held_raw: (h, 128) raw descriptors of every image of the people the run must not learn (its
            validation and test people), `held_labels` (h,) their people.
        size: the model's input size (the crops are resized to it).
        guard: the share of held-out people's photos the guard must catch (`Guard`); 0: no guard,
            every extra face kept (the record then says the faces were not checked).

    Returns:
        ((m, size, size, 3) uint8 crops, (m, 2, 128) float32 unit targets (face, mirror), a record:
        {"faces", "kept", "dropped", "guard", "bar", "training_faces_dropped", "photos", "sources_sha256"}).
    """
    faces, config = load_extra(cache_dir, photos, check_files)
    emb = normalise(np.asarray(faces["embeddings"], np.float32).mean(1) - center)
    keep, record = np.ones(len(emb), bool), {"guard": float(guard), "bar": None, "training_faces_dropped": None}
    if guard > 0 and len(held_raw):
        g = Guard(normalise(np.asarray(train_raw, np.float32) - center), np.asarray(train_labels),
                  normalise(np.asarray(held_raw, np.float32) - center), np.asarray(held_labels), guard)
        keep = ~g.drops(emb)
        record.update(bar=round(g.bar, 4), training_faces_dropped=round(g.training_drop_share(), 4))
    raw = np.asarray(faces["embeddings"], np.float32)[keep]
    targets = normalise((raw - center).reshape(-1, DIM)).reshape(raw.shape)
    crops = faces["crops"][keep]
    crops = resize_faces(crops, size) if len(crops) else np.zeros((0, size, size, 3), np.uint8)
    record = {"faces": int(len(emb)), "kept": int(keep.sum()), "dropped": int((~keep).sum()), **record,
              "photos": config["photos"], "sources_sha256": config["sources_sha256"]}
    return crops, targets, record


def _templates(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit mean per person (P, D), the sums (P, D), images per person (P,)) of unit rows `x` of `labels`."""
    _, inv = np.unique(labels, return_inverse=True)
    sums = np.zeros((inv.max() + 1, x.shape[1]), np.float32)
    np.add.at(sums, inv, x)
    return normalise(sums), sums, np.bincount(inv)


class Guard:
    """Does a face show one of the people a run must not learn? The teacher's answer, as a score:
    the face's best cosine with a held-out person's template (the mean of their images), minus its
    mean cosine with its `k` nearest training people's templates (how alike it is to people in
    general: AS-norm's idea, so that a face close to everyone is not taken for someone).

    The bar is the (1 - `catch`) quantile of that score for the held-out people's own photos, each
    against its person's template without it (people with two or more images): `catch` of their
    photos score at least the bar, so a new photo of one of them is caught about as often. What it
    costs, the share of other people's faces it drops, is measured on the training people's images
    (`training_drop_share`). On LFW's View 1 split (3,920 training people, 1,829 held out), asking
    0.98 drops 40 % of training people's faces; the best cosine with a held-out template without the
    normalising would drop 63 % for the same catch (docs/distill.md, "Faces from your own photos").
    """

    def __init__(self, train: np.ndarray, train_labels: np.ndarray, held: np.ndarray, held_labels: np.ndarray,
                 catch: float, k: int = 50):
        self.k = k
        self.train_templates, tsums, _ = _templates(train, train_labels)
        self.held_templates, hsums, counts = _templates(held, held_labels)
        self._train, self._train_labels = train, np.unique(train_labels, return_inverse=True)[1]
        _, inv = np.unique(held_labels, return_inverse=True)
        several = counts[inv] > 1
        own = np.einsum("ij,ij->i", held, normalise(hsums[inv] - held))  # each photo vs its person without it
        best = self._best_held(held, exclude=inv)
        score = np.maximum(np.where(several, own, -1.0), best) - self._typical(held)
        self.bar = float(np.quantile(score[several], 1 - catch)) if several.any() else float(np.max(score))

    def _best_held(self, x: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        """(n,) each row's best cosine with a held-out template (skipping template `exclude[i]` for row i)."""
        out = np.empty(len(x), np.float32)
        for s in range(0, len(x), 2048):
            c = x[s:s + 2048] @ self.held_templates.T
            if exclude is not None:
                c[np.arange(len(c)), exclude[s:s + 2048]] = -1.0
            out[s:s + 2048] = c.max(1) if c.shape[1] else -1.0
        return out

    def _typical(self, x: np.ndarray, skip: np.ndarray | None = None) -> np.ndarray:
        """(n,) each row's mean cosine with its k nearest training people (not person `skip[i]`)."""
        out = np.empty(len(x), np.float32)
        k = min(self.k, len(self.train_templates) - (skip is not None))
        for s in range(0, len(x), 2048):
            c = x[s:s + 2048] @ self.train_templates.T
            if skip is not None:
                c[np.arange(len(c)), skip[s:s + 2048]] = -np.inf
            out[s:s + 2048] = np.sort(c, 1)[:, -k:].mean(1)
        return out

    def drops(self, faces: np.ndarray) -> np.ndarray:
        """(n,) bool: the unit (n, D) `faces` the guard takes for a held-out person."""
        if not len(faces):
            return np.zeros(0, bool)
        return self._best_held(faces) - self._typical(faces) >= self.bar

    def training_drop_share(self) -> float:
        """The share of the training people's images the guard would drop (each against the others' templates)."""
        score = self._best_held(self._train) - self._typical(self._train, skip=self._train_labels)
        return float((score >= self.bar).mean())
