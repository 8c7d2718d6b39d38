"""Int8 networks (siamese.model.quantize, siamese.train.int8): fitted on a model's training
people, derived on first use into the user cache, tied by hash to the float32 network, close to it,
and loaded by ensembles whose model.json says "precision": "int8". The model quantized here is a
copy of the shipped 64 px student (the fastest), with a few people so that faces come from photos."""

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from siamese.faces.align import resize_faces
from siamese.model import quantize
from siamese.model.embedder import Embedder
from siamese.train.ensemble import build
from siamese.train.int8 import quantize_model

REPO = Path(__file__).resolve().parents[1]
STUDENT = REPO / "siamese" / "assets" / "default_model" / "members" / "2-distilled"
VALIDATION = ["Ashanti", "Bulent_Ecevit", "Carmen_Electra"]
TRAINING = ["Ahmed_Chalabi", "Ai_Sugiyama", "Al_Gore"]  # DevTrain people with several photos


def _copy(dst: Path) -> Path:
    shutil.copytree(STUDENT, dst, ignore=shutil.ignore_patterns("cluster.json", "verify.json", "impostors.*",
                                                                 quantize.FILE))
    (dst / "people.json").write_text(json.dumps({"protocol": "view1", "fold": 0, "dataset": "lfw",
                                                 "seen": TRAINING + VALIDATION, "validation": VALIDATION}))
    return dst


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The user cache (unpacked and derived networks) in a fresh folder."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("cache")
    mp.setenv("SIAMESE_CACHE", str(root))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, cache, lfw_root, yunet):
    root = tmp_path_factory.mktemp("int8")
    model = _copy(root / "student")
    rows = quantize_model(model, lfw_root, detector=yunet, faces=16)
    return model, rows


@pytest.fixture(scope="module")
def faces(known_faces):
    return known_faces  # (n, 112, 112, 3): an ensemble's input


def test_fitted_on_training_people_and_tied_to_the_float32_network(fitted):
    model, rows = fitted
    q = json.loads((model / quantize.FILE).read_text())
    assert q["fitted_on"]["faces"] == 16 and set(q["fitted_on"]["drawn_from"]) <= set(TRAINING)
    assert q["float32_sha256"] == json.loads((model / "model.json").read_text())["files"]["embedding.onnx"]
    assert len(q["int8_sha256"]) == 64 and q["ranges"]["image"] == [0.0, 1.0]  # the input, in [0, 1]
    c = rows[0]["closeness"]  # measured on the validation people's faces, recorded
    assert c == q["closeness_on_validation"] and c["people"] == len(VALIDATION) and c["cosine_min"] > 0.98


def test_int8_embeds_close_to_float32_as_another_network(fitted, faces, cache):
    model, _ = fitted
    fp32, int8 = Embedder.load(model), Embedder.load(model, precision="int8")
    assert (fp32.precision, int8.precision) == ("float32", "int8")
    small = resize_faces(faces, 64)
    a, b = fp32.embed(small), int8.embed(small)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cos = np.sum(a * b, axis=1)
    assert cos.min() > 0.98 and not np.allclose(a, b, atol=1e-4)  # close, but not the float32 network
    assert int8.fingerprint() != fp32.fingerprint()  # its own calibrations and galleries
    derived = list(cache.glob("models/int8-*/embedding.onnx"))
    got = hashlib.sha256(derived[0].read_bytes()).hexdigest()
    assert len(derived) == 1 and quantize.read(model)["int8_sha256"] == got  # derived once, the bytes fitted
    before = derived[0].stat().st_mtime_ns
    Embedder.load(model, precision="int8")
    assert derived[0].stat().st_mtime_ns == before  # not derived again


def test_refit_refused_without_overwrite(fitted, lfw_root, yunet):
    model, _ = fitted
    before = (model / quantize.FILE).read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=true"):
        quantize_model(model, lfw_root, detector=yunet, faces=16)
    assert (model / quantize.FILE).read_bytes() == before


def test_bad_quantization_files_are_refused_in_one_line(fitted, tmp_path, caplog):
    model, _ = fitted
    other = shutil.copytree(model, tmp_path / "other")
    (other / quantize.FILE).unlink()
    with pytest.raises(FileNotFoundError, match="siamese quantize"):
        Embedder.load(other, precision="int8")
    q = json.loads((model / quantize.FILE).read_text())
    (other / quantize.FILE).write_text(json.dumps({**q, "float32_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="another embedding.onnx"):
        Embedder.load(other, precision="int8")
    for bad in (json.dumps({"ranges": {}}), "{truncated", "[]"):
        (other / quantize.FILE).write_text(bad)
        with pytest.raises(ValueError, match=f"{quantize.FILE}: not a quantization file"):
            Embedder.load(other, precision="int8")
    # Another derivation than the one fitted (another onnxruntime): used, with a warning.
    (other / quantize.FILE).write_text(json.dumps({**q, "int8_sha256": "f" * 64}))
    with caplog.at_level(logging.WARNING, logger="siamese.model.quantize"):
        Embedder.load(other, precision="int8")
    assert "derives another int8 network" in caplog.text
    with pytest.raises(ValueError, match="one of 'float32', 'int8', 'bf16', not 'int4'"):
        Embedder.load(model, precision="int4")


def test_an_int8_ensemble_loads_its_members_in_int8(fitted, tmp_path, lfw_root, yunet, faces):
    model, _ = fitted
    other = shutil.copytree(model, tmp_path / "b")
    ens = build(tmp_path / "ens", [model, other], lfw_root, detector=yunet, precision="int8")
    meta = json.loads((tmp_path / "ens" / "model.json").read_text())
    assert meta["precision"] == "int8" and "**int8**" in (tmp_path / "ens" / "MODEL_CARD.md").read_text()
    loaded = Embedder.load(tmp_path / "ens")
    assert [m.precision for m in loaded.members] == ["int8", "int8"]
    assert loaded.fingerprint() == ens.fingerprint() == json.loads(
        (tmp_path / "ens" / "cluster.json").read_text())["model"]["fingerprint"]
    # The ensemble of a model with its copy, in int8, is that model's int8 network: the same cosines.
    single = Embedder.load(model, precision="int8")
    e, e1 = loaded.embed(faces), single.embed(resize_faces(faces, 64))
    np.testing.assert_allclose(e @ e.T, e1 @ e1.T, atol=1e-5)
    f32 = Embedder.load(model).embed(resize_faces(faces, 64))
    assert not np.allclose(e @ e.T, f32 @ f32.T, atol=1e-4)
    with pytest.raises(ValueError, match="precision applies to one network"):
        Embedder.load(tmp_path / "ens", precision="int8")
    (tmp_path / "ens" / "model.json").write_text(json.dumps({**meta, "precision": "fp16"}))
    with pytest.raises(ValueError, match="model.json: precision is one of 'float32', 'int8', 'bf16', not 'fp16'"):
        Embedder.load(tmp_path / "ens")


def test_one_model_in_int8_is_an_ensemble_of_one(fitted, tmp_path, lfw_root, yunet, faces):
    """`siamese ensemble OUT models=[M] precision=int8`: M's int8 network wherever a model path is
    taken, with thresholds of its own; one model in float32 is refused (it would be M itself)."""
    model, _ = fitted
    one = build(tmp_path / "one", [model], lfw_root, detector=yunet, precision="int8")
    e = one.embed(faces)
    e1 = Embedder.load(model, precision="int8").embed(resize_faces(faces, 64))
    np.testing.assert_allclose(e, e1, atol=1e-6)
    with pytest.raises(ValueError, match="two or more"):
        build(tmp_path / "two", [model], lfw_root, detector=yunet)


def test_the_cli_says_what_is_wrong_in_one_line(fitted, tmp_path):
    import subprocess
    import sys

    model, _ = fitted
    other = shutil.copytree(model, tmp_path / "m")
    (other / quantize.FILE).write_text("{truncated")
    out = subprocess.run([sys.executable, "-m", "siamese.cli", "ensemble", str(tmp_path / "ens"), f"models=[{other}]",
                          "precision=int8"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0 and f"{quantize.FILE}: not a quantization file" in out.stderr
    assert not (tmp_path / "ens" / "model.json").exists()


def test_siamese_quantize_refits_and_prints_how_close_it_stays(fitted, tmp_path, lfw_root):
    import os
    import subprocess
    import sys

    model, _ = fitted
    other = shutil.copytree(model, tmp_path / "m")
    env = {**os.environ, "LFW_ROOT": str(lfw_root), "SIAMESE_CACHE": str(tmp_path / "cache")}
    run = [sys.executable, "-m", "siamese.cli", "quantize", str(other), "faces=16", f"cache_dir={tmp_path / 'none'}"]
    out = subprocess.run(run, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "exists — pass overwrite=true" in out.stderr  # nothing refitted
    out = subprocess.run([*run, "overwrite=true"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"{other}/quantization.json: ranges from 16 faces of 3 training people; on 17 validation faces" in out.stdout
    assert json.loads((other / quantize.FILE).read_text())["int8_sha256"] == quantize.read(model)["int8_sha256"]
