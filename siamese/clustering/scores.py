"""Scores that judge a clustering against true labels: pairwise and BCubed precision / recall /
F1, NMI. No TensorFlow.

`truth` is any per-face person id, `pred` the groups as `siamese.clustering.graph` returns them
(-1 = a face in no group, counted as its own singleton).
"""

from __future__ import annotations

import numpy as np

__all__ = ["bcubed_interval", "bcubed_scores", "clustering_scores", "nmi", "pairwise_scores"]


def _contingency(truth, pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse (class, cluster) counts as (class ids, cluster ids, counts), no zeros; every
    predicted -1 counts as its own singleton cluster."""
    truth = np.unique(np.asarray(truth), return_inverse=True)[1].ravel()
    pred = np.asarray(pred, np.int64).ravel().copy()
    if len(truth) != len(pred):
        raise ValueError(f"{len(truth)} true labels but {len(pred)} predicted")
    alone = pred < 0
    pred[alone] = pred.max(initial=-1) + 1 + np.arange(alone.sum())
    cells, counts = np.unique(np.stack([truth, pred], 1), axis=0, return_counts=True)
    return cells[:, 0], cells[:, 1], counts.astype(np.int64)


def _pairs(counts: np.ndarray) -> float:
    return float((counts * (counts - 1) // 2).sum())


def _prf(p: float, r: float) -> dict:
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def pairwise_scores(truth, pred) -> dict:
    """Pairwise precision/recall/F1: over all pairs of faces, is "same group" right?

    precision = same-person pairs put together / pairs put together; recall = same-person pairs
    put together / same-person pairs. Predicted -1 are singletons. With no pairs put together
    (or none to find) the quotient is defined as 1.0.

    Returns:
        {"precision", "recall", "f1"} floats in [0, 1].
    """
    t, p, c = _contingency(truth, pred)
    both = _pairs(c)
    put = _pairs(np.bincount(p, weights=c).astype(np.int64))
    true = _pairs(np.bincount(t, weights=c).astype(np.int64))
    return _prf(both / put if put else 1.0, both / true if true else 1.0)


def bcubed_scores(truth, pred) -> dict:
    """BCubed precision/recall/F1 (Bagga & Baldwin 1998), averaged over faces.

    For a face: precision = share of its group that is its person; recall = share of its person
    that is in its group. Predicted -1 are singletons. Unlike pairwise scores, big groups do not
    dominate. Empty input gives 1.0 for both.
    """
    t, p, c = _contingency(truth, pred)
    n = c.sum()
    if n == 0:
        return _prf(1.0, 1.0)
    sq = c.astype(np.float64) ** 2
    prec = float((sq / np.bincount(p, weights=c)[p]).sum() / n)
    rec = float((sq / np.bincount(t, weights=c)[t]).sum() / n)
    return _prf(prec, rec)


def bcubed_interval(truth, pred, n: int = 2000, level: float = 0.9, seed: int = 0) -> tuple[float, float]:
    """How far BCubed F1 could move with other people: the `level` interval of F1 over `n`
    bootstrap resamples of the true people (with replacement), the clustering held fixed.

    Each face keeps its own BCubed precision and recall (computed once on all faces); a resample
    averages those of the faces of the people drawn.

    Returns:
        (low, high) F1.
    """
    t, p, c = _contingency(truth, pred)
    if not len(c):
        return 1.0, 1.0
    prec = c / np.bincount(p, weights=c)[p]  # per (person, group) cell: each of its c faces
    rec = c / np.bincount(t, weights=c)[t]
    people = np.unique(t)
    per_p = np.bincount(t, weights=c * prec, minlength=people.max() + 1)  # sums per person
    per_r = np.bincount(t, weights=c * rec, minlength=people.max() + 1)
    per_n = np.bincount(t, weights=c, minlength=people.max() + 1)
    draw = np.random.default_rng(seed).choice(people, (n, len(people)))
    P, R = per_p[draw].sum(1) / per_n[draw].sum(1), per_r[draw].sum(1) / per_n[draw].sum(1)
    f1 = 2 * P * R / np.maximum(P + R, 1e-12)
    return float(np.quantile(f1, (1 - level) / 2)), float(np.quantile(f1, (1 + level) / 2))


def nmi(truth, pred) -> float:
    """Normalised mutual information (sklearn, arithmetic mean), -1 as singletons; 1.0 = perfect."""
    from sklearn.metrics import normalized_mutual_info_score

    if not len(pred):
        return 1.0
    t, p, c = _contingency(truth, pred)
    return float(normalized_mutual_info_score(np.repeat(t, c), np.repeat(p, c)))


def clustering_scores(truth, pred) -> dict:
    """All of the above: pairwise_*, bcubed_* (precision, recall, f1), nmi, clusters vs people.

    `clusters` counts groups of 2+ faces; `people` counts distinct true labels.
    """
    pred = np.asarray(pred, np.int64)
    pw, bc = pairwise_scores(truth, pred), bcubed_scores(truth, pred)
    return {**{f"pairwise_{k}": round(v, 4) for k, v in pw.items()},
            **{f"bcubed_{k}": round(v, 4) for k, v in bc.items()},
            "nmi": round(nmi(truth, pred), 4),
            "clusters": int(len(np.unique(pred[pred >= 0]))),
            "unassigned": int((pred < 0).sum()),
            "people": int(len(np.unique(np.asarray(truth))))}
