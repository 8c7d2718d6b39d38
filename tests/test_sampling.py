import numpy as np
import pytest

from siamese.data.sampling import FaceSet, add_people, fixed_pairs, most_similar, sample_pairs, split_people


@pytest.fixture
def faces():
    # 6 people: 0..3 with 3 images each, 4 and 5 with one image (negatives only).
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 5])
    images = np.arange(len(labels), dtype=np.uint8).reshape(-1, 1, 1, 1) * np.ones((1, 2, 2, 3), np.uint8)
    return FaceSet(images, labels, [f"p{k}" for k in range(6)])


def test_pairs_are_what_they_claim(faces):
    pairs = sample_pairs(faces, 400, np.random.default_rng(0))
    same = pairs[:, 2] == 1
    assert abs(same.mean() - 0.5) < 0.01
    la, lb = faces.labels[pairs[:, 0]], faces.labels[pairs[:, 1]]
    assert (la[same] == lb[same]).all() and (pairs[same, 0] != pairs[same, 1]).all()
    assert (la[~same] != lb[~same]).all()
    assert set(la[same]) <= {0, 1, 2, 3}  # singletons never make positives
    assert {4, 5} & set(np.concatenate([la[~same], lb[~same]]))  # ...but serve as negatives


def test_sampling_is_deterministic_under_a_seed(faces):
    a = sample_pairs(faces, 50, np.random.default_rng(7))
    b = sample_pairs(faces, 50, np.random.default_rng(7))
    c = sample_pairs(faces, 50, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(fixed_pairs(faces, 20, 3), fixed_pairs(faces, 20, 3))


def test_hard_negatives_come_from_the_similar_people(faces):
    similar = np.array([[1], [0], [3], [2], [5], [4]])
    pairs = sample_pairs(faces, 200, np.random.default_rng(0), similar=similar, hard_share=1.0)
    neg = pairs[pairs[:, 2] == 0]
    la, lb = faces.labels[neg[:, 0]], faces.labels[neg[:, 1]]
    np.testing.assert_array_equal(lb, similar[la, 0])


def test_split_people_holds_out_whole_identities(faces):
    train, val = split_people(faces.names, faces.counts, 0.5, np.random.default_rng(0))
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(faces.names)
    assert len(val) == 2 and set(val) <= {"p0", "p1", "p2", "p3"}  # only people with >= 2 images
    t, v = faces.subset(train), faces.subset(val)
    assert len(t) + len(v) == len(faces)
    assert set(t.names).isdisjoint(v.names)


def test_subset_relabels_and_keeps_images(faces):
    sub = faces.subset(["p2", "p5"])
    assert sub.names == ["p2", "p5"]
    assert sub.labels.tolist() == [0, 0, 0, 1]
    assert sub.images[:, 0, 0, 0].tolist() == [6, 7, 8, 13]


def test_add_people_appends_new_identities(faces):
    new = add_people(faces, np.zeros((3, 2, 2, 3), np.uint8), ["me", "me", "you"], prefix="own:")
    assert new.names[-2:] == ["own:me", "own:you"]
    assert new.labels[-3:].tolist() == [6, 6, 7] and new.counts[-2:].tolist() == [2, 1]


def test_most_similar_finds_nearest_centres():
    centres = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [-1, 0]], float)
    top = most_similar(centres, 1)
    assert top[:, 0].tolist() == [1, 0, 3, 2, 2]  # (-1, 0) is closest to (0, 1): cos 0 > -0.11
