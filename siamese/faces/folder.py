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

from siamese.faces.align import align
from siamese.faces.detect import Detector, Face
from siamese.io.files import atomic_write_text
from siamese.io.images import iter_images, list_images, write_image
from siamese.io.video import FrameSource, SourceError, is_video

__all__ = ["MANIFEST_COLUMNS", "detect_folder", "read_manifest"]

log = logging.getLogger(__name__)


MANIFEST_COLUMNS = ["source", "frame", "time_s", "face", "score", "x", "y", "w", "h",
                    *[f"{p}_{c}" for p in ("leye", "reye", "nose", "lmouth", "rmouth") for c in "xy"],
                    "crop"]


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


