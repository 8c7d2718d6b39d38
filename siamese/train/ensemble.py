"""Making an ensemble dir from trained models (`siamese ensemble OUT MODEL MODEL ...`): its
members, who they saw, and its own pair threshold and cluster.json fitted on the validation people
every member held out. The `Ensemble` itself is `siamese.model.ensemble`."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from siamese.eval.calibration import calibrate_clustering, validation_faces
from siamese.eval.metrics import best_threshold
from siamese.io.files import atomic_write_text
from siamese.model.embedder import Embedder
from siamese.model.ensemble import Ensemble
from siamese.model.export import INTENDED_USE, LIMITS, metric_rows, teacher_lines

__all__ = ["build", "ensemble_card", "threshold_pairs"]

OUTSIDE = "unrestricted, labeled outside data"  # LFW's category once any member learned from outside data

log = logging.getLogger(__name__)


def _people(members: list[Embedder]) -> dict:
    """Who any member saw, and the validation people every member held out."""

    seen, validation = set(), None
    for m in members:
        held_out = set(m.validation_people())  # the ensemble's thresholds are fitted on these
        seen |= m.seen_people()
        validation = held_out if validation is None else validation & held_out
    if not validation or len(validation) < 2:
        raise ValueError("the members share fewer than two validation people — train them with "
                         "the same seed and val_fraction (their split of DevTrain)")
    return {"dataset": "lfw", "seen": sorted(seen), "validation": sorted(validation)}


def _provenance(members: list[Embedder]) -> dict:
    """model.json's record of what the members learned from: each member's input size, LFW
    category and training data (in the order of "ensemble"); the ensemble's category (`OUTSIDE`
    if any member has it, else the members' shared one) and the teacher any member distilled from."""
    rows = [{"input_size": int(m.input_size), "lfw_category": m.meta.get("lfw_category"),
             "training_data": m.meta.get("training_data")} for m in members]
    cats = {r["lfw_category"] for r in rows}
    meta: dict = {"members": rows}
    if OUTSIDE in cats:
        meta["lfw_category"] = OUTSIDE
    elif len(cats) == 1 and None not in cats:
        meta["lfw_category"] = cats.pop()
    teacher = next((m.meta["distillation"]["teacher"] for m in members
                    if (m.meta.get("distillation") or {}).get("teacher")), None)
    if teacher:
        meta["distillation"] = {"teacher": teacher}
    return meta


def threshold_pairs(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs an ensemble's threshold is fitted on: every same-person pair of `labels` (n,)
    and as many random different-person pairs. Returns (i, j, same), each (pairs,)."""
    i, j = np.triu_indices(len(labels), 1)
    same = labels[i] == labels[j]
    rng = np.random.default_rng(seed)
    diff = rng.choice(np.flatnonzero(~same), min(int(same.sum()), int((~same).sum())), replace=False)
    pick = np.r_[np.flatnonzero(same), diff]
    return i[pick], j[pick], same[pick]


def ensemble_card(meta: dict, metrics: dict | None = None, protocol: str | None = None,
                  made_with: str | None = None) -> str:
    """MODEL_CARD.md text for an ensemble dir from its model.json `meta` (with `_provenance`'s
    fields); `metrics` (name -> value) and `protocol`: test figures measured on it, if any;
    `made_with`: the commands that made it (markdown)."""
    s = meta["input_size"]
    members = "\n".join(f"| `{d}` | {r['input_size']} px | {r['lfw_category'] or 'not recorded'} | "
                         f"{r['training_data'] or 'not recorded'} |"
                         for d, r in zip(meta["ensemble"], meta.get("members", [])))
    lines = teacher_lines(meta, "A member distilled from a teacher")
    rows = metric_rows(metrics)
    evaluation = (f"Protocol: {protocol}\n\n| metric | value |\n| --- | --- |\n{rows}" if rows else
                  "Not measured yet: `siamese evaluate THIS_DIR` (View 1 and View 2, refusing pairs of "
                  "people a member learned from).")
    limits = "\n".join(f"- {x}" for x in LIMITS)
    precision_line = {
        "int8": "\n- Precision: **int8** -- each member runs the int8 network derived from its float32 one and "
                "its quantization.json (activation ranges fitted on faces of its training people; "
                "`siamese quantize`), about 3x faster on a CPU; every figure here is the int8 networks'.",
        "bf16": "\n- Precision: **bf16** -- each member's float32 ONNX network run by OpenVINO in bfloat16 "
                "(the `openvino` extra): about 4x faster on CPUs with bfloat16 units (AVX512-BF16, AMX), "
                "float32 on others; every figure here is the bfloat16 networks'."}.get(meta.get("precision"), "")
    return f"""# Model card: Siamese face verification (ensemble)

{len(meta.get('members', []))} embedding CNNs side by side: each embeds the aligned face crop
(resized to its own input size) to a unit vector; the ensemble's embedding is their concatenation
scaled to unit length (its cosine is the members' mean cosine) and its pair score is the mean of
the members' heads' P(same person). Each member dir holds its own model.json and card.

## Model
- Input: (N, {s}, {s}, 3) uint8 RGB faces aligned to the
  {meta['alignment'].get('template', 'arcface-5pt')} template (padding {meta['alignment'].get('padding', 0.0)}).
  Output: (N, D) unit vectors. Flip test-time augmentation: {meta.get('flip_tta', True)}.{precision_line}
- **Decision threshold: {meta['threshold']:.6f}** on the mean head score (`is_match = score >=
  threshold`), chosen on {meta.get('threshold_from', 'held-out LFW people')}.
  Scores are not calibrated probabilities: use them with this threshold.

## Members
| dir | input | LFW category | training data |
| --- | --- | --- | --- |
{members}

## Training data
{lines or 'As each member records.'}

## Evaluation
{evaluation}

## Intended use
{INTENDED_USE}

## Known limits
{limits}

## Use
Made with: {made_with or '`siamese ensemble OUT models=[MEMBER,MEMBER,...]`'}
```python
from siamese.model import Embedder
model = Embedder.load("path/to/this/dir")    # loads every member (ONNX Runtime if present)
emb = model.embed(faces)                      # (N, {s}, {s}, 3) uint8 RGB aligned crops
scores, same = model.verify(emb[:1], emb[1:2])
```
"""


def _copy_members(out: Path, members: list[Embedder]) -> list[Path]:
    """Copy each member's model dir (its files, and an ensemble member's own members inside it;
    not other subfolders) into `out/members/`, named by its place and its source (`1-lfw_only`,
    `2-a15_cos_rel`: a run's `model/` or `export/` dir by its run), so that `out` holds everything
    it needs. Returns the copies."""
    copies = []
    for k, m in enumerate(members, 1):
        src = Path(m.path).resolve()
        label = src.parent.name if src.name in ("model", "export") else src.name
        dst = out / "members" / f"{k}-{label}"
        if dst.resolve() == src:  # rebuilt from its own copies: keep them
            copies.append(dst)
            continue
        if dst.exists():
            shutil.rmtree(dst)  # an earlier build's copy (overwrite)
        dst.mkdir(parents=True)
        for f in src.iterdir():
            if f.is_file():
                shutil.copy2(f, dst / f.name)
        for sub in m.meta.get("ensemble", []):  # an ensemble member: its own members inside it
            inner = (src / sub).resolve()
            if inner.is_relative_to(src):
                shutil.copytree(inner, dst / inner.relative_to(src))
        copies.append(dst)
    return copies


def build(out: str | os.PathLike, models: list[str | os.PathLike], lfw_root=None, *,
          cache_dir=None, detector=None, overwrite: bool = False, seed: int = 0,
          copy_members: bool = False, precision: str = "float32") -> Ensemble:
    """Make an ensemble dir `out` from trained models and fit its thresholds.

    The pair threshold (`Embedder.threshold`) is the best-accuracy cut on all same-person pairs
    of the shared validation people and as many random different-person pairs; cluster.json
    comes from `siamese.eval.calibration.calibrate_clustering` on the same faces.

    Args:
        out: the new dir; must not hold a model unless `overwrite`.
        models: two or more model dirs (run dirs, model/ or export dirs), same alignment; with
            precision "int8" or "bf16" one is enough (that model's form with its own thresholds).
        lfw_root, cache_dir, detector: where the validation faces come from (as for
            `siamese.eval.verify_calibration.calibrate`).
        seed: for the different-person pairs.
        copy_members: copy the members' model dirs into `out/members/` (`_copy_members`), so that
            `out` can be moved, shared or shipped on its own; else `out` names them where they are.
        precision: "int8" runs the members' int8 networks (each member needs its quantization.json,
            `siamese quantize MEMBER`), "bf16" their networks on OpenVINO in bfloat16 (the `openvino`
            extra); the ensemble's thresholds are fitted on those.

    Raises:
        ValueError: fewer than two models, different alignments, no shared validation people.
        FileExistsError: `out` holds a model and not `overwrite`.
    """
    out = Path(out)
    if len(models) < (1 if precision != "float32" else 2):  # one model in int8/bf16: that form, own thresholds
        raise ValueError("an ensemble needs two or more models (or one, with precision=int8 or bf16)")
    if (out / "model.json").exists() and not overwrite:
        raise FileExistsError(f"{out} holds a model — pass overwrite=True (--overwrite)")
    members = [Embedder.load(m, precision=precision) for m in models]
    aligns = {json.dumps(m.meta.get("alignment", {}), sort_keys=True) for m in members}
    if len(aligns) != 1:
        raise ValueError(f"the models were aligned differently ({sorted(aligns)}): one ensemble "
                         "needs one alignment")
    align = members[0].meta["alignment"]
    people = _people(members)
    out.mkdir(parents=True, exist_ok=True)
    # The loaded members fit the thresholds either way: the copies hold the same bytes.
    where = _copy_members(out, members) if copy_members else [Path(m.path) for m in members]
    meta = {"input_size": int(align.get("cache_size", 112)), "colour": "RGB", "range": "uint8 in",
            "alignment": align, "threshold": 0.5, "flip_tta": True,
            "ensemble": [os.path.relpath(p.resolve(), out.resolve()) for p in where],
            **({"precision": precision} if precision != "float32" else {}),
            **_provenance(members)}
    ens = Ensemble(out, meta, members)
    faces, labels = validation_faces(ens, people["validation"], lfw_root, cache_dir=cache_dir,
                                     detector=detector)
    emb = ens.embed(faces)
    i, j, same = threshold_pairs(labels, seed)
    meta["threshold"], acc = best_threshold(ens.score(emb[i], emb[j]), same)
    meta["threshold_from"] = (f"validation people held out of every member: best accuracy "
                              f"{acc:.4f} on {len(same)} pairs")
    ens.threshold = float(meta["threshold"])
    atomic_write_text(out / "people.json", json.dumps(people))
    atomic_write_text(out / "model.json", json.dumps(meta, indent=2))
    atomic_write_text(out / "MODEL_CARD.md", ensemble_card(meta))
    calibrate_clustering(ens, faces=faces, labels=labels, overwrite=True)
    log.info("%s: %d members, pair threshold %.3f", out, len(members), ens.threshold)
    return ens


