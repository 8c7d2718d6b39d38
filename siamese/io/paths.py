"""Where things are: the package, the shipped model, and the one name of an LFW face cache.

Stdlib only. `lfw_cache` is the only place that spells a cache folder's name, so the prepare
command, training and every evaluation agree on it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CONF_DIR", "DEFAULT_MODEL", "NAMED_MODELS", "PACKAGE_DIR", "REPO", "SAMPLES", "lfw_cache",
           "user_cache"]

PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO = PACKAGE_DIR.parent
CONF_DIR = PACKAGE_DIR / "conf"  # the Hydra configs: the top-level conf/ (linked in the tree, copied into a wheel)
DEFAULT_MODEL = PACKAGE_DIR / "assets" / "default_model"
# The shipped models by name, wherever a model path is taken (`model_path=lfw_only`): the default
# (an ensemble) and its two members on their own — the LFW-only research baseline (no outside data)
# and the distilled 64 px student (the fast variant); and the default with both members in int8
# (`siamese.model.quantize`: ~3x faster on a CPU, its own calibrations; docs/distill.md), or in
# bfloat16 on OpenVINO (the `openvino` extra: ~4x faster on CPUs with bfloat16 units; its own calibrations).
NAMED_MODELS = {"default": DEFAULT_MODEL, "lfw_only": DEFAULT_MODEL / "members" / "1-lfw_only",
                "distilled": DEFAULT_MODEL / "members" / "2-distilled",
                "int8": DEFAULT_MODEL / "int8", "bf16": DEFAULT_MODEL / "bf16"}
# The demo media (photos, clips) the benchmarks use: SIAMESE_SAMPLES, else beside the repo.
SAMPLES = Path(os.environ.get("SIAMESE_SAMPLES", REPO.parent / "shared" / "datasets" / "samples"))


def lfw_cache(cache_root: str | os.PathLike = "data/cache", detector: str = "yunet",
              size: int = 112, padding: float = 0.0) -> Path:
    """The face cache folder for LFW aligned by `detector` to `size` px with `padding`.

    Example: lfw_cache("data/cache") -> data/cache/lfw_yunet_112_p0.0 (what `make prepare` builds).
    """
    return Path(cache_root) / f"lfw_{detector}_{int(size)}_p{float(padding)}"


def user_cache() -> Path:
    """The per-user folder for files derived at first use (the shipped model's unpacked weights):
    SIAMESE_CACHE, else $XDG_CACHE_HOME/siamese, else ~/.cache/siamese. Read on every call."""
    if os.environ.get("SIAMESE_CACHE"):
        return Path(os.environ["SIAMESE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "siamese"
