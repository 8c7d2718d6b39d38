"""Full-data checks: `make test-slow` (minutes, not seconds). One full LFW cache (112 px, the size
the shipped models and the training runs use) is built once and shared."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from siamese.data import cache
from siamese.data.lfw import LFW

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def full_cache(lfw_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("lfw_cache")
    stats = cache.build(LFW(lfw_root), out, {"_target_": "siamese.faces.YuNetDetector"},
                        size=112, workers=2, progress=False)
    return out, stats


@pytest.mark.slow
def test_full_lfw_central_face_rate(full_cache):
    _, stats = full_cache
    assert stats["images"] == 13233 and stats["errors"] == 0
    assert stats["detection_rate"] >= 0.995


@pytest.mark.slow
def test_verify_rules_compares_both_rules_on_validation_people_only(full_cache, lfw_root):
    """tools/verify_rules.py, the evidence the template rule was chosen on: both rules on the same
    probes of the shipped model's validation people (never the peopleDevTest people calibrate fits on)."""
    out = subprocess.run([sys.executable, "tools/verify_rules.py", "default", "--n-enroll", "5", "--repeats", "2",
                          "--cache", str(full_cache[0]), "--lfw", str(lfw_root)],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    row = r"^\| default_model +\| 5 +\| (\d+) +\| (\d+) +\| (template|share) +\| ([0-9.]+) "
    rows = re.findall(row, out.stdout, re.M)
    assert [r[2] for r in rows] == ["template", "share"], out.stdout
    people = {r[0] for r in rows}
    assert len(people) == 1 and 2 <= int(people.pop()) <= 118  # validation people with 6+ photos
    assert all(0.9 <= float(r[3]) <= 1.0 for r in rows)


@pytest.mark.slow
def test_val_pairs_scores_every_model_on_the_runs_validation_split(full_cache, lfw_root):
    """tools/val_pairs.py, the ship rules' validation figure: the 2,000 pairs of the 118 people every
    official run held out (seed 42), each model scored alike; an ensemble and its members side by side."""
    out = subprocess.run([sys.executable, "tools/val_pairs.py", "default", "distilled", "--cache", str(full_cache[0]),
                          "--lfw", str(lfw_root)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "580 faces of 118 validation people, 2000 pairs" in out.stdout
    assert "| head_accuracy | head_auc |" in out.stdout  # the same pairs by each model's own pair score
    rows = dict(re.findall(r"^\| (default|distilled) +\| ([0-9.]+) ", out.stdout, re.M))
    assert set(rows) == {"default", "distilled"}
    assert all(0.85 <= float(v) <= 1.0 for v in rows.values())
    # The ensemble holds the student: it separates the validation people at least as well.
    assert float(rows["default"]) >= float(rows["distilled"])
