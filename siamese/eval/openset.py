"""Open-set evaluation: how recognition fares when some faces belong to nobody in the gallery
(`siamese openset`).

`evaluate_open_set` splits any labelled faces into enrolled people, their other faces (known
probes) and people kept out (unknowns: half set the threshold, half measure it); `open_set_lfw`
and `open_set_folder` feed it LFW people the model never saw or a folder of people. Built on
`siamese.gallery.recognize`; no TensorFlow.
"""

from __future__ import annotations

import logging

import numpy as np

from siamese.data.cache import load_if_built
from siamese.data.lfw import LFW
from siamese.data.unseen import unseen_people
from siamese.eval.evaluate import folder_faces
from siamese.gallery.recognize import METHODS, Recognizer, threshold_at_far
from siamese.gallery.svc import Svc
from siamese.model.centre import AsNorm, Centring, centring, score_norm

log = logging.getLogger(__name__)


def evaluate_open_set(embedder, embeddings: np.ndarray, names, *, seed: int = 0,
                      gallery_per_person: int = 1, unknown_share: float = 0.5,
                      far_target: float = 0.01, methods=METHODS, shortlist: int = 32) -> dict:
    """Identification with people who are not in the gallery, on any labelled faces.

    Split (seeded): `(1 - unknown_share)` of the people, among those with more than
    `gallery_per_person` faces, are enrolled with `gallery_per_person` random faces; their other
    faces are the known probes. Everyone else is unknown, one random face each, halved into
    calibration people (they set the default threshold, as LFW impostors do for a real gallery)
    and test people (they measure it).

    Returns:
        Sizes of each set and per method: top1, top5 (closed set, known probes), dir_at_far_0.01 /
        _0.1 (detection-and-identification rate: right name and accepted, threshold where that
        share of test unknowns is accepted), and at the default operating point (threshold
        calibrated to `far_target` on the calibration unknowns) threshold, unknown_accepted and
        dir; for head scores also the same two at the model's verification threshold.
    """
    names = np.asarray(names)
    rng = np.random.default_rng(seed)
    people = [str(p) for p in rng.permutation(sorted(set(names.tolist())))]
    by = {p: np.flatnonzero(names == p) for p in people}
    eligible = [p for p in people if len(by[p]) > gallery_per_person]
    known = eligible[:min(len(eligible), round((1 - unknown_share) * len(people)))]
    unknown = [p for p in people if p not in set(known)]
    if len(known) < 2 or len(unknown) < 2:
        raise ValueError(f"open-set evaluation needs 2+ people with more than {gallery_per_person} "
                         f"faces and 2+ others; got {len(known)} and {len(unknown)}")
    gallery, probes, truth = [], [], []
    for j, p in enumerate(known):
        idx = rng.permutation(by[p])
        gallery += [(i, j) for i in idx[:gallery_per_person]]
        probes += idx[gallery_per_person:].tolist()
        truth += [j] * (len(idx) - gallery_per_person)
    unk = np.array([rng.choice(by[p]) for p in unknown])
    cal_u, test_u = unk[:len(unk) // 2], unk[len(unk) // 2:]
    gi, gl = np.array([i for i, _ in gallery]), np.array([j for _, j in gallery])
    svc = Svc.fit(embeddings[gi], gl) if set(methods) & {"svc", "combined"} else None
    space = centring(embedder, purpose="recognize") if "centred" in methods else None
    norm = score_norm(embedder) if "asnorm" in methods else None
    # a model without its centred space / cohort: those methods' rows are left out
    methods = [m for m in methods if (m != "centred" or space is not None) and (m != "asnorm" or norm is not None)]
    rec = Recognizer(embedder, embeddings[gi], gl, known, svc=svc, shortlist=shortlist, space=space, norm=norm)
    truth, r4 = np.array(truth), lambda x: round(float(x), 4)
    results = {}
    for m in methods:
        lab, s = rec.evidence(embeddings[probes], m)
        su, sc = rec.evidence(embeddings[test_u], m)[1], rec.evidence(embeddings[cal_u], m)[1]
        hit = lab[:, 0] == truth
        r = {"top1": r4(hit.mean()), "top5": r4((lab == truth[:, None]).any(1).mean())}
        for f in (0.01, 0.1):
            r[f"dir_at_far_{f:g}"] = r4((hit & (s >= threshold_at_far(su, f))).mean())
        thr = threshold_at_far(sc, far_target)
        r.update(threshold=r4(thr), unknown_accepted=r4((su >= thr).mean()),
                 dir=r4((hit & (s >= thr)).mean()))
        if m in ("nn", "combined"):  # head scores: the model's own pair threshold means something
            t = embedder.threshold
            r.update(model_threshold_unknown_accepted=r4((su >= t).mean()),
                     model_threshold_dir=r4((hit & (s >= t)).mean()))
        results[m] = r
    return {"people": len(people), "gallery_people": len(known), "gallery_faces": len(gi),
            "known_probes": len(probes), "unknown_calibration": len(cal_u),
            "unknown_test": len(test_u), "seed": seed, "far_target": far_target, "methods": results}


def open_set_lfw(embedder, lfw_root=None, cache_dir=None, detector=None, **kw) -> dict:
    """`evaluate_open_set` on every face of the LFW (View 1 DevTest) people the model never saw,
    from the face cache when it is built and aligned as the model expects."""
    lfw = LFW(lfw_root)
    people = unseen_people(lfw, embedder.seen_people())
    refs = lfw.identities(people)
    cache = load_if_built(cache_dir)
    emb, kept = embedder.embed_refs_with_progress(lfw, refs, cache, detector, desc=f"embedding {len(refs)} LFW faces")
    source = f"LFW face cache {cache_dir}" if cache is not None else f"LFW photos {lfw.root}"
    return {"data": f"{source}: {len(people)} unseen DevTest people",
            **evaluate_open_set(embedder, emb, [r.person for r in kept], **kw)}


def open_set_folder(embedder, detector, root, **kw) -> dict:
    """`evaluate_open_set` on `root/<person>/*.jpg`, the largest face of each photo."""
    emb, _, names, _ = folder_faces(embedder, root, detector)
    return {"data": str(root), **evaluate_open_set(embedder, emb, names, **kw)}


def halvings(names, count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`count` random halvings of the people of faces labelled `names` (n,): (gallery rows: one
    random face of each person of the first half, known probe rows: their other faces, stranger
    rows: every face of the second half). The same names give the same halvings."""
    names = np.asarray(names)
    people, rng, out = np.unique(names), np.random.default_rng(seed), []
    for _ in range(count):
        perm = rng.permutation(people)
        enrolled = perm[:len(perm) // 2]
        gallery, known = [], []
        for p in enrolled:
            rows = rng.permutation(np.flatnonzero(names == p))
            gallery.append(rows[0])
            known.extend(rows[1:])
        out.append((np.array(gallery), np.array(known, np.int64), np.flatnonzero(~np.isin(names, enrolled))))
    return out


def open_set_halvings(embedder, embeddings: np.ndarray, names, splits, space: Centring | None = None,
                      methods=("nn", "centred"), norm: AsNorm | None = None,
                      degraded: np.ndarray | None = None) -> dict:
    """{method: (halvings, 2 or 3) [top-1, DIR at FAR 1 %(, degraded strangers accepted)]} over
    `splits` (`halvings`) of `embeddings` (n, D) faces of `names` (n,), each answered by the
    embedder's `Recognizer` over that halving's gallery (method centred in `space`, asnorm with
    `norm`): top-1 is the share of known probes whose first name is right, DIR the share named right
    with a score above the strangers' 99th percentile (the threshold a perfect stranger calibration
    would set). With `degraded` ((n, D): a harder copy of each face), also the share of the strangers'
    harder copies scoring above that threshold (the 1 % target's drift on harder photos)."""
    names = np.asarray(names)
    out = {m: [] for m in methods}
    for gallery, known, strangers in splits:
        labels, idx = np.unique(names[gallery], return_inverse=True)
        rec = Recognizer(embedder, embeddings[gallery], idx, list(labels), space=space, norm=norm)
        gnames = np.array(rec.names)
        for m in methods:
            lk, sk = rec.rank(embeddings[known], m, top=1)
            _, ss = rec.rank(embeddings[strangers], m, top=1)
            right = gnames[lk[:, 0]] == names[known]
            thr = np.quantile(ss[:, 0], 0.99)
            row = [right.mean(), (right & (sk[:, 0] > thr)).mean()]
            if degraded is not None:
                row.append((rec.rank(degraded[strangers], m, top=1)[1][:, 0] > thr).mean())
            out[m].append(row)
    return {m: np.array(v, np.float64) for m, v in out.items()}


def fit_recognize_gamma(embedder, embeddings: np.ndarray, names, cohort: np.ndarray, k: int, gamma: float,
                        gammas=(0.5, 0.75, 1.0), margin: float = 0.02, count: int = 20, seed: int = 0) -> dict:
    """Method centred's own gamma (1:N acceptance), chosen on the validation people: DIR at FAR 1 %
    (`open_set_halvings`, `count` halvings, one face enrolled each) for each of `gammas`; the
    clustering's `gamma` stays unless another beats it by more than `margin` (20 halvings: about
    two standard errors of the paired difference).

    Returns:
        {"k", "gamma" (chosen), "dir_at_far_1pct": {str(gamma): mean}, "halvings", "margin"}.
    """
    names = np.asarray(names)
    splits = halvings(names, count, seed)
    scores = {}
    for g in sorted({float(gamma), *map(float, gammas)}):
        found = open_set_halvings(embedder, embeddings, names, splits, Centring(cohort, k, g), ("centred",))
        scores[g] = float(found["centred"][:, 1].mean())
    best = max(scores, key=lambda g: (scores[g], g == float(gamma)))
    chosen = best if scores[best] > scores[float(gamma)] + margin else float(gamma)
    log.info("1:N centring: DIR at FAR 1 %% by gamma %s -> gamma %s",
             ", ".join(f"{g}: {v:.3f}" for g, v in scores.items()), chosen)
    return {"k": int(k), "gamma": chosen, "dir_at_far_1pct": {str(g): round(v, 4) for g, v in scores.items()},
            "halvings": int(count), "margin": float(margin)}
