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


def _mixed(noise, seed):
    big, _ = _people(4, 12, noise, seed=seed)
    small, _ = _people(12, 3, noise, seed=seed + 1)
    return np.concatenate([big, small]), np.r_[np.repeat(np.arange(4), 12), 100 + np.repeat(np.arange(12), 3)]


def test_bar_shapes_are_scored_on_every_held_out_half_by_size_of_group():
    emb, labels = _mixed(0.7, 1)
    r = tool.bar_halves(emb, labels, splits=2, big=10)
    assert set(r) == {"falling", "one", "2d"}
    for x in r.values():
        assert len(x["all"]) == len(x["chosen"]) == 4
        assert ((0 < x["all"]) & (x["all"] <= 1)).all() and ((0 < x["small"]) & (x["small"] <= 1)).all()
    assert all(t == f for t, f in r["one"]["chosen"]) and all(0.15 <= f <= t for t, f in r["2d"]["chosen"])
    # nobody has 100 photos: no "big" figure is made up, and the rest is everybody
    none_big = tool.bar_halves(emb, labels, splits=1, big=100)
    for x in none_big.values():
        assert np.isnan(x["big"]).all() and np.allclose(x["small"], x["all"])


def test_the_falling_and_one_bar_are_fitted_as_siamese_calibrate_fits_them():
    from siamese.eval.cluster_fit import fit_average, fit_clustering

    emb, labels = _mixed(0.8, 3)
    fit = fit_clustering(emb, labels)
    assert tool._fitted_bar(emb, labels, "falling") == (fit["threshold"], fit["floor"])
    assert tool._fitted_bar(emb, labels, "one") == (fit_average(emb, labels)["threshold"],) * 2
    rows = tool._bar_rows("m", tool.bar_halves(emb, labels, splits=1))
    assert [r["bar"] for r in rows] == ["falling", "one", "2d"]
    assert rows[0]["all - falling"] == "-" and rows[1]["all - falling"][0] in "+-"
