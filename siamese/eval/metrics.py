"""Verification metrics on pair scores. No TensorFlow.

`scores` are whatever a model outputs for a pair (the head's probability, or a cosine
similarity), higher = more likely the same person; `same` is the ground truth (1 = same person).
A decision is `score >= threshold`. Scores that judge a clustering: `siamese.clustering.scores`.
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


def binary_cross_entropy(probs, same, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy (nats) of pair probabilities P(same) against the truth: the
    head's own training loss (`same_loss` in a run's log.csv), on any pairs. Probabilities are
    clipped to [eps, 1 - eps], as Keras' BinaryCrossentropy does."""
    p, same = _check(probs, same)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(np.where(same, np.log(p), np.log1p(-p))))


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


def eer(scores, same) -> tuple[float, float]:
    """Equal error rate: where false-accept and false-reject rates meet.

    Returns:
        (eer, threshold).
    """
    from sklearn.metrics import roc_curve

    scores, same = _check(scores, same)
    fpr, tpr, thr = roc_curve(same, scores)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2), float(thr[i])


def confusion(scores, same, threshold: float) -> dict:
    """Precision, recall (= TAR) and F1 of "same", and the false-accept rate, at `threshold`."""
    scores, same = _check(scores, same)
    pred = scores >= threshold
    tp, fp = int((pred & same).sum()), int((pred & ~same).sum())
    fn = int((~pred & same).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    far = fp / max(int((~same).sum()), 1)
    return {"precision": precision, "recall": recall, "f1": f1, "far": far}


def summary(scores, same, threshold: float | None = None) -> dict:
    """Everything at one threshold (the given one, or the best one on these pairs if None):
    accuracy, precision, recall, F1, FAR; and threshold-free AUC, EER, TAR at FAR 1e-3/1e-2."""
    scores, same = _check(scores, same)
    if threshold is None:
        threshold, _ = best_threshold(scores, same)
    c = confusion(scores, same, threshold)
    both = same.any() and (~same).any()
    return {"accuracy": round(accuracy(scores, same, threshold), 4),
            "threshold": round(float(threshold), 6),
            "precision": round(c["precision"], 4), "recall": round(c["recall"], 4),
            "f1": round(c["f1"], 4), "far": round(c["far"], 4),
            "auc": round(roc_auc(scores, same), 4) if both else None,
            "eer": round(eer(scores, same)[0], 4) if both else None,
            "tar_at_far_1e-3": round(tar_at_far(scores, same, 1e-3)[0], 4) if both else None,
            "tar_at_far_1e-2": round(tar_at_far(scores, same, 1e-2)[0], 4) if both else None,
            "pairs": int(len(scores)), "same_pairs": int(same.sum())}


def kfold(scores, same, fold_of) -> dict:
    """LFW's 10-fold protocol: each fold's threshold is chosen on the other folds' pairs.

    Args:
        scores, same: (n,) scores and truth for all pairs.
        fold_of: (n,) fold index of each pair.

    Returns:
        {"accuracy_mean", "accuracy_std", "folds": [summary per fold]} — mean +- std over folds,
        as LFW result tables report it.
    """
    scores, same = _check(scores, same)
    fold_of = np.asarray(fold_of)
    folds = []
    for k in np.unique(fold_of):
        test = fold_of == k
        thr, _ = best_threshold(scores[~test], same[~test])
        folds.append({"fold": int(k), **summary(scores[test], same[test], thr)})
    acc = np.array([f["accuracy"] for f in folds])
    auc = np.array([f["auc"] for f in folds if f["auc"] is not None])
    return {"accuracy_mean": round(float(acc.mean()), 4), "accuracy_std": round(float(acc.std()), 4),
            "auc_mean": round(float(auc.mean()), 4) if len(auc) else None, "folds": folds}
