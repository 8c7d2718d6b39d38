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
from siamese.gallery.recognize import METHODS, Recognizer, Svc, threshold_at_far
from siamese.model.centre import centring

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
    space = centring(embedder) if "centred" in methods else None
    methods = [m for m in methods if m != "centred" or space is not None]  # a model without its centred space
    rec = Recognizer(embedder, embeddings[gi], gl, known, svc=svc, shortlist=shortlist, space=space)
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
