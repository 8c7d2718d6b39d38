"""What a model takes, and the one flip test-time augmentation. NumPy only.

Faces reach a model as (N, S, S, 3) uint8 RGB crops aligned as its model.json says (template,
the cache's size and padding, then resized to its input size S); `to_input` is the one step from
uint8 to the network's float32 in [0, 1]; `flip_embed` is the one place where a face's embedding
is averaged with its mirror's, for any network (ONNX, Keras, a Keras model mid-training).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["flip_embed", "normalise", "to_input"]


def to_input(images) -> np.ndarray:
    """The one conversion into the model: (N, S, S, 3) uint8 RGB -> float32 in [0, 1]."""
    return np.asarray(images, dtype=np.float32) / 255.0


def normalise(e: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); zero rows stay zero."""
    e = np.asarray(e, np.float32)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def flip_embed(network: Callable[[np.ndarray], np.ndarray], images: np.ndarray, dim: int,
               flip: bool = True, batch_size: int = 256) -> np.ndarray:
    """Unit embeddings of aligned faces, each averaged with its mirror image's.

    A face and its mirror are the same person, and summing the two embeddings cancels pose and
    lighting noise. Each batch makes one call on faces + mirrors (half the per-call overhead).

    Args:
        network: float32 (B, S, S, 3) in [0, 1] -> (B, D) embeddings.
        images: (N, S, S, 3) uint8 RGB aligned crops at the network's input size.
        dim: D, for the shape of an empty result.
        flip: False embeds the faces alone.
        batch_size: faces per call.

    Returns:
        (N, D) float32 unit vectors ((0, D) for N = 0).
    """
    out = np.empty((len(images), dim), np.float32)
    for i in range(0, len(images), batch_size):
        x = to_input(images[i:i + batch_size])
        n = len(x)
        e = np.asarray(network(np.concatenate([x, x[:, :, ::-1]]) if flip else x), np.float32)
        out[i:i + n] = e[:n] + e[n:] if flip else e
    return normalise(out)
