"""The Siamese network: an embedding CNN, an L1-distance head, and the training graph (Keras).

    image (S, S, 3) float32 RGB in [0, 1]
      -> embedding: CNN backbone -> (D,) unit-length vector          (named sub-model "embedding")
    (emb_a, emb_b) -> head: |emb_a - emb_b| -> Dense(1) -> sigmoid   (named sub-model "head")
      = P(same person), in [0, 1]

Verification, clustering and recognition use `embedding` alone (cosine similarity of unit
vectors) or `head` on two embeddings. The custom layers (`siamese.model.layers`) are registered
for `.keras` files, so saved models reload without `Lambda` or unsafe deserialisation. Only
`keras.ops` is used, so the same code runs on TensorFlow, JAX and PyTorch backends. A new
backbone goes here: a function from an input tensor to a feature map, chosen by `build_embedding`.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers

from siamese.model.layers import CosineMarginLogits, L1Distance, L2Normalize, PairStack, StopGradient
from siamese.model.preprocess import flip_embed

__all__ = ["build_embedding", "build_head", "build_trainer", "embed", "float32_clone", "koch_backbone",
           "load_float32", "pair_scores", "resnet_backbone"]


def _conv_bn(x, filters, kernel=3, stride=1, act=True, name=None):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      name=None if name is None else name + "_conv")(x)
    x = layers.BatchNormalization(name=None if name is None else name + "_bn")(x)
    return layers.Activation("relu")(x) if act else x


def _residual(x, filters, stride):
    shortcut = x
    y = _conv_bn(x, filters, 3, stride)
    y = _conv_bn(y, filters, 3, 1, act=False)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, stride, act=False)
    return layers.Activation("relu")(layers.Add()([y, shortcut]))


def resnet_backbone(x, widths=(32, 64, 128, 256), blocks=(1, 2, 2, 1)):
    """A small ResNet: stem conv, then stages of basic blocks, each stage halving the size."""
    x = _conv_bn(x, widths[0], 3, 1)
    for i, (w, n) in enumerate(zip(widths, blocks)):
        for j in range(n):
            x = _residual(x, w, 2 if j == 0 else 1)
    return x


def koch_backbone(x):
    """Koch et al. (2015)'s Siamese CNN, the classic tutorial network, for reference."""
    x = layers.Conv2D(64, 10, activation="relu")(x)
    x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Conv2D(128, 7, activation="relu")(x)
    x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Conv2D(128, 4, activation="relu")(x)
    x = layers.MaxPooling2D(2, padding="same")(x)
    return layers.Conv2D(256, 4, activation="relu")(x)


def build_embedding(input_size: int = 64, dim: int = 128, backbone: str = "resnet",
                    widths=(32, 64, 128, 256), blocks=(1, 2, 2, 1),
                    dropout: float = 0.2) -> keras.Model:
    """The embedding network.

    Args:
        input_size: side S of the square input, pixels.
        dim: embedding size D.
        backbone: "resnet" (small ResNet, the default) or "koch" (the classic reference).
        widths, blocks: ResNet stage widths and residual blocks per stage.
        dropout: before the final dense layer.

    Returns:
        Model "embedding": (B, S, S, 3) float32 RGB in [0, 1] -> (B, D) unit vectors.
    """
    inp = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(2.0, offset=-1.0)(inp)  # [0, 1] -> [-1, 1]
    if backbone == "resnet":
        x = resnet_backbone(x, tuple(widths), tuple(blocks))
        # Flatten keeps where things are on the face (eyes vs mouth); pooling would discard it.
        x = layers.BatchNormalization()(x)
        x = layers.Dropout(dropout)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(dim, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
    elif backbone == "koch":
        x = koch_backbone(x)
        x = layers.Flatten()(x)
        x = layers.Dense(dim, activation="sigmoid")(x)
    else:
        raise ValueError(f"unknown backbone {backbone!r}; choose 'resnet' or 'koch'")
    out = L2Normalize(name="l2")(x)
    return keras.Model(inp, out, name="embedding")


def build_head(dim: int = 128) -> keras.Model:
    """The verification head: ((B, D), (B, D)) -> (B, 1) P(same person)."""
    a, b = keras.Input((dim,), name="emb_a"), keras.Input((dim,), name="emb_b")
    d = L1Distance(name="l1")([a, b])
    # Init as a scaled negative L1 distance so the head starts out meaningful, then learns
    # per-dimension weights: the weighted L1 distance of Koch et al.
    p = layers.Dense(1, activation="sigmoid", name="same",
                     kernel_initializer=keras.initializers.Constant(-10.0 / dim**0.5 / 2),
                     bias_initializer=keras.initializers.Constant(5.0))(d)
    return keras.Model([a, b], p, name="head")


def build_trainer(embedding: keras.Model, head: keras.Model, classes: int, scale: float = 30.0,
                  margin: float = 0.35, distill: bool = False, head_trains_embedding: bool = True,
                  neighbours: bool = False) -> keras.Model:
    """The training graph: two images and their identity labels in; three outputs (six when
    distilling).

    Outputs: "id_a", "id_b": (B, classes) CosFace logits for each image's identity;
    "same": (B, 1) head probability that the two images show the same person. The embedding
    learns from both losses; the head learns from the pair loss. With `distill`, also "emb_a",
    "emb_b": (B, D) the embeddings (matched to a teacher's, `siamese.model.losses.TeacherCosine`)
    and "embs": (B, 2, D) both (`TeacherRelations`: how the batch's images relate), and with
    `neighbours` the same (B, 2, D) as "nbrs" (`TeacherNeighbours`: each image's nearest). Without
    `head_trains_embedding` the pair loss trains the head alone (its inputs carry no gradient).
    """
    shape = embedding.input_shape[1:]
    a, b = keras.Input(shape, name="image_a"), keras.Input(shape, name="image_b")
    la = keras.Input((), dtype="int32", name="label_a")
    lb = keras.Input((), dtype="int32", name="label_b")
    ea, eb = embedding(a), embedding(b)
    logits = CosineMarginLogits(classes, scale, margin, name="identity")
    out = {
        "id_a": layers.Identity(name="id_a")(logits([ea, la])),
        "id_b": layers.Identity(name="id_b")(logits([eb, lb])),
        "same": layers.Identity(name="same")(head([ea, eb] if head_trains_embedding else [
            StopGradient(name="detach_a")(ea), StopGradient(name="detach_b")(eb)])),
    }
    if distill:
        out.update(emb_a=layers.Identity(name="emb_a", dtype="float32")(ea),
                   emb_b=layers.Identity(name="emb_b", dtype="float32")(eb),
                   embs=PairStack(name="embs")([ea, eb]))
        if neighbours:
            out["nbrs"] = layers.Identity(name="nbrs", dtype="float32")(out["embs"])
    return keras.Model({"image_a": a, "image_b": b, "label_a": la, "label_b": lb}, out,
                       name="trainer")


def embed(embedding: keras.Model, images, batch_size: int = 256, flip: bool = True) -> np.ndarray:
    """(N, D) float32 unit embeddings of (N, S, S, 3) uint8 aligned crops by a Keras "embedding"
    model, with the flip test-time augmentation of `siamese.model.preprocess.flip_embed`."""
    return flip_embed(_predictor(embedding), images, embedding.output_shape[-1], flip, batch_size)


def pair_scores(head: keras.Model, emb_a, emb_b, batch_size: int = 4096) -> np.ndarray:
    """(n,) head probabilities that each pair of embeddings is the same person."""
    predict = _predictor(head)
    out = [np.asarray(predict([emb_a[s:s + batch_size], emb_b[s:s + batch_size]]))
           for s in range(0, len(emb_a), batch_size)]
    return np.concatenate(out).ravel() if out else np.zeros(0, np.float32)


def _predictor(model: keras.Model):
    """`model.predict_on_batch`, except for a model built in a tf.distribute strategy of several
    replicas (train.distribution=data_parallel on TensorFlow): there Keras runs the whole batch on
    every replica and concatenates the copies (2 replicas: twice the rows), so the model is called
    directly, outside the replicas, on the one set of weights they share."""
    strategy = getattr(model, "distribute_strategy", None)  # TensorFlow backend only
    if strategy is not None and strategy.num_replicas_in_sync > 1:
        return lambda x: model(x, training=False)
    return model.predict_on_batch


def load_float32(path: Path):
    """A .keras model with every layer in float32, whatever policy it was trained under."""
    return float32_clone(keras.saving.load_model(path, compile=False))


def float32_clone(model):
    """`model` itself when all its layers compute in float32, else a float32 copy (same weights:
    mixed precision keeps float32 weights, so nothing is lost)."""

    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model

    def as_float32(node):  # rewrite every DTypePolicy in the config (mixed_float16 -> float32)
        if isinstance(node, dict):
            if node.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
                return {**node, "config": {**node["config"], "name": "float32"}}
            return {k: as_float32(v) for k, v in node.items()}
        return [as_float32(v) for v in node] if isinstance(node, list) else node

    clone = keras.Model.from_config(as_float32(model.get_config()))
    clone.set_weights(model.get_weights())
    return clone
