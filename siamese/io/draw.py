"""Boxes and labels drawn on images, sized to the image and kept inside it (annotated photos,
verify.mp4). OpenCV only; works on RGB or BGR arrays alike (the colour is given in the same order)."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["box_with_label", "scale_for"]

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def scale_for(image: np.ndarray) -> tuple[float, int]:
    """(font scale, line thickness) for text readable on `image`: ~1/60 of its shorter side tall."""
    short = min(image.shape[:2])
    return max(0.35, short / 900), max(1, round(short / 400))


def box_with_label(image: np.ndarray, box, text: str, colour: tuple[int, int, int]) -> np.ndarray:
    """Draw `box` (x, y, w, h px) and `text` on a filled strip above it (below it when the box
    touches the top), clipped to stay inside the image. Draws in place; returns `image`."""
    h_img, w_img = image.shape[:2]
    scale, thick = scale_for(image)
    x, y, w, h = (int(round(v)) for v in box)
    cv2.rectangle(image, (x, y), (x + w, y + h), colour, thick)
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
    pad = max(2, thick)
    tx = int(np.clip(x, 0, max(0, w_img - tw - 2 * pad)))
    ty = y - pad - base if y - th - 2 * pad - base >= 0 else min(y + h + th + pad, h_img - base - pad)
    ty = int(np.clip(ty, th + pad, h_img - base - 1))
    cv2.rectangle(image, (tx, ty - th - pad), (tx + tw + 2 * pad, ty + base), colour, -1)
    cv2.putText(image, text, (tx + pad, ty), _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return image
