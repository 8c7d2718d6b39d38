"""Detect faces and align them to a canonical crop.

Everything here takes and returns RGB uint8 images (the package convention; OpenCV's BGR is
converted at the I/O boundary in `siamese.images`). A detector returns `Face` records in the
pixel coordinates of the image it was given; `align` maps a face's five landmarks onto a fixed
template with a similarity transform (rotation + uniform scale + shift, no shear), so every
crop has the eyes, nose and mouth corners in the same place.

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

# ArcFace's five-point template for a 112x112 crop (insightface), in (x, y) pixels:
# left eye, right eye, nose tip, left mouth corner, right mouth corner ("left" = image left).
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


# Where the five landmarks sit inside an OpenCV Haar box, as fractions of its width/height:
# medians of YuNet's landmarks relative to Haar's box on 396 random LFW images (seed 0).
HAAR_BOX_LANDMARKS = np.array(
    [[0.3097, 0.3894], [0.6904, 0.3871], [0.5041, 0.6026], [0.3491, 0.7679], [0.6696, 0.7642]],
    dtype=np.float32,
)

# Median YuNet landmarks of the central face on 400 random LFW images (250x250, seed 0): where
# the LFW cache puts the face when no detector finds it (LFW photos are centred on the face).
LFW_MEDIAN_LANDMARKS = np.array(
    [[104.0, 112.0], [147.0, 112.0], [126.0, 137.0], [108.0, 156.0], [145.0, 155.0]],
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


def template(size: int = 112, padding: float = 0.0) -> np.ndarray:
    """The five-point target for a `size` x `size` crop.

    Args:
        size: crop side in pixels.
        padding: extra context around the ArcFace framing, as a fraction of the crop on each
            side (0.0 = ArcFace framing; 0.1 shrinks the face so 10 % more border shows).

    Returns:
        (5, 2) float32 pixel coordinates in the crop.
    """
    unit = ARCFACE_TEMPLATE_112 / 112.0
    unit = (unit - 0.5) / (1.0 + 2.0 * padding) + 0.5
    return (unit * size).astype(np.float32)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform taking `src` points onto `dst` (Umeyama, 1991).

    Args:
        src: (n, 2) points.
        dst: (n, 2) points.

    Returns:
        (2, 3) float64 affine matrix for `cv2.warpAffine`.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # forbid reflections
        sign[1, 1] = -1
    rot = u @ sign @ vt
    var_s = (s**2).sum() / len(src)
    scale = np.trace(np.diag(sig) @ sign) / var_s if var_s > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def align(image: np.ndarray, landmarks: np.ndarray, size: int = 112,
          padding: float = 0.0) -> np.ndarray:
    """Warp a face to the canonical crop.

    Args:
        image: (H, W, 3) uint8 RGB source.
        landmarks: (5, 2) pixel landmarks in `image` (see `Face.landmarks`).
        size: output side in pixels.
        padding: see `template`.

    Returns:
        (size, size, 3) uint8 RGB crop. Pixels outside the source replicate its border, so a
        face at the edge of a photo still yields a usable crop.
    """
    m = similarity_transform(landmarks, template(size, padding))
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def resize_faces(images: np.ndarray, size: int) -> np.ndarray:
    """Aligned crops to another size: (N, S, S, 3) uint8 -> (N, size, size, 3) uint8.

    Area interpolation when shrinking (no aliasing), linear when enlarging.
    """
    if images.shape[1] == size:
        return np.ascontiguousarray(images)
    interp = cv2.INTER_AREA if size < images.shape[1] else cv2.INTER_LINEAR
    out = np.empty((len(images), size, size, 3), np.uint8)
    for i, im in enumerate(images):
        out[i] = cv2.resize(im, (size, size), interpolation=interp)
    return out


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


def make_detector(name: str = "yunet", **kwargs) -> Detector:
    """Build a detector by name ("yunet" or "haar") — for code that does not use Hydra."""
    kinds = {"yunet": YuNetDetector, "haar": HaarDetector}
    if name not in kinds:
        raise ValueError(f"unknown detector {name!r}; choose one of {sorted(kinds)}")
    return kinds[name](**kwargs)
