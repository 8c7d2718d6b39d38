"""The verbs a Python user reaches for first, with the shipped model and YuNet loaded once, lazily.

    import siamese
    faces = siamese.detect("group.jpg")                  # [Face(box, landmarks, score)], best first
    vectors = siamese.embed("group.jpg")                 # (n, D) unit embeddings, one per face
    match = siamese.verify("a.jpg", "b.jpg")             # Match(score, threshold, same)
    names = siamese.identify("photo.jpg")                # [(name or "unknown", score, box)] per face
    summary = siamese.cluster("holiday/", "people/")     # one folder per person

Images are a path, the bytes of an image file, a PIL image or an (H, W, 3) uint8 RGB array.
Scores and decisions are kept apart: `verify` returns the head's score and the model's own
threshold (chosen on held-out people; `same = score >= threshold`). For more control use the
classes these wrap: `siamese.model.Embedder`, `siamese.faces.YuNetDetector`, `siamese.gallery.Gallery`
/ `load_recognizer`, `siamese.clustering.cluster`; over HTTP, `siamese serve`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

from siamese.clustering.group import cluster as _cluster
from siamese.faces.detect import Face, YuNetDetector
from siamese.gallery.recognize import load_recognizer
from siamese.gallery.store import Gallery
from siamese.io.images import decode_image, read_image
from siamese.model.embedder import Embedder

__all__ = ["Match", "cluster", "detect", "embed", "identify", "verify"]


@dataclass(frozen=True)
class Match:
    """`verify`'s answer: the head's score in [0, 1], the model's threshold, and the decision."""

    score: float
    threshold: float
    same: bool


@functools.cache
def _model() -> Embedder:
    return Embedder.load()


@functools.cache
def _detector() -> YuNetDetector:
    return YuNetDetector()


def _rgb(image) -> np.ndarray:
    """Any image a user holds as (H, W, 3) uint8 RGB: a path, encoded bytes, a PIL image or an array."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image(bytes(image), "the image bytes")
    if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image (PIL itself is not needed)
        image = image.convert("RGB")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a path, image bytes, a PIL image or an (H, W, 3) uint8 RGB array, "
                         f"got {image.shape} {image.dtype}")
    return image


def detect(image) -> list[Face]:
    """Every face in `image`, best score first (boxes and landmarks in its pixels)."""
    return _detector().detect(_rgb(image))


def embed(image, faces: list[Face] | None = None) -> np.ndarray:
    """(n, D) float32 unit embeddings of `faces` in `image` (default: every face detected)."""
    rgb = _rgb(image)
    return _model().embed_faces(rgb, _detector().detect(rgb) if faces is None else faces)


def _largest(image) -> np.ndarray:
    rgb = _rgb(image)
    faces = _detector().detect(rgb)
    if not faces:
        raise ValueError(f"{image if isinstance(image, (str, os.PathLike)) else 'the image'}: no face found")
    return _model().embed_faces(rgb, [max(faces, key=lambda f: float(f.box[2] * f.box[3]))])


def verify(a, b) -> Match:
    """Do the largest faces of images `a` and `b` show the same person?

    Raises:
        ValueError: an image without a face (named).
    """
    model = _model()
    score = float(model.score(_largest(a), _largest(b))[0])
    return Match(score, model.threshold, score >= model.threshold)


def identify(image, gallery: str | os.PathLike = "data/gallery.sqlite", far_target: float = 0.01
             ) -> list[tuple[str, float, list[float]]]:
    """(name or "unknown", score, box [x, y, w, h]) for every face of `image`, left to right,
    against a gallery made with `siamese gallery import` (read only)."""
    rgb, model = _rgb(image), _model()
    with Gallery(gallery, create=False) as g:
        g.require(model.identity())
        rec = load_recognizer(g, model, far_target=far_target)
    faces = sorted(_detector().detect(rgb), key=lambda f: float(f.box[0]))
    answers = rec.identify(model.embed_faces(rgb, faces)) if faces else []
    return [(name, round(score, 4), np.round(f.box, 1).tolist()) for f, (name, score, _, _) in zip(faces, answers)]


def cluster(input: str | os.PathLike, out: str | os.PathLike, **kw) -> dict:
    """Group the faces of a photo folder or a video into `out/person_NNN/` (see `siamese.clustering.cluster`)."""
    return _cluster(input, out, _model(), _detector(), **kw)
