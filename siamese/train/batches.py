"""Batches of pairs for the training graph, reproducible by (seed, epoch, batch).

Each batch is `batch_size` pairs drawn by `siamese.data.sampling.sample_pairs` (half same
person, half not; some negatives hard once the loop sets `similar`), augmented, as float32 in
[0, 1] (`siamese.model.preprocess.to_input`), with both images' identity labels. When the faces
carry teacher targets (distillation), each image is mirrored here with probability 1/2 and its
target is the teacher's embedding of that same view (the image's or its mirror's); the
augmentation pipeline must then not flip images itself. With views in the faces (`FaceSet.views`:
harder views, morphs) and `views_p` > 0, each image is replaced, with that probability, by one of
its views and the teacher's embedding of it: `views_p` is one chance shared by the K views alike,
or one chance per view (K,), so that views of different kinds can be drawn at their own rates.
With extra faces (`FaceSet.extra`: a user's unlabelled photos) and `extra_p` > 0, each image is then
replaced, with that probability, by one of them drawn at random (mirrored with the same coin) and
the teacher's embedding of it; they carry no identity, so the trainer allows them only without the
identity and pair terms.

Several processes (multi-host data parallel, `siamese.train.distribution`): process p of P draws
batch_size / P pairs of each batch from its own stream, seeded by (seed, epoch, batch, p), so the
processes' shares together make one global batch of distinct pairs. One process (P = 1) draws
from (seed, epoch, batch) as before: a single-host run's batches do not depend on the devices.
"""

from __future__ import annotations

import copy
import threading

import keras
import numpy as np

from siamese.data.sampling import FaceSet, sample_pairs
from siamese.model.preprocess import to_input

__all__ = ["PairBatches"]


class PairBatches(keras.utils.PyDataset):
    """Batches of pairs for `build_trainer`, reproducible by (seed, epoch, batch)."""

    def __init__(self, faces: FaceSet, batch_size: int, steps: int, seed: int, augment,
                 hard_share: float, workers: int = 1, outputs: tuple[str, ...] = ("id_a", "id_b", "same"),
                 part: tuple[int, int] = (0, 1), views_p: float | np.ndarray = 0.0, extra_p: float = 0.0):
        # Threads, not processes: OpenCV releases the GIL inside its kernels, and a forked
        # process would copy the JAX/TF runtime. Each thread augments with its own copy of
        # the pipeline: seeding one shared pipeline from several threads would race.
        super().__init__(workers=workers, use_multiprocessing=False)
        process, processes = part
        if batch_size % processes:
            raise ValueError(f"a batch of {batch_size} pairs does not split over {processes} processes")
        # Pairs this process draws per step; the devices' sharing of them is Keras's.
        self.faces, self.batch_size, self.steps, self.seed = faces, batch_size // processes, steps, seed
        self.stream = [process] if processes > 1 else []
        self.augment, self.hard_share, self.outputs = augment, hard_share, outputs
        self.epoch, self.similar = 0, None
        self.views_p = None  # (K,) the chance of each of an image's K views taking its place
        if faces.views is not None and np.sum(views_p) > 0:
            k = faces.views.shape[1]
            self.views_p = np.broadcast_to(np.asarray(views_p, np.float64) / (k if np.ndim(views_p) == 0 else 1), (k,))
            if self.views_p.sum() > 1 + 1e-9:
                raise ValueError(f"views_p adds up to {self.views_p.sum():.3f} > 1")
        self.extra_p = float(extra_p) if faces.extra is not None and len(faces.extra) else 0.0
        if not 0.0 <= self.extra_p <= 1.0:
            raise ValueError(f"extra_p is a probability, not {extra_p}")
        self._local = threading.local()

    def _augment(self):
        if not hasattr(self._local, "augment"):
            self._local.augment = copy.deepcopy(self.augment)
        return self._local.augment

    def __len__(self):
        return self.steps

    def _images(self, rows, rng) -> tuple[np.ndarray, np.ndarray | None]:
        """(float32 model inputs, the teacher target of each view or None) for `rows`."""
        ims, targets = self.faces.images[rows], None
        if self.faces.targets is not None:  # mirror here, so each view gets its own target
            flip = rng.random(len(rows)) < 0.5
            ims = np.where(flip[:, None, None, None], ims[:, :, ::-1], ims)
            targets = np.where(flip[:, None], self.faces.targets[rows, 1], self.faces.targets[rows, 0])
            if self.views_p is not None:  # a view instead (slot v with views_p[v]), where the image has one
                v = np.searchsorted(np.cumsum(self.views_p), rng.random(len(rows)), side="right")
                use, v = v < len(self.views_p), np.minimum(v, len(self.views_p) - 1)
                hard = self.faces.view_targets[rows, v]
                use &= np.abs(hard).sum(1) > 0
                ims = np.where(use[:, None, None, None], self.faces.views[rows, v], ims)
                targets = np.where(use[:, None], hard, targets)
            if self.extra_p > 0:  # a face of nobody in particular instead, mirrored with the image's coin
                use = rng.random(len(rows)) < self.extra_p
                j = rng.integers(len(self.faces.extra), size=int(use.sum()))
                swap = flip[use]
                extra = self.faces.extra[j]
                ims[use] = np.where(swap[:, None, None, None], extra[:, :, ::-1], extra)
                targets[use] = np.where(swap[:, None], self.faces.extra_targets[j, 1], self.faces.extra_targets[j, 0])
        if self.augment is not None:
            augment = self._augment()
            augment.set_random_seed(int(rng.integers(2**31)))
            ims = np.stack([augment(image=im)["image"] for im in ims])
        return to_input(ims), targets

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, self.epoch, i, *self.stream])
        p = sample_pairs(self.faces, self.batch_size, rng, similar=self.similar,
                         hard_share=self.hard_share if self.similar is not None else 0.0)
        la, lb = self.faces.labels[p[:, 0]].astype(np.int32), self.faces.labels[p[:, 1]].astype(np.int32)
        (xa, ta), (xb, tb) = self._images(p[:, 0], rng), self._images(p[:, 1], rng)
        x = {"image_a": xa, "image_b": xb, "label_a": la, "label_b": lb}
        y = {"id_a": la, "id_b": lb, "same": p[:, 2:3].astype(np.float32)}
        if ta is not None:
            y.update(emb_a=ta, emb_b=tb, embs=np.stack([ta, tb], 1))
            y["nbrs"] = y["embs"]
        return x, {k: v for k, v in y.items() if k in self.outputs}
