"""Harder copies of photos, and the report of calibrated thresholds on them."""

import numpy as np
import pytest

from siamese.data import cache
from siamese.data.degrade import KINDS, degrade
from siamese.data.lfw import LFW
from siamese.faces.detect import Face
from siamese.io.images import read_image


@pytest.fixture(scope="module")
def photo(lfw_root, yunet):
    image = read_image(lfw_root / "lfw" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    return image, yunet.detect(image)[0]


@pytest.mark.parametrize("kind", KINDS)
def test_each_degradation_is_a_harder_copy_with_the_face_moved_along(kind, photo):
    image, face = photo
    out, moved = degrade(image, face, kind, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    if kind == "small":
        assert moved.box[2] == pytest.approx(40, abs=1) and out.shape[0] < image.shape[0] / 2
        np.testing.assert_allclose(moved.landmarks / moved.box[2], face.landmarks / face.box[2], rtol=1e-5)
    else:
        assert out.shape == image.shape and np.array_equal(moved.box, face.box)
        assert np.abs(out.astype(int) - image).mean() > 1  # it did change the photo
    again, _ = degrade(image, face, kind, np.random.default_rng(0))
    assert np.array_equal(out, again)  # seeded: the same copy every time


def test_an_unknown_degradation_is_refused(photo):
    with pytest.raises(ValueError, match="small, |choose one of"):
        degrade(*photo, "sepia", np.random.default_rng(0))
    assert isinstance(photo[1], Face)


def test_the_report_measures_every_calibrated_threshold(lfw_root, tmp_path):
    from siamese.eval import degraded
    from siamese.model import Embedder

    lfw = LFW(lfw_root)
    people = {p: n for p, n in lfw.people("view1_test").items() if n >= 2}
    people = dict(list(people.items())[:30]) | {"Alvaro_Uribe": lfw.people("view1_test")["Alvaro_Uribe"]}
    cache.build(lfw, tmp_path, {"_target_": "siamese.faces.YuNetDetector"}, size=112, workers=1,
                refs=lfw.identities(people), progress=False)
    model = Embedder.load()
    r = degraded.report(model, lfw, cache.load(tmp_path), n_people=40, per_person=2)
    assert r["people"] == len(people) and r["pair"]["pairs"] > 1000
    assert 0.01 < r["pair"]["far_clean"] < 0.3 and r["pair"]["threshold"] == pytest.approx(model.threshold, abs=1e-4)
    assert r["verify"]["people"] == sum(n > 10 for n in people.values()) and r["cluster"]["false_merge_degraded"] >= 0
    a = r["cluster"]["average"]  # the shipped cluster.json fits average's one bar too
    assert a["threshold"] == model.calibration("cluster.json")["algorithms"]["average"]["threshold"]
    assert 0 <= a["false_merge_clean"] <= 1 and 0 <= a["false_merge_degraded"] <= 1
    u = r["unknown"]
    assert u["mixed_calibration"]["threshold"] >= u["clean_calibration"]["threshold"]  # harder impostors
    assert {row["threshold"] for row in degraded.rows(r)} >= {"pair (model.json)", "verify (template, 10 enrolled)",
                                                               "cluster, algorithm=average (false merges)",
                                                               "unknown (centred, clean impostors)"}
    c = u["centred_calibration"]  # siamese recognize's default method: its own threshold, on the centred cosine
    assert -1 <= c["threshold"] <= 1 and 0 <= c["far_clean"] <= 1 and 0 <= c["far_degraded"] <= 1
    v = r["verification"]  # the same faces' pairs are harder to tell apart once their photos are
    assert v["same_pairs"] > 100 and v["different_pairs"] == r["pair"]["pairs"]
    assert 0.5 < v["degraded"]["auc"] < v["clean"]["auc"] <= 1.0
    assert 0 < v["degraded"]["tar_at_far_1pct"] < v["clean"]["tar_at_far_1pct"] <= 1.0  # one operating point


def test_the_unknown_threshold_can_be_calibrated_on_degraded_strangers_too(lfw_root, tmp_path, samples, yunet):
    from siamese.gallery.calibrate import refresh
    from siamese.gallery.enrol import import_folder
    from siamese.gallery.store import Gallery
    from siamese.model import Embedder

    model = Embedder.load()
    cals = {}
    for degraded in (False, True):
        with Gallery(tmp_path / f"g{degraded}.sqlite", model.identity()) as g:
            import_folder(g, model, yunet, samples / "knn_examples" / "train")
            cals[degraded] = refresh(g, model, 0.05, lfw_root=lfw_root, detector=yunet, people=40, degraded=degraded)
            assert len(g.impostors()[0]) == (80 if degraded else 40)
    assert "degraded copy" in cals[True]["source"] and "degraded" not in cals[False]["source"]
    for cal in cals.values():  # each holds its target on the strangers it was fitted on
        assert cal["nn"]["far_measured"] <= 0.05
    assert cals[True]["nn"]["impostors"] == 2 * cals[False]["nn"]["impostors"]
