"""Shared fixtures: the real LFW copy and sample media beside the repo (../shared/datasets)."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


def _need(path: Path, what: str) -> Path:
    if path.exists():
        return path
    msg = f"{what} not found at {path} — set LFW_ROOT / SIAMESE_SAMPLES or place ../shared/datasets"
    if os.environ.get("CI"):
        pytest.fail(msg)  # CI always has the shared data: a missing copy is a failure, not a skip
    pytest.skip(msg)


@pytest.fixture(scope="session")
def lfw_root() -> Path:
    return _need(Path(os.environ.get("LFW_ROOT", SHARED / "lfw")), "LFW")


@pytest.fixture(scope="session")
def samples() -> Path:
    return _need(Path(os.environ.get("SIAMESE_SAMPLES", SHARED / "samples")), "sample media")


@pytest.fixture(scope="session")
def yunet():
    from siamese.faces.detect import YuNetDetector

    return YuNetDetector()


@pytest.fixture(scope="session")
def known_faces(samples, yunet):
    """The first face of each photo in samples/knn_examples/train/ (9 photos of 5 people), aligned
    at 112 px: (9, 112, 112, 3) uint8 RGB."""
    import numpy as np

    from siamese.faces.align import align
    from siamese.io.images import read_image

    out = []
    for p in sorted((samples / "knn_examples" / "train").rglob("*.jp*g")):
        image = read_image(p)
        out += [align(image, f.landmarks, 112) for f in yunet.detect(image)[:1]]
    return np.stack(out)


def small_cache(tmp_path_factory, lfw_root: Path, people: int, pairs: int, size: int, workers: int) -> Path:
    """A small real face cache, aligned by the real detector: the first `people` View 1 training
    people and the faces of 2 x `pairs` View 1 test pairs (`pairs` same, `pairs` different)."""
    from siamese.data import cache
    from siamese.data.lfw import LFW

    lfw = LFW(lfw_root)
    chosen = dict(list(lfw.people("view1_train").items())[:people])
    test = lfw.pairs("view1_test")
    test = [p for p in test if p.same][:pairs] + [p for p in test if not p.same][:pairs]
    refs = set(lfw.identities(chosen)) | {r for p in test for r in (p.a, p.b)}
    out = tmp_path_factory.mktemp("cache")
    cache.build(lfw, out, {"_target_": "siamese.faces.YuNetDetector"}, size=size, workers=workers,
                refs=list(refs), progress=False)
    return out


@pytest.fixture(scope="session")
def small(tmp_path_factory, lfw_root):
    """A face cache of 40 DevTrain people (and the faces of 20 View 1 test pairs) with its teacher
    cache beside it (the teacher extra: tests/test_teacher*.py)."""
    from siamese.model import teacher_cache

    out = small_cache(tmp_path_factory, lfw_root, 40, 10, 112, 2)
    stats = teacher_cache.build(out, lfw_root, workers=2, progress=False)
    return out, lfw_root, stats
