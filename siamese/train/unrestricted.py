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
    training run); returns `summarize` of every fold reported in the run dir.

    `unrestricted.json` is rewritten after every fold and keeps the folds an earlier call into the
    same run dir reported (a fold trained again replaces its row), so a long run can be done a few
    folds at a time (`folds=[5,6]`) and one stopped part-way still reports the folds it finished."""
    if not cfg.folds:
        raise ValueError("folds is empty: give at least one View 2 fold, e.g. folds=[0]")
    report = Path(cfg.run_dir) / "unrestricted.json"
    done = {f["fold"]: f for f in read_report(report)}
    result = {}
    for k in cfg.folds:
        fold_cfg = cfg.copy()
        fold_cfg.fold, fold_cfg.protocol = int(k), "view2"
        m = train(fold_cfg, Path(cfg.run_dir) / f"fold{k}")
        done[int(k)] = {"fold": int(k), **m["test"]}
        log.info("fold %d: accuracy %.4f (AUC %s)", k, m["test"]["accuracy"], m["test"]["auc"])
        result = summarize(list(done.values()))
        atomic_write_text(report, json.dumps(result, indent=2))
    return result


def read_report(path: Path) -> list[dict]:
    """The folds an `unrestricted.json` reports ([] when there is none).

    Raises:
        ValueError: the file is there but is not such a report (named in the message).
    """
    if not path.exists():
        return []
    try:
        r = json.loads(path.read_text())
        if r.get("protocol") != "view2 unrestricted":
            raise ValueError("not a View 2 unrestricted report")
        return [{**f, "fold": int(f["fold"])} for f in r["folds"]]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not a readable unrestricted.json ({e}) — move it away to start "
                         "the report again") from e


def summarize(folds: list[dict]) -> dict:
    """Mean and (population) std of the folds' test accuracies, the folds in order, and which of
    View 2's ten folds are not in it yet ("folds_missing")."""
    folds = sorted(folds, key=lambda f: f["fold"])
    acc = np.array([f["accuracy"] for f in folds])
    return {"protocol": "view2 unrestricted", "accuracy_mean": round(float(acc.mean()), 4),
            "accuracy_std": round(float(acc.std()), 4), "folds": folds,
            "folds_missing": sorted(set(range(10)) - {f["fold"] for f in folds})}
