"""Align a face to a canonical crop: a similarity transform (rotation + uniform scale + shift,
no shear) maps its five landmarks onto ArcFace's template, so every crop has the eyes, nose and
mouth corners in the same place. Takes and returns RGB uint8 images.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["ARCFACE_TEMPLATE_112", "LFW_MEDIAN_LANDMARKS", "align", "face_inside", "resize_faces", "sharpness",
           "similarity_transform", "template"]

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


# Median YuNet landmarks of the central face on 400 random LFW images (250x250, seed 0): where
# the LFW cache puts the face when no detector finds it (LFW photos are centred on the face).
LFW_MEDIAN_LANDMARKS = np.array(
    [[104.0, 112.0], [147.0, 112.0], [126.0, 137.0], [108.0, 156.0], [145.0, 155.0]],
    dtype=np.float32,
)


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


def face_inside(face, shape: tuple, padding: float = 0.0, grid: int = 32) -> float:
    """How much of a face lies inside its image: the smaller of its box's share and its aligned
    crop's (`align` at `padding`; the part of a crop outside the image is replicated edge pixels).

    Both are needed: YuNet clips its boxes to the frame, so a face cut by the border often has a
    box fully inside while its crop is smeared; a box reaching out is caught even if its crop is not.

    Args:
        face: a `siamese.faces.Face` (box `x, y, w, h` and (5, 2) landmarks, in image pixels).
        shape: the image's shape, (H, W, ...).
        padding: the crop's, see `template`. grid: crop pixels sampled per side.

    Returns:
        A share in [0, 1]: 1.0 = the box and the whole crop are inside the image.
    """
    h, w = shape[:2]
    x, y, bw, bh = (float(v) for v in face.box)
    box = max(0.0, min(x + bw, w) - max(x, 0.0)) * max(0.0, min(y + bh, h) - max(y, 0.0)) / max(bw * bh, 1e-9)
    inv = cv2.invertAffineTransform(similarity_transform(face.landmarks, template(112, padding)))
    t = (np.arange(grid) + 0.5) * 112 / grid  # crop pixel centres, mapped back into the image
    u, v = np.meshgrid(t, t)
    src = inv @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    crop = float(np.mean((src[0] >= 0) & (src[0] <= w - 1) & (src[1] >= 0) & (src[1] <= h - 1)))
    return min(box, crop)


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


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of a (S, S, 3) uint8 RGB crop: higher = sharper (no unit)."""
    return float(cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())
