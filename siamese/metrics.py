"""Verification metrics on scores: higher score = more likely the same person. No TensorFlow.

`scores` are whatever a model outputs for a pair (the head's probability, or a cosine
similarity); `same` is the ground truth (1 = same person). A decision is `score >= threshold`.
"""

from __future__ import annotations

import numpy as np


def _check(scores, same) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    same = np.asarray(same).astype(bool).ravel()
    if scores.shape != same.shape:
        raise ValueError(f"scores {scores.shape} and labels {same.shape} differ in length")
    if not len(scores):
        raise ValueError("no pairs to score")
    return scores, same


def accuracy(scores, same, threshold: float) -> float:
    """Share of pairs decided right by `score >= threshold`."""
    scores, same = _check(scores, same)
    return float(((scores >= threshold) == same).mean())


def best_threshold(scores, same) -> tuple[float, float]:
    """The threshold that maximises accuracy on these pairs, and that accuracy.

    Every midpoint between consecutive distinct scores is a candidate (plus the extremes), so
    the result is exact. Ties go to the middle of the best run, which generalises better than
    its edge.

    Returns:
        (threshold, accuracy).
    """
    scores, same = _check(scores, same)
    order = np.argsort(scores)
    s, y = scores[order], same[order]
    # Deciding "same" for everything at index >= i: correct = negatives below + positives from i.
    neg_below = np.concatenate([[0], np.cumsum(~y)])
    pos_from = np.concatenate([np.cumsum(y[::-1])[::-1], [0]])
    correct = neg_below + pos_from  # (n + 1,) for cut positions 0..n
    distinct = np.concatenate([[True], s[1:] != s[:-1], [True]])  # cuts between distinct scores
    correct = np.where(distinct, correct, -1)
    best = np.flatnonzero(correct == correct.max())
    cut = best[len(best) // 2]
    lo = s[cut - 1] if cut > 0 else s[0] - 1e-6
    hi = s[cut] if cut < len(s) else s[-1] + 1e-6
    return float((lo + hi) / 2), float(correct[cut] / len(s))


def roc_auc(scores, same) -> float:
    """Area under the ROC curve (probability a same pair outscores a different pair)."""
    from sklearn.metrics import roc_auc_score

    scores, same = _check(scores, same)
    return float(roc_auc_score(same, scores))


def tar_at_far(scores, same, far: float) -> tuple[float, float]:
    """True-accept rate at the threshold where the false-accept rate is at most `far`.

    Returns:
        (tar, threshold).
    """
    scores, same = _check(scores, same)
    neg = np.sort(scores[~same])[::-1]
    k = int(np.floor(far * len(neg)))  # negatives allowed at or above the threshold
    thr = neg[k] + 1e-12 if k < len(neg) else neg[-1]
    return float((scores[same] >= thr).mean()), float(thr)


def summary(scores, same, threshold: float | None = None) -> dict:
    """Accuracy (at `threshold`, or the best one here if None), AUC and TAR at FAR 1e-3/1e-2."""
    if threshold is None:
        threshold, _ = best_threshold(scores, same)
    return {"accuracy": round(accuracy(scores, same, threshold), 4),
            "threshold": round(float(threshold), 6),
            "auc": round(roc_auc(scores, same), 4),
            "tar_at_far_1e-3": round(tar_at_far(scores, same, 1e-3)[0], 4),
            "tar_at_far_1e-2": round(tar_at_far(scores, same, 1e-2)[0], 4),
            "pairs": int(len(np.ravel(scores)))}
