"""Calibration on people the model never trained on: verification (verify.json) and clustering
(cluster.json), each saved beside the model.

Verification. `calibrate` enrols N images of each unseen peopleDevTest person, probes with their
other images (genuine) and with other such people's (impostors), and picks the cut on the share of
matching enrolled images (`siamese.verify.judge`) with the best accuracy, or the lowest cut within
a false-accept rate. The result, with the model's identity (`siamese.gallery.model_identity`), is
saved as `verify.json` beside the model; `calibrated_threshold` reads it back for
`siamese.verify.Verifier` (and ignores one fitted for another model).

    python -m siamese.calibration MODEL [--cache DIR] [--far F] [--out PATH] [--overwrite]

Clustering. `calibrate_clustering` fits the agglomerative threshold and floor (`fit_clustering`)
on the model's validation people — held out of training, listed in its people.json — and saves
them as `cluster.json`, which `clustering_settings` reads back for `siamese.cluster`. Training
writes it; for an older model:

    python -m siamese.calibration MODEL --clustering [--cache DIR] [--overwrite]

No TensorFlow here: the shipped model runs on ONNX Runtime.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from siamese.faces import Detector, align, resize_faces
from siamese.gallery import model_identity
from siamese.images import atomic_write_text, read_image

__all__ = ["calibrate", "calibrated_threshold", "calibrate_clustering", "clustering_settings",
           "fit_clustering", "validation_faces", "validation_people", "main"]

log = logging.getLogger(__name__)

from siamese import DEFAULT_MODEL  # noqa: E402


def _read_for(path: Path, embedder) -> dict | None:
    """A calibration file beside the model, or None if missing or fitted for another model."""
    if not path.is_file():
        return None
    try:
        cal = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a calibration ({err}) — re-run `python -m "
                         f"siamese.calibration {embedder.path} --overwrite`") from None
    if (cal.get("model") or {}).get("fingerprint") != model_identity(embedder)["fingerprint"]:
        log.warning("%s was calibrated for another model — ignoring it; re-run calibrate", path)
        return None
    return cal


def calibrated_threshold(embedder, detection_threshold: float | None = None) -> float | None:
    """The verification threshold in `verify.json` beside the model, if fitted for this model.

    None when there is no such file or it was fitted for another model (logged). A calibration
    made at another detection threshold is still returned, with a warning: its share was fitted
    for the model's own.
    """
    path = embedder.path / "verify.json"
    cal = _read_for(path, embedder)
    if cal is None:
        return None
    try:
        threshold = float(cal["verification_threshold"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a calibration ({err}) — re-run `python -m "
                         f"siamese.calibration {embedder.path} --overwrite`") from None
    fitted = cal.get("detection_threshold")
    if detection_threshold is not None and fitted is not None and \
            abs(detection_threshold - fitted) > 1e-6:
        log.warning("%s: verification threshold %.3f was fitted at detection threshold %.4f, "
                    "not %.4f", path, threshold, fitted, detection_threshold)
    return threshold


def _lfw_crops(lfw, refs: list, embedder, fc=None, detector=None) -> np.ndarray:
    """(n, S, S, 3) uint8 crops of LFW images as the model expects: from a face cache when
    given (fast), else detected (the central face, as the cache does) and aligned here."""
    from siamese.faces import LFW_MEDIAN_LANDMARKS, central_face

    al = embedder.meta.get("alignment", {})
    size, padding = int(al.get("cache_size", 112)), float(al.get("padding", 0.0))
    if fc is not None:
        if fc.config.get("padding") != padding or fc.images.shape[1] != size:
            raise ValueError(f"face cache aligned at {fc.images.shape[1]} px, padding "
                             f"{fc.config.get('padding')}; the model expects {size} px, padding "
                             f"{padding} — build a matching cache or calibrate without one")
        return resize_faces(np.asarray(fc.images[fc.rows(refs)]), embedder.input_size)
    out = np.empty((len(refs), size, size, 3), np.uint8)
    for i, ref in enumerate(refs):
        image = read_image(lfw.path(ref))
        face = central_face(detector.detect(image), image.shape)
        landmarks = LFW_MEDIAN_LANDMARKS if face is None else face.landmarks  # as the cache does
        out[i] = align(image, landmarks, size, padding)
    return resize_faces(out, embedder.input_size)


def calibrate(embedder, lfw_root: str | os.PathLike | None = None, *, cache_dir=None,
              detector: Detector | None = None, n_enroll: int = 10, max_probes: int = 10,
              far: float | None = None, repeats: int = 5, limit_people: int | None = None,
              seed: int = 0, out: str | os.PathLike | None = None, overwrite: bool = False) -> dict:
    """Fit the verification threshold on LFW people the model never saw, and save it.

    For each peopleDevTest person with at least `n_enroll` + 1 images (and not in the model's
    people.json): enrol `n_enroll` random images, probe with up to `max_probes` of the rest
    (genuine) and with as many images of other such people (impostors); `repeats` random draws
    are pooled (with 10 enrolled images only 40 people qualify: one draw is noisy). A probe's
    share is the fraction of the enrolled images whose head score reaches the detection
    threshold (the model's own); the verification threshold is the share cut with the best
    accuracy on this balanced set, or with `far`, the lowest cut whose false-accept rate is at
    most `far`.

    Args:
        embedder: a `siamese.export.Embedder`.
        lfw_root: LFW copy (None: LFW_ROOT or data/lfw).
        cache_dir: an aligned LFW face cache (`siamese prepare`) — seconds instead of a minute;
            without one, faces are detected with `detector` (default YuNet).
        n_enroll: enrolled images per person. max_probes: genuine probes per person at most.
        far: target false-accept rate per probe; None maximises accuracy.
        repeats: random enrol / probe draws pooled.
        limit_people: use only the first this many eligible people (tests).
        seed: for the random enrol / probe split and the impostor draw.
        out: where to write the result; None = `verify.json` beside the model; False = nowhere.
        overwrite: replace an existing `out`.

    Returns:
        {"verification_threshold", "detection_threshold", "n_enroll", "criterion", "people",
        "genuine_probes", "impostor_probes", "accuracy", "tar", "far", "levels": [{share cut,
        tar, far, accuracy}], "single_image": pair accuracy/tar/far of one enrolled image, "model"}.
    """
    from siamese import cache
    from siamese.data import LFW
    from siamese.evaluate import seen_people
    from siamese.faces import YuNetDetector
    from siamese.verify import judge  # here: siamese.verify imports this module

    target = None if out is False else Path(out) if out else embedder.path / "verify.json"
    if target is not None and target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists — pass overwrite=True (--overwrite) to "
                              "recalibrate")
    if n_enroll < 2:
        raise ValueError(f"n_enroll={n_enroll}: the share of one image is all or nothing — "
                         "use 2 or more")
    lfw, rng = LFW(lfw_root), np.random.default_rng(seed)
    seen = seen_people(embedder.path)
    people = {p: n for p, n in sorted(lfw.people("view1_test").items()) if p not in seen}
    eligible = [p for p, n in people.items() if n >= n_enroll + 1][:limit_people]
    if len(eligible) < 2:
        raise ValueError(f"{lfw.root}: only {len(eligible)} unseen peopleDevTest people with "
                         f"{n_enroll + 1}+ images — lower n_enroll")
    plan = []  # (person, enrolled refs, genuine probes, impostor probes), `repeats` draws each
    for _ in range(repeats):
        draw = []
        for p in eligible:
            refs = lfw.identities({p: people[p]})
            order = rng.permutation(len(refs))
            draw.append((p, [refs[i] for i in order[:n_enroll]],
                         [refs[i] for i in order[n_enroll:n_enroll + max_probes]]))
        for p, enrolled, genuine in draw:  # impostors: other eligible people's probe images
            pool = [r for q, _, g in draw if q != p for r in g]
            pick = rng.choice(len(pool), min(len(genuine), len(pool)), replace=False)
            plan.append((p, enrolled, genuine, [pool[i] for i in pick]))
    refs = sorted({r for _, e, g, imp in plan for r in (*e, *g, *imp)},
                  key=lambda r: (r.person, r.index))
    fc = cache.load(cache_dir) if cache_dir else None
    crops = _lfw_crops(lfw, refs, embedder, fc, detector or (None if fc else YuNetDetector()))
    row = {r: i for i, r in enumerate(refs)}
    emb = embedder.embed(crops)
    det = embedder.threshold
    shares, same, single = [], [], []
    for p, enrolled, genuine, imp in plan:
        e = emb[[row[r] for r in enrolled]]
        for probes, label in ((genuine, True), (imp, False)):
            x = emb[[row[r] for r in probes]]
            scores = embedder.score(np.tile(e, (len(x), 1)),
                                    np.repeat(x, len(e), axis=0)).reshape(len(x), len(e))
            shares += judge(scores, det, 0.5)[0].tolist()
            single += (scores[:, 0] >= det).tolist()
            same += [label] * len(x)
    shares, same, single = np.array(shares), np.array(same), np.array(single)
    levels = []
    for cut in (np.arange(n_enroll) + 0.5) / n_enroll:  # between the possible shares k / N
        acc = float(((shares >= cut) == same).mean())
        levels.append({"share_at_least": round(float(np.ceil(cut * n_enroll) / n_enroll), 4),
                       "threshold": round(float(cut), 4), "accuracy": round(acc, 4),
                       "tar": round(float((shares[same] >= cut).mean()), 4),
                       "far": round(float((shares[~same] >= cut).mean()), 4)})
    if far is None:
        best = max(levels, key=lambda r: (r["accuracy"], -r["far"]))
    else:
        ok = [r for r in levels if r["far"] <= far]
        best = ok[0] if ok else levels[-1]
        if not ok:
            log.warning("no share cut reaches FAR <= %g (at best %.4f): using the strictest", far,
                        best["far"])
    result = {"verification_threshold": best["threshold"], "detection_threshold": det,
              "n_enroll": n_enroll,
              "criterion": "accuracy" if far is None else f"far <= {far}",
              "people": len(eligible), "repeats": repeats, "genuine_probes": int(same.sum()),
              "impostor_probes": int((~same).sum()),
              **{k: best[k] for k in ("accuracy", "tar", "far")},
              "single_image": {"accuracy": round(float((single == same).mean()), 4),
                               "tar": round(float(single[same].mean()), 4),
                               "far": round(float(single[~same].mean()), 4)},
              "levels": levels, "data": f"LFW peopleDevTest (unseen), seed {seed}",
              "model": model_identity(embedder)}
    if target is not None:
        atomic_write_text(target, json.dumps(result, indent=2))
    log.info("verification threshold %.3f (%s): accuracy %.4f, TAR %.4f, FAR %.4f on %d people",
             result["verification_threshold"], result["criterion"], result["accuracy"],
             result["tar"], result["far"], result["people"])
    return result


def fit_clustering(emb: np.ndarray, truth, thresholds=None, k: int = 10) -> dict:
    """The agglomerative settings (`siamese.graph.agglomerative`) for labelled faces.

    floor, the bar for big groups: halfway between the mean cosine of same-person pairs and of
    different-person pairs. A big group's mean similarity to another settles near one or the
    other, and a validation set of mostly small groups cannot fit this bar itself (it barely
    has big groups; measured in docs/benchmarks.md).
    threshold, the bar for two single faces: a grid search for the best BCubed F1.

    Args:
        emb: (n, D) unit embeddings of people the model did not train on; truth: (n,) their ids.
        thresholds: to try (default: the floor, then 0.10 to 0.95 in steps of 0.025 above it).
        k: kNN shortlist.

    Returns:
        {"threshold", "floor", "k", "bcubed_f1", "same_mean", "different_mean",
        "grid": [[threshold, f1], ...]}.
    """
    from siamese.graph import agglomerative, knn
    from siamese.metrics import bcubed_scores

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
        thresholds = [floor, *(t for t in np.round(np.arange(0.1, 0.951, 0.025), 3) if t > floor)]
    emb32 = emb.astype(np.float32)
    near = knn(emb32, k)
    grid = [[float(t), round(bcubed_scores(truth, agglomerative(emb32, float(t), floor, k, near))["f1"], 4)]
            for t in thresholds if t >= floor]
    if not grid:
        raise ValueError(f"no threshold to try at or above the floor {floor:.3f}")
    t, f1 = max(grid, key=lambda r: (r[1], r[0]))  # ties: the stricter threshold
    return {"threshold": t, "floor": floor, "k": k, "bcubed_f1": f1,
            "same_mean": round(same_mean, 4), "different_mean": round(diff_mean, 4), "grid": grid}


def clustering_settings(embedder) -> dict | None:
    """{"threshold", "floor", "k", ...} from `cluster.json` beside the model, or None when
    there is none for this model."""
    cal = _read_for(embedder.path / "cluster.json", embedder)
    if cal is not None and not {"threshold", "floor", "k"} <= set(cal):
        raise ValueError(f"{embedder.path / 'cluster.json'}: missing threshold/floor/k — re-run "
                         f"`python -m siamese.calibration {embedder.path} --clustering --overwrite`")
    return cal


def validation_people(model_dir: str | os.PathLike) -> list[str]:
    """The people held out of training for validation, from the model's people.json."""
    for p in (Path(model_dir) / "people.json", Path(model_dir) / "model" / "people.json"):
        if p.is_file():
            people = json.loads(p.read_text()).get("validation")
            if people:
                return list(people)
            raise ValueError(f"{p}: no validation people listed — retrain, or calibrate on "
                             "labelled faces with fit_clustering")
    raise ValueError(f"{model_dir}: no people.json — cannot tell which people the model never saw")


def validation_faces(embedder, people: list[str], lfw_root=None, *, cache_dir=None,
                     detector: Detector | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The LFW (DevTrain) photos of `people`, aligned for `embedder`: from a face cache when
    given, else detected with `detector` (default YuNet).

    Returns:
        ((n, S, S, 3) uint8 faces at `embedder.input_size`, (n,) person names).
    """
    from siamese import cache
    from siamese.data import LFW
    from siamese.faces import YuNetDetector

    lfw = LFW(lfw_root)
    counts = lfw.people("view1_train")
    refs = lfw.identities({p: counts[p] for p in people if p in counts})
    fc = cache.load(cache_dir) if cache_dir else None
    faces = _lfw_crops(lfw, refs, embedder, fc, detector or (None if fc else YuNetDetector()))
    return faces, np.array([r.person for r in refs])


def calibrate_clustering(embedder, lfw_root: str | os.PathLike | None = None, *, cache_dir=None,
                         detector: Detector | None = None, faces: np.ndarray | None = None,
                         labels=None, out: str | os.PathLike | None = None,
                         overwrite: bool = False) -> dict:
    """Fit the agglomerative clustering settings on the model's validation people; save them.

    Args:
        embedder: a `siamese.export.Embedder`.
        lfw_root, cache_dir, detector: where the validation people's LFW faces come from (as for
            `calibrate`); unused when `faces` is given.
        faces, labels: or the faces themselves, (n, S, S, 3) uint8 at the model's input size,
            and (n,) person ids (training passes its validation set).
        out: None = `cluster.json` beside the model; False = nowhere. overwrite: replace it.

    Returns:
        {"threshold", "floor", "k", "bcubed_f1", "people", "faces", "data", "grid", "model"}.
    """
    target = None if out is False else Path(out) if out else embedder.path / "cluster.json"
    if target is not None and target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists — pass overwrite=True (--overwrite) to recalibrate")
    if faces is None:
        faces, labels = validation_faces(embedder, validation_people(embedder.path), lfw_root,
                                         cache_dir=cache_dir, detector=detector)
        data = "LFW validation people (held out of training)"
    else:
        data = "validation people (held out of training)"
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise ValueError("clustering calibration needs faces of at least two people")
    result = {**fit_clustering(embedder.embed(faces), labels),
              "people": int(len(np.unique(labels))), "faces": int(len(labels)), "data": data,
              "model": model_identity(embedder)}
    if target is not None:
        atomic_write_text(target, json.dumps(result, indent=1))
    log.info("clustering: threshold %.3f, floor %.3f -> BCubed F1 %.4f on %d validation people "
             "(%d faces)", result["threshold"], result["floor"], result["bcubed_f1"],
             result["people"], result["faces"])
    return result


def main(argv: list[str] | None = None) -> None:
    """`python -m siamese.calibration [MODEL] [--cache DIR] [--far F] [--out PATH] ...`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m siamese.calibration",
                                     description="fit the verification threshold -> "
                                                 "MODEL/verify.json (or with --clustering the "
                                                 "clustering settings -> MODEL/cluster.json)")
    parser.add_argument("model", nargs="?", default=str(DEFAULT_MODEL))
    parser.add_argument("--lfw", default=None, help="LFW root (default: LFW_ROOT or data/lfw)")
    parser.add_argument("--cache", default=None, help="aligned LFW face cache (much faster)")
    parser.add_argument("--n-enroll", type=int, default=10)
    parser.add_argument("--far", type=float, default=None, help="target false-accept rate")
    parser.add_argument("--repeats", type=int, default=5, help="random draws pooled")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="default: MODEL/verify.json")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--clustering", action="store_true",
                        help="fit the clustering settings instead -> MODEL/cluster.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        from siamese.export import Embedder

        if args.clustering:
            r = calibrate_clustering(Embedder.load(args.model), args.lfw, cache_dir=args.cache,
                                     out=args.out, overwrite=args.overwrite)
        else:
            r = calibrate(Embedder.load(args.model), args.lfw, cache_dir=args.cache,
                          n_enroll=args.n_enroll, far=args.far, repeats=args.repeats,
                          seed=args.seed, out=args.out, overwrite=args.overwrite)
        print(json.dumps({k: v for k, v in r.items() if k not in ("levels", "grid", "model")},
                         indent=2))
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
