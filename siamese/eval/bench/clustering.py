"""Benchmarks for face clustering: which algorithm, and how far it scales. Each prints a table
and returns its rows (dicts); none is a test.

    siamese bench cluster [model_path=M] [min_images=10] [max_images=N]
                                              # algorithms on LFW people the model never saw
    siamese bench cluster-scale [sizes=[10000,100000]] [algorithm=agglomerative]   # time, peak memory
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from siamese.clustering import graph
from siamese.clustering import scores as metrics
from siamese.clustering.alike import alike_pairs
from siamese.clustering.group import clustering_settings
from siamese.clustering.neighbours import cosine
from siamese.clustering.settings import CENTRED
from siamese.data.cache import load as load_cache
from siamese.data.lfw import LFW
from siamese.data.unseen import unseen_people
from siamese.eval.bench.table import table
from siamese.io.paths import DEFAULT_MODEL, lfw_cache
from siamese.model.centre import centring
from siamese.model.embedder import Embedder

__all__ = ["alike_scores", "compare_algorithms", "planted", "scale", "unseen_lfw_faces"]

DEFAULT_CACHE = lfw_cache()


def unseen_lfw_faces(embedder, cache_dir: str | Path = DEFAULT_CACHE, lfw_root=None,
                     min_images: int = 10, max_images: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of the View 1 DevTest people (never seen in training) with `min_images` to
    `max_images` images (`siamese.data.unseen`; from the face cache when aligned as the model
    expects).

    Returns:
        ((n, D) float32 unit embeddings, (n,) person names).
    """
    lfw = LFW(lfw_root)
    people = unseen_people(lfw, embedder.seen_people(), min_images=min_images, max_images=max_images)
    if not people:
        raise ValueError(f"no unseen DevTest people with {min_images}..{max_images} images")
    emb, kept = embedder.embed_refs(lfw, lfw.identities(people), load_cache(cache_dir))
    return emb, np.array([r.person for r in kept])


def compare_algorithms(model_path: str | Path = DEFAULT_MODEL, cache_dir: str | Path = DEFAULT_CACHE,
                       lfw_root=None, min_images: int = 10, max_images: int | None = None) -> list[dict]:
    """Every algorithm at the model's own settings on unseen LFW people: the quality table.

    Each algorithm runs at the settings in the model's cluster.json (fitted on its validation
    people, never on these; rows "cluster.json"); agglomerative is also shown with one bar for
    all sizes, the graph algorithms at the model's pair threshold, and DBSCAN at several eps to
    show how much it depends on one. B3_F1_90% is `siamese.clustering.scores.bcubed_interval`:
    how much F1 moves over resamples of the people.
    """

    emb_ = Embedder.load(model_path)
    emb, truth = unseen_lfw_faces(emb_, cache_dir, lfw_root, min_images, max_images)
    thr, cal = emb_.threshold, clustering_settings(emb_) or {}
    space = centring(emb_, cal)  # agglomerative and average compare faces in cluster.json's space
    centred = space(emb) if space is not None else emb
    runs = [("chinese_whispers", thr, {"k": 10}), ("chinese_whispers", thr, {"k": 20}),
            ("components", thr, {"k": 10}), ("components", thr, {"k": 3}),
            *[("dbscan", None, {"eps": e, "min_samples": 2}) for e in (0.3, 0.4, 0.5, 0.6)]]
    for name, fitted in reversed((cal.get("algorithms") or {}).items()):  # as calibrated, first
        params = {k: v for k, v in fitted.items() if k in ("eps", "min_samples")}
        runs.insert(0, (name, fitted.get("threshold"), {"k": cal["k"], **params, "from": "cluster.json"}))
    if cal:  # as calibrated, and as classic average linkage (one bar for all sizes)
        runs = [("agglomerative", cal["threshold"], {"k": cal["k"], "floor": cal["floor"], "from": "cluster.json"}),
                ("agglomerative", cal["threshold"], {"k": cal["k"]}), *runs]
    rows = []
    for algorithm, t_, params in runs:
        t = time.perf_counter()
        labels = graph.cluster_embeddings(centred if algorithm in CENTRED else emb, emb_.score, t_, algorithm,
                                          **{k: v for k, v in params.items() if k != "from"})
        sec = time.perf_counter() - t
        s = metrics.clustering_scores(truth, labels)
        rows.append({"algorithm": algorithm,
                     "params": " ".join(f"{k}={v}" for k, v in params.items()),
                     "threshold": "-" if t_ is None else round(t_, 3),
                     "pw_P": f"{s['pairwise_precision']:.3f}", "pw_R": f"{s['pairwise_recall']:.3f}",
                     "pw_F1": f"{s['pairwise_f1']:.3f}", "B3_P": f"{s['bcubed_precision']:.3f}",
                     "B3_R": f"{s['bcubed_recall']:.3f}", "B3_F1": f"{s['bcubed_f1']:.3f}",
                     "B3_F1_90%": "{:.3f}-{:.3f}".format(*metrics.bcubed_interval(truth, labels)),
                     "NMI": f"{s['nmi']:.3f}", "clusters": s["clusters"], "unassigned": s["unassigned"],
                     "people": s["people"], "seconds": round(sec, 2)})
    print(f"{len(emb)} faces of {len(set(truth))} unseen LFW people ({min_images}..{max_images or ''} "
          f"images each), model {emb_.path} (threshold {thr:.3f})"
          + (f"; agglomerative and average locally centred (k {space.k}, gamma {space.gamma})" if space else ""))
    print(table(rows))
    if cal:
        labels = graph.cluster_embeddings(centred, emb_.score, cal["threshold"], "agglomerative", k=cal["k"],
                                          floor=cal["floor"])
        for top in (8, None):
            a = alike_scores(centred, truth, labels, cal["floor"], top)
            print(f"may be one person (agglomerative at cluster.json, {'the ' + str(top) if top else 'all'} pairs "
                  f"listed at or above the floor {cal['floor']:.3f}): {a['listed']} listed, {a['same']} of them "
                  f"one person; {a['split_pairs']} pairs of items (folders, unassigned faces) are one person in all")
    return rows


def _items(emb: np.ndarray, labels: np.ndarray, loose: bool = True):
    """What "may be one person" compares after a clustering: (names, (F, D) sums, (F,) face counts,
    each item's face indices) of every folder and, with `loose`, every unassigned face on its own."""
    order = np.argsort(labels, kind="stable")
    cuts = np.flatnonzero(np.diff(labels[order])) + 1
    members = [m for m in np.split(order, cuts) if len(m) and labels[m[0]] >= 0]
    if loose:
        members += [np.array([i]) for i in np.flatnonzero(labels < 0)]
    names = [f"f{labels[m[0]]}" if labels[m[0]] >= 0 else f"u{m[0]}" for m in members]
    sums = np.stack([emb[m].sum(0) for m in members]) if members else np.zeros((0, emb.shape[1]))
    return names, sums, np.array([len(m) for m in members]), members


def alike_scores(emb: np.ndarray, truth: np.ndarray, labels: np.ndarray, bar: float, top: int | None,
                 loose: bool = True) -> dict:
    """How right "may be one person" (`siamese.clustering.alike`) is on a clustering of known people.

    Args:
        emb: (n, D) unit embeddings; truth: (n,) their people; labels: (n,) folder per face, -1 unassigned.
        bar: the likeness listed pairs reach; top: pairs listed (None: every pair at the bar).
        loose: unassigned faces are items too (as `siamese cluster` compares them); False: folders only.

    Returns:
        {"listed": pairs listed, "same": listed pairs that are one person (each folder by its majority
        person), "split_pairs": all pairs of items that are one person (what could be found); an item
        is a folder or an unassigned face, as `siamese cluster` compares them}.
    """
    names, sums, counts, members = _items(emb, labels, loose)
    if len(names) < 2:
        return {"listed": 0, "same": 0, "split_pairs": 0}
    who = {n: Counter(truth[m].tolist()).most_common(1)[0][0] for n, m in zip(names, members)}
    pairs = alike_pairs(names, sums, counts, bar=bar, top=top or len(names) ** 2)
    per = Counter(who.values())
    return {"listed": len(pairs), "same": sum(who[a] == who[b] for a, b in (p["folders"] for p in pairs)),
            "split_pairs": sum(c * (c - 1) // 2 for c in per.values())}


def planted(n: int, dim: int = 128, size: int = 10, spread: float = 0.8, seed: int = 0):
    """n unit vectors in clusters of about `size` around random centres, within-cluster cosine
    about 1 / (1 + spread^2) (0.6 at 0.8): ((n, dim) float32, (n,) int64 true labels)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, max(1, n // size), n)
    centres = rng.standard_normal((truth.max() + 1, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[truth] + spread * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return x / np.linalg.norm(x, axis=1, keepdims=True), truth


def _scale_one(n: int, algorithm: str, scorer: str, model_path: str) -> dict:
    import resource

    emb, truth = planted(n)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if scorer == "head":

        score_fn, thr = Embedder.load(model_path).score, 0.5
    else:
        score_fn, thr = cosine, 0.45
    t = time.perf_counter()
    labels = graph.cluster_embeddings(emb, score_fn, thr, algorithm,
                                      floor=0.2 if algorithm == "agglomerative" else None)
    sec = time.perf_counter() - t
    t = time.perf_counter()  # then "may be one person", as `siamese cluster` adds it
    names, sums, counts, _ = _items(emb, labels)
    alike_pairs(names, sums, counts, bar=0.2)
    alike_sec = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    s = metrics.clustering_scores(truth, labels) if scorer == "cosine" else {}
    return {"faces": n, "algorithm": algorithm, "scorer": scorer, "seconds": round(sec, 1),
            "alike_items": len(names), "alike_seconds": round(alike_sec, 1),
            "peak_rss_mb": round(peak / 1024), "rss_before_mb": round(rss0 / 1024),
            "n2_matrix_mb": round(n * n * 4 / 2**20),
            "B3_F1": f"{s['bcubed_f1']:.3f}" if s else "-", "clusters": s.get("clusters", "-"),
            "people": s.get("people", "-")}


def scale(sizes=(10_000, 100_000), algorithm: str = "agglomerative",
          scorers=("cosine", "head"), model_path: str | Path = DEFAULT_MODEL) -> list[dict]:
    """Time and peak memory (resource.getrusage, each run in a fresh process) of clustering
    planted-cluster embeddings, after embedding. `n2_matrix_mb` is what one n x n float32
    matrix would need; the graph algorithms never build it.

    The "head" scorer uses the model's head on synthetic vectors (for its cost, not its
    decisions), so only the cosine rows report quality. Agglomerative clustering always works on
    cosine (threshold 0.45, floor 0.2 here).
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    rows = []
    for n in sizes:
        for scorer in scorers:
            with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
                rows.append(pool.submit(_scale_one, n, algorithm, scorer, str(model_path)).result())
            print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    return rows
