"""Batches of pairs for the training graph, reproducible by (seed, epoch, batch).

Each batch is `batch_size` pairs drawn by `siamese.data.sampling.sample_pairs` (half same
person, half not; some negatives hard once the loop sets `similar`), augmented, as float32 in
[0, 1] (`siamese.model.preprocess.to_input`), with both images' identity labels.
"""

from __future__ import annotations

import copy
import threading

import keras
import numpy as np

from siamese.data.sampling import FaceSet, sample_pairs

__all__ = ["PairBatches"]


class PairBatches(keras.utils.PyDataset):
    """Batches of pairs for `build_trainer`, reproducible by (seed, epoch, batch)."""

    def __init__(self, faces: FaceSet, batch_size: int, steps: int, seed: int, augment,
                 hard_share: float, workers: int = 1):
        # Threads, not processes: OpenCV releases the GIL inside its kernels, and a forked
        # process would copy the JAX/TF runtime. Each thread augments with its own copy of
        # the pipeline: seeding one shared pipeline from several threads would race.
        super().__init__(workers=workers, use_multiprocessing=False)
        self.faces, self.batch_size, self.steps, self.seed = faces, batch_size, steps, seed
        self.augment, self.hard_share = augment, hard_share
        self.epoch, self.similar = 0, None
        self._local = threading.local()

    def _augment(self):
        if not hasattr(self._local, "augment"):
            self._local.augment = copy.deepcopy(self.augment)
        return self._local.augment

    def __len__(self):
        return self.steps

    def _images(self, rows, rng):
        ims = self.faces.images[rows]
        if self.augment is not None:
            augment = self._augment()
            augment.set_random_seed(int(rng.integers(2**31)))
            ims = np.stack([augment(image=im)["image"] for im in ims])
        return ims.astype(np.float32) / 255.0  # the model's input convention

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, self.epoch, i])
        p = sample_pairs(self.faces, self.batch_size, rng, similar=self.similar,
                         hard_share=self.hard_share if self.similar is not None else 0.0)
        la, lb = self.faces.labels[p[:, 0]], self.faces.labels[p[:, 1]]
        x = {"image_a": self._images(p[:, 0], rng), "image_b": self._images(p[:, 1], rng),
             "label_a": la.astype(np.int32), "label_b": lb.astype(np.int32)}
        y = {"id_a": la.astype(np.int32), "id_b": lb.astype(np.int32),
             "same": p[:, 2:3].astype(np.float32)}
        return x, y

