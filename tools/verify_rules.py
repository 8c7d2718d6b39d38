"""The two verification rules side by side on a model's *validation* people (held out of its
training; never the peopleDevTest people `siamese calibrate` fits on): "template" (a probe's
cosine with the enrolled images' mean direction) and "share" (the share of enrolled images the
head matches), the probes and enrolments drawn as `siamese calibrate` draws them.

    python tools/verify_rules.py default lfw_only --n-enroll 3 4 5 --repeats 40

For each model and enrolment size: AUC (the share's ties broken by the mean head score, so that
it ranks too) and the lowest false-accept rate at a true-accept rate of at least 0.97 and 0.99 (the
share rule at its own k / N cuts). Fewer validation people have more photos: few people, and
draws of the same people are not independent; read the differences with that in mind.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.metrics import roc_auc_score

from siamese.data.cache import load_if_built
from siamese.data.lfw import LFW
from siamese.eval.bench.table import table
from siamese.eval.verify_calibration import (
    TEMPLATE_GRID,
    draw_plan,
    head_scores,
    levels,
    lowest_far_at,
    share_levels,
    template_cosines,
)
from siamese.io.paths import lfw_cache
from siamese.model.embedder import Embedder


def compare(model: Embedder, lfw: LFW, cache, n_enroll: int, repeats: int, seed: int = 0) -> list[dict]:
    """Both rules' rows for one model and enrolment size on its validation people."""
    counts = lfw.people("view1_train")
    people = {p: counts[p] for p in sorted(model.validation_people()) if counts.get(p, 0) >= n_enroll + 1}
    if len(people) < 2:
        return []
    plan = draw_plan(lfw, people, n_enroll, 10, repeats, np.random.default_rng(seed))
    refs = sorted({r for _, e, g, imp in plan for r in (*e, *g, *imp)}, key=lambda r: (r.person, r.index))
    vectors, kept = model.embed_refs(lfw, refs, cache, None)
    emb = dict(zip(kept, vectors))
    head, cosines = head_scores(model, plan, emb), template_cosines(plan, emb)
    same = head["same"]
    rows = []
    tie_broken = head["share"] + 1e-3 * head["mean"]  # the share's ties broken by the mean head score (AUC only)
    for rule, score, found in (("template", cosines, levels(cosines, same, TEMPLATE_GRID)),
                               ("share", tie_broken, share_levels(head["share"], same, n_enroll))):
        row = {"model": str(model.path.name), "n_enroll": n_enroll, "people": len(people),
               "probes": int(len(same)), "rule": rule, "auc": round(float(roc_auc_score(same, score)), 5)}
        for tar in (0.97, 0.99):
            at = lowest_far_at(found, tar)
            row[f"far_at_tar_{tar}"] = at["far"] if at else None
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model dirs or shipped names (default, lfw_only, distilled, int8)")
    ap.add_argument("--n-enroll", type=int, nargs="+", default=[3, 4, 5], help="enrolled images per person")
    ap.add_argument("--repeats", type=int, default=40, help="random enrol / probe draws pooled")
    ap.add_argument("--lfw", default=None, help="the LFW copy (default: LFW_ROOT, data/lfw, ../shared/datasets/lfw)")
    ap.add_argument("--cache", default=str(lfw_cache("data/cache")), help="the aligned LFW face cache")
    args = ap.parse_args()
    lfw = LFW(args.lfw)
    cache = load_if_built(args.cache)
    rows = [r for m in args.models for n in args.n_enroll
            for r in compare(Embedder.load(m), lfw, cache, n, args.repeats)]
    print(table(rows))


if __name__ == "__main__":
    from siamese.cli import script

    script("verify_rules", main)
