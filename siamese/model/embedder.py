"""One loader for inference: a model directory -> `Embedder` (ONNX Runtime, else Keras).

    faces in an image --crops()--> (N, S, S, 3) uint8 aligned as the model expects
        --embed()--> (N, D) unit vectors --score()--> (n,) head P(same) --verify()--> decisions

`Embedder` is the one reader of a model directory (`siamese.model.modeldir`): its preprocessing
(alignment size and padding, input size), threshold, fingerprint, the people it saw and its
calibrations. Callers pass images and faces, never crop recipes. On the ONNX path TensorFlow is
never imported. Kinds of model other than one network (an `Ensemble`, the distillation teacher)
subclass it and are chosen by a key of model.json.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np

from siamese.data.cache import FaceCache
from siamese.data.lfw import LFW, ImageRef
from siamese.data.unseen import lfw_crops
from siamese.faces.align import align, resize_faces
from siamese.faces.detect import Detector, Face
from siamese.io.paths import DEFAULT_MODEL
from siamese.model import modeldir, quantize
from siamese.model.packed import stored, weights_path
from siamese.model.preprocess import flip_embed

__all__ = ["DEFAULT_MODEL", "PRECISIONS", "Embedder"]

PRECISIONS = ("float32", "int8", "bf16")  # how an embedding network runs (`Embedder.load`)

log = logging.getLogger(__name__)


class Embedder:
    """A loaded model: aligned uint8 crops -> embeddings -> scores -> decisions.

    Attributes: input_size (S, pixels), threshold (the head score for "same person", from
    model.json), format ("onnx" or "keras", the one loaded), meta (model.json), path (the dir
    loaded), dim (D), precision ("float32", "int8" or "bf16").
    """

    kinds: ClassVar[dict[str, type]] = {}  # model.json key -> the subclass that loads it

    def __init_subclass__(cls, kind: str | None = None, **kw):
        super().__init_subclass__(**kw)
        if kind:
            Embedder.kinds[kind] = cls

    def __init__(self, path: Path, meta: dict, fmt: str, embed_fn, head_fn, dim: int):
        self.path, self.meta, self.format, self.dim = Path(path), meta, fmt, int(dim)
        self.input_size, self.threshold = int(meta["input_size"]), float(meta["threshold"])
        self._embed, self._head = embed_fn, head_fn
        self._fingerprint: str | None = None
        self._cohort: tuple | None = None  # ((digest, mtime, size), array): the clustering cohort last read
        self.precision = "float32"  # or "int8", "bf16" (`load`)
        self.runs_in = "float32"  # the arithmetic the embedding network really runs in: its precision,
        # except bf16 on a CPU without bfloat16 units, where OpenVINO runs float32 (`load`)
        self._int8: str | None = None  # the int8 network's SHA-256 (quantization.json), when int8

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, prefer: tuple[str, ...] = ("onnx", "keras"),
             threads: int | None = None, spin: bool = True, precision: str = "float32") -> "Embedder":
        """Load the first format of `prefer` that is present and importable.

        Args:
            path: an export dir, a run's `model/` dir, a run dir (its newer of export/, model/),
                an ensemble or teacher dir; None: the shipped model (`DEFAULT_MODEL`).
            prefer: formats to try in order; "onnx" needs embedding.onnx, head.onnx (either
                may be stored packed, `siamese.model.packed`) and onnxruntime; "keras" needs
                embedding.keras, head.keras.
            threads: ONNX Runtime intra-op threads; None leaves ORT's default (all cores).
            spin: let ONNX Runtime's threads busy-wait between runs (fastest for one model; models
                that take turns, as an ensemble's members do, starve each other's threads: the
                ensemble loads its members with False).
            precision: "float32", or "int8": the embedding network quantized by its
                quantization.json (`siamese.model.quantize`; ONNX only, ~3x faster on a CPU), or
                "bf16": the same ONNX embedding network run by OpenVINO in bfloat16 (the `openvino`
                extra; fast on CPUs with bfloat16 units, e.g. Intel AMX, float32 elsewhere;
                `_openvino`). An ensemble's members load as its model.json's "precision" says.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision is one of {', '.join(map(repr, PRECISIONS))}, not {precision!r}")
        root = modeldir.find_model_dir(DEFAULT_MODEL if path is None else path)
        meta = json.loads((root / "model.json").read_text())
        for kind, sub in Embedder.kinds.items():
            if kind in meta:  # several models as one, or the teacher: their own loaders
                if precision != "float32":
                    raise ValueError(f"{root}: precision applies to one network; an ensemble's model.json "
                                     "names its members' (siamese ensemble ... precision=int8)")
                return sub.from_dir(root, meta, prefer, threads)
        for fmt in prefer:
            if fmt not in ("onnx", "keras"):
                raise ValueError(f"Embedder loads 'onnx' or 'keras', not {fmt!r}")
            names = [f"{p}.{fmt}" for p in ("embedding", "head")]
            if not all(stored(root, n) for n in names):
                continue
            if fmt == "onnx" and importlib.util.find_spec("onnxruntime") is None:
                log.warning("onnxruntime is not installed; skipping %s/*.onnx", root)
                continue
            if precision != "float32" and fmt != "onnx":
                continue
            files = [weights_path(root, n) for n in names]
            int8 = None
            if precision == "int8":
                files[0], int8 = quantize.int8_path(root, files[0])
            if precision == "bf16":  # the embedding network on OpenVINO; the head (a few hundred weights) on ORT
                run, dim, runs_in = _openvino(files[0], threads)
                parts = (run, _onnx_head(files[1], threads, spin), dim)
            else:
                parts = _onnx(*files, threads, spin) if fmt == "onnx" else _keras(*files)
            model = cls(root, meta, fmt, *parts)
            model.precision, model._int8 = precision, int8
            model.runs_in = runs_in if precision == "bf16" else precision
            return model
        raise FileNotFoundError(f"{root}: none of {prefer} found (embedding.* and head.*) — "
                                "export the model with `siamese export`")

    # --- preprocessing: the model owns it ----------------------------------------------------
    @property
    def alignment(self) -> tuple[int, float]:
        """(size, padding) faces are aligned at before resizing to `input_size` (training's cache)."""
        al = self.meta.get("alignment", {})
        return int(al.get("cache_size", 112)), float(al.get("padding", 0.0))

    def prepare(self, crops: np.ndarray) -> np.ndarray:
        """Crops aligned at `alignment` -> the model's input: (N, S, S, 3) uint8."""
        return resize_faces(np.asarray(crops), self.input_size)

    def crops(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        """Crops of `faces` in `image` exactly as the model saw faces in training.

        Training aligned at the cache's size and padding, then shrank to the model's input size;
        doing the same here (not a direct warp to the small size) keeps the pixels' statistics.

        Args:
            image: (H, W, 3) uint8 RGB.
            faces: detections in `image`.

        Returns:
            (n, S, S, 3) uint8 RGB, S = `input_size`.
        """
        if not faces:
            return np.zeros((0, self.input_size, self.input_size, 3), np.uint8)
        size, padding = self.alignment
        return self.prepare(np.stack([align(image, f.landmarks, size, padding) for f in faces]))

    # --- embeddings and scores ---------------------------------------------------------------
    def embed(self, images: np.ndarray, flip: bool = True, batch_size: int = 256) -> np.ndarray:
        """Embeddings of aligned faces: (N, S, S, 3) uint8 RGB -> (N, D) float32 unit vectors.

        With `flip`, the sum of the face's and its mirror's embeddings, renormalised
        (`siamese.model.preprocess.flip_embed`). N = 0 gives a (0, D) array.
        """
        images = np.asarray(images)
        s = self.input_size
        if len(images) and (images.ndim != 4 or images.shape[1:] != (s, s, 3) or images.dtype != np.uint8):
            raise ValueError(f"expected (N, {s}, {s}, 3) uint8 RGB aligned faces, got "
                             f"{images.shape} {images.dtype} — use Embedder.crops(image, faces)")
        return flip_embed(self._embed, images, self.dim, flip, batch_size)

    def embed_faces(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        """(n, D) unit embeddings of `faces` in `image` ((0, D) without faces)."""
        return self.embed(self.crops(image, faces))

    def embed_refs(self, lfw: LFW, refs: list[ImageRef], cache: FaceCache | None = None,
                   detector: Detector | None = None) -> tuple[np.ndarray, list[ImageRef]]:
        """(embeddings (n, D), the n refs embedded) of LFW images, from the face cache when it is
        aligned as this model expects (`siamese.data.unseen.lfw_crops`: unreadable photos are
        left out)."""
        crops, kept = lfw_crops(lfw, refs, *self.alignment, cache=cache, detector=detector)
        return self.embed(self.prepare(crops)), kept

    def embed_refs_with_progress(self, lfw: LFW, refs: list[ImageRef], cache: FaceCache | None = None,
                                 detector: Detector | None = None, desc: str = "embedding", chunk: int = 512,
                                 progress: bool = True) -> tuple[np.ndarray, list[ImageRef]]:
        """`embed_refs` in chunks, with a progress bar (and its ETA) on stderr."""
        from tqdm import tqdm

        parts, kept = [], []
        with tqdm(total=len(refs), desc=desc, unit="face", disable=not progress) as bar:
            for i in range(0, len(refs), chunk):
                e, k = self.embed_refs(lfw, refs[i:i + chunk], cache, detector)
                parts.append(e)
                kept += k
                bar.update(len(refs[i:i + chunk]))
        return (np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)), kept

    def score(self, emb_a: np.ndarray, emb_b: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """(n,) float32 head probabilities that pairs of (n, D) embeddings are the same person."""
        a, b = (np.ascontiguousarray(e, np.float32) for e in (emb_a, emb_b))
        if a.shape != b.shape or a.ndim != 2 or a.shape[1] != self.dim:
            raise ValueError(f"expected two (n, {self.dim}) arrays, got {a.shape} and {b.shape}")
        out = [self._head(a[i:i + batch_size], b[i:i + batch_size])
               for i in range(0, len(a), batch_size)]
        return np.concatenate(out).ravel().astype(np.float32) if out else np.zeros(0, np.float32)

    def verify(self, emb_a: np.ndarray, emb_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores (n,) float32, decisions (n,) bool) with decision = score >= threshold."""
        scores = self.score(emb_a, emb_b)
        return scores, scores >= self.threshold


    # --- the model directory ------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Which network this is: one SHA-256 over the SHA-256 of its embedding and head weight
        files, .keras if present (so the ONNX and Keras loads of one model, and its exports,
        agree), else .onnx. Computed once per load (the files are megabytes).

        Raises:
            FileNotFoundError: neither pair of weight files is there.
        """
        if self._fingerprint is None:
            root, files = Path(self.path), self.meta.get("files", {})
            for ext in ("keras", "onnx"):
                names = [f"embedding.{ext}", f"head.{ext}"]
                if all(n in files or (root / n).is_file() for n in names):
                    digests = [files.get(n) or modeldir.sha256(root / n) for n in names]
                    self._fingerprint = hashlib.sha256(
                        f"{ext}:{digests[0]}:{digests[1]}".encode()).hexdigest()
                    break
            else:
                raise FileNotFoundError(f"{root}: no embedding/head weights to fingerprint — "
                                        "load an exported model")
            if self.precision == "int8":  # another network: its own calibrations and galleries
                self._fingerprint = hashlib.sha256(f"int8:{self._fingerprint}:{self._int8}".encode()).hexdigest()
            elif self.precision == "bf16":  # other numbers (within ~1e-4 cosine): the same care as int8
                self._fingerprint = hashlib.sha256(f"bf16:{self._fingerprint}".encode()).hexdigest()
        return self._fingerprint

    def identity(self) -> dict:
        """{"fingerprint", "dim", "path"}: what galleries, enrolments and calibrations record."""
        return {"fingerprint": self.fingerprint(), "dim": int(self.dim), "path": str(self.path)}

    def seen_people(self) -> set[str]:
        """Everyone the model trained or validated on (people.json; empty, logged, if none)."""
        return modeldir.seen_people(self.path)

    def validation_people(self) -> list[str]:
        """The people held out of its training for validation (calibrations are fitted on them)."""
        return modeldir.validation_people(self.path)

    def impostor_bank(self):
        """(vectors (n, D), names, source) of LFW strangers shipped with the model, or None."""
        return modeldir.read_impostors(self.path, self.fingerprint())

    def cluster_cohort(self, digest: str) -> np.ndarray:
        """(m, D) embeddings of the clustering cohort beside the model (`modeldir.read_cohort`), read
        and checked again only when the file or the digest changed (settings, clustering, "may be one
        person" and 1:N all ask for it)."""
        path = self.path / modeldir.COHORT
        st = path.stat() if path.is_file() else None
        key = (digest, st.st_mtime_ns, st.st_size) if st else None
        if key is None or self._cohort is None or self._cohort[0] != key:
            self._cohort = (key, modeldir.read_cohort(self.path, digest))
        return self._cohort[1]

    def calibration(self, name: str) -> dict | None:
        """A calibration beside the model ("verify.json", "cluster.json") fitted for this model,
        else None (logged when it was fitted for another)."""
        return modeldir.read_calibration(self.path, name, self.fingerprint())


def _ort_session(path: Path, threads: int | None, spin: bool = True):
    """An ONNX Runtime CPU session for `path` (`threads` intra-op threads; `spin` as `Embedder.load`)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _onnx_head(head: Path, threads: int | None, spin: bool = True):
    """The pair head on ONNX Runtime: ((n, D), (n, D)) float32 -> (n, 1) P(same)."""
    session = _ort_session(head, threads, spin)
    names = [i.name for i in session.get_inputs()]
    return lambda a, b: session.run(None, dict(zip(names, (a, b))))[0]


def _onnx(embedding: Path, head: Path, threads: int | None, spin: bool = True):
    """(embed, score, dim) on ONNX Runtime."""
    emb = _ort_session(embedding, threads, spin)
    e_in = emb.get_inputs()[0].name
    return lambda x: emb.run(None, {e_in: x})[0], _onnx_head(head, threads, spin), emb.get_outputs()[0].shape[-1]


def _openvino(embedding: Path, threads: int | None):
    """The ONNX embedding network compiled by OpenVINO for the CPU with bfloat16 inference: on a
    CPU with bfloat16 units (AVX512-BF16, AMX) ~4x faster than ONNX Runtime's float32 here, each
    embedding within ~1e-4 cosine of float32's (docs/distill.md, "bfloat16 on OpenVINO"); on
    others OpenVINO runs float32 (logged once per process, `_bfloat16_units`). One inference
    request, behind a lock: callers on several threads (the HTTP service) take turns.

    Returns:
        (run: float32 (B, S, S, 3) in [0, 1] -> (B, D) embeddings, D, the precision OpenVINO
        compiled it for: "bf16" or "float32").

    Raises:
        ImportError: OpenVINO is not installed (one line saying how to install it).
    """
    try:
        import openvino as ov
    except ImportError:
        raise ImportError("precision bf16 runs on OpenVINO, which is not installed: "
                          "pip install -e '.[openvino]' (or make openvino)") from None
    core = ov.Core()
    _bfloat16_units()
    config = {"INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = core.compile_model(str(embedding), "CPU", config)
    request, lock = compiled.create_infer_request(), threading.Lock()

    def run(x: np.ndarray) -> np.ndarray:
        with lock:
            return np.array(request.infer({0: np.ascontiguousarray(x, np.float32)})[0])  # a copy: the
            # request's output buffer is reused by its next call

    runs_in = "bf16" if compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16 else "float32"
    return run, int(compiled.outputs[0].get_partial_shape()[-1].get_length()), runs_in


@functools.cache
def _bfloat16_units() -> bool:
    """Whether this CPU has bfloat16 instructions (OpenVINO's "BF16" capability); without them, one
    warning per process (not one per network: an ensemble loads several)."""
    import openvino as ov

    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return True
    log.warning("this CPU has no bfloat16 instructions: OpenVINO runs precision bf16 in float32 (no speed gain)")
    return False


def _keras(embedding: Path, head: Path):
    from siamese.model.networks import load_float32  # Keras: imported only for .keras models

    emb, head = load_float32(embedding), load_float32(head)
    return (lambda x: np.asarray(emb.predict_on_batch(x)),
            lambda a, b: np.asarray(head.predict_on_batch([a, b])),
            emb.output_shape[-1])
