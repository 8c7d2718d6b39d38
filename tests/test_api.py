"""The top-level verbs, on the sample photos with the shipped model."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import siamese
from siamese.gallery.calibrate import refresh
from siamese.gallery.enrol import import_folder
from siamese.gallery.store import Gallery
from siamese.io.images import ImageError

REPO = Path(__file__).resolve().parents[1]


def test_import_siamese_loads_nothing_heavy():
    code = ("import sys, siamese\n"
            "heavy = [m for m in ('numpy', 'cv2', 'onnxruntime', 'tensorflow') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "assert siamese.DEFAULT_MODEL.name == 'default_model'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr


def test_detect_embed_and_verify(samples):
    two = samples / "photos" / "two_people.jpg"  # Obama left, Biden right
    faces = siamese.detect(two)
    assert len(faces) == 2 and faces[0].score >= faces[1].score
    emb = siamese.embed(two)
    assert emb.shape == (2, 256) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)  # the shipped ensemble
    train = samples / "knn_examples" / "train"
    same = siamese.verify(train / "obama" / "obama.jpg", train / "obama" / "obama2.jpg")
    other = siamese.verify(train / "obama" / "obama.jpg", train / "biden" / "biden.jpg")
    assert same.same and not other.same and same.score > other.score
    assert same.threshold == other.threshold == siamese.api._model().threshold
    with pytest.raises(ValueError, match="no face found"):
        siamese.verify(np.full((200, 200, 3), 90, np.uint8), train / "obama" / "obama.jpg")


def test_identify_reads_a_gallery(samples, tmp_path, yunet, lfw_root):
    db = tmp_path / "g.sqlite"
    model = siamese.api._model()
    with Gallery(db, model.identity()) as g:
        import_folder(g, model, yunet, samples / "knn_examples" / "train")
        refresh(g, model, lfw_root=lfw_root, detector=yunet, people=40)
    before = db.read_bytes()
    assert [n for n, _, _ in siamese.identify(samples / "knn_examples" / "test" / "alex_lacamoire1.jpg",
                                              gallery=db)] == ["alex_lacamoire"]
    got = siamese.identify(samples / "knn_examples" / "test" / "kit_with_rose.jpg", gallery=db)
    assert len(got) == 2 and {n for n, _, _ in got} <= {"kit_harington", "rose_leslie", "unknown"}
    assert got[0][2][0] < got[1][2][0] and db.read_bytes() == before  # left to right; read only


def test_images_as_path_bytes_pil_or_array_give_the_same_faces(samples):
    from PIL import Image

    path = samples / "photos" / "two_people.jpg"
    want = siamese.embed(path)
    pil = Image.open(path)
    for image in (path.read_bytes(), pil, np.asarray(pil.convert("RGB")), str(path)):
        assert np.allclose(siamese.embed(image), want, atol=1e-5)
    with pytest.raises(ImageError, match="the image bytes: not an image"):
        siamese.detect(b"not an image")
    with pytest.raises(ValueError, match="PIL image"):
        siamese.detect(np.zeros((10, 10), np.uint8))
