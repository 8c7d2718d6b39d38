"""Person folders (and unassigned faces) that may be one person: a clustering's second look at
its own splits.

Clustering splits a person when his faces fall into groups that are each tighter than the bar
between them (a frontal track and a head-down one, docs/benchmarks.md), and leaves out two photos of
one person that just miss the bar for two single faces. `alike_pairs` finds such pairs again by the
measure the default clustering merges by: the mean cosine over two items' cross pairs of faces
(average linkage, `siamese.clustering.linkage`), from each item's sum of unit embeddings; an item is
a person folder or one unassigned face ("unassigned/CROP"). Used by `siamese cluster` (summary.json
"alike") and the review page (`siamese.service.review_likeness`).
"""

from __future__ import annotations

import numpy as np

from siamese.clustering.neighbours import knn, knn_approx
from siamese.clustering.settings import clustering_settings
from siamese.model.centre import Centring

__all__ = ["APPROX_FROM", "alike_bar", "alike_pairs", "person_alike"]

APPROX_FROM = 20_000  # items (folders and unassigned faces) past which the shortlist is approximate


def alike_bar(embedder, settings: dict | None = None) -> float | None:
    """The likeness listed pairs must reach: the agglomerative floor the clustering ran with (in
    `settings`, when given), else the model's cluster.json floor (the bar two big groups need to
    merge); None without either (nothing is listed then by `siamese cluster`)."""
    if settings and "floor" in settings:
        return float(settings["floor"])
    cal = clustering_settings(embedder)
    return float(cal["floor"]) if cal else None


def alike_pairs(names: list[str], sums: np.ndarray, counts: np.ndarray, *, bar: float | None,
                named: list[bool] | None = None, apart: set[frozenset[str]] | None = None,
                top: int = 8, k: int = 10) -> list[dict]:
    """The most alike pairs of items (person folders or single faces), most alike first.

    Args:
        names: (F,) item names.
        sums: (F, D) each item's sum of its faces' unit embeddings; counts: (F,) its faces (> 0).
        bar: only pairs whose likeness is at least this are listed (`alike_bar`); None: any.
        named: (F,) folders the user named: a pair of two named folders is left out (told apart).
        apart: pairs of item names known to be different people (faces seen together in one
            photo or frame): left out.
        top: at most this many pairs.
        k: each item is compared with the k items whose mean face is nearest in direction
            (`siamese.clustering.neighbours.knn`, no F x F matrix; past `APPROX_FROM` items the
            inverted file `knn_approx`: `siamese bench cluster-scale` times it, `alike_seconds`).

    Returns:
        [{"folders": [keep, other], "likeness": mean cosine, "faces": [faces of keep, of other]}]:
        keep is the named folder, else the one with more faces (the folder a merge keeps).
    """
    f = len(names)
    if f < 2:
        return []
    named_ = np.zeros(f, bool) if named is None else np.asarray(named, bool)
    counts = np.asarray(counts, np.float64)
    means = np.asarray(sums, np.float64) / counts[:, None]  # the likeness of a and b is means[a] @ means[b]
    unit = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    # exact up to APPROX_FROM items; beyond, the inverted file (a fraction of the time at 50,000 items)
    idx, _ = (knn if f <= APPROX_FROM else knn_approx)(unit.astype(np.float32), k)
    idx = np.where(idx >= 0, idx, np.arange(f)[:, None])  # knn_approx pads with -1: a self pair, dropped below
    i = np.repeat(np.arange(f), idx.shape[1])
    j = idx.ravel()
    i, j = np.unique(np.stack([np.minimum(i, j), np.maximum(i, j)], 1), axis=0).T
    i, j = i[i != j], j[i != j]
    m32 = means.astype(np.float32)  # likeness to 1e-6: enough to rank and to compare with a bar
    like = np.concatenate([np.einsum("nd,nd->n", m32[i[c:c + 65536]], m32[j[c:c + 65536]])
                           for c in range(0, len(i), 65536)] or [np.zeros(0, np.float32)])
    keep = ~(named_[i] & named_[j])
    if bar is not None:
        keep &= like >= bar
    i, j, like = i[keep], j[keep], like[keep]
    out = []
    for n in np.argsort(-like, kind="stable"):  # most alike first, until `top` pairs not known apart
        if len(out) == top:
            break
        a, b = int(i[n]), int(j[n])
        if apart and frozenset((names[a], names[b])) in apart:
            continue
        if (named_[b], counts[b]) > (named_[a], counts[a]):
            a, b = b, a
        out.append({"folders": [names[a], names[b]], "likeness": round(float(like[n]), 4),
                    "faces": [int(counts[a]), int(counts[b])]})
    return out


def person_alike(tracks: list[dict], labels: np.ndarray, names: list[str], cannot_link: np.ndarray, *,
                 bar: float | None, loose: dict[int, str] | None = None, top: int = 8,
                 space: Centring | None = None) -> list[dict]:
    """`alike_pairs` of a clustering's person folders and unassigned faces, over every face of their tracks.

    Args:
        tracks: `siamese.clustering.appearances.gather_tracks` ("sum": the sum of a track's face
            embeddings, "members": its faces); labels: (t,) person per track, -1 unassigned.
        names: the folder of each person label; cannot_link: (c, 2) track pairs seen together.
        bar: as for `alike_pairs`; None lists nothing (no bar the model was calibrated for).
        loose: {track: name} of unassigned tracks to compare too, each on its own ("unassigned/CROP"):
            on the validation people two unassigned photos of one person were most of the right pairs.
        space: the model's local centring (`siamese.model.centre.centring`), when its cluster.json
            (whose floor is the bar) was fitted in that space: each track is compared there.

    Returns:
        `alike_pairs`' list; an unassigned track is named by `loose`.
    """
    loose = loose or {}
    item = np.asarray(labels, np.int64).copy()  # each track's item: a person label, or one past them
    order = sorted(loose)
    for n, t in enumerate(order):
        item[t] = len(names) + n
    names = [*names, *(loose[t] for t in order)]
    m = len(names)
    if bar is None or m < 2:
        return []
    tsums = np.stack([t["sum"] for t in tracks])
    if space is not None:
        tsums = space.sums(tsums)[1]
    sums = np.zeros((m, tsums.shape[1]), np.float64)
    counts = np.zeros(m)  # every person label and every loose track has faces
    for t, s, g in zip(tracks, tsums, item):
        if g >= 0:
            sums[g] += s
            counts[g] += len(t["members"])
    together = item[np.asarray(cannot_link, np.int64).reshape(-1, 2)]  # (c, 2) their items
    apart = {frozenset((names[a], names[b])) for a, b in together.tolist() if a >= 0 and b >= 0 and a != b}
    return alike_pairs(names, sums, counts, bar=bar, apart=apart, top=top)
