"""How "hubby" a model's embedding is on its validation people: a few faces close to many faces of
other people spoil clustering and 1:N search more than pair verification (docs/distill.md).

    python tools/hubness.py checkpoints/a15_cos_rel checkpoints/a15_cos_rel_over3 [--lfw LFW_ROOT]

Prints, per model, on the faces of its validation people (held out of its training): the median
cosine of same-person pairs, the 99th and 99.9th percentile of different-person cosines, and the
share of the different-person pairs above that 99.9th percentile that involve the 20 faces taking
part in most of them (1.0: all the worst confusions come from 20 faces; small: spread out), and the
length of the mean embedding (0: centred; large: one direction shared by every face).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from siamese.eval.bench.table import table
from siamese.eval.calibration import validation_embeddings
from siamese.io.paths import lfw_cache
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model dirs or training run dirs")
    ap.add_argument("--lfw", default=os.environ.get("LFW_ROOT"), help="the LFW copy (default: LFW_ROOT)")
    ap.add_argument("--cache", default=str(lfw_cache("data/cache")), help="the aligned LFW face cache")
    args = ap.parse_args()
    rows = []
    for path in args.models:
        model = Embedder.load(path)
        emb, names, _ = validation_embeddings(model, model.validation_people(), args.lfw, cache_dir=args.cache)
        rows.append({"model": path, **hubness(emb, names)})
    print(table(rows))


if __name__ == "__main__":
    main()
