"""Fitting a model's int8 network (`siamese quantize MODEL`): its activation ranges, measured on
faces of people it trained on, saved as MODEL/quantization.json (`siamese.model.quantize`).

Never the model's validation people (its thresholds are fitted on them) nor anyone it never saw
(the test people): the ranges are a fitted quantity like any other. How close the int8 network
stays is measured on the validation people's faces: the cosine between each face's float32 and
int8 embeddings, and the share of validation pairs whose same/different decision at the model's
threshold changes.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np

from siamese.data.lfw import LFW
from siamese.eval.calibration import validation_faces
from siamese.model import modeldir, quantize
from siamese.model.embedder import Embedder
from siamese.model.packed import weights_path

__all__ = ["quantize_model"]

log = logging.getLogger(__name__)


def _training_faces(model: Embedder, n: int, lfw_root, cache_dir, detector, seed: int
                    ) -> tuple[np.ndarray, list[str]]:
    """`n` random faces of the model's training people (people.json's seen, less its validation
    people; those with DevTrain photos), at its input size: ((n, S, S, 3) uint8, the people drawn)."""
    people = sorted(model.seen_people() - set(model.validation_people()))
    counts = LFW(lfw_root).people("view1_train")
    people = [p for p in people if p in counts]
    if not people:
        raise ValueError(f"{model.path}: people.json names no training people with LFW DevTrain photos — "
                         "int8 ranges are fitted on faces the model trained on")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(people))
    chosen, total = [], 0
    for i in order:  # whole people until there are n faces (rather than n people's single faces)
        chosen.append(people[i])
        total += counts[people[i]]
        if total >= 2 * n:
            break
    faces, _ = validation_faces(model, chosen, lfw_root, cache_dir=cache_dir, detector=detector)
    pick = rng.choice(len(faces), min(n, len(faces)), replace=False)
    return faces[np.sort(pick)], sorted(chosen)


def _closeness(fp32: Embedder, int8: Embedder, lfw_root, cache_dir, detector, seed: int) -> dict:
    """float32 vs int8 on the validation people's faces: cosines, and decisions that flip."""
    val = fp32.validation_people()
    if not val:
        return {}
    faces, labels = validation_faces(fp32, val, lfw_root, cache_dir=cache_dir, detector=detector)
    a, b = fp32.embed(faces), int8.embed(faces)
    cos = np.sum(a * b, axis=1)
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(faces), (2, 4000))
    keep = i != j
    i, j = i[keep], j[keep]
    flips = np.mean(fp32.verify(a[i], a[j])[1] != int8.verify(b[i], b[j])[1])
    return {"faces": int(len(faces)), "people": int(len(set(labels))), "cosine_mean": round(float(cos.mean()), 5),
            "cosine_min": round(float(cos.min()), 5), "pairs": int(len(i)), "decisions_changed": round(float(flips), 5)}


def quantize_model(model_dir: str | os.PathLike, lfw_root=None, *, cache_dir=None, detector=None, faces: int = 256,
                   seed: int = 0, overwrite: bool = False) -> list[dict]:
    """Fit quantization.json for a model (for each member of an ensemble, in its own dir).

    Args:
        model_dir: a model dir with a float32 embedding.onnx (packed or not) and people.json.
        lfw_root, cache_dir, detector: where the LFW faces come from (as for
            `siamese.eval.verify_calibration.calibrate`).
        faces: how many faces (each also mirrored) the ranges are measured on.
        seed: which faces.
        overwrite: refit an existing quantization.json.

    Returns:
        One row per network: {"model", "faces", "people", "closeness" (`_closeness`)}.

    Raises:
        FileExistsError: quantization.json exists and not `overwrite` (nothing is written).
        FileNotFoundError: no float32 embedding.onnx to quantize.
    """
    root = modeldir.find_model_dir(model_dir)
    meta = json.loads((root / "model.json").read_text())  # which networks: no need to load them
    if "ensemble" in meta:
        dirs = [(root / p).resolve() for p in meta["ensemble"]]
    else:
        dirs = [root]
    for d in dirs:  # refuse before fitting anything
        if (d / quantize.FILE).exists() and not overwrite:
            raise FileExistsError(f"{d / quantize.FILE} exists — pass overwrite=true to refit it")
    rows = []
    for d in dirs:
        src = weights_path(d, "embedding.onnx")
        if src is None:
            raise FileNotFoundError(f"{d}: no embedding.onnx to quantize — export the model with `siamese export`")
        fp32 = Embedder.load(d, prefer=("onnx",))
        x, people = _training_faces(fp32, faces, lfw_root, cache_dir, detector, seed)
        log.info("%s: fitting int8 ranges on %d faces of %d training people", d, len(x), len(people))
        fitted, data = quantize.fit(src, x)
        drawn = {"faces": int(len(x)), "people": len(people), "seed": seed,
                 "data": "LFW DevTrain photos of the model's training people", "drawn_from": people}
        quantize.write(d, fitted, data, src, drawn, overwrite=overwrite)
        closeness = _closeness(fp32, Embedder.load(d, prefer=("onnx",), precision="int8"), lfw_root, cache_dir,
                               detector, seed)
        quantize.write(d, fitted, data, src, drawn, overwrite=True, closeness=closeness)  # and how close it is
        rows.append({"model": str(d), "faces": int(len(x)), "people": len(people), "closeness": closeness})
    return rows

