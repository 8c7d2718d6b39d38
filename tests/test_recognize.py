"""Recognition against a gallery: names, an honest "unknown", methods, calibration, open set."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from siamese.eval.openset import evaluate_open_set
from siamese.gallery.calibrate import refresh
from siamese.gallery.enrol import import_folder
from siamese.gallery.index import Index
from siamese.gallery.recognize import Recognizer, calibrate, load_recognizer, recognize, threshold_at_far
from siamese.gallery.store import Gallery
from siamese.gallery.svc import Svc

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def embedder():
    from siamese.model.embedder import Embedder

    return Embedder.load(REPO / "siamese" / "assets" / "default_model")


@pytest.fixture(scope="module")
def known_db(tmp_path_factory, samples, yunet, embedder, lfw_root):
    """knn_examples/train enrolled and calibrated on 80 unseen LFW people (photos, not the cache)."""
    db = tmp_path_factory.mktemp("recognize") / "known.sqlite"
    with Gallery(db, embedder.identity()) as g:
        import_folder(g, embedder, yunet, samples / "knn_examples" / "train")
        refresh(g, embedder, 0.01, lfw_root=lfw_root, detector=yunet, people=80)  # what `gallery import` does
    return db


@pytest.fixture
def gallery(known_db, tmp_path, embedder):
    shutil.copy(known_db, tmp_path / "g.sqlite")
    with Gallery(tmp_path / "g.sqlite", embedder.identity()) as g:
        yield g


def _by_file(matches):
    out = {}
    for m in matches:
        out.setdefault(Path(m.source).name, []).append(m)
    return out


def test_knn_examples_are_recognised(gallery, samples, yunet, embedder):
    rec = load_recognizer(gallery, embedder, "nn")
    cal = gallery.get("calibration")
    assert rec.thresholds["nn"] == cal["nn"]["threshold"]  # the stored, calibrated threshold
    assert cal["nn"]["impostors"] == 80 and cal["nn"]["far_measured"] <= 0.01
    matches, summary = recognize(samples / "knn_examples" / "test", rec, yunet)
    got = _by_file(matches)
    assert [m.candidate for m in got["obama1.jpg"]] == ["obama"]
    assert [m.candidate for m in got["johnsnow_test1.jpg"]] == ["kit_harington"]
    alex = got["alex_lacamoire1.jpg"]
    assert [(m.name, m.known) for m in alex] == [("alex_lacamoire", True)]
    assert alex[0].score > rec.thresholds["nn"]
    kit_rose = got["kit_with_rose.jpg"]
    assert len(kit_rose) == 2 and {m.candidate for m in kit_rose} == {"kit_harington", "rose_leslie"}
    assert kit_rose[0].box[0] < kit_rose[1].box[0]  # left to right
    assert summary["images"] == 5 and summary["faces"] == len(matches)
    line = alex[0].line()
    path = samples / "knn_examples" / "test" / "alex_lacamoire1.jpg"
    assert line.startswith(f"{path}, alex_lacamoire, 0.") and line.endswith("]")


def test_a_stranger_is_unknown_at_the_calibrated_threshold(gallery, samples, yunet, embedder):
    for method in ("nn", "combined", "svc"):
        rec = load_recognizer(gallery, embedder, method)
        (m,), _ = recognize(samples / "reference_faces" / "mirziyoyev.jpg", rec, yunet)
        assert (m.name, m.known) == ("unknown", False), method
        assert m.candidate in dict(gallery.people())  # the nearest person is still reported
    # 1 % of strangers against a whole gallery is stricter than the one-to-one threshold
    assert rec.embedder.threshold < rec.thresholds["nn"]


def test_an_empty_gallery_answers_unknown_with_a_warning(tmp_path, samples, yunet, embedder, caplog):
    with Gallery(tmp_path / "empty.sqlite", embedder.identity()) as g:
        rec = load_recognizer(g, embedder, "combined")
    matches, _ = recognize(samples / "photos" / "two_people.jpg", rec, yunet)
    assert [(m.name, m.score, m.known) for m in matches] == [("unknown", 0.0, False)] * 2
    assert "empty" in caplog.text


def test_photos_without_faces_and_unreadable_files_are_counted(gallery, tmp_path, yunet, embedder):
    import cv2

    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "wall.png"), np.full((200, 200, 3), 90, np.uint8))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    matches, summary = recognize(folder, load_recognizer(gallery, embedder), yunet)
    assert matches == [] and summary["unreadable"] == 1
    assert summary["without_face"] == [str(folder / "wall.png")]


def test_annotated_images_never_overwrite_unless_asked(gallery, samples, yunet, embedder, tmp_path):
    rec, out = load_recognizer(gallery, embedder), tmp_path / "annotated"
    src = samples / "knn_examples" / "test" / "kit_with_rose.jpg"
    recognize(src, rec, yunet, annotate_dir=out)
    assert (out / "kit_with_rose_jpg.jpg").is_file()
    with pytest.raises(FileExistsError, match="overwrite=true"):
        recognize(src, rec, yunet, annotate_dir=out)
    recognize(src, rec, yunet, annotate_dir=out, overwrite=True)


def test_one_person_gallery_falls_back_to_nn(tmp_path, embedder, caplog):
    v = np.eye(embedder.dim, dtype=np.float32)[:2]
    rec = Recognizer(embedder, v, [0, 0], ["solo"], method="svc")
    assert rec.method == "nn" and "two or more people" in caplog.text


def test_svc_round_trips_through_the_db_without_pickle(gallery, embedder):
    rec = load_recognizer(gallery, embedder, "svc")  # fitted at the fixture's revision: reused
    stored = gallery.classifier()
    assert stored["revision"] == gallery.revision and stored["classes"] == rec.names
    row = gallery.db.execute("SELECT coef, intercept FROM classifier").fetchone()
    assert all(not bytes(b).startswith(b"\x80") for b in row)  # raw float32, not a pickle stream
    v, labels, names, _ = gallery.embeddings()
    refit = Svc.fit(v, labels)
    assert np.allclose(Svc(stored["coef"], stored["intercept"]).decision(v), refit.decision(v), atol=1e-4)
    assert (rec.svc.decision(v).argmax(1) == labels).all()  # the gallery's own faces
    gallery.remove("biden")  # a change: the next load refits in memory, the stored one stays
    rec2 = load_recognizer(gallery, embedder, "svc")
    assert rec2.names == [n for n in names if n != "biden"] != gallery.classifier()["classes"] == names
    assert rec2.calibration["revision"] == gallery.revision  # measured again, in memory
    assert gallery.get("calibration")["revision"] == gallery.revision - 1  # not written


def test_recognizing_never_writes_the_gallery(gallery, samples, yunet, embedder):
    """A read command reads: the db file is byte-identical after loading and recognising with
    every method, even after a change made the stored calibration stale."""
    gallery.remove("biden")
    path = gallery.path
    gallery.close()
    before = path.read_bytes()
    with Gallery(path, create=False) as g:
        # every method reads; another far_target than the stored one is measured again in memory, not stored
        for method, far in [(m, 0.01) for m in ("nn", "svc", "combined", "centred", "asnorm")] + [("asnorm", 0.05),
                                                                                                 ("nn", 0.05)]:
            recognize(samples / "knn_examples" / "test", load_recognizer(g, embedder, method, far), yunet)
    assert path.read_bytes() == before


def test_recognize_command_prints_lines_or_json(gallery, samples, capsys, lfw_root):
    from hydra import compose, initialize_config_dir

    from siamese.commands.people import recognize as recognize_command

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("recognize", overrides=[f"input={samples / 'knn_examples' / 'test' / 'obama1.jpg'}",
                                              f"db={gallery.path}", f"data.root={lfw_root}"])
    result = recognize_command(cfg)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].split(", ")[0].endswith("obama1.jpg")
    assert result["matches"][0]["candidate"] == "obama" and result["method"] == cfg.method
    assert result["method"] == "asnorm"  # the default, for a model with a cohort (the shipped one)
    assert result["threshold"] == gallery.get("calibration")["asnorm"]["threshold"]
    # --json: the same result, as JSON on stdout, and nothing else there
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "siamese.cli", "recognize", str(samples / "knn_examples" / "test"),
                        f"db={gallery.path}", "--json"], capture_output=True, text=True, cwd=REPO, timeout=120)
    parsed = json.loads(r.stdout)
    assert r.returncode == 0 and parsed["faces"] == len(parsed["matches"]) == 8 and parsed["method"] == "asnorm"
    assert {m["candidate"] for m in parsed["matches"]} >= {"obama", "kit_harington", "alex_lacamoire"}


def test_gallery_and_recognize_configs_compose():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        g = compose("gallery", overrides=["action=import", "path=known"])
        r = compose("recognize", overrides=["input=photos"])
    assert g.db == r.db and g.far_target == r.far_target == 0.01
    assert r.method == "asnorm" and r.open_set.dataset == "lfw"


def test_threshold_at_far_accepts_at_most_the_target_share():
    s = np.float32([0.9, 0.8, 0.8, 0.7, 0.5] + [0.1] * 95)
    for far, accepted in ((0.01, 1), (0.02, 1), (0.03, 3), (0.0, 0), (1.0, 100)):
        assert (s >= threshold_at_far(s, far)).sum() == accepted


class CosineHead:
    """A stand-in embedder whose head score is (cosine + 1) / 2: tests the logic, not the model."""

    dim, threshold = 16, 0.5

    def score(self, a, b):
        return ((a * b).sum(1) + 1) / 2


def _people(n_people, per_person, spread, seed=0, dim=16):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((n_people, dim))
    v = np.repeat(c, per_person, 0) + spread * rng.standard_normal((n_people * per_person, dim))
    names = np.repeat([f"p{i:03d}" for i in range(n_people)], per_person)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32), names


def test_open_set_evaluation_on_separable_people():
    v, names = _people(60, 3, 0.05)
    r = evaluate_open_set(CosineHead(), v, names, seed=1, unknown_share=0.5)
    assert (r["gallery_people"], r["gallery_faces"], r["known_probes"]) == (30, 30, 60)
    assert r["unknown_calibration"] + r["unknown_test"] == 30
    for m in ("nn", "svc", "combined"):
        x = r["methods"][m]
        assert x["top1"] == 1.0 and x["top5"] == 1.0, m
        assert x["dir_at_far_0.01"] <= x["dir_at_far_0.1"] and x["unknown_accepted"] <= 0.1
    assert r == evaluate_open_set(CosineHead(), v, names, seed=1)  # seeded: repeatable


def test_open_set_evaluation_measures_confusion():
    v, names = _people(80, 3, 0.6)  # look-alikes: ranks and acceptance must show it
    x = evaluate_open_set(CosineHead(), v, names)["methods"]["nn"]
    assert 0 < x["top1"] < 1 and x["top1"] <= x["top5"]
    assert x["model_threshold_unknown_accepted"] > x["unknown_accepted"]


def test_calibrate_sets_the_far_on_the_impostors_given():
    v, names = _people(40, 2, 0.3, seed=2)
    labels = np.unique(names, return_inverse=True)[1]
    rec = Recognizer(CosineHead(), v[:40], labels[:40], sorted(set(names[:40])))
    cal = calibrate(rec, v[40:], far_target=0.05)
    assert cal["far_measured"] <= 0.05 and cal["impostors"] == 40 and cal["gallery_people"] == 20


def test_int8_index_finds_what_exact_search_finds():
    v, _ = _people(500, 4, 0.3, dim=16)
    exact, fast = Index(v, int8=False), Index(v, int8=True)
    q = v[::7] + 0.05
    e_rows, e_sims = exact.search(q, 5)
    f_rows, f_sims = fast.search(q, 5)
    assert (e_rows[:, 0] == f_rows[:, 0]).all() and np.allclose(e_sims, f_sims, atol=1e-6)
    rows, sims = exact.search(q[:2], 3000)  # more than N: padded
    assert (rows[:, 2000:] == -1).all() and np.isinf(sims[:, 2000:]).all()


@pytest.mark.slow
def test_open_set_on_unseen_lfw_people(embedder, lfw_root):
    from siamese.eval.openset import open_set_lfw

    cache = REPO / "data" / "cache" / "lfw_yunet_112_p0.0"
    r = open_set_lfw(embedder, lfw_root, cache if cache.is_dir() else None)
    assert r["people"] == 1711  # DevTest people, none in the model's people.json
    for x in r["methods"].values():
        assert x["top1"] <= x["top5"] and x["dir_at_far_0.01"] <= x["top1"]
        assert x["unknown_accepted"] <= 0.05  # the default operating point keeps strangers out


def test_annotations_never_touch_the_inputs_and_never_collide(gallery, samples, yunet, embedder, tmp_path):
    import hashlib
    import shutil

    photos = tmp_path / "photos"
    photos.mkdir()
    kit = samples / "knn_examples" / "test" / "kit_with_rose.jpg"
    shutil.copy(kit, photos / "p.jpg")
    cv2_png = photos / "p.png"
    from siamese.io.images import read_image, write_image

    write_image(cv2_png, read_image(kit))
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in photos.iterdir()}
    rec = load_recognizer(gallery, embedder)
    for inside in (photos, photos / "sub"):
        with pytest.raises(ValueError, match="inside the input"):
            recognize(photos, rec, yunet, annotate_dir=inside, overwrite=True)
    recognize(photos, rec, yunet, annotate_dir=tmp_path / "annotated")
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir()) == ["p_jpg.jpg", "p_png.jpg"]
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in photos.iterdir()} == digest


def test_a_file_name_cannot_pose_as_another_result(gallery, samples, yunet, embedder, tmp_path):
    import csv
    import io
    import shutil

    evil = tmp_path / "x.jpg, obama, 0.999, [1, 2, 3, 4]\nfake.jpg"
    shutil.copy(samples / "reference_faces" / "mirziyoyev.jpg", evil)
    (m,), _ = recognize(evil, load_recognizer(gallery, embedder), yunet)
    rows = list(csv.reader(io.StringIO(m.line()), skipinitialspace=True))
    assert len(rows) == 1 and rows[0][0] == str(evil) and rows[0][1] == m.name != "obama"
