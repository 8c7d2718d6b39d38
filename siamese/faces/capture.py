"""Capturing one person's face: the one loop that keeps "one clear, frontal face per frame".

    photos / folder / camera / video / stream -> `sources` (label, frame, time, RGB image)
      -> detect -> `clear_face`: one face clearly larger than any other, big and frontal enough
      -> `Capture` (the image, its face, where it came from)

Used by `collect` (training faces of the user: `data/faces/NAME/NAME_NNNN.jpg`, read back by
`read_face_folders`) and by the gallery's enrolment (`siamese.gallery.enrol`). Skipped frames are
counted by reason (`SKIPS`, plus unreadable and undecodable_frames). No TensorFlow here.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from siamese.faces.align import align, face_inside
from siamese.faces.detect import Detector, Face, frontalness
from siamese.io.images import IMAGE_SUFFIXES, ImageError, list_images, read_image, write_image
from siamese.io.names import check_name
from siamese.io.video import FrameSource, parse_source

__all__ = ["MIN_INSIDE", "SKIPS", "Capture", "captures", "clear_face", "collect", "dominant_face",
           "read_face_folders", "sources"]

log = logging.getLogger(__name__)

# Why `clear_face` skips a frame, each with the words a command prints for it.
SKIPS = {"no_face": "without a face", "many_faces": "with no single clear face", "small": "too small",
         "cut_by_border": "cut by the frame border", "profile": "in profile"}

# A kept face has at least this share of its box and of its aligned crop inside the frame
# (`siamese.faces.align.face_inside`): the rest of a crop is smeared edge pixels, which would be
# learnt or enrolled as part of the face. Dominant faces of LFW photos (648 checked) are all above it.
MIN_INSIDE = 0.95


@dataclass
class Capture:
    """One kept face.

    Attributes:
        image: (H, W, 3) uint8 RGB photo or frame it was found in.
        face: the detection, in `image` pixels.
        source: the photo's path, or the camera / video's name.
        frame, time_s: frame number and seconds for videos and cameras; None for photos.
    """

    image: np.ndarray
    face: Face
    source: str
    frame: int | None = None
    time_s: float | None = None


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


def clear_face(faces: list[Face], min_size: float = 0, min_frontal: float = 0.0, shape: tuple | None = None,
               min_inside: float = MIN_INSIDE) -> tuple[Face | None, str]:
    """(the frame's one clear face, "") or (None, why not, one of `SKIPS`): "no_face",
    "many_faces" (none clearly the largest), "small" (box side under `min_size` px),
    "cut_by_border" (with the frame's `shape` given: under `min_inside` of it inside the frame,
    see `siamese.faces.align.face_inside`) or "profile" (under `min_frontal`, see
    `siamese.faces.frontalness`)."""
    face = dominant_face(faces)
    if face is None:
        return None, "no_face" if not faces else "many_faces"
    if min(face.box[2], face.box[3]) < min_size:
        return None, "small"
    if shape is not None and face_inside(face, shape) < min_inside:
        return None, "cut_by_border"
    if frontalness(face) < min_frontal:
        return None, "profile"
    return face, ""


def sources(source, every_s: float = 0.5, stats: Counter | None = None
            ) -> Iterator[tuple[str, int | None, float | None, np.ndarray]]:
    """(label, frame, time_s, RGB image) from photos (a list, a folder or one file) or from a
    camera index, video file or stream (one frame per `every_s` seconds).

    Unreadable photos are logged and counted in `stats["unreadable"]`, frames that cannot be
    decoded in `stats["undecodable_frames"]`; a camera or video that cannot be opened raises
    `siamese.io.video.SourceError` before anything is yielded.
    """
    stats = Counter() if stats is None else stats
    if isinstance(source, (list, tuple)):
        paths = [Path(p) for p in source]
    elif not isinstance(source, int) and Path(source).is_dir():
        paths = list_images(source)
    elif not isinstance(source, int) and Path(str(source)).suffix.lower() in IMAGE_SUFFIXES:
        if not Path(source).exists():
            raise FileNotFoundError(f"{source}: not found — check the path to the photo")
        paths = [Path(source)]
    else:  # a camera, a video file or a stream: opened now, so a bad one fails at the call
        return _frames(FrameSource(parse_source(source), every_s=every_s), stats)
    if not paths:
        raise FileNotFoundError(f"{source}: no photos here — give a folder of photos, a list of "
                                "photos, a video, or a camera index")
    return _photos(paths, stats)


def _frames(src: FrameSource, stats: Counter):
    with src:
        for fr in src:
            yield src.name, fr.index, round(fr.time_s, 3), fr.image
        stats["undecodable_frames"] += src.failed_frames


def _photos(paths: list[Path], stats: Counter):
    for path in paths:
        try:
            yield str(path), None, None, read_image(path)
        except ImageError as err:
            log.warning("skipped %s", err)
            stats["unreadable"] += 1


def captures(frames: Iterable[tuple[str, int | None, float | None, np.ndarray]], detector: Detector, *,
             count: int | None = None, min_size: float = 0, min_frontal: float = 0.0,
             stats: Counter | None = None) -> Iterator[Capture]:
    """The capture loop: every image of `frames` with one clear face becomes a `Capture`.

    Args:
        frames: from `sources` (or any (label, frame, time_s, image) tuples).
        detector: a `siamese.faces.Detector`.
        count: stop after this many captures (None: all).
        min_size, min_frontal: see `clear_face` (a face cut by the frame border is always skipped).
        stats: a Counter that receives "seen" and one count per skip reason (`SKIPS`).

    Yields:
        `Capture`s, in source order. A KeyboardInterrupt (a user stopping a camera) ends the
        loop quietly: what was captured so far is kept.
    """
    stats = Counter() if stats is None else stats
    kept = 0
    try:
        for label, frame, time_s, image in frames:
            if count is not None and kept >= count:
                break
            stats["seen"] += 1
            face, reason = clear_face(detector.detect(image), min_size, min_frontal, image.shape)
            if face is None:
                stats[reason] += 1
                if frame is None:  # a photo the user chose: say which (video frames are only counted)
                    log.warning("skipped %s: %s", label, SKIPS.get(reason, reason.replace("_", " ")))
                continue
            kept += 1
            yield Capture(image, face, label, frame, time_s)
    except KeyboardInterrupt:
        log.warning("capture stopped by the user after %d faces", kept)


def collect(source, person: str, out_root: str | os.PathLike, detector: Detector, count: int = 50,
            every_s: float = 0.2, size: int = 112, padding: float = 0.0, min_size: int = 60,
            min_frontal: float = 0.4, progress: bool = True) -> dict:
    """Capture aligned crops of one person (training faces) from a webcam, video file or stream.

    Each kept face (see `captures`) is aligned and saved as `out_root/<person>/<person>_NNNN.jpg`,
    numbering on from any images already there (nothing is overwritten). Training mixes these
    people in with `own_faces=<out_root>`.

    Args:
        source: camera index, video path or stream URL (see `siamese.io.video.parse_source`).
        person: a name (`siamese.io.names.check_name`; it becomes a folder name).
        out_root: folder holding one sub-folder per person.
        count: stop after this many kept faces.
        every_s: at most one frame per this many seconds (consecutive frames are near copies).
        size, padding: the crop (see `siamese.faces.align`); min_size, min_frontal: see `clear_face`.

    Returns:
        {"kept", "frames", "skipped_<reason>" for each of `SKIPS`, "dir"}.
    """
    from tqdm import tqdm

    person = check_name(person)
    folder = Path(out_root) / person  # made by the first kept face: a source that fails leaves nothing
    taken = [int(m.group(1)) for p in folder.glob("*.jpg")
             if (m := re.fullmatch(rf"{re.escape(person)}_(\d+)\.jpg", p.name))]
    next_no = first = max(taken, default=0) + 1
    stats: Counter = Counter()
    frames = sources(source, every_s, stats)
    with tqdm(total=count, desc=f"collect {person}", unit="face", disable=not progress) as bar:
        for cap in captures(frames, detector, count=count, min_size=min_size,
                            min_frontal=min_frontal, stats=stats):
            write_image(folder / f"{person}_{next_no:04d}.jpg", align(cap.image, cap.face.landmarks, size, padding))
            next_no += 1
            bar.update()
    result = {"kept": next_no - first, "frames": stats["seen"],
              **{f"skipped_{k}": stats[k] for k in SKIPS},
              "dir": str(folder)}
    log.info("collect %s: %s", person, result)
    return result


def read_face_folders(root: str | os.PathLike, size: int) -> tuple[np.ndarray, list[str]]:
    """Aligned crops saved by `collect` (`root/<person>/*.jpg`), resized to `size`.

    Returns:
        ((N, size, size, 3) uint8 RGB, N person names). Unreadable files are skipped with a
        log line. A missing root raises FileNotFoundError naming it.
    """
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
        names.append(check_name(path.relative_to(root).parts[0]))
    return (np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)), names
