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
    training run); writes and returns {"protocol", "accuracy_mean", "accuracy_std", "folds"}."""
    folds = []
    for k in cfg.folds:
        fold_cfg = cfg.copy()
        fold_cfg.fold, fold_cfg.protocol = int(k), "view2"
        m = train(fold_cfg, Path(cfg.run_dir) / f"fold{k}")
        folds.append({"fold": int(k), **m["test"]})
        log.info("fold %d: accuracy %.4f (AUC %s)", k, m["test"]["accuracy"], m["test"]["auc"])
    acc = np.array([f["accuracy"] for f in folds])
    result = {"protocol": "view2 unrestricted", "accuracy_mean": round(float(acc.mean()), 4),
              "accuracy_std": round(float(acc.std()), 4), "folds": folds}
    atomic_write_text(Path(cfg.run_dir) / "unrestricted.json", json.dumps(result, indent=2))
    return result
