"""The distillation teacher (dlib, the `teacher` extra): its cache of LFW embeddings, the refusal of
a foreign cache, resuming after a kill, its Embedder, the distillation losses and a short run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from siamese.data import cache
from siamese.data.lfw import LFW
from siamese.model import teacher_cache

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small(tmp_path_factory, lfw_root):
    """A face cache of 40 DevTrain people (and the faces of 20 View 1 test pairs) with its teacher
    cache beside it."""
    lfw = LFW(lfw_root)
    people = dict(list(lfw.people("view1_train").items())[:40])
    pairs = lfw.pairs("view1_test")
    pairs = [p for p in pairs if p.same][:10] + [p for p in pairs if not p.same][:10]
    refs = set(lfw.identities(people)) | {r for p in pairs for r in (p.a, p.b)}
    out = tmp_path_factory.mktemp("cache")
    cache.build(lfw, out, {"_target_": "siamese.faces.YuNetDetector"}, size=112, workers=1, refs=list(refs),
                progress=False)
    stats = teacher_cache.build(out, lfw_root, workers=2, progress=False)
    return out, lfw_root, stats


def test_a_missing_teacher_says_how_to_install_it(monkeypatch):
    from siamese.model.dlib_resnet import TeacherMissing, identity

    monkeypatch.setitem(sys.modules, "dlib", None)  # as if not installed
    with pytest.raises(TeacherMissing, match=r"pip install -e '\.\[teacher\]'"):
        identity()


def test_teacher_cache_holds_every_image_and_its_mirror(small):
    out, _, stats = small
    emb, status, config = teacher_cache.load(out)
    n = len(cache.load(out).refs)
    assert emb.shape == (n, 2, 128) and stats["images"] == n and stats["pending"] == 0
    assert (status == teacher_cache.DETECTED).sum() == stats["detected"] > 0.9 * n
    assert config["dlib"] and set(config["sha256"]) == {"shape_predictor", "resnet"}
    # dlib's scale: a face and its mirror are close (L2 < 0.6 means "same person" for dlib)
    assert np.median(np.linalg.norm(emb[:, 0] - emb[:, 1], axis=1)) < 0.4


def test_a_teacher_cache_from_another_teacher_is_refused(small, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(small[0], out)
    cfg_path = teacher_cache.teacher_dir(out) / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["sha256"]["resnet"] = "0" * 64  # as if built with other weights
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="another sha256"):
        teacher_cache.load(out)
    with pytest.raises(ValueError, match="delete"):
        teacher_cache.build(out, small[1], workers=1, progress=False)
    teacher_cache.load(out, check_files=False)  # a GPU box without dlib may still train from it


def test_a_killed_teacher_pass_resumes(small, tmp_path):
    import shutil

    out = tmp_path / "face_cache"
    shutil.copytree(small[0], out, ignore=shutil.ignore_patterns("teacher_dlib"))
    code = ("from siamese.model import teacher_cache; import sys; "
            "teacher_cache.build(sys.argv[1], sys.argv[2], workers=1, chunk=4, progress=False)")
    p = subprocess.Popen([sys.executable, "-c", code, str(out), str(small[1])], cwd=REPO,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status_path = teacher_cache.teacher_dir(out) / "status.npy"
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        if status_path.exists() and (np.load(status_path) > 0).sum() >= 4:
            break
        time.sleep(0.1)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    done = int((np.load(status_path) > 0).sum())
    assert 4 <= done < len(np.load(status_path))  # killed part way
    stats = teacher_cache.build(out, small[1], workers=1, progress=False)
    assert stats["pending"] == 0
    np.testing.assert_allclose(teacher_cache.load(out)[0], teacher_cache.load(small[0])[0], atol=1e-5)


def test_targets_are_centred_unit_vectors(small):
    rows = np.arange(10)
    t, center = teacher_cache.targets(small[0], rows)
    raw = np.asarray(teacher_cache.load(small[0])[0][rows])
    assert t.shape == (10, 2, 128) and np.allclose(np.linalg.norm(t, axis=-1), 1, atol=1e-5)
    np.testing.assert_allclose(center, raw.reshape(-1, 128).mean(0), atol=1e-6)
    # centring takes out the common direction every raw descriptor shares
    raw_cos = (raw[:, 0] / np.linalg.norm(raw[:, 0], axis=1, keepdims=True)) @ \
        (raw[:, 0] / np.linalg.norm(raw[:, 0], axis=1, keepdims=True)).T
    assert np.mean(t[:, 0] @ t[:, 0].T) < np.mean(raw_cos) - 0.3


def test_the_teacher_is_an_embedder_whose_cached_rows_match_the_photos(small, tmp_path):
    from siamese.model import Embedder
    from siamese.model.teacher import TeacherEmbedder, write_teacher_dir

    out, lfw_root, _ = small
    fc = cache.load(out)
    write_teacher_dir(tmp_path / "t", np.zeros(128, np.float32), 0.4, "a test", [], {})
    teacher = Embedder.load(tmp_path / "t")
    assert isinstance(teacher, TeacherEmbedder) and teacher.threshold == 0.4 and teacher.seen_people() == set()
    refs = fc.refs[:6]
    cached, kept = teacher.embed_refs(LFW(lfw_root), refs, fc)
    fresh, kept2 = teacher.embed_refs(LFW(lfw_root), refs, None)  # dlib on the photos, detected again
    assert kept == kept2 == refs and cached.shape == (6, 128)
    assert (np.einsum("ij,ij->i", cached, fresh) > 0.99).all()
    assert teacher.score(cached[:1], cached[:1])[0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="aligns faces its own way"):
        teacher.prepare(fc.images[:2])


def test_distillation_losses():
    import keras

    from siamese.model.losses import TeacherCosine, TeacherRelations

    rng = np.random.default_rng(0)
    t = rng.standard_normal((6, 8)).astype(np.float32)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    t[5] = 0  # an image without a teacher target
    s = rng.standard_normal((6, 8)).astype(np.float32)
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    cos = np.asarray(TeacherCosine().call(keras.ops.convert_to_tensor(t), keras.ops.convert_to_tensor(s)))
    np.testing.assert_allclose(cos[:5], 1 - (t[:5] * s[:5]).sum(1), atol=1e-5)
    assert cos[5] == 0
    pairs_t, pairs_s = t.reshape(3, 2, 8), s.reshape(3, 2, 8)
    rel = TeacherRelations()
    assert float(np.asarray(rel(pairs_t, pairs_t))) == pytest.approx(0.0, abs=1e-7)  # same relations
    assert float(np.asarray(rel(pairs_t, pairs_s))) > 0.01
    moved = pairs_s.copy()
    moved[2, 1] = -moved[2, 1]  # only the image without a target changes: no effect
    assert float(np.asarray(rel(pairs_t, moved))) == pytest.approx(float(np.asarray(rel(pairs_t, pairs_s))))

    # Over-similar pairs (student above teacher) count (1 + over) times; the others as before.
    flat_s, flat_t = s[:5], t[:5]
    diff = flat_s @ flat_s.T - flat_t @ flat_t.T
    for over in (0.0, 3.0):
        full = np.zeros((6, 6))
        full[:5, :5] = (1 + over * (diff > 0)) * diff ** 2
        got = float(np.asarray(TeacherRelations(over)(pairs_t, pairs_s)))
        assert got == pytest.approx(full.mean(), rel=1e-4)
    assert TeacherRelations.from_config(TeacherRelations(2.5).get_config()).over == 2.5
    with pytest.raises(ValueError, match="over must be >= 0"):
        TeacherRelations(-1)


@pytest.mark.slow  # ~40 s of training and a resume: `make test-slow`, and CI
def test_a_short_distillation_run_trains_resumes_and_names_its_data(small, tmp_path):
    from hydra import compose, initialize_config_dir

    from siamese.train.trainer import train

    out, lfw_root, _ = small
    overrides = [f"run_dir={tmp_path / 'run'}", f"cache_dir={out}", f"data.root={lfw_root}", "+experiment=distill",
                 "val_pairs=40", "val_fraction=0.3", "model.input_size=32", "model.dim=128",
                 "model.widths=[8,16,16,32]", "model.blocks=[1,1,1,1]", "train.batch_size=16",
                 "train.pairs_per_epoch=64", "train.epochs=1"]
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    first = train(cfg, cfg.run_dir)
    assert first["epochs_run"] == 1
    card = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert card["lfw_category"] == "unrestricted, labeled outside data"
    assert card["distillation"]["teacher"]["sha256"] == teacher_cache.load(out)[2]["sha256"]
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert {"emb_a_loss", "embs_loss", "same_loss"} <= set(log[0].split(","))
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    state.pop("finished")  # as if killed after its first epoch: the next call resumes it
    (tmp_path / "run" / "state.json").write_text(json.dumps(state))
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides[:-1], "train.epochs=2"])
    assert train(cfg, cfg.run_dir)["epochs_run"] == 2  # the trainer reloaded, losses and all
