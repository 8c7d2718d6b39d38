import json

import numpy as np
import pytest

from siamese.data import cache
from siamese.data.lfw import LFW

DETECTOR = {"_target_": "siamese.faces.YuNetDetector", "min_score": 0.5, "max_side": 960}


@pytest.fixture(scope="module")
def built(lfw_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache")
    stats = cache.build(LFW(lfw_root), out, DETECTOR, size=64, workers=1, limit=24,
                        progress=False)
    return out, stats


def test_build_writes_aligned_crops_and_an_index(built):
    out, stats = built
    assert stats["images"] == 24 and stats["pending"] == 0
    assert stats["detected"] + stats["fallback"] + stats["errors"] == 24
    assert stats["detected"] >= 23
    fc = cache.load(out)
    assert fc.images.shape == (24, 64, 64, 3) and fc.images.dtype == np.uint8
    assert fc.images.std(axis=(1, 2, 3)).min() > 10  # every row was written (not zeros)
    assert len(fc.refs) == 24 and fc.refs == sorted(fc.refs, key=lambda r: (r.person, r.index))
    assert (out / "index.csv").read_text().count("\n") == 25
    assert json.loads((out / "build.json").read_text())["images_per_s"] > 0


def test_a_killed_build_resumes_and_gives_the_same_crops(built, tmp_path, lfw_root):
    out, _ = built
    reference = cache.load(out).images.copy()
    # Simulate a build killed after its first rows: copy, then mark rows 10.. as never done.
    import shutil

    part = tmp_path / "part"
    shutil.copytree(out, part)
    (part / "build.json").unlink()
    meta = np.load(part / "meta.npy")
    meta["status"][10:] = cache.PENDING
    np.save(part / "meta.npy", meta)
    faces = np.load(part / "faces.npy", mmap_mode="r+")
    faces[10:] = 0
    faces.flush()
    del faces
    with pytest.raises(FileNotFoundError, match="make prepare"):
        cache.load(part)
    stats = cache.build(LFW(lfw_root), part, DETECTOR, size=64, workers=1, limit=24,
                        progress=False)
    assert stats["pending"] == 0
    np.testing.assert_array_equal(cache.load(part).images, reference)


def test_other_settings_refuse_to_reuse_a_cache(built, lfw_root):
    out, _ = built
    with pytest.raises(ValueError, match="different settings"):
        cache.build(LFW(lfw_root), out, DETECTOR, size=96, workers=1, limit=24, progress=False)


def test_rows_lookup(built):
    fc = cache.load(built[0])
    assert fc.rows(fc.refs[3:5]).tolist() == [3, 4]


def test_a_cache_is_used_only_when_it_is_built(built, tmp_path):
    out, _ = built
    assert cache.load_if_built(None) is None and cache.load_if_built(tmp_path / "nothing") is None
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "meta.npy").write_bytes(b"")  # begun, never finished: no build.json
    assert cache.load_if_built(tmp_path / "half") is None
    assert cache.load_if_built(out).refs == cache.load(out).refs
