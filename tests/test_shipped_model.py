"""The model that ships in siamese/assets/default_model: intact, consistent, honest.

It is an ensemble (`siamese.model.ensemble`) of two networks stored inside it, each a model dir of
its own and loadable by name: `lfw_only` (112 px, LFW identities only: the research baseline) and
`distilled` (64 px, distilled from dlib's public-domain descriptor: the fast variant). Its int8 form,
`int8` (the same two networks quantized, `siamese.model.quantize`), is a dir inside it that names them, and
so is `bf16` (the same two networks run by OpenVINO in bfloat16)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from siamese.model.embedder import Embedder

SHIPPED = Path(__file__).resolve().parents[1] / "siamese" / "assets" / "default_model"
MEMBERS = {"lfw_only": SHIPPED / "members" / "1-lfw_only", "distilled": SHIPPED / "members" / "2-distilled"}
INT8 = SHIPPED / "int8"
BF16 = SHIPPED / "bf16"


def test_files_match_their_recorded_checksums():
    meta = json.loads((SHIPPED / "model.json").read_text())
    assert [SHIPPED / p for p in meta["ensemble"]] == list(MEMBERS.values())
    for member in MEMBERS.values():
        m = json.loads((member / "model.json").read_text())
        assert m["formats"] == ["onnx"] and "embedding.keras" not in m["files"]  # rounded: its own weights
        for name, digest in m["files"].items():
            if name in m["not_shipped"] and not (member / name).exists():
                continue  # embedding.onnx: stored packed, unpacked on first use
            assert hashlib.sha256((member / name).read_bytes()).hexdigest() == digest, (member.name, name)
    # Two networks (6.0 M + 2.1 M parameters, ONNX rounded to 11 significant bits, packed) and their
    # calibrations: 15 MiB. The bound (issue 13's 20 MB, as `du -h` counts) catches a second format
    # coming back (.keras, SavedModel, TFLite), an unpacked ONNX in the tree, or a bigger network.
    size = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert size <= 20 * 2**20


def test_the_packed_networks_unpack_to_the_recorded_onnx(tmp_path, monkeypatch):
    """The tree holds each embedding.onnx packed; a new user's first load unpacks it into their
    cache, byte for byte the ONNX model.json names, and loads it from there."""
    from siamese.model.packed import weights_path

    monkeypatch.setenv("SIAMESE_CACHE", str(tmp_path / "cache"))
    for member in MEMBERS.values():
        meta = json.loads((member / "model.json").read_text())
        got = weights_path(member, "embedding.onnx")
        assert got.parent.parent == tmp_path / "cache" / "models"
        assert hashlib.sha256(got.read_bytes()).hexdigest() == meta["files"]["embedding.onnx"]
    model = Embedder.load(SHIPPED)
    assert model.format == "onnx+onnx" and model.dim == 256 and model.input_size == 112
    assert [m.input_size for m in model.members] == [112, 64] and [m.dim for m in model.members] == [128, 128]


def test_the_shipped_models_load_by_name(tmp_path, monkeypatch):
    # `model_path=lfw_only` anywhere a model is taken; a folder of that name where the command runs wins.
    for name, where in {"default": SHIPPED, **MEMBERS, "int8": INT8, "bf16": BF16}.items():
        assert Path(Embedder.load(name).path).resolve() == where.resolve()
    (tmp_path / "lfw_only").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no model.json"):
        Embedder.load("lfw_only")


def test_it_says_what_it_learned_from():
    # LFW's result category: outside data (the teacher) once any member distilled; the LFW-only
    # member keeps "no outside data"; the card names the teacher and its licence.
    meta = json.loads((SHIPPED / "model.json").read_text())
    assert meta["lfw_category"] == "unrestricted, labeled outside data"
    assert "public domain" in meta["distillation"]["teacher"]["licence"]
    assert [r["lfw_category"] for r in meta["members"]] == ["unrestricted, no outside data",
                                                           "unrestricted, labeled outside data"]
    card = (SHIPPED / "MODEL_CARD.md").read_text()
    assert "unrestricted, labeled outside data" in card and "public domain" in card


def test_it_knows_who_it_saw_and_they_are_view1_training_people(lfw_root):
    from siamese.data.lfw import LFW

    lfw = LFW(lfw_root)
    test_people = {p.a.person for p in lfw.pairs("view1_test")} | {p.b.person for p in lfw.pairs("view1_test")}
    for where in (SHIPPED, *MEMBERS.values()):
        people = json.loads((where / "people.json").read_text())
        seen = set(people["seen"])
        assert seen == set(lfw.people("view1_train")), where
        assert len(people["validation"]) == 118 and set(people["validation"]) <= seen  # held out
        assert not seen & test_people


@pytest.fixture(scope="module")
def real_faces(lfw_root):
    from siamese.faces.detect import YuNetDetector, central_face
    from siamese.io.images import read_image

    model = Embedder.load(SHIPPED)
    det = YuNetDetector()
    crops = []
    for person, n in (("Aaron_Peirsol", 1), ("Aaron_Peirsol", 2), ("Abdullah_Gul", 1), ("Adam_Sandler", 1)):
        image = read_image(lfw_root / "lfw" / person / f"{person}_{n:04d}.jpg")
        crops.append(model.crops(image, [central_face(det.detect(image), image.shape)])[0])
    return np.stack(crops)


def test_the_fingerprints_name_the_stored_networks():
    """Galleries and stranger banks are made under these names: each member's names its rounded
    ONNX and head (as model.json records them), the ensemble's its members' in order, and each has
    a stranger bank keyed to it."""
    model = Embedder.load(SHIPPED)
    for member in model.members:
        files = member.meta["files"]
        want = hashlib.sha256(f"onnx:{files['embedding.onnx']}:{files['head.onnx']}".encode()).hexdigest()
        assert member.fingerprint() == want and member.impostor_bank() is not None
    fps = ":".join(m.fingerprint() for m in model.members)
    assert model.fingerprint() == hashlib.sha256(f"ensemble:{fps}".encode()).hexdigest()
    assert model.impostor_bank() is not None


def test_the_int8_model_runs_the_same_networks_quantized_with_its_own_calibrations(lfw_root):
    """`int8` names the members' own dirs (no weights stored twice); each member's quantization.json
    was fitted for its float32 ONNX and on its training people only; the int8 ensemble has its own
    fingerprint and its own thresholds and stranger bank under it."""
    from siamese.data.lfw import LFW

    meta = json.loads((INT8 / "model.json").read_text())
    assert meta["precision"] == "int8" and [(INT8 / p).resolve() for p in meta["ensemble"]] == [
        m.resolve() for m in MEMBERS.values()]
    assert not any(p.name.endswith((".onnx", ".xz", ".keras")) for p in INT8.iterdir())
    train = set(LFW(lfw_root).people("view1_train"))
    for member in MEMBERS.values():
        q = json.loads((member / "quantization.json").read_text())
        assert q["float32_sha256"] == json.loads((member / "model.json").read_text())["files"]["embedding.onnx"]
        people = json.loads((member / "people.json").read_text())
        drawn = set(q["fitted_on"]["drawn_from"])
        assert len(drawn) == q["fitted_on"]["people"] and drawn <= set(people["seen"]) - set(people["validation"])
        assert drawn <= train  # View 1 training people: no validation or test person
    model, plain = Embedder.load("int8"), Embedder.load(SHIPPED)
    assert [m.precision for m in model.members] == ["int8", "int8"]
    assert (model.runs_in, plain.runs_in) == ("int8", "float32")  # what the bench's precision column reads
    assert model.fingerprint() != plain.fingerprint() and model.impostor_bank() is not None
    for name in ("cluster.json", "verify.json"):
        assert model.calibration(name) is not None, name  # fitted for this fingerprint
    assert (INT8 / "people.json").read_text() == (SHIPPED / "people.json").read_text()


def test_the_bf16_model_runs_the_same_networks_in_bfloat16_with_its_own_calibrations(real_faces):
    """`bf16` names the members' own dirs and stores no weights: OpenVINO runs their float32 ONNX networks
    in bfloat16 (float32 on a CPU without bfloat16 units). Its embeddings stay within ~1e-4 cosine of
    float32's, and it has its own fingerprint, thresholds and stranger bank."""
    from siamese.faces.align import resize_faces

    meta = json.loads((BF16 / "model.json").read_text())
    assert meta["precision"] == "bf16" and [(BF16 / p).resolve() for p in meta["ensemble"]] == [
        m.resolve() for m in MEMBERS.values()]
    assert not any(p.name.endswith((".onnx", ".xz", ".keras")) for p in BF16.iterdir())
    model, plain = Embedder.load("bf16"), Embedder.load(SHIPPED)
    assert [m.precision for m in model.members] == ["bf16", "bf16"]
    assert "**bf16**" in (BF16 / "MODEL_CARD.md").read_text()
    faces = resize_faces(real_faces, model.input_size)
    cos = np.sum(model.embed(faces) * plain.embed(faces), axis=1)
    assert cos.min() > 0.9995, cos  # int8's networks: ~0.998
    if model.runs_in == "bf16":  # it really ran in bfloat16: not float32's numbers
        assert 1 - cos.min() > 1e-6, cos
    else:  # a CPU without bfloat16 units: float32 on OpenVINO, the same numbers to rounding
        assert model.runs_in == "float32" and 1 - cos.min() < 1e-6, (model.runs_in, cos)
    assert [m.runs_in for m in model.members] == [model.runs_in] * 2
    assert model.fingerprint() != plain.fingerprint() and model.impostor_bank() is not None
    for name in ("cluster.json", "verify.json"):
        assert model.calibration(name) is not None, name  # fitted for this fingerprint
    assert (BF16 / "people.json").read_text() == (SHIPPED / "people.json").read_text()


def test_a_cpu_without_bfloat16_units_is_said_once_not_once_per_member(monkeypatch, caplog):
    import openvino as ov

    from siamese.model import embedder

    class NoBF16(ov.Core):
        def get_property(self, device, name, *rest):
            if name == "OPTIMIZATION_CAPABILITIES":
                return ["FP32", "INT8"]
            return super().get_property(device, name, *rest)

    monkeypatch.setattr(ov, "Core", NoBF16)
    embedder._bfloat16_units.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="siamese.model.embedder"):
            assert len(Embedder.load("bf16").members) == 2 and Embedder.load("distilled", precision="bf16")
    finally:
        embedder._bfloat16_units.cache_clear()
    assert caplog.text.count("no bfloat16 instructions") == 1, caplog.text


def test_without_openvino_bf16_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    import sys

    from siamese.cli import run

    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    with pytest.raises(ImportError, match=r"^precision bf16 runs on OpenVINO, which is not installed: pip install"):
        Embedder.load("bf16")
    assert run("evaluate", ["bf16", f"out={tmp_path / 'e'}"]) == 1  # the command: one line, no traceback
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: precision bf16 runs on OpenVINO") and "Traceback" not in "\n".join(err)
    with pytest.raises(ValueError, match="'float32', 'int8', 'bf16'"):
        Embedder.load("distilled", precision="fp16")


def test_a_bf16_network_can_be_called_from_several_threads(real_faces):
    """One OpenVINO request behind a lock: threads (the HTTP service's) take turns and each gets its own result."""
    from concurrent.futures import ThreadPoolExecutor

    from siamese.faces.align import resize_faces

    model = Embedder.load("distilled", precision="bf16")
    faces = resize_faces(real_faces, model.input_size)
    alone = [model.embed(faces[i:i + 1]) for i in range(len(faces))]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda i: model.embed(faces[i:i + 1]), [*range(len(faces))] * 3))
    for i, e in enumerate(together):
        np.testing.assert_allclose(e, alone[i % len(faces)], atol=1e-6)


@pytest.mark.parametrize("name", ["default", "lfw_only", "distilled", "int8", "bf16"])
def test_same_person_outscores_different_people(real_faces, name):
    from siamese.faces.align import resize_faces

    model = Embedder.load(name)
    e = model.embed(resize_faces(real_faces, model.input_size))
    same = model.score(e[:1], e[1:2])[0]          # Aaron Peirsol twice
    diff = model.score(e[[0, 0, 2]], e[[2, 3, 3]])  # three different pairs
    assert same > diff.max()
