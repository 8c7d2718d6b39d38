"""The teacher's side of a distillation run's training faces (`siamese train +experiment=distill`).

Each training image gets the teacher's embedding of it and of its mirror (`siamese.model.teacher_cache`),
and, as the config asks, views that may take its place in a batch: harder views of it
(`siamese.model.teacher_views`), morphs with other training people (`siamese.model.teacher_morphs`),
and faces from a user's own photos (`siamese.model.teacher_extra`), all centred on one mean.
"""

from __future__ import annotations

import logging

import numpy as np
from omegaconf import DictConfig

from siamese.data.cache import FaceCache
from siamese.data.sampling import FaceSet
from siamese.io.names import BadSetting
from siamese.model.teacher_cache import ERROR, targets
from siamese.model.teacher_cache import load as load_teacher_cache
from siamese.model.teacher_extra import extra_targets
from siamese.model.teacher_morphs import morph_targets
from siamese.model.teacher_views import view_targets

__all__ = ["with_teacher"]

log = logging.getLogger(__name__)


def with_teacher(cfg: DictConfig, fc: FaceCache, faces: FaceSet, split_rows: np.ndarray
                 ) -> tuple[FaceSet, np.ndarray, dict | None]:
    """`faces` with their teacher targets (`siamese.model.teacher_cache.targets`), centred on
    these training images only (the user's own faces, no cache row, get none), and their views:
    harder views (`distill.views_p`, `siamese.model.teacher_views`) and morphs with other training
    images (`distill.morphs_p`, `siamese.model.teacher_morphs`; `split_rows`: the split's training
    rows of the face cache `fc`, the only people a morph may show), and extra faces from a user's
    photos (`distill.extra`, `_extra_faces`). Returns the faces, each view's chance (K,), and the
    extra faces' record or None."""

    dc, ok, extra = cfg.distill, faces.rows >= 0, None
    t, center = targets(cfg.cache_dir, faces.rows[ok], check_files=dc.check_files)
    if t.shape[-1] != cfg.model.dim:
        raise ValueError(f"the teacher's embeddings are {t.shape[-1]}-D: distilling needs model.dim={t.shape[-1]}, "
                         f"not {cfg.model.dim}")
    faces.targets = np.zeros((len(faces), *t.shape[1:]), np.float32)
    faces.targets[ok] = t
    log.info("distilling: teacher targets for %d of %d training images", int(ok.sum()), len(faces))
    kinds = []  # (crops (n, K, S, S, 3), targets (n, K, D), chance of any of the K)
    if dc.get("views_p", 0.0) > 0:
        kinds.append((*view_targets(cfg.cache_dir, faces.rows[ok], center, cfg.model.input_size,
                                    check_files=dc.check_files), dc.views_p))
        log.info("distilling: %d harder views per image, one in place of the image with p %.2f",
                 kinds[-1][0].shape[1], dc.views_p)
    if dc.get("morphs_p", 0.0) > 0:
        split = {k: cfg[k] for k in ("protocol", "fold", "seed", "val_fraction")}
        kinds.append((*morph_targets(cfg.cache_dir, split, faces.rows[ok], split_rows, center, cfg.model.input_size,
                                     check_files=dc.check_files), dc.morphs_p))
        log.info("distilling: %d morphs per image with other training people, one in place of the image with "
                 "p %.2f", kinds[-1][0].shape[1], dc.morphs_p)
    if dc.get("extra"):
        faces.extra, faces.extra_targets, extra = _extra_faces(cfg, fc, faces, split_rows, center)
        extra["extra_p"] = float(dc.get("extra_p", 0.0))
        log.info("distilling: %d extra faces from %s (%d of %d dropped as a person this run must not learn: the guard "
                 "catches %.2f of their photos, and would drop %s of the training people's), one in place of an "
                 "image with p %.2f", extra["kept"], dc.extra, extra["dropped"], extra["faces"], extra["guard"],
                 extra["training_faces_dropped"], extra["extra_p"])
    if not kinds:
        return faces, np.zeros(0), extra
    crops, vt = (np.concatenate([k[i] for k in kinds], 1) for i in (0, 1))
    faces.views = np.zeros((len(faces), *crops.shape[1:]), np.uint8)
    faces.view_targets = np.zeros((len(faces), *vt.shape[1:]), np.float32)
    faces.views[ok], faces.view_targets[ok] = crops, vt
    return faces, np.concatenate([np.full(k[0].shape[1], k[2] / k[0].shape[1]) for k in kinds]), extra


def _extra_faces(cfg: DictConfig, fc: FaceCache, faces: FaceSet, split_rows: np.ndarray, center: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, dict]:
    """The extra faces of `distill.extra` (`siamese teach extra=DIR`), less any the teacher takes for
    a person the run must not learn: the people of every face-cache image outside the split's
    training rows `split_rows` (its validation and test people), caught at the share
    `distill.extra_guard` of their own photos (`siamese.model.teacher_extra.Guard`)."""
    dc = cfg.distill
    if cfg.train.id_weight or cfg.train.pair_weight:
        raise BadSetting("extra faces have no identity: distil with them only without the identity and pair terms "
                         "(train.id_weight=0 train.pair_weight=0)")
    raw, status, _ = load_teacher_cache(cfg.cache_dir, check_files=dc.check_files)
    ok = faces.rows >= 0
    rows = faces.rows[ok]
    kept = status[rows] != ERROR
    held = np.setdiff1d(np.flatnonzero(status != ERROR), split_rows)
    return extra_targets(cfg.cache_dir, dc.extra, center, np.asarray(raw[rows[kept]], np.float32).mean(1),
                         faces.labels[ok][kept], np.asarray(raw[held], np.float32).mean(1),
                         np.array([fc.refs[i].person for i in held]), cfg.model.input_size,
                         guard=dc.get("extra_guard", 0.98), check_files=dc.check_files)
