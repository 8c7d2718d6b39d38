import numpy as np
import pytest

from siamese.eval.metrics import accuracy, best_threshold, binary_cross_entropy, roc_auc, summary, tar_at_far


def test_best_threshold_is_exact_on_separable_scores():
    scores = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]
    same = [0, 0, 0, 1, 1, 1]
    thr, acc = best_threshold(scores, same)
    assert acc == 1.0 and 0.3 < thr < 0.7
    assert accuracy(scores, same, thr) == 1.0


def test_best_threshold_matches_brute_force():
    rng = np.random.default_rng(0)
    same = rng.integers(0, 2, 300)
    scores = rng.normal(same * 1.0, 1.0).round(1)  # many ties
    thr, acc = best_threshold(scores, same)
    brute = max(accuracy(scores, same, t) for t in np.unique(scores))
    assert acc == pytest.approx(brute) and accuracy(scores, same, thr) == pytest.approx(acc)


def test_tar_at_far_respects_the_false_accept_budget():
    rng = np.random.default_rng(1)
    neg, pos = rng.normal(0, 1, 10000), rng.normal(3, 1, 1000)
    scores = np.concatenate([neg, pos])
    same = np.r_[np.zeros(10000), np.ones(1000)]
    tar, thr = tar_at_far(scores, same, 1e-2)
    assert (neg >= thr).mean() <= 1e-2
    assert 0.70 < tar < 0.80  # analytic: P(N(3, 1) > 2.326) = 0.75
    assert roc_auc(scores, same) > 0.95


def test_summary_and_errors():
    s = summary([0.2, 0.8], [0, 1])
    assert s["accuracy"] == 1.0 and s["pairs"] == 2
    with pytest.raises(ValueError, match="differ"):
        accuracy([0.1], [0, 1], 0.5)


def test_eer_and_confusion():
    from siamese.eval.metrics import confusion, eer

    scores = np.array([0.1, 0.4, 0.35, 0.8])
    same = np.array([0, 0, 1, 1])
    e, _ = eer(scores, same)
    assert e == pytest.approx(0.5)
    c = confusion(scores, same, 0.3)
    assert c["precision"] == pytest.approx(2 / 3) and c["recall"] == 1.0 and c["far"] == 0.5


def test_kfold_thresholds_come_from_the_other_folds():
    from siamese.eval.metrics import kfold

    # Fold 0 alone would be perfect at 0.5; the other folds put the threshold at 0.25,
    # so fold 0's score must use 0.25 and miss its negatives at 0.3 and 0.4.
    scores = np.array([0.3, 0.4, 0.6, 0.7, 0.1, 0.2, 0.3, 0.35, 0.1, 0.2, 0.3, 0.35])
    same = np.array([0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1])
    r = kfold(scores, same, [0] * 4 + [1] * 4 + [2] * 4)
    assert r["folds"][0]["threshold"] == pytest.approx(0.25)
    assert r["folds"][0]["accuracy"] == 0.5
    accs = [f["accuracy"] for f in r["folds"]]
    assert r["accuracy_mean"] == pytest.approx(np.mean(accs), abs=1e-4)
    assert r["accuracy_std"] == pytest.approx(np.std(accs), abs=1e-4)


def test_binary_cross_entropy_by_hand_and_as_keras_computes_it():
    # -(ln 0.8 + ln(1 - 0.4)) / 2: a same pair at 0.8, a different one at 0.4.
    assert binary_cross_entropy([0.8, 0.4], [1, 0]) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)
    assert binary_cross_entropy([1.0, 0.0], [1, 0]) == pytest.approx(0.0, abs=1e-6)
    assert binary_cross_entropy([0.0], [1]) == pytest.approx(-np.log(1e-7))  # clipped, not infinite
    with pytest.raises(ValueError, match="differ in length"):
        binary_cross_entropy([0.5], [1, 0])
