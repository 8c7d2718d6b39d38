import csv
import json
from pathlib import Path

import numpy as np
import pytest

from siamese.data import cache
from siamese.data.lfw import LFW
from siamese.eval import plots
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


@pytest.fixture
def drawn(monkeypatch):
    """Every text of each figure the plots save, by file name."""
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    texts, save = {}, Figure.savefig

    def record(fig, path, *a, **kw):
        texts[Path(path).name] = [t.get_text() for t in fig.findobj(Text) if t.get_text()]
        return save(fig, path, *a, **kw)

    monkeypatch.setattr(Figure, "savefig", record)
    return texts


def test_worst_pairs_show_each_pairs_names_and_score(small, tmp_path, drawn):
    lfw, fc, pairs = small
    model = Embedder.load("lfw_only")  # the shipped ensemble makes no mistake on these pairs
    _, data = view1(model, lfw, fc, seen=set())
    # The names are those of each pair's two faces.
    assert [(data.names[a], data.names[b]) for a, b in data.idx] == [(p.a.person, p.b.person) for p in pairs]
    evaluate(model, tmp_path, lfw=lfw, fc=fc, protocols=("view1",))
    # At the model's threshold (one mistake here), and at a stricter one (mistakes in both rows).
    for png, threshold in (("worst_lfw_view1.png", model.threshold), ("strict.png", float(np.median(data.scores)))):
        if png == "strict.png":
            plots.worst_pairs(data.images, data.idx, data.scores, data.same, threshold, tmp_path / png,
                              names=data.names)
        shown = "\n".join(drawn[png])
        wrong = np.flatnonzero((data.scores >= threshold) != data.same)
        assert len(wrong) >= 1  # a real check: there are mistakes to show
        for i in wrong[np.argsort(-np.abs(data.scores[wrong] - threshold))][:8]:  # the most confident ones
            a, b = (data.names[j].replace("_", " ").split()[0] for j in data.idx[i])
            assert f"score {data.scores[i]:.3f}" in shown and a in shown and b in shown, (png, a, b)


def test_training_curves_mark_the_best_epoch_and_plot_the_validation_loss(tmp_path, drawn):
    from siamese.eval.plots import training_curves

    rows = [{"epoch": e, "loss": 2 - 0.1 * e, "same_loss": 0.6 - 0.05 * e, "val_loss": 0.7 - 0.04 * e,
             "val_acc": acc, "val_auc": acc + 0.05} for e, acc in enumerate([0.7, 0.8, 0.86, 0.85, 0.86])]
    with open(tmp_path / "log.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert training_curves(tmp_path / "log.csv", tmp_path / "curves.png").stat().st_size > 1000
    texts = drawn["curves.png"]
    # Epoch 3 (1-based) first reached the best accuracy: training keeps that one (a strict gain).
    assert texts.count("best epoch 3 (val accuracy 0.8600)") == 3  # marked in every panel
    assert "validation pairs" in texts and "train pairs" in texts
    # An older log without val_loss still plots, and says what it lacks.
    with open(tmp_path / "old.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["epoch", "loss", "val_acc", "val_auc"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    training_curves(tmp_path / "old.csv", tmp_path / "old.png")
    assert any("not in this log: train pairs, validation pairs" in t for t in drawn["old.png"])
    assert training_curves(tmp_path / "missing.csv", tmp_path / "x.png") is None
