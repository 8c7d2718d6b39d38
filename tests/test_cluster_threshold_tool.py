"""tools/cluster_threshold_split.py: held-out scoring of agglomerative's fitted threshold (the
study behind docs/distill.md's note on smoothing the grid), on synthetic people."""

import importlib.util
from pathlib import Path

import numpy as np

TOOL = Path(__file__).resolve().parents[1] / "tools" / "cluster_threshold_split.py"
spec = importlib.util.spec_from_file_location("cluster_threshold_split", TOOL)
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)


def _people(n_people, per, noise, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, 64))
    emb = np.repeat(centres, per, axis=0) + noise * rng.normal(size=(n_people * per, 64))
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32), np.repeat(np.arange(n_people), per)


def test_every_split_scores_both_directions_and_the_oracle_bounds_both_choices():
    emb, labels = _people(12, 5, 0.6)
    r = tool.split_halves(emb, labels, splits=3)
    assert {k: len(v) for k, v in r.items()} == {"argmax": 6, "smooth3": 6, "oracle": 6}
    assert (r["oracle"] >= r["argmax"]).all() and (r["oracle"] >= r["smooth3"]).all()
    assert ((0 < r["argmax"]) & (r["argmax"] <= 1)).all()


def test_well_separated_people_are_found_whatever_the_halves():
    emb, labels = _people(12, 5, 0.1)
    r = tool.split_halves(emb, labels, splits=2)
    assert r["argmax"].min() == 1.0 and r["smooth3"].min() == 1.0
    blurred = tool.split_halves(*_people(12, 5, 4.0), splits=2)  # people too close to tell apart
    assert blurred["oracle"].max() < 0.9


def test_bar_shapes_are_scored_on_every_held_out_half_by_size_of_group():
    big, _ = _people(4, 12, 0.7, seed=1)
    small, _ = _people(12, 3, 0.7, seed=2)
    emb = np.concatenate([big, small])
    labels = np.r_[np.repeat(np.arange(4), 12), 100 + np.repeat(np.arange(12), 3)]
    r = tool.bar_halves(emb, labels, splits=2, big=10)
    assert set(r) == {"falling", "one", "2d"}
    for shape, x in r.items():
        assert len(x["all"]) == len(x["chosen"]) == 4
        assert ((0 < x["all"]) & (x["all"] <= 1)).all()
        assert all(0.15 <= f <= t for t, f in x["chosen"]) if shape != "falling" else True
    assert all(t == f for t, f in r["one"]["chosen"])
    # a half with no big person scores NaN there, never a made-up figure
    assert np.isnan(r["falling"]["big"]).sum() == np.isnan(r["one"]["big"]).sum()


def test_the_two_dimensional_fit_is_at_least_the_one_bar_on_the_faces_it_was_fitted_on():
    big, _ = _people(4, 12, 0.8, seed=3)
    small, _ = _people(12, 3, 0.8, seed=4)
    emb = np.concatenate([big, small])
    labels = np.r_[np.repeat(np.arange(4), 12), 100 + np.repeat(np.arange(12), 3)]
    f1 = {s: tool.bcubed_scores(labels, tool.agglomerative(emb, *tool._fitted_bar(emb, labels, s), 10))["f1"]
          for s in ("one", "2d")}
    assert f1["2d"] >= f1["one"]  # the one bar is the 2-D grid's diagonal
    rows = tool._bar_rows("m", tool.bar_halves(emb, labels, splits=1))
    assert [r["bar"] for r in rows] == ["falling", "one", "2d"] and rows[1]["all - falling"].startswith(("+", "-0"))
