"""Open-set identification on a model's validation people only: what `siamese openset` measures on
unseen LFW people, measured where a ship rule may look (docs/distill.md).

    python tools/val_openset.py default CANDIDATE_DIR [--halvings 20]

For each of `--halvings` random halvings of the validation people (people.json, held out of
training; the same halvings for every model): one random face of each person of the first half is
enrolled, that person's other faces are the known probes, every face of the second half is a
stranger. Each model's real `Recognizer` answers (`rank`, as `siamese recognize` does): top-1 is
the share of known probes whose first name is right; DIR at FAR 1 % the share named right with a
score above the strangers' 99th percentile (the threshold a perfect stranger calibration would set).
Methods "nn" (the head's score), "centred" (the head's name, accepted by the centred cosine, in the
space its calibration chose for 1:N) and "asnorm" (ranked and accepted by the AS-normalised cosine
against the model's cohort) are printed; a model without a centred space and cohort prints the last
two as n/a. With `--degraded`, each stranger's harder copy (small, JPEG, blur, grey, strong light)
is scored too: the share of them above the threshold set on the clean strangers. With `--gammas`
(and `--k`), method centred's DIR is also printed for each k and gamma of the local centring against
the model's own cohort (how `siamese calibrate fit=[recognize]` chooses 1:N's gamma); with
`--asnorm-k`, method asnorm's for each K. Each model embeds the faces its own way
(`Embedder.embed_refs`, mirror averaged). No test person is used.
"""

from __future__ import annotations

import argparse

from siamese.eval.bench.table import table
from siamese.eval.calibration import validation_embeddings
from siamese.eval.openset import halvings, open_set_halvings
from siamese.io.paths import lfw_cache
from siamese.model.centre import AsNorm, Centring, centring, score_norm
from siamese.model.embedder import Embedder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model dirs, shipped names (default, int8, ...) or ensemble dirs")
    ap.add_argument("--lfw", default=None, help="the LFW copy (default: LFW_ROOT, data/lfw, ../shared/datasets/lfw)")
    ap.add_argument("--cache", default=str(lfw_cache("data/cache")), help="the aligned LFW face cache")
    ap.add_argument("--halvings", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0, help="the halvings' seed (other halvings of the same people)")
    ap.add_argument("--gammas", type=float, nargs="*", default=[], help="also method centred at these gammas")
    ap.add_argument("--k", type=int, nargs="*", default=None, help="with --gammas: these k (default: the model's)")
    ap.add_argument("--asnorm-k", type=int, nargs="*", default=[], help="also method asnorm with these K")
    ap.add_argument("--degraded", action="store_true", help="also the strangers' harder copies accepted")
    args = ap.parse_args()

    def cells(v):
        out = {"top-1": f"{v[:, 0].mean():.3f} ± {v[:, 0].std():.3f}",
               "DIR at FAR 1 %": f"{v[:, 1].mean():.3f} ± {v[:, 1].std():.3f}"}
        if v.shape[1] > 2:
            out["degraded strangers accepted"] = f"{v[:, 2].mean():.2%}"
        return out

    rows, first, people0 = [], None, None
    for path in args.models:
        model = Embedder.load(path)
        people = sorted(model.validation_people())
        if people0 is not None and people != people0:
            raise SystemExit(f"{path}: other validation people than {args.models[0]} — not comparable")
        people0 = people
        emb, names, hard = validation_embeddings(model, people, args.lfw, cache_dir=args.cache, degraded=args.degraded)
        space, norm = centring(model, purpose="recognize"), score_norm(model)
        splits = halvings(names, args.halvings, args.seed)

        methods = ("nn", "centred", "asnorm") if space is not None else ("nn",)
        res = open_set_halvings(model, emb, names, splits, space, methods, norm=norm, degraded=hard)
        first = first or res
        for m in ("nn", "centred", "asnorm"):
            if m not in res:
                rows.append({"model": path, "method": m, "top-1": "n/a", "DIR at FAR 1 %": "n/a"})
                continue
            v = res[m]
            paired = ("" if res is first or m not in first else
                      f"{(v[:, 1] - first[m][:, 1]).mean():+.3f} ± {(v[:, 1] - first[m][:, 1]).std():.3f}")
            vs = ("" if m == "centred" or "centred" not in res else
                  f"{(v[:, 1] - res['centred'][:, 1]).mean():+.3f} ± {(v[:, 1] - res['centred'][:, 1]).std():.3f}")
            rows.append({"model": path, "method": m, **cells(v), "DIR paired": paired, "DIR - centred's": vs})
        print(f"{path}: {len(names)} faces of {len(people)} validation people, {args.halvings} halvings", flush=True)
        for k in (args.k or [space.k]) if space is not None and args.gammas else []:
            for g in args.gammas:
                v = open_set_halvings(model, emb, names, splits, Centring(space.cohort, k, g), ("centred",),
                                      degraded=hard)["centred"]
                rows.append({"model": path, "method": f"centred, k {k} gamma {g}", **cells(v)})
        for k in args.asnorm_k if norm is not None else []:
            v = open_set_halvings(model, emb, names, splits, None, ("asnorm",), norm=AsNorm(norm.cohort, k),
                                  degraded=hard)["asnorm"]
            rows.append({"model": path, "method": f"asnorm, K {k}", **cells(v)})
    print(f"(DIR paired: the model's DIR minus {args.models[0]}'s on the same halvings; DIR - centred's: the "
          "same model's method centred on the same halvings; mean ± sd)")
    print(table(rows, ["model", "method", "top-1", "DIR at FAR 1 %", "DIR paired", "DIR - centred's"]
                + (["degraded strangers accepted"] if args.degraded else [])))


if __name__ == "__main__":
    main()
