import json
from pathlib import Path

import pytest

from siamese.data import cache
from siamese.data.lfw import LFW
from siamese.eval.evaluate import evaluate, view1
from siamese.model.embedder import Embedder

SHIPPED = Path(__file__).resolve().parents[1] / "siamese" / "assets" / "default_model"


@pytest.fixture(scope="module")
def small(lfw_root, tmp_path_factory):
    lfw = LFW(lfw_root)
    pairs = lfw.pairs("view1_test")
    pairs = [p for p in pairs if p.same][:15] + [p for p in pairs if not p.same][:15]
    out = tmp_path_factory.mktemp("cache")
    cache.build(lfw, out, {"_target_": "siamese.faces.YuNetDetector"}, size=112, workers=1,
                refs=list({r for p in pairs for r in (p.a, p.b)}), progress=False)
    lfw.pairs = lambda split: pairs  # this small cache holds only these pairs' faces
    return lfw, cache.load(out), pairs


def test_view1_refuses_pairs_of_people_the_model_saw(small):
    lfw, fc, pairs = small
    model = Embedder.load(SHIPPED)
    clean, _ = view1(model, lfw, fc, seen=set())
    assert clean["pairs"] == 30 and clean["refused_pairs"] == 0
    seen = {pairs[0].a.person, pairs[20].b.person}
    flagged, _ = view1(model, lfw, fc, seen=seen)
    expected = sum(p.a.person in seen or p.b.person in seen for p in pairs)
    assert flagged["refused_pairs"] == expected >= 2
    assert flagged["pairs"] == 30 - expected


def test_evaluate_writes_metrics_report_and_plots(small, samples, yunet, tmp_path):
    lfw, fc, _ = small
    model = Embedder.load(SHIPPED)
    m = evaluate(model, tmp_path, lfw=lfw, fc=fc, protocols=("view1",),
                 folder_root=samples / "knn_examples" / "train", detector=yunet, n_pairs=100)
    assert set(m["results"]) == {"lfw_view1", "folder"}
    folder = m["results"]["folder"]
    # knn_examples/train: 5 well-known people, clear photos; the shipped model tells them apart
    assert folder["people"] == 5 and folder["pairs"] > 10 and folder["accuracy"] >= 0.8
    assert folder["threshold"] == pytest.approx(model.threshold, abs=1e-6)  # the model's own
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["results"]["lfw_view1"]["pairs"] == 30
    report = (tmp_path / "report.md").read_text()
    assert "lfw_view1" in report and "oracle" in report
    for png in ("roc.png", "histogram_lfw_view1.png", "worst_lfw_view1.png",
                "histogram_folder_train.png", "worst_folder_train.png"):
        assert (tmp_path / png).stat().st_size > 1000, png
