"""Harder copies of LFW photos: what unconstrained photos vary by and news photos rarely do.

LFW's faces are large, sharp, frontal press photos; a thresholds calibrated on them can let far
more strangers through on ordinary photos. `degrade` makes, deterministically from a seed, one
of five harder versions of a photo and moves its face's landmarks and box with it:

    small   the whole photo shrunk so the face is ~40 px wide (then aligned up to the model's size)
    jpeg    re-encoded at JPEG quality 30
    blur    Gaussian blur, sigma 2.5 px at LFW's scale
    grey    greyscale
    light   strong lighting: gamma 0.4 or 2.5 and halved contrast

Used to measure calibrated thresholds on harder photos (`siamese.eval.degraded`) and to draw
harder impostors for calibration. NumPy and OpenCV only.
"""

from __future__ import annotations

import cv2
import numpy as np

from siamese.faces.detect import Face

__all__ = ["KINDS", "degrade"]

KINDS = ("small", "jpeg", "blur", "grey", "light")
SMALL_FACE = 40.0  # px: the face box width after "small"


def degrade(image: np.ndarray, face: Face, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, Face]:
    """A harder copy of `image` and its `face` moved with it.

    Args:
        image: (H, W, 3) uint8 RGB photo.
        face: the face in it (box and landmarks in its pixels).
        kind: one of `KINDS`.
        rng: draws the variant (e.g. dark or bright light) — seed it per image for a fixed set.

    Returns:
        ((H', W', 3) uint8 RGB, the face in its pixels).
    """
    if kind == "small":
        f = min(1.0, SMALL_FACE / max(float(face.box[2]), 1.0))
        h, w = image.shape[:2]
        small = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        return small, face.scaled(f)
    if kind == "jpeg":
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 30])
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), face
    if kind == "blur":
        return cv2.GaussianBlur(image, (0, 0), 2.5), face
    if kind == "grey":
        return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB), face
    if kind == "light":
        gamma = 0.4 if rng.random() < 0.5 else 2.5
        x = (image.astype(np.float32) / 255.0) ** gamma
        x = 0.5 * (x - x.mean()) + x.mean()  # halved contrast
        return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8), face
    raise ValueError(f"unknown degradation {kind!r}; choose one of {KINDS}")
