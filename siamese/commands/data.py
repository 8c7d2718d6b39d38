"""`siamese prepare`, `siamese data fetch|check`, `siamese teach`: getting LFW ready."""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig

from siamese.commands import plain
from siamese.data import cache
from siamese.data.fetch import check, link_existing
from siamese.data.lfw import LFW
from siamese.model import teacher_cache, teacher_extra, teacher_morphs, teacher_views
from siamese.train.teacher import make_teacher_dir
from siamese.train.trainer import protocol_data


def prepare(cfg: DictConfig) -> dict:
    """Build (or resume) the aligned LFW face cache; returns its stats."""
    stats = cache.build(LFW(cfg.data.root), cfg.cache_dir, plain(cfg.detector), size=cfg.align.size,
                        padding=cfg.align.padding, workers=cfg.workers, limit=cfg.limit,
                        progress=cfg.progress)
    print(f"LFW cache {cfg.cache_dir}: {stats['detected']}/{stats['images']} central faces "
          f"detected ({100 * stats['detection_rate']:.2f} %), {stats['fallback']} fallback, "
          f"{stats['errors']} errors, {stats['seconds']} s")
    return stats


def data(cfg: DictConfig) -> dict:
    """`siamese data fetch [--dest DIR] [link=false]` | `siamese data check [ROOT]`."""
    if cfg.action == "fetch":
        what, path = link_existing(cfg.dest, link=cfg.link)
        print({"downloaded": f"LFW ready at {path}", "linked": f"linked {cfg.dest} -> LFW copy",
               "exists": f"{path} already exists; leaving it alone",
               "elsewhere": f"an LFW copy already exists at {path}: set LFW_ROOT={path}, or pass "
                            f"link=true to link {cfg.dest} to it"}[what])
        return {"action": what, "path": str(path)}
    if cfg.action != "check":
        raise ValueError(f"data action {cfg.action!r}: choose fetch or check")
    r = check(cfg.root or cfg.data.root)
    print(f"{r['root']}: {r['images']} images of {r['people']} people")
    for split, c in r["splits"].items():
        print(f"{split:<12}{c['people']} people, {c['images']} images, {c['pairs']} pairs ({c['same']} same)")
    print(f"view2       {r['view2']['folds']} folds, {r['view2']['pairs']} pairs")
    print("md5         " + ", ".join(f"{name} {'ok' if ok else 'BAD'}" for name, ok in r["md5"].items()))
    if not all(r["md5"].values()):
        raise ValueError(f"{r['root']}: protocol files differ from the official ones (md5 BAD above) — "
                         "restore them (see README: Getting LFW)")
    return r


def teach(cfg: DictConfig) -> dict:
    """The teacher's embedding of every LFW image and its mirror (resumable), then its model dir;
    with `views=K`, also K harder views of every image through the teacher, and with `morphs=K`, K
    morphs of every training image of the split (both resumable). With `extra=DIR`, only the faces
    in the photos under DIR through the teacher (resumable), for `distill.extra=DIR`."""
    if cfg.extra:
        return {"extra": _extra(cfg)}

    stats = teacher_cache.build(cfg.cache_dir, LFW(cfg.data.root).root, workers=cfg.workers, progress=cfg.progress)
    print(f"teacher cache {teacher_cache.teacher_dir(cfg.cache_dir)}: {stats['detected']} images from their "
          f"detected face, {stats['fallback']} from a fallback box, {stats['error']} unreadable, "
          f"{stats['seconds']} s in all ({stats['workers']} workers)")
    r = make_teacher_dir(cfg, cfg.out)
    print(f"teacher model dir {cfg.out}: cosine threshold {r['threshold']:.4f} (validation accuracy "
          f"{r['val_accuracy']:.4f}); cluster.json BCubed F1 {r['cluster']['bcubed_f1']:.4f} on the validation "
          f"people — evaluate it with `siamese evaluate {cfg.out}`")
    if cfg.views:
        v = teacher_views.build_views(cfg.cache_dir, LFW(cfg.data.root).root, views=cfg.views, seed=cfg.views_seed,
                                      workers=cfg.workers, progress=cfg.progress)
        print(f"harder views {teacher_views.views_dir(cfg.cache_dir)}: {v['done']} views of {v['images']} images "
              f"({', '.join(f'{k} {n}' for k, n in v['kinds'].items())}), {v['errors']} unreadable, "
              f"{v['seconds']} s in all — train on them with distill.views_p=0.3")
        r["views"] = v
    if cfg.morphs:
        r["morphs"] = _morphs(cfg)
    return {"cache": stats, **r}


def _extra(cfg: DictConfig) -> dict:
    """`extra=DIR`: every face in the photos and videos under DIR, and its mirror, through the teacher."""
    e = teacher_extra.build_extra(cfg.cache_dir, cfg.extra, workers=cfg.workers, min_score=cfg.extra_min_score,
                                  min_face=cfg.extra_min_face, every_s=cfg.extra_every_s, progress=cfg.progress)
    print(f"extra faces {e['dir']}: {e['faces']} faces in {e['done']} of {e['sources']} photos and videos "
          f"({e['videos']} videos; {e['sources_without_face']} without a face), {e['errors']} unreadable, "
          f"{e['seconds']} s in all — distil with them: siamese train "
          f"+experiment=distill train.pair_weight=0 distill.extra={cfg.extra} distill.extra_p=0.3")
    return e


def _morphs(cfg: DictConfig) -> dict:
    """`morphs=K`: K morphs of each training image of the split in cfg, through the teacher."""
    split = {k: cfg[k] for k in ("protocol", "fold", "seed", "val_fraction")}
    _, _, _, faces, _, _ = protocol_data(cfg, np.random.default_rng(cfg.seed))
    m = teacher_morphs.build_morphs(cfg.cache_dir, LFW(cfg.data.root).root, faces.rows, faces.labels, split,
                                    morphs=cfg.morphs, near=cfg.morphs_near, seed=cfg.morphs_seed,
                                    workers=cfg.workers, progress=cfg.progress)
    print(f"morphs {teacher_morphs.morphs_dir(cfg.cache_dir, split)}: {m['done']} morphs of {m['images']} training "
          f"images of {teacher_morphs.split_name(split)}, {m['errors']} unreadable, {m['seconds']} s in all — train "
          f"on them with distill.morphs_p=0.3")
    return m
