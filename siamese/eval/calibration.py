"""Calibration on people the model never trained on: verification (verify.json) and clustering
(cluster.json), each saved beside the model (`siamese calibrate MODEL`).

Verification. `calibrate` enrols N images of each unseen peopleDevTest person, probes with their
other images (genuine) and with other such people's (impostors), and picks the cut on the rule's
score (`siamese.verification.verifier`: "template", the cosine with the enrolled images' mean
direction, the default; or "share", the share of matching enrolled images) with the best accuracy,
or the lowest cut within a false-accept rate. Both rules' best cut and their lowest false-accept rate
with a true-accept rate of at least 0.97 are reported side by side ("rules"). The result, with the
model's identity (`Embedder.identity`), is saved as `verify.json` beside the model;
`siamese.verification.verifier.calibrated_rule` reads it back (and ignores one fitted for another model).

Clustering. `calibrate_clustering` fits the agglomerative threshold and floor (`fit_clustering`),
and the other algorithms' own settings (`fit_other_algorithms`), on the model's validation people
— held out of training, listed in its people.json — and saves them as `cluster.json`, which
`siamese.clustering.settings` reads back. Training writes it.

Faces come from `siamese.data.unseen` (the LFW face cache when it is aligned as the model
expects, else the photos). No TensorFlow here: the shipped model runs on ONNX Runtime.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from siamese.clustering.graph import cluster_embeddings, knn
from siamese.clustering.linkage import agglomerative
from siamese.clustering.scores import bcubed_scores, pairwise_scores
from siamese.data.cache import load as load_cache
from siamese.data.lfw import LFW
from siamese.data.unseen import lfw_crops, unseen_people
from siamese.faces.detect import Detector, YuNetDetector
from siamese.gallery.calibrate import degraded_embeddings, impostors_from_lfw
from siamese.io.files import atomic_write_text
from siamese.model.modeldir import write_impostors
from siamese.verification.verifier import RULES, judge, template_scores

__all__ = ["calibrate", "calibrate_clustering", "calibrate_impostors", "fit_clustering", "fit_other_algorithms",
           "validation_embeddings", "validation_faces"]

COSINE_GRID = np.round(np.arange(0.1, 0.951, 0.025), 3)   # agglomerative: cosine similarities
SCORE_GRID = np.round(np.arange(0.02, 0.981, 0.02), 3)   # chinese_whispers / components: head scores
TEMPLATE_GRID = np.round(np.arange(0.0, 0.991, 0.01), 3)  # verification, template rule: cosines
ENROLL_SIZES = (1, 2, 3, 5)  # the template rule's cut is also fitted for these many enrolled images
EPS_GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)    # dbscan: cosine distances

log = logging.getLogger(__name__)


def _cache(cache_dir):
    """The face cache at `cache_dir` when one is built there, else None (faces then come from the photos)."""
    return load_cache(cache_dir) if cache_dir and (Path(cache_dir) / "build.json").is_file() else None


def _plan(lfw: LFW, people: dict[str, int], n_enroll: int, max_probes: int, repeats: int,
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


def _shares(embedder, plan: list[tuple], emb: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per probe of the plan: (share of enrolled images matching at the model's pair threshold,
    cosine with the enrolled images' mean direction, same person?, did the first enrolled image
    alone match?)."""
    shares, cosines, same, single = [], [], [], []
    for _, enrolled, genuine, imp in plan:
        e = np.stack([emb[r] for r in enrolled])
        for probes, label in ((genuine, True), (imp, False)):
            x = np.stack([emb[r] for r in probes])
            scores = embedder.score(np.tile(e, (len(x), 1)),
                                    np.repeat(x, len(e), axis=0)).reshape(len(x), len(e))
            shares += judge(scores, embedder.threshold, 0.5)[0].tolist()
            cosines += template_scores(x, e).tolist()
            single += (scores[:, 0] >= embedder.threshold).tolist()
            same += [label] * len(x)
    return np.array(shares), np.array(cosines), np.array(same), np.array(single)


def _template_cosines(plan: list[tuple], emb: dict, n: int) -> np.ndarray:
    """Per probe of the plan (in `_shares`' order): its cosine with the mean direction of the first
    `n` enrolled images only (the same probes, a smaller enrolment)."""
    out = []
    for _, enrolled, genuine, imp in plan:
        e = np.stack([emb[r] for r in enrolled[:n]])
        for probes in (genuine, imp):
            out += template_scores(np.stack([emb[r] for r in probes]), e).tolist()
    return np.array(out)


def _levels(scores: np.ndarray, same: np.ndarray, cuts) -> list[dict]:
    """Accuracy, TAR and FAR at each cut (a face is accepted at or above it)."""
    levels = []
    for cut in cuts:
        acc = float(((scores >= cut) == same).mean())
        levels.append({"threshold": round(float(cut), 4), "accuracy": round(acc, 4),
                       "tar": round(float((scores[same] >= cut).mean()), 4),
                       "far": round(float((scores[~same] >= cut).mean()), 4)})
    return levels


def _share_levels(shares: np.ndarray, same: np.ndarray, n_enroll: int) -> list[dict]:
    """`_levels` at each cut between the possible shares k / N, with the share each asks for."""
    cuts = (np.arange(n_enroll) + 0.5) / n_enroll
    return [{"share_at_least": round(float(np.ceil(cut * n_enroll) / n_enroll), 4), **lv}
            for cut, lv in zip(cuts, _levels(shares, same, cuts))]


def _at_tar(levels: list[dict], tar: float = 0.97) -> dict | None:
    """The level with the lowest FAR among those whose TAR is at least `tar` (the highest cut)."""
    ok = [r for r in levels if r["tar"] >= tar]
    return min(ok, key=lambda r: (r["far"], -r["threshold"])) if ok else None


def _choose(levels: list[dict], far: float | None) -> dict:
    """The best-accuracy level, or the lowest cut whose FAR is within `far` (else the strictest)."""
    if far is None:
        return max(levels, key=lambda r: (r["accuracy"], -r["far"]))
    ok = [r for r in levels if r["far"] <= far]
    if not ok:
        log.warning("no share cut reaches FAR <= %g (at best %.4f): using the strictest", far, levels[-1]["far"])
    return ok[0] if ok else levels[-1]


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
        tar, far, accuracy}] of the rule; for "template" also "by_enrolled": {n: cut} for 1, 2, 3, 5
        and `n_enroll` enrolled images (the same probes against the first n of each enrolment) and
        "by_enrolled_fit": {n: that level}; "rules": {rule: {"chosen": the level the criterion picks,
        "at_tar_0.97": the lowest FAR with TAR >= 0.97}} for both rules on the same probes,
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
    plan = _plan(lfw, people, n_enroll, max_probes, repeats, rng)
    refs = sorted({r for _, e, g, imp in plan for r in (*e, *g, *imp)}, key=lambda r: (r.person, r.index))
    vectors, kept = embedder.embed_refs(lfw, refs, _cache(cache_dir), detector)
    if len(kept) < len(refs):
        raise ValueError(f"{lfw.root}: {len(refs) - len(kept)} calibration photos could not be read — "
                         "check the LFW copy (`siamese data check`)")
    emb = dict(zip(kept, vectors))
    shares, cosines, same, single = _shares(embedder, plan, emb)
    every = {"template": _levels(cosines, same, TEMPLATE_GRID), "share": _share_levels(shares, same, n_enroll)}
    levels = every[rule]
    best = _choose(levels, far)
    by_enrolled = {}  # template: a mean of fewer images is a noisier direction, its cosines lower
    if rule == "template":
        for n in (*[k for k in ENROLL_SIZES if k < n_enroll], n_enroll):
            lv = levels if n == n_enroll else _levels(_template_cosines(plan, emb, n), same, TEMPLATE_GRID)
            by_enrolled[str(n)] = _choose(lv, far)
    result = {"rule": rule, "verification_threshold": best["threshold"], "match_threshold": embedder.threshold,
              "n_enroll": n_enroll, "criterion": "accuracy" if far is None else f"far <= {far}",
              "people": len(people), "repeats": repeats, "genuine_probes": int(same.sum()),
              "impostor_probes": int((~same).sum()), **{k: best[k] for k in ("accuracy", "tar", "far")},
              "single_image": {"accuracy": round(float((single == same).mean()), 4),
                               "tar": round(float(single[same].mean()), 4),
                               "far": round(float(single[~same].mean()), 4)},
              "levels": levels,
              **({"by_enrolled": {n: lv["threshold"] for n, lv in by_enrolled.items()},
                  "by_enrolled_fit": by_enrolled} if by_enrolled else {}),
              "rules": {name: {"chosen": _choose(lv, far), "at_tar_0.97": _at_tar(lv)} for name, lv in every.items()},
              "data": f"LFW peopleDevTest (unseen), seed {seed}",
              "model": embedder.identity()}
    if target is not None:
        atomic_write_text(target, json.dumps(result, indent=2))
    log.info("verification threshold %.3f (%s rule, %s): accuracy %.4f, TAR %.4f, FAR %.4f on %d people",
             result["verification_threshold"], rule, result["criterion"], result["accuracy"],
             result["tar"], result["far"], result["people"])
    return result


def fit_clustering(emb: np.ndarray, truth, thresholds=None, k: int = 10, hard: np.ndarray | None = None) -> dict:
    """The agglomerative settings (`siamese.clustering.linkage.agglomerative`) for labelled faces.

    floor, the bar for big groups: halfway between the mean cosine of same-person pairs and of
    different-person pairs. A big group's mean similarity to another settles near one or the
    other, and a validation set of mostly small groups cannot fit this bar itself (it barely
    has big groups; measured in docs/benchmarks.md).
    threshold, the bar for two single faces: a grid search for the best BCubed F1.

    Args:
        emb: (n, D) unit embeddings of people the model did not train on; truth: (n,) their ids.
        thresholds: to try (default: the floor, then 0.10 to 0.95 in steps of 0.025 above it).
        k: kNN shortlist.
        hard: or also (n, D) embeddings of a degraded copy of each face: the threshold then has
            the best mean of the clean and the degraded BCubed F1 (the floor stays the clean one).

    Returns:
        {"threshold", "floor", "k", "bcubed_f1" (clean faces), "same_mean", "different_mean",
        "grid": [[threshold, f1 (or the mean of both)], ...]}; with `hard` also "degraded":
        {"bcubed_f1_clean", "bcubed_f1_degraded", "false_merge_clean", "false_merge_degraded"}
        at the chosen threshold (false merges: 1 - pairwise precision).
    """

    emb = np.asarray(emb, np.float64)
    ids, inverse, sizes = np.unique(np.asarray(truth), return_inverse=True, return_counts=True)
    n = len(emb)
    per = np.zeros((len(ids), emb.shape[1]))
    np.add.at(per, inverse, emb)
    same_pairs = float((sizes * (sizes - 1)).sum())
    if not same_pairs:
        raise ValueError("clustering calibration needs someone with two or more faces")
    # Sums over ordered pairs i != j of x_i . x_j, from the per-person and overall sums.
    same_sum = float(((per ** 2).sum(1) - sizes).sum())
    all_sum = float((emb.sum(0) ** 2).sum() - n)
    same_mean = same_sum / same_pairs
    diff_mean = (all_sum - same_sum) / (n * (n - 1) - same_pairs)
    floor = round((same_mean + diff_mean) / 2, 4)
    if thresholds is None:  # 0.10 to 0.95 in steps of 0.025, none below the floor
        thresholds = [floor, *(t for t in COSINE_GRID if t > floor)]
    sets = [emb.astype(np.float32)] + ([] if hard is None else [np.asarray(hard, np.float32)])
    sets = [(x, knn(x, k)) for x in sets]

    # Each threshold's labels of the clean faces, then (with `hard`) of the degraded ones.
    runs = {float(t): [agglomerative(x, float(t), floor, k, near) for x, near in sets]
            for t in thresholds if t >= floor}
    grid = [[t, round(float(np.mean([bcubed_scores(truth, lab)["f1"] for lab in found])), 4)]
            for t, found in runs.items()]
    if not grid:
        raise ValueError(f"no threshold to try at or above the floor {floor:.3f}")
    t = max(grid, key=lambda r: (r[1], r[0]))[0]  # ties: the stricter threshold
    found = runs[t]
    out = {"threshold": t, "floor": floor, "k": k, "bcubed_f1": round(bcubed_scores(truth, found[0])["f1"], 4),
           "same_mean": round(same_mean, 4), "different_mean": round(diff_mean, 4), "grid": grid}
    if hard is not None:
        out["degraded"] = {f"{m}_{w}": round(v, 4) for w, lab in zip(("clean", "degraded"), found)
                           for m, v in (("bcubed_f1", bcubed_scores(truth, lab)["f1"]),
                                        ("false_merge", 1 - pairwise_scores(truth, lab)["precision"]))}
    return out


def fit_other_algorithms(emb: np.ndarray, truth, score_fn, k: int = 10, min_samples: int = 2) -> dict:
    """The settings of chinese_whispers, components and dbscan for labelled faces: for each, the
    best BCubed F1 over a grid (ties: the stricter setting), as agglomerative's threshold is fitted.

    Args:
        emb: (n, D) unit embeddings of people the model did not train on; truth: (n,) their ids.
        score_fn: the model's pair scorer (the graph algorithms' edges).
        k: kNN shortlist. min_samples: dbscan's, fixed (its eps is fitted for it).

    Returns:
        {"chinese_whispers": {"threshold", "bcubed_f1", "grid"}, "components": {same},
        "dbscan": {"eps", "min_samples", "bcubed_f1", "grid"}}; grid: [[setting, f1], ...].
    """
    emb = np.asarray(emb, np.float32)

    def f1(labels):
        return round(bcubed_scores(truth, labels)["f1"], 4)

    out = {}
    for algorithm in ("chinese_whispers", "components"):
        grid = [[float(t), f1(cluster_embeddings(emb, score_fn, float(t), algorithm, k=k))] for t in SCORE_GRID]
        t, best = max(grid, key=lambda r: (r[1], r[0]))
        out[algorithm] = {"threshold": t, "bcubed_f1": best, "grid": grid}
    grid = [[float(e), f1(cluster_embeddings(emb, score_fn, None, "dbscan", k=k, eps=float(e),
                                            min_samples=min_samples))] for e in EPS_GRID]
    e, best = max(grid, key=lambda r: (r[1], -r[0]))  # ties: the smaller radius
    out["dbscan"] = {"eps": e, "min_samples": min_samples, "bcubed_f1": best, "grid": grid}
    return out


def validation_embeddings(embedder, people: list[str], lfw_root=None, *, cache_dir=None,
                          detector: Detector | None = None, degraded: bool = False, seed: int = 0
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The LFW (DevTrain) photos of `people` embedded by `embedder` its own way
    (`Embedder.embed_refs`): ((n, D) embeddings, (n,) person names, and with `degraded` (n, D)
    embeddings of a harder copy of each, else None). With `degraded`, photos without a face to
    make harder (`siamese.gallery.calibrate.degraded_embeddings`) are left out of all three."""
    lfw = LFW(lfw_root)
    counts = lfw.people("view1_train")
    refs = lfw.identities({p: counts[p] for p in people if p in counts})
    cache = _cache(cache_dir)
    emb, kept = embedder.embed_refs(lfw, refs, cache, detector)
    names = np.array([r.person for r in kept])
    if not degraded:
        return emb, names, None
    hard, ok = degraded_embeddings(embedder, lfw, kept, cache, detector or YuNetDetector(), seed)
    return emb[ok], names[ok], hard


def validation_faces(embedder, people: list[str], lfw_root=None, *, cache_dir=None,
                     detector: Detector | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The LFW (DevTrain) photos of `people` (a model's validation people), aligned for `embedder`.

    Returns:
        ((n, S, S, 3) uint8 faces at `embedder.input_size`, (n,) person names).
    """
    lfw = LFW(lfw_root)
    counts = lfw.people("view1_train")
    refs = lfw.identities({p: counts[p] for p in people if p in counts})
    crops, kept = lfw_crops(lfw, refs, *embedder.alignment, cache=_cache(cache_dir), detector=detector)
    return embedder.prepare(crops), np.array([r.person for r in kept])


def calibrate_clustering(embedder, lfw_root: str | os.PathLike | None = None, *, cache_dir=None,
                         detector: Detector | None = None, faces: np.ndarray | None = None,
                         labels=None, embeddings: np.ndarray | None = None,
                         out: str | os.PathLike | None = None, overwrite: bool = False,
                         degraded: bool = False, seed: int = 0) -> dict:
    """Fit every clustering algorithm's settings on the model's validation people; save them.

    Args:
        embedder: a `siamese.model.Embedder`.
        lfw_root, cache_dir, detector: where the validation people's LFW faces come from (as for
            `calibrate`); unused when `faces` is given.
        faces, labels: or the faces themselves, (n, S, S, 3) uint8 at the model's input size,
            and (n,) person ids (training passes its validation set).
        embeddings: or their (n, D) embeddings already, with `labels`.
        out: None = `cluster.json` beside the model; False = nowhere. overwrite: replace it.
        degraded: fit agglomerative's threshold for clean and degraded photos alike
            (`fit_clustering`'s `hard`: a harder copy of each validation photo, seeded by `seed`);
            needs the photos, so not with `faces` or `embeddings`.

    Returns:
        {"threshold", "floor", "k", "bcubed_f1", "grid" (agglomerative's, as `fit_clustering`),
        "algorithms" (the others', as `fit_other_algorithms`), "people", "faces", "data", "model"}.
    """
    target = None if out is False else Path(out) if out else embedder.path / "cluster.json"
    if target is not None and target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists — pass overwrite=True (--overwrite) to recalibrate")
    data, hard = "validation people (held out of training)", None
    if degraded and (faces is not None or embeddings is not None):
        raise ValueError("a degraded clustering calibration makes its harder faces from the LFW photos: "
                         "call it without faces or embeddings")
    if faces is not None:
        embeddings = embedder.embed(faces)
    elif embeddings is None:
        embeddings, labels, hard = validation_embeddings(embedder, embedder.validation_people(), lfw_root,
                                                         cache_dir=cache_dir, detector=detector,
                                                         degraded=degraded, seed=seed)
        data = "LFW validation people (held out of training)" + (", and a degraded copy of each" if degraded else "")
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise ValueError("clustering calibration needs faces of at least two people")
    result = {**fit_clustering(embeddings, labels, hard=hard),
              "algorithms": fit_other_algorithms(embeddings, labels, embedder.score),
              "people": int(len(np.unique(labels))), "faces": int(len(labels)), "data": data,
              "model": embedder.identity()}
    if target is not None:
        atomic_write_text(target, json.dumps(result, indent=1))
    log.info("clustering: threshold %.3f, floor %.3f -> BCubed F1 %.4f on %d validation people "
             "(%d faces)", result["threshold"], result["floor"], result["bcubed_f1"],
             result["people"], result["faces"])
    for name, a in result["algorithms"].items():
        log.info("clustering, %s: %s -> BCubed F1 %.4f", name,
                 ", ".join(f"{k} {v}" for k, v in a.items() if k not in ("bcubed_f1", "grid")), a["bcubed_f1"])
    return result


def calibrate_impostors(embedder, lfw_root=None, *, cache_dir=None, detector=None, people: int = 1000,
                        degraded: bool = False, seed: int = 0, overwrite: bool = False) -> dict:
    """Write the model's stranger bank (`siamese.model.modeldir.write_impostors`): one face each of
    `people` LFW people it never saw (`siamese.gallery.calibrate.impostors_from_lfw`), so a
    gallery can be calibrated where no LFW copy is."""
    if (embedder.path / "impostors.npy").exists() and not overwrite:
        raise FileExistsError(f"{embedder.path / 'impostors.npy'} exists — pass overwrite=true to refit it")
    vectors, names, source = impostors_from_lfw(embedder, lfw_root, cache_dir=cache_dir, detector=detector,
                                                people=people, seed=seed, degraded=degraded)
    write_impostors(embedder.path, vectors, names, source, embedder.identity())
    return {"impostors": len(names), "people": len(set(names)), "source": source}
