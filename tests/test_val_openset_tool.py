"""Open set on validation halvings (`siamese.eval.openset`: tools/val_openset.py, a ship rule's instrument,
and method centred's own gamma in `siamese calibrate`), on synthetic people."""

import importlib.util
from pathlib import Path

import numpy as np

from siamese.eval.openset import fit_recognize_gamma, halvings, open_set_halvings
from siamese.model.centre import Centring

TOOL = Path(__file__).resolve().parents[1] / "tools" / "val_openset.py"
spec = importlib.util.spec_from_file_location("val_openset", TOOL)
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)


class CosineModel:
    """Stands in for an Embedder: the head's score is the cosine mapped to [0, 1]."""
    threshold = 0.5

    def score(self, a, b):
        return ((np.sum(a * b, axis=1) + 1) / 2).astype(np.float32)


def _people(n_people, per, noise, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, 32))
    emb = np.repeat(centres, per, axis=0) + noise * rng.normal(size=(n_people * per, 32))
    names = np.array([f"p{i:02d}" for i in np.repeat(np.arange(n_people), per)])
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32), names


def test_the_tool_measures_with_the_librarys_halvings():
    assert tool.halvings is halvings and tool.open_set_halvings is open_set_halvings


def test_halvings_enrol_one_face_of_half_the_people_and_make_the_rest_strangers():
    _, names = _people(10, 4, 0.1)
    splits = halvings(names, 3)
    assert len(splits) == 3
    for gallery, known, strangers in splits:
        enrolled = set(names[gallery])
        assert len(gallery) == len(enrolled) == 5  # one face each
        assert set(names[known]) == enrolled and not set(names[strangers]) & enrolled
        assert sorted(np.r_[gallery, known, strangers].tolist()) == list(range(len(names)))
    again = halvings(names, 3)  # every model gets the same halvings
    assert all((a[0] == b[0]).all() and (a[2] == b[2]).all() for a, b in zip(splits, again))


def test_separated_people_are_all_named_and_blurred_ones_are_not():
    emb, names = _people(12, 4, 0.05)
    r = open_set_halvings(CosineModel(), emb, names, halvings(names, 2), methods=("nn",))
    assert r["nn"].shape == (2, 2) and (r["nn"] == 1.0).all()
    emb, names = _people(12, 4, 3.0)  # people too close to tell apart
    r = open_set_halvings(CosineModel(), emb, names, halvings(names, 2), methods=("nn",))
    top1, dir_ = r["nn"][:, 0], r["nn"][:, 1]
    assert (top1 < 0.8).all() and (dir_ <= top1).all()


def test_the_centred_method_names_as_the_head_and_accepts_in_the_centred_space():
    emb, names = _people(12, 4, 0.6, seed=3)
    cohort, _ = _people(30, 1, 0.0, seed=4)
    space = Centring(cohort, 5, 0.5, "synthetic")
    splits = halvings(names, 3)
    r = open_set_halvings(CosineModel(), emb, names, splits, space)
    assert set(r) == {"nn", "centred"}
    assert np.array_equal(r["nn"][:, 0], r["centred"][:, 0])  # the same ranking
    assert ((0 <= r["centred"][:, 1]) & (r["centred"][:, 1] <= r["centred"][:, 0])).all()


def test_method_centreds_gamma_changes_only_when_another_is_clearly_better():
    emb, names = _people(16, 4, 0.9, seed=5)
    cohort, _ = _people(40, 1, 0.0, seed=6)
    keep = fit_recognize_gamma(CosineModel(), emb, names, cohort, 5, 0.5, gammas=(0.25, 1.0), margin=1.0, count=3)
    assert keep["gamma"] == 0.5 and set(keep["dir_at_far_1pct"]) == {"0.25", "0.5", "1.0"}  # nothing beats it by 1
    assert (keep["k"], keep["halvings"], keep["margin"]) == (5, 3, 1.0)
    best = fit_recognize_gamma(CosineModel(), emb, names, cohort, 5, 0.5, gammas=(0.25, 1.0), margin=-1.0, count=3)
    scores = best["dir_at_far_1pct"]
    assert scores == keep["dir_at_far_1pct"] and scores[str(best["gamma"])] == max(scores.values())


def test_asnorm_and_the_strangers_harder_copies_are_measured_on_the_same_halvings():
    from siamese.model.centre import AsNorm

    emb, names = _people(12, 4, 0.05)
    cohort, _ = _people(100, 1, 0.0, seed=1)
    splits = halvings(names, 2)
    rng = np.random.default_rng(3)
    harder = emb + 0.5 * rng.normal(size=emb.shape).astype(np.float32)  # each face's blurred copy
    harder /= np.linalg.norm(harder, axis=1, keepdims=True)
    r = open_set_halvings(CosineModel(), emb, names, splits, methods=("nn", "asnorm"), norm=AsNorm(cohort, 20),
                          degraded=harder)
    assert r["asnorm"].shape == r["nn"].shape == (2, 3)
    assert (r["asnorm"][:, :2] == 1.0).all()  # separated people: all named, all above the strangers
    assert ((r["asnorm"][:, 2] >= 0) & (r["asnorm"][:, 2] <= 1)).all()
    same = open_set_halvings(CosineModel(), emb, names, splits, methods=("nn",), degraded=emb)
    counts = np.array([len(st) for _, _, st in splits])
    assert (same["nn"][:, 2] * counts <= 1).all()  # copies identical to the clean strangers: only their top one above
