"""Open-set identification on a model's validation people only: what `siamese openset` measures on
unseen LFW people, measured where a ship rule may look (docs/distill.md).

    python tools/val_openset.py default CANDIDATE_DIR [--halvings 20]

For each of `--halvings` random halvings of the validation people (people.json, held out of
training; the same halvings for every model): one random face of each person of the first half is
enrolled, that person's other faces are the known probes, every face of the second half is a
stranger. Each model's real `Recognizer` answers (`rank`, as `siamese recognize` does): top-1 is
the share of known probes whose first name is right; DIR at FAR 1 % the share named right with a
score above the strangers' 99th percentile (the threshold a perfect stranger calibration would set).
Method "nn" (the head's score) and "centred" (the head's name, accepted by the centred cosine: the
default; in the space its calibration chose for 1:N) are both printed; a model without a centred
space prints "centred" as n/a. With `--gammas` (and `--k`), method centred's DIR is also printed for
each k and gamma of the local centring against the model's own cohort (how `siamese calibrate
fit=[recognize]` chooses 1:N's gamma). Each model
embeds the faces its own way (`Embedder.embed_refs`, mirror averaged). No test person is used.
"""

from __future__ import annotations

import argparse

from siamese.eval.bench.table import table
from siamese.eval.calibration import validation_embeddings
from siamese.eval.openset import halvings, open_set_halvings
from siamese.io.paths import lfw_cache
from siamese.model.centre import Centring, centring
from siamese.model.embedder import Embedder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model dirs, shipped names (default, int8, ...) or ensemble dirs")
    ap.add_argument("--lfw", default=None, help="the LFW copy (default: LFW_ROOT, data/lfw, ../shared/datasets/lfw)")
    ap.add_argument("--cache", default=str(lfw_cache("data/cache")), help="the aligned LFW face cache")
    ap.add_argument("--halvings", type=int, default=20)
    ap.add_argument("--gammas", type=float, nargs="*", default=[], help="also method centred at these gammas")
    ap.add_argument("--k", type=int, nargs="*", default=None, help="with --gammas: these k (default: the model's)")
    args = ap.parse_args()
    rows, first, people0 = [], None, None
    for path in args.models:
        model = Embedder.load(path)
        people = sorted(model.validation_people())
        if people0 is not None and people != people0:
            raise SystemExit(f"{path}: other validation people than {args.models[0]} — not comparable")
        people0 = people
        emb, names, _ = validation_embeddings(model, people, args.lfw, cache_dir=args.cache)
        space = centring(model, purpose="recognize")
        splits = halvings(names, args.halvings)

        res = open_set_halvings(model, emb, names, splits, space, ("nn", "centred") if space is not None else ("nn",))
        first = first or res
        for m in ("nn", "centred"):
            if m not in res:
                rows.append({"model": path, "method": m, "top-1": "n/a", "DIR at FAR 1 %": "n/a"})
                continue
            v = res[m]
            paired = ("" if res is first or m not in first else
                      f"{(v[:, 1] - first[m][:, 1]).mean():+.3f} ± {(v[:, 1] - first[m][:, 1]).std():.3f}")
            rows.append({"model": path, "method": m, "top-1": f"{v[:, 0].mean():.3f} ± {v[:, 0].std():.3f}",
                         "DIR at FAR 1 %": f"{v[:, 1].mean():.3f} ± {v[:, 1].std():.3f}", "DIR paired": paired})
        print(f"{path}: {len(names)} faces of {len(people)} validation people, {args.halvings} halvings", flush=True)
        for k in (args.k or [space.k]) if space is not None and args.gammas else []:
            for g in args.gammas:
                v = open_set_halvings(model, emb, names, splits, Centring(space.cohort, k, g), ("centred",))["centred"]
                rows.append({"model": path, "method": f"centred, k {k} gamma {g}",
                             "top-1": f"{v[:, 0].mean():.3f} ± {v[:, 0].std():.3f}",
                             "DIR at FAR 1 %": f"{v[:, 1].mean():.3f} ± {v[:, 1].std():.3f}"})
    print(f"(DIR paired: the model's DIR minus {args.models[0]}'s on the same halvings, mean ± sd)")
    print(table(rows, ["model", "method", "top-1", "DIR at FAR 1 %", "DIR paired"]))


if __name__ == "__main__":
    main()
