"""Local centring (`siamese.model.centre`): what it computes, that it undoes hubs, and how a model
dir carries it (cluster.json "centre" + cluster_cohort.npy, checked by SHA-256)."""

import json
import shutil

import numpy as np
import pytest

from siamese.model.centre import Centring, centring, local_centre


def _hubby(people: int, per: int, seed: int, dim: int = 32):
    """Unit faces of `people` people, each face pulled by a random amount towards one direction that
    no person owns (a hub pulled far is close to many strangers): ((n, dim) float32, (n,) person)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((people, dim))
    centres[:, 0] = 0
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(people), per)
    pull = rng.uniform(0, 1.2, len(truth)) ** 2
    x = centres[truth] + 0.6 * rng.standard_normal((len(truth), dim)) / np.sqrt(dim)
    x[:, 0] += pull
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), truth


def test_local_centre_subtracts_the_mean_of_each_faces_nearest_cohort_faces():
    rng = np.random.default_rng(0)
    unit = lambda a: (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)  # noqa: E731
    x, cohort = unit(rng.standard_normal((7, 16))), unit(rng.standard_normal((50, 16)))
    out = local_centre(x, cohort, k=5, gamma=0.4, chunk=3)  # chunks: the same as one block
    for i in range(7):
        near = np.argsort(-(cohort @ x[i]))[:5]
        np.testing.assert_allclose(out[i], unit(x[i] - 0.4 * cohort[near].mean(0)), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(local_centre(x, cohort, k=5, gamma=0.0), x, atol=1e-6)
    assert local_centre(x[:0], cohort).shape == (0, 16)
    with pytest.raises(ValueError, match="cohort has 50"):
        local_centre(x, cohort, k=51)
    with pytest.raises(ValueError, match="must be"):
        local_centre(x, cohort[:, :8])


def test_local_centring_undoes_hubs_that_merge_people():
    from siamese.eval.cluster_fit import fit_clustering

    faces, truth = _hubby(40, 6, seed=0)
    cohort, _ = _hubby(200, 1, seed=1)  # other people, pulled the same way
    plain = fit_clustering(faces, truth)["bcubed_f1"]
    centred = fit_clustering(local_centre(faces, cohort, k=10, gamma=0.5), truth)["bcubed_f1"]
    assert plain < 0.95 and centred > plain + 0.04, (plain, centred)


def test_the_centring_and_its_gamma_are_chosen_on_held_out_people():
    from siamese.eval.cluster_fit import choose_centring, held_out_clustering

    faces, truth = _hubby(40, 6, seed=0)
    cohort, _ = _hubby(200, 1, seed=1)
    plain = held_out_clustering(faces, truth, halvings=4)
    assert len(plain["scores"]) == 8 and plain == held_out_clustering(faces, truth, halvings=4)  # same halvings
    assert held_out_clustering(faces[truth < 3], truth[truth < 3]) is None  # three people: nothing to halve
    pick = choose_centring(faces, truth, cohort, k=10, gamma=0.5, gammas=[0.25, 1.0], margin=1.0, halvings=4,
                           ks=[5, 500])  # 500: past the cohort's 200 faces, not tried
    f1 = {key: r["bcubed_f1"] for key, r in pick["held_out"].items()}
    assert set(f1) == {"plain", *(f"k {k}, gamma {g}" for k in (5, 10) for g in (0.25, 0.5, 1.0))}
    assert f1["plain"] == plain["bcubed_f1"] and (pick["k"], pick["gamma"]) == (10, 0.5)  # margin 1: kept
    assert pick["centred"] and f1["k 10, gamma 0.5"] > f1["plain"] + 0.04, f1
    best = choose_centring(faces, truth, cohort, k=10, gamma=0.5, gammas=[0.25, 1.0], margin=-1.0, halvings=4,
                           ks=[5, 500])
    assert f1[f"k {best['k']}, gamma {best['gamma']}"] == max(v for key, v in f1.items() if key != "plain")
    assert not choose_centring(faces, truth, cohort, k=10, gamma=0.0, halvings=4)["centred"]  # nothing taken away


def test_items_standing_for_several_faces_keep_their_length():
    rng = np.random.default_rng(1)
    cohort = rng.standard_normal((30, 8)).astype(np.float32)
    cohort /= np.linalg.norm(cohort, axis=1, keepdims=True)
    c = Centring(cohort, k=4, gamma=0.5)
    sums = rng.standard_normal((5, 8)) * np.array([1, 2, 3, 4, 5])[:, None]
    unit, centred = c.sums(sums)
    direction = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
    np.testing.assert_allclose(unit, c(direction), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(centred, axis=1), np.linalg.norm(sums, axis=1), rtol=1e-6)


@pytest.fixture
def centred_copy(tmp_path):
    """A copy of the shipped model (whose cluster.json is centred) and its Embedder."""
    from siamese.io.paths import DEFAULT_MODEL
    from siamese.model.embedder import Embedder

    model = tmp_path / "m"
    shutil.copytree(DEFAULT_MODEL, model)
    return model, Embedder.load(model)


def test_the_shipped_model_clusters_in_its_centred_space_and_refuses_another_cohort(centred_copy, samples,
                                                                                     yunet, tmp_path):
    from siamese.clustering.group import cluster

    model, emb = centred_copy
    spec = json.loads((model / "cluster.json").read_text())["centre"]
    c = centring(emb)
    assert (c.k, c.gamma, len(c.cohort)) == (spec["k"], spec["gamma"], spec["cohort"]["faces"])
    s = cluster(samples / "knn_examples" / "train", tmp_path / "a", emb, yunet, progress=False)
    assert s["centred"] is True and s["algorithm"] == "agglomerative"
    # the graph algorithms compare head scores, not the centred space
    s = cluster(samples / "knn_examples" / "train", tmp_path / "c", emb, yunet, algorithm="chinese_whispers",
                progress=False)
    assert s["centred"] is False
    # a cohort that is not the one cluster.json was fitted with is refused, naming the file and the fix
    np.save(model / "cluster_cohort.npy", np.load(model / "cluster_cohort.npy")[::-1].copy())
    with pytest.raises(ValueError, match=r"cluster_cohort\.npy: not the cohort .*siamese calibrate"):
        cluster(samples / "knn_examples" / "train", tmp_path / "b", emb, yunet, progress=False)
    class Untouched:  # the check comes before any face is looked for
        def detect(self, image):
            raise AssertionError("a photo was read before the cohort was checked")

    with pytest.raises(ValueError, match=r"cluster_cohort\.npy: not the cohort"):
        cluster(samples / "knn_examples" / "train", tmp_path / "b", emb, Untouched(), progress=False)
    (model / "cluster_cohort.npy").unlink()
    with pytest.raises(ValueError, match=r"cluster_cohort\.npy: missing"):
        centring(emb)


def test_calibration_keeps_centring_only_when_it_clusters_the_validation_people_better(centred_copy, lfw_root,
                                                                                       yunet, monkeypatch, caplog):
    from siamese.eval import calibration
    from siamese.eval.cluster_fit import fit_clustering

    model, emb = centred_copy
    people = json.loads((model / "people.json").read_text())
    people["validation"] = ["Ashanti", "Bulent_Ecevit", "Carmen_Electra", "Choi_Sung-hong"]
    (model / "people.json").write_text(json.dumps(people))
    # gamma 0 changes nothing, so it is never better: plain settings, no "centre", and the shipped
    # model's cohort, which no cluster.json names any more, is gone
    with caplog.at_level("INFO", logger="siamese.eval.calibration"):
        r = calibration.calibrate_clustering(emb, lfw_root, detector=yunet, overwrite=True,
                                             centre={"k": 5, "gamma": 0.0, "faces": 12})
    assert "1:N gamma" in caplog.text  # the shipped file's fitted 1:N gamma is gone: said, with how to fit it again
    assert r["centring"]["chosen"] is False and r["centring"]["centred"] == r["centring"]["plain"]
    assert "centre" not in r and not (model / "cluster_cohort.npy").exists() and centring(emb) is None
    assert calibration.calibrate_recognize(emb, lfw_root, detector=yunet) is None  # no centred space: nothing to fit
    assert r["held_out"]["space"] == "plain" and r["centring"]["held_out"]["plain"] == r["held_out"]["bcubed_f1"]
    # These four people cluster perfectly either way (1.0), so centring cannot win on them by itself: the
    # held-out choice (run for real) is made to say "centred", to see what a win writes.
    real = calibration.choose_centring

    def centred_wins(*args, **kwargs):
        return {**real(*args, **kwargs), "centred": True}

    monkeypatch.setattr(calibration, "choose_centring", centred_wins)
    r = calibration.calibrate_clustering(emb, lfw_root, detector=yunet, overwrite=True, halvings=3,
                                         centre={"k": 5, "gamma": 0.5, "faces": 12, "degraded": True})
    assert r["centring"]["cohort"].endswith("6 of them (every second person's) from a degraded copy of the photo")
    assert r["centring"]["chosen"] is True and r["centring"]["halvings"] == 3
    assert set(r["centring"]["held_out"]) == {"plain", "k 5, gamma 0.5"}
    assert r["held_out"]["space"] == "centred, k 5, gamma 0.5" and r["held_out"]["halvings"] == 3
    # agglomerative's settings are the ones fitted in the centred space, the cohort's
    val, names, _ = calibration.validation_embeddings(emb, people["validation"], lfw_root, detector=yunet)
    assert r["threshold"] == fit_clustering(centring(emb)(val), names)["threshold"]
    spec = json.loads((model / "cluster.json").read_text())["centre"]
    assert spec == r["centre"] and (spec["k"], spec["gamma"], spec["cohort"]["faces"]) == (5, 0.5, 12)
    c = centring(emb)  # the file written is the one cluster.json names, and it is read back
    assert len(c.cohort) == 12 and c.digest == spec["cohort"]["sha256"]
    assert "recognize" not in spec and centring(emb, purpose="recognize").gamma == 0.5  # the clustering's until fitted
    # 1:N's own gamma, fitted on the same people (margin -1: the better of 0.5 and 1.0 wins), used by recognition only
    rn = calibration.calibrate_recognize(emb, lfw_root, detector=yunet, gammas=[1.0], margin=-1.0, halvings=2)
    assert json.loads((model / "cluster.json").read_text())["centre"]["recognize"] == rn
    with pytest.raises(FileExistsError, match="overwrite"):
        calibration.calibrate_recognize(emb, lfw_root, detector=yunet, gammas=[1.0], halvings=2)
    assert set(rn["dir_at_far_1pct"]) == {"0.5", "1.0"} and rn["halvings"] == 2
    assert rn["dir_at_far_1pct"][str(rn["gamma"])] == max(rn["dir_at_far_1pct"].values())
    assert (centring(emb).gamma, centring(emb, purpose="recognize").gamma) == (0.5, rn["gamma"])


class _Head:
    """A stand-in embedder: head score (cosine + 1) / 2, and the centred space of `_hubby` people."""

    dim, threshold, path = 32, 0.5, "stand-in"

    def __init__(self, cohort=None, recognize=None):
        self.cohort, self.recognize = cohort, recognize

    def score(self, a, b):
        return ((a * b).sum(1) + 1) / 2

    def calibration(self, name):
        if self.cohort is None:
            return None
        return {"centre": {"k": 10, "gamma": 0.5, "cohort": {"sha256": "abc"},
                           **({"recognize": self.recognize} if self.recognize else {})}}

    def cluster_cohort(self, digest):
        assert digest == "abc"
        return self.cohort


def test_centred_acceptance_names_as_nn_does_and_scores_in_the_centred_space():
    from siamese.gallery.recognize import Recognizer, calibrate

    faces, truth = _hubby(20, 3, seed=2)
    cohort, _ = _hubby(200, 1, seed=3)
    strangers, _ = _hubby(30, 1, seed=4)
    g = np.arange(0, len(faces), 3)  # one enrolled face each; the rest are probes
    q = np.setdiff1d(np.arange(len(faces)), g)
    names = [f"p{i}" for i in range(20)]
    space = centring(_Head(cohort))
    rec = Recognizer(_Head(), faces[g], truth[g], names, method="centred", space=space)
    nn = Recognizer(_Head(), faces[g], truth[g], names, method="nn")
    (lab_c, s_c), (lab_n, _) = rec.evidence(faces[q]), nn.evidence(faces[q])
    assert (lab_c == lab_n).all()  # the same names, ranked by the head
    expected = (space(faces[q]) * space(faces[g])[lab_c[:, 0]]).sum(1)  # one enrolled face per person
    np.testing.assert_allclose(s_c, expected, atol=1e-5)
    cal = calibrate(rec, strangers, 0.1, "centred")
    rec.thresholds["centred"] = cal["threshold"]
    assert (cal["cohort"], cal["k"], cal["gamma"]) == ("abc", 10, 0.5) and rec.threshold == cal["threshold"]
    assert [known for _, _, known, _ in rec.identify(faces[q])] == (s_c >= cal["threshold"]).tolist()
    # without a centred space the method falls back to nn
    assert Recognizer(_Head(), faces[g], truth[g], names, method="centred").method == "nn"


def test_a_gallery_calibration_is_reused_only_for_the_space_it_was_fitted_in():
    from siamese.gallery.recognize import load_recognizer

    faces, truth = _hubby(10, 2, seed=5)
    cohort, _ = _hubby(200, 1, seed=6)
    strangers, _ = _hubby(100, 1, seed=7)

    class Gallery:
        path = "stand-in.sqlite"

        def __init__(self, cal):
            self.cal = cal

        def embeddings(self):
            return faces, truth, [f"p{i}" for i in range(10)], 3

        def impostors(self):
            return strangers, [f"s{i}" for i in range(100)]

        def get(self, key):
            return self.cal if key == "calibration" else "strangers"

        def classifier(self):
            return None

    stored = {"revision": 3, "far_target": 0.01, "nn": {"threshold": 0.9},
              "centred": {"threshold": 0.123, "cohort": "abc", "k": 10, "gamma": 0.5}}
    rec = load_recognizer(Gallery(stored), _Head(cohort), method="centred")
    assert rec.method == "centred" and rec.threshold == 0.123  # the stored one: same revision, same space
    for other in ({"cohort": "another"}, {"gamma": 1.0}, {"k": None}):  # another cohort, gamma; an old record
        rec = load_recognizer(Gallery({**stored, "centred": {**stored["centred"], **other}}), _Head(cohort),
                              method="centred")
        assert rec.threshold != 0.123 and rec.calibration["centred"]["cohort"] == "abc"  # measured again in memory
    # a model whose calibration fitted 1:N its own gamma: recognition centres with it, clustering does not
    own = _Head(cohort, recognize={"k": 10, "gamma": 1.0})
    assert (centring(own).gamma, centring(own, purpose="recognize").gamma) == (0.5, 1.0)
    rec = load_recognizer(Gallery(stored), own, method="centred")
    assert rec.space.gamma == 1.0 and rec.threshold != 0.123 and rec.calibration["centred"]["gamma"] == 1.0
    assert load_recognizer(Gallery(stored), _Head(), method="centred").method == "nn"  # a model without a centred space
    bare = Gallery(None)
    bare.impostors = lambda: (np.zeros((0, 32), np.float32), [])
    rec = load_recognizer(bare, _Head(cohort), method="centred")  # no strangers: the head's own threshold
    assert rec.method == "nn" and rec.threshold == 0.5 and rec.calibration is None


def test_the_cohort_is_read_once_until_its_file_changes(centred_copy, monkeypatch):
    from siamese.model import modeldir

    model, emb = centred_copy
    reads = []
    real = modeldir.read_cohort
    monkeypatch.setattr(modeldir, "read_cohort", lambda d, digest: reads.append(d) or real(d, digest))
    first = centring(emb).cohort
    np.testing.assert_array_equal(centring(emb).cohort, first)
    assert len(reads) == 1  # settings, clustering and "may be one person" ask again: no second read
    np.save(model / "cluster_cohort.npy", np.load(model / "cluster_cohort.npy")[::-1].copy())
    with pytest.raises(ValueError, match="not the cohort"):  # a changed file is read, and refused, again
        centring(emb)


def test_asnorm_takes_each_faces_typical_stranger_cosine_out_of_its_score():
    from siamese.model.centre import AsNorm

    cohort, _ = _hubby(200, 1, seed=8)
    faces, _ = _hubby(6, 1, seed=9)
    norm = AsNorm(cohort, k=20, digest="abc")
    st = norm.stats(faces)
    top = -np.sort(-(faces @ cohort.T), axis=1)[:, :20]  # each face's 20 most alike cohort faces, by hand
    np.testing.assert_allclose(st, np.stack([top.mean(1), top.std(1)], 1), atol=1e-5)
    cos = faces @ faces.T
    s = AsNorm.score(cos, st[:, None], st[None])
    expected = 0.5 * ((cos - top.mean(1)[:, None]) / top.std(1)[:, None] + (cos - top.mean(1)[None]) / top.std(1)[None])
    np.testing.assert_allclose(s, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s, s.T, atol=1e-5)  # symmetric in the two faces
    assert norm.identity == {"cohort": "abc", "asnorm_k": 20} and not norm.matches({"cohort": "abc", "asnorm_k": 10})
    with pytest.raises(ValueError, match="cohort has 200"):
        AsNorm(cohort, k=201)


def test_asnorm_recognition_ranks_and_accepts_by_the_normalised_cosine():
    from siamese.gallery.recognize import Recognizer, calibrate, load_recognizer
    from siamese.model.centre import score_norm

    faces, truth = _hubby(20, 3, seed=2)
    cohort, _ = _hubby(200, 1, seed=3)
    strangers, _ = _hubby(40, 1, seed=4)
    g = np.arange(0, len(faces), 3)
    q = np.setdiff1d(np.arange(len(faces)), g)
    names = [f"p{i}" for i in range(20)]
    norm = score_norm(_Head(cohort), k=10)
    assert norm.k == 10 and norm.digest == "abc" and score_norm(_Head()) is None
    rec = Recognizer(_Head(), faces[g], truth[g], names, method="asnorm", norm=norm, shortlist=5)
    lab, s = rec.evidence(faces[q])
    full = norm.score(faces[q] @ faces[g].T, norm.stats(faces[q])[:, None], norm.stats(faces[g])[None])
    assert (lab[:, 0] == truth[g][full.argmax(1)]).all()  # the best normalised cosine's person (one face each)
    np.testing.assert_allclose(s, full.max(1), rtol=1e-4, atol=1e-4)
    cal = calibrate(rec, strangers, 0.1, "asnorm")
    rec.thresholds["asnorm"] = cal["threshold"]
    assert (cal["cohort"], cal["asnorm_k"]) == ("abc", 10) and rec.threshold == cal["threshold"]
    assert [known for _, _, known, _ in rec.identify(faces[q])] == (s >= cal["threshold"]).tolist()
    # a gallery face's stats are computed when a query first shortlists it: one query, 5 of the 20 faces
    lazy = Recognizer(_Head(), faces[g], truth[g], names, method="asnorm", norm=norm, shortlist=5)
    lazy.rank(faces[q[:1]], "asnorm")
    assert np.isfinite(lazy._norm_stats[:, 0]).sum() == 5 < len(g)
    # without a cohort: centred's fallback (nn without a centred space either)
    assert Recognizer(_Head(), faces[g], truth[g], names, method="asnorm").method == "nn"
    space = centring(_Head(cohort))
    assert Recognizer(_Head(), faces[g], truth[g], names, method="asnorm", space=space).method == "centred"
    # an empty gallery answers unknown without scoring anything
    empty = Recognizer(_Head(), np.zeros((0, 32), np.float32), [], [], method="asnorm", norm=norm)
    assert empty.rank(faces[q[:2]], "asnorm")[0].tolist() == [[-1] * 5] * 2

    class Gallery:
        path = "stand-in.sqlite"

        def __init__(self, cal):
            self.cal = cal

        def embeddings(self):
            return faces[g], truth[g], names, 3

        def impostors(self):
            return strangers, [f"s{i}" for i in range(len(strangers))]

        def get(self, key):
            return self.cal if key == "calibration" else "strangers"

        def classifier(self):
            return None

    stored = {"revision": 3, "far_target": 0.01, "nn": {"threshold": 0.9},
              "asnorm": {"threshold": 1.5, "cohort": "abc", "asnorm_k": 100}}
    model = _Head(cohort)
    rec = load_recognizer(Gallery(stored), model, method="asnorm")
    assert rec.method == "asnorm" and rec.threshold == 1.5  # stored with this cohort and K: reused
    rec = load_recognizer(Gallery({**stored, "asnorm": {**stored["asnorm"], "asnorm_k": 50}}), model, method="asnorm")
    assert rec.threshold != 1.5 and rec.calibration["asnorm"]["asnorm_k"] == 100  # another K: measured again
    assert load_recognizer(Gallery(stored), _Head(), method="asnorm").method == "nn"


def test_siamese_calibrate_embeds_the_validation_people_once_for_clustering_and_1n(centred_copy, lfw_root,
                                                                                  monkeypatch, capsys, tmp_path,
                                                                                  caplog):
    from hydra import compose, initialize_config_dir

    from siamese.commands import evaluation
    from siamese.eval import calibration
    from siamese.io.paths import CONF_DIR

    model, _ = centred_copy
    people = json.loads((model / "people.json").read_text())
    people["validation"] = ["Ashanti", "Bulent_Ecevit", "Carmen_Electra", "Choi_Sung-hong"]
    (model / "people.json").write_text(json.dumps(people))
    calls, real = [], calibration.validation_embeddings

    def counted(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(calibration, "validation_embeddings", counted)
    monkeypatch.setattr(evaluation, "validation_embeddings", counted)
    choose = calibration.choose_centring  # four people cluster perfectly either way: made centred, so 1:N fits too
    monkeypatch.setattr(calibration, "choose_centring", lambda *a, **kw: {**choose(*a, **kw), "centred": True})
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose("calibrate", overrides=[f"model_path={model}", f"data.root={lfw_root}", "fit=[cluster,recognize]",
                                              "overwrite=true", f"cache_dir={tmp_path / 'no_cache'}",
                                              "cluster.halvings=2", "cluster.centre.k=5", "cluster.centre.faces=12",
                                              "cluster.centre.gammas=[0.5]", "cluster.centre.ks=[5]",
                                              "recognize.halvings=2"])
    with caplog.at_level("INFO", logger="siamese.eval.calibration"):
        out = evaluation.calibrate(cfg)
    assert "1:N gamma" not in caplog.text  # the shipped file had one, but this run fits it again: nothing to say
    assert out["recognize"]["halvings"] == 2 and out["cluster"]["centre"]["gamma"] == 0.5
    assert calls == [people["validation"]]  # one pass over the validation people (the cohort is other people)
    written = json.loads((model / "cluster.json").read_text())
    assert written["held_out"] == out["cluster"]["held_out"] and written["held_out"]["halvings"] == 2
    assert written["data"] == "LFW validation people (held out of training)" and written["faces"] > 4
    assert "held out (" in capsys.readouterr().out
