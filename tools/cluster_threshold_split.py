"""How well agglomerative clustering's fitted threshold carries to people it was not fitted on, and
whether choosing it from a smoothed grid carries better: validation people only.

    python tools/cluster_threshold_split.py default int8 lfw_only [--splits 100]

For each model: its validation people (people.json, held out of training) are split in random
halves; on one half the floor (midpoint of same- and different-person mean cosines) and the grid
of `siamese.eval.calibration` are computed, the threshold is chosen by the grid's best BCubed F1
("argmax", what `siamese calibrate` does) or by the best mean of each grid point and its two
neighbours ("smooth3"), and both are scored on the other half; "oracle" is the other half's best.
Both directions of every split count. No test person is used.
"""

from __future__ import annotations

import argparse

import numpy as np

from siamese.clustering.graph import knn
from siamese.clustering.linkage import agglomerative
from siamese.clustering.scores import bcubed_scores
from siamese.eval.bench.table import table
from siamese.eval.calibration import COSINE_GRID, validation_faces
from siamese.io.paths import lfw_cache
from siamese.model.embedder import Embedder


def _floor(emb: np.ndarray, labels: np.ndarray) -> float:
    i, j = np.triu_indices(len(labels), 1)
    cos, same = np.sum(emb[i] * emb[j], axis=1), labels[i] == labels[j]
    return round(float(cos[same].mean() + cos[~same].mean()) / 2, 4)


def _grid(emb: np.ndarray, labels: np.ndarray, floor: float, thresholds: np.ndarray, k: int = 10) -> np.ndarray:
    near = knn(emb, k)
    return np.array([bcubed_scores(labels, agglomerative(emb, float(t), floor, k, near))["f1"] for t in thresholds])


def split_halves(emb: np.ndarray, labels: np.ndarray, splits: int = 100, seed: int = 0) -> dict:
    """{"argmax", "smooth3", "oracle": held-out BCubed F1s, one per (split, direction)}.

    Args:
        emb: (n, D) unit embeddings; labels: (n,) person ids (at least four people).
    """
    people = np.unique(labels)
    rng = np.random.default_rng(seed)
    out = {"argmax": [], "smooth3": [], "oracle": []}
    for _ in range(splits):
        perm = rng.permutation(people)
        first = np.isin(labels, perm[:len(perm) // 2])
        for fit, held in ((first, ~first), (~first, first)):
            floor = _floor(emb[fit], labels[fit])
            ts = np.array([t for t in COSINE_GRID if t >= floor])
            f_fit, f_held = _grid(emb[fit], labels[fit], floor, ts), _grid(emb[held], labels[held], floor, ts)
            smooth = np.convolve(np.pad(f_fit, 1, mode="edge"), np.ones(3) / 3, mode="valid")
            out["argmax"].append(f_held[np.argmax(f_fit)])
            out["smooth3"].append(f_held[np.argmax(smooth)])
            out["oracle"].append(f_held.max())
    return {k: np.array(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model dirs or shipped names (default, int8, lfw_only, ...)")
    ap.add_argument("--lfw", default=None, help="the LFW copy (default: LFW_ROOT, data/lfw, ../shared/datasets/lfw)")
    ap.add_argument("--cache", default=str(lfw_cache("data/cache")), help="the aligned LFW face cache")
    ap.add_argument("--splits", type=int, default=100, help="random halvings of the validation people")
    args = ap.parse_args()
    rows = []
    for name in args.models:
        model = Embedder.load(name)
        faces, labels = validation_faces(model, model.validation_people(), args.lfw, cache_dir=args.cache)
        r = split_halves(model.embed(faces), labels, args.splits)
        d = r["smooth3"] - r["argmax"]
        rows.append({"model": name, "people": len(set(labels)), "argmax": round(float(r["argmax"].mean()), 4),
                     "smooth3": round(float(r["smooth3"].mean()), 4), "oracle": round(float(r["oracle"].mean()), 4),
                     "smooth3_minus_argmax": f"{d.mean():+.4f} ± {d.std():.4f}",
                     "smooth3_better": f"{int((d > 0).sum())} of {int((d != 0).sum())}"})
    print(f"held-out BCubed F1 of the threshold fitted on the other half, {args.splits} splits x 2 directions")
    print(table(rows))


if __name__ == "__main__":
    main()
