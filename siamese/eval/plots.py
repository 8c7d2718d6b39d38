"""Plots people would rather look at than read: ROC, score histograms, worst pairs, curves.

Each function writes one PNG and returns its path. Figures are made without pyplot, so nothing
here changes the caller's matplotlib backend (a notebook keeps drawing inline).
"""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import numpy as np


def _figure(**kw):
    """A matplotlib Figure outside pyplot: no global backend is switched (a notebook that calls
    these keeps drawing inline) and nothing is left open."""
    from matplotlib.figure import Figure

    return Figure(**kw)


def roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """ROC curves, log-scale false-accept axis.

    Args:
        curves: label -> (scores (n,), same (n,) bool).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    fig = _figure(figsize=(5, 4.2))
    ax = fig.subplots()
    for label, (scores, same) in curves.items():
        fpr, tpr, _ = roc_curve(same, scores)
        ax.plot(np.maximum(fpr, 1e-4), tpr, label=f"{label} (AUC {roc_auc_score(same, scores):.3f})")
    ax.set_xscale("log")
    ax.set_xlim(1e-3, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def histograms(scores: np.ndarray, same: np.ndarray, threshold: float, path: str | Path,
               title: str = "") -> Path:
    """Score histograms of same-person and different-person pairs, with the threshold."""
    fig = _figure(figsize=(6, 3.6))
    ax = fig.subplots()
    bins = np.linspace(min(scores.min(), 0), max(scores.max(), 1), 50)
    ax.hist(scores[same], bins, alpha=0.6, label="same person")
    ax.hist(scores[~same], bins, alpha=0.6, label="different people")
    ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("head score P(same)")
    ax.set_ylabel("pairs")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def _name(name: str, width: int = 18) -> str:
    """A person's name for a small caption: spaces for LFW's underscores, two lines at most."""
    lines = textwrap.wrap(name.replace("_", " "), width)
    return "\n".join(lines[:2]) + ("…" if len(lines) > 2 else "")


def worst_pairs(images: np.ndarray, idx: np.ndarray, scores: np.ndarray, same: np.ndarray,
                threshold: float, path: str | Path, n: int = 8, names: list[str] | None = None) -> Path:
    """Grid of the most confident mistakes: false accepts (top row) and false rejects (bottom row).

    Each column is one pair, its two faces stacked, with its score and (given `names`) the
    name of each face: the top one's above it, the bottom one's below.

    Args:
        images: (N, S, S, 3) uint8 RGB faces; idx: (n_pairs, 2) rows of each pair's faces.
        scores, same: (n_pairs,) the pairs' scores and truth; threshold: the decision's.
        n: pairs per row. names: (N,) the person of each face, or None.
    """
    fa = np.flatnonzero(~same & (scores >= threshold))
    fr = np.flatnonzero(same & (scores < threshold))
    fa = fa[np.argsort(-scores[fa])][:n]
    fr = fr[np.argsort(scores[fr])][:n]
    cols = max(len(fa), len(fr), 1)
    height = 2.0 if not len(fa) and not len(fr) else 6.4 if names is not None else 5.0
    fig = _figure(figsize=(max(1.6 * cols, 4.0), height))
    axes = fig.subplots(2, cols, squeeze=False)
    rows = ((f"false accepts: different people scored >= {threshold:.3f}", fa),
            (f"false rejects: the same person scored < {threshold:.3f}", fr))
    for row, (heading, picks) in enumerate(rows):
        for c in range(cols):
            ax = axes[row, c]
            ax.axis("off")
            if c < len(picks):
                _pair(ax, images, idx[picks[c]], scores[picks[c]], names)
        if not len(picks):
            axes[row, 0].text(0.0, 0.5, "none", fontsize=8, transform=axes[row, 0].transAxes)
        fig.text(0.01, 1 - row * 0.5 - 0.01, heading, fontsize=8, weight="bold", va="top")
    fig.tight_layout(rect=(0, 0, 1, 0.97), h_pad=2.0)
    fig.savefig(path, dpi=110)
    return Path(path)


def _pair(ax, images: np.ndarray, rows: np.ndarray, score: float, names: list[str] | None) -> None:
    """One pair in one axis: the two faces stacked, the score above, each face's name beside it."""
    ax.imshow(np.concatenate([images[rows[0]], images[rows[1]]], axis=0))
    if names is None:
        ax.set_title(f"{score:.3f}", fontsize=7)
        return
    ax.set_title(f"score {score:.3f}\n{_name(names[rows[0]])}", fontsize=6.5)
    ax.text(0.5, -0.03, _name(names[rows[1]]), fontsize=6.5, ha="center", va="top", transform=ax.transAxes)


def training_curves(log_csv: str | Path, path: str | Path) -> Path | None:
    """A run's log.csv as three panels, the best epoch (highest val_acc: the one training keeps)
    marked in each: the training loss; the head's pair loss on training (same_loss) and
    validation pairs (val_loss), the one comparison of the two; validation accuracy and AUC.
    Columns an older log lacks are left out. None if there is no log."""
    log_csv = Path(log_csv)
    rows = list(csv.DictReader(open(log_csv))) if log_csv.exists() else []
    if not rows:
        return None
    def col(name):
        return [float(r[name]) for r in rows] if rows[0].get(name) not in (None, "") else None

    ep, acc = [int(r["epoch"]) + 1 for r in rows], col("val_acc")
    best = ep[int(np.argmax(acc))]  # the first epoch at the best accuracy, as training keeps it
    fig = _figure(figsize=(13, 3.6))
    ax = fig.subplots(1, 3)
    panels = ((ax[0], "training loss (all terms)", [("loss", "train loss")]),
              (ax[1], "pair loss (the head's BCE)", [("same_loss", "train pairs"), ("val_loss", "validation pairs")]),
              (ax[2], "validation", [("val_acc", "accuracy"), ("val_auc", "AUC")]))
    for a, title, series in panels:
        missing = [label for name, label in series if col(name) is None]
        for name, label in series:
            if col(name) is not None:
                a.plot(ep, col(name), label=label, marker="." if len(ep) < 40 else None)
        a.axvline(best, color="grey", ls="--", lw=1, label=f"best epoch {best} (val accuracy {max(acc):.4f})")
        a.set_title(title + (f" — not in this log: {', '.join(missing)}" if missing else ""), fontsize=10)
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    ax[2].plot([best], [max(acc)], "o", mfc="none", color="k")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)
