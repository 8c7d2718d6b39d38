"""Packed weight files (`siamese.model.packed`): lossless, hash-checked, unpacked once per user."""

import hashlib
import json
import os

import numpy as np
import pytest

from siamese.model import packed
from siamese.model.packed import SUFFIX, pack, stored, unpack_bytes, weights_path


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 7, 8, 4099])
def test_pack_then_unpack_gives_the_same_bytes(tmp_path, n):
    src = tmp_path / "w.bin"
    src.write_bytes(np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes())
    assert unpack_bytes(pack(src)) == src.read_bytes()


def test_float_weights_get_smaller(tmp_path):
    src = tmp_path / "w.bin"
    src.write_bytes(np.random.default_rng(0).normal(0, 0.05, 100_000).astype(np.float32).tobytes())
    assert pack(src).stat().st_size < 0.9 * src.stat().st_size  # the planes: the exponent bytes line up


def _model_dir(tmp_path, data: bytes, recorded: str | None = None):
    d = tmp_path / "model"
    d.mkdir()
    (d / "embedding.onnx").write_bytes(data)
    pack(d / "embedding.onnx")
    (d / "embedding.onnx").unlink()
    digest = hashlib.sha256(data).hexdigest() if recorded is None else recorded
    (d / "model.json").write_text(json.dumps({"files": {"embedding.onnx": digest}}))
    return d


def test_first_use_unpacks_into_the_cache_then_reuses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SIAMESE_CACHE", str(tmp_path / "cache"))
    data = os.urandom(1001)
    d = _model_dir(tmp_path, data)
    got = weights_path(d, "embedding.onnx")
    assert got.read_bytes() == data and got.is_relative_to(tmp_path / "cache")
    mtime = got.stat().st_mtime_ns
    hashed = []
    monkeypatch.setattr(packed, "file_digest", lambda p: hashed.append(p) or hashlib.sha256(p.read_bytes()).hexdigest())
    assert weights_path(d, "embedding.onnx") == got and got.stat().st_mtime_ns == mtime  # not unpacked again
    assert hashed == []  # and not hashed again by the process that wrote it
    got.write_bytes(b"tampered")  # a damaged cached copy is hashed, found wrong, made again
    assert weights_path(d, "embedding.onnx").read_bytes() == data and hashed == [got]
    assert weights_path(d, "head.onnx") is None and stored(d, "head.onnx") is None  # neither plain nor packed


def test_a_plain_file_wins_and_nothing_is_unpacked(tmp_path, monkeypatch):
    monkeypatch.setenv("SIAMESE_CACHE", str(tmp_path / "cache"))
    d = _model_dir(tmp_path, b"packed")
    (d / "embedding.onnx").write_bytes(b"plain")
    assert weights_path(d, "embedding.onnx") == d / "embedding.onnx" == stored(d, "embedding.onnx")
    assert not (tmp_path / "cache").exists()


def test_a_packed_file_with_the_wrong_hash_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SIAMESE_CACHE", str(tmp_path / "cache"))
    d = _model_dir(tmp_path, b"weights", recorded="0" * 64)
    with pytest.raises(ValueError, match=r"embedding.onnx.planes.xz: unpacks to SHA-256 .* model.json records 0"):
        weights_path(d, "embedding.onnx")
    assert not list((tmp_path / "cache").rglob("embedding.onnx"))  # nothing left to be used


def test_a_damaged_or_unrecorded_packed_file_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SIAMESE_CACHE", str(tmp_path / "cache"))
    d = _model_dir(tmp_path, b"weights")
    (d / ("embedding.onnx" + SUFFIX)).write_bytes(b"not xz at all")
    with pytest.raises(ValueError, match="not a packed weight file"):
        weights_path(d, "embedding.onnx")
    (d / "model.json").write_text("{}")
    with pytest.raises(ValueError, match="records no SHA-256 for embedding.onnx"):
        weights_path(d, "embedding.onnx")


def test_an_unwritable_cache_says_what_to_set(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")  # a cache "folder" under a file: no one, root included, can write it
    monkeypatch.setenv("SIAMESE_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(OSError, match="set SIAMESE_CACHE to a writable folder"):
        weights_path(_model_dir(tmp_path, b"weights"), "embedding.onnx")
