"""What every clustering algorithm starts from: cosine kNN in row chunks (no n x n matrix), and the
one labelling convention (`relabel`: 0.. by descending group size, -1 for no group)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["EXACT_MAX", "ScoreFn", "cosine", "knn", "knn_approx", "relabel"]

# Above this many rows `knn` is approximate (`knn_approx`): exact kNN costs n^2 D (100k faces: ~30 s
# on 2 cores, 1M: ~50 min), the inverted file about n sqrt(n) D probe / sqrt(n).
EXACT_MAX = 200_000

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
        n <= 1 gives (n, 0) arrays. Over `EXACT_MAX` rows: `knn_approx`.
    """
    emb = np.ascontiguousarray(emb, np.float32)
    n = len(emb)
    if n > EXACT_MAX:
        return knn_approx(emb, k)
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


def _top(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of each row's k largest, sorted descending."""
    part = np.argpartition(s, -k, axis=1)[:, -k:]
    ps = np.take_along_axis(s, part, 1)
    order = np.argsort(-ps, axis=1, kind="stable")
    return np.take_along_axis(part, order, 1), np.take_along_axis(ps, order, 1)


def knn_approx(emb: np.ndarray, k: int = 20, cells: int | None = None, probe: int = 8, seed: int = 0,
               rows: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """`knn` approximately, for millions of rows: an inverted file (as FAISS's IVF-Flat).

    Spherical k-means (5 rounds on a sample of 40 rows per cell) cuts the rows into `cells` cells
    (default sqrt(n)); each row is compared with every row of the `probe` cells whose centres are
    nearest to it. A face's neighbours are people like
    it, so they sit in its cell or the next ones; on planted clusters of 100,000 rows, probe 8 found
    the same clustering as exact kNN (docs/scale.md). Memory: the rows once more (sorted by cell)
    and one block of `rows` x (probe x cell size) similarities.

    Returns:
        As `knn`: (idx (n, k) int64, sim (n, k) float32), rows sorted by descending similarity.
    """
    emb = np.ascontiguousarray(emb, np.float32)
    n = len(emb)
    k = int(min(k, n - 1)) if n > 1 else 0
    idx, sim = np.full((n, k), -1, np.int64), np.full((n, k), -np.inf, np.float32)
    if k == 0:
        return idx, sim
    rng = np.random.default_rng(seed)
    c = int(cells or max(1, round(np.sqrt(n))))
    sample = emb[np.sort(rng.choice(n, min(n, 40 * c), replace=False))]
    centres = sample[rng.choice(len(sample), c, replace=False)].copy()

    def nearest(x: np.ndarray) -> np.ndarray:
        return np.concatenate([np.argmax(x[i:i + 8192] @ centres.T, 1) for i in range(0, len(x), 8192)])

    for _ in range(5):
        a = nearest(sample)
        sums = np.zeros_like(centres)
        np.add.at(sums, a, sample)
        norm = np.linalg.norm(sums, axis=1, keepdims=True)
        centres = np.where(norm > 0, sums / np.maximum(norm, 1e-12), centres)  # an empty cell keeps its centre
    cell = nearest(emb)
    # Each row is a query of the `probe` cells nearest to it (not to its cell's centre: that found half
    # as many of the true neighbours); each cell is compared with all its queries at once.
    qcells = np.concatenate([_top(emb[i:i + 8192] @ centres.T, min(probe, c))[0] for i in range(0, n, 8192)])
    members = np.argsort(cell, kind="stable")
    mstart = np.searchsorted(cell[members], np.arange(c + 1))
    flat = qcells.ravel()
    queries = np.argsort(flat, kind="stable")
    qstart = np.searchsorted(flat[queries], np.arange(c + 1))
    for j in range(c):
        cand = members[mstart[j]:mstart[j + 1]]
        qs = queries[qstart[j]:qstart[j + 1]] // qcells.shape[1]
        if not len(cand) or not len(qs):
            continue
        block = emb[cand]
        for lo in range(0, len(qs), rows):
            q = qs[lo:lo + rows]
            s = emb[q] @ block.T
            s[q[:, None] == cand[None, :]] = -np.inf  # not your own neighbour
            both_i = np.concatenate([idx[q], np.broadcast_to(cand, s.shape)], 1)
            both_s = np.concatenate([sim[q], s], 1)
            top, val = _top(both_s, k)
            idx[q], sim[q] = np.take_along_axis(both_i, top, 1), val
    missing = idx < 0  # a row whose probed cells held fewer than k others: repeat its best
    if missing.any():
        idx = np.where(missing, idx[:, :1], idx)
        sim = np.where(missing, sim[:, :1], sim)
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
