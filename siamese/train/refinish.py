"""Redo a run's last step on this machine: for runs trained elsewhere on a lossy cache copy."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from siamese.io.files import atomic_write_text
from siamese.train.trainer import finish, protocol_data

__all__ = ["refinish"]


def refinish(run_dir: str | os.PathLike, cache_dir: str | os.PathLike,
             lfw_root: str | os.PathLike | None = None) -> dict:
    """Redo a run's last step (`finish`) on this machine's cache, from its model/ parts.

    For runs trained elsewhere (a GPU machine, `tools/gpu_train.sh`) on a lossy copy of the
    cache: the threshold, cluster.json and test numbers are recomputed on the real faces, with
    the validation people the run held out (same seed, same split). Returns the new metrics.
    """
    import keras

    from siamese.model.networks import float32_clone  # Keras; registers the custom layers
    from siamese.train.loop import save

    run_dir = Path(run_dir)
    cfg = OmegaConf.load(run_dir / "config.yaml")
    cfg.cache_dir, cfg.data.root = str(cache_dir), lfw_root
    state = json.loads((run_dir / "state.json").read_text())
    for part in ("embedding", "head"):  # parts cut from a run stopped early keep its policy
        path = run_dir / "model" / f"{part}.keras"
        model = keras.saving.load_model(path, compile=False)
        f32 = float32_clone(model)
        if f32 is not model:  # rewrite only a converted part: a .keras file's bytes are the
            save(f32, path)  # model's fingerprint (its galleries, enrolments, calibrations)
    trained = run_dir / "metrics.json"  # what the training machine measured, on its copy
    trained = json.loads(trained.read_text()) if trained.exists() else {}
    fc, people, test_pairs, _, val_faces, val = protocol_data(cfg, np.random.default_rng(cfg.seed))
    metrics = finish(cfg, run_dir, fc, val, test_pairs, state, cfg.mixed_precision, seen=people,
                     validation=val_faces)
    metrics.update(backend=trained.get("backend", "unknown"),
                   peak_memory_mb=trained.get("peak_memory_mb"), refinished=True,
                   test_on_training_machine=trained.get("test"))
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
