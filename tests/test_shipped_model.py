"""The model that ships in siamese/assets/default_model: intact, consistent, honest."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from siamese.model.embedder import Embedder

SHIPPED = Path(__file__).resolve().parents[1] / "siamese" / "assets" / "default_model"


def test_files_match_their_recorded_checksums():
    meta = json.loads((SHIPPED / "model.json").read_text())
    assert meta["formats"] == ["onnx"]
    for name, digest in meta["files"].items():
        if name in meta["not_shipped"] and not (SHIPPED / name).exists():
            continue  # the Keras weights, out of the tree (`make shipped-keras`); their hash still names the network
        assert hashlib.sha256((SHIPPED / name).read_bytes()).hexdigest() == digest, name
    # One copy of a 6 M-parameter network (ONNX, packed): 19.7 MiB in all. The bound (issue 13's
    # 20 MB, as `du -h` counts) catches a second format coming back (.keras, SavedModel, TFLite),
    # the unpacked ONNX added to the tree, or a bigger network, which the tree cannot carry.
    size = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file() and p.name not in meta["not_shipped"])
    assert size <= 20 * 2**20


def test_the_packed_network_unpacks_to_the_recorded_onnx(tmp_path, monkeypatch):
    """The tree holds embedding.onnx packed; a new user's first load unpacks it into their cache,
    byte for byte the ONNX model.json names, and loads it from there."""
    from siamese.model.packed import weights_path

    monkeypatch.setenv("SIAMESE_CACHE", str(tmp_path / "cache"))
    meta = json.loads((SHIPPED / "model.json").read_text())
    got = weights_path(SHIPPED, "embedding.onnx")
    assert got.parent.parent == tmp_path / "cache" / "models"
    assert hashlib.sha256(got.read_bytes()).hexdigest() == meta["files"]["embedding.onnx"]
    model = Embedder.load(SHIPPED)
    assert model.format == "onnx" and model.dim == 128


def test_it_knows_who_it_saw_and_they_are_view1_training_people(lfw_root):
    from siamese.data.lfw import LFW

    people = json.loads((SHIPPED / "people.json").read_text())
    seen = set(people["seen"])
    lfw = LFW(lfw_root)
    assert seen == set(lfw.people("view1_train"))
    assert len(people["validation"]) == 118 and set(people["validation"]) <= seen  # held out
    assert not seen & {p.a.person for p in lfw.pairs("view1_test")}


@pytest.fixture(scope="module")
def real_faces(lfw_root):
    from siamese.faces.detect import YuNetDetector, central_face
    from siamese.io.images import read_image

    model = Embedder.load(SHIPPED)
    det = YuNetDetector()
    crops = []
    for person, n in (("Aaron_Peirsol", 1), ("Aaron_Peirsol", 2), ("Abdullah_Gul", 1), ("Adam_Sandler", 1)):
        image = read_image(lfw_root / "lfw" / person / f"{person}_{n:04d}.jpg")
        crops.append(model.crops(image, [central_face(det.detect(image), image.shape)])[0])
    return np.stack(crops)


def test_the_fingerprint_still_names_the_keras_weights():
    """Galleries and the stranger bank were made under this name: dropping the .keras file from the
    tree must not change it (it comes from the hashes model.json records)."""
    model = Embedder.load(SHIPPED)
    meta = json.loads((SHIPPED / "model.json").read_text())
    want = hashlib.sha256(f"keras:{meta['files']['embedding.keras']}:{meta['files']['head.keras']}".encode())
    assert model.format == "onnx" and model.fingerprint() == want.hexdigest()
    assert model.impostor_bank() is not None  # the bank beside it is keyed to that fingerprint


def test_same_person_outscores_different_people(real_faces):
    model = Embedder.load(SHIPPED)
    e = model.embed(real_faces)
    same = model.score(e[:1], e[1:2])[0]          # Aaron Peirsol twice
    diff = model.score(e[[0, 0, 2]], e[[2, 3, 3]])  # three different pairs
    assert same > diff.max()
