"""The teacher as a model directory (`siamese teach`): its centre and threshold from LFW DevTrain,
so `evaluate`, `calibrate`, `openset` and `bench cluster` put its row beside every student's.

The split is the students' own (`protocol`, `seed`, `val_fraction` as in conf/train.yaml): the
centre is the mean descriptor of the training people's images, the threshold the cosine with the
best accuracy on the validation people's pairs, and people.json names those validation people,
so clustering settings are fitted on the same people as the students'. Nothing is fitted on test
people; the teacher itself learned from faces outside LFW and saw none of its people.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from siamese.eval.calibration import calibrate_clustering
from siamese.eval.metrics import best_threshold
from siamese.model.embedder import Embedder
from siamese.model.teacher import write_teacher_dir
from siamese.model.teacher_cache import ERROR, load
from siamese.train.trainer import protocol_data

__all__ = ["make_teacher_dir"]

log = logging.getLogger(__name__)


def make_teacher_dir(cfg: DictConfig, out: str | Path) -> dict:
    """Write the teacher's model dir at `out` (model.json, people.json, cluster.json) from the
    teacher cache beside `cfg.cache_dir`; returns {"threshold", "val_accuracy", "cluster"}."""
    fc, _, _, faces, val_faces, val = protocol_data(cfg, np.random.default_rng(cfg.seed))
    raw, status, config = load(cfg.cache_dir)
    train_rows = faces.rows[status[faces.rows] != ERROR]
    center = np.asarray(raw[train_rows], np.float32).reshape(-1, raw.shape[-1]).mean(0)
    write_teacher_dir(out, center, 0.0, "", list(val_faces.names), {k: config[k] for k in
                                                                     ("lfw_root", "images", "index_sha256")})
    teacher = Embedder.load(out)
    emb = teacher.from_descriptors(np.asarray(raw[val_faces.rows], np.float32).mean(1))
    _, idx, same = val
    thr, acc = best_threshold((emb[idx[:, 0]] * emb[idx[:, 1]]).sum(1), same)
    write_teacher_dir(out, center, thr, f"validation people held out of the students' training: best "
                      f"accuracy {acc:.4f} on {len(same)} pairs", list(val_faces.names),
                      {k: config[k] for k in ("lfw_root", "images", "index_sha256")})
    teacher = Embedder.load(out)
    cluster = calibrate_clustering(teacher, embeddings=emb, labels=val_faces.labels, overwrite=True)
    log.info("teacher dir %s: cosine threshold %.4f (validation accuracy %.4f)", out, thr, acc)
    return {"threshold": thr, "val_accuracy": acc, "cluster": cluster}
