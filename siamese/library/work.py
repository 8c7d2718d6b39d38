"""The work of one shard, the same in every backend: read -> detect -> align (`detect_shard`), then
embed (`embed_crops`). Ray runs the two as separate stages (detection on a pool of CPU workers, the
model in an actor pool loaded once per actor); the local backend calls them in turn.

Files are read, detected and aligned exactly as `siamese detect` does (`siamese.io.images.read_image`,
one frame per `every_s` of a video, the same detector), and a file that cannot be used is recorded
with the line `detect` logs for it ("skipped <path>: <problem>") and its reason, so the index's
summary counts errors as `detect`'s does.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from siamese.faces.align import align, sharpness
from siamese.faces.detect import Detector, frontalness
from siamese.faces.folder import detect_counted
from siamese.io.files import file_digest
from siamese.io.images import ImageError, read_image
from siamese.io.video import FrameSource, SourceError
from siamese.library.plan import Shard

__all__ = ["detect_shard", "embed_crops", "quiet_threads"]

_FIELDS = ["source", "frame", "time_s", "face", "score", "box", "landmarks", "image_w", "image_h",
           "frontalness", "sharpness", "sha256", "label"]


def quiet_threads() -> None:
    """One thread per worker process: the workers are the parallelism. libfacedetection's OpenMP
    threads spin-wait (two processes x two threads on 2 cores ran ~12x slower, docs/benchmarks.md);
    OpenMP reads this once, before yuface is first imported."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2

    cv2.setNumThreads(1)


def _label(rel: str) -> str:
    parts = Path(rel).parts
    return parts[0] if len(parts) > 1 else ""


def detect_shard(shard: Shard, detector: Detector, embedder, *, every_s: float = 1.0, crop_size: int = 112,
                 crop_padding: float = 0.0, shown_root: str | None = None) -> tuple[dict, np.ndarray, dict]:
    """Every face of the shard's files, aligned as `embedder` expects (`Embedder.crops`).

    Args:
        shard: a `siamese.library.Shard` (its root is absolute).
        detector: a `siamese.faces.Detector`; embedder: a `siamese.model.Embedder` (only its
            preprocessing is used here).
        every_s: videos: one frame per this many seconds.
        crop_size, crop_padding: the crop whose `sharpness` is recorded (the cluster manifest's).
        shown_root: how messages name the input folder (as the user gave it); default the root.

    Returns:
        (rows: {field: list} for every column but embedding and model, crops: (n, S, S, 3) uint8,
        stats: {"files", "sources", "frames", "faces", "without_face", "many_faces",
        "errors": [[reason, line, level]]}).
    """
    rows = {k: [] for k in _FIELDS}
    crops: list[np.ndarray] = []
    stats = Counter(files=len(shard.files), sources=0, frames=0, faces=0, without_face=0, many_faces=0)
    errors: list[list[str]] = []
    size, padding = embedder.alignment
    same = (size, padding) == (crop_size, float(crop_padding))

    def handle(rel: str, sha: str, image: np.ndarray, frame: int, time_s: float) -> None:
        faces = detect_counted(detector, image, stats)
        for k, face in enumerate(faces):
            aligned = align(image, face.landmarks, size, padding)
            shown = aligned if same else align(image, face.landmarks, crop_size, crop_padding)
            crops.append(aligned)
            for name, v in zip(_FIELDS, (rel, frame, time_s, k, face.score, face.box, face.landmarks.ravel(),
                                          image.shape[1], image.shape[0], frontalness(face), sharpness(shown),
                                          sha, _label(rel))):
                rows[name].append(v)

    root = Path(shard.root)
    shown = Path(shown_root) if shown_root is not None else root
    for rel in shard.files:
        path = root / rel
        stats["sources"] += 1
        if shard.kind == "video":
            try:
                with FrameSource(str(path), every_s=every_s) as src:
                    sha = file_digest(path)
                    for fr in src:
                        handle(rel, sha, fr.image, fr.index, round(fr.time_s, 3))
                    stats["undecodable_frame"] += src.failed_frames
            except SourceError as err:
                errors.append(["unreadable_video", str(err), "error"])
            continue
        try:
            image = read_image(path)
            sha = file_digest(path)
        except ImageError as err:  # the line `siamese detect` logs, naming the file as the user gave it
            errors.append([err.reason, f"skipped {ImageError(shown / rel, err.reason, err.problem)}", "warning"])
            continue
        except OSError as err:  # vanished between reading and hashing
            errors.append(["unreadable", f"skipped {shown / rel}: {err.strerror or err}", "warning"])
            continue
        handle(rel, sha, image, -1, -1.0)
    stats = dict(stats, errors=errors)
    s = embedder.input_size
    batch = embedder.prepare(np.stack(crops)) if crops else np.zeros((0, s, s, 3), np.uint8)
    return rows, batch, stats


def embed_crops(embedder, crops: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """(n, D) float32 unit embeddings of (n, S, S, 3) uint8 crops (`Embedder.embed`, flip-averaged).
    Batches of 32: as fast as 256 on CPU, and ONNX Runtime's arena stays ~10x smaller (a 256-face
    batch grew the process to 2.6 GB)."""
    return embedder.embed(crops, batch_size=batch_size)
