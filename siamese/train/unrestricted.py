"""LFW View 2 unrestricted: one training per fold, each without that fold's people, each tested on
that fold; the result is mean +- std over the folds (`siamese unrestricted`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from siamese.io.files import atomic_write_text
from siamese.train.trainer import train

__all__ = ["unrestricted"]

log = logging.getLogger(__name__)


def unrestricted(cfg: DictConfig) -> dict:
    """Train `cfg.folds` one after another into `cfg.run_dir/fold<k>/` (each resumes like any
    training run); returns {"protocol", "accuracy_mean", "accuracy_std", "folds", "folds_asked"}.

    `unrestricted.json` is rewritten after every fold, so a run stopped part-way (hours on a CPU)
    still reports the folds it finished, and says how many were asked."""
    if not cfg.folds:
        raise ValueError("folds is empty: give at least one View 2 fold, e.g. folds=[0]")
    folds, result = [], {}
    for k in cfg.folds:
        fold_cfg = cfg.copy()
        fold_cfg.fold, fold_cfg.protocol = int(k), "view2"
        m = train(fold_cfg, Path(cfg.run_dir) / f"fold{k}")
        folds.append({"fold": int(k), **m["test"]})
        log.info("fold %d: accuracy %.4f (AUC %s)", k, m["test"]["accuracy"], m["test"]["auc"])
        result = summarize(folds, len(cfg.folds))
        atomic_write_text(Path(cfg.run_dir) / "unrestricted.json", json.dumps(result, indent=2))
    return result


def summarize(folds: list[dict], asked: int) -> dict:
    """Mean and (population) std of the folds' test accuracies, with the folds themselves."""
    acc = np.array([f["accuracy"] for f in folds])
    return {"protocol": "view2 unrestricted", "accuracy_mean": round(float(acc.mean()), 4),
            "accuracy_std": round(float(acc.std()), 4), "folds": folds, "folds_asked": asked}
