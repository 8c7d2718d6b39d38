"""Clustering unit embeddings into people: `cluster_embeddings` runs any of `ALGORITHMS`. No
TensorFlow. (Scores that judge a clustering: `siamese.clustering.scores`.)

No algorithm holds an n x n matrix: `siamese.clustering.neighbours.knn` finds each face's k nearest
neighbours by cosine in row chunks and everything runs on that sparse graph. `agglomerative`
(the default, `siamese.clustering.linkage`; average linkage on cosine, its thresholds fitted by
`siamese calibrate` on held-out people) keeps running group sums; the graph algorithms here
(`chinese_whispers`, `components`) keep the kNN pairs the model's head scores at or above its
threshold (`edges`); `dbscan` cuts a cosine radius. `average` is classic average linkage, the same
loop as agglomerative with one bar for every group size: on held-out validation people it groups
many people with a few photos each better and big groups worse (docs/benchmarks.md). A new
algorithm goes here, named in ALGORITHMS.

Labels everywhere: (n,) int64, 0..m-1 for the m groups (largest first), -1 for a face that fits
no group (a singleton cluster, or DBSCAN's noise).

`score_fn(a, b) -> (m,)` is any pair scorer on (m, D) embeddings with "higher = more alike" —
`siamese.model.Embedder.score` (the Siamese head's P(same)) or `cosine`.
"""

from __future__ import annotations

import numpy as np

from siamese.clustering.linkage import agglomerative
from siamese.clustering.neighbours import ScoreFn, knn, relabel

__all__ = ["ALGORITHMS", "chinese_whispers", "cluster_embeddings", "connected_components", "dbscan", "edges",
           "split_conflicts"]


ALGORITHMS = ("agglomerative", "average", "chinese_whispers", "components", "dbscan")


def edges(emb: np.ndarray, score_fn: ScoreFn, threshold: float, k: int = 20,
          neighbours: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The threshold graph, shortlisted: kNN pairs by cosine whose `score_fn` is >= `threshold`.

    Args:
        emb: (n, D) unit embeddings.
        score_fn: pair scorer, see the module docstring.
        threshold: keep an edge when its score is at least this.
        k: neighbours per face in the cosine shortlist.
        neighbours: a precomputed `knn(emb, k)` to reuse.

    Returns:
        (pairs (m, 2) int64 with i < j, each once; scores (m,) float32).
    """
    idx, _ = neighbours if neighbours is not None else knn(emb, k)
    n = len(emb)
    if idx.size == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    a = np.repeat(np.arange(n), idx.shape[1])
    b = idx.ravel()
    pairs = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], 1), axis=0)
    scores = np.empty(len(pairs), np.float32)
    for lo in range(0, len(pairs), 1 << 16):  # gathered rows in chunks: 2 x 32 MB at D = 128
        p = pairs[lo:lo + (1 << 16)]
        scores[lo:lo + len(p)] = np.asarray(score_fn(emb[p[:, 0]], emb[p[:, 1]])).ravel()
    keep = scores >= threshold
    return pairs[keep], scores[keep]


def _csr(n: int, pairs: np.ndarray, weights: np.ndarray):
    from scipy.sparse import coo_matrix

    w = np.concatenate([weights, weights]).astype(np.float64)
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])
    return coo_matrix((w, (i, j)), shape=(n, n)).tocsr()


def connected_components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Groups = connected components of the graph; a face with no edge is -1.

    Simple and exact, but one wrong edge merges two people (chaining), so it needs a model whose
    false-accept rate is tiny at the threshold.
    """
    from scipy.sparse.csgraph import connected_components as cc

    if n == 0:
        return np.zeros(0, np.int64)
    _, labels = cc(_csr(n, pairs, np.ones(len(pairs))), directed=False)
    return relabel(labels)


def chinese_whispers(n: int, pairs: np.ndarray, weights: np.ndarray, iterations: int = 30,
                     seed: int = 0) -> np.ndarray:
    """Chinese whispers (Biemann 2006), as dlib clusters face descriptors.

    Every face starts in its own group; in random order each face takes the group with the
    largest summed edge weight among its neighbours, until nothing changes. Faces are updated in
    batches of n / 64 (each batch vectorised) instead of one by one, so a sweep is 64 numpy
    steps whatever n; within a batch faces see the labels as the batch began. The number of
    groups is found, not given.

    Args:
        n: number of faces; pairs (m, 2) and weights (m,): the graph (see `edges`).
        iterations: at most this many sweeps over all faces.
        seed: the random update order.

    Returns:
        (n,) labels, -1 for faces left alone.
    """
    if n == 0:
        return np.zeros(0, np.int64)
    g = _csr(n, pairs, np.asarray(weights, np.float64))
    indptr, nbr, w = g.indptr, g.indices, g.data
    deg = np.diff(indptr)
    labels = np.arange(n)
    rng = np.random.default_rng(seed)
    active = np.flatnonzero(deg > 0)
    batch = max(1, len(active) // 64)
    for _ in range(iterations):
        changed = 0
        order = rng.permutation(active)
        for lo in range(0, len(order), batch):
            nodes = order[lo:lo + batch]
            counts = deg[nodes]
            owner = np.repeat(np.arange(len(nodes)), counts)
            pos = _ranges(indptr[nodes], counts)
            lab = labels[nbr[pos]]
            # Sum weights per (node, label), then the best label per node.
            key = owner.astype(np.int64) * n + lab
            uk, inv = np.unique(key, return_inverse=True)
            tot = np.bincount(inv, weights=w[pos])
            kn = uk // n
            best = np.lexsort((-tot, kn))  # per node, heaviest label first
            first = best[np.r_[True, kn[best][1:] != kn[best][:-1]]]
            new = uk[first] % n
            who = nodes[kn[first]]
            changed += int((labels[who] != new).sum())
            labels[who] = new
        if changed == 0:
            break
    return relabel(labels)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated aranges [s, s + c) for each (s, c), vectorised."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(counts)
    out = np.ones(total, np.int64)
    nz = counts > 0
    s, e = starts[nz], ends[nz]
    out[0] = s[0]
    out[e[:-1]] = s[1:] - (s[:-1] + counts[nz][:-1] - 1)
    return np.cumsum(out)


def dbscan(emb: np.ndarray, eps: float, min_samples: int = 2, k: int = 20,
           neighbours: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """sklearn's DBSCAN on cosine distance (1 - cosine), over the kNN shortlist.

    Neighbourhoods are cut at k, so no n x n matrix is built; with k >= min_samples this only
    matters for faces with more than k neighbours within `eps`, which are core points anyway.
    Very sensitive to `eps` (it is a cosine radius, not the model's calibrated threshold).

    Returns:
        (n,) labels; noise and singleton groups are -1.
    """
    from scipy.sparse import csr_matrix
    from sklearn.cluster import DBSCAN

    n = len(emb)
    if n == 0:
        return np.zeros(0, np.int64)
    idx, sim = neighbours if neighbours is not None else knn(emb, k)
    dist = np.maximum(1.0 - sim, 0.0).astype(np.float64)
    # Stored zeros would vanish from a sparse matrix: nudge exact duplicates off zero.
    dist[dist == 0] = 1e-12
    indptr = np.arange(n + 1) * idx.shape[1]  # row i holds its k neighbours
    graph = csr_matrix((dist.ravel(), idx.ravel(), indptr), shape=(n, n))
    labels = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(graph)
    return relabel(labels)


def split_conflicts(labels: np.ndarray, emb: np.ndarray, score_fn: ScoreFn, threshold: float,
                    cannot_link: np.ndarray, sample: int = 200, seed: int = 0) -> tuple[np.ndarray, int]:
    """Make a clustering respect "these two are different people" (two faces in one photo or
    one video frame): while a group holds such a pair, evict its least typical member of a pair.

    The evicted face moves to the group it scores best with (score to the group's mean
    embedding >= `threshold`, among the groups of its 20 cosine-nearest faces, none holding a
    face it must differ from), or starts a new group that later evictions may join.

    Args:
        labels: (n,) labels as `cluster_embeddings` returns them.
        emb: (n, D) unit embeddings; score_fn, threshold: as for `cluster_embeddings`.
        cannot_link: (c, 2) index pairs that must end in different groups.
        sample: "least typical" = lowest mean score to at most this many group mates.

    Returns:
        (labels relabelled as `relabel` does, number of evictions).
    """
    labels = np.asarray(labels, np.int64).copy()
    cl = np.asarray(cannot_link, np.int64).reshape(-1, 2)
    if not len(cl) or not len(labels):
        return relabel(labels), 0
    alone = labels < 0  # singletons get their own ids: they can be homes for evicted faces
    nxt = int(labels.max(initial=-1)) + 1
    labels[alone] = nxt + np.arange(alone.sum())
    nxt += int(alone.sum())
    partners: dict[int, set[int]] = {}
    for a, b in cl:
        partners.setdefault(int(a), set()).add(int(b))
        partners.setdefault(int(b), set()).add(int(a))
    rng = np.random.default_rng(seed)
    evictions = 0
    while True:
        bad = cl[labels[cl[:, 0]] == labels[cl[:, 1]]]
        if not len(bad):
            break
        c = labels[bad[0, 0]]
        members = np.flatnonzero(labels == c)
        involved = np.unique(bad[labels[bad[:, 0]] == c].ravel())
        mates = members if len(members) <= sample else rng.choice(members, sample, replace=False)
        a, b = np.repeat(involved, len(mates)), np.tile(mates, len(involved))
        s = np.asarray(score_fn(emb[a], emb[b]), np.float64).ravel() * (a != b)
        typical = np.bincount(np.searchsorted(involved, a), weights=s, minlength=len(involved))
        worst = int(involved[np.argmin(typical)])
        near = np.argsort(-(emb @ emb[worst]))[:21]
        homes = [h for h in np.unique(labels[near]) if h != c and
                 not partners.get(worst, set()).intersection(np.flatnonzero(labels == h).tolist())]
        best = None
        if homes:
            centres = np.stack([emb[labels == h].mean(0) for h in homes])
            centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
            hs = np.asarray(score_fn(np.repeat(emb[worst][None], len(homes), 0), centres)).ravel()
            if hs.max() >= threshold:
                best = homes[int(np.argmax(hs))]
        if best is None:
            best, nxt = nxt, nxt + 1
        labels[worst] = best
        evictions += 1
    return relabel(labels), evictions


def cluster_embeddings(emb: np.ndarray, score_fn: ScoreFn, threshold: float | None,
                       algorithm: str = "agglomerative", k: int = 10, eps: float | None = None,
                       min_samples: int = 2, seed: int = 0, floor: float | None = None,
                       sums: np.ndarray | None = None, counts: np.ndarray | None = None,
                       cannot_link: np.ndarray | None = None,
                       link_threshold: float | None = None) -> np.ndarray:
    """Group (n, D) unit embeddings into people with one of `ALGORITHMS`.

    Args:
        emb: (n, D) float32 unit vectors.
        score_fn: pair scorer (the graph algorithms' edges, and `split_conflicts`).
        threshold: agglomerative: the mean cosine two single faces need to merge (see
            `agglomerative`); average: the mean cosine any two groups need; chinese_whispers /
            components: the `score_fn` score an edge needs; dbscan: unused (None).
        algorithm: "agglomerative" | "average" | "chinese_whispers" | "components" | "dbscan".
        k: cosine shortlist per face.
        eps, min_samples: dbscan only (cosine-distance radius, faces per core point).
        seed: Chinese whispers' update order.
        floor: agglomerative only: the bar for two large groups (None = `threshold`; average
            refuses one). sums, counts: agglomerative and average: items that stand for several
            faces (see `agglomerative`).
        cannot_link: (c, 2) index pairs known to be different people (faces of one photo or
            frame): agglomerative never merges their groups; for the others their edges are
            dropped and `split_conflicts` repairs the result.
        link_threshold: the `score_fn` score `split_conflicts` needs to re-home an evicted face
            (default: `threshold`, right for the score-based algorithms only).

    Returns:
        (n,) int64 labels, 0.. by descending group size, -1 for faces in no group.
    """
    emb = np.asarray(emb, np.float32)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown clustering algorithm {algorithm!r} — choose one of {list(ALGORITHMS)}")
    needs = "eps" if algorithm == "dbscan" else "threshold"
    if (eps if algorithm == "dbscan" else threshold) is None:
        raise ValueError(f"{algorithm} needs {needs} (see siamese.clustering.settings for the model's own)")
    n = len(emb)
    cl = np.zeros((0, 2), np.int64) if cannot_link is None else np.asarray(cannot_link, np.int64).reshape(-1, 2)
    if algorithm == "average" and floor is not None and floor != threshold:
        raise ValueError("average linkage has one bar for every group size: no floor (use agglomerative)")
    if algorithm in ("agglomerative", "average"):  # honour cannot_link themselves
        return agglomerative(emb, threshold, floor if algorithm == "agglomerative" else threshold, k,
                             sums=sums, counts=counts, cannot_link=cl)
    elif algorithm == "dbscan":
        labels = dbscan(emb, eps, min_samples, k)
    else:
        pairs, w = edges(emb, score_fn, threshold, k)
        if len(cl) and len(pairs):
            key = lambda p: np.minimum(p[:, 0], p[:, 1]) * n + np.maximum(p[:, 0], p[:, 1])  # noqa: E731
            keep = ~np.isin(key(pairs), key(cl))
            pairs, w = pairs[keep], w[keep]
        if algorithm == "components":
            labels = connected_components(n, pairs)
        else:
            # Weight = how far past the threshold: an edge that barely passes counts for little.
            # On unseen LFW people (cluster_bench): equal to raw scores at k = 10 (BCubed F1
            # 0.78), better at k = 20 (0.76 vs 0.73-0.75 over two seeds).
            margin = (w - threshold) / max(1.0 - threshold, 1e-6) + 1e-3
            labels = chinese_whispers(n, pairs, margin, seed=seed)
    if not len(cl):
        return labels
    lt = threshold if link_threshold is None else link_threshold
    if lt is None:
        raise ValueError("dbscan with cannot_link needs link_threshold (the score that re-homes an evicted face)")
    return split_conflicts(labels, emb, score_fn, lt, cl, seed=seed)[0]
