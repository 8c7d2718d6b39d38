"""The tools of docs/distill.md (hubness, teacher_fit, teacher_framing, round_weights), on data made to show them."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "hubness.py"
spec = importlib.util.spec_from_file_location("hubness_tool", TOOL)
hubness_tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hubness_tool)


def _tool(name):
    """tools/NAME.py as a module."""
    spec = importlib.util.spec_from_file_location(f"{name}_tool", TOOL.parent / f"{name}.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def _people(rng, n_people=30, per=4, spread=0.3, dim=32):
    centres = rng.standard_normal((n_people, dim))
    emb = np.repeat(centres, per, 0) + spread * rng.standard_normal((n_people * per, dim))
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), np.repeat(np.arange(n_people), per)


def test_a_hub_face_shows_in_the_tail_and_the_share_of_the_worst_confusions():
    rng = np.random.default_rng(0)
    emb, names = _people(rng)
    plain = hubness_tool.hubness(emb, names)
    hubbed = emb.copy()
    hubbed[0] = emb.mean(0) / np.linalg.norm(emb.mean(0))  # one face close to everyone
    hub = hubness_tool.hubness(hubbed, names)
    assert plain["same_median"] > plain["diff_p99"]  # tight people
    assert hub["top20_share"] >= plain["top20_share"] and hub["diff_p999"] > plain["diff_p999"]


def test_both_bars_cluster_well_separated_people_and_say_where():
    rng = np.random.default_rng(1)
    emb, names = _people(rng)
    got = hubness_tool.bars(emb, names)
    assert got["falling_bar_f1"] > 0.9 and got["one_bar_f1"] > 0.9
    assert 0.1 <= got["one_bar_at"] <= 0.95 and " / " in got["at"]
    noisy, _ = _people(rng, spread=3.0)  # people no better than chance: both bars fall
    assert hubness_tool.bars(noisy, names)["one_bar_f1"] < 0.6


def test_alike_counts_right_pairs_of_folders_and_of_unassigned_faces():
    rng = np.random.default_rng(2)
    emb, names = _people(rng, per=2, spread=0.05)  # 30 tight people of two faces
    # a bar so strict that nothing merges: every face unassigned, its partner the most alike face
    got = hubness_tool.alike(emb, names, {"threshold": 1.01, "floor": 0.5, "k": 10})
    assert got == {"folders_right": "0/0, 0/0", "with_unassigned_right": "8/8, 20/20"}
    merged = hubness_tool.alike(emb, names, {"threshold": 0.9, "floor": 0.5, "k": 10})
    assert merged["with_unassigned_right"].startswith("0/0")  # all merged: nothing left to pair


def test_teacher_fit_scores_how_closely_a_student_follows_the_teacher():
    tool = _tool("teacher_fit")
    rng = np.random.default_rng(0)
    teacher, _ = _people(rng)
    same = tool.fit(teacher, teacher)
    assert same == {"cos": 1.0, "sim_corr": 1.0, "sim_mad": 0.0}
    noisy = teacher + 0.5 * rng.standard_normal(teacher.shape)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    worse = tool.fit(noisy, teacher)
    assert worse["cos"] < 0.9 and worse["sim_corr"] < 0.95 and worse["sim_mad"] > 0.01


def test_a_chip_at_a_students_resolution_keeps_its_size_and_loses_its_detail():
    tool = _tool("teacher_framing")
    rng = np.random.default_rng(0)
    chip = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)  # all detail
    same = tool._at_size(chip, 150)
    assert same.shape == chip.shape and np.array_equal(same, chip)
    small = tool._at_size(chip, 56.3)
    assert small.shape == chip.shape and small.dtype == np.uint8
    assert small.std() < 0.6 * chip.std()  # shrinking averaged the noise away
    flat = np.full_like(chip, 90)
    assert np.array_equal(tool._at_size(flat, 20), flat)  # nothing to lose, nothing lost


@pytest.mark.parametrize("tool", ["hubness.py", "teacher_fit.py"])
def test_a_run_dir_that_is_not_one_is_refused_in_one_line(tool, tmp_path):
    # As for `siamese` commands: the path and the problem, exit status 1, no traceback.
    missing = tmp_path / "no_such_run"
    r = subprocess.run([sys.executable, str(TOOL.parent / tool), str(missing)], capture_output=True, text=True,
                       timeout=300, env={k: v for k, v in os.environ.items() if k != "SIAMESE_DEBUG"})
    lines = [x for x in r.stderr.splitlines() if x.startswith(tool.removesuffix(".py") + ":")]
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(lines) == 1 and str(missing) in lines[0]


def test_rounded_weights_keep_their_bits_and_pack_smaller():
    # tools/round_weights.py: 11 significant bits -> relative change <= 2**-11, idempotent, zeros,
    # infinities and NaN kept, float32's range kept (no overflow as a float16 cast would), and the
    # low mantissa byte all zero, so the packed planes shrink.
    import lzma

    from siamese.model.packed import _planes

    tool = _tool("round_weights")
    rng = np.random.default_rng(0)
    a = (rng.standard_normal(200_000) * 0.05).astype(np.float32)
    a[:4] = [0.0, np.inf, 1e30, 1e-30]
    r = tool.round_bits(a)
    assert r.dtype == np.float32 and r[0] == 0 and np.isinf(r[1])
    assert abs(r[2] / 1e30 - 1) <= 2 ** -11 and abs(r[3] / 1e-30 - 1) <= 2 ** -11
    rel = np.abs(r[4:] - a[4:]) / np.abs(a[4:])
    assert rel.max() <= 2 ** -11 and rel.max() > 2 ** -13  # rounded, not truncated to nothing
    assert np.array_equal(tool.round_bits(r), r)
    assert not (r.view(np.uint32) & 0x1FFF).any()
    assert np.isnan(tool.round_bits(np.array([np.nan], np.float32))[0])
    size = lambda x: len(lzma.compress(_planes(x.tobytes())))  # noqa: E731
    assert size(r) < 0.7 * size(a)
    assert np.array_equal(tool.round_bits(a, 24), a)
    with pytest.raises(ValueError, match="bits"):
        tool.round_bits(a, 0)


def test_round_weights_writes_a_packed_rounded_copy_and_keeps_the_original(tmp_path, monkeypatch):
    # The tool on a tiny ONNX network: the copy's packed network unpacks (hash-checked, as on first
    # use) to the same graph with rounded weights; the original dir is untouched; an existing
    # output folder is refused in one line.
    import hashlib
    import json

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from siamese.model.packed import weights_path

    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
                              [numpy_helper.from_array(w, "w")])
    src = tmp_path / "model"
    src.mkdir()
    onnx.save(helper.make_model(graph), str(src / "embedding.onnx"))
    (src / "head.onnx").write_bytes(b"head")
    (src / "model.json").write_text(json.dumps({"input_size": 8, "files": {"embedding.keras": "ab" * 32},
                                                "formats": ["keras", "onnx"]}))
    (src / "MODEL_CARD.md").write_text("# card\n| accuracy | 0.9 |\n")
    (src / "verify.json").write_text("{}")  # fitted for the source: not copied
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    out = tmp_path / "rounded"
    run = [sys.executable, str(TOOL.parent / "round_weights.py"), str(src), str(out)]
    r = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "embedding.onnx.planes.xz", "head.onnx",
                                                     "model.json"]
    meta = json.loads((out / "model.json").read_text())
    # The source's Keras weights are not the copy's: dropped, so its fingerprint names the rounded ONNX.
    assert "embedding.keras" not in meta["files"] and meta["formats"] == ["onnx"]
    assert meta["weights_rounded"]["source_sha256"] == {"embedding.keras": "ab" * 32}
    card = (out / "MODEL_CARD.md").read_text()
    assert "another model" in card and meta["files"]["MODEL_CARD.md"] == hashlib.sha256(card.encode()).hexdigest()
    packed = out / "embedding.onnx.planes.xz"
    assert meta["files"]["embedding.onnx.planes.xz"] == hashlib.sha256(packed.read_bytes()).hexdigest()
    assert meta["weights_rounded"]["significant_bits"] == 11
    monkeypatch.setenv("SIAMESE_CACHE", str(tmp_path / "cache"))
    got = numpy_helper.to_array(onnx.load(str(weights_path(out, "embedding.onnx"))).graph.initializer[0])
    assert np.array_equal(got, _tool("round_weights").round_bits(w)) and not np.array_equal(got, w)
    r = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "already exists" in r.stderr
