"""How well agglomerative clustering's fitted threshold carries to people it was not fitted on, and
whether choosing it from a smoothed grid carries better: validation people only.

    python tools/cluster_threshold_split.py default int8 lfw_only [--splits 100]
    python tools/cluster_threshold_split.py default lfw_only --bars [--splits 20] [--centred]

For each model: its validation people (people.json, held out of training) are split in random
halves; on one half the floor (midpoint of same- and different-person mean cosines) and the grid
of `siamese.eval.cluster_fit` are computed, the threshold is chosen by the grid's best BCubed F1
("argmax", what `siamese calibrate` does) or by the best mean of each grid point and its two
neighbours ("smooth3"), and both are scored on the other half; "oracle" is the other half's best.
Both directions of every split count. No test person is used.

With `--bars`, which shape of agglomerative's bar carries best, by size of group: the bar that falls
with group size (`fit_clustering`: floor the midpoint, threshold fitted, what `siamese calibrate`
writes), one bar for every size (`fit_average`, what `algorithm=average` reads), and floor and
threshold fitted together on a 2-D grid; each
fitted on one half and scored on the other half's faces, all of them and split by person: people
with `--big` (10) or more photos, and the rest (BCubed over those people's faces within the one
clustering of the half).

With `--centred`, the faces are compared in the model's locally centred space when its cluster.json
asks for one (`siamese.model.centre`: what `siamese cluster` does), its cohort fixed; without it
(the ship rules' instrument, docs/distill.md), in the plain embedding space.
"""

from __future__ import annotations

import argparse

import numpy as np

from siamese.clustering.graph import knn
from siamese.clustering.linkage import agglomerative
from siamese.clustering.scores import bcubed_scores
from siamese.eval.bench.table import table
from siamese.eval.calibration import validation_faces
from siamese.eval.cluster_fit import COSINE_GRID, fit_average, fit_clustering, people_halves
from siamese.io.paths import lfw_cache
from siamese.model.centre import centring
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
    out = {"argmax": [], "smooth3": [], "oracle": []}
    for fit, held in people_halves(labels, splits, seed):
        floor = _floor(emb[fit], labels[fit])
        ts = np.array([t for t in COSINE_GRID if t >= floor])
        f_fit, f_held = _grid(emb[fit], labels[fit], floor, ts), _grid(emb[held], labels[held], floor, ts)
        smooth = np.convolve(np.pad(f_fit, 1, mode="edge"), np.ones(3) / 3, mode="valid")
        out["argmax"].append(f_held[np.argmax(f_fit)])
        out["smooth3"].append(f_held[np.argmax(smooth)])
        out["oracle"].append(f_held.max())
    return {k: np.array(v) for k, v in out.items()}


BAR_GRID = np.array([t for t in COSINE_GRID if 0.15 <= t <= 0.75])  # the 2-D fit's range (both axes)


def _fitted_bar(emb: np.ndarray, labels: np.ndarray, shape: str) -> tuple[float, float]:
    """(threshold, floor) of bar `shape` ("falling", "one", "2d") fitted on these faces, the first two
    as `siamese calibrate` fits them."""
    if shape == "falling":
        fit = fit_clustering(emb, labels)
        return fit["threshold"], fit["floor"]
    if shape == "one":
        t = fit_average(emb, labels)["threshold"]
        return t, t
    near = knn(emb, 10)
    combos = [(float(t), float(f)) for t in BAR_GRID for f in BAR_GRID if f <= t]
    f1 = [bcubed_scores(labels, agglomerative(emb, t, f, 10, near))["f1"] for t, f in combos]
    return max(zip(f1, combos))[1]  # ties: the stricter threshold, then floor


def bar_halves(emb: np.ndarray, labels: np.ndarray, splits: int = 20, seed: int = 0, big: int = 10) -> dict:
    """{shape: {"all", "big", "small": held-out BCubed F1s, one per (split, direction)}, "chosen": [...]}
    for the bar shapes "falling", "one" and "2d" (module docstring).

    Args:
        emb: (n, D) unit embeddings; labels: (n,) person ids (at least four people).
        big: people with this many photos or more count as "big" groups (their F1 is NaN in a half
            without any).
    """
    people, counts = np.unique(labels, return_counts=True)
    is_big = np.isin(labels, people[counts >= big])
    out = {s: {"all": [], "big": [], "small": [], "chosen": []} for s in ("falling", "one", "2d")}
    for fit, held in people_halves(labels, splits, seed):
        for shape, r in out.items():
            t, f = _fitted_bar(emb[fit], labels[fit], shape)
            pred, truth, b = agglomerative(emb[held], t, f, 10), labels[held], is_big[held]
            r["chosen"].append((t, f))
            r["all"].append(bcubed_scores(truth, pred)["f1"])
            for part, m in (("big", b), ("small", ~b)):
                r[part].append(bcubed_scores(truth[m], pred[m])["f1"] if m.any() else np.nan)
    return {s: {k: (v if k == "chosen" else np.array(v)) for k, v in r.items()} for s, r in out.items()}


def _bar_rows(name: str, r: dict) -> list[dict]:
    rows = []
    for shape, x in r.items():
        row = {"model": name, "bar": shape}
        for part in ("all", "big", "small"):
            row[part] = round(float(np.nanmean(x[part])), 4)
        for part in ("all", "big", "small"):
            d = x[part] - r["falling"][part]
            row[f"{part} - falling"] = "-" if shape == "falling" else f"{np.nanmean(d):+.4f} ± {np.nanstd(d):.4f}"
        t, f = np.median(np.array(x["chosen"]), axis=0)
        row["median threshold / floor"] = f"{t:.3f} / {f:.3f}"
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model dirs or shipped names (default, int8, lfw_only, ...)")
    ap.add_argument("--lfw", default=None, help="the LFW copy (default: LFW_ROOT, data/lfw, ../shared/datasets/lfw)")
    ap.add_argument("--cache", default=str(lfw_cache("data/cache")), help="the aligned LFW face cache")
    ap.add_argument("--splits", type=int, default=None,
                    help="random halvings of the validation people (default 100; 20 with --bars)")
    ap.add_argument("--bars", action="store_true", help="compare the bar's shapes by size of group instead")
    ap.add_argument("--big", type=int, default=10, help="with --bars: photos that make a person a big group")
    ap.add_argument("--centred", action="store_true", help="in the model's locally centred space (its cluster.json)")
    args = ap.parse_args()
    splits = args.splits or (20 if args.bars else 100)
    rows = []
    for name in args.models:
        model = Embedder.load(name)
        faces, labels = validation_faces(model, model.validation_people(), args.lfw, cache_dir=args.cache)
        emb = model.embed(faces)
        if args.centred and (space := centring(model)) is not None:
            emb, name = space(emb), f"{name} (centred)"
        if args.bars:
            rows += _bar_rows(name, bar_halves(emb, labels, splits, big=args.big))
            continue
        r = split_halves(emb, labels, splits)
        d = r["smooth3"] - r["argmax"]
        rows.append({"model": name, "people": len(set(labels)), "argmax": round(float(r["argmax"].mean()), 4),
                     "smooth3": round(float(r["smooth3"].mean()), 4), "oracle": round(float(r["oracle"].mean()), 4),
                     "smooth3_minus_argmax": f"{d.mean():+.4f} ± {d.std():.4f}",
                     "smooth3_better": f"{int((d > 0).sum())} of {int((d != 0).sum())}"})
    what = "bar" if args.bars else "threshold"
    print(f"held-out BCubed F1 of the {what} fitted on the other half, {splits} splits x 2 directions")
    print(table(rows))


if __name__ == "__main__":
    main()
