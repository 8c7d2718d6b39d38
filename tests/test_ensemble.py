"""Several models as one (siamese.ensemble): built from model dirs, loaded by Embedder.load,
used by clustering. Two copies of the shipped model make the checks exact: the ensemble of a
model with itself must embed and score exactly as the model does."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from siamese.model.embedder import Embedder
from siamese.model.ensemble import Ensemble
from siamese.train.ensemble import build

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "siamese" / "assets" / "default_model"
LFW_ONLY = SHIPPED / "members" / "1-lfw_only"  # one network: the members of the ensembles built here
VALIDATION = ["Ashanti", "Bulent_Ecevit", "Carmen_Electra", "Choi_Sung-hong"]  # 22 LFW photos


def _copy(dst: Path, validation) -> Path:
    shutil.copytree(LFW_ONLY, dst, ignore=shutil.ignore_patterns("cluster.json", "verify.json"))
    people = json.loads((dst / "people.json").read_text())
    people["validation"] = validation
    (dst / "people.json").write_text(json.dumps(people))
    return dst


@pytest.fixture(scope="module")
def built(tmp_path_factory, lfw_root, yunet):
    root = tmp_path_factory.mktemp("ens")
    a, b = _copy(root / "a", VALIDATION), _copy(root / "b", VALIDATION[:3] + ["Clare_Short"])
    build(root / "ens", [a, b], lfw_root, detector=yunet)
    return root


@pytest.fixture(scope="module")
def faces(known_faces):
    return known_faces  # (n, 112, 112, 3): an ensemble's input


def test_an_ensemble_of_a_model_with_itself_is_that_model(built, faces):
    ens, one = Embedder.load(built / "ens"), Embedder.load(built / "a")
    assert isinstance(ens, Ensemble) and len(ens.members) == 2 and ens.dim == 2 * one.dim
    e = ens.embed(faces)
    from siamese.faces.align import resize_faces

    e1 = one.embed(resize_faces(faces, one.input_size))
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(e @ e.T, e1 @ e1.T, atol=1e-5)  # the same cosines
    i, j = np.triu_indices(len(e), 1)
    np.testing.assert_allclose(ens.score(e[i], e[j]), one.score(e1[i], e1[j]), atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        ens.embed(resize_faces(faces, 64))


def test_build_writes_a_relocatable_dir_with_its_own_thresholds(built):
    meta = json.loads((built / "ens" / "model.json").read_text())
    assert meta["ensemble"] == ["../a", "../b"] and meta["input_size"] == 112
    assert 0.0 < meta["threshold"] < 1.0 and "held out of every member" in meta["threshold_from"]
    # What the members learned from, in model.json and the card: both LFW-only, so no outside data.
    assert meta["lfw_category"] == "unrestricted, no outside data" and "distillation" not in meta
    assert [r["input_size"] for r in meta["members"]] == [112, 112]  # in the order of meta["ensemble"]
    card = (built / "ens" / "MODEL_CARD.md").read_text()
    assert "(ensemble)" in card and "| `../a` | 112 px | unrestricted, no outside data |" in card
    people = json.loads((built / "ens" / "people.json").read_text())
    assert people["validation"] == sorted(VALIDATION[:3])  # only people both held out
    cal = json.loads((built / "ens" / "cluster.json").read_text())
    assert cal["people"] == 3 and cal["floor"] <= cal["threshold"]
    ens, one = Embedder.load(built / "ens"), Embedder.load(built / "a")
    fp = ens.identity()["fingerprint"]
    assert fp != one.identity()["fingerprint"] and fp == cal["model"]["fingerprint"]
    moved = built / "moved"  # members found relative to the ensemble dir
    moved.mkdir()
    shutil.copytree(built / "ens", moved / "ens")
    for m in ("a", "b"):
        (moved / m).symlink_to(built / m)
    assert Embedder.load(moved / "ens").identity()["fingerprint"] == fp


def test_build_refuses_what_cannot_make_an_ensemble(built, tmp_path, lfw_root, yunet):
    with pytest.raises(ValueError, match="two or more"):
        build(tmp_path / "x", [built / "a"], lfw_root, detector=yunet)
    with pytest.raises(FileExistsError, match="overwrite"):
        build(built / "ens", [built / "a", built / "b"], lfw_root, detector=yunet)
    lone = _copy(tmp_path / "c", ["Clare_Short"])
    with pytest.raises(ValueError, match="fewer than two validation people"):
        build(tmp_path / "y", [built / "a", lone], lfw_root, detector=yunet)
    bare = _copy(tmp_path / "d", [])
    with pytest.raises(ValueError, match="no validation people"):
        build(tmp_path / "z", [built / "a", bare], lfw_root, detector=yunet)
    assert not (tmp_path / "x").exists() and not (tmp_path / "z" / "model.json").exists()


def test_clustering_runs_on_an_ensemble(built, samples, yunet, tmp_path):
    from siamese.clustering.group import cluster

    s = cluster(samples / "knn_examples" / "train", tmp_path / "out", Embedder.load(built / "ens"),
                yunet, labels=True, progress=False)
    assert s["algorithm"] == "agglomerative" and set(s["settings_from"].values()) == {"cluster.json"}
    assert s["metrics"]["scored_faces"] == 9


def test_an_ensemble_with_its_members_copied_moves_on_its_own(built, tmp_path, lfw_root, yunet):
    # copy_members: OUT/members/ holds each member's files; moved anywhere, OUT loads and embeds as
    # the ensemble that names its members where they are (same fingerprint), and rebuilding it from
    # its own copies keeps them.
    out = tmp_path / "ens"
    build(out, [built / "a", built / "b"], lfw_root, detector=yunet, copy_members=True)
    meta = json.loads((out / "model.json").read_text())
    assert meta["ensemble"] == ["members/1-a", "members/2-b"]
    assert sorted(p.name for p in (out / "members" / "1-a").iterdir()) == sorted(
        p.name for p in (built / "a").iterdir() if p.is_file())
    moved = tmp_path / "elsewhere" / "ens"
    shutil.move(out, moved)
    fp = Embedder.load(built / "ens").identity()["fingerprint"]
    assert Embedder.load(moved).identity()["fingerprint"] == fp
    build(moved, [moved / "members" / "1-a", moved / "members" / "2-b"], lfw_root, detector=yunet,
          overwrite=True, copy_members=True)
    assert Embedder.load(moved).identity()["fingerprint"] == fp


def test_copying_an_ensemble_member_brings_its_own_members(tmp_path):
    # The shipped model is itself an ensemble: copied as a member, its members/ come along, and the
    # copy loads as the same model.
    from siamese.train.ensemble import _copy_members

    shipped = Embedder.load(SHIPPED)
    (copy,) = _copy_members(tmp_path / "out", [shipped])
    assert copy == tmp_path / "out" / "members" / "1-default_model"
    assert Embedder.load(copy).fingerprint() == shipped.fingerprint()


def test_the_rules_tool_scores_the_validation_pairs_the_threshold_was_fitted_on(built, lfw_root, tmp_path,
                                                                                 capsys, monkeypatch):
    # tools/ensemble_rules.py: its "mean head probability" row is the ensemble's own rule on the same
    # pairs `build` fitted the threshold on, so it finds the same threshold; a single model is refused.
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("ensemble_rules", REPO / "tools" / "ensemble_rules.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    args = ["--lfw", str(lfw_root), "--cache", str(tmp_path / "no_cache")]
    monkeypatch.setattr(sys, "argv", ["ensemble_rules", str(built / "ens"), *args])
    tool.main()
    out = capsys.readouterr().out
    row = next(x for x in out.splitlines() if "mean head probability" in x)
    meta = json.loads((built / "ens" / "model.json").read_text())
    assert float(row.split("|")[-2]) == pytest.approx(meta["threshold"], abs=1e-4)
    assert "mean cosine" in out and "a: head alone" in out and "validation pairs" in out
    monkeypatch.setattr(sys, "argv", ["ensemble_rules", str(built / "a"), *args])
    with pytest.raises(ValueError, match="not an ensemble"):
        tool.main()


def test_one_model_in_bf16_is_its_bfloat16_form_with_its_own_thresholds(built, tmp_path, lfw_root, yunet, faces):
    """`siamese ensemble OUT models=[MODEL] precision=bf16`: any model's bfloat16 form (OpenVINO), its own
    threshold and cluster.json under its own fingerprint, embeddings within ~1e-4 cosine of float32's."""
    ens = build(tmp_path / "bf", [built / "a"], lfw_root, detector=yunet, precision="bf16")
    meta = json.loads((tmp_path / "bf" / "model.json").read_text())
    assert meta["precision"] == "bf16" and "**bf16**" in (tmp_path / "bf" / "MODEL_CARD.md").read_text()
    loaded, f32 = Embedder.load(tmp_path / "bf"), Embedder.load(built / "a")
    assert [m.precision for m in loaded.members] == ["bf16"] and loaded.fingerprint() == ens.fingerprint()
    assert loaded.fingerprint() != f32.fingerprint() and loaded.calibration("cluster.json") is not None
    cos = np.sum(loaded.embed(faces) * f32.embed(faces), axis=1)
    assert cos.min() > 0.9995, cos  # (exactly float32's on a CPU without bfloat16 units)
    with pytest.raises(ValueError, match="or one, with precision=int8 or bf16"):
        build(tmp_path / "none", [], lfw_root, detector=yunet, precision="float32")
