"""Unlabelled faces from a user's own photos through the teacher (`siamese teach extra=DIR`), the guard
that drops any a run must not learn (its validation and test people), batches that swap them in, and a
short distillation run that learns from them and says so on its model card."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from siamese.data import cache
from siamese.data.lfw import LFW
from siamese.model import teacher_cache, teacher_extra
from siamese.model.preprocess import normalise

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photos(small, tmp_path_factory):
    """A folder of 'own photos': three of two training people, one of a View 1 test person (in a
    subfolder), a truncated JPEG and a text file named like a photo; and which is which."""
    out_cache, lfw_root, _ = small
    lfw, fc = LFW(lfw_root), cache.load(out_cache)
    train = list(lfw.people("view1_train"))[:40]
    cached = set(fc.refs)
    test_person = next(p.a for p in lfw.pairs("view1_test") if p.same).person
    # a photo of the test person that is not among their cached images: the guard must know them anyway
    unseen = next(r for r in lfw.identities({test_person: lfw.people("view1_test")[test_person]}) if r not in cached)
    refs = [r for r in fc.refs if r.person in train][:3] + [unseen]
    root = tmp_path_factory.mktemp("own_photos")
    (root / "trip").mkdir()
    for k, r in enumerate(refs):
        shutil.copy(lfw.path(r), root / ("trip" if k == 3 else ".") / f"{k}_{r.rel_path.replace('/', '_')}")
    (root / "cut.jpg").write_bytes(Path(lfw.path(refs[0])).read_bytes()[:300])
    (root / "notes.jpg").write_text("not a photo")
    return root, refs, test_person


def test_every_face_of_the_photos_goes_through_the_teacher_and_a_rerun_resumes(small, photos, tmp_path):
    face_cache, lfw_root, _ = small
    root, refs, _ = photos
    stats = teacher_extra.build_extra(face_cache, root, workers=2, chunk=2, progress=False)
    out = teacher_extra.extra_dir(face_cache, root)
    assert stats["sources"] == 6 and stats["videos"] == 0 and stats["errors"] == 2 and stats["done"] == 4
    assert stats["faces"] >= 4
    failures = (out / "failures.csv").read_text()
    assert "cut.jpg" in failures and "notes.jpg" in failures
    faces, config = teacher_extra.load_extra(face_cache, root)
    n = stats["faces"]
    assert faces["crops"].shape == (n, 112, 112, 3) and faces["embeddings"].shape == (n, 2, 128)
    assert config["size"] == 112 and config["photos"] == str(root.resolve())
    # the teacher's descriptor of each LFW photo's central face is the one `siamese teach` cached for it
    sources = (out / "sources.csv").read_text().splitlines()[1:]
    fc = cache.load(face_cache)
    raw, _, _ = teacher_cache.load(face_cache)
    for k, ref in enumerate(refs[:3]):
        photo = next(int(line.split(",")[0]) for line in sources if f"{k}_{ref.rel_path.replace('/', '_')}" in line)
        mine = faces["embeddings"][faces["photo"] == photo]
        cached = np.asarray(raw[fc.rows([ref])[0]])
        assert np.abs(mine - cached).max(axis=(1, 2)).min() < 1e-3, ref  # one of its faces is that face
    # a rerun does nothing; a kill between a part and the status it marks done is made good once
    again = teacher_extra.build_extra(face_cache, root, workers=2, chunk=2, progress=False)
    assert again["faces"] == stats["faces"]
    status = np.load(out / "status.npy")
    status[faces["photo"][0]] = 0  # its part stays: the rerun writes its faces again, and each is read once
    np.save(out / "status.npy", status)
    with pytest.raises(FileNotFoundError, match="incomplete — run `siamese teach extra="):
        teacher_extra.load_extra(face_cache, root)
    assert teacher_extra.build_extra(face_cache, root, workers=1, chunk=2, progress=False)["faces"] == stats["faces"]
    assert len(list((out / "parts").glob("*.npz"))) > 1
    np.testing.assert_array_equal(np.sort(teacher_extra.load_extra(face_cache, root)[0]["photo"]),
                                  np.sort(faces["photo"]))
    # another listing of the folder (a photo added) is refused, naming what differs
    shutil.copy(LFW(lfw_root).path(refs[0]), root / "added.jpg")
    try:
        with pytest.raises(ValueError, match="sources_sha256"):
            teacher_extra.build_extra(face_cache, root, workers=1, progress=False)
    finally:
        (root / "added.jpg").unlink()


def test_the_guard_drops_faces_of_people_the_run_must_not_learn(small, photos):
    face_cache, lfw_root, _ = small
    root, refs, test_person = photos
    teacher_extra.build_extra(face_cache, root, workers=2, progress=False)
    lfw, fc = LFW(lfw_root), cache.load(face_cache)
    raw = np.asarray(teacher_cache.load(face_cache)[0], np.float32).mean(1)
    train_people = list(lfw.people("view1_train"))[:40]
    train = np.array([i for i, r in enumerate(fc.refs) if r.person in train_people])
    held = np.array([i for i, r in enumerate(fc.refs) if r.person not in train_people])
    labels = np.array([fc.refs[i].person for i in train])
    held_labels = np.array([fc.refs[i].person for i in held])
    center = raw[train].mean(0)
    crops, targets, record = teacher_extra.extra_targets(face_cache, root, center, raw[train], labels, raw[held],
                                                         held_labels, 32, guard=0.9)
    assert crops.shape[1:] == (32, 32, 3) and targets.shape == (record["kept"], 2, 128)
    np.testing.assert_allclose(np.linalg.norm(targets, axis=-1), 1.0, rtol=1e-5)
    assert record["kept"] + record["dropped"] == record["faces"] and record["guard"] == 0.9
    # the test person's photo, one not among their cached images, is dropped: the teacher knows them from those
    faces, _ = teacher_extra.load_extra(face_cache, root)
    sources = (teacher_extra.extra_dir(face_cache, root) / "sources.csv").read_text().splitlines()[1:]
    theirs = next(int(line.split(",")[0]) for line in sources if line.split(",")[1].startswith("trip/"))
    unit = faces["embeddings"].mean(1) - center
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    g = teacher_extra.Guard(*(normalise(raw[r] - center) for r in (train,)), labels,
                            normalise(raw[held] - center), held_labels, 0.9)
    dropped = g.drops(unit)
    assert dropped[faces["photo"] == theirs].all() and record["dropped"] == dropped.sum()
    assert record["bar"] == round(g.bar, 4) and 0.0 <= record["training_faces_dropped"] <= 1.0
    # a stricter guard never keeps more; no guard keeps every face and says it did not check
    assert teacher_extra.extra_targets(face_cache, root, center, raw[train], labels, raw[held], held_labels, 32,
                                       guard=0.99)[2]["kept"] <= record["kept"]
    _, _, none = teacher_extra.extra_targets(face_cache, root, center, raw[train], labels, raw[held], held_labels,
                                             32, guard=0)
    assert none["dropped"] == 0 and none["kept"] == record["faces"] and none["bar"] is None


def test_the_guards_bar_catches_the_share_of_held_out_photos_asked():
    """Synthetic people: the bar is the quantile of the held-out photos' own scores, so `catch` of them reach it."""
    rng = np.random.default_rng(0)
    centres = normalise(rng.normal(size=(80, 32)))
    people = np.repeat(np.arange(60), 5)
    x = normalise(centres[people] + 0.1 * rng.normal(size=(300, 32)))
    train, held = people < 40, people >= 40
    for catch in (0.8, 0.95):
        g = teacher_extra.Guard(x[train], people[train], x[held], people[held], catch, k=5)
        hl = people[held]
        own = []  # each held-out photo against its person without it, minus its typical training cosine
        for i in np.flatnonzero(held):
            rest = normalise(x[held][(hl == people[i])].sum(0, keepdims=True) - x[i])[0]
            others = [normalise(x[held][hl == q].mean(0, keepdims=True))[0] @ x[i] for q in set(hl) - {people[i]}]
            typical = np.sort(g.train_templates @ x[i])[-5:].mean()
            own.append(max(rest @ x[i], max(others)) - typical)
        assert abs(np.mean(np.array(own) >= g.bar) - catch) < 0.02
        assert g.drops(x[held]).mean() >= catch - 0.02  # against the full templates: at least as often
    strangers = normalise(centres[np.repeat(np.arange(60, 80), 5)] + 0.1 * rng.normal(size=(100, 32)))
    assert g.drops(strangers).mean() < 0.05  # other people's photos: kept


def test_batches_swap_in_extra_faces_with_the_target_of_the_side_they_show():
    from siamese.data.sampling import FaceSet
    from siamese.train.batches import PairBatches

    n, m = 40, 7
    targets = np.zeros((n, 2, 4), np.float32)
    targets[:, :, 0] = 1.0
    faces = FaceSet(np.zeros((n, 8, 8, 3), np.uint8), np.repeat(np.arange(10), 4), [f"p{i}" for i in range(10)],
                    targets, np.arange(n))
    faces.extra = np.zeros((m, 8, 8, 3), np.uint8)
    faces.extra[:, :, :4] = 255  # bright on the left: a mirrored one is bright on the right
    faces.extra_targets = np.zeros((m, 2, 4), np.float32)
    faces.extra_targets[:, 0, 2] = faces.extra_targets[:, 1, 3] = 1.0  # its own target, its mirror's
    outputs = ("emb_a", "emb_b", "same")
    x, y = PairBatches(faces, 300, 1, 3, None, 0.0, outputs=outputs, extra_p=1.0)[0]
    left, right = x["image_a"][:, :, :4].max((1, 2, 3)) == 1.0, x["image_a"][:, :, 4:].max((1, 2, 3)) == 1.0
    assert (left ^ right).all() and 0.35 < left.mean() < 0.65
    assert np.array_equal(y["emb_a"][:, 2] == 1.0, left) and np.array_equal(y["emb_a"][:, 3] == 1.0, right)
    x, _ = PairBatches(faces, 300, 1, 3, None, 0.0, outputs=outputs, extra_p=0.3)[0]
    assert 0.18 < (x["image_b"].reshape(300, -1).max(1) == 1.0).mean() < 0.42
    x0, y0 = PairBatches(faces, 300, 1, 3, None, 0.0, outputs=outputs)[0]  # off by default: nothing drawn
    faces.extra = faces.extra_targets = None
    x1, _ = PairBatches(faces, 300, 1, 3, None, 0.0, outputs=outputs, extra_p=0.5)[0]  # none to draw: as before
    assert x0["image_a"].max() == 0.0 and np.array_equal(x0["image_a"], x1["image_a"])
    with pytest.raises(ValueError, match="probability"):
        faces.extra, faces.extra_targets = np.zeros((m, 8, 8, 3), np.uint8), np.zeros((m, 2, 4), np.float32)
        PairBatches(faces, 8, 1, 3, None, 0.0, outputs=outputs, extra_p=1.5)


def test_a_short_run_learns_from_extra_faces_and_its_card_says_so(small, photos, tmp_path):
    from hydra import compose, initialize_config_dir

    from siamese.io.names import BadSetting
    from siamese.train.trainer import _provenance, train

    face_cache, lfw_root, _ = small
    root, _, _ = photos
    teacher_extra.build_extra(face_cache, root, workers=2, progress=False)
    overrides = [f"run_dir={tmp_path / 'run'}", f"cache_dir={face_cache}", f"data.root={lfw_root}",
                 "+experiment=distill", f"distill.extra={root}", "distill.extra_p=0.5", "val_pairs=40",
                 "val_fraction=0.3", "model.input_size=32", "model.dim=128", "model.widths=[8,16,16,32]",
                 "model.blocks=[1,1,1,1]",
                 "train.batch_size=16", "train.pairs_per_epoch=64", "train.epochs=1"]
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with pytest.raises(BadSetting, match="train.pair_weight=0"):  # the recipe's pair BCE needs identities
        train(cfg, cfg.run_dir)
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "train.pair_weight=0"])
    assert train(cfg, cfg.run_dir)["epochs_run"] == 1
    card = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    extra = card["extra_faces"]
    assert extra["photos"] == str(root.resolve()) and extra["extra_p"] == 0.5 and extra["kept"] >= 1
    assert extra["dropped"] >= 1  # the test person's photo (the run's split also holds out validation people)
    assert f"{extra['kept']} unlabelled faces from photos outside LFW" in card["training_data"]
    assert "a guard catching 98% of their photos" in card["training_data"]
    unchecked = _provenance(cfg, {**extra, "guard": 0.0, "dropped": 0})["training_data"]  # extra_guard=0
    assert unchecked.endswith("not checked for LFW's validation and test people: its LFW figures are not test numbers)")
    # the same run dir finished again without extra faces: its card no longer claims them
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[o for o in overrides if not o.startswith("distill.extra")]
                      + ["train.pair_weight=0"])
    train(cfg, cfg.run_dir)
    card = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert "extra_faces" not in card and "unlabelled" not in card["training_data"]


def test_teach_extra_from_the_command_line(small, tmp_path, capsys):
    from siamese.cli import run

    face_cache, lfw_root, _ = small
    assert run("teach", [f"extra={tmp_path / 'nowhere'}", f"cache_dir={face_cache}", f"data.root={lfw_root}",
                         "progress=false"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "nowhere" in err[-1] and err[-1].startswith("error:") and "Traceback" not in "\n".join(err)
    (tmp_path / "empty").mkdir()
    assert run("teach", [f"extra={tmp_path / 'empty'}", f"cache_dir={face_cache}", f"data.root={lfw_root}"]) == 1
    assert "no photos or videos found" in capsys.readouterr().err
    shutil.copy(LFW(lfw_root).path(LFW(lfw_root).pairs("view1_train")[0].a), tmp_path / "one.jpg")
    (tmp_path / "own").mkdir()
    shutil.move(tmp_path / "one.jpg", tmp_path / "own" / "one.jpg")
    assert run("teach", [f"extra={tmp_path / 'own'}", f"cache_dir={face_cache}", f"data.root={lfw_root}",
                         "progress=false", "workers=1"]) == 0
    out = capsys.readouterr().out
    assert "1 faces in 1 of 1 photos and videos (0 videos" in out and "distill.extra=" in out


def test_a_videos_faces_come_from_one_frame_per_every_s_seconds(small, samples, tmp_path):
    face_cache, _, _ = small
    (tmp_path / "clips").mkdir()
    shutil.copy(samples / "video" / "short_hamilton_clip.mp4", tmp_path / "clips" / "hamilton.mp4")
    stats = teacher_extra.build_extra(face_cache, tmp_path / "clips", workers=1, every_s=3.0, progress=False)
    assert stats["sources"] == stats["videos"] == stats["done"] == 1 and stats["faces"] >= 2
    faces, config = teacher_extra.load_extra(face_cache, tmp_path / "clips")
    assert config["every_s"] == 3.0 and (faces["frame"] >= 0).all() and len(np.unique(faces["frame"])) >= 2
    assert len(np.unique(faces["face"])) == len(faces["face"])  # numbered across the video's frames
    listing = (teacher_extra.extra_dir(face_cache, tmp_path / "clips") / "sources.csv").read_text()
    assert "hamilton.mp4,video," in listing
