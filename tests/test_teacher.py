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
    stats = teacher_cache.build(out, small[1], workers=2, progress=False)
    assert stats["pending"] == 0
    np.testing.assert_allclose(teacher_cache.load(out)[0], teacher_cache.load(small[0])[0], atol=1e-5)


def test_a_cache_array_deleted_by_hand_is_made_again_and_a_wrong_shape_refused(tmp_path):
    specs = {"embeddings": ((4, 2, 128), np.float32)}
    arrays, status = teacher_cache.open_arrays(tmp_path, specs, (4,))
    assert (status == 0).all() and arrays["embeddings"].shape == (4, 2, 128)
    arrays["embeddings"][:] = 1
    arrays["embeddings"].flush()
    np.save(tmp_path / "status.npy", np.ones(4, np.uint8))  # every row made
    assert (teacher_cache.open_arrays(tmp_path, specs, (4,))[1] == 1).all()  # resumes: nothing to redo
    (tmp_path / "embeddings.npy").unlink()
    assert (teacher_cache.open_arrays(tmp_path, specs, (4,))[1] == 0).all()  # zeros now: all made again
    assert (np.load(tmp_path / "status.npy") == 0).all()  # and so says the file, should it be killed now
    with pytest.raises(ValueError, match=r"embeddings.npy: shape \(4, 2, 128\), not \(5, 2, 128\)"):
        teacher_cache.open_arrays(tmp_path, {"embeddings": ((5, 2, 128), np.float32)}, (5,))


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


def test_harder_views_go_through_the_teacher_resume_and_refuse_other_settings(small, tmp_path):
    import shutil

    from siamese.data.degrade import KINDS
    from siamese.model import teacher_views

    out = tmp_path / "face_cache"
    shutil.copytree(small[0], out)
    with pytest.raises(FileNotFoundError, match=r"siamese teach views=1"):
        teacher_views.view_targets(out, np.arange(3), np.zeros(128, np.float32), 32)
    stats = teacher_views.build_views(out, small[1], views=1, workers=2, progress=False)
    n = len(cache.load(out).refs)
    assert stats["done"] + stats["errors"] == n and stats["pending"] == 0 and stats["views"] == 1
    assert sum(stats["kinds"].values()) == stats["done"] and sum(v > 0 for v in stats["kinds"].values()) >= 4
    d = teacher_views.views_dir(out)
    crops, raw = np.load(d / "faces.npy"), np.load(d / "embeddings.npy")
    assert crops.shape == (n, 1, 112, 112, 3) and raw.shape == (n, 1, 128)
    # a harder view is still its face: nearer the teacher's descriptor of its own clean image than
    # of the other images' (dlib's scale: same person < 0.6)
    clean = np.asarray(teacher_cache.load(out)[0])
    mirrored = np.load(d / "mirrored.npy")[:, 0]
    own = np.where(mirrored[:, None], clean[:, 1], clean[:, 0])
    dist = np.linalg.norm(raw[:, 0, None] - own[None], axis=-1)
    assert np.median(np.diag(dist)) < 0.45 < np.median(dist[~np.eye(n, dtype=bool)])
    assert 0.2 < mirrored.mean() < 0.8
    # resumes: views marked pending are made again, the same (seeded by row and view)
    status = np.load(d / "status.npy")
    status[: n // 2] = 0
    np.save(d / "status.npy", status)
    again = teacher_views.build_views(out, small[1], views=1, workers=1, progress=False)
    assert again["done"] == stats["done"]
    np.testing.assert_allclose(np.load(d / "embeddings.npy"), raw, atol=1e-5)
    assert np.array_equal(np.load(d / "faces.npy"), crops)
    (d / "embeddings.npy").unlink()  # deleted by hand, the status still says done: made again, not zeros
    teacher_views.build_views(out, small[1], views=1, workers=1, progress=False)
    np.testing.assert_allclose(np.load(d / "embeddings.npy"), raw, atol=1e-5)
    with pytest.raises(ValueError, match="another views"):
        teacher_views.build_views(out, small[1], views=2, workers=1, progress=False)
    # training targets: unit vectors in the plain targets' frame, crops at the model's size
    rows = np.arange(8)
    _, center = teacher_cache.targets(out, rows)
    ims, t = teacher_views.view_targets(out, rows, center, 32)
    assert ims.shape == (8, 1, 32, 32, 3) and np.allclose(np.linalg.norm(t, axis=-1), 1, atol=1e-5)
    assert set(json.loads((d / "config.json").read_text())["kinds"]) == set(KINDS)


def test_morphs_blend_two_training_people_through_the_teacher_resume_and_refuse_others(small, tmp_path):
    import shutil

    from siamese.model import teacher_morphs

    out = tmp_path / "face_cache"
    shutil.copytree(small[0], out)
    fc = cache.load(out)
    train_people = list(LFW(small[1]).people("view1_train"))[:40]  # the fixture's people
    rows = np.array([i for i, r in enumerate(fc.refs) if r.person in set(train_people[:30])])
    labels = np.array([fc.refs[i].person for i in rows])
    split = {"protocol": "view1", "fold": 0, "seed": 42, "val_fraction": 0.1}
    center = teacher_cache.targets(out, rows)[1]
    with pytest.raises(FileNotFoundError, match=r"siamese teach morphs=2 protocol=view1"):
        teacher_morphs.morph_targets(out, split, rows, rows, center, 32)
    stats = teacher_morphs.build_morphs(out, small[1], rows, labels, split, morphs=2, near=5, workers=2,
                                        progress=False)
    m = len(rows)
    assert stats["done"] == 2 * m and stats["errors"] == 0 and stats["pending"] == 0
    d = teacher_morphs.morphs_dir(out, split)
    assert d.name == "view1_seed42"
    partners, alphas = np.load(d / "partners.npy"), np.load(d / "alphas.npy")
    person = {int(i): fc.refs[i].person for i in range(len(fc.refs))}
    # the second face is always another training person, never one outside `rows`
    assert np.isin(partners, rows).all()
    assert all(person[int(p)] != person[int(r)] for r, ps in zip(rows, partners) for p in ps)
    assert ((alphas >= 0.3) & (alphas <= 0.7)).all() and 0.2 < np.load(d / "mirrored.npy").mean() < 0.8
    # the first partner is among the 5 other people's images the teacher finds most alike
    raw = np.asarray(teacher_cache.load(out)[0][:, 0], np.float32)
    e = raw[rows] - raw[rows].mean(0)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    sims = e @ e.T
    sims[labels[:, None] == labels[None, :]] = -np.inf
    rank = (sims > sims[np.arange(m), np.searchsorted(rows, partners[:, 0])][:, None]).sum(1)
    assert (rank < 5).all()
    # a morph lies between its two faces: nearer one of them than the images of other people are
    emb, mirrored = np.load(d / "embeddings.npy"), np.load(d / "mirrored.npy")
    clean = np.asarray(teacher_cache.load(out)[0])
    near_parent, others = [], []
    for j in range(m):
        for v in range(2):
            view = 1 if mirrored[j, v] else 0
            a, b = clean[rows[j], view], clean[partners[j, v], view]
            near_parent.append(min(np.linalg.norm(emb[j, v] - a), np.linalg.norm(emb[j, v] - b)))
            unrelated = [r for r in rows if r not in (rows[j], partners[j, v])]
            others.append(np.median(np.linalg.norm(clean[unrelated, view] - emb[j, v], axis=1)))
    assert np.median(near_parent) < np.median(others) - 0.1
    # resumes: images marked pending are made again, the same (the plan is seeded)
    status = np.load(d / "status.npy")
    status[: m // 2] = 0
    np.save(d / "status.npy", status)
    again = teacher_morphs.build_morphs(out, small[1], rows, labels, split, morphs=2, near=5, workers=1,
                                        progress=False)
    assert again["done"] == stats["done"]
    np.testing.assert_allclose(np.load(d / "embeddings.npy"), emb, atol=1e-5)
    with pytest.raises(ValueError, match="another morphs"):
        teacher_morphs.build_morphs(out, small[1], rows, labels, split, morphs=3, near=5, workers=1, progress=False)
    with pytest.raises(ValueError, match="another rows_sha256"):
        teacher_morphs.build_morphs(out, small[1], rows[:-1], labels[:-1], split, morphs=2, near=5, workers=1,
                                    progress=False)
    # training: unit targets in the plain targets' frame, the blend of the two crops at the model's size
    ims, t = teacher_morphs.morph_targets(out, split, np.array([rows[0], -1]), rows, center, 32)
    assert ims.shape == (2, 2, 32, 32, 3) and np.allclose(np.linalg.norm(t[0], axis=-1), 1, atol=1e-5)
    assert not t[1].any() and not ims[1].any()  # an image without morphs gets none
    from siamese.faces.align import resize_faces

    a, b = resize_faces(fc.images[[rows[0], partners[0, 0]]], 32)
    want = teacher_morphs.blend(a[None], b[None], alphas[0, :1])[0]
    np.testing.assert_array_equal(ims[0, 0], want[:, ::-1] if mirrored[0, 0] else want)
    with pytest.raises(ValueError, match="must not learn from"):  # a second face outside this run's people
        teacher_morphs.morph_targets(out, split, rows, rows[: m // 2], center, 32)
    with pytest.raises(FileNotFoundError, match="siamese teach morphs=2 protocol=view1 fold=0 seed=7"):
        teacher_morphs.morph_targets(out, {**split, "seed": 7}, rows, rows, center, 32)
    with pytest.raises(ValueError, match="made for the split"):
        teacher_morphs.morph_targets(out, {**split, "val_fraction": 0.2}, rows, rows, center, 32)


def test_batches_swap_in_harder_views_with_their_targets():
    from siamese.data.sampling import FaceSet, add_people
    from siamese.train.batches import PairBatches

    n = 40
    targets = np.zeros((n, 2, 4), np.float32)
    targets[:, :, 0] = 1.0
    views = np.full((n, 1, 8, 8, 3), 255, np.uint8)
    view_targets = np.zeros((n, 1, 4), np.float32)
    view_targets[:, :, 1] = 1.0
    view_targets[:5] = 0.0  # these images have no harder view: they stay as they are
    faces = FaceSet(np.zeros((n, 8, 8, 3), np.uint8), np.repeat(np.arange(10), 4), [f"p{i}" for i in range(10)],
                    targets, np.arange(n), views, view_targets)
    outputs = ("emb_a", "emb_b", "same")
    x, y = PairBatches(faces, 200, 1, 3, None, 0.0, outputs=outputs, views_p=1.0)[0]
    swapped = x["image_a"].reshape(200, -1).max(1) == 1.0
    assert swapped.mean() > 0.8 and not swapped.all()
    assert np.array_equal(y["emb_a"][:, 1] == 1.0, swapped)  # each swapped image has its view's target
    x, y = PairBatches(faces, 200, 1, 3, None, 0.0, outputs=outputs, views_p=0.3)[0]
    share = (x["image_a"].reshape(200, -1).max(1) == 1.0).mean()
    assert 0.15 < share < 0.45
    x, y = PairBatches(faces, 200, 1, 3, None, 0.0, outputs=outputs)[0]  # off by default
    assert x["image_a"].max() == 0.0 and (y["emb_a"][:, 0] == 1.0).all()
    # views of two kinds (harder views, morphs), each drawn at its own rate: one chance per view
    two = FaceSet(faces.images, faces.labels, faces.names, targets, np.arange(n),
                  np.concatenate([views, views // 255 * 128], 1), np.concatenate([view_targets] * 2, 1))
    x, _ = PairBatches(two, 400, 1, 3, None, 0.0, outputs=outputs, views_p=np.array([0.1, 0.5]))[0]
    top = x["image_a"].reshape(400, -1).max(1)
    assert 0.03 < (top == 1.0).mean() < 0.18 and 0.38 < (top > 0.4).mean() - (top == 1.0).mean() < 0.62
    with pytest.raises(ValueError, match="adds up to 1.200"):
        PairBatches(two, 8, 1, 3, None, 0.0, outputs=outputs, views_p=np.array([0.6, 0.6]))
    # a subset keeps each image's views; people added without views get none
    sub = faces.subset(["p1", "p2"])
    assert np.array_equal(sub.view_targets, view_targets[4:12])
    more = add_people(faces, np.zeros((2, 8, 8, 3), np.uint8), ["own", "own"])
    assert more.views.shape == (n + 2, 1, 8, 8, 3) and not more.view_targets[n:].any()


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


def test_a_chip_cuts_another_image_the_same_way(small):
    from siamese.io.images import read_image
    from siamese.model.dlib_resnet import DlibTeacher

    out, lfw_root, _ = small
    fc = cache.load(out)
    image = read_image(LFW(lfw_root).path(fc.refs[0]))
    teacher, box = DlibTeacher(), teacher_cache.face_box(fc, 0)[0]
    chip = teacher.chip(image, box)
    assert np.array_equal(teacher.chip(image, box, like=image.copy()), chip)
    coords = np.zeros_like(image)  # each pixel's own x, y: the chip says where its pixels come from
    coords[..., 0], coords[..., 1] = np.arange(image.shape[1])[None], np.arange(image.shape[0])[:, None]
    where = teacher.chip(image, box, like=coords).astype(int)
    back = image[where[..., 1], where[..., 0]].astype(int)
    assert np.median(np.abs(back - chip.astype(int))) < 12  # the same pixels, up to interpolation


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


def test_the_neighbour_term_is_the_kl_of_each_images_softmax_over_the_others():
    from siamese.model.losses import TeacherNeighbours

    rng = np.random.default_rng(1)
    t = rng.standard_normal((8, 16)).astype(np.float32)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    t[7] = 0  # an image without a teacher target: neither a row nor a neighbour
    s = rng.standard_normal((8, 16)).astype(np.float32)
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    tau = 0.2

    def reference(t, s):  # written out row by row in numpy
        ok = np.flatnonzero((t ** 2).sum(1) > 0.5)
        out = np.zeros(len(t))
        for i in ok:
            others = [j for j in ok if j != i]
            lt, ls = t[others] @ t[i] / tau, s[others] @ s[i] / tau
            lt, ls = lt - np.logaddexp.reduce(lt), ls - np.logaddexp.reduce(ls)
            out[i] = (np.exp(lt) * (lt - ls)).sum()
        return out.mean()

    term = TeacherNeighbours(tau)
    pairs_t, pairs_s = t.reshape(4, 2, 16), s.reshape(4, 2, 16)
    assert float(np.asarray(term(pairs_t, pairs_t))) == pytest.approx(0.0, abs=1e-6)
    got = float(np.asarray(term(pairs_t, pairs_s)))
    assert got > 0.1 and got == pytest.approx(reference(t, s), rel=1e-4)
    moved = pairs_s.copy()
    moved[3, 1] = -moved[3, 1]  # only the image without a target changes: no effect
    assert float(np.asarray(term(pairs_t, moved))) == pytest.approx(got, rel=1e-6)
    # A hub: one student face moved onto another person's costs more than before.
    hub = pairs_s.copy()
    hub[0, 0] = pairs_s[2, 0]
    assert float(np.asarray(term(pairs_t, hub))) > got
    assert TeacherNeighbours.from_config(TeacherNeighbours(0.05).get_config()).tau == 0.05
    with pytest.raises(ValueError, match="tau must be > 0"):
        TeacherNeighbours(0)


@pytest.mark.slow  # ~40 s of training and a resume: `make test-slow`, and CI
def test_a_short_distillation_run_trains_resumes_and_names_its_data(small, tmp_path):
    from hydra import compose, initialize_config_dir

    from siamese.model import teacher_morphs, teacher_views
    from siamese.train.trainer import protocol_data, train

    out, lfw_root, _ = small
    teacher_views.build_views(out, lfw_root, views=1, workers=2, progress=False)  # harder views: in training too
    overrides = [f"run_dir={tmp_path / 'run'}", f"cache_dir={out}", f"data.root={lfw_root}", "+experiment=distill",
                 "distill.views_p=0.3", "distill.morphs_p=0.3", "distill.nbr_weight=1.0", "val_pairs=40",
                 "val_fraction=0.3", "model.input_size=32", "model.dim=128",
                 "model.widths=[8,16,16,32]", "model.blocks=[1,1,1,1]", "train.batch_size=16",
                 "train.pairs_per_epoch=64", "train.epochs=1"]
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with pytest.raises(FileNotFoundError, match="teach morphs=2 protocol=view1 fold=0 seed=42 val_fraction=0.3"):
        train(cfg, cfg.run_dir)
    _, _, _, faces, _, _ = protocol_data(cfg, np.random.default_rng(cfg.seed))  # the run's split: its morphs
    split = {k: cfg[k] for k in ("protocol", "fold", "seed", "val_fraction")}
    teacher_morphs.build_morphs(out, lfw_root, faces.rows, faces.labels, split, morphs=2, workers=2, progress=False)
    first = train(cfg, cfg.run_dir)
    assert first["epochs_run"] == 1
    card = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert card["lfw_category"] == "unrestricted, labeled outside data"
    assert card["distillation"]["teacher"]["sha256"] == teacher_cache.load(out)[2]["sha256"]
    assert card["distillation"]["views_p"] == 0.3 and card["distillation"]["morphs_p"] == 0.3
    assert card["distillation"]["nbr_weight"] == 1.0
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert {"emb_a_loss", "embs_loss", "nbrs_loss", "same_loss"} <= set(log[0].split(","))
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    state.pop("finished")  # as if killed after its first epoch: the next call resumes it
    (tmp_path / "run" / "state.json").write_text(json.dumps(state))
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides[:-1], "train.epochs=2"])
    assert train(cfg, cfg.run_dir)["epochs_run"] == 2  # the trainer reloaded, losses and all
