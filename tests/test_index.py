"""`siamese index` (a library -> Parquet faces with embeddings, by Ray or locally) and the commands
that read an index: the same faces and embeddings as the one-process path, resume after a kill
without duplicates, bad files counted as `detect` counts them, one line without the extra."""

import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from siamese.faces.detect import YuNetDetector
from siamese.faces.folder import detect_folder, read_manifest
from siamese.io.images import read_image
from siamese.io.video import FrameSource
from siamese.library.build import build_index
from siamese.model.embedder import Embedder

try:  # the scale extra, which `make test` installs: without it these tests fail, saying so (never skip)
    import pyarrow  # noqa: F401
    import ray
except ImportError as err:
    raise ImportError(f"tests/test_index.py needs the scale extra ({err.name} is missing): "
                      "pip install -e '.[scale]' (make test installs it)") from None
from siamese.library.table import open_index  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
YUNET = {"_target_": "siamese.faces.YuNetDetector"}


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray (2 CPUs) for every test here; `build_index` uses a Ray already started."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def library(samples, tmp_path_factory) -> Path:
    """A small library: 12 photos in folders (knn_examples/train: <person>/<photo>) and one video."""
    root = tmp_path_factory.mktemp("library")
    for p in sorted((samples / "knn_examples" / "train").glob("*/*")):
        (root / p.parent.name).mkdir(exist_ok=True)
        os.symlink(p, root / p.parent.name / p.name)
    for p in sorted((samples / "photos").glob("*.jpg")):
        os.symlink(p, root / p.name)
    os.symlink(samples / "video" / "oval_office_news_clip.mp4", root / "news.mp4")
    return root


@pytest.fixture(scope="session")
def ray_index(library, ray_session, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("indexes") / "ray.parquet"
    build_index(library, out, detector=YUNET, backend="ray", shard_size=4, progress=False)
    return out


def _rows(index) -> dict:
    """{(source, frame, face): row} of a whole index."""
    out = {}
    for b in open_index(index).batches():
        for i in range(len(b["source"])):
            key = (b["source"][i], int(b["frame"][i]), int(b["face"][i]))
            assert key not in out, f"duplicate row {key}"
            out[key] = {k: v[i] for k, v in b.items()}
    return out


def test_ray_index_has_the_faces_and_embeddings_of_the_local_path(library, ray_index, tmp_path):
    rows = _rows(ray_index)
    photos = detect_folder(library, tmp_path / "photos", YuNetDetector(), save_crops=False, progress=False)
    video = detect_folder(library / "news.mp4", tmp_path / "video", YuNetDetector(), save_crops=False,
                          progress=False)
    assert len(rows) == photos["faces"] + video["faces"] > 50
    manifest = [(r, r["source"]) for r in read_manifest(tmp_path / "photos" / "manifest.csv")]
    manifest += [(r, "news.mp4") for r in read_manifest(tmp_path / "video" / "manifest.csv")]
    for r, source in manifest:
        row = rows[(source, int(r["frame"] or -1), int(r["face"]))]
        assert np.allclose(row["box"], [float(r[c]) for c in "xywh"], atol=0.051)
        assert np.allclose(row["landmarks"], [float(r[c]) for c in list(r)[9:19]], atol=0.051)
    embedder, detector = Embedder.load(), YuNetDetector()
    for source in ("two_people.jpg", "obama/obama.jpg"):  # photos: as `Embedder.embed_faces` embeds them
        image = read_image(library / source)
        emb = embedder.embed_faces(image, detector.detect(image))
        got = np.stack([rows[(source, -1, k)]["embedding"] for k in range(len(emb))])
        np.testing.assert_allclose(got, emb, atol=1e-5)
    with FrameSource(str(library / "news.mp4"), every_s=1.0) as src:  # and the video's sampled frames
        for fr in list(src)[:6]:
            faces = detector.detect(fr.image)
            emb = embedder.embed_faces(fr.image, faces)
            got = np.stack([rows[("news.mp4", fr.index, k)]["embedding"] for k in range(len(faces))])
            np.testing.assert_allclose(got, emb, atol=1e-5)
    meta = open_index(ray_index).meta
    assert {r["model"] for r in rows.values()} == {meta["model"]} == {embedder.fingerprint()}
    assert rows[("obama/obama.jpg", -1, 0)]["label"] == "obama" and rows[("two_people.jpg", -1, 0)]["label"] == ""


def test_local_backend_writes_the_same_index(library, ray_index, tmp_path):
    local = build_index(library, tmp_path / "local.parquet", detector=YUNET, backend="local", shard_size=4,
                        progress=False)
    a, b = _rows(ray_index), _rows(tmp_path / "local.parquet")
    assert a.keys() == b.keys() and local["shards"] == 4
    for key in a:
        np.testing.assert_allclose(a[key]["embedding"], b[key]["embedding"], atol=1e-5)
        assert a[key]["sha256"] == b[key]["sha256"] and a[key]["sharpness"] == pytest.approx(b[key]["sharpness"])
    assert sorted(p.name for p in (tmp_path / "local.parquet").glob("part-*")) == sorted(
        p.name for p in ray_index.glob("part-*"))


def test_a_rerun_skips_what_is_written(library, ray_index):
    s = build_index(library, ray_index, detector=YUNET, backend="ray", shard_size=4, progress=False)
    assert s["shards_written"] == 0 and s["shards_resumed"] == s["shards"] == 4


def _index_cmd(library, out, backend="local"):
    return [sys.executable, "-m", "siamese.cli", "index", str(library), "--out", str(out), f"backend={backend}",
            "shard_size=1", "progress=false"]


@pytest.mark.parametrize("backend", ["local", pytest.param("ray", marks=pytest.mark.slow)])
def test_killed_index_resumes_without_duplicates(library, tmp_path, backend):
    out = tmp_path / "killed.parquet"
    proc = subprocess.Popen(_index_cmd(library, out, backend), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 90
    while not list(out.glob("part-*.parquet")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = len(list(out.glob("part-*.parquet")))
    assert 0 < first < 13, "killed after the first shard and before the last"
    r = subprocess.run(_index_cmd(library, out, backend), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{first} already there" in r.stdout
    clean = tmp_path / "clean.parquet"
    build_index(library, clean, detector=YUNET, backend="local", shard_size=1, progress=False)
    a, b = _rows(out), _rows(clean)  # _rows fails on a duplicate
    assert a.keys() == b.keys()
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"


def _bad_corpus(root: Path, samples: Path) -> Path:
    root.mkdir()
    good = (samples / "photos" / "two_people.jpg").read_bytes()
    (root / "good.jpg").write_bytes(good)
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("not a photo at all\n")
    (root / "truncated.jpg").write_bytes(good[: len(good) // 2])
    return root


def test_bad_files_are_skipped_and_counted_as_detect_does(tmp_path, samples, ray_session, caplog):
    corpus = _bad_corpus(tmp_path / "corpus", samples)
    with caplog.at_level(logging.WARNING):
        d = detect_folder(corpus, tmp_path / "detected", YuNetDetector(), progress=False)
    detect_lines = sorted(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        s = build_index(corpus, tmp_path / "bad.parquet", detector=YUNET, backend="ray", shard_size=2,
                        progress=False)
    index_lines = sorted(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert index_lines == detect_lines and len(index_lines) == 3
    assert s["errors_by_reason"] == d["errors_by_reason"] == {"empty": 1, "not_image": 1, "truncated": 1}
    assert (s["sources"], s["frames"], s["faces"]) == (d["sources"], d["frames"], d["faces"]) == (4, 1, 2)


def test_without_ray_one_line_says_how_to_install(tmp_path, samples, monkeypatch, capsys):
    import importlib.util

    from siamese import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    code = cli.run("index", [str(samples / "photos"), "--out", str(tmp_path / "i.parquet"), "progress=false"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "pip install 'siamese[scale]'" in err[0] and "ray" in err[0]
    assert not (tmp_path / "i.parquet").exists()


def test_an_index_of_other_settings_is_refused(library, ray_index):
    with pytest.raises(FileExistsError, match="every_s"):
        build_index(library, ray_index, detector=YUNET, backend="ray", every_s=2.0, progress=False)
    assert Counter(p.suffix for p in ray_index.iterdir())[".parquet"] == 4


@pytest.fixture(scope="session")
def people_index(samples, ray_session, tmp_path_factory) -> tuple[Path, Path]:
    """knn_examples/train (5 people, <person>/<photo>) and its index."""
    folder = samples / "knn_examples" / "train"
    out = tmp_path_factory.mktemp("people") / "train.parquet"
    build_index(folder, out, detector=YUNET, backend="ray", shard_size=3, progress=False)
    return folder, out


def _manifest(folder: Path) -> dict:
    keep = ["crop", "source", "face", "x", "y", "w", "h", "det_score", "frontalness", "sharpness", "cluster",
            "label", "note"]
    return {r["crop"]: {k: r[k] for k in keep} for r in read_manifest(folder / "manifest.csv")}


def test_cluster_from_the_index_matches_the_photo_folder(people_index, tmp_path):
    from siamese.clustering.from_index import cluster_index
    from siamese.clustering.group import cluster

    folder, index = people_index
    embedder = Embedder.load()
    a = cluster(folder, tmp_path / "from_photos", embedder, YuNetDetector(), labels=True, progress=False)
    b = cluster_index(index, tmp_path / "from_index", embedder, labels=True, progress=False)
    assert (a["faces"], a["people"], a["people_sizes"], a["unassigned"]) == \
        (b["faces"], b["people"], b["people_sizes"], b["unassigned"])
    assert a["metrics"] == b["metrics"]
    assert _manifest(tmp_path / "from_photos") == _manifest(tmp_path / "from_index")
    for crop in _manifest(tmp_path / "from_index"):  # the same crops, cut again from the sources
        pa, pb = read_image(tmp_path / "from_photos" / crop), read_image(tmp_path / "from_index" / crop)
        assert np.abs(pa.astype(int) - pb).max() <= 1
    assert (tmp_path / "from_index" / "overview.jpg").is_file()


def test_cluster_command_reads_an_index(people_index, tmp_path):
    _, index = people_index
    r = subprocess.run([sys.executable, "-m", "siamese.cli", "cluster", str(index), "--out", str(tmp_path / "p"),
                        "progress=false"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "faces" in r.stdout and (tmp_path / "p" / "manifest.csv").is_file()


def test_gallery_import_from_the_index_matches_the_folder(people_index, tmp_path):
    from siamese.gallery.enrol import import_folder
    from siamese.gallery.from_index import import_index
    from siamese.gallery.store import Gallery

    folder, index = people_index
    embedder = Embedder.load()
    with Gallery(tmp_path / "a.sqlite", embedder.identity()) as ga, \
            Gallery(tmp_path / "b.sqlite", embedder.identity()) as gb:
        ra = import_folder(ga, embedder, YuNetDetector(), folder)
        rb = import_index(gb, embedder, index)
        assert ra == rb and ga.people() == gb.people() and len(ga.people()) == 5
        for person, _ in ga.people():
            np.testing.assert_allclose(ga.person(person), gb.person(person), atol=1e-5)
        assert sorted(s["sha256"] for s in ga.sources()) == sorted(s["sha256"] for s in gb.sources())
        again = import_index(gb, embedder, index)  # the same photos again: duplicates, nothing added
        assert sum(r["added"] for r in again.values()) == 0
        assert sum(r["duplicates"] for r in again.values()) == sum(r["added"] for r in rb.values())
