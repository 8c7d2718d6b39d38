"""The work between epochs: hard negatives, validation, checkpoints, early stopping.

Every epoch saves the whole training state (`last.keras`, optimizer included, its row of
`log.csv`, then `state.json`, which is what says the epoch is complete), so a killed run resumes at
the last finished epoch with every finished epoch logged once.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
from omegaconf import DictConfig

from siamese.data.sampling import most_similar
from siamese.eval.metrics import best_threshold, binary_cross_entropy, roc_auc
from siamese.io.files import atomic_write_text
from siamese.model.networks import embed, pair_scores
from siamese.train.batches import PairBatches

__all__ = ["Loop", "log_row", "save", "should_stop", "trim_log"]

log = logging.getLogger(__name__)


class Loop(keras.callbacks.Callback):
    """Per-epoch work: hard negatives, validation, checkpoints, early stopping. With `writes`
    false (a multi-host run's processes other than 0) it validates, saves and stops as process 0
    does, so that every process runs the same collectives, but leaves the run dir to process 0."""

    def __init__(self, run_dir: Path, data: PairBatches, val, state: dict, cfg: DictConfig, writes: bool = True):
        super().__init__()
        self.run_dir, self.data, self.val, self.state, self.cfg = run_dir, data, val, state, cfg
        self.writes = writes
        self.t_epoch = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.data.epoch = epoch
        tc = self.cfg.train
        if tc.hard_share > 0 and epoch >= tc.hard_start_epoch:
            # Identity centres of the CosFace layer: who looks like whom, for free.
            w = np.asarray(self.model.get_layer("identity").w).T
            self.data.similar = most_similar(w, tc.hard_k)
        self.t_epoch = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        seconds = time.perf_counter() - self.t_epoch
        images, idx, same = self.val
        emb = embed(self.model.get_layer("embedding"), images)
        scores = pair_scores(self.model.get_layer("head"), emb[idx[:, 0]], emb[idx[:, 1]])
        thr, acc = best_threshold(scores, same)
        # val_loss: the head's pair loss on the validation pairs, comparable with same_loss.
        logs.update(val_acc=acc, val_auc=roc_auc(scores, same), val_threshold=thr,
                    val_loss=binary_cross_entropy(scores, same),
                    lr=float(np.asarray(self.model.optimizer.learning_rate)),
                    epoch_s=seconds,
                    images_per_s=2 * self.cfg.train.batch_size * self.data.steps / seconds)
        st = self.state
        st["epoch"] = epoch + 1
        st["train_seconds"] = st.get("train_seconds", 0.0) + seconds
        best = acc > st.get("best_val_acc", -1.0)
        if best:
            st.update(best_val_acc=acc, best_epoch=epoch + 1)
        if best:
            self._checkpoint("best.keras")
        self._checkpoint("last.keras")
        if self.writes:  # state.json last: it is what says the epoch is complete.
            log_row(self.run_dir / "log.csv", epoch, logs)
            atomic_write_text(self.run_dir / "state.json", json.dumps(st, indent=2))
        log.info("epoch %d: val_acc %.4f auc %.4f loss %.4f (best %.4f @ %d) %.0f s", epoch + 1, acc,
                 logs["val_auc"], logs["val_loss"], st["best_val_acc"], st["best_epoch"], seconds)
        if should_stop(st, self.cfg.train):
            log.info("early stop: no val_acc gain for %d epochs", self.cfg.train.patience)
            self.model.stop_training = True


    def _checkpoint(self, name: str) -> None:
        if self.writes:
            save(self.model, self.run_dir / name)
            return
        # Multi-host: Keras's save takes part in collectives with every process (JAX), so the
        # other processes save too, into a temporary folder they then delete.
        with tempfile.TemporaryDirectory() as tmp:
            save(self.model, Path(tmp) / name)


def should_stop(state: dict, tc) -> bool:
    """Early stopping: `patience` epochs without a validation gain, counted only from
    `early_stop_after` of the schedule on (the cosine LR's late epochs bring most gains)."""
    start = int(np.ceil(tc.early_stop_after * tc.epochs))
    return state["epoch"] - max(state.get("best_epoch", 0), start) >= tc.patience


def log_row(path: Path, epoch: int, logs: dict) -> None:
    """Append epoch `epoch`'s (0-based) metrics to the run's log.csv, header first when the file
    is new: columns `epoch` then the metric names sorted, as Keras's CSVLogger writes them."""
    new = not path.exists() or path.stat().st_size == 0
    if new:
        fields = ["epoch", *sorted(logs)]
    else:
        with open(path, newline="") as f:
            fields = next(csv.reader(f), None) or ["epoch", *sorted(logs)]
    row = {"epoch": epoch, **{k: float(np.asarray(v)) for k, v in logs.items()}}
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)


def trim_log(path: Path, epochs: int) -> None:
    """Keep only the rows of the first `epochs` epochs (the ones state.json says are complete):
    a run killed between writing an epoch's row and its state.json logs that epoch again when
    it resumes. Rewritten atomically; a missing file is left missing."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or all(int(r[0]) < epochs for r in rows[1:] if r):
        return
    out = io.StringIO(newline="")
    csv.writer(out).writerows([rows[0], *(r for r in rows[1:] if r and int(r[0]) < epochs)])
    atomic_write_text(path, out.getvalue())


def save(model, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp.keras")  # keras wants the suffix
    model.save(tmp)
    os.replace(tmp, path)
