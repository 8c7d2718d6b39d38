"""How "hubby" a model's embedding is on its validation people: a few faces close to many faces of
other people spoil clustering and 1:N search more than pair verification (docs/distill.md).

    python tools/hubness.py checkpoints/a15_cos_rel checkpoints/a15_cos_rel_over3 [--lfw LFW_ROOT] [--bars] [--alike]

Prints, per model, on the faces of its validation people (held out of its training): the median
cosine of same-person pairs, the 99th and 99.9th percentile of different-person cosines, and the
share of the different-person pairs above that 99.9th percentile that involve the 20 faces taking
part in most of them (1.0: all the worst confusions come from 20 faces; small: spread out), and the
length of the mean embedding (0: centred; large: one direction shared by every face).

With --centred, also a row of the same figures in each model's locally centred space (its cluster.json
"centre", `siamese.model.centre`), where its agglomerative clustering compares faces.

With --alike, also how right "may be one person" (`siamese.clustering.alike`) is after the
model's agglomerative clustering of those faces (its cluster.json, in its locally centred space when
it asks for one, as `siamese cluster` does): of the 8 and 20 pairs listed
first at its floor, how many are one person, comparing person folders alone or folders and each
unassigned face on its own (`siamese.eval.bench.clustering.alike_scores`).

With --bars, also how agglomerative clustering of those faces fares with the two kinds of bar
(`siamese.clustering.linkage.agglomerative`): the falling bar `cluster.json` is fitted with (floor
halfway between the mean same- and different-person cosine, threshold by grid:
`siamese.eval.cluster_fit.fit_clustering`) and one bar for all group sizes (floor = threshold, by
the same grid): each one's best BCubed F1 and its threshold. Both are fitted and scored on the same
validation faces, so they compare the bars, not what either reaches on unseen people.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from siamese.clustering.linkage import agglomerative
from siamese.clustering.neighbours import knn
from siamese.clustering.scores import bcubed_scores
from siamese.clustering.settings import clustering_settings
from siamese.eval.bench.clustering import alike_scores
from siamese.eval.bench.table import table
from siamese.eval.calibration import validation_embeddings
from siamese.eval.cluster_fit import COSINE_GRID, fit_clustering
from siamese.io.paths import lfw_cache
from siamese.model.centre import centring
from siamese.model.embedder import Embedder


def hubness(emb: np.ndarray, names: np.ndarray, top: int = 20) -> dict:
    """Same/different cosine figures of (n, D) unit embeddings `emb` of people `names` (n,)."""
    s = emb @ emb.T
    iu = np.triu_indices(len(emb), 1)
    same = names[iu[0]] == names[iu[1]]
    diff = s[iu][~same]
    cut = float(np.quantile(diff, 0.999))
    a, b = iu[0][~same], iu[1][~same]
    worst = diff > cut
    counts = np.bincount(np.r_[a[worst], b[worst]], minlength=len(emb))
    hubs = np.argsort(-counts)[:top]
    share = float((np.isin(a[worst], hubs) | np.isin(b[worst], hubs)).mean()) if worst.any() else 0.0
    return {"faces": len(emb), "same_median": round(float(np.median(s[iu][same])), 3),
            "diff_p99": round(float(np.quantile(diff, 0.99)), 3), "diff_p999": round(cut, 3),
            f"top{top}_share": round(share, 3), "mean_norm": round(float(np.linalg.norm(emb.mean(0))), 3)}


def bars(emb: np.ndarray, names: np.ndarray, k: int = 10) -> dict:
    """Best BCubed F1 (and threshold) of agglomerative clustering with the falling bar and with one bar."""
    fit = fit_clustering(emb, names, k=k)
    near = knn(np.asarray(emb, np.float32), k)
    one = max((bcubed_scores(names, agglomerative(emb, float(t), float(t), k, near))["f1"], float(t))
              for t in COSINE_GRID)
    return {"falling_bar_f1": fit["bcubed_f1"], "at": f"{fit['threshold']:.3f} / {fit['floor']:.3f}",
            "one_bar_f1": round(one[0], 4), "one_bar_at": one[1]}


def alike(emb: np.ndarray, names: np.ndarray, cal: dict) -> dict:
    """Right pairs among the first 8 / 20 "may be one person" pairs, folders alone and with unassigned faces."""
    labels = agglomerative(emb, cal["threshold"], cal["floor"], cal["k"])
    out = {}
    for loose, what in ((False, "folders"), (True, "with_unassigned")):
        r = [alike_scores(emb, names, labels, cal["floor"], top, loose) for top in (8, 20)]
        out[f"{what}_right"] = f"{r[0]['same']}/{r[0]['listed']}, {r[1]['same']}/{r[1]['listed']}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model dirs or training run dirs")
    ap.add_argument("--lfw", default=os.environ.get("LFW_ROOT"), help="the LFW copy (default: LFW_ROOT)")
    ap.add_argument("--bars", action="store_true", help="also agglomerative clustering, falling bar vs one bar")
    ap.add_argument("--alike", action="store_true", help='also how right "may be one person" is after clustering')
    ap.add_argument("--cache", default=str(lfw_cache("data/cache")), help="the aligned LFW face cache")
    ap.add_argument("--centred", action="store_true",
                    help="also a row of each model's faces in its locally centred space (its cluster.json)")
    args = ap.parse_args()
    rows = []
    for path in args.models:
        model = Embedder.load(path)
        emb, names, _ = validation_embeddings(model, model.validation_people(), args.lfw, cache_dir=args.cache)
        cal = clustering_settings(model) if args.alike else None
        if args.alike and not cal:
            raise ValueError(f"{path}: no cluster.json for --alike — `siamese calibrate {path} fit=[cluster]`")
        space = centring(model, cal) if cal else None  # "may be one person" compares in cluster.json's space
        rows.append({"model": path, **hubness(emb, names), **(bars(emb, names) if args.bars else {}),
                     **(alike(space(emb) if space else emb, names, cal) if cal else {})})
        if args.centred and (space := space or centring(model)) is not None:
            rows.append({"model": f"{path} (centred)", **hubness(space(emb), names)})
    print(table(rows))


if __name__ == "__main__":
    from siamese.cli import script

    script("hubness", main)
