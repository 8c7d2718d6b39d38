"""Calibrating a gallery: the writing half of recognition (`siamese gallery add / import /
calibrate / reembed` call `refresh`).

It stores in the gallery, for its current revision: faces of LFW people the model never saw (the
impostors, embedded once: `impostors_from_lfw`), the unknown threshold measured on them against
this gallery (`siamese.gallery.recognize.unknown_thresholds`), and the SVC. `siamese recognize`
then only reads. No TensorFlow.
"""

from __future__ import annotations

import logging

import numpy as np

from siamese.data.cache import load_if_built
from siamese.data.degrade import KINDS, degrade
from siamese.data.lfw import LFW, DatasetError
from siamese.data.unseen import sample_refs, unseen_people
from siamese.faces.detect import Face, YuNetDetector, central_face
from siamese.gallery.recognize import Recognizer, unknown_thresholds
from siamese.gallery.svc import Svc
from siamese.io.images import read_image
from siamese.model.centre import centring, score_norm

__all__ = ["degraded_embeddings", "impostors_from_lfw", "refresh"]

log = logging.getLogger(__name__)


def impostors_from_lfw(embedder, lfw_root=None, *, cache_dir=None, detector=None, people: int | None = 1000,
                       seed: int = 0, degraded: bool = False) -> tuple[np.ndarray, list[str], str]:
    """One face each of `people` random LFW people the model never saw (View 1 DevTest people
    minus its people.json), embedded: ((n, D) float32, n names, a description of the source).

    Faces come from the face cache at `cache_dir` when it is built and aligned as the model
    expects, else from the photos (`siamese.data.unseen.lfw_crops`). With `degraded`, each face
    is also embedded from a harder copy of its photo (`siamese.data.degrade`: small, JPEG 30, blur,
    grey, strong light, in turn), so a threshold set on them also holds for poorer photos.
    """
    lfw, rng = LFW(lfw_root), np.random.default_rng(seed)
    refs = sample_refs(unseen_people(lfw, embedder.seen_people()), rng, people, per_person=1)
    cache = load_if_built(cache_dir)
    emb, kept = embedder.embed_refs(lfw, refs, cache, detector)
    source = f"LFW face cache {cache_dir}" if cache is not None else f"LFW photos {lfw.root}"
    names = [r.person for r in kept]
    if degraded:
        hard, ok = degraded_embeddings(embedder, lfw, kept, cache, detector or YuNetDetector(), seed)
        emb, names = np.concatenate([emb, hard]), names + [n for n, k in zip(names, ok) if k]
        source += ", and a degraded copy of each"
    return emb, names, f"{source}: {len(kept)} people, one face each"


def degraded_embeddings(embedder, lfw: LFW, refs: list, cache, detector, seed: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of a harder copy of each photo of `refs`: photo i made harder by
    `siamese.data.degrade.KINDS[i % 5]`, seeded by (seed, i); its face from the cache, else found
    by `detector` (None: every ref must be in the cache).

    Returns:
        ((m, D) float32 embeddings, (n,) bool: which refs they are — a photo without a face to
        make harder has none).
    """
    rows = {r: i for i, r in enumerate(cache.refs)} if cache is not None else {}
    out, keep = [], np.zeros(len(refs), bool)
    for i, ref in enumerate(refs):
        image = read_image(lfw.path(ref))
        if ref in rows:
            m = cache.meta[rows[ref]]
            face = Face(m["box"].astype(np.float32), m["landmarks"].astype(np.float32), float(m["score"]))
        else:
            face = central_face(detector.detect(image), image.shape)
        if face is None or face.box[2] <= 0:
            continue  # no face to make harder
        hard, moved = degrade(image, face, KINDS[i % len(KINDS)], np.random.default_rng([seed, i]))
        out.append(embedder.embed_faces(hard, [moved])[0])
        keep[i] = True
    return (np.stack(out) if out else np.zeros((0, embedder.dim), np.float32)), keep


def refresh(gallery, embedder, far_target: float = 0.01, *, lfw_root=None, cache_dir=None, detector=None,
            people: int | None = 1000, seed: int = 0, redraw: bool = False, degraded: bool = False) -> dict | None:
    """Store the impostors (once), the SVC and the unknown-threshold calibration for the gallery's
    current revision; returns the calibration (None, with a warning, for an empty gallery or
    when no LFW copy is found to draw impostors from).

    Args:
        gallery: a writable `siamese.gallery.Gallery`.
        embedder: its model.
        far_target: the share of never-enrolled people the threshold may accept.
        lfw_root, cache_dir, detector, people, seed, degraded: where the impostors come from
            (`impostors_from_lfw`), used only when the gallery holds none (or `redraw`).
        redraw: draw the impostors again.
    """
    vectors, labels, names, rev = gallery.embeddings()
    if not len(vectors):
        return None
    imp, imp_names = gallery.impostors()
    if redraw or not len(imp):
        try:
            imp, imp_names, source = impostors_from_lfw(embedder, lfw_root, cache_dir=cache_dir, detector=detector,
                                                        people=people, seed=seed, degraded=degraded)
        except (DatasetError, FileNotFoundError) as err:
            bank = embedder.impostor_bank()
            if bank is None:
                log.warning("cannot calibrate the unknown threshold without LFW (%s) or a stranger bank beside the "
                            "model (`siamese calibrate fit=[impostors]`): recognition will use the model's "
                            "verification threshold %.3f, which accepts more strangers", err, embedder.threshold)
                return None
            imp, imp_names, source = bank
            source = f"the model's stranger bank ({source})"
        gallery.set_impostors(imp, imp_names, source)
    svc = None
    if len(names) >= 2:
        svc = Svc.fit(vectors, labels)
        gallery.set_classifier(rev, names, svc.coef, svc.intercept)
    # methods centred's and asnorm's thresholds too, when the model has its centred space and cohort
    space, norm = centring(embedder, purpose="recognize"), score_norm(embedder)
    rec = Recognizer(embedder, vectors, labels, names, svc=svc, space=space, norm=norm)
    kinds = ("nn", *(("svc",) if svc else ()), *(("centred",) if space is not None else ()),
             *(("asnorm",) if norm is not None else ()))
    cal = {"revision": rev, "far_target": far_target, "source": gallery.get("impostor_source"),
           **unknown_thresholds(rec, imp, imp_names, far_target, kinds)}
    with gallery.transaction(bump=False):
        gallery.set("calibration", cal)
    return cal
