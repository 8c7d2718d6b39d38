"""Calibration of the verification threshold on LFW people the model never saw -> verify.json.

`calibrate` enrols N images of each unseen peopleDevTest person, probes with their other images
(genuine) and with other such people's (impostors), and picks the cut on the share of matching
enrolled images (`siamese.verify.judge`) with the best accuracy, or the lowest cut within a
false-accept rate. The result, with the model's identity (`siamese.gallery.model_identity`), is
saved as `verify.json` beside the model; `calibrated_threshold` reads it back for
`siamese.verify.Verifier` (and ignores one fitted for another model).

    python -m siamese.calibration MODEL [--cache DIR] [--far F] [--out PATH] [--overwrite]

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

__all__ = ["calibrate", "calibrated_threshold", "main"]

log = logging.getLogger(__name__)

from siamese import DEFAULT_MODEL  # noqa: E402


def calibrated_threshold(embedder, detection_threshold: float | None = None) -> float | None:
    """The verification threshold in `verify.json` beside the model, if fitted for this model.

    None when there is no such file or it was fitted for another model (logged). A calibration
    made at another detection threshold is still returned, with a warning: its share was fitted
    for the model's own.
    """
    path = embedder.path / "verify.json"
    if not path.is_file():
        return None
    try:
        cal = json.loads(path.read_text())
        threshold = float(cal["verification_threshold"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a calibration ({err}) — re-run `python -m "
                         f"siamese.calibration {embedder.path} --overwrite`") from None
    if (cal.get("model") or {}).get("fingerprint") != model_identity(embedder)["fingerprint"]:
        log.warning("%s was calibrated for another model — ignoring it; re-run calibrate", path)
        return None
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


def main(argv: list[str] | None = None) -> None:
    """`python -m siamese.calibration [MODEL] [--cache DIR] [--far F] [--out PATH] ...`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m siamese.calibration",
                                     description="fit the verification threshold -> "
                                                 "MODEL/verify.json")
    parser.add_argument("model", nargs="?", default=str(DEFAULT_MODEL))
    parser.add_argument("--lfw", default=None, help="LFW root (default: LFW_ROOT or data/lfw)")
    parser.add_argument("--cache", default=None, help="aligned LFW face cache (much faster)")
    parser.add_argument("--n-enroll", type=int, default=10)
    parser.add_argument("--far", type=float, default=None, help="target false-accept rate")
    parser.add_argument("--repeats", type=int, default=5, help="random draws pooled")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="default: MODEL/verify.json")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        from siamese.export import Embedder

        r = calibrate(Embedder.load(args.model), args.lfw, cache_dir=args.cache,
                      n_enroll=args.n_enroll, far=args.far, repeats=args.repeats, seed=args.seed,
                      out=args.out, overwrite=args.overwrite)
        print(json.dumps({k: v for k, v in r.items() if k not in ("levels", "model")}, indent=2))
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
