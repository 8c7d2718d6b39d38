"""Photos and videos in, aligned faces out: the first step of every downstream use.

`detect_folder` walks a folder of photos (recursive), a single photo, or a video file, finds
every face, saves its aligned crop and writes a manifest. Bad input never stops the batch: each
unreadable file (and each folder that cannot be listed, each symlink loop) gets one log line and
is counted by reason in the summary. The user's files are only ever read, and `out` is never a
folder of theirs.
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
from siamese.io.files import atomic_write_text, flat_name, safe_name, staged_dir
from siamese.io.images import NothingRead, iter_images, list_images, write_image
from siamese.io.video import FrameSource, SourceError, is_video

__all__ = ["MANIFEST_COLUMNS", "detect_counted", "detect_folder", "read_manifest"]

log = logging.getLogger(__name__)


MANIFEST_COLUMNS = ["source", "frame", "time_s", "face", "score", "x", "y", "w", "h",
                    *[f"{p}_{c}" for p in ("leye", "reye", "nose", "lmouth", "rmouth") for c in "xy"],
                    "crop"]


def detect_folder(input: str | os.PathLike, out: str | os.PathLike, detector: Detector,
                  size: int = 112, padding: float = 0.0, save_crops: bool = True,
                  every_s: float = 1.0, overwrite: bool = False, progress: bool = True) -> dict:
    """Find and align every face under `input`; write crops and `manifest.csv` into `out`.

    `out` appears only once complete (built beside it, then swapped in), so an interrupted run
    leaves nothing half-written, and nothing of the user's is ever written over.

    Args:
        input: a photo, a folder of photos (searched recursively), or a video file (known by its
            content, whatever its suffix).
        out: output folder: `crops/` (aligned `size`x`size` JPEGs, one name per face: a photo's
            path with "/" as "__", e.g. `crops/trip__a.jpg_face0.jpg`; a video's
            `crops/<name>/f<frame>_face<k>.jpg`), `manifest.csv` (one row per face: source file,
            frame and time for videos, box, landmarks, score, crop path) and `summary.json`. It
            must be new, empty, or an earlier `detect` result; never the input folder or inside it.
        detector: a `siamese.faces.Detector`.
        size: aligned crop side in pixels; padding: see `siamese.faces.template`.
        save_crops: write the crops (the manifest is always written).
        every_s: for videos, sample one frame per this many seconds.
        overwrite: replace an earlier detect result in `out` (otherwise refuse, to keep it).
        progress: show a progress bar.

    Returns:
        The summary: task ("detect"), sources, frames, faces, sources_without_face,
        sources_with_many_faces, errors (total) and errors_by_reason.

    Raises:
        FileExistsError: `out` is a file, holds files detect did not write, or holds an earlier
            result and `overwrite` is false.
        ValueError: `out` is the input folder, inside it, or holds the input.
        siamese.io.ImageError: `input` is missing or a symlink loop.
        siamese.io.NothingRead: not one source could be read (nothing is written).
    """
    from tqdm import tqdm

    input, out = Path(input), Path(out)
    _check_out(input, out, overwrite)
    video = is_video(input)
    errors: Counter = Counter()
    paths = [] if video else list_images(input, errors)  # a missing input fails here, before any writing
    rows: list[list] = []
    counts: Counter = Counter()
    with staged_dir(os.path.realpath(out)) as tmp:  # realpath: a link to a folder keeps pointing at the result

        def handle(source: str, stem: str, image: np.ndarray, frame: int | str, time_s: float | str):
            faces = detect_counted(detector, image, counts)
            for k, face in enumerate(faces):
                crop_rel = ""
                if save_crops:
                    crop_rel = f"crops/{stem}_face{k}.jpg"
                    write_image(tmp / crop_rel, align(image, face.landmarks, size, padding))
                rows.append(_row(source, frame, time_s, k, face, crop_rel))

        if video:
            try:
                with FrameSource(str(input), every_s=every_s) as src:
                    total = int(src.frame_count / (src.fps * every_s)) + 1 if src.frame_count and src.fps else None
                    folder = safe_name(input.stem)
                    for fr in tqdm(src, total=total, desc="frames", unit="frame", disable=not progress):
                        handle(input.name, f"{folder}/f{fr.index:06d}", fr.image, fr.index, round(fr.time_s, 3))
                    errors["undecodable_frame"] += src.failed_frames
            except SourceError as err:
                log.error("%s", err)
                errors["unreadable_video"] += 1
            counts["sources"] = 1
        else:
            root = input if input.is_dir() else input.parent
            counts["sources"] = len(paths)
            for path, image in iter_images(tqdm(paths, desc="photos", unit="img", disable=not progress),
                                           errors):
                rel = path.relative_to(root)
                handle(rel.as_posix(), flat_name(rel), image, "", "")
        summary = _write_results(tmp, input, rows, counts, errors)
        if counts["sources"] and not counts["frames"]:  # nothing could be read: no result folder either
            raise NothingRead(f"none of {input}'s {counts['sources']} source(s) could be read", summary)
    log.debug("%d faces in %d of %d %s; %d without a face; %d skipped %s", summary["faces"],
             summary["frames"] - summary["sources_without_face"], summary["frames"],
             "frames" if video else "photos", summary["sources_without_face"],
             summary["errors"], dict(errors) or "")
    return summary


def detect_counted(detector: Detector, image: np.ndarray, counts: Counter) -> list[Face]:
    """The faces `detector` finds in `image` ((H, W, 3) uint8 RGB), counted into `counts` as every
    folder/video pass reports them: frames, faces, without_face, many_faces."""
    faces = detector.detect(image)
    counts["frames"] += 1
    counts["faces"] += len(faces)
    counts["without_face"] += not faces
    counts["many_faces"] += len(faces) > 1
    return faces


def _write_results(folder: Path, input: Path, rows: list[list], counts: Counter, errors: Counter) -> dict:
    """`manifest.csv` and `summary.json` into `folder`; returns the summary."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows(rows)
    atomic_write_text(folder / "manifest.csv", buf.getvalue())
    summary = {"task": "detect", "input": str(input), "sources": counts["sources"], "frames": counts["frames"],
               "faces": counts["faces"], "sources_without_face": counts["without_face"],
               "sources_with_many_faces": counts["many_faces"],
               "errors": sum(errors.values()), "errors_by_reason": dict(errors)}
    atomic_write_text(folder / "summary.json", json.dumps(summary, indent=2))
    return summary


_OURS = {"crops", "manifest.csv", "summary.json", "siamese.log"}  # what detect (and the CLI's log) write


def _check_out(input: Path, out: Path, overwrite: bool) -> None:
    """Refuses an `out` where writing could cost the user a file, or feed the next run its own crops."""
    real_in, real_out = Path(os.path.realpath(input)), Path(os.path.realpath(out))
    if os.path.lexists(out) and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder — give out the name of a new folder")
    if input.is_dir() and real_out.is_relative_to(real_in):
        raise ValueError(f"{out} is inside the input folder {input} — its crops would be read as photos "
                         "next time; choose an out outside it")
    if real_in.is_relative_to(real_out):
        raise ValueError(f"{out} holds the input {input} — choose an out that does not contain it")
    if not out.is_dir() or not any(out.iterdir()):
        return
    strangers = sorted(p.name for p in out.iterdir() if p.name not in _OURS)
    if strangers or not _is_detect_result(out):
        what = f"files detect did not write ({strangers[0]}, ...)" if strangers else "no result of detect"
        raise FileExistsError(f"{out} is not empty and holds {what} — choose a new or empty out "
                              "(nothing there was touched)")
    if not overwrite:
        raise FileExistsError(f"{out} holds an earlier detect result — choose another out or pass "
                              "overwrite=true to replace it")


def _is_detect_result(out: Path) -> bool:
    """True for a folder written by `detect_folder`: its summary says so (or, from before summaries
    named their task, it has none) and its manifest has detect's columns."""
    try:
        summary = json.loads((out / "summary.json").read_text())
        with open(out / "manifest.csv", newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, ValueError, csv.Error):
        return False
    return isinstance(summary, dict) and summary.get("task", "detect") == "detect" and header == MANIFEST_COLUMNS


def _row(source: str, frame, time_s, k: int, face: Face, crop: str) -> list:
    return [source, frame, time_s, k, f"{face.score:.2f}", *np.round(face.box, 1).tolist(),
            *np.round(face.landmarks.ravel(), 1).tolist(), crop]


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Rows of a manifest written by `detect_folder`, as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


