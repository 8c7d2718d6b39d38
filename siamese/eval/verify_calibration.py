"""Verification calibration on people the model never trained on (`siamese calibrate MODEL
fit=[verify]`): verify.json beside the model.

`calibrate` enrols N images of each unseen peopleDevTest person, probes with their other images
(genuine) and with other such people's (impostors), and picks the cut on the rule's score
(`siamese.verification.verifier`: "template", the cosine with the enrolled images' mean direction,
the default, with a cut per enrolment size; or "share", the share of matching enrolled images)
with the best accuracy, or the lowest cut within a false-accept rate. Both rules' best cut and
their lowest false-accept rate with a true-accept rate of at least 0.97 are reported side by side
("rules"). The result, with the model's identity (`Embedder.identity`), is saved as `verify.json`
beside the model; `siamese.verification.verifier.calibrated_rule` reads it back (and ignores one
fitted for another model). No TensorFlow here.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from siamese.data.cache import load_if_built
from siamese.data.lfw import LFW
from siamese.data.unseen import unseen_people
from siamese.faces.detect import Detector
from siamese.io.files import atomic_write_text
from siamese.verification.verifier import RULES, judge, template_scores

__all__ = ["ENROLL_SIZES", "HELD_OUT_SPLITS", "TEMPLATE_GRID", "calibrate", "draw_plan", "head_scores",
           "held_out", "levels", "lowest_far_at", "probe_people", "share_cuts", "share_levels", "template_cosines"]

TEMPLATE_GRID = np.round(np.arange(0.0, 0.991, 0.01), 3)  # template rule: cosines
ENROLL_SIZES = (1, 2, 3, 5)  # the template rule's cut is also fitted for these many enrolled images
HELD_OUT_SPLITS = 20  # random halvings of the calibration people for the held-out estimate (both ways)

log = logging.getLogger(__name__)


def draw_plan(lfw: LFW, people: dict[str, int], n_enroll: int, max_probes: int, repeats: int,
              rng: np.random.Generator) -> list[tuple]:
    """`repeats` random draws of, per person: (person, enrolled refs, genuine probe refs, impostor
    probe refs: other people's probes, as many as the genuine ones)."""
    plan = []
    for _ in range(repeats):
        draw = []
        for p, n in people.items():
            refs = lfw.identities({p: n})
            order = rng.permutation(len(refs))
            draw.append((p, [refs[i] for i in order[:n_enroll]],
                         [refs[i] for i in order[n_enroll:n_enroll + max_probes]]))
        for p, enrolled, genuine in draw:
            pool = [r for q, _, g in draw if q != p for r in g]
            pick = rng.choice(len(pool), min(len(genuine), len(pool)), replace=False)
            plan.append((p, enrolled, genuine, [pool[i] for i in pick]))
    return plan


def head_scores(embedder, plan: list[tuple], emb: dict) -> dict[str, np.ndarray]:
    """Per probe of the plan (genuine, then impostor probes of each entry): "share" of enrolled
    images the head matches at the model's pair threshold, "mean" head score over them, "single"
    (did the first enrolled image alone match?) and "same" (same person?)."""
    out = {"share": [], "mean": [], "single": [], "same": []}
    for _, enrolled, genuine, imp in plan:
        e = np.stack([emb[r] for r in enrolled])
        for probes, label in ((genuine, True), (imp, False)):
            x = np.stack([emb[r] for r in probes])
            scores = embedder.score(np.tile(e, (len(x), 1)),
                                    np.repeat(x, len(e), axis=0)).reshape(len(x), len(e))
            out["share"] += judge(scores, embedder.threshold, 0.5)[0].tolist()
            out["mean"] += scores.mean(1).tolist()
            out["single"] += (scores[:, 0] >= embedder.threshold).tolist()
            out["same"] += [label] * len(x)
    return {k: np.array(v) for k, v in out.items()}


def template_cosines(plan: list[tuple], emb: dict, n: int | None = None) -> np.ndarray:
    """Per probe of the plan (in `head_scores`' order): its cosine with the mean direction of the
    entry's enrolled images, or of its first `n` only (the same probes, a smaller enrolment)."""
    out = []
    for _, enrolled, genuine, imp in plan:
        e = np.stack([emb[r] for r in enrolled[:n]])
        for probes in (genuine, imp):
            out += template_scores(np.stack([emb[r] for r in probes]), e).tolist()
    return np.array(out)


def probe_people(plan: list[tuple]) -> np.ndarray:
    """Per probe of the plan (in `head_scores`' order): (n_probes, 2) str, the enrolled person and
    the probe's person (the same for a genuine probe)."""
    out = []
    for p, _, genuine, imp in plan:
        out += [(p, r.person) for r in (*genuine, *imp)]
    return np.array(out, dtype=object).reshape(-1, 2)


def held_out(scores: np.ndarray, people: np.ndarray, cuts, choose,
             splits: int = HELD_OUT_SPLITS, seed: int = 0) -> dict | None:
    """How a cut chosen on some people carries to others: the calibration people halved at random
    `splits` times; the cut `choose` picks from one half's `levels` is scored on the other half,
    both ways. A probe counts in a half only when its enrolled person and its own person are both
    in it (an impostor probe across halves counts in neither).

    Args:
        scores: (n_probes,) the rule's score per probe.
        people: (n_probes, 2) `probe_people` (a probe is genuine where the two are one person).
        cuts: the candidate cuts (the rule's grid).
        choose: list of levels -> the chosen level (or None: that half is skipped).
        splits, seed: halvings and their random draw.

    Returns:
        {"splits": halves scored, "cut", "accuracy", "tar", "far": {"mean", "std"} over them}, or None
        with fewer than 4 people or no half that yields a cut.
    """
    names, same = np.unique(people), people[:, 0] == people[:, 1]
    if len(names) < 4:
        return None
    rng, rows = np.random.default_rng(seed), []
    for _ in range(splits):
        half = set(rng.permutation(names)[:len(names) // 2].tolist())
        inside = np.array([a in half for a in people[:, 0]]) & np.array([b in half for b in people[:, 1]])
        outside = np.array([a not in half for a in people[:, 0]]) & np.array([b not in half for b in people[:, 1]])
        for fit, test in ((inside, outside), (outside, inside)):
            if not (same[fit].any() and (~same[fit]).any() and same[test].any() and (~same[test]).any()):
                continue
            picked = choose(levels(scores[fit], same[fit], cuts))
            if picked is not None:
                rows.append({"cut": picked["threshold"], **levels(scores[test], same[test], [picked["threshold"]])[0]})
    if not rows:
        return None
    return {"splits": len(rows), **{k: {"mean": round(float(np.mean([r[k] for r in rows])), 4),
                                        "std": round(float(np.std([r[k] for r in rows])), 4)}
                                    for k in ("cut", "accuracy", "tar", "far")}}


def levels(scores: np.ndarray, same: np.ndarray, cuts) -> list[dict]:
    """Accuracy, TAR and FAR at each cut (a face is accepted at or above it)."""
    out = []
    for cut in cuts:
        acc = float(((scores >= cut) == same).mean())
        out.append({"threshold": round(float(cut), 4), "accuracy": round(acc, 4),
                    "tar": round(float((scores[same] >= cut).mean()), 4),
                    "far": round(float((scores[~same] >= cut).mean()), 4)})
    return out


def share_cuts(n_enroll: int) -> np.ndarray:
    """The share rule's candidate cuts: halfway between the possible shares k / N of N enrolled."""
    return (np.arange(n_enroll) + 0.5) / n_enroll


def share_levels(shares: np.ndarray, same: np.ndarray, n_enroll: int) -> list[dict]:
    """`levels` at each cut between the possible shares k / N, with the share each asks for."""
    cuts = share_cuts(n_enroll)
    return [{"share_at_least": round(float(np.ceil(cut * n_enroll) / n_enroll), 4), **lv}
            for cut, lv in zip(cuts, levels(shares, same, cuts))]


def lowest_far_at(found: list[dict], tar: float = 0.97) -> dict | None:
    """The level with the lowest FAR among those whose TAR is at least `tar` (the highest cut)."""
    ok = [r for r in found if r["tar"] >= tar]
    return min(ok, key=lambda r: (r["far"], -r["threshold"])) if ok else None


def _choose(found: list[dict], far: float | None, warn: bool = True) -> dict:
    """The best-accuracy level, or the lowest cut whose FAR is within `far` (else the strictest)."""
    if far is None:
        return max(found, key=lambda r: (r["accuracy"], -r["far"]))
    ok = [r for r in found if r["far"] <= far]
    if not ok and warn:
        log.warning("no cut reaches FAR <= %g (at best %.4f): using the strictest", far, found[-1]["far"])
    return ok[0] if ok else found[-1]


def calibrate(embedder, lfw_root: str | os.PathLike | None = None, *, cache_dir=None,
              detector: Detector | None = None, n_enroll: int = 10, max_probes: int = 10,
              far: float | None = None, repeats: int = 5, limit_people: int | None = None,
              seed: int = 0, rule: str = "template", out: str | os.PathLike | None = None,
              overwrite: bool = False) -> dict:
    """Fit the verification threshold of `rule` on LFW people the model never saw, and save it.

    For each peopleDevTest person with at least `n_enroll` + 1 images (and not in the model's
    people.json), `n_enroll` random images are enrolled and up to `max_probes` others probe;
    as many impostor probes come from the other such people. A probe's score is, by `rule`, its
    cosine with the enrolled images' mean direction ("template") or the fraction of enrolled images
    whose head score reaches the model's pair threshold ("share", `siamese.verification.judge`).

    Args:
        embedder: a `siamese.model.Embedder`.
        lfw_root: LFW (default: LFW_ROOT, else data/lfw).
        cache_dir: the LFW face cache, used when it is aligned as the model expects.
        detector: for faces not served by the cache (default YuNet).
        n_enroll: enrolled images per person (the Verifier's default enrolment is 10).
        max_probes: genuine probes per person and draw.
        far: target false-accept rate per probe; None maximises accuracy.
        repeats: random enrol / probe draws pooled.
        limit_people: use only the first this many eligible people (tests).
        seed: for the random enrol / probe split and the impostor draw.
        rule: "template" or "share" (`siamese.verification.verifier`).
        out: where to write the result; None = `verify.json` beside the model; False = nowhere.
        overwrite: replace an existing `out`.

    Returns:
        {"rule", "verification_threshold", "match_threshold", "n_enroll", "criterion", "people",
        "genuine_probes", "impostor_probes", "accuracy", "tar", "far", "levels": [{threshold (cut),
        tar, far, accuracy}] of the rule; for "template" also "by_enrolled": {n: the level chosen}
        for 1, 2, 3, 5 and `n_enroll` enrolled images (the same probes against the first n of each
        enrolment); "rules": {rule: {"chosen": the level the criterion picks,
        "at_tar_0.97": the lowest FAR with TAR >= 0.97 (both in-sample), "held_out": {"chosen",
        "at_tar_0.97"}: `held_out`'s estimate of each on people the cut was not fitted on}} for both
        rules on the same probes,
        "single_image": pair accuracy/tar/far of one enrolled image, "model"}.
    """
    target = None if out is False else Path(out) if out else embedder.path / "verify.json"
    if target is not None and target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists — pass overwrite=true to recalibrate")
    if n_enroll < 2:
        raise ValueError(f"n_enroll={n_enroll}: the share of one image is all or nothing — use 2 or more")
    if rule not in RULES:
        raise ValueError(f"rule={rule!r}: one of {', '.join(RULES)}")
    lfw, rng = LFW(lfw_root), np.random.default_rng(seed)
    people = unseen_people(lfw, embedder.seen_people(), "view1_test", min_images=n_enroll + 1)
    people = dict(list(people.items())[:limit_people])
    if len(people) < 2:
        raise ValueError(f"{lfw.root}: only {len(people)} unseen peopleDevTest people with "
                         f"{n_enroll + 1}+ images — lower n_enroll")
    plan = draw_plan(lfw, people, n_enroll, max_probes, repeats, rng)
    refs = sorted({r for _, e, g, imp in plan for r in (*e, *g, *imp)}, key=lambda r: (r.person, r.index))
    vectors, kept = embedder.embed_refs(lfw, refs, load_if_built(cache_dir), detector)
    if len(kept) < len(refs):
        raise ValueError(f"{lfw.root}: {len(refs) - len(kept)} calibration photos could not be read — "
                         "check the LFW copy (`siamese data check`)")
    emb = dict(zip(kept, vectors))
    head = head_scores(embedder, plan, emb)
    same, single = head["same"], head["single"]
    rule_scores = {"template": template_cosines(plan, emb), "share": head["share"]}
    rule_cuts = {"template": TEMPLATE_GRID, "share": share_cuts(n_enroll)}
    every = {"template": levels(rule_scores["template"], same, TEMPLATE_GRID),
             "share": share_levels(rule_scores["share"], same, n_enroll)}
    chosen = {name: _choose(lv, far) for name, lv in every.items()}
    # The levels above are in-sample (cut and rates on the same people); the held-out estimate
    # fits each cut on half of the people and scores it on the other half.
    owners = probe_people(plan)
    choosers = {"chosen": lambda lv: _choose(lv, far, warn=False), "at_tar_0.97": lowest_far_at}
    held = {name: {what: held_out(rule_scores[name], owners, rule_cuts[name], pick, seed=seed)
                   for what, pick in choosers.items()} for name in every}
    best = chosen[rule]
    by_enrolled = {}  # template: a mean of fewer images is a noisier direction, its cosines lower
    if rule == "template":
        by_enrolled = {str(n): _choose(levels(template_cosines(plan, emb, n), same, TEMPLATE_GRID), far)
                       for n in ENROLL_SIZES if n < n_enroll}
        by_enrolled[str(n_enroll)] = best
    result = {"rule": rule, "verification_threshold": best["threshold"], "match_threshold": embedder.threshold,
              "n_enroll": n_enroll, "criterion": "accuracy" if far is None else f"far <= {far}",
              "people": len(people), "repeats": repeats, "genuine_probes": int(same.sum()),
              "impostor_probes": int((~same).sum()), **{k: best[k] for k in ("accuracy", "tar", "far")},
              "single_image": {"accuracy": round(float((single == same).mean()), 4),
                               "tar": round(float(single[same].mean()), 4),
                               "far": round(float(single[~same].mean()), 4)},
              "levels": every[rule], **({"by_enrolled": by_enrolled} if by_enrolled else {}),
              "rules": {name: {"chosen": chosen[name], "at_tar_0.97": lowest_far_at(lv), "held_out": held[name]}
                        for name, lv in every.items()},
              "data": f"LFW peopleDevTest (unseen), seed {seed}",
              "model": embedder.identity()}
    if target is not None:
        atomic_write_text(target, json.dumps(result, indent=2))
    log.info("verification threshold %.3f (%s rule, %s): accuracy %.4f, TAR %.4f, FAR %.4f on %d people",
             result["verification_threshold"], rule, result["criterion"], result["accuracy"],
             result["tar"], result["far"], result["people"])
    return result
