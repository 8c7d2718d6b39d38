"""Export to every format with equal outputs, atomic writes, the card, and a TF-free ONNX path."""

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

from siamese.model import Embedder
from siamese.model import export as ex
from siamese.model.modeldir import sha256
from siamese.model.networks import build_embedding, build_head, embed, pair_scores

REPO = Path(__file__).resolve().parents[1]
S, D = 32, 16
TOL = 1e-4
FACES = ["Aaron_Eckhart_0001", "AJ_Cook_0001", "Abdullah_Gul_0001", "Abdullah_Gul_0002"]


def _model_dir(root: Path, threshold: float = 0.5) -> Path:
    """A fake run's model/ dir: tiny embedding and head, and a model.json like train.finish's."""
    keras.utils.set_random_seed(0)
    emb = build_embedding(S, dim=D, widths=(8, 16, 16, 32), blocks=(1, 1, 1, 1))
    head = build_head(D)
    model = root / "model"
    model.mkdir(parents=True)
    emb.save(model / "embedding.keras")
    head.save(model / "head.keras")
    meta = {"input_size": S, "colour": "RGB", "range": "[0, 1] float32",
            "alignment": {"template": "arcface-5pt", "cache_size": 112, "padding": 0.0},
            "threshold": threshold, "threshold_from": "validation people held out of training",
            "flip_tta": True}
    (model / "model.json").write_text(json.dumps(meta))
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model dir, export dir, embedding, head) with every format written."""
    root = tmp_path_factory.mktemp("export")
    model = _model_dir(root / "run", threshold=0.9)
    paths = ex.export(model, root / "out", card={"metrics": {"accuracy": 0.5}})
    assert set(paths) == set(ex.FORMATS)
    emb = keras.saving.load_model(model / "embedding.keras")
    return model, root / "out", emb, keras.saving.load_model(model / "head.keras")


def _random_images(n=8):
    return np.random.default_rng(0).integers(0, 256, (n, S, S, 3), dtype=np.uint8)


def _lfw_faces(lfw_root, yunet):
    from siamese.faces.align import align
    from siamese.io.images import read_image

    out = []
    for name in FACES:
        image = read_image(lfw_root / "lfw" / name[:-5] / f"{name}.jpg")
        face = max(yunet.detect(image), key=lambda f: f.box[2] * f.box[3])
        out.append(align(image, face.landmarks, size=S))
    return np.stack(out)


def _tflite(path: Path, x: np.ndarray) -> np.ndarray:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = getattr(tf.lite, "Interpreter", None)
        if Interpreter is None:
            pytest.fail("no TFLite interpreter (tf.lite.Interpreter gone): install ai-edge-litert "
                        "so the exported .tflite can be checked")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        it = Interpreter(model_path=str(path))
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], list(x.shape))  # dynamic batch: size it per call
    it.allocate_tensors()
    it.set_tensor(inp["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


@pytest.mark.parametrize("images", ["random", "lfw"])
def test_every_format_matches_keras(exported, images, request):
    import onnxruntime as ort
    import tensorflow as tf

    _, out, emb, head = exported
    if images == "lfw":
        images = _lfw_faces(request.getfixturevalue("lfw_root"), request.getfixturevalue("yunet"))
    else:
        images = _random_images()
    x = images.astype(np.float32) / 255.0
    want = emb.predict_on_batch(x)
    onnx = ort.InferenceSession(str(out / "embedding.onnx"), providers=["CPUExecutionProvider"])
    saved = tf.saved_model.load(str(out / "embedding_savedmodel"))  # kept: serve needs its vars
    got = {
        "savedmodel": saved.serve(x).numpy(),
        "onnx": onnx.run(None, {"image": x})[0],
        "tflite": _tflite(out / "embedding.tflite", x),
    }
    for fmt, e in got.items():
        assert e.shape == want.shape, fmt
        assert np.abs(e - want).max() < TOL, fmt
    h = ort.InferenceSession(str(out / "head.onnx"), providers=["CPUExecutionProvider"])
    a, b = want, want[::-1].copy()
    scores = h.run(None, {"emb_a": a, "emb_b": b})[0]
    assert np.abs(scores - head.predict_on_batch([a, b])).max() < TOL
    # the loader does the same maths as siamese.model.networks.embed / pair_scores
    m = Embedder.load(out)
    e = m.embed(images)
    assert np.abs(e - embed(emb, images)).max() < TOL
    assert np.abs(m.score(e, e[::-1]) - pair_scores(head, e, e[::-1])).max() < TOL


def test_embedder_prefers_onnx_and_falls_back_to_keras(exported, tmp_path):
    model, out, _, _ = exported
    keras_only = tmp_path / "keras_only"
    shutil.copytree(out, keras_only)
    for f in ("embedding.onnx", "head.onnx"):
        (keras_only / f).unlink()
    fast, slow = Embedder.load(out), Embedder.load(keras_only)
    assert (fast.format, slow.format) == ("onnx", "keras")
    assert Embedder.load(out, prefer=("keras",)).format == "keras"
    images = _random_images()
    e1, e2 = fast.embed(images), slow.embed(images)
    assert e1.shape == (8, D) and e1.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e1, axis=1), 1.0, atol=1e-5)
    assert np.abs(e1 - e2).max() < TOL
    assert fast.threshold == slow.threshold == 0.9 and fast.input_size == S
    a, b = np.repeat(e1[:1], 8, 0), e1  # pair 0 is a face with itself: the highest score
    scores, same = fast.verify(a, b)
    assert np.abs(scores - slow.score(a, b)).max() < TOL
    assert (same == (scores >= fast.threshold)).all() and same[0]
    assert fast.embed(images[:0]).shape == (0, D) and fast.score(e1[:0], e1[:0]).shape == (0,)
    with pytest.raises(ValueError, match="uint8"):
        fast.embed(images.astype(np.float32))
    # a run dir loads its model/ (no export yet)
    assert Embedder.load(model.parent).path == model


def test_refuses_to_overwrite_and_replaces_when_asked(exported, tmp_path):
    model = exported[0]
    out = tmp_path / "out"
    ex.export(model, out, formats=("keras",))
    with pytest.raises(FileExistsError, match="overwrite"):
        ex.export(model, out, formats=("keras",))
    (out / "stale.txt").write_text("from before")
    ex.export(model, out, formats=("keras", "onnx"), overwrite=True)
    assert not (out / "stale.txt").exists() and (out / "head.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp dirs left
    with pytest.raises(ValueError, match="choose one or more"):
        ex.export(model, tmp_path / "x", formats=("pt",))


def test_a_failed_export_leaves_no_out_dir(exported, tmp_path, monkeypatch):
    def broken(model, path):
        raise RuntimeError("onnx conversion failed")

    monkeypatch.setattr(ex, "_export_onnx", broken)
    with pytest.raises(RuntimeError, match="onnx conversion failed"):
        ex.export(exported[0], tmp_path / "out", formats=("keras", "onnx"))
    assert list(tmp_path.iterdir()) == []


def test_model_card_and_checksums(exported):
    model, out, _, _ = exported
    card = (out / "MODEL_CARD.md").read_text()
    assert "0.900000" in card and "commercial" in card and "| accuracy | 0.5 |" in card
    meta = json.loads((out / "model.json").read_text())
    assert meta["formats"] == list(ex.FORMATS) and meta["threshold"] == 0.9
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(meta["files"]) == on_disk - {"model.json"}
    for name, digest in meta["files"].items():
        assert sha256(out / name) == digest, name
    assert sha256(out / "embedding.keras") == sha256(model / "embedding.keras")  # a copy


def test_onnx_path_never_imports_tensorflow(exported):
    code = (
        "import sys, numpy as np\n"
        "from siamese.model import Embedder\n"
        f"m = Embedder.load({str(exported[1])!r})\n"
        f"e = m.embed(np.zeros((3, {S}, {S}, 3), np.uint8))\n"
        "m.verify(e, e)\n"
        "assert m.format == 'onnx', m.format\n"
        "bad = [k for k in ('tensorflow', 'keras') if k in sys.modules]\n"
        "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=REPO)
    assert r.returncode == 0, r.stderr


def test_mixed_precision_models_export_in_float32(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model_dir(tmp_path / "run")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    ex.export(model, tmp_path / "out", formats=("onnx",))
    m = Embedder.load(tmp_path / "out")
    images = _random_images(4)
    mixed = keras.saving.load_model(model / "embedding.keras")
    # float16 compute inside; the final L2 normalisation is kept in float32 by design.
    assert any(layer.compute_dtype == "float16" for layer in mixed.layers)
    assert mixed.output.dtype == "float32"
    assert np.abs(m.embed(images) - embed(mixed, images)).max() < 1e-2  # float16 rounding


def test_config_composes_and_exports_a_run(exported, tmp_path):
    from hydra import compose, initialize_config_dir

    run = tmp_path / "run"
    shutil.copytree(exported[0], run / "model")
    (run / "metrics.json").write_text(json.dumps({"test": {"accuracy": 0.655, "auc": 0.72}}))
    (run / "config.yaml").write_text("protocol: view1\nfold: 0\nlimit_people: 300\n")
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text("- limit_people=300\n")
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("export", overrides=[f"run_dir={run}", "formats=[keras,onnx]"])
    assert cfg.out is None and cfg.overwrite is False
    from siamese.commands.training import export as export_command

    paths = export_command(cfg)
    assert paths["onnx"] == run / "export" / "embedding.onnx"
    card = (run / "export" / "MODEL_CARD.md").read_text()
    assert "view1" in card and "| accuracy | 0.655 |" in card
    assert "siamese train limit_people=300" in card and "first 300 training people" in card
    assert Embedder.load(run).format == "onnx"  # a run dir loads its (newer) export
