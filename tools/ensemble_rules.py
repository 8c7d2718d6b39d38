"""Ways to combine an ensemble's members' scores, compared on its validation people only: the
pairs `siamese ensemble` fits the pair threshold on (every same-person pair of the validation people
all members held out, and as many random different-person pairs, seed 0).

    python tools/ensemble_rules.py [ENSEMBLE_DIR]       # default: the shipped model

Rules: the mean of the members' head probabilities (what `siamese.model.ensemble.Ensemble.score`
does), the mean cosine (the ensemble embedding's cosine), the mean of each head's logit measured
from its own threshold, and each member alone (head and cosine). Prints best-threshold accuracy
(`siamese.eval.metrics.best_threshold`, the same upper bound for every rule) and AUC. No test person
is used.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from siamese.data.lfw import resolve_root
from siamese.eval.bench.table import table
from siamese.eval.calibration import validation_faces
from siamese.eval.metrics import best_threshold
from siamese.faces.align import resize_faces
from siamese.io.paths import lfw_cache
from siamese.model.embedder import Embedder
from siamese.train.ensemble import threshold_pairs


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", default="default", help="an ensemble dir (default: the shipped model)")
    ap.add_argument("--lfw", default=None, help="the LFW copy (default: LFW_ROOT, data/lfw, ../shared/datasets/lfw)")
    ap.add_argument("--cache", default=str(lfw_cache("data/cache")), help="the aligned LFW face cache")
    args = ap.parse_args()
    ens = Embedder.load(args.model)
    if not hasattr(ens, "members"):
        raise ValueError(f"{args.model}: not an ensemble (model.json names no members)")
    people = json.loads((Path(ens.path) / "people.json").read_text())["validation"]
    faces, labels = validation_faces(ens, people, str(resolve_root(args.lfw)), cache_dir=args.cache)
    a, b, y = threshold_pairs(labels)  # the pairs `siamese ensemble` fitted the threshold on
    embs = [m.embed(resize_faces(faces, m.input_size)) for m in ens.members]
    heads = [m.score(e[a], e[b]) for m, e in zip(ens.members, embs)]
    cosines = [np.sum(e[a] * e[b], 1) for e in embs]
    rules = {"mean head probability (Ensemble.score)": np.mean(heads, 0),
             "mean cosine": np.mean(cosines, 0),
             "mean logit from each head's own threshold": np.mean(
                 [_logit(h) - _logit(np.float32(m.threshold)) for h, m in zip(heads, ens.members)], 0)}
    for m, h, c in zip(ens.members, heads, cosines):
        rules[f"{Path(m.path).name}: head alone"], rules[f"{Path(m.path).name}: cosine alone"] = h, c
    rows = []
    for name, s in rules.items():
        threshold, accuracy = best_threshold(s, y)
        rows.append({"rule": name, "val_accuracy": round(accuracy, 4),
                     "val_auc": round(float(roc_auc_score(y, s)), 4), "at": round(threshold, 4)})
    print(f"{len(y)} validation pairs ({int(y.sum())} same) of {len(people)} people")
    print(table(rows))


if __name__ == "__main__":
    from siamese.cli import script

    script("ensemble_rules", main)
