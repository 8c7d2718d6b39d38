"""Export a trained model for inference: formats, model.json and a model card.

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

import json
import logging
import os
import shutil
from pathlib import Path

from siamese.io.files import staged_dir
from siamese.model.modeldir import CALIBRATIONS, find_model_dir, sha256

__all__ = ["FORMATS", "export", "metric_rows", "model_card", "run_card", "teacher_lines"]

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
    with staged_dir(out) as tmp:  # out appears (or is replaced) only once complete
        paths = _write_formats(src, tmp, formats)
        (tmp / "MODEL_CARD.md").write_text(model_card(meta, card or {}, formats))
        # The calibrations (verify.json, cluster.json) are settings, refitted in place by
        # `siamese calibrate`: not hashed, so their digests never go stale.
        files = {p.relative_to(tmp).as_posix(): sha256(p) for p in sorted(tmp.rglob("*"))
                 if p.is_file() and p.name not in CALIBRATIONS}
        (tmp / "model.json").write_text(json.dumps({**meta, "formats": formats, "files": files},
                                                   indent=2))
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
    from siamese.model.networks import load_float32  # TensorFlow: only to write the other formats

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


def model_card(meta: dict, card: dict, formats: list[str]) -> str:
    """MODEL_CARD.md text from model.json's `meta` and the caller's `card`."""
    s, al = meta["input_size"], meta.get("alignment", {})
    rows = metric_rows(card.get("metrics")) or "| none recorded | |"
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
{teacher_lines(meta)}
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
from siamese.model import Embedder
model = Embedder.load("path/to/this/dir")    # ONNX Runtime if present, else Keras
emb = model.embed(faces)                      # (N, {s}, {s}, 3) uint8 RGB aligned crops
scores, same = model.verify(emb[:1], emb[1:2])
```
"""


def metric_rows(metrics: dict | None) -> str:
    """A card's metric table rows, `| name | value |` (floats to 4 significant digits)."""
    return "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                     for k, v in (metrics or {}).items())


def teacher_lines(meta: dict, lead: str = "Distilled from a teacher") -> str:
    """A card's lines on what else the model learned from (its LFW category, its teacher);
    `lead` names who distilled (an ensemble: "A member distilled from a teacher")."""
    lines = [f"LFW result category: **{meta['lfw_category']}**."] if meta.get("lfw_category") else []
    teacher = (meta.get("distillation") or {}).get("teacher")
    if teacher:
        lines.append(f"{lead}: {teacher.get('name')} (dlib {teacher.get('dlib', '?')}; "
                     f"{teacher.get('licence')}), which learned from about 3 M faces outside LFW; the student "
                     "saw only its training images through it.")
    return "\n".join(lines)


def run_card(run: Path) -> dict:
    """Card fields from a run dir's metrics.json, config.yaml, .hydra/overrides.yaml if present."""
    from omegaconf import OmegaConf

    card: dict = {}
    if (run / "metrics.json").is_file():
        card["metrics"] = json.loads((run / "metrics.json").read_text()).get("test") or {}
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


