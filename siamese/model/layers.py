"""The custom Keras layers of the Siamese network, registered for `.keras` files (no `Lambda`).

A model that uses them loads once this module is imported (`siamese.model.networks` does).
"""

from __future__ import annotations

import keras
from keras import layers, ops

__all__ = ["CosineMarginLogits", "L1Distance", "L2Normalize", "PairStack", "StopGradient"]

PACKAGE = "siamese"


@keras.saving.register_keras_serializable(package=PACKAGE)
class L2Normalize(layers.Layer):
    """Scale each vector to unit length: (batch, D) -> (batch, D). Always float32 (under mixed
    precision its inputs are cast up: a float16 sum of squares loses the unit length)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, x):
        return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))


@keras.saving.register_keras_serializable(package=PACKAGE)
class L1Distance(layers.Layer):
    """Element-wise absolute difference of two embeddings: ((B, D), (B, D)) -> (B, D)."""

    def call(self, inputs):
        a, b = inputs
        return ops.abs(a - b)


@keras.saving.register_keras_serializable(package=PACKAGE)
class CosineMarginLogits(layers.Layer):
    """CosFace logits for training the embedding as a classifier over identities.

    logits = scale * (cos(emb, W_c) - margin * onehot(label)); with the margin the network must
    put each face closer to its own identity's centre than to any other by at least `margin` in
    cosine, which is what makes the embedding good for people never seen in training.

    Inputs: (embedding (B, D) unit vectors, labels (B,) int). Output: (B, classes) logits.
    """

    def __init__(self, classes: int, scale: float = 30.0, margin: float = 0.35, **kwargs):
        kwargs.setdefault("dtype", "float32")  # logits of scale 30 and a margin: keep float32
        super().__init__(**kwargs)
        self.classes, self.scale, self.margin = classes, scale, margin

    def build(self, input_shape):
        dim = input_shape[0][-1]
        self.w = self.add_weight(shape=(dim, self.classes), initializer="glorot_uniform",
                                 name="centres")

    def call(self, inputs):
        emb, labels = inputs
        w = self.w / ops.sqrt(ops.maximum(ops.sum(ops.square(self.w), axis=0, keepdims=True), 1e-12))
        cos = ops.matmul(emb, w)
        onehot = ops.one_hot(ops.cast(ops.reshape(labels, (-1,)), "int32"), self.classes)
        return self.scale * (cos - self.margin * onehot)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.classes)

    def get_config(self):
        return {**super().get_config(), "classes": self.classes, "scale": self.scale,
                "margin": self.margin}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PairStack(layers.Layer):
    """The two embeddings of a pair side by side: ((B, D), (B, D)) -> (B, 2, D), so one loss can
    see all 2B images of a batch (the relational distillation term). Always float32."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs):
        a, b = inputs
        return ops.stack([ops.cast(a, "float32"), ops.cast(b, "float32")], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 2, input_shape[0][-1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class StopGradient(layers.Layer):
    """Identity forward, no gradient backward: lets the head learn from embeddings without its
    loss reaching the embedding network (distillation keeps the embedding the teacher's pupil)."""

    def call(self, x):
        return ops.stop_gradient(x)
