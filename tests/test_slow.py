"""Full-data checks: `make test-slow` (minutes, not seconds)."""

import pytest

from siamese.data import cache
from siamese.data.lfw import LFW


@pytest.mark.slow
def test_full_lfw_central_face_rate(lfw_root, tmp_path):
    stats = cache.build(LFW(lfw_root), tmp_path, {"_target_": "siamese.faces.YuNetDetector"},
                        size=64, workers=2, progress=False)
    assert stats["images"] == 13233 and stats["errors"] == 0
    assert stats["detection_rate"] >= 0.995
