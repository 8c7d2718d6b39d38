"""Tell the truth about a model: LFW View 1, View 2 10-fold, or any folder of people.

Honesty rules, enforced here rather than trusted to the user:

- Test pairs whose people the model saw in training (or validation) are refused: dropped with a
  loud count, never silently scored. `people.json` beside the model lists who it saw.
- The decision threshold is the model's own (chosen on held-out validation people); View 2's
  per-fold threshold comes from the other nine folds. A best-on-the-test-set accuracy is
  reported only under the name `oracle_accuracy`, never as the result.

Outputs in the run dir: metrics.json, report.md, roc.png, histogram_*.png, worst_*.png.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np

from siamese.data.lfw import LFW, Pair
from siamese.data.sampling import FaceSet, sample_pairs
from siamese.eval import plots
from siamese.eval.metrics import best_threshold, kfold, summary
from siamese.faces.align import align
from siamese.io.files import atomic_write_text
from siamese.io.images import iter_images, list_images

log = logging.getLogger(__name__)


class ScoredPairs(NamedTuple):
    """Pairs scored by a model, with their faces for the plots.

    Attributes:
        images: (N, S, S, 3) uint8 RGB faces; names: (N,) the person of each face.
        idx: (p, 2) each pair's rows in `images`; scores: (p,) head scores; same: (p,) bool truth.
    """

    images: np.ndarray
    names: list[str]
    idx: np.ndarray
    scores: np.ndarray
    same: np.ndarray


def lfw_pair_scores(embedder, lfw: LFW, fc, pairs: list[Pair]) -> ScoredPairs:
    """Scores of LFW pairs, with the cached crops and names of their faces for the plots. The model
    embeds the images its own way (`Embedder.embed_refs`: from the face cache, or, for the
    teacher, its own alignment)."""
    images, idx, same = fc.pair_faces(pairs)
    refs = sorted({r for p in pairs for r in (p.a, p.b)}, key=lambda r: (r.person, r.index))  # pair_faces' rows
    emb, kept = embedder.embed_refs_with_progress(lfw, refs, fc, desc=f"embedding {len(refs)} LFW faces")
    if len(kept) < len(refs):
        raise ValueError(f"{len(refs) - len(kept)} LFW images of the test pairs could not be read — "
                         "check the copy (`siamese data check`)")
    scores = np.asarray(embedder.score(emb[idx[:, 0]], emb[idx[:, 1]]), np.float64).ravel()
    return ScoredPairs(images, [r.person for r in refs], idx, scores, same)


def _unseen(pairs: list[Pair], seen: set[str]) -> tuple[list[Pair], int]:
    keep = [p for p in pairs if p.a.person not in seen and p.b.person not in seen]
    return keep, len(pairs) - len(keep)


def view1(embedder, lfw: LFW, fc, seen: set[str]) -> tuple[dict, ScoredPairs]:
    """View 1 test pairs (DevTest) at the model's threshold."""
    pairs, dropped = _unseen(lfw.pairs("view1_test"), seen)
    if dropped:
        log.warning("View 1: REFUSED %d of %d test pairs whose people the model trained on",
                    dropped, dropped + len(pairs))
    data = lfw_pair_scores(embedder, lfw, fc, pairs)
    result = summary(data.scores, data.same, embedder.threshold)
    result["oracle_accuracy"] = round(best_threshold(data.scores, data.same)[1], 4)
    result["refused_pairs"] = dropped
    return result, data


def view2(embedder, lfw: LFW, fc, seen: set[str]) -> tuple[dict, ScoredPairs]:
    """View 2's 10 folds; each fold's threshold chosen on the other nine.

    Pairs with people the model saw are refused and counted (a View 1-trained model saw about
    70 % of LFW's people); the unrestricted protocol (`siamese unrestricted`) trains one model
    per fold so that every pair counts.
    """
    pairs, fold_of, dropped = [], [], 0
    for k, fold in enumerate(lfw.view2()):
        keep, d = _unseen(fold.pairs, seen)
        pairs += keep
        fold_of += [k] * len(keep)
        dropped += d
    if dropped:
        log.warning("View 2: REFUSED %d of %d pairs whose people the model trained on; "
                    "10-fold over the remaining %d", dropped, dropped + len(pairs), len(pairs))
    data = lfw_pair_scores(embedder, lfw, fc, pairs)
    result = kfold(data.scores, data.same, fold_of)
    result.update(pairs=len(pairs), same_pairs=int(data.same.sum()), refused_pairs=dropped)
    return result, data


def folder_faces(embedder, root: str | Path, detector) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """Faces of a folder-per-identity dataset `root/<person>/*.jpg`, embedded by `embedder`.

    Each photo contributes its largest face; photos without one are counted and skipped.

    Returns:
        ((N, D) embeddings, (N, 112, 112, 3) uint8 crops for the plots, N person names,
        counts {"photos", "no_face", "errors"}).
    """
    root = Path(root)
    emb, crops, names, counts = [], [], [], {"photos": 0, "no_face": 0, "errors": 0}
    paths = [p for p in list_images(root) if len(p.relative_to(root).parts) >= 2]
    skipped: Counter = Counter()
    for path, image in iter_images(paths, skipped):
        faces = detector.detect(image)
        if not faces:
            counts["no_face"] += 1
            continue
        face = max(faces, key=lambda f: float(f.box[2] * f.box[3]))
        emb.append(embedder.embed_faces(image, [face])[0])
        crops.append(align(image, face.landmarks, 112))
        names.append(path.relative_to(root).parts[0])
    counts.update(photos=len(paths), errors=sum(skipped.values()))
    if not emb:
        raise ValueError(f"{root}: no faces found in any <person>/<image> file")
    return np.stack(emb), np.stack(crops), names, counts


def folder(embedder, root: str | Path, detector, n_pairs: int = 2000, seed: int = 0) -> tuple[dict, ScoredPairs]:
    """Balanced same/different pairs drawn with `seed` from a folder-per-identity dataset."""
    emb, images, names, counts = folder_faces(embedder, root, detector)
    people = sorted(set(names))
    faces = FaceSet(images, np.array([people.index(n) for n in names]), people)
    if not (faces.counts >= 2).any() or len(people) < 2:
        raise ValueError(f"{root}: need at least two people and one with two or more faces")
    pairs = np.unique(sample_pairs(faces, n_pairs, np.random.default_rng(seed)), axis=0)
    idx, same = pairs[:, :2], pairs[:, 2].astype(bool)
    scores = np.asarray(embedder.score(emb[idx[:, 0]], emb[idx[:, 1]]), np.float64).ravel()
    result = summary(scores, same, embedder.threshold)
    result.update(oracle_accuracy=round(best_threshold(scores, same)[1], 4), people=len(people),
                  faces=len(images), **counts)
    return result, ScoredPairs(images, names, idx, scores, same)


def _report(metrics: dict) -> str:
    lines = [f"# Evaluation of `{metrics['model']}`", "",
             f"Backend: {metrics['format']}; threshold {metrics['threshold']:.4f} "
             "(the model's own, chosen on held-out validation people).", ""]
    for name, r in metrics["results"].items():
        lines.append(f"## {name}")
        if "accuracy_mean" in r:
            lines.append(f"- accuracy **{r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f}** "
                         f"(10-fold, threshold from the other nine folds), mean AUC {r['auc_mean']}")
        else:
            lines.append(f"- accuracy **{r['accuracy']:.4f}** at threshold {r['threshold']:.4f}; "
                         f"best possible on these pairs (oracle, not a result) {r['oracle_accuracy']:.4f}")
            lines.append(f"- precision {r['precision']}, recall {r['recall']}, F1 {r['f1']}, "
                         f"AUC {r['auc']}, EER {r['eer']}, TAR@FAR1e-3 {r['tar_at_far_1e-3']}, "
                         f"TAR@FAR1e-2 {r['tar_at_far_1e-2']}")
        lines.append(f"- {r['pairs']} pairs ({r['same_pairs']} same)"
                     + (f"; **{r['refused_pairs']} refused** (people seen in training)"
                        if r.get("refused_pairs") else ""))
        lines.append("")
    lines += ["Plots: roc.png, histogram_*.png, worst_*.png.", ""]
    return "\n".join(lines)


def evaluate(embedder, out_dir: str | Path, *, lfw: LFW | None = None, fc=None,
             protocols=("view1", "view2"), folder_root: str | Path | None = None,
             detector=None, n_pairs: int = 2000, seed: int = 0, seen: set[str] = frozenset(),
             model_name: str = "") -> dict:
    """Run the chosen evaluations, write metrics.json, report.md and plots into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results, curves = {}, {}
    jobs = {"view1": lambda: view1(embedder, lfw, fc, seen),
            "view2": lambda: view2(embedder, lfw, fc, seen)}
    for name in protocols:
        results[f"lfw_{name}"], data = jobs[name]()
        curves[f"LFW {name}"] = data
    if folder_root is not None:
        results["folder"], data = folder(embedder, folder_root, detector, n_pairs, seed)
        curves[f"folder {Path(folder_root).name}"] = data
    for label, d in curves.items():
        slug = label.replace(" ", "_").lower()
        plots.histograms(d.scores, d.same, embedder.threshold, out / f"histogram_{slug}.png", label)
        plots.worst_pairs(d.images, d.idx, d.scores, d.same, embedder.threshold, out / f"worst_{slug}.png",
                          names=d.names)
    plots.roc({k: (d.scores, d.same) for k, d in curves.items()}, out / "roc.png")
    metrics = {"model": model_name, "format": embedder.format,
               "threshold": float(embedder.threshold), "results": results}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    atomic_write_text(out / "report.md", _report(metrics))
    return metrics
