"""The distillation teacher behind the `Embedder` interface, so that the same evaluations,
benchmarks and applications run on it (`siamese teach` writes its model dir).

Its score is the cosine of the centred descriptors: dlib's descriptors share one large common
direction, so the mean over LFW's training images (model.json's "center") is subtracted before
normalising. The network: `siamese.model.dlib_resnet`; its cached LFW embeddings:
`siamese.model.teacher_cache`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from siamese.data.cache import FaceCache
from siamese.data.lfw import LFW, ImageRef
from siamese.faces.align import LFW_MEDIAN_LANDMARKS
from siamese.faces.detect import Detector, Face, YuNetDetector, central_face
from siamese.io.files import atomic_write_text
from siamese.io.images import ImageError, read_image
from siamese.model.dlib_resnet import CHIP_PADDING, CHIP_SIZE, DIM, LICENCE, DlibTeacher, box_from_landmarks, identity
from siamese.model.embedder import Embedder
from siamese.model.preprocess import normalise
from siamese.model.teacher_cache import cached_descriptors

__all__ = ["TeacherEmbedder", "write_teacher_dir"]


class TeacherEmbedder(Embedder, kind="teacher"):
    """The teacher behind the `Embedder` interface: `crops` are dlib's 150 px chips (from the
    faces' boxes), `embed` their flip-averaged descriptors, centred and normalised, `score` the
    cosine of two embeddings, `threshold` the cosine chosen on validation pairs (model.json).

    A teacher model dir (written by `siamese teach`) holds model.json ({"teacher", "center" (128
    floats), "threshold", ...}) and people.json (nobody seen; the validation people of the
    students it is compared with).
    """

    def __init__(self, path: Path, meta: dict):
        self.teacher = DlibTeacher()
        self.center = np.asarray(meta["center"], np.float32)
        super().__init__(path, meta, "dlib", None, None, DIM)
        self.input_size = CHIP_SIZE

    @classmethod
    def from_dir(cls, root: Path, meta: dict, prefer=("onnx", "keras"), threads: int | None = None):
        return cls(root, meta)

    def prepare(self, crops: np.ndarray) -> np.ndarray:
        raise ValueError("the teacher aligns faces its own way (dlib's chips): pass images and faces "
                         "(Embedder.crops / embed_faces) or LFW refs (embed_refs), not our crops")

    def crops(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        """(n, 150, 150, 3) uint8 dlib chips of `faces` in `image`."""
        if not faces:
            return np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
        return np.stack([self.teacher.chip(image, f.box) for f in faces])

    def embed(self, images: np.ndarray, flip: bool = True, batch_size: int = 256) -> np.ndarray:
        """(N, 150, 150, 3) uint8 chips -> (N, 128) float32 unit vectors (centred descriptors)."""
        chips = np.asarray(images)
        if not len(chips):
            return np.zeros((0, DIM), np.float32)
        raw = self.teacher.describe(list(chips))
        if flip:
            raw = (raw + self.teacher.describe([c[:, ::-1] for c in chips])) / 2
        return self.from_descriptors(raw)

    def score(self, emb_a: np.ndarray, emb_b: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """(n,) float32 cosine similarity of paired (n, 128) embeddings (the teacher has no head)."""
        a, b = (np.asarray(e, np.float32) for e in (emb_a, emb_b))
        if a.shape != b.shape or a.ndim != 2 or a.shape[1] != self.dim:
            raise ValueError(f"expected two (n, {self.dim}) arrays, got {a.shape} and {b.shape}")
        return np.einsum("ij,ij->i", a, b).astype(np.float32)

    def from_descriptors(self, raw: np.ndarray) -> np.ndarray:
        """Raw dlib descriptors (n, 128) -> this embedder's unit vectors (centred, normalised)."""
        return normalise(np.asarray(raw, np.float32) - self.center)

    def embed_refs(self, lfw: LFW, refs: list[ImageRef], cache: FaceCache | None = None,
                   detector: Detector | None = None) -> tuple[np.ndarray, list[ImageRef]]:
        """LFW images: from the teacher cache beside `cache` when one is built for this teacher
        (milliseconds), else dlib on each photo, from the cache's face box or a detection."""
        raw = cached_descriptors(cache, refs) if cache is not None else None
        if raw is not None:
            return self.from_descriptors(raw.mean(1)), list(refs)
        detector = detector or YuNetDetector()
        rows = {r: i for i, r in enumerate(cache.refs)} if cache is not None else {}
        chips, kept = [], []
        for r in refs:
            try:
                image = read_image(lfw.path(r))
            except ImageError:
                continue
            if r in rows and cache.meta["status"][rows[r]] == 1:
                box = cache.meta["box"][rows[r]]
            else:
                face = central_face(detector.detect(image), image.shape)
                box = face.box if face is not None else box_from_landmarks(
                    cache.meta["landmarks"][rows[r]] if r in rows else _median_landmarks(image))
            chips.append(self.teacher.chip(image, box))
            kept.append(r)
        return self.embed(np.stack(chips) if chips else np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)), kept

    def fingerprint(self) -> str:
        """One SHA-256 over the teacher's model files and the centre it subtracts."""
        if self._fingerprint is None:
            ident = json.dumps({**identity(), "center": hashlib.sha256(self.center.tobytes()).hexdigest()},
                               sort_keys=True)
            self._fingerprint = hashlib.sha256(ident.encode()).hexdigest()
        return self._fingerprint


def _median_landmarks(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return LFW_MEDIAN_LANDMARKS * np.array([w / 250.0, h / 250.0], np.float32)


def write_teacher_dir(out: str | os.PathLike, center: np.ndarray, threshold: float, threshold_from: str,
                      validation: list[str], cache_identity: dict) -> Path:
    """A teacher model dir: model.json and people.json (nobody seen; `validation` people)."""
    out = Path(out)
    meta = {"teacher": "dlib_resnet_v1", "input_size": CHIP_SIZE, "colour": "RGB",
            "alignment": {"template": "dlib 5-point chip", "chip": CHIP_SIZE, "padding": CHIP_PADDING},
            "center": [round(float(v), 7) for v in center], "threshold": float(threshold),
            "threshold_from": threshold_from, "score": "cosine of centred descriptors", "flip_tta": True,
            "licence": LICENCE, "identity": identity(), "center_from": cache_identity}
    atomic_write_text(out / "model.json", json.dumps(meta, indent=2))
    atomic_write_text(out / "people.json", json.dumps({"dataset": "none (trained outside LFW)", "seen": [],
                                                        "validation": list(validation)}))
    return out
