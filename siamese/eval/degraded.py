"""Do calibrated thresholds hold on harder photos? Their false-accept rates on a degraded copy of
LFW people the model never saw (`siamese bench degraded`).

Each unseen View 1 DevTest person's photos are embedded twice: as they are, and made harder by
one of `siamese.data.degrade.KINDS` (small face, JPEG 30, blur, greyscale, strong light; chosen
in turn, seeded). Then each calibrated threshold is applied where it would be in use:

- pair: the model's own pair threshold (model.json) on pairs of different people: clean-clean
  (what it was fitted for), clean-degraded, degraded-degraded;
- unknown: a gallery of one clean face per person for half the people; the other half are the
  strangers, one degraded face each; the threshold is calibrated to `far_target` on clean LFW
  strangers (as `siamese gallery calibrate` does by default) or on clean and degraded ones;
- verify: `siamese verify`'s rule (verify.json's rule and threshold, 10 clean enrolled images) for
  degraded probes of other people;
- cluster: the people's faces, clean and degraded, clustered with cluster.json's settings (the
  default agglomerative, and `average` where cluster.json has it): the share of different-people
  pairs put together (1 - pairwise precision).

Beside them, "verification": how well the same faces' pairs are told apart at all (AUC, and the
share of same-person pairs the pair threshold accepts), clean and degraded.

Every figure is "how many strangers got through" against the target it was calibrated for.
"""

from __future__ import annotations

import logging

import numpy as np

from siamese.clustering.graph import cluster_embeddings
from siamese.clustering.group import clustering_settings
from siamese.clustering.scores import pairwise_scores
from siamese.data.cache import FaceCache
from siamese.data.degrade import KINDS
from siamese.data.lfw import LFW
from siamese.data.unseen import sample_refs, unseen_people
from siamese.eval.metrics import roc_auc, tar_at_far
from siamese.gallery.calibrate import degraded_embeddings
from siamese.gallery.recognize import Recognizer, calibrate
from siamese.model.centre import centring, score_norm
from siamese.verification.verifier import calibrated_rule, judge, template_scores

__all__ = ["degraded_faces", "report"]

log = logging.getLogger(__name__)


def degraded_faces(embedder, lfw: LFW, cache: FaceCache, n_people: int = 1200, per_person: int = 2,
                   seed: int = 0) -> dict:
    """Clean and degraded embeddings of `n_people` random unseen DevTest people (2+ photos each,
    `per_person` of them), and of every photo of those with 11+ (for `siamese verify`'s rule).

    Returns:
        {"clean": (n, D), "degraded": (n, D), "names": (n,), "kinds": (n,) degradation of each}.
    """
    rng = np.random.default_rng(seed)
    in_cache = {r.person for r in cache.refs}  # the degraded copies start from the cache's faces
    people = {p: n for p, n in unseen_people(lfw, embedder.seen_people(), min_images=2).items() if p in in_cache}
    refs = set(sample_refs(people, rng, n_people, per_person))
    refs |= set(lfw.identities({p: n for p, n in people.items() if n > 10}))
    refs = sorted(refs & set(cache.refs), key=lambda r: (r.person, r.index))
    clean, kept = embedder.embed_refs(lfw, refs, cache)
    hard, ok = degraded_embeddings(embedder, lfw, kept, cache, None, seed)  # every ref is in the cache
    kinds = np.array([KINDS[i % len(KINDS)] for i in range(len(kept))])
    return {"clean": clean[ok], "degraded": hard, "names": np.array([r.person for r in kept])[ok],
            "kinds": kinds[ok]}


def _impostor_pairs(names: np.ndarray, rng: np.random.Generator, n: int = 20000) -> np.ndarray:
    a, b = rng.integers(0, len(names), (2, n))
    keep = names[a] != names[b]
    return np.stack([a[keep], b[keep]], 1)


def _pair_far(embedder, x: np.ndarray, y: np.ndarray, pairs: np.ndarray) -> float:
    return float((embedder.score(x[pairs[:, 0]], y[pairs[:, 1]]) >= embedder.threshold).mean())


def _unknown(embedder, f: dict, far_target: float, rng: np.random.Generator) -> dict:
    """The open-set rule: clean gallery, degraded strangers; thresholds from clean impostors, or
    from clean and degraded ones (disjoint people from the test strangers)."""
    people = rng.permutation(sorted(set(f["names"].tolist())))
    g, cal_p, test_p = np.array_split(people, 3)
    first = {p: i for i, p in reversed(list(enumerate(f["names"])))}  # one face per person
    gi = np.array([first[p] for p in g])
    rec = Recognizer(embedder, f["clean"][gi], np.arange(len(gi)), list(g))
    cal_i = np.array([first[p] for p in cal_p])
    test_i = np.array([first[p] for p in test_p])
    clean_thr = calibrate(rec, f["clean"][cal_i], far_target)["threshold"]
    mixed_thr = calibrate(rec, np.concatenate([f["clean"][cal_i], f["degraded"][cal_i]]), far_target)["threshold"]
    _, s_deg = rec.rank(f["degraded"][test_i], top=1)
    _, s_clean = rec.rank(f["clean"][test_i], top=1)
    by_method = {}
    # `siamese recognize`'s default method (asnorm) and the one before it (centred), on clean impostors
    space, norm = centring(embedder, purpose="recognize"), score_norm(embedder)
    for kind, ok in (("centred", space is not None), ("asnorm", norm is not None)):
        if not ok:
            continue
        rc = Recognizer(embedder, f["clean"][gi], np.arange(len(gi)), list(g), method=kind, space=space, norm=norm)
        thr = calibrate(rc, f["clean"][cal_i], far_target, kind)["threshold"]
        c_clean, c_deg = (rc.rank(f[w][test_i], kind, top=1)[1][:, 0] for w in ("clean", "degraded"))
        by_method[f"{kind}_calibration"] = {"threshold": round(thr, 4),
                                            "far_clean": round(float((c_clean >= thr).mean()), 4),
                                            "far_degraded": round(float((c_deg >= thr).mean()), 4)}
    return {"target": far_target, "strangers": len(test_i), **by_method,
            "clean_calibration": {"threshold": round(clean_thr, 4),
                                  "far_clean": round(float((s_clean[:, 0] >= clean_thr).mean()), 4),
                                  "far_degraded": round(float((s_deg[:, 0] >= clean_thr).mean()), 4)},
            "mixed_calibration": {"threshold": round(mixed_thr, 4),
                                  "far_clean": round(float((s_clean[:, 0] >= mixed_thr).mean()), 4),
                                  "far_degraded": round(float((s_deg[:, 0] >= mixed_thr).mean()), 4)}}


def _verify(embedder, f: dict, n_enroll: int = 10) -> dict | None:
    """verify.json's rule and threshold: 10 clean enrolled images per person, degraded probes of others."""
    cal = calibrated_rule(embedder, embedder.threshold)
    names = f["names"]
    big = [p for p in sorted(set(names.tolist())) if (names == p).sum() > n_enroll]
    if cal is None or len(big) < 2:
        return None
    rule, threshold = cal.name, cal.cut(n_enroll)
    fars = []
    for p in big:
        enrolled = f["clean"][np.flatnonzero(names == p)[:n_enroll]]
        probes = f["degraded"][names != p]
        if rule == "template":
            fars.append((template_scores(probes, enrolled) >= threshold).mean())
            continue
        scores = embedder.score(np.tile(enrolled, (len(probes), 1)),
                                np.repeat(probes, len(enrolled), axis=0)).reshape(len(probes), -1)
        fars.append(judge(scores, embedder.threshold, threshold)[1].mean())
    fitted = embedder.calibration("verify.json") or {}
    return {"rule": rule, "threshold": threshold, "people": len(big), "far_fitted": fitted.get("far"),
            "far_degraded": round(float(np.mean(fars)), 4)}


def _same_pairs(names: np.ndarray, rng: np.random.Generator, n: int = 20000) -> np.ndarray:
    """Up to `n` pairs of two faces of one person (every such pair when there are fewer)."""
    a, b = np.triu_indices(len(names), 1)
    pairs = np.stack([a, b], 1)[names[a] == names[b]]
    return pairs[rng.choice(len(pairs), n, replace=False)] if len(pairs) > n else pairs


def _verification(embedder, f: dict, impostors: np.ndarray, rng: np.random.Generator) -> dict:
    """How well pairs are told apart when photos are harder, for clean-clean, clean-degraded and
    degraded-degraded pairs of the same faces: AUC; "tar", the share of same-person pairs the
    model's own pair threshold accepts (its false accepts are in "pair"; models with different
    thresholds do not compare by it); and "tar_at_far_1pct", the share accepted at the score that
    lets 1 % of these different-person pairs through (one operating point for every model)."""
    same = _same_pairs(f["names"], rng)
    out = {"same_pairs": len(same), "different_pairs": len(impostors)}
    for key, (x, y) in {"clean": ("clean", "clean"), "clean_vs_degraded": ("clean", "degraded"),
                        "degraded": ("degraded", "degraded")}.items():
        s = embedder.score(f[x][same[:, 0]], f[y][same[:, 1]])
        d = embedder.score(f[x][impostors[:, 0]], f[y][impostors[:, 1]])
        scores, same_person = np.concatenate([s, d]), np.r_[np.ones(len(s)), np.zeros(len(d))]
        out[key] = {"auc": round(roc_auc(scores, same_person), 4),
                    "tar": round(float((s >= embedder.threshold).mean()), 4),
                    "tar_at_far_1pct": round(tar_at_far(scores, same_person, 0.01)[0], 4)}
    return out


def _cluster(embedder, f: dict) -> dict | None:
    """{"false_merge_clean", "false_merge_degraded"} of the default agglomerative clustering, and
    the same under "average" when cluster.json has its threshold; None without cluster.json."""
    cal = clustering_settings(embedder)
    if cal is None:
        return None
    space = centring(embedder, cal)  # both algorithms here compare faces in cluster.json's space
    faces = {which: f[which] if space is None else space(f[which]) for which in ("clean", "degraded")}

    def false_merges(algorithm: str, threshold: float, floor: float | None) -> dict:
        return {f"false_merge_{which}": round(1 - pairwise_scores(f["names"], cluster_embeddings(
            faces[which], embedder.score, threshold, algorithm, k=cal["k"], floor=floor))["precision"], 4)
            for which in ("clean", "degraded")}

    out = false_merges("agglomerative", cal["threshold"], cal["floor"])
    if "threshold" in (average := (cal.get("algorithms") or {}).get("average") or {}):
        out["average"] = {"threshold": average["threshold"], **false_merges("average", average["threshold"], None)}
    return out


def report(embedder, lfw: LFW, cache: FaceCache, n_people: int = 1200, per_person: int = 2,
           far_target: float = 0.01, seed: int = 0) -> dict:
    """Every calibrated threshold's false accepts, clean and degraded (see the module docstring)."""
    f = degraded_faces(embedder, lfw, cache, n_people, per_person, seed)
    rng = np.random.default_rng(seed)
    pairs = _impostor_pairs(f["names"], rng)
    pair = {"threshold": round(float(embedder.threshold), 4), "pairs": len(pairs),
            "far_clean": round(_pair_far(embedder, f["clean"], f["clean"], pairs), 4),
            "far_clean_vs_degraded": round(_pair_far(embedder, f["clean"], f["degraded"], pairs), 4),
            "far_degraded": round(_pair_far(embedder, f["degraded"], f["degraded"], pairs), 4),
            "far_degraded_by_kind": {k: round(_pair_far(embedder, f["degraded"], f["degraded"],
                                                        pairs[f["kinds"][pairs[:, 0]] == k]), 4) for k in KINDS}}
    return {"model": str(embedder.path), "faces": len(f["names"]), "people": len(set(f["names"].tolist())),
            "pair": pair, "unknown": _unknown(embedder, f, far_target, rng), "verify": _verify(embedder, f),
            "cluster": _cluster(embedder, f),
            "verification": _verification(embedder, f, pairs, np.random.default_rng([seed, 1]))}


def rows(r: dict) -> list[dict]:
    """`report` as table rows: threshold, target, clean FAR, degraded FAR."""
    out = [{"threshold": "pair (model.json)", "value": r["pair"]["threshold"], "target": "-",
            "far_clean": r["pair"]["far_clean"], "far_degraded": r["pair"]["far_degraded"]}]
    for name in ("clean_calibration", "mixed_calibration", "centred_calibration", "asnorm_calibration"):
        if name not in r["unknown"]:
            continue
        u = r["unknown"][name]
        what = (f"{name.split('_')[0]}, clean impostors" if name in ("centred_calibration", "asnorm_calibration")
                else f"{name.split('_')[0]} impostors")
        out.append({"threshold": f"unknown ({what})", "value": u["threshold"],
                    "target": r["unknown"]["target"], "far_clean": u["far_clean"], "far_degraded": u["far_degraded"]})
    if r["verify"]:
        v = r["verify"]
        out.append({"threshold": f"verify ({v['rule']}, 10 enrolled)", "value": v["threshold"],
                    "target": v["far_fitted"], "far_clean": v["far_fitted"], "far_degraded": v["far_degraded"]})
    if r["cluster"]:
        c = r["cluster"]
        out.append({"threshold": "cluster (false merges)", "value": "cluster.json", "target": "-",
                    "far_clean": c["false_merge_clean"], "far_degraded": c["false_merge_degraded"]})
        if "average" in c:
            a = c["average"]
            out.append({"threshold": "cluster, algorithm=average (false merges)", "value": a["threshold"],
                        "target": "-", "far_clean": a["false_merge_clean"], "far_degraded": a["false_merge_degraded"]})
    return out

