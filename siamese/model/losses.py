"""The distillation losses: the student's embedding is taught a teacher's, image by image and in
how the images of a batch relate. Registered Keras losses (no `Lambda`), so a training run
reloads from `last.keras` and resumes.

Teacher targets are unit vectors (the teacher's descriptor, centred on the training images'
mean and normalised: `siamese.model.teacher_cache.targets`); an all-zero target means "no
teacher for this image" (the user's own collected faces) and is left out of both terms.
"""

from __future__ import annotations

import keras
from keras import ops

from siamese.model.layers import PACKAGE

__all__ = ["TeacherCosine", "TeacherNeighbours", "TeacherRelations"]


def _has(t):
    """1.0 where a row holds a (unit) target, 0.0 where it is all zero."""
    return ops.cast(ops.sum(ops.square(t), axis=-1) > 0.5, "float32")


def _batch_images(y_true, y_pred):
    """(B, the student's (2B, D) embeddings, the teacher's (2B, D) targets, (2B,) has-a-target)
    of a batch's pairs stacked as (B, 2, D)."""
    s = ops.reshape(ops.cast(y_pred, "float32"), (-1, ops.shape(y_pred)[-1]))
    t = ops.reshape(ops.cast(y_true, "float32"), (-1, ops.shape(y_true)[-1]))
    return ops.shape(y_pred)[0], s, t, _has(t)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TeacherCosine(keras.losses.Loss):
    """(a) per image: 1 - cos(student embedding, teacher target); y (B, D), 0 where no target."""

    def __init__(self, name="teacher_cosine", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
        return _has(y_true) * (1.0 - ops.sum(y_true * y_pred, axis=-1))


@keras.saving.register_keras_serializable(package=PACKAGE)
class TeacherRelations(keras.losses.Loss):
    """(b) relational: the mean squared difference between the student's and the teacher's
    cosine-similarity matrices over all 2B images of the batch (pairs' embeddings stacked as
    (B, 2, D) by `siamese.model.layers.PairStack`). Returned per pair, (B,), so Keras' mean over
    the batch is the mean over the (2B x 2B) matrix.

    `over` (>= 0) weighs the pairs the student finds more alike than the teacher does (1 + over)
    times: a "hub" face, close to many faces of other people, is such an error repeated along its
    row, and it is what spoils clustering and 1:N search more than verification (docs/distill.md).
    0 is the plain symmetric term."""

    def __init__(self, over: float = 0.0, name="teacher_relations", **kwargs):
        super().__init__(name=name, **kwargs)
        if over < 0:
            raise ValueError(f"over must be >= 0, not {over}")
        self.over = float(over)

    def call(self, y_true, y_pred):
        b, s, t, has = _batch_images(y_true, y_pred)
        diff = ops.matmul(s, ops.transpose(s)) - ops.matmul(t, ops.transpose(t))
        d = has[:, None] * has[None, :] * ops.square(diff)
        if self.over:  # a Python constant: the plain term builds no extra ops
            d = d * (1.0 + self.over * ops.cast(diff > 0, "float32"))
        return ops.mean(ops.reshape(d, (b, -1)), axis=-1)

    def get_config(self):
        return {**super().get_config(), "over": self.over}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TeacherNeighbours(keras.losses.Loss):
    """(b') listwise relational: for each of the batch's 2B images, the teacher's and the
    student's distributions over the other images, softmax(cosine / tau), and the KL divergence
    KL(teacher || student) between them; y (B, 2, D) as for `TeacherRelations`. Returned per
    pair, (B,): the mean of its two images' divergences (nats).

    Where `TeacherRelations` weighs every pair's cosine alike, and most pairs of a batch are
    strangers near 0, this term is about each image's *nearest* faces: a face the student puts
    closer to others than the teacher does takes probability from the true neighbour, which is the
    error that links groups in clustering and lets strangers through 1:N search. Images without a
    target (all-zero rows) are left out as rows and as neighbours; a row with no neighbour is 0."""

    def __init__(self, tau: float = 0.1, name="teacher_neighbours", **kwargs):
        super().__init__(name=name, **kwargs)
        if not tau > 0:
            raise ValueError(f"tau must be > 0, not {tau}")
        self.tau = float(tau)

    def call(self, y_true, y_pred):
        b, s, t, has = _batch_images(y_true, y_pred)
        n = ops.shape(t)[0]
        keep = has[:, None] * has[None, :] * (1.0 - ops.eye(n, dtype="float32"))
        off = (1.0 - keep) * -1e9  # left-out neighbours: no probability
        log_s = ops.log_softmax(ops.matmul(s, ops.transpose(s)) / self.tau + off, axis=-1)
        log_t = ops.log_softmax(ops.matmul(t, ops.transpose(t)) / self.tau + off, axis=-1)
        kl = ops.sum(keep * ops.exp(log_t) * (log_t - log_s), axis=-1) * has
        return ops.mean(ops.reshape(kl, (b, -1)), axis=-1)

    def get_config(self):
        return {**super().get_config(), "tau": self.tau}
