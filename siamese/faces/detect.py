"""Detect faces: `Face` records (box, five landmarks, score) in the pixels of the image given.

Everything here takes RGB uint8 images (the package convention; OpenCV's BGR is converted at
the I/O boundary in `siamese.io`). Alignment of a detected face is `siamese.faces.align`.

Detectors are pluggable by config (`conf/detector/*.yaml`):

- `YuNetDetector` (default): libfacedetection's CNN from the `yuface` wheel, weights compiled in.
  Five landmarks. Measured here: finds the central face in 100 % of a 3,000-image LFW sample at
  ~14 ms CPU per 250x250 image (shared/notes/detectors.md); 2.5 ms in-process on one core.
- `HaarDetector`: OpenCV's frontal Haar cascade (ships with opencv-python < 5). No landmarks, so
  they are placed from the box with the mean geometry of the template; alignment is coarser.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

__all__ = ["Detector", "Face", "HaarDetector", "YuNetDetector", "box_iou", "central_face", "frontalness"]


# Where the five landmarks sit inside an OpenCV Haar box, as fractions of its width/height:
# medians of YuNet's landmarks relative to Haar's box on 396 random LFW images (seed 0).
HAAR_BOX_LANDMARKS = np.array(
    [[0.3097, 0.3894], [0.6904, 0.3871], [0.5041, 0.6026], [0.3491, 0.7679], [0.6696, 0.7642]],
    dtype=np.float32,
)


@dataclass(frozen=True)
class Face:
    """One detected face.

    Attributes:
        box: (4,) float32 `x, y, w, h` in pixels of the source image.
        landmarks: (5, 2) float32 `(x, y)` pixels: left eye, right eye, nose, left and right
            mouth corners (left/right as seen in the image).
        score: detector confidence in [0, 1].
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    @property
    def center(self) -> np.ndarray:
        """(2,) float32 centre of the box in pixels."""
        x, y, w, h = self.box
        return np.array([x + w / 2, y + h / 2], dtype=np.float32)

    def scaled(self, factor: float) -> "Face":
        """The same face with coordinates multiplied by `factor` (to undo a detection resize)."""
        return Face(self.box * factor, self.landmarks * factor, self.score)


class Detector(Protocol):
    """Anything with `detect(rgb) -> list[Face]`, sorted by descending score."""

    def detect(self, image: np.ndarray) -> list[Face]: ...


def _downscale(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Shrink so the long side is at most `max_side`; returns the image and the factor back."""
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image, 1.0
    f = max_side / max(h, w)
    small = cv2.resize(image, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    return small, 1.0 / f


class YuNetDetector:
    """libfacedetection CNN (the `yuface` wheel): boxes, five landmarks and a score.

    Args:
        min_score: keep faces scoring at least this (0..1). 0.5 is the library's default.
        max_side: detect on a copy whose long side is at most this many pixels, then map the
            results back. The CNN is trained on faces of 10-250 px and slows with area, so
            big photos are both faster and no worse when shrunk to ~640-960 px.
        min_size: drop faces whose box is smaller than this many pixels (source image scale).
    """

    name = "yunet"

    def __init__(self, min_score: float = 0.5, max_side: int | None = 960, min_size: int = 0):
        # Imported here so that code which never detects does not load the native library.
        # libfacedetection parallelises with OpenMP, whose threads spin-wait: on a busy 2-core
        # machine two threads ran 15x slower than one (185 vs 11 ms per LFW photo), while on an
        # idle one they gain little (3.7 vs 5.7 ms). OpenMP reads this once, when yuface first
        # loads libgomp; numpy's BLAS, loaded earlier, is unaffected. Set it yourself to override.
        if "yuface" not in sys.modules:
            os.environ.setdefault("OMP_NUM_THREADS", "1")
        from yuface import c_detect

        self._detect = c_detect
        self.min_score = float(min_score)
        self.max_side = max_side
        self.min_size = min_size

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in `image` ((H, W, 3) uint8 RGB), best first."""
        small, back = _downscale(image, self.max_side)
        bgr = np.ascontiguousarray(small[..., ::-1])
        # Rows: score*100, x, y, w, h, 5 x (x, y), and one unused column; int16.
        raw = self._detect(bgr)
        faces = []
        for row in raw:
            score = float(row[0]) / 100.0
            if score < self.min_score:
                continue
            box = row[1:5].astype(np.float32)
            lms = row[5:15].astype(np.float32).reshape(5, 2)
            face = Face(box, lms, score).scaled(back) if back != 1.0 else Face(box, lms, score)
            if min(face.box[2], face.box[3]) >= self.min_size:
                faces.append(face)
        faces.sort(key=lambda f: -f.score)
        return faces


class HaarDetector:
    """OpenCV's frontal-face Haar cascade, with landmarks placed from the box.

    Haar gives no landmarks and no calibrated score, so each face gets the template's
    landmarks scaled into its box and a score of 1.0. Use it as a fallback or a baseline.
    """

    name = "haar"

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 30,
                 max_side: int | None = 960):
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"{path}: Haar cascade missing — install opencv-python-headless<5")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.max_side = max_side

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in `image` ((H, W, 3) uint8 RGB), largest first."""
        small, back = _downscale(image, self.max_side)
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        min_px = max(1, round(self.min_size / back))
        boxes = self._cascade.detectMultiScale(grey, self.scale_factor, self.min_neighbors,
                                               minSize=(min_px, min_px))
        faces = [Face(np.array([x, y, w, h], np.float32),
                      (np.array([x, y], np.float32) + HAAR_BOX_LANDMARKS * [w, h]).astype(np.float32),
                      1.0)
                 for x, y, w, h in (boxes if len(boxes) else [])]
        faces = [f.scaled(back) for f in faces]
        faces.sort(key=lambda f: -f.box[2] * f.box[3])
        return faces


def central_face(faces: list[Face], shape: tuple[int, ...]) -> Face | None:
    """The face an LFW-style photo is about: the one whose box holds the image centre.

    Among boxes containing the centre, the one whose centre is nearest wins (ties: larger);
    returns None when no box contains the centre.

    Args:
        faces: detections in the image.
        shape: the image's shape, (H, W, ...).
    """
    h, w = shape[:2]
    c = np.array([w / 2, h / 2], np.float32)
    inside = [f for f in faces
              if f.box[0] <= c[0] <= f.box[0] + f.box[2] and f.box[1] <= c[1] <= f.box[1] + f.box[3]]
    if not inside:
        return None
    return min(inside, key=lambda f: (float(np.linalg.norm(f.center - c)), -f.box[2] * f.box[3]))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes.

    Args:
        a: (n, 4) boxes `x, y, w, h`; b: (m, 4) boxes.

    Returns:
        (n, m) float32 in [0, 1].
    """
    a, b = np.asarray(a, np.float32).reshape(-1, 4), np.asarray(b, np.float32).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y2 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return (inter / np.maximum(union, 1e-6)).astype(np.float32)


def frontalness(face: Face) -> float:
    """How frontal a face looks, from its landmarks: 1.0 frontal, 0.0 full profile.

    The nose tip sits midway between the eyes in a frontal view and slides towards (and past)
    one eye as the head turns, so 1 - |nose offset| / (half the eye distance), clipped to [0, 1].
    Roughly: 0.8+ near-frontal, 0.5 about 30 degrees of yaw, below 0.3 a profile.
    """
    le, re_, nose = face.landmarks[0], face.landmarks[1], face.landmarks[2]
    half = max(float(np.linalg.norm(re_ - le)) / 2, 1e-6)
    offset = abs(float(nose[0] - (le[0] + re_[0]) / 2))
    return float(np.clip(1.0 - offset / half, 0.0, 1.0))


