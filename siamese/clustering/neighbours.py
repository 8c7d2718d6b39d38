"""What every clustering algorithm starts from: cosine kNN in row chunks (no n x n matrix), and the
one labelling convention (`relabel`: 0.. by descending group size, -1 for no group)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["ScoreFn", "cosine", "knn", "relabel"]

ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(m,) float32 cosine similarity of paired rows of two (m, D) unit-vector arrays."""
    return np.einsum("ij,ij->i", a, b).astype(np.float32)


def knn(emb: np.ndarray, k: int = 20, chunk_bytes: int = 1 << 25) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k most cosine-similar other rows, computed in chunks (no n x n matrix).

    Args:
        emb: (n, D) float32 unit vectors.
        k: neighbours per row (clipped to n - 1).
        chunk_bytes: memory for one chunk of similarities (rows x n float32); 32 MiB default
            (the chunk's partition indices take twice that again).

    Returns:
        (idx (n, k) int64, sim (n, k) float32), each row sorted by descending similarity.
        n <= 1 gives (n, 0) arrays.
    """
    emb = np.ascontiguousarray(emb, np.float32)
    n = len(emb)
    k = int(min(k, n - 1)) if n > 1 else 0
    idx, sim = np.zeros((n, k), np.int64), np.zeros((n, k), np.float32)
    if k == 0:
        return idx, sim
    rows = max(1, min(n, chunk_bytes // (4 * n)))
    for lo in range(0, n, rows):
        s = emb[lo:lo + rows] @ emb.T  # (rows, n)
        s[np.arange(len(s)), np.arange(lo, lo + len(s))] = -np.inf  # not your own neighbour
        part = np.argpartition(s, -k, axis=1)[:, -k:]  # the k largest, in no order
        ps = np.take_along_axis(s, part, 1)
        order = np.argsort(-ps, axis=1, kind="stable")
        idx[lo:lo + len(s)] = np.take_along_axis(part, order, 1)
        sim[lo:lo + len(s)] = np.take_along_axis(ps, order, 1)
    return idx, sim


def relabel(labels: np.ndarray, min_size: int = 2) -> np.ndarray:
    """Renumber groups 0.. by descending size (ties: first member); groups under `min_size`
    (and any negative label) become -1."""
    labels = np.asarray(labels, np.int64)
    out = np.full(len(labels), -1, np.int64)
    valid = labels >= 0
    if not valid.any():
        return out
    uniq, first, counts = np.unique(labels[valid], return_index=True, return_counts=True)
    order = sorted(range(len(uniq)), key=lambda g: (-counts[g], first[g]))
    new = np.full(len(uniq), -1, np.int64)
    m = 0
    for g in order:
        if counts[g] >= min_size:
            new[g], m = m, m + 1
    out[valid] = new[np.searchsorted(uniq, labels[valid])]
    return out
