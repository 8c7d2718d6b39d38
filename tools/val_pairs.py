"""How well models verify their validation people: accuracy and AUC on the 2,000 validation pairs
of the View 1 split (seed 42, the 118 people every official distillation run and the shipped model
held out), every model scored the same way, so that single models and ensembles compare.

    python tools/val_pairs.py siamese/assets/default_model checkpoints/a15_cos_rel_w48 ENSEMBLE_DIR

Each model embeds the 580 validation faces its own way (`Embedder.prepare`, mirror averaged), a
pair's score is the cosine of its two embeddings, and the accuracy is at the threshold best for
these pairs (`siamese.eval.metrics.best_threshold`): an upper bound of each model's own, the same
for all. (A training run's `best_val_acc` is the trainer's figure at its epoch end, without the
mirror: close, not identical.) The last two columns score the same pairs by the model's own pair
score instead (`Embedder.score`: its head; an ensemble's members' mean head), what `siamese
evaluate`, `/v1/verify` with two photos and method nn use.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.metrics import roc_auc_score

from siamese.cli import compose_config, quote_value
from siamese.data.lfw import resolve_root
from siamese.eval.bench.table import table
from siamese.eval.metrics import best_threshold
from siamese.io.paths import lfw_cache
from siamese.model.embedder import Embedder
from siamese.train.trainer import protocol_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model dirs, training run dirs or ensemble dirs")
    ap.add_argument("--lfw", default=None, help="the LFW copy (default: LFW_ROOT, data/lfw, ../shared/datasets/lfw)")
    ap.add_argument("--cache", default=str(lfw_cache("data/cache")), help="the aligned LFW face cache")
    ap.add_argument("--seed", type=int, default=42, help="the split's seed")
    args = ap.parse_args()
    cfg = compose_config("train", [f"data.root={quote_value(str(resolve_root(args.lfw)))}",
                                   f"cache_dir={quote_value(args.cache)}", f"seed={args.seed}",
                                   "model.input_size=112"])  # the runs' split: train's defaults
    _, _, _, _, val_faces, (images, idx, same) = protocol_data(cfg, np.random.default_rng(args.seed))
    rows = []
    for path in args.models:
        model = Embedder.load(path)
        emb = model.embed(model.prepare(images))
        s = (emb[idx[:, 0]] * emb[idx[:, 1]]).sum(1)
        threshold, accuracy = best_threshold(s, same)
        h = model.score(emb[idx[:, 0]], emb[idx[:, 1]])
        rows.append({"model": path, "val_accuracy": round(accuracy, 4), "at": round(threshold, 3),
                     "val_auc": round(float(roc_auc_score(same, s)), 4),
                     "head_accuracy": round(best_threshold(h, same)[1], 4),
                     "head_auc": round(float(roc_auc_score(same, h)), 4)})
    print(f"{len(images)} faces of {len(val_faces.names)} validation people, {len(same)} pairs")
    print(table(rows))


if __name__ == "__main__":
    from siamese.cli import script

    script("val_pairs", main)
