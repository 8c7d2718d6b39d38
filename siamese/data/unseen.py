"""LFW people a model never saw, and their aligned faces: the one loader behind every calibration,
benchmark and open-set test.

A model's people.json lists everyone it trained or validated on (`seen`); calibrations and
benchmarks use only the View 1 DevTest people outside that set (or, for clustering settings, the
validation people it held out). Their faces come from the LFW face cache when it is aligned as
the model expects, else they are detected and aligned from the photos exactly as the cache would
have done it (the central face, or LFW's median landmarks when none is found). That is the one
cache-mismatch rule: a cache aligned otherwise is never used, and never an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

from siamese.data.cache import FaceCache
from siamese.data.lfw import LFW, ImageRef
from siamese.faces.align import LFW_MEDIAN_LANDMARKS, align
from siamese.faces.detect import Detector, YuNetDetector, central_face
from siamese.io.images import ImageError, read_image

__all__ = ["lfw_crops", "sample_refs", "unseen_people"]

log = logging.getLogger(__name__)


def unseen_people(lfw: LFW, seen: Iterable[str], split: str = "view1_test", min_images: int = 1,
                  max_images: int | None = None) -> dict[str, int]:
    """{person: image count} of a View 1 split's people not in `seen`, with `min_images` to
    `max_images` images, sorted by name."""
    seen = set(seen)
    return {p: n for p, n in sorted(lfw.people(split).items())
            if p not in seen and n >= min_images and (max_images is None or n <= max_images)}


def sample_refs(people: dict[str, int], rng: np.random.Generator, n_people: int | None = None,
                per_person: int | None = None) -> list[ImageRef]:
    """`n_people` random people of `people` (None: all) and `per_person` random images of each
    (None: all), sorted by (person, index)."""
    names = sorted(people)
    if n_people is not None and n_people < len(names):
        names = sorted(rng.choice(names, n_people, replace=False).tolist())
    refs = []
    for p in names:
        n = people[p]
        picks = rng.choice(n, min(per_person, n), replace=False) if per_person else range(n)
        refs += [ImageRef(p, int(i) + 1) for i in picks]
    return sorted(refs, key=lambda r: (r.person, r.index))


def lfw_crops(lfw: LFW, refs: list[ImageRef], size: int = 112, padding: float = 0.0,
              cache: FaceCache | None = None, detector: Detector | None = None
              ) -> tuple[np.ndarray, list[ImageRef]]:
    """Aligned crops of LFW images, from `cache` when it is aligned at `size` / `padding`.

    Args:
        lfw: the copy the images are read from when the cache cannot serve them.
        refs: the images wanted.
        size, padding: the alignment (a model's `alignment`).
        cache: an LFW face cache, or None.
        detector: for images not served by the cache (default: YuNet).

    Returns:
        ((n, size, size, 3) uint8 RGB crops, the n refs they show: `refs` minus unreadable
        photos, which are logged).
    """
    if cache is not None and not cache.aligned_as(size, padding):
        log.info("the face cache is aligned at %d px, padding %s, not %d px, padding %s: aligning "
                 "the LFW photos instead", cache.images.shape[1], cache.config.get("padding"), size,
                 padding)
        cache = None
    in_cache = set(cache.refs) if cache is not None else set()
    todo = [r for r in refs if r not in in_cache]
    out = np.zeros((len(refs), size, size, 3), np.uint8)
    keep = np.ones(len(refs), bool)
    if cache is not None and len(todo) < len(refs):
        hits = [i for i, r in enumerate(refs) if r in in_cache]
        out[hits] = cache.images[cache.rows([refs[i] for i in hits])]
    if todo:

        detector = detector or YuNetDetector()
        where = {r: i for i, r in enumerate(refs)}
        for r in todo:
            try:
                image = read_image(lfw.path(r))
            except ImageError as err:
                log.warning("skipped %s", err)
                keep[where[r]] = False
                continue
            face = central_face(detector.detect(image), image.shape)
            h, w = image.shape[:2]
            lms = (face.landmarks if face is not None
                   else LFW_MEDIAN_LANDMARKS * np.array([w / 250.0, h / 250.0], np.float32))
            out[where[r]] = align(image, lms, size, padding)
    return out[keep], [r for r, k in zip(refs, keep) if k]
