"""Calibration on people the model never trained on: clustering (cluster.json) and the stranger
bank (impostors.npy), each saved beside the model (`siamese calibrate MODEL`); verification
(verify.json) is `siamese.eval.verify_calibration`'s.

Clustering. `calibrate_clustering` fits the agglomerative threshold and floor, and the other
algorithms' own settings (`siamese.eval.cluster_fit`), on the model's validation people
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

from siamese.data.cache import load_if_built
from siamese.data.lfw import LFW, ImageRef
from siamese.data.unseen import lfw_crops
from siamese.eval.cluster_fit import (
    choose_centring,
    fit_average,
    fit_clustering,
    fit_other_algorithms,
    held_out_clustering,
)
from siamese.eval.openset import fit_recognize_gamma
from siamese.faces.detect import Detector, YuNetDetector
from siamese.gallery.calibrate import degraded_embeddings, impostors_from_lfw
from siamese.io.files import atomic_write_text
from siamese.model.centre import Centring, centring
from siamese.model.modeldir import COHORT, write_cohort, write_impostors

__all__ = ["calibrate_clustering", "calibrate_impostors", "calibrate_recognize", "cohort_embeddings",
           "validation_embeddings", "validation_faces"]

log = logging.getLogger(__name__)


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
                         halvings: int = 20, data: str | None = None, refits_recognize: bool = False) -> dict:
    """Fit every clustering algorithm's settings on the model's validation people; save them.

    The validation F1s the settings are chosen by are in-sample (the same people fit and score them);
    "held_out" says how they carry to other people (`held_out_clustering`: fitted on half the people,
    scored on the rest, `halvings` random halvings both ways; absent with fewer than four people).

    With `centre` ({"k", "gamma", "faces", "degraded", and optionally "ks", "gammas", "margin"}) and the LFW
    photos (the cohort's), agglomerative is also fitted in the locally centred space
    (`siamese.model.centre`: a cohort of `faces` faces of the model's training people, one each,
    `cohort_embeddings`), and kept, with average's bar, when it clusters held-out validation people
    better than the plain space (`siamese.eval.cluster_fit.choose_centring`: k and gamma stay `k` and
    `gamma` unless a pair of `ks` x `gammas` beats them there by more than `margin`; with fewer than four
    people, when its in-sample F1 is higher). The
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
        refits_recognize: the caller fits 1:N's gamma again right after (`calibrate_recognize`), so
            the one an older cluster.json had is not worth a word.

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
    spec, cohort, held = None, None, None  # held: the held-out F1 of the space chosen (choose_centring's, or plain's)
    if not centre:
        plain = held_out_clustering(embeddings, labels, halvings, seed)
        held = plain and {"bcubed_f1": plain["bcubed_f1"], "std": plain["std"], "halvings": int(halvings),
                          "space": "plain"}
    else:
        cohort, source = cohort_embeddings(embedder, lfw_root, cache_dir=cache_dir, detector=detector,
                                           faces=int(centre["faces"]), seed=seed,
                                           degraded=bool(centre.get("degraded", False)))
        pick = choose_centring(embeddings, labels, cohort, int(centre["k"]), float(centre["gamma"]),
                               centre.get("gammas") or (), float(centre.get("margin", 0.01)), halvings, seed,
                               ks=centre.get("ks") or ())
        k, gamma = (pick["k"], pick["gamma"]) if pick else (int(centre["k"]), float(centre["gamma"]))
        c = Centring(cohort, k, gamma)
        moved = c(embeddings)
        centred = fit_clustering(moved, labels, hard=None if hard is None else c(hard))
        best = {"plain": max(r[1] for r in fit["grid"]), "centred": max(r[1] for r in centred["grid"])}
        if pick["centred"] if pick else best["centred"] > best["plain"]:
            fit, others["average"] = centred, fit_average(moved, labels)
            spec = {"k": k, "gamma": gamma, "cohort": {"file": COHORT, "faces": len(cohort), "source": source}}
        space = f"k {k}, gamma {gamma}" if spec else "plain"
        held = pick and {**pick["held_out"][space], "halvings": int(halvings),
                         "space": f"centred, {space}" if spec else "plain"}
        fit["centring"] = {**best, "k": k, "gamma": gamma, "cohort": source,
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
        if (not refits_recognize and isinstance(old, dict)
                and (old.get("centre") or {}).get("recognize")):  # its space is replaced here
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
