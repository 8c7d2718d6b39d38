"""Calibration on people the model never trained on: clustering (cluster.json) and the stranger
bank (impostors.npy), each saved beside the model (`siamese calibrate MODEL`); verification
(verify.json) is `siamese.eval.verify_calibration`'s.

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
from siamese.data.cache import load_if_built
from siamese.data.lfw import LFW, ImageRef
from siamese.data.unseen import lfw_crops
from siamese.eval.openset import fit_recognize_gamma
from siamese.faces.detect import Detector, YuNetDetector
from siamese.gallery.calibrate import degraded_embeddings, impostors_from_lfw
from siamese.io.files import atomic_write_text
from siamese.model.centre import Centring, centring
from siamese.model.modeldir import COHORT, write_cohort, write_impostors

__all__ = ["calibrate_clustering", "calibrate_impostors", "calibrate_recognize", "choose_centring", "cohort_embeddings",
           "fit_average", "fit_clustering", "fit_other_algorithms", "held_out_clustering",
           "validation_embeddings", "validation_faces"]

COSINE_GRID = np.round(np.arange(0.1, 0.951, 0.025), 3)   # agglomerative: cosine similarities
SCORE_GRID = np.round(np.arange(0.02, 0.981, 0.02), 3)   # chinese_whispers / components: head scores
EPS_GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)    # dbscan: cosine distances

log = logging.getLogger(__name__)


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


def fit_average(emb: np.ndarray, truth, k: int = 10) -> dict:
    """Average linkage's one bar for every group size (`algorithm=average`): the threshold over
    `COSINE_GRID` with the best BCubed F1 (ties: the stricter one).

    Args:
        emb: (n, D) unit embeddings of people the model did not train on; truth: (n,) their ids.

    Returns:
        {"threshold", "bcubed_f1", "grid": [[threshold, f1], ...]}.
    """
    emb = np.asarray(emb, np.float32)
    near = knn(emb, k)
    grid = [[float(t), round(bcubed_scores(truth, agglomerative(emb, float(t), float(t), k, near))["f1"], 4)]
            for t in COSINE_GRID]
    t, best = max(grid, key=lambda r: (r[1], r[0]))
    return {"threshold": t, "bcubed_f1": best, "grid": grid}


def held_out_clustering(emb: np.ndarray, truth, halvings: int = 20, seed: int = 0, k: int = 10) -> dict | None:
    """How agglomerative's fitted settings carry to people they were not fitted on: the people are
    halved at random `halvings` times; on each half the threshold and floor are fitted as
    `fit_clustering` fits them (clean faces) and scored on the other half, both ways. The same labels
    and seed give the same halvings, so candidates (plain, each centring) are compared on the same ones.

    Args:
        emb: (n, D) unit embeddings; truth: (n,) person ids.

    Returns:
        {"bcubed_f1": mean, "std": sample std, "scores": every half's F1} over the halvings, or None
        when there are fewer than four people or no halving has a half to fit on (someone with two faces).
    """
    emb, truth = np.asarray(emb, np.float32), np.asarray(truth)
    people = np.unique(truth)
    if len(people) < 4:
        return None
    rng, scores = np.random.default_rng(seed), []
    for _ in range(halvings):
        first = np.isin(truth, rng.permutation(people)[:len(people) // 2])
        for fit, held in ((first, ~first), (~first, first)):
            try:
                f = fit_clustering(emb[fit], truth[fit], k=k)
            except ValueError:  # no one with two faces in this half: nothing to fit
                continue
            scores.append(bcubed_scores(truth[held], agglomerative(emb[held], f["threshold"], f["floor"], k))["f1"])
    if not scores:
        return None
    return {"bcubed_f1": round(float(np.mean(scores)), 4),
            "std": round(float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0, 4), "scores": scores}


def choose_centring(emb: np.ndarray, truth, cohort: np.ndarray, k: int, gamma: float, gammas=(), margin: float = 0.01,
                    halvings: int = 20, seed: int = 0) -> dict | None:
    """The locally centred space (`siamese.model.centre`) agglomerative clusters a model's faces best
    in, judged on people the settings were not fitted on (`held_out_clustering`, the same halvings for
    every candidate): gamma stays `gamma` unless one of `gammas` beats it by more than `margin`, and the
    space is centred only if that gamma beats the plain space.

    Args:
        emb: (n, D) unit embeddings of the validation people; truth: (n,) their ids.
        cohort: (m, D) the model's cohort; k: cohort neighbours per face.

    Returns:
        {"centred": bool, "gamma" (chosen), "k", "held_out": {"plain" or "gamma G": {"bcubed_f1", "std"}},
        "halvings", "margin"}, or None when the validation people are too few to halve.
    """
    held = {"plain": held_out_clustering(emb, truth, halvings, seed)}
    if held["plain"] is None:
        return None
    for g in sorted({float(gamma), *map(float, gammas)}):
        held[g] = held_out_clustering(Centring(cohort, k, g)(emb), truth, halvings, seed)
    f1 = {key: r["bcubed_f1"] for key, r in held.items()}
    kept = {key if key == "plain" else f"gamma {key}": {"bcubed_f1": r["bcubed_f1"], "std": r["std"]}
            for key, r in held.items()}
    by_gamma = {g: v for g, v in f1.items() if g != "plain"}
    best = max(by_gamma, key=lambda g: (by_gamma[g], g == float(gamma)))
    chosen = best if by_gamma[best] > by_gamma[float(gamma)] + margin else float(gamma)
    log.info("clustering, local centring held out (%d halvings): plain %.4f, %s -> %s", halvings, f1["plain"],
             ", ".join(f"gamma {g}: {v:.4f}" for g, v in by_gamma.items()),
             f"gamma {chosen}" if by_gamma[chosen] > f1["plain"] else "plain")
    return {"centred": by_gamma[chosen] > f1["plain"], "gamma": chosen, "k": int(k),
            "held_out": kept, "halvings": int(halvings), "margin": float(margin)}


def fit_other_algorithms(emb: np.ndarray, truth, score_fn, k: int = 10, min_samples: int = 2) -> dict:
    """The settings of average, chinese_whispers, components and dbscan for labelled faces: for
    each, the best BCubed F1 over a grid (ties: the stricter setting), as agglomerative's threshold
    is fitted (average: its one bar over `COSINE_GRID`).

    Args:
        emb: (n, D) unit embeddings of people the model did not train on; truth: (n,) their ids.
        score_fn: the model's pair scorer (the graph algorithms' edges).
        k: kNN shortlist. min_samples: dbscan's, fixed (its eps is fitted for it).

    Returns:
        {"average": {"threshold", "bcubed_f1", "grid"}, "chinese_whispers": {same}, "components": {same},
        "dbscan": {"eps", "min_samples", "bcubed_f1", "grid"}}; grid: [[setting, f1], ...].
    """
    emb = np.asarray(emb, np.float32)

    def f1(labels):
        return round(bcubed_scores(truth, labels)["f1"], 4)

    out = {"average": fit_average(emb, truth, k)}
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
    cache = load_if_built(cache_dir)
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
    crops, kept = lfw_crops(lfw, refs, *embedder.alignment, cache=load_if_built(cache_dir), detector=detector)
    return embedder.prepare(crops), np.array([r.person for r in kept])


def calibrate_clustering(embedder, lfw_root: str | os.PathLike | None = None, *, cache_dir=None,
                         detector: Detector | None = None, faces: np.ndarray | None = None,
                         labels=None, embeddings: np.ndarray | None = None,
                         out: str | os.PathLike | None = None, overwrite: bool = False,
                         degraded: bool = False, seed: int = 0, centre: dict | None = None,
                         halvings: int = 20, data: str | None = None) -> dict:
    """Fit every clustering algorithm's settings on the model's validation people; save them.

    The validation F1s the settings are chosen by are in-sample (the same people fit and score them);
    "held_out" says how they carry to other people (`held_out_clustering`: fitted on half the people,
    scored on the rest, `halvings` random halvings both ways; absent with fewer than four people).

    With `centre` ({"k", "gamma", "faces", "degraded", and optionally "gammas", "margin"}) and the LFW
    photos (the cohort's), agglomerative is also fitted in the locally centred space
    (`siamese.model.centre`: a cohort of `faces` faces of the model's training people, one each,
    `cohort_embeddings`), and kept, with average's bar, when it clusters held-out validation people
    better than the plain space (`choose_centring`: gamma stays `gamma` unless one of `gammas` beats it
    there by more than `margin`; with fewer than four people, when its in-sample F1 is higher). The
    cohort is then saved as cluster_cohort.npy and named in cluster.json "centre"; "centring" records
    the F1s either way. (1:N's own gamma in that space is `calibrate_recognize`'s, fitted after this one.)

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
        halvings: random halvings of the validation people for the held-out figures.
        data: what the faces are, for the record (default: says where they came from).

    Returns:
        {"threshold", "floor", "k", "bcubed_f1", "grid" (agglomerative's, as `fit_clustering`),
        "held_out": {"bcubed_f1", "std", "halvings", "space"}, "algorithms" (the others', as
        `fit_other_algorithms`), "people", "faces", "data", "model"}.
    """
    target = None if out is False else Path(out) if out else embedder.path / "cluster.json"
    if target is not None and target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists — pass overwrite=True (--overwrite) to recalibrate")
    data, hard = data or "validation people (held out of training)", None
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
    fit = fit_clustering(embeddings, labels, hard=hard)
    others = fit_other_algorithms(embeddings, labels, embedder.score)
    held = held_out_clustering(embeddings, labels, halvings, seed)
    held = held and {"bcubed_f1": held["bcubed_f1"], "std": held["std"], "halvings": int(halvings), "space": "plain"}
    spec, cohort = None, None
    if centre:
        cohort, source = cohort_embeddings(embedder, lfw_root, cache_dir=cache_dir, detector=detector,
                                           faces=int(centre["faces"]), seed=seed,
                                           degraded=bool(centre.get("degraded", False)))
        pick = choose_centring(embeddings, labels, cohort, int(centre["k"]), float(centre["gamma"]),
                               centre.get("gammas") or (), float(centre.get("margin", 0.01)), halvings, seed)
        gamma = pick["gamma"] if pick else float(centre["gamma"])
        c = Centring(cohort, centre["k"], gamma)
        moved = c(embeddings)
        centred = fit_clustering(moved, labels, hard=None if hard is None else c(hard))
        best = {"plain": max(r[1] for r in fit["grid"]), "centred": max(r[1] for r in centred["grid"])}
        if pick["centred"] if pick else best["centred"] > best["plain"]:
            fit, others["average"] = centred, fit_average(moved, labels)
            spec = {"k": int(centre["k"]), "gamma": gamma,
                    "cohort": {"file": COHORT, "faces": len(cohort), "source": source}}
            held = {**pick["held_out"][f"gamma {gamma}"], "halvings": int(halvings),
                    "space": f"centred, k {int(centre['k'])}, gamma {gamma}"} if pick else held
        fit["centring"] = {**best, "k": int(centre["k"]), "gamma": gamma, "cohort": source,
                           "chosen": spec is not None,
                           **({"held_out": {key: r["bcubed_f1"] for key, r in pick["held_out"].items()},
                               "halvings": pick["halvings"], "margin": pick["margin"]} if pick else {})}
    result = {**fit, **({"held_out": held} if held else {}), **({"centre": spec} if spec else {}), "algorithms": others,
              "people": int(len(np.unique(labels))), "faces": int(len(labels)), "data": data,
              "model": embedder.identity()}
    if target is not None:
        try:
            old = json.loads(target.read_text()) if target.is_file() else {}
        except (ValueError, OSError):  # an unreadable one is replaced all the same
            old = {}
        if isinstance(old, dict) and (old.get("centre") or {}).get("recognize"):  # its space is replaced here
            log.info("%s: its 1:N gamma (\"centre\".\"recognize\") belonged to the settings replaced here — "
                     "`siamese calibrate %s fit=[recognize]` fits it again", target, embedder.path)
        if spec:  # the cohort first, beside it: a cluster.json never names a file that is not there yet
            spec["cohort"]["sha256"] = write_cohort(target.parent, cohort)
        atomic_write_text(target, json.dumps(result, indent=1))
        if not spec:  # a cohort an earlier cluster.json centred on is no one's now
            (target.parent / COHORT).unlink(missing_ok=True)
    log.info("clustering: threshold %.3f, floor %.3f -> BCubed F1 %.4f on %d validation people "
             "(%d faces)", result["threshold"], result["floor"], result["bcubed_f1"],
             result["people"], result["faces"])
    for name, a in result["algorithms"].items():
        log.info("clustering, %s: %s -> BCubed F1 %.4f", name,
                 ", ".join(f"{k} {v}" for k, v in a.items() if k not in ("bcubed_f1", "grid")), a["bcubed_f1"])
    return result


def calibrate_recognize(embedder, lfw_root: str | os.PathLike | None = None, *, cache_dir=None,
                        detector: Detector | None = None, gammas=(0.5, 0.75, 1.0), margin: float = 0.02,
                        halvings: int = 20, seed: int = 0, overwrite: bool = False,
                        embeddings: np.ndarray | None = None, labels=None) -> dict | None:
    """Method centred's own gamma (1:N acceptance) in the model's centred space, chosen on its
    validation people (`siamese.eval.openset.fit_recognize_gamma`, with the cohort file recognition
    reads) and written into its cluster.json as "centre"."recognize" (`siamese.model.centre.centring`
    with purpose "recognize" reads it). Returns that record, or None for a model whose cluster.json
    is not centred (nothing to fit: method centred is not used with it). `embeddings` (n, D) and
    `labels` (n,): the validation people's, already embedded (`validation_embeddings`), else embedded here.

    Raises:
        FileExistsError: cluster.json already has one and not `overwrite`.
    """
    target = embedder.path / "cluster.json"
    cal = embedder.calibration("cluster.json") or {}  # None: none, or one fitted for another model
    space = centring(embedder, cal)
    if space is None:
        log.info("%s: not locally centred — method centred is not used with this model: nothing to fit", target)
        return None
    if cal["centre"].get("recognize") and not overwrite:
        raise FileExistsError(f"{target} already has 1:N's gamma — pass overwrite=True (--overwrite) to refit it")
    if embeddings is None:
        embeddings, labels, _ = validation_embeddings(embedder, embedder.validation_people(), lfw_root,
                                                      cache_dir=cache_dir, detector=detector)
    emb, names = np.asarray(embeddings, np.float32), np.asarray(labels)
    rec = fit_recognize_gamma(embedder, emb, names, space.cohort, cal["centre"]["k"], cal["centre"]["gamma"],
                              gammas=gammas, margin=margin, count=halvings, seed=seed)
    cal["centre"]["recognize"] = {**rec, "people": int(len(np.unique(names))), "faces": int(len(names))}
    atomic_write_text(target, json.dumps(cal, indent=1))
    return cal["centre"]["recognize"]


def cohort_embeddings(embedder, lfw_root=None, *, cache_dir=None, detector: Detector | None = None,
                      faces: int = 1000, seed: int = 0, degraded: bool = False) -> tuple[np.ndarray, str]:
    """One face each of `faces` random people the model trained on (its people.json "seen" minus
    its validation people: never a person its calibrations or tests are fitted or scored on),
    embedded: ((m, D) float32, a description of the source).

    With `degraded`, every second person's face is a harder copy of the photo (small, JPEG 30, blur,
    grey, strong light in turn: `siamese.gallery.calibrate.degraded_embeddings`, seeded by `seed`), so
    that degraded faces, which gather near each other whoever they are, have cohort neighbours of their
    own kind (docs/distill.md, "A cohort with degraded faces"); a photo without a face to make harder
    keeps its clean face."""
    lfw, rng = LFW(lfw_root), np.random.default_rng(seed)
    counts = lfw.people("view1_train")
    people = sorted(p for p in embedder.seen_people() - set(embedder.validation_people()) if p in counts)
    if not people:
        raise ValueError(f"{embedder.path}: its people.json names no training people of {lfw.root} — "
                         "a cohort for local centring needs them")
    pick = sorted(rng.choice(people, min(faces, len(people)), replace=False).tolist())
    refs = [ImageRef(p, int(rng.integers(1, counts[p] + 1))) for p in pick]
    cache = load_if_built(cache_dir)
    emb, kept = embedder.embed_refs(lfw, refs, cache, detector)
    source = f"{len(kept)} training people of LFW (DevTrain), one face each"
    if degraded:
        odd = kept[1::2]
        hard, ok = degraded_embeddings(embedder, lfw, odd, cache, detector or YuNetDetector(), seed)
        rows = 1 + 2 * np.flatnonzero(ok)
        emb = emb.copy()
        emb[rows] = hard
        source += f", {len(rows)} of them (every second person's) from a degraded copy of the photo"
    return emb, source


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
