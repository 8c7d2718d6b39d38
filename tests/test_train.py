"""A short real training run on a tiny LFW subset, and resuming after a kill."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["limit_people=100", "val_pairs=60", "val_fraction=0.3", "model.input_size=32", "model.dim=32",
        "model.widths=[8,16,16,32]", "model.blocks=[1,1,1,1]", "train.batch_size=16",
        "train.pairs_per_epoch=64", "train.hard_start_epoch=1"]


def _cache_dir(tmp_path_factory, lfw_root):
    # A small real cache, aligned by the real detector: 150 training people and the faces of
    # 60 View 1 test pairs (30 same, 30 different).
    from conftest import small_cache

    return small_cache(tmp_path_factory, lfw_root, 150, 30, 64, 1)


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory, lfw_root):
    return _cache_dir(tmp_path_factory, lfw_root), lfw_root


def _train(run_dir, cache, epochs, *extra):
    cache_dir, lfw_root = cache
    cmd = [sys.executable, "-m", "siamese.cli", "train", f"run_dir={run_dir}", f"data.root={lfw_root}",
           f"cache_dir={cache_dir}", f"train.epochs={epochs}", *TINY, *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.mark.slow  # ~30 s of subprocess training: `make test-slow`, and CI
def test_train_then_resume_after_a_kill(tmp_path, tiny_cache):
    # The user's own collected faces (data/faces/<person>/*.jpg) are mixed in as a new person.
    import shutil

    own = tmp_path / "faces" / "me"
    own.mkdir(parents=True)
    for i, f in enumerate(sorted((tiny_cache[1] / "lfw" / "Aaron_Peirsol").glob("*.jpg"))[:3]):
        shutil.copy(f, own / f"me_{i:04d}.jpg")
    run = tmp_path / "run"
    p = _train(run, tiny_cache, 3, f"own_faces={tmp_path / 'faces'}")
    state = run / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None:
        if state.exists() and json.loads(state.read_text())["epoch"] >= 1:
            break
        time.sleep(0.2)
    assert p.poll() is None, p.communicate()[0][-3000:]
    p.send_signal(signal.SIGKILL)  # killed mid-run, after at least one finished epoch
    p.wait()
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < 3

    p = _train(run, tiny_cache, 3, f"own_faces={tmp_path / 'faces'}", "train.workers=2")
    out = p.communicate(timeout=300)[0]
    assert p.returncode == 0, out[-3000:]
    assert f"resuming {run} after epoch {done}" in out
    assert "mixed in 3 own faces of 1 people" in out
    logged = list(csv.DictReader(open(run / "log.csv")))
    epochs = [int(r["epoch"]) for r in logged]
    assert epochs == [0, 1, 2]  # every epoch logged once; none skipped
    assert all(0 < float(r["val_loss"]) < 10 for r in logged)  # the head's BCE on the validation pairs
    metrics = json.loads((run / "metrics.json").read_text())
    # The tiny cache holds only some of the View 1 test faces: those pairs are scored.
    assert metrics["epochs_run"] == 3 and metrics["test"]["pairs"] == 60
    for f in ("model/embedding.keras", "model/head.keras", "model/model.json", "curves.png",
              "config.yaml", "best.keras"):
        assert (run / f).exists(), f
    assert list((run / "tensorboard").rglob("events.*"))
    card = json.loads((run / "model" / "model.json").read_text())
    # The test pairs are scored at the threshold chosen on validation, the one the model ships.
    assert card["input_size"] == 32 and metrics["test"]["threshold"] == pytest.approx(card["threshold"])
    # Clustering settings fitted on the validation people, who are listed and were not trained on.
    from siamese.clustering.group import clustering_settings
    from siamese.model.embedder import Embedder

    people = json.loads((run / "model" / "people.json").read_text())
    assert len(people["validation"]) == 14 and set(people["validation"]) <= set(people["seen"])
    cal = clustering_settings(Embedder.load(run / "model"))
    assert cal["faces"] >= 28 and cal["people"] == 14 and cal["floor"] <= cal["threshold"]

    # Re-finishing (what runs trained on a GPU machine get here) recomputes the same numbers
    # from the parts on the same cache, and keeps what the training machine measured.
    from siamese.train.refinish import refinish

    (run / "model" / "cluster.json").unlink()
    weights = (run / "model" / "embedding.keras").read_bytes()
    again = refinish(run, tiny_cache[0], tiny_cache[1])
    assert again["test"] == metrics["test"] and again["test_on_training_machine"] == metrics["test"]
    assert (run / "model" / "cluster.json").exists()
    # Float32 parts are left as they are: their bytes are the model's fingerprint.
    assert (run / "model" / "embedding.keras").read_bytes() == weights

    # The same run dir with other model settings is refused, not silently resumed.
    p = _train(run, tiny_cache, 3, "model.dim=16")
    out = p.communicate(timeout=120)[0]
    assert p.returncode == 2 and "other model settings" in out


def test_a_kill_between_an_epochs_log_row_and_its_state_logs_it_once(tmp_path):
    # The row is written before state.json; a run killed between the two resumes at that epoch,
    # and the trainer drops the row of the epoch it is about to run again.
    from siamese.train.loop import log_row, trim_log

    log = tmp_path / "log.csv"
    trim_log(log, 0)
    assert not log.exists()
    for epoch in (0, 1):
        log_row(log, epoch, {"val_acc": 0.5 + epoch / 10, "loss": 3.0 - epoch})
    trim_log(log, 2)  # both epochs complete: nothing changes
    assert [r["epoch"] for r in csv.DictReader(open(log))] == ["0", "1"]
    trim_log(log, 1)  # state.json says one epoch is complete
    log_row(log, 1, {"loss": 1.5, "val_acc": 0.7, "new_metric": 9})
    rows = list(csv.DictReader(open(log)))
    assert open(log).readline().strip() == "epoch,loss,val_acc"
    assert [(r["epoch"], float(r["loss"]), float(r["val_acc"])) for r in rows] == [("0", 3.0, 0.5), ("1", 1.5, 0.7)]


@pytest.mark.slow  # ~20 s of subprocess training: `make test-slow`, and CI
def test_unrestricted_protocol_trains_without_the_test_folds_people(tmp_path, lfw_root):
    # A cache holding 150 people of the other folds and 60 of fold 2's pairs, then one smoke fold.
    from siamese.data import cache
    from siamese.data.lfw import LFW

    lfw = LFW(lfw_root)
    folds = lfw.view2()
    others = dict(list(folds[0].people.items())[:150])
    pairs = [p for p in folds[2].pairs if p.same][:30] + [p for p in folds[2].pairs if not p.same][:30]
    refs = set(lfw.identities(others)) | {r for p in pairs for r in (p.a, p.b)}
    cache.build(lfw, tmp_path / "cache", {"_target_": "siamese.faces.YuNetDetector"}, size=64,
                workers=1, refs=list(refs), progress=False)
    run = tmp_path / "unrestricted"
    cmd = [sys.executable, "-m", "siamese.cli", "unrestricted", "+experiment=smoke", "folds=[2]",
           f"run_dir={run}", f"data.root={lfw_root}", f"cache_dir={tmp_path / 'cache'}",
           "model.input_size=32"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    result = json.loads((run / "unrestricted.json").read_text())
    # Every fold-2 pair whose two faces are cached is scored (the 60 chosen, maybe a few more).
    assert [f["fold"] for f in result["folds"]] == [2] and result["folds"][0]["pairs"] >= 60
    seen = set(json.loads((run / "fold2" / "model" / "people.json").read_text())["seen"])
    assert seen and not seen & set(folds[2].people)  # fold 2's people were never trained on


def _cache_pack(*args) -> subprocess.CompletedProcess:
    """tools/cache_pack.py with `args`, as a user runs it."""
    return subprocess.run([sys.executable, "tools/cache_pack.py", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


def _pack_and_unpack(cache_dir, pack, out, lfw_root, *flags):
    """tools/cache_pack.py pack (with `flags`) then unpack, as on a GPU box."""
    for args in (["pack", cache_dir, pack, "--lfw", lfw_root, *flags], ["unpack", pack, out]):
        r = _cache_pack(*args)
        assert r.returncode == 0, r.stderr[-2000:]


def test_cache_pack_round_trip(tmp_path, tiny_cache):
    # tools/cache_pack.py carries a cache to a GPU machine as WebP: the unpacked cache has the
    # protocol's faces, in order, close to the originals (lossy, a few grey levels).
    import numpy as np

    from siamese.data import cache

    cache_dir, lfw_root = tiny_cache
    pack, out = tmp_path / "view1.npz", tmp_path / "unpacked"
    _pack_and_unpack(cache_dir, pack, out, lfw_root)
    a, b = cache.load(cache_dir), cache.load(out)
    assert b.refs == a.refs  # the tiny cache holds only View 1 training people and test pairs
    assert b.images.shape == a.images.shape
    assert np.abs(b.images.astype(float) - a.images).mean() < 4.0
    assert (b.meta == a.meta).all() and b.config == a.config


def test_cache_pack_carries_the_teachers_descriptors(tmp_path, tiny_cache):
    # --teacher: the rows' teacher descriptors travel too, and the unpacked cache's teacher cache
    # is accepted as its own (same rows, renumbered with the faces).
    import shutil

    import numpy as np

    from siamese.model import teacher_cache
    from siamese.model.dlib_resnet import identity

    src, lfw_root = tiny_cache
    cache_dir = tmp_path / "cache"
    shutil.copytree(src, cache_dir)
    n = len((cache_dir / "index.csv").read_text().splitlines()) - 1
    tdir = teacher_cache.teacher_dir(cache_dir)
    tdir.mkdir()
    emb = np.random.default_rng(0).normal(size=(n, 2, 128)).astype(np.float32) * 0.1
    np.save(tdir / "embeddings.npy", emb)
    np.save(tdir / "status.npy", np.ones(n, np.uint8))
    (tdir / "config.json").write_text(json.dumps({**identity(), **teacher_cache.cache_identity(cache_dir)}))
    (tdir / "build.json").write_text("{}")
    pack, out = tmp_path / "view1.npz", tmp_path / "unpacked"
    _pack_and_unpack(cache_dir, pack, out, lfw_root, "--teacher")
    got, status, _ = teacher_cache.load(out)  # checked against this machine's teacher and the new index
    rows = np.load(pack)["rows"]
    np.testing.assert_allclose(got, emb[rows], atol=1e-3)  # float16 on the way
    assert (status == 1).all()


def _cache_with_morphs(tmp_path, tiny_cache, count: int, outside: bool = False):
    """A copy of the tiny cache with a finished cache of `count` morphs of its odd rows for the View 1
    split (made-up weights and descriptors: what `siamese teach morphs=2` leaves, without dlib); with
    `outside`, each morph's second partner is a row the cache does not have.

    Returns:
        (cache dir, LFW root, rows in the cache, the split, (count,) morphed rows, the morphs' folder).
    """
    import shutil

    import numpy as np

    from siamese.model import teacher_cache, teacher_morphs
    from siamese.model.dlib_resnet import identity

    src, lfw_root = tiny_cache
    cache_dir = tmp_path / "cache"
    shutil.copytree(src, cache_dir)
    n = len((cache_dir / "index.csv").read_text().splitlines()) - 1
    split = {"protocol": "view1", "fold": 0, "seed": 42, "val_fraction": 0.1}
    made = np.arange(1, n, 2)[:count]
    second = np.full(len(made), n + 5) if outside else np.roll(made, 3)
    mdir = teacher_morphs.morphs_dir(cache_dir, split)
    mdir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(mdir / "rows.npy", made)
    np.save(mdir / "partners.npy", np.stack([made[::-1], second], 1))
    np.save(mdir / "alphas.npy", rng.uniform(0.3, 0.7, (len(made), 2)).astype(np.float32))
    np.save(mdir / "mirrored.npy", rng.random((len(made), 2)) < 0.5)
    np.save(mdir / "embeddings.npy", (rng.normal(size=(len(made), 2, 128)) * 0.1).astype(np.float32))
    np.save(mdir / "status.npy", np.ones(len(made), np.uint8))
    (mdir / "config.json").write_text(json.dumps({**identity(), **teacher_cache.cache_identity(cache_dir),
                                                  "split": split}))
    (mdir / "build.json").write_text("{}")
    return cache_dir, lfw_root, n, split, made, mdir


def test_cache_pack_carries_the_morphs(tmp_path, tiny_cache):
    # --morphs: a split's morphs travel with the faces (their rows renumbered like the faces), and
    # training there reads the same morphs (blends of the unpacked faces) and targets as here.
    import numpy as np

    from siamese.model import teacher_morphs

    cache_dir, lfw_root, n, split, made, _ = _cache_with_morphs(tmp_path, tiny_cache, 12)
    pack, out = tmp_path / "view1.npz", tmp_path / "unpacked"
    _pack_and_unpack(cache_dir, pack, out, lfw_root, "--morphs")
    rows = np.load(pack)["rows"]
    there = np.searchsorted(rows, made)  # the same images' rows in the unpacked cache
    assert (rows[there] == made).all()
    center = np.zeros(128, np.float32)
    crops, t = teacher_morphs.morph_targets(cache_dir, split, made, np.arange(n), center, 32)
    crops2, t2 = teacher_morphs.morph_targets(out, split, there, np.arange(len(rows)), center, 32)
    np.testing.assert_allclose(t2, t, atol=2e-3)  # float16 on the way
    assert np.abs(crops2.astype(float) - crops).mean() < 4.0  # the blends of the (lossy) faces
    other = {**split, "seed": 7}
    with pytest.raises(FileNotFoundError, match="siamese teach morphs=2"):
        teacher_morphs.morph_targets(out, other, there, np.arange(len(rows)), center, 32)


def test_cache_pack_refuses_in_one_line_and_keeps_what_is_there(tmp_path, tiny_cache):
    # Morphs that show a face the pack does not carry are refused (training there would blend the
    # wrong faces), and no pack is left; unpacking over a folder with files in it is refused and
    # leaves them as they were. Each: one line, no traceback.
    cache_dir, lfw_root, _, _, _, mdir = _cache_with_morphs(tmp_path, tiny_cache, 4, outside=True)
    src = tiny_cache[0]
    pack = tmp_path / "view1.npz"
    r = _cache_pack("pack", cache_dir, pack, "--lfw", lfw_root, "--morphs")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"cache_pack: {mdir}: some morphs show faces outside the pack's rows"
    assert not pack.exists() and not list(tmp_path.glob(".view1.npz*"))

    r = _cache_pack("pack", src, pack, "--lfw", lfw_root)
    assert r.returncode == 0, r.stderr[-2000:]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    r = _cache_pack("unpack", pack, mine)
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert str(mine) in r.stderr and "not an empty folder" in r.stderr
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me"
    r = _cache_pack("unpack", tmp_path / "missing.npz", tmp_path / "new")
    assert r.returncode != 0 and "Traceback" not in r.stderr and "missing.npz" in r.stderr
    assert not (tmp_path / "new").exists()


def test_the_unrestricted_report_keeps_earlier_folds_and_names_the_missing(tmp_path):
    from siamese.train.unrestricted import read_report, summarize

    report = tmp_path / "unrestricted.json"
    assert read_report(report) == []
    first = summarize([{"fold": 3, "accuracy": 0.9}, {"fold": 0, "accuracy": 0.8}])
    assert [f["fold"] for f in first["folds"]] == [0, 3] and first["folds_missing"] == [1, 2, 4, 5, 6, 7, 8, 9]
    assert first["accuracy_mean"] == 0.85 and first["accuracy_std"] == 0.05
    report.write_text(json.dumps(first))
    done = {f["fold"]: f for f in read_report(report)}
    done[3] = {"fold": 3, "accuracy": 0.7}  # a fold trained again replaces its row
    assert summarize(list(done.values()))["accuracy_mean"] == 0.75
    report.write_text('{"protocol": "something else"}')
    with pytest.raises(ValueError, match="unrestricted.json: not a readable"):
        read_report(report)
