"""Plots people would rather look at than read: ROC, score histograms, worst pairs, curves.

Each function writes one PNG and returns its path. matplotlib runs headless (Agg).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """ROC curves, log-scale false-accept axis.

    Args:
        curves: label -> (scores (n,), same (n,) bool).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.2))
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
    plt.close(fig)
    return Path(path)


def histograms(scores: np.ndarray, same: np.ndarray, threshold: float, path: str | Path,
               title: str = "") -> Path:
    """Score histograms of same-person and different-person pairs, with the threshold."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
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
    plt.close(fig)
    return Path(path)


def worst_pairs(images: np.ndarray, idx: np.ndarray, scores: np.ndarray, same: np.ndarray,
                threshold: float, path: str | Path, n: int = 8) -> Path:
    """Grid of the most confident mistakes: false accepts (top) and false rejects (bottom).

    Args:
        images: (N, S, S, 3) uint8 RGB faces; idx: (n_pairs, 2) rows of each pair's faces.
    """
    plt = _plt()
    fa = np.flatnonzero(~same & (scores >= threshold))
    fr = np.flatnonzero(same & (scores < threshold))
    fa = fa[np.argsort(-scores[fa])][:n]
    fr = fr[np.argsort(scores[fr])][:n]
    cols = max(len(fa), len(fr), 1)
    fig, axes = plt.subplots(2, cols, figsize=(1.6 * cols, 4.0), squeeze=False)
    for row, (kind, picks) in enumerate((("false accept", fa), ("false reject", fr))):
        for c in range(cols):
            ax = axes[row, c]
            ax.axis("off")
            if c < len(picks):
                i = picks[c]
                ax.imshow(np.concatenate([images[idx[i, 0]], images[idx[i, 1]]], axis=0))
                ax.set_title(f"{kind}\n{scores[i]:.3f}", fontsize=7)
    if not len(fa) and not len(fr):
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def training_curves(log_csv: str | Path, path: str | Path) -> Path | None:
    """Loss and validation accuracy/AUC per epoch from a run's log.csv (None if no log)."""
    log_csv = Path(log_csv)
    rows = list(csv.DictReader(open(log_csv))) if log_csv.exists() else []
    if not rows:
        return None
    plt = _plt()
    ep = [int(r["epoch"]) + 1 for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    ax[0].plot(ep, [float(r["loss"]) for r in rows], label="train loss")
    ax[0].set_xlabel("epoch")
    ax[0].legend()
    ax[1].plot(ep, [float(r["val_acc"]) for r in rows], label="val accuracy")
    ax[1].plot(ep, [float(r["val_auc"]) for r in rows], label="val AUC")
    ax[1].set_xlabel("epoch")
    ax[1].legend()
    ax[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
