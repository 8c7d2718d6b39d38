"""What a model directory holds, read in one place.

    model.json     input size, colour, alignment (template, cache size, padding), the pair
                   threshold and where it came from; after export also the formats and SHA-256s
    people.json    who the model saw: "seen" (training + validation people: evaluation refuses
                   their pairs) and "validation" (held out: calibrations are fitted on them)
    verify.json    calibrations fitted after training (`siamese calibrate`), each naming the
    cluster.json   model it was fitted for by fingerprint, so a copy beside another model is ignored
    impostors.npy  embeddings of LFW people it never saw, one face each (+ impostors.json: their
                   names, source and the model's fingerprint): a gallery's unknown threshold is
                   calibrated on them when no LFW copy is at hand
    cluster_cohort.npy  embeddings of faces of people it trained on, one face each: the cohort of
                   the local centring cluster.json may ask for ("centre": its k, gamma, SHA-256)
    embedding.*, head.*   the networks (.keras, .onnx, ...)

`siamese.model.Embedder` exposes these; this module is the file-level part. No TensorFlow.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from siamese.io.files import atomic_save_npy, atomic_write_text, file_digest
from siamese.io.paths import NAMED_MODELS

__all__ = ["CALIBRATIONS", "COHORT", "find_model_dir", "read_calibration", "read_cohort", "read_people",
           "seen_people", "sha256", "validation_people", "write_cohort", "write_model_json"]

log = logging.getLogger(__name__)

CALIBRATIONS = ("verify.json", "cluster.json", "impostors.json", "impostors.npy",
                "cluster_cohort.npy")  # fitted after training
COHORT = "cluster_cohort.npy"


def find_model_dir(path: str | os.PathLike, exported: bool = True) -> Path:
    """The dir holding model.json: `path` itself, or inside a run dir `export/` or `model/`.

    For a run dir, `export/` wins when `exported` and it is newer than `model/` (a run resumed
    after its export has a newer `model/`, and the stale export is skipped). A shipped model's
    name (`siamese.io.paths.NAMED_MODELS`: default, lfw_only, distilled, int8, bf16) names its dir unless a
    folder of that name is where the command runs.
    """
    if str(path) in NAMED_MODELS and not Path(path).exists():
        path = NAMED_MODELS[str(path)]
    path = Path(path)
    ex, mo = path / "export" / "model.json", path / "model" / "model.json"
    if (path / "model.json").is_file():
        return path
    if exported and ex.is_file() and (not mo.is_file() or ex.stat().st_mtime >= mo.stat().st_mtime):
        return ex.parent
    if mo.is_file():
        return mo.parent
    raise FileNotFoundError(f"{path}: no model.json here or in {path / 'model'} — pass a "
                            "training run dir (checkpoints/NAME), its model/ dir, or an export dir")


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a model file."""
    return file_digest(path, "sha256")


def write_model_json(model_dir: str | os.PathLike, meta: dict) -> Path:
    """Write model.json atomically (see the module docstring for its keys)."""
    return atomic_write_text(Path(model_dir) / "model.json", json.dumps(meta, indent=2))


def read_people(model_dir: str | os.PathLike) -> dict | None:
    """people.json of a model dir (or of a run dir's model/), or None when there is none."""
    for p in (Path(model_dir) / "people.json", Path(model_dir) / "model" / "people.json"):
        if p.is_file():
            return json.loads(p.read_text())
    return None


def seen_people(model_dir: str | os.PathLike) -> set[str]:
    """People the model saw in training or validation (empty set, with a warning, if none recorded)."""
    people = read_people(model_dir)
    if people is None:
        log.warning("%s has no people.json: cannot check the test people against training", model_dir)
        return set()
    return set(people["seen"])


def validation_people(model_dir: str | os.PathLike) -> list[str]:
    """The people held out of training for validation, from the model's people.json.

    Raises:
        ValueError: no people.json, or none listed.
    """
    people = read_people(model_dir)
    if people is None:
        raise ValueError(f"{model_dir}: no people.json — cannot tell which people the model never saw")
    if not people.get("validation"):
        raise ValueError(f"{model_dir}/people.json: no validation people listed — retrain, or "
                         "calibrate on labelled faces with fit_clustering")
    return list(people["validation"])


def read_calibration(model_dir: str | os.PathLike, name: str, fingerprint: str) -> dict | None:
    """A calibration file (`CALIBRATIONS`) beside the model, or None when it is missing or was
    fitted for another model (logged).

    Raises:
        ValueError: the file is not valid JSON (names it and the command that refits it).
    """
    path = Path(model_dir) / name
    if not path.is_file():
        return None
    try:
        cal = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a calibration ({err}) — refit it: `siamese calibrate "
                         f"{model_dir} overwrite=true`") from None
    if not isinstance(cal, dict) or (cal.get("model") or {}).get("fingerprint") != fingerprint:
        log.warning("%s was calibrated for another model — ignoring it; refit it with "
                    "`siamese calibrate %s overwrite=true`", path, model_dir)
        return None
    return cal


def write_impostors(model_dir: str | os.PathLike, vectors, names: list[str], source: str, model: dict) -> None:
    """The model's bank of stranger embeddings (float16: enough for scores, half the bytes)."""
    atomic_save_npy(Path(model_dir) / "impostors.npy", np.asarray(vectors, np.float16))
    atomic_write_text(Path(model_dir) / "impostors.json", json.dumps(
        {"names": list(names), "source": source, "model": model}, indent=1))


def read_impostors(model_dir: str | os.PathLike, fingerprint: str):
    """(vectors (n, D) float32, names, source) of the model's bank, or None when there is none for
    this model (logged when it was made for another)."""
    meta = read_calibration(model_dir, "impostors.json", fingerprint)
    path = Path(model_dir) / "impostors.npy"
    if meta is None or not path.is_file():
        return None
    try:
        vectors = np.load(path, allow_pickle=False).astype(np.float32)
    except (ValueError, OSError) as err:  # numpy's own text would suggest allow_pickle: never for a bank
        why = "not a plain array" if "pickle" in str(err) else str(err)
        raise ValueError(f"{path}: not a readable .npy ({why}) — refit it: `siamese calibrate {model_dir} "
                         "fit=[impostors] overwrite=true`") from None
    if len(vectors) != len(meta["names"]):
        raise ValueError(f"{path}: {len(vectors)} rows but impostors.json names {len(meta['names'])} — refit it")
    return vectors, list(meta["names"]), meta.get("source", str(path))


def write_cohort(model_dir: str | os.PathLike, vectors) -> str:
    """Save the clustering cohort (float16) beside the model; returns its SHA-256 for cluster.json."""
    path = Path(model_dir) / COHORT
    atomic_save_npy(path, np.asarray(vectors, np.float16))
    return sha256(path)


def read_cohort(model_dir: str | os.PathLike, digest: str) -> np.ndarray:
    """(m, D) float32 clustering cohort of the model, checked against the SHA-256 cluster.json names.

    Raises:
        ValueError: missing, not a plain array, or not the file cluster.json was fitted with.
    """
    path = Path(model_dir) / COHORT
    refit = f"refit it: `siamese calibrate {model_dir} fit=[cluster] overwrite=true`"
    if not path.is_file():
        raise ValueError(f"{path}: missing, but cluster.json centres on it — {refit}")
    if sha256(path) != digest:
        raise ValueError(f"{path}: not the cohort cluster.json was fitted with (SHA-256 differs) — {refit}")
    try:
        return np.load(path, allow_pickle=False).astype(np.float32)
    except (ValueError, OSError) as err:
        why = "not a plain array" if "pickle" in str(err) else str(err)
        raise ValueError(f"{path}: not a readable .npy ({why}) — {refit}") from None
