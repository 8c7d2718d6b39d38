import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from siamese.model.networks import build_embedding, build_head, build_trainer, embed, pair_scores


@pytest.fixture(scope="module")
def parts():
    keras.utils.set_random_seed(0)
    return build_embedding(32, dim=16, widths=(8, 16, 16, 32), blocks=(1, 1, 1, 1)), build_head(16)


def test_shapes_and_unit_embeddings(parts):
    emb, head = parts
    x = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    e = embed(emb, x)
    assert e.shape == (5, 16)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    p = pair_scores(head, e[:3], e[2:])
    assert p.shape == (3,) and ((p >= 0) & (p <= 1)).all()


def test_identical_faces_score_higher_than_different_ones(parts):
    _, head = parts
    a = np.eye(16, dtype=np.float32)[:4]
    b = np.eye(16, dtype=np.float32)[4:8]
    assert (pair_scores(head, a, a) > pair_scores(head, a, b)).all()


def test_save_load_round_trip_gives_equal_outputs(parts, tmp_path):
    emb, head = parts
    x = np.random.default_rng(1).random((4, 32, 32, 3)).astype(np.float32)
    for model, inp in ((emb, x), (head, [np.abs(x[:, 0, :16, 0]), x[:, 1, :16, 0]])):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        again = keras.saving.load_model(path)
        np.testing.assert_allclose(again.predict_on_batch(inp), model.predict_on_batch(inp),
                                   atol=1e-6)
        config = zipfile.ZipFile(path).read("config.json").decode()
        assert "Lambda" not in config  # registered layers only: safe to load


def test_trainer_round_trip_with_custom_layers(parts, tmp_path):
    emb, head = parts
    trainer = build_trainer(emb, head, classes=7)
    x = np.random.default_rng(2).random((3, 32, 32, 3)).astype(np.float32)
    inputs = {"image_a": x, "image_b": x[::-1], "label_a": np.array([0, 1, 2]),
              "label_b": np.array([3, 4, 5])}
    out = trainer.predict_on_batch(inputs)
    assert out["id_a"].shape == (3, 7) and out["same"].shape == (3, 1)
    trainer.save(tmp_path / "t.keras")
    again = keras.saving.load_model(tmp_path / "t.keras")
    np.testing.assert_allclose(again.predict_on_batch(inputs)["id_b"], out["id_b"], atol=1e-5)


def test_koch_reference_network_builds():
    emb = build_embedding(100, dim=64, backbone="koch")
    assert emb.output_shape == (None, 64)
    with pytest.raises(ValueError, match="backbone"):
        build_embedding(32, backbone="nope")


def test_trainer_trains_under_mixed_precision(tmp_path):
    # The GPU default (mixed_float16), exercised on the CPU: the custom layers stay float32.
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        emb = build_embedding(32, dim=16, widths=(8, 16, 16, 32), blocks=(1, 1, 1, 1))
        trainer = build_trainer(emb, build_head(16), classes=5)
        trainer.compile("adam", loss={"id_a": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                                      "id_b": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                                      "same": "binary_crossentropy"})
        x = np.random.default_rng(3).random((4, 32, 32, 3)).astype(np.float32)
        labels = np.array([0, 1, 2, 3])
        losses = trainer.train_on_batch(
            {"image_a": x, "image_b": x[::-1], "label_a": labels, "label_b": labels[::-1]},
            {"id_a": labels, "id_b": labels[::-1], "same": np.zeros((4, 1), np.float32)})
        assert np.isfinite(np.asarray(losses, dtype=np.float64)).all()
        assert emb.output.dtype == "float32"
        trainer.save(tmp_path / "best.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    # The saved parts compute in float32 (what users load and CPUs run), with the same weights.
    from siamese.train.trainer import save_parts

    save_parts(tmp_path)
    part = keras.saving.load_model(tmp_path / "model" / "embedding.keras")
    assert {layer.dtype_policy.name for layer in part.layers} == {"float32"}
    assert all(np.array_equal(a, b) for a, b in zip(part.get_weights(), emb.get_weights()))
    ref = emb.predict_on_batch(x).astype(np.float32)
    assert np.abs(part.predict_on_batch(x) - ref).max() < 0.05  # float16 vs float32 compute


def test_a_broken_stranger_bank_names_the_file_and_never_suggests_unpickling(tmp_path):
    import json
    import shutil

    from siamese.model.modeldir import read_impostors

    src = Path(__file__).resolve().parents[1] / "siamese" / "assets" / "default_model"
    shutil.copy(src / "impostors.json", tmp_path / "impostors.json")
    (tmp_path / "impostors.npy").write_bytes(np.random.default_rng(0).bytes(500))
    fingerprint = json.loads((src / "impostors.json").read_text())["model"]["fingerprint"]
    with pytest.raises(ValueError) as info:
        read_impostors(tmp_path, fingerprint)
    assert str(tmp_path / "impostors.npy") in str(info.value) and "pickle" not in str(info.value)
