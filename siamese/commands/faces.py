"""`siamese detect`, `siamese collect`: faces out of photos, videos and cameras."""

from __future__ import annotations

from omegaconf import DictConfig

from siamese.commands import NothingUsable, detector
from siamese.faces.capture import SKIPS
from siamese.faces.capture import collect as capture
from siamese.faces.folder import detect_folder
from siamese.io.images import NothingRead


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
