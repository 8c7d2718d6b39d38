"""Benchmarks for face clustering: which algorithm, and how far it scales. Each prints a table
and returns its rows (dicts); none is a test.

    python -m siamese.cluster_bench compare [model_path=M] [min_images=10] [max_images=N]
                                              # algorithms on LFW people the model never saw
    python -m siamese.cluster_bench scale [N ...] [algorithm=agglomerative]   # time and peak memory
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from siamese import graph, metrics

from siamese import DEFAULT_MODEL  # noqa: E402
DEFAULT_CACHE = "data/cache/lfw_yunet_112_p0.0"


def _table(rows: list[dict], columns: list[str]) -> None:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)))


def unseen_lfw_faces(embedder, cache_dir: str | Path = DEFAULT_CACHE, lfw_root=None,
                     min_images: int = 10, max_images: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of the View 1 DevTest people (never seen in training) with `min_images` to
    `max_images` images, from the aligned LFW cache.

    Returns:
        ((n, D) float32 unit embeddings, (n,) person names).
    """
    from siamese import cache
    from siamese.data import LFW
    from siamese.evaluate import seen_people
    from siamese.faces import resize_faces

    lfw = LFW(lfw_root)
    seen = seen_people(Path(embedder.path))
    people = {p: n for p, n in lfw.people("view1_test").items()
              if p not in seen and n >= min_images and (max_images is None or n <= max_images)}
    if not people:
        raise ValueError(f"no unseen DevTest people with {min_images}..{max_images} images")
    fc = cache.load(cache_dir)
    refs = lfw.identities(people)
    faces = resize_faces(np.asarray(fc.images[fc.rows(refs)]), embedder.input_size)
    return embedder.embed(faces), np.array([r.person for r in refs])


def compare_algorithms(model_path: str | Path = DEFAULT_MODEL, cache_dir: str | Path = DEFAULT_CACHE,
                       lfw_root=None, min_images: int = 10, max_images: int | None = None) -> list[dict]:
    """Every algorithm at the model's own settings on unseen LFW people: the quality table.

    Agglomerative uses the model's cluster.json (threshold and floor fitted on its validation
    people, never on these), and is also shown with one bar for all sizes; the graph
    algorithms use the model's pair threshold. DBSCAN is shown at several eps to show how much
    it depends on one (its eps is a cosine radius the model knows nothing about). B3_F1_90% is
    `siamese.metrics.bcubed_interval`: how much F1 moves over resamples of the people.
    """
    from siamese.calibration import clustering_settings
    from siamese.export import Embedder

    emb_ = Embedder.load(model_path)
    emb, truth = unseen_lfw_faces(emb_, cache_dir, lfw_root, min_images, max_images)
    thr, cal = emb_.threshold, clustering_settings(emb_)
    runs = [("chinese_whispers", thr, {"k": 10}), ("chinese_whispers", thr, {"k": 20}),
            ("components", thr, {"k": 10}), ("components", thr, {"k": 3}),
            *[("dbscan", None, {"eps": e, "min_samples": 2}) for e in (0.3, 0.4, 0.5, 0.6)]]
    if cal is not None:  # as calibrated, and as classic average linkage (one bar for all sizes)
        runs = [("agglomerative", cal["threshold"], {"k": cal["k"], "floor": cal["floor"]}),
                ("agglomerative", cal["threshold"], {"k": cal["k"]}), *runs]
    rows = []
    for algorithm, t_, params in runs:
        t = time.perf_counter()
        labels = graph.cluster_embeddings(emb, emb_.score, t_ or 0.0, algorithm, **params)
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
          f"images each), model {emb_.path} (threshold {thr:.3f})")
    _table(rows, list(rows[0]))
    return rows


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
        from siamese.export import Embedder

        score_fn, thr = Embedder.load(model_path).score, 0.5
    else:
        score_fn, thr = graph.cosine, 0.45
    t = time.perf_counter()
    labels = graph.cluster_embeddings(emb, score_fn, thr, algorithm,
                                      floor=0.2 if algorithm == "agglomerative" else None)
    sec = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    s = metrics.clustering_scores(truth, labels) if scorer == "cosine" else {}
    return {"faces": n, "algorithm": algorithm, "scorer": scorer, "seconds": round(sec, 1),
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
    _table(rows, list(rows[0]))
    return rows


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "compare"
    if what == "compare":
        kw = dict(a.split("=", 1) for a in sys.argv[2:])
        compare_algorithms(kw.get("model_path", DEFAULT_MODEL), min_images=int(kw.get("min_images", 10)),
                           max_images=int(kw["max_images"]) if "max_images" in kw else None)
    elif what == "scale":  # scale [N ...] [algorithm=NAME]
        kw = dict(a.split("=", 1) for a in sys.argv[2:] if "=" in a)
        algorithm = kw.get("algorithm", "agglomerative")
        scale(tuple(int(a) for a in sys.argv[2:] if "=" not in a) or (10_000, 100_000), algorithm,
              ("cosine",) if algorithm == "agglomerative" else ("cosine", "head"))
    else:
        sys.exit("usage: python -m siamese.cluster_bench compare|scale [args]")
