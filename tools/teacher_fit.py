"""How closely a distilled student follows its teacher on the images it learned from and on images it
never saw (its validation people): the gap says whether more data (views, morphs) or more capacity
is what the student lacks (docs/distill.md).

    python tools/teacher_fit.py checkpoints/a15_cos_rel checkpoints/a15_cos_rel_morphs [--images 2000]

For each training run dir (its config.yaml names the split, face cache and input size): on up to
`--images` of its training images and on all of its validation people's images, the mean cosine
between the student's embedding and the teacher's target (centred on the training images, as in
training; no mirroring on either side), and how well the student's pairwise cosines among those
images follow the teacher's (Pearson correlation, mean absolute difference). Validation images only
come from people held out of the run's training, so their columns are what carries to new faces.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from siamese.eval.bench.table import table
from siamese.model.networks import embed, load_float32
from siamese.model.preprocess import normalise
from siamese.model.teacher_cache import load, targets
from siamese.train.trainer import protocol_data


def fit(student: np.ndarray, teacher: np.ndarray) -> dict:
    """(n, D) unit embeddings of the same images by the student and the teacher -> how they agree."""
    iu = np.triu_indices(len(student), 1)
    s, t = (student @ student.T)[iu], (teacher @ teacher.T)[iu]
    return {"cos": round(float(np.mean((student * teacher).sum(1))), 4),
            "sim_corr": round(float(np.corrcoef(s, t)[0, 1]), 4), "sim_mad": round(float(np.mean(np.abs(s - t))), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="training run dirs of distilled students")
    ap.add_argument("--images", type=int, default=2000, help="training images to score (a seeded sample)")
    ap.add_argument("--lfw", default=None, help="the LFW copy (default: the run's data.root)")
    args = ap.parse_args()
    rows = []
    for run in args.runs:
        cfg = OmegaConf.load(Path(run) / "config.yaml")
        if args.lfw:
            cfg.data.root = args.lfw
        _, _, _, faces, val_faces, _ = protocol_data(cfg, np.random.default_rng(cfg.seed))
        t, center = targets(cfg.cache_dir, faces.rows, check_files=False)
        raw, _, _ = load(cfg.cache_dir, check_files=False)
        tv = normalise(np.asarray(raw[val_faces.rows, 0], np.float32) - center)
        pick = np.sort(np.random.default_rng(0).choice(len(faces), min(args.images, len(faces)), replace=False))
        student = load_float32(Path(run) / "model" / "embedding.keras")
        train = fit(embed(student, faces.images[pick], flip=False), t[pick, 0])
        val = fit(embed(student, val_faces.images, flip=False), tv)
        rows.append({"run": run, **{f"train_{k}": v for k, v in train.items()},
                     **{f"val_{k}": v for k, v in val.items()}, "val_images": len(val_faces)})
    print(table(rows))


if __name__ == "__main__":
    from siamese.cli import script

    script("teacher_fit", main)
