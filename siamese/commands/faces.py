"""`siamese detect`, `siamese collect`: faces out of photos, videos and cameras."""

from __future__ import annotations

from omegaconf import DictConfig

from siamese.commands import NothingUsable, detector, plain
from siamese.faces.capture import SKIPS
from siamese.faces.capture import collect as capture
from siamese.faces.folder import detect_folder
from siamese.io.images import NothingRead
from siamese.library.build import build_index


def detect(cfg: DictConfig) -> dict:
    """Detect and align every face in `cfg.input` into `cfg.out`; returns the summary."""
    try:
        summary = detect_folder(cfg.input, cfg.out, detector(cfg), size=cfg.align.size,
                                padding=cfg.align.padding, save_crops=cfg.save_crops,
                                every_s=cfg.every_s, overwrite=cfg.overwrite, progress=cfg.progress)
    except NothingRead as err:
        raise NothingUsable(f"{err}; nothing was written", err.summary) from None
    why = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in summary["errors_by_reason"].items())
    print(f"{summary['faces']} faces from {summary['sources']} source(s) -> {cfg.out}/manifest.csv "
          f"({summary['sources_without_face']} without a face, {summary['errors']} skipped"
          + (f": {why})" if why else ")"))
    return summary


def collect(cfg: DictConfig) -> dict:
    """Capture aligned crops of `cfg.person` from `cfg.source` into `cfg.out_root/<person>/`."""
    r = capture(cfg.source, cfg.person, cfg.out_root, detector(cfg), count=cfg.count,
                every_s=cfg.every_s, size=cfg.align.size, padding=cfg.align.padding,
                min_size=cfg.min_size, min_frontal=cfg.min_frontal, progress=cfg.progress)
    skipped = ", ".join(f"{r['skipped_' + k]} {words}" for k, words in SKIPS.items())
    print(f"kept {r['kept']} faces of {cfg.person} in {r['dir']} from {r['frames']} frames ({skipped})")
    if not r["kept"]:
        raise NothingUsable("no face was kept — one face, alone, frontal and large enough in the frame", r)
    return r


def index(cfg: DictConfig) -> dict:
    """Index every face of `cfg.input` (embeddings included) into the Parquet folder `cfg.out`."""
    r = cfg.ray
    s = build_index(cfg.input, cfg.out, detector=plain(cfg.detector), model_path=cfg.model_path,
                    backend=cfg.backend, address=r.address, num_cpus=r.num_cpus, detect_workers=r.detect_workers,
                    embed_actors=r.embed_actors, shard_size=cfg.shard_size, every_s=cfg.every_s,
                    videos=cfg.videos, crop_size=cfg.align.size, crop_padding=cfg.align.padding,
                    overwrite=cfg.overwrite, progress=cfg.progress)
    why = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in s["errors_by_reason"].items())
    print(f"{s['faces']} faces from {s['sources']} source(s) -> {cfg.out} ({s['shards']} shards, "
          f"{s['shards_resumed']} already there; {s['sources_without_face']} without a face, {s['errors']} skipped"
          + (f": {why})" if why else ")") + f" in {s['pipeline_seconds']} s ({cfg.backend})")
    if s["sources"] and not s["frames"]:
        raise NothingUsable(f"none of {cfg.input}'s {s['sources']} source(s) could be read", s)
    return s
