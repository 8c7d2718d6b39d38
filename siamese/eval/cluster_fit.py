"""Clustering settings fitted on labelled embeddings, and how well they carry to other people: the
grids, agglomerative's falling bar (`fit_clustering`), average's one bar (`fit_average`), the graph
algorithms' and dbscan's settings (`fit_other_algorithms`), the held-out F1 of the fitted bar
(`held_out_clustering`), and whether (and how strongly) to cluster in a locally centred space
(`choose_centring`). NumPy only; `siamese.eval.calibration` fits them on a model's validation people.
"""

from __future__ import annotations

import logging

import numpy as np

from siamese.clustering.graph import cluster_embeddings, knn
from siamese.clustering.linkage import agglomerative
from siamese.clustering.scores import bcubed_scores, pairwise_scores
from siamese.model.centre import Centring

__all__ = ["COSINE_GRID", "EPS_GRID", "SCORE_GRID", "choose_centring", "fit_average", "fit_clustering",
           "fit_other_algorithms", "held_out_clustering", "people_halves"]

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


def people_halves(truth, halvings: int, seed: int = 0):
    """(fit, held) boolean masks over faces labelled `truth` (n,): `halvings` random halvings of the
    people, each both ways (2 x `halvings` pairs). The same labels and seed give the same halvings."""
    truth = np.asarray(truth)
    people, rng = np.unique(truth), np.random.default_rng(seed)
    for _ in range(halvings):
        first = np.isin(truth, rng.permutation(people)[:len(people) // 2])
        yield first, ~first
        yield ~first, first


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
    if len(np.unique(truth)) < 4:
        return None
    scores = []
    for fit, held in people_halves(truth, halvings, seed):
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
                    halvings: int = 20, seed: int = 0, ks=()) -> dict | None:
    """The locally centred space (`siamese.model.centre`) agglomerative clusters a model's faces best
    in, judged on people the settings were not fitted on (`held_out_clustering`, the same halvings for
    every candidate): every (k, gamma) of `{k, *ks}` x `{gamma, *gammas}` is tried, (`k`, `gamma`) stays
    unless another beats it by more than `margin`, and the space is centred only if the one chosen beats
    the plain space.

    Args:
        emb: (n, D) unit embeddings of the validation people; truth: (n,) their ids.
        cohort: (m, D) the model's cohort; k: cohort neighbours per face (`ks` above m are not tried).

    Returns:
        {"centred": bool, "k", "gamma" (chosen), "held_out": {"plain" or "k K, gamma G": {"bcubed_f1", "std"}},
        "halvings", "margin"}, or None when the validation people are too few to halve.
    """
    plain = held_out_clustering(emb, truth, halvings, seed)
    if plain is None:
        return None
    held = {}
    for kk in sorted({int(k), *(int(x) for x in ks if int(x) <= len(cohort))}):  # a k past the cohort: not tried
        for g in sorted({float(gamma), *map(float, gammas)}):
            held[kk, g] = held_out_clustering(Centring(cohort, kk, g)(emb), truth, halvings, seed)
    f1 = {key: r["bcubed_f1"] for key, r in held.items()}
    mine = (int(k), float(gamma))
    best = max(f1, key=lambda key: (f1[key], key == mine))
    chosen = best if f1[best] > f1[mine] + margin else mine
    name = lambda key: f"k {key[0]}, gamma {key[1]}"  # noqa: E731
    log.info("clustering, local centring held out (%d halvings): plain %.4f, %s -> %s", halvings, plain["bcubed_f1"],
             ", ".join(f"{name(key)}: {v:.4f}" for key, v in f1.items()),
             name(chosen) if f1[chosen] > plain["bcubed_f1"] else "plain")
    kept = {name(key): {"bcubed_f1": r["bcubed_f1"], "std": r["std"]} for key, r in held.items()}
    return {"centred": f1[chosen] > plain["bcubed_f1"], "k": chosen[0], "gamma": chosen[1],
            "held_out": {"plain": {"bcubed_f1": plain["bcubed_f1"], "std": plain["std"]}, **kept},
            "halvings": int(halvings), "margin": float(margin)}


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
