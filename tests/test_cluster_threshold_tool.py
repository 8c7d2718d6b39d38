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
