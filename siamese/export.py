"""Export a trained model for inference, and load any export back with one `Embedder`.

    RUN/model/ (embedding.keras, head.keras, model.json)  --export()-->  OUT/
      embedding.keras, head.keras   Keras 3 copies (need this package's registered layers)
      embedding_savedmodel/         TF SavedModel; endpoint `serve` (also `serving_default`)
      embedding.onnx, head.onnx     ONNX, dynamic batch: the fast CPU path, no TensorFlow needed
      embedding.tflite              TFLite float32, dynamic batch (resize the input, then allocate)
      model.json, MODEL_CARD.md     threshold, formats, SHA-256 of every file; data, metrics, limits

Every embedding takes (B, S, S, 3) float32 RGB in [0, 1] named "image" -> (B, D) unit vectors;
head.onnx takes "emb_a", "emb_b" (B, D) -> (B, 1) P(same). The head is tiny: ONNX only. Models
trained in mixed precision are exported in float32 (one dtype for the converters; CPUs gain
nothing from float16). `Embedder.load(path)` picks the fastest format present (ONNX Runtime,
else Keras); TensorFlow is imported only to export or run Keras, never on the ONNX path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FORMATS = ("keras", "savedmodel", "onnx", "tflite")
INTENDED_USE = (
    "Research, teaching and personal projects: do two aligned face crops show the same person? On "
    "hardware you control, with the consent of the people pictured. Not for identifying people "
    "without their knowledge, surveillance, law enforcement, or any decision with legal or "
    "similarly significant effects on someone.")
LIMITS = [  # the card's defaults; pass card={"limits": [...]} to replace them
    "LFW is not a basis for judging commercial fitness: its authors warn that LFW results do not "
    "show a system is suitable for any commercial purpose.",
    "News-photo demographics skew: LFW shows mostly adult, male, light-skinned public figures "
    "(press photos, 2002-2003). Error rates for children, older people, women and people with "
    "darker skin are not measured here and may be higher.",
    "Trained on few identities (at most LFW's ~5,700 people, most with one or two photos; "
    "production systems see 10^5-10^6), so look-alikes are confused more often.",
    "Threshold calibrated on held-out LFW people: recalibrate it on labelled pairs from your own "
    "cameras and people before relying on its decisions.",
    "Faces must be aligned as in training (template, size, padding in model.json); other crops "
    "raise no error, they just score worse.",
]


def find_model_dir(path: str | os.PathLike, exported: bool = True) -> Path:
    """The dir holding model.json: `path` itself, or inside a run dir `export/` or `model/`.

    For a run dir, `export/` wins when `exported` and it is newer than `model/` (a run resumed
    after its export has a newer `model/`, and the stale export is skipped).
    """
    path = Path(path)
    ex, mo = path / "export" / "model.json", path / "model" / "model.json"
    if (path / "model.json").is_file():
        return path
    if exported and ex.is_file() and (not mo.is_file() or ex.stat().st_mtime >= mo.stat().st_mtime):
        return ex.parent
    if mo.is_file():
        return mo.parent
    raise FileNotFoundError(f"{path}: no model.json here or in {path / 'model'} — pass a "
                            "training run dir (checkpoints/NAME), its model/ dir, or an export dir")


CALIBRATIONS = ("verify.json", "cluster.json")  # fitted after training, beside the model files


def sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()  # model files: tens of MB at most


def load_float32(path: Path):
    """A .keras model with every layer in float32, whatever policy it was trained under."""
    import keras

    import siamese.model  # noqa: F401  (registers the custom layers for deserialisation)

    return float32_clone(keras.saving.load_model(path, compile=False))


def float32_clone(model):
    """`model` itself when all its layers compute in float32, else a float32 copy (same weights:
    mixed precision keeps float32 weights, so nothing is lost)."""
    import keras

    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model

    def as_float32(node):  # rewrite every DTypePolicy in the config (mixed_float16 -> float32)
        if isinstance(node, dict):
            if node.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
                return {**node, "config": {**node["config"], "name": "float32"}}
            return {k: as_float32(v) for k, v in node.items()}
        return [as_float32(v) for v in node] if isinstance(node, list) else node

    clone = keras.Model.from_config(as_float32(model.get_config()))
    clone.set_weights(model.get_weights())
    return clone


def _export_onnx(model, path: Path) -> None:
    import keras

    # An explicit signature with a None batch dim: dynamic batch, input names kept ("image",
    # "emb_a", "emb_b"), and Keras 3.15 otherwise refuses a reloaded model "never called".
    specs = [keras.InputSpec(shape=(None, *t.shape[1:]), dtype="float32", name=t.name)
             for t in model.inputs]
    model.export(str(path), format="onnx", verbose=False,
                 input_signature=[specs[0] if len(specs) == 1 else specs])


def export(model_dir: str | os.PathLike, out_dir: str | os.PathLike,
           formats: tuple[str, ...] | list[str] = FORMATS, card: dict | None = None, *,
           overwrite: bool = False) -> dict[str, Path]:
    """Write a model dir out in inference formats, with model.json and MODEL_CARD.md.

    Everything is written into a hidden temporary dir beside `out_dir` and renamed into place
    at the end, so a failed export leaves no `out_dir` (and an old one intact).

    Args:
        model_dir: a dir with embedding.keras, head.keras and model.json (a run's `model/`),
            or a run dir containing `model/`.
        out_dir: where the export goes; must not exist unless `overwrite`.
        formats: any of "keras", "savedmodel", "onnx", "tflite".
        card: what MODEL_CARD.md says: keys data, protocol, metrics (dict), intended_use,
            limits (list), command; missing keys get defaults (see INTENDED_USE, LIMITS).
        overwrite: replace an existing `out_dir`, once the new export is complete.

    Returns:
        {format: path of its embedding artefact}; heads (head.keras, head.onnx) sit beside them.
    """
    src, out = find_model_dir(model_dir, exported=False), Path(out_dir)
    unknown = set(formats) - set(FORMATS)
    if not formats or unknown:
        raise ValueError(f"formats {list(formats)}: choose one or more of {FORMATS}")
    formats = [f for f in FORMATS if f in formats]
    if out.resolve() == src.resolve():
        raise ValueError(f"{out} is the model being exported — choose another out dir")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists — choose another out dir or pass overwrite=True "
                              "(overwrite=true on the command line)")
    meta = json.loads((src / "model.json").read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it 0700; the export is meant to be shared
    try:
        paths = _write_formats(src, tmp, formats)
        (tmp / "MODEL_CARD.md").write_text(model_card(meta, card or {}, formats))
        # The calibrations (verify.json, cluster.json) are settings, refitted in place by
        # `make calibrate`: not hashed, so their digests never go stale.
        files = {p.relative_to(tmp).as_posix(): sha256(p) for p in sorted(tmp.rglob("*"))
                 if p.is_file() and p.name not in CALIBRATIONS}
        (tmp / "model.json").write_text(json.dumps({**meta, "formats": formats, "files": files},
                                                   indent=2))
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s to %s", ", ".join(formats), out)
    return {f: out / p for f, p in paths.items()}


def _write_formats(src: Path, tmp: Path, formats: list[str]) -> dict[str, str]:
    paths = {}
    # Who the model saw (evaluation refuses their pairs) and its calibrations, which name the
    # model by a fingerprint of its .keras files, so they hold for the export too.
    for name in ("people.json", *CALIBRATIONS):
        if (src / name).exists():
            shutil.copy2(src / name, tmp / name)
    if "keras" in formats:
        for part in ("embedding", "head"):
            shutil.copy2(src / f"{part}.keras", tmp / f"{part}.keras")
        paths["keras"] = "embedding.keras"
    if formats == ["keras"]:
        return paths
    embedding = load_float32(src / "embedding.keras")
    if "onnx" in formats:
        _export_onnx(embedding, tmp / "embedding.onnx")
        _export_onnx(load_float32(src / "head.keras"), tmp / "head.onnx")
        paths["onnx"] = "embedding.onnx"
    if "savedmodel" in formats or "tflite" in formats:
        sm = tmp / ("embedding_savedmodel" if "savedmodel" in formats else ".savedmodel")
        embedding.export(str(sm), format="tf_saved_model", verbose=False)
        paths["savedmodel"] = sm.name
        if "tflite" in formats:
            import tensorflow as tf

            # No optimizations: float32 throughout. The batch dim stays -1 (dynamic): callers
            # resize_tensor_input(0, (n, S, S, 3)), then allocate_tensors(), then invoke().
            (tmp / "embedding.tflite").write_bytes(
                tf.lite.TFLiteConverter.from_saved_model(str(sm)).convert())
            paths["tflite"] = "embedding.tflite"
        if "savedmodel" not in formats:
            shutil.rmtree(sm)
    return {f: paths[f] for f in formats}


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = tmp.with_suffix(".old")
    if out.exists():
        os.rename(out, old)  # set aside, removed only once the new export is in place
    try:
        os.rename(tmp, out)
    except BaseException:
        if old.exists():
            os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def model_card(meta: dict, card: dict, formats: list[str]) -> str:
    """MODEL_CARD.md text from model.json's `meta` and the caller's `card`."""
    s, al = meta["input_size"], meta.get("alignment", {})
    rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                     for k, v in (card.get("metrics") or {}).items()) or "| none recorded | |"
    limits = "\n".join(f"- {x}" for x in card.get("limits", LIMITS))
    return f"""# Model card: Siamese face verification

An embedding CNN: aligned face crop -> unit vector; a head: two vectors -> P(same person).

## Model
- Input: (N, {s}, {s}, 3) float32 {meta.get('colour', 'RGB')} in [0, 1] (`image`), faces aligned
  to the {al.get('template', 'arcface-5pt')} template (padding {al.get('padding', 0.0)}).
  Output: (N, D) unit vectors. Flip test-time augmentation: {meta.get('flip_tta', True)}.
- **Decision threshold: {meta['threshold']:.6f}** on the head's score (`is_match = score >=
  threshold`), chosen on {meta.get('threshold_from', 'held-out LFW people')} where it
  maximised accuracy. Scores are not calibrated probabilities: use them with this threshold.

## Training data
{card.get('data', 'LFW (Labeled Faces in the Wild): 13,233 news photos of 5,749 people.')}

## Evaluation
Protocol: {card.get('protocol', 'not recorded')}

| metric | value |
| --- | --- |
{rows}

## Intended use
{card.get('intended_use', INTENDED_USE)}

## Known limits
{limits}

## Use
Formats: {', '.join(formats)} (ONNX and TFLite: any batch size); SHA-256 of each file in model.json.
Trained with: `{card.get('command', 'not recorded')}`
```python
from siamese.export import Embedder
model = Embedder.load("path/to/this/dir")    # ONNX Runtime if present, else Keras
emb = model.embed(faces)                      # (N, {s}, {s}, 3) uint8 RGB aligned crops
scores, same = model.verify(emb[:1], emb[1:2])
```
"""


def export_from_config(cfg) -> dict[str, Path]:
    """`conf/export.yaml` -> `export(...)`; out null means `<run dir>/export`."""
    src = find_model_dir(cfg.run_dir, exported=False)
    run = src.parent if src.name == "model" else src
    out = Path(cfg.out) if cfg.get("out") else run / "export"
    return export(src, out, formats=tuple(cfg.formats), card=run_card(run),
                  overwrite=bool(cfg.get("overwrite", False)))


def run_card(run: Path) -> dict:
    """Card fields from a run dir's metrics.json, config.yaml, .hydra/overrides.yaml if present."""
    from omegaconf import OmegaConf

    card: dict = {}
    if (run / "metrics.json").is_file():
        card["metrics"] = json.loads((run / "metrics.json").read_text()).get("test", {})
    if (run / "config.yaml").is_file():
        c = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"))
        p, limit = c.get("protocol"), c.get("limit_people")
        split = f"test fold {c.get('fold')}" if p == "view2" else "DevTest pairs, unseen people"
        card["protocol"] = f"{p} ({split}); metrics at the threshold chosen on validation people"
        own = f"; plus own faces from {c['own_faces']}" if c.get("own_faces") else ""
        card["data"] = ("LFW (Labeled Faces in the Wild) news photos, detected and aligned" +
                        (f"; only the first {limit} training people" if limit else "") + own + ".")
    if (run / ".hydra" / "overrides.yaml").is_file():
        card["command"] = " ".join(["siamese train",
                                    *OmegaConf.load(run / ".hydra" / "overrides.yaml")])
    return card


class Embedder:
    """One loader for inference: aligned uint8 crops -> embeddings -> scores -> decisions.

    Attributes: input_size (S, pixels), threshold (`verify`'s, from model.json), format ("onnx"
    or "keras", the one loaded), meta (model.json), path (the dir loaded), dim (D).
    """

    def __init__(self, path: Path, meta: dict, fmt: str, embed_fn, head_fn, dim: int):
        self.path, self.meta, self.format, self.dim = path, meta, fmt, int(dim)
        self.input_size, self.threshold = int(meta["input_size"]), float(meta["threshold"])
        self._embed, self._head = embed_fn, head_fn
        self._fingerprint: str | None = None

    @classmethod
    def load(cls, path: str | os.PathLike, prefer: tuple[str, ...] = ("onnx", "keras"),
             threads: int | None = None) -> "Embedder":
        """Load the first format of `prefer` that is present and importable.

        Args:
            path: an export dir, a run's `model/` dir, a run dir (its newer of export/, model/),
                or an ensemble dir (`siamese.ensemble`: returns an `Ensemble`).
            prefer: formats to try in order; "onnx" needs embedding.onnx, head.onnx and
                onnxruntime; "keras" needs embedding.keras, head.keras.
            threads: ONNX Runtime intra-op threads; None leaves ORT's default (all cores).
        """
        root = find_model_dir(path)
        meta = json.loads((root / "model.json").read_text())
        if "ensemble" in meta:  # several models as one (siamese.ensemble)
            from siamese.ensemble import Ensemble

            return Ensemble.from_dir(root, meta, prefer, threads)
        for fmt in prefer:
            if fmt not in ("onnx", "keras"):
                raise ValueError(f"Embedder loads 'onnx' or 'keras', not {fmt!r}")
            if not all((root / f"{p}.{fmt}").is_file() for p in ("embedding", "head")):
                continue
            if fmt == "onnx" and importlib.util.find_spec("onnxruntime") is None:
                log.warning("onnxruntime is not installed; skipping %s/*.onnx", root)
                continue
            return cls(root, meta, fmt, *(_onnx(root, threads) if fmt == "onnx" else _keras(root)))
        raise FileNotFoundError(f"{root}: none of {prefer} found (embedding.* and head.*) — "
                                "export the model with siamese.export.export()")

    def embed(self, images: np.ndarray, flip: bool = True, batch_size: int = 256) -> np.ndarray:
        """Embeddings of aligned faces: (N, S, S, 3) uint8 RGB -> (N, D) float32 unit vectors.

        As `siamese.model.embed`: with `flip`, the sum of the face's and its mirror's
        embeddings, renormalised. N = 0 gives a (0, D) array.
        """
        images = np.asarray(images)
        s = self.input_size
        if len(images) == 0:
            return np.zeros((0, self.dim), np.float32)
        if images.ndim != 4 or images.shape[1:] != (s, s, 3) or images.dtype != np.uint8:
            raise ValueError(f"expected (N, {s}, {s}, 3) uint8 RGB aligned faces, got "
                             f"{images.shape} {images.dtype} — align them with "
                             f"siamese.faces.align(image, face.landmarks, size={s})")
        out = np.empty((len(images), self.dim), np.float32)
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].astype(np.float32) / 255.0  # the one uint8 -> [0, 1] step
            n = len(x)  # with flip, one call on face + mirror: half the per-call overhead
            e = self._embed(np.concatenate([x, x[:, :, ::-1]]) if flip else x)
            out[i:i + n] = e[:n] + e[n:] if flip else e
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def score(self, emb_a: np.ndarray, emb_b: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """(n,) float32 head probabilities that pairs of (n, D) embeddings are the same person."""
        a, b = (np.ascontiguousarray(e, np.float32) for e in (emb_a, emb_b))
        if a.shape != b.shape or a.ndim != 2 or a.shape[1] != self.dim:
            raise ValueError(f"expected two (n, {self.dim}) arrays, got {a.shape} and {b.shape}")
        out = [self._head(a[i:i + batch_size], b[i:i + batch_size])
               for i in range(0, len(a), batch_size)]
        return np.concatenate(out).ravel().astype(np.float32) if out else np.zeros(0, np.float32)

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
                    digests = [files.get(n) or sha256(root / n) for n in names]
                    self._fingerprint = hashlib.sha256(
                        f"{ext}:{digests[0]}:{digests[1]}".encode()).hexdigest()
                    break
            else:
                raise FileNotFoundError(f"{root}: no embedding/head weights to fingerprint — "
                                        "load an exported model")
        return self._fingerprint

    def verify(self, emb_a: np.ndarray, emb_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores (n,) float32, decisions (n,) bool) with decision = score >= threshold."""
        scores = self.score(emb_a, emb_b)
        return scores, scores >= self.threshold


def _onnx(root: Path, threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    emb, head = (ort.InferenceSession(str(root / f"{p}.onnx"), opts,
                                      providers=["CPUExecutionProvider"])
                 for p in ("embedding", "head"))
    e_in, h_in = emb.get_inputs()[0].name, [i.name for i in head.get_inputs()]
    return (lambda x: emb.run(None, {e_in: x})[0],
            lambda a, b: head.run(None, dict(zip(h_in, (a, b))))[0],
            emb.get_outputs()[0].shape[-1])


def _keras(root: Path):
    emb, head = load_float32(root / "embedding.keras"), load_float32(root / "head.keras")
    return (lambda x: np.asarray(emb.predict_on_batch(x)),
            lambda a, b: np.asarray(head.predict_on_batch([a, b])),
            emb.output_shape[-1])
