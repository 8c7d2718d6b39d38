"""Photos and videos in, aligned faces out: the first step of every downstream use.

`detect_folder` walks a folder of photos (recursive), a single photo, or a video file, finds
every face, saves its aligned crop and writes a manifest. Bad input never stops the batch: each
unreadable file gets one log line and is counted by reason in the summary. The user's files are
only ever read.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np

from siamese.faces import Detector, Face, align, frontalness
from siamese.images import (ImageError, atomic_write_text, iter_images, list_images, read_image,
                            write_image)
from siamese.video import FrameSource, SourceError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}

MANIFEST_COLUMNS = ["source", "frame", "time_s", "face", "score", "x", "y", "w", "h",
                    *[f"{p}_{c}" for p in ("leye", "reye", "nose", "lmouth", "rmouth") for c in "xy"],
                    "crop"]


def is_video(path: str | os.PathLike) -> bool:
    """True for a file whose suffix is a common video container."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def detect_folder(input: str | os.PathLike, out: str | os.PathLike, detector: Detector,
                  size: int = 112, padding: float = 0.0, save_crops: bool = True,
                  every_s: float = 1.0, overwrite: bool = False, progress: bool = True) -> dict:
    """Find and align every face under `input`; write crops and `manifest.csv` into `out`.

    Args:
        input: a photo, a folder of photos (searched recursively), or a video file.
        out: output folder: `crops/` (aligned `size`x`size` JPEGs), `manifest.csv` (one row per
            face: source file, frame and time for videos, box, landmarks, score, crop path) and
            `summary.json`.
        detector: a `siamese.faces.Detector`.
        size: aligned crop side in pixels; padding: see `siamese.faces.template`.
        save_crops: write the crops (the manifest is always written).
        every_s: for videos, sample one frame per this many seconds.
        overwrite: replace an existing manifest in `out` (otherwise refuse, to keep old results).
        progress: show a progress bar.

    Returns:
        The summary: sources, frames, faces, sources_without_face, sources_with_many_faces,
        errors (total) and errors_by_reason.
    """
    from tqdm import tqdm

    input, out = Path(input), Path(out)
    manifest = out / "manifest.csv"
    if manifest.exists() and not overwrite:
        raise FileExistsError(f"{manifest} exists — choose another --out or pass overwrite=true")
    rows: list[list] = []
    counts: Counter = Counter()
    errors: Counter = Counter()

    def handle(source: str, stem: str, image: np.ndarray, frame: int | str, time_s: float | str):
        faces = detector.detect(image)
        counts["frames"] += 1
        counts["faces"] += len(faces)
        counts["without_face"] += not faces
        counts["many_faces"] += len(faces) > 1
        for k, face in enumerate(faces):
            crop_rel = ""
            if save_crops:
                crop_rel = f"crops/{stem}_face{k}.jpg"
                write_image(out / crop_rel, align(image, face.landmarks, size, padding))
            rows.append(_row(source, frame, time_s, k, face, crop_rel))

    out.mkdir(parents=True, exist_ok=True)
    if is_video(input):
        try:
            with FrameSource(str(input), every_s=every_s) as src:
                total = int(src.frame_count / (src.fps * every_s)) + 1 if src.frame_count and src.fps else None
                for fr in tqdm(src, total=total, desc="frames", unit="frame", disable=not progress):
                    handle(input.name, f"{input.stem}/f{fr.index:06d}", fr.image, fr.index,
                           round(fr.time_s, 3))
                errors["undecodable_frame"] += src.failed_frames
        except SourceError as err:
            log.error("%s", err)
            errors["unreadable_video"] += 1
        counts["sources"] = 1
    else:
        paths = list_images(input)
        root = input if input.is_dir() else input.parent
        counts["sources"] = len(paths)
        for path, image in iter_images(tqdm(paths, desc="photos", unit="img", disable=not progress),
                                       errors):
            rel = path.relative_to(root)
            handle(str(rel), rel.with_suffix("").as_posix().replace("/", "__"), image, "", "")

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows(rows)
    atomic_write_text(manifest, buf.getvalue())
    summary = {"input": str(input), "sources": counts["sources"], "frames": counts["frames"],
               "faces": counts["faces"], "sources_without_face": counts["without_face"],
               "sources_with_many_faces": counts["many_faces"],
               "errors": sum(errors.values()), "errors_by_reason": dict(errors)}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    log.info("%d faces in %d of %d %s; %d without a face; %d skipped %s", summary["faces"],
             summary["frames"] - summary["sources_without_face"], summary["frames"],
             "frames" if is_video(input) else "photos", summary["sources_without_face"],
             summary["errors"], dict(errors) or "")
    return summary


def _row(source: str, frame, time_s, k: int, face: Face, crop: str) -> list:
    return [source, frame, time_s, k, f"{face.score:.2f}", *np.round(face.box, 1).tolist(),
            *np.round(face.landmarks.ravel(), 1).tolist(), crop]


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Rows of a manifest written by `detect_folder`, as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def dominant_face(faces: list[Face], ratio: float = 2.0) -> Face | None:
    """The one clear face of a frame: the only face, or one at least `ratio` times the area of
    the next largest (a user in front of a webcam with people far behind). None otherwise."""
    if not faces:
        return None
    by_area = sorted(faces, key=lambda f: -float(f.box[2] * f.box[3]))
    if len(by_area) == 1:
        return by_area[0]
    a0, a1 = (float(f.box[2] * f.box[3]) for f in by_area[:2])
    return by_area[0] if a0 >= ratio * a1 else None


def collect(source: str | int, person: str, out_root: str | os.PathLike, detector: Detector,
            count: int = 50, every_s: float = 0.2, size: int = 112, padding: float = 0.0,
            min_size: int = 60, min_frontal: float = 0.4, progress: bool = True) -> dict:
    """Capture aligned crops of one person from a webcam, video file or stream.

    Keeps a frame only when it has one clear face (see `dominant_face`) of at least `min_size`
    pixels, aligns it and saves it as `out_root/<person>/<person>_NNNN.jpg`, numbering on from
    any images already there (nothing is overwritten). Training mixes these people in with
    `own_faces=<out_root>`.

    Args:
        source: camera index, video path or stream URL (see `siamese.video.parse_source`).
        person: a name; letters, digits, '-', '_' and '.' only (it becomes a folder name).
        out_root: folder holding one sub-folder per person.
        count: stop after this many kept faces.
        every_s: at most one frame per this many seconds (consecutive frames are near copies).
        min_size: skip faces smaller than this (px); min_frontal: skip faces turned further
            away than this `siamese.faces.frontalness` (profiles align badly).

    Returns:
        {"kept", "frames", "skipped_no_face", "skipped_many_faces", "skipped_small",
        "skipped_profile", "dir"}.
    """
    import re

    from tqdm import tqdm

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", person) or ".." in person:
        raise ValueError(f"person name {person!r}: use letters, digits, '-', '_' or '.' "
                         "(it becomes a folder name)")
    folder = Path(out_root) / person
    folder.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in folder.glob(f"{person}_*.jpg")
             if (m := re.fullmatch(rf"{re.escape(person)}_(\d+)\.jpg", p.name))]
    next_no = max(taken, default=0) + 1
    stats = Counter()
    with FrameSource(source, every_s=every_s) as src:
        bar = tqdm(total=count, desc=f"collect {person}", unit="face", disable=not progress)
        for fr in src:
            stats["frames"] += 1
            faces = detector.detect(fr.image)
            face = dominant_face(faces)
            if face is None:
                stats["skipped_no_face" if not faces else "skipped_many_faces"] += 1
                continue
            if min(face.box[2], face.box[3]) < min_size:
                stats["skipped_small"] += 1
                continue
            if frontalness(face) < min_frontal:
                stats["skipped_profile"] += 1
                continue
            write_image(folder / f"{person}_{next_no:04d}.jpg",
                        align(fr.image, face.landmarks, size, padding))
            next_no += 1
            stats["kept"] += 1
            bar.update()
            if stats["kept"] >= count:
                break
        bar.close()
    result = {"kept": stats["kept"], "frames": stats["frames"],
              "skipped_profile": stats["skipped_profile"],
              "skipped_no_face": stats["skipped_no_face"],
              "skipped_many_faces": stats["skipped_many_faces"],
              "skipped_small": stats["skipped_small"], "dir": str(folder)}
    log.info("collect %s: %s", person, result)
    return result


def read_face_folders(root: str | os.PathLike, size: int) -> tuple[np.ndarray, list[str]]:
    """Aligned crops saved by `collect` (`root/<person>/*.jpg`), resized to `size`.

    Returns:
        ((N, size, size, 3) uint8 RGB, N person names). Unreadable files are skipped with a
        log line. A missing root raises FileNotFoundError naming it.
    """
    import cv2

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder of collected faces — run "
                                "`siamese collect SOURCE --person NAME` first or set own_faces=null")
    images, names = [], []
    for path in list_images(root):
        if len(path.relative_to(root).parts) < 2:  # only root/<person>/<file>
            continue
        try:
            im = read_image(path)
        except ImageError as err:
            log.warning("skipped %s", err)
            continue
        images.append(cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA))
        names.append(path.relative_to(root).parts[0])
    return (np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)), names


def model_crops(embedder, image: np.ndarray, faces: list[Face]) -> np.ndarray:
    """Crops of `faces` exactly as the model saw faces in training.

    Training aligned at the cache's size and padding, then shrank to the model's input size;
    doing the same here (not a direct warp to the small size) keeps the pixels' statistics the
    same. Both settings are read from the model's model.json.

    Args:
        embedder: a `siamese.export.Embedder` (anything with `meta` and `input_size`).
        image: (H, W, 3) uint8 RGB.
        faces: detections in `image`.

    Returns:
        (n, S, S, 3) uint8 RGB, S = embedder.input_size.
    """
    from siamese.faces import resize_faces

    al = embedder.meta.get("alignment", {})
    size, padding = int(al.get("cache_size", 112)), float(al.get("padding", 0.0))
    if not faces:
        return np.zeros((0, embedder.input_size, embedder.input_size, 3), np.uint8)
    crops = np.stack([align(image, f.landmarks, size, padding) for f in faces])
    return resize_faces(crops, embedder.input_size)


def embed_faces(embedder, image: np.ndarray, faces: list[Face]) -> np.ndarray:
    """(n, D) unit embeddings of `faces` in `image` (flip test-time augmentation included)."""
    crops = model_crops(embedder, image, faces)
    if not len(crops):
        return np.zeros((0, 0), np.float32)
    return embedder.embed(crops)
