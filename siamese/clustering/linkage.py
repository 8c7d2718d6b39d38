"""Agglomerative clustering (the default): average linkage on cosine similarity from running group
sums, no n x n matrix. `agglomerative` is the entry point (see its docstring for the bar and why
it falls with group size); `average_linkage` is the merge loop on a kNN shortlist.
"""

from __future__ import annotations

import heapq

import numpy as np

from siamese.clustering.neighbours import knn, relabel

__all__ = ["agglomerative", "average_linkage"]

_EMPTY: frozenset = frozenset()  # a merged group's links and any group's missing cannot-links


def average_linkage(emb: np.ndarray, threshold: float, floor: float, idx: np.ndarray,
                    sums: np.ndarray | None = None, counts: np.ndarray | None = None,
                    cannot_link: np.ndarray | None = None) -> np.ndarray:
    """Merge groups, the pair furthest past its bar first, until no linked pair clears it.

    Args:
        emb: (n, D) unit vectors, one per item; threshold, floor: the bar (floor <= threshold).
        idx: (n, k) each item's candidate neighbours (`siamese.clustering.neighbours.knn`); only groups linked
            by such an edge, or joined through a merge, are compared.
        sums, counts, cannot_link: as for `agglomerative`.

    Returns:
        (n,) int64: for each item, the index of one item of its group (the group's root).
    """
    n = len(emb)
    a = np.repeat(np.arange(n), idx.shape[1])
    b = idx.ravel()
    pairs = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], 1), axis=0)
    del a, b
    # Group sums in float64: a face's own row until its group first grows (then a row of `grown`), so
    # a million faces do not hold a second, float64 copy of every embedding.
    base = emb if sums is None else np.asarray(sums, np.float64)
    slot, grown, used = np.full(n, -1, np.int64), np.zeros((1024, base.shape[1])), 0
    faces = np.ones(n) if counts is None else np.asarray(counts, np.float64).copy()
    items = np.ones(n)
    # Memory at a million faces is Python objects: a set of linked groups per face, cannot-link sets only
    # for the faces that have any, one shared empty set for merged groups, and heap entries keyed by one
    # int per pair (i * n + m orders exactly as (i, m) did).
    adj: list = [set() for _ in range(n)]
    ints = list(range(n))  # one int object per face, shared by every set it is in
    for i, j in pairs.tolist():
        adj[i].add(ints[j])
        adj[j].add(ints[i])
    del pairs, ints
    apart: dict[int, set[int]] = {}
    for i, j in np.asarray(cannot_link if cannot_link is not None else [], np.int64).reshape(-1, 2).tolist():
        apart.setdefault(i, set()).add(j)
        apart.setdefault(j, set()).add(i)
    version, parent = np.zeros(n, np.int64), np.arange(n)

    def group_sums(rows) -> np.ndarray:
        out = base[rows].astype(np.float64)
        s = slot[rows]
        if np.ndim(rows) == 0:
            return grown[s] if s >= 0 else out
        if (m := s >= 0).any():
            out[m] = grown[s[m]]
        return out

    def past_bar(i: int, others: np.ndarray) -> np.ndarray:
        """Mean face similarity of group i to each of `others`, minus their bar."""
        sim = (group_sums(others) @ group_sums(i)) / (faces[others] * faces[i])
        return sim - (floor + (threshold - floor) / np.sqrt(items[others] * items[i]))

    heap = []  # (-(similarity - bar), i * n + m, their versions when pushed)
    for i in range(n):
        away = apart.get(i, _EMPTY)
        nb = np.array([m for m in adj[i] if m > i and m not in away], np.int64)
        if len(nb):
            p = past_bar(i, nb)
            heap += [(-v, i * n + m, 0, 0) for m, v in zip(nb[p >= 0].tolist(), p[p >= 0].tolist())]
    heapq.heapify(heap)
    while heap:
        _, key, vi, vj = heapq.heappop(heap)
        i, j = divmod(key, n)
        if version[i] != vi or version[j] != vj or parent[i] != i or parent[j] != j:
            continue  # stale: one of the two has merged since
        if len(adj[i]) < len(adj[j]):
            i, j = j, i  # fold the group with fewer links into the other
        if slot[i] < 0:
            if used == len(grown):
                grown = np.concatenate([grown, np.zeros_like(grown)])
            grown[used], slot[i], used = base[i], used, used + 1
        grown[slot[i]] += group_sums(j)
        faces[i] += faces[j]
        items[i] += items[j]
        parent[j] = i
        version[i] += 1
        for m in adj[j]:
            adj[m].discard(j)
            if m != i:
                adj[m].add(i)
                adj[i].add(m)
        adj[i].discard(j)
        adj[j] = _EMPTY
        if j in apart:
            for m in apart[j]:
                apart[m].discard(j)
                apart[m].add(i)
            apart.setdefault(i, set()).update(apart.pop(j))
        away = apart.get(i, _EMPTY)
        nb = np.array([m for m in adj[i] if m not in away], np.int64)
        if len(nb):
            p = past_bar(i, nb)
            for m, v in zip(nb[p >= 0].tolist(), p[p >= 0].tolist()):
                heapq.heappush(heap, (-v, i * n + m, int(version[i]), int(version[m])))
    root = parent
    while (root[root] != root).any():
        root = root[root]
    return root


def agglomerative(emb: np.ndarray, threshold: float, floor: float | None = None, k: int = 10,
                  neighbours: tuple[np.ndarray, np.ndarray] | None = None,
                  sums: np.ndarray | None = None, counts: np.ndarray | None = None,
                  cannot_link: np.ndarray | None = None) -> np.ndarray:
    """Average-linkage agglomerative clustering on cosine similarity, without an n x n matrix.

    Two groups of a and b items merge while the mean cosine similarity over their cross pairs
    of faces is at least

        bar(a, b) = floor + (threshold - floor) / sqrt(a * b),

    the pair furthest past its bar first. For unit vectors that mean is the dot product of the
    two groups' summed face vectors over their face counts, so each group keeps a running sum
    and a merge costs O(D). The bar falls with size because a mean over more independent pairs
    scatters less: two single faces need `threshold`, two big groups only `floor` (floor =
    threshold: classic average linkage). Only groups linked by a kNN edge (or joined through a
    merge) are compared; on unseen LFW people k = 10 gave the same BCubed F1 as sklearn's
    full-matrix average linkage (to 0.002).

    Args:
        emb: (n, D) unit vectors, one per item (a face, or a video track).
        threshold: the mean cosine two single items need to merge.
        floor: the bar for two large groups; None = `threshold`.
        k: kNN shortlist that decides which groups may meet.
        neighbours: a precomputed `knn(emb, k)` to reuse.
        sums, counts: items that stand for several faces (a track: one appearance): (n, D) sums
            of their faces' unit embeddings and (n,) face counts. Similarities are then means
            over faces (the scale the thresholds were fitted on) while the bar counts items,
            since the faces of one appearance are near-copies. None: each item is one face.
        cannot_link: (c, 2) item pairs that are different people (two faces of one photo):
            groups holding such a pair never merge.

    Returns:
        (n,) labels, -1 for items left alone.
    """
    emb = np.asarray(emb, np.float32)
    n = len(emb)
    if n < 2:
        return np.full(n, -1, np.int64)
    idx, _ = neighbours if neighbours is not None else knn(emb, k)
    floor = threshold if floor is None else min(floor, threshold)
    return relabel(average_linkage(emb, threshold, floor, idx, sums, counts, cannot_link))
