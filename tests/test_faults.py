"""Faults a user's machine really has: `kill -9` in the middle of a command, and a full disk.

Commands: gallery import, enrol from a video, cluster, detect.

Each command is run as the user runs it (`python -m siamese.cli ...` in a subprocess) and killed
with SIGKILL at a moment it is known to be half way (its progress line printed, or its staging
folder holding files). Afterwards the store or output folder is what it was before or what it is
after, never in between; running the command again finishes the work; no temporary is left.
A full disk is a file-size limit (RLIMIT_FSIZE) on the child: every write past it fails as on a
full disk, with the kernel's own error.
"""

import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from siamese.gallery import Gallery

REPO = Path(__file__).resolve().parents[1]


def _cli(*args, **popen):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "siamese.cli", *map(str, args)], cwd=popen.pop("cwd", REPO),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _finish(*args, **popen):
    p = _cli(*args, **popen)
    out, err = p.communicate(timeout=300)
    return p.returncode, out, err


def _kill_when(proc, ready, timeout=180):
    """SIGKILL `proc` as soon as `ready()` is true; fails if it ends first."""
    t0 = time.monotonic()
    while not ready():
        assert proc.poll() is None, f"ended before the kill: {proc.stderr.read()[-1500:]}"
        assert time.monotonic() - t0 < timeout, "never got half way"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if ".tmp" in p.name or ".old-" in p.name)


@pytest.fixture(scope="module")
def people(tmp_path_factory, lfw_root):
    """known/<person>/ with 2 LFW photos each, 8 people."""
    root = tmp_path_factory.mktemp("known")
    names = sorted(p.name for p in (lfw_root / "lfw").iterdir() if len(list(p.iterdir())) >= 2)[:8]
    for name in names:
        (root / name).mkdir()
        for photo in sorted((lfw_root / "lfw" / name).iterdir())[:2]:
            shutil.copy(photo, root / name / photo.name)
    return root


def _count(db: Path) -> int:
    """People in the gallery at `db` as another reader sees them now (0 while it cannot be read)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as c:
            return c.execute("SELECT COUNT(*) FROM people").fetchone()[0]
    except sqlite3.Error:
        return 0


def _integrity(db: Path) -> str:
    return sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0]


@pytest.fixture(scope="module")
def expected(people, tmp_path_factory):
    """{person: faces} that an import of `people` which nothing interrupts stores."""
    db = tmp_path_factory.mktemp("clean") / "g.sqlite"
    code, _, err = _finish("gallery", "import", people, f"db={db}", "calibration.people=20")
    assert code == 0, err[-1500:]
    with Gallery(db) as g:
        return dict(g.people())


def test_import_killed_half_way_keeps_whole_people_and_finishes_when_run_again(people, expected, tmp_path):
    db = tmp_path / "g.sqlite"
    args = ("gallery", "import", people, f"db={db}", "calibration.people=20")
    proc = _cli(*args)
    _kill_when(proc, lambda: _count(db) >= 1)  # the first person committed
    assert _integrity(db) == "ok"
    with Gallery(db) as g:
        before = dict(g.people())
    assert 1 <= len(before) < 8 and all(n == expected[p] for p, n in before.items())  # whole people only
    code, out, err = _finish(*args)
    assert code == 0, err[-1500:]
    with Gallery(db) as g:
        assert dict(g.people()) == expected
    assert _hidden(tmp_path) == []


def test_enrolment_from_a_video_killed_half_way_adds_no_one_and_leaves_nothing(samples, tmp_path):
    db = tmp_path / "g.sqlite"
    clip = samples / "video" / "short_hamilton_clip.mp4"
    args = ("enroll", clip, "--person", "lin", f"db={db}", "video.count=5", "video.every_s=0.2",
            "calibration.people=20")
    proc = _cli(*args)
    frames = tmp_path / "g.sqlite.frames"
    _kill_when(proc, lambda: any(p.suffix == ".jpg" for p in frames.rglob("*")))  # frames being staged
    if db.exists():
        with Gallery(db) as g:
            assert dict(g.people()).get("lin", 0) in (0, 5) and "lin" not in {n for n, c in g.people() if c == 0}
    code, out, err = _finish(*args)
    assert code == 0, err[-1500:]
    with Gallery(db) as g:
        assert dict(g.people())["lin"] >= 5
        on_disk = sorted(str(p) for p in frames.rglob("*.jpg"))
        assert on_disk == sorted(s["source"] for s in g.sources())  # every frame is in the store, and only those
    assert _hidden(tmp_path) == []  # the killed run's staging folder was swept


def test_cluster_killed_half_way_leaves_no_output_and_finishes_when_run_again(people, tmp_path):
    out = tmp_path / "people"
    args = ("cluster", people, "--out", out, "progress=false")
    proc = _cli(*args)
    _kill_when(proc, lambda: any(p.is_file() for p in tmp_path.glob(".people.tmp-*/_staging/**/*")))
    assert not out.exists()  # never a half result
    code, _, err = _finish(*args)
    assert code == 0, err[-1500:]
    assert (out / "summary.json").exists() and _hidden(tmp_path) == []


def test_detect_killed_half_way_leaves_no_output_and_finishes_when_run_again(samples, tmp_path):
    out = tmp_path / "faces"
    args = ("detect", samples / "video" / "short_hamilton_clip.mp4", "--out", out, "every_s=0.1", "progress=false")
    proc = _cli(*args)
    _kill_when(proc, lambda: any(p.is_file() for p in tmp_path.glob(".faces.tmp-*/crops/**/*")))
    assert not out.exists()  # never a half result
    code, _, err = _finish(*args)
    assert code == 0, err[-1500:]
    assert (out / "manifest.csv").exists() and _hidden(tmp_path) == []


def _disk_full_at(limit: int):
    def limit_file_size():  # writes past `limit` bytes fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_file_size


def test_a_full_disk_during_enrolment_is_one_line_and_the_store_is_intact(people, expected, samples, tmp_path):
    db = tmp_path / "g.sqlite"
    code, _, err = _finish("enroll", samples / "reference_faces" / "obama_small.jpg", "--person", "obama",
                           f"db={db}", "calibration.people=20")
    assert code == 0, err[-1500:]
    with Gallery(db) as g:
        before = dict(g.people())
    size = db.stat().st_size
    code, out, err = _finish("gallery", "import", people, f"db={db}", "calibration.people=20",
                             preexec_fn=_disk_full_at(size))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and "Traceback" not in err, err[-2000:]
    assert len(lines) == 1 and str(db) in lines[0] and "could not write" in lines[0], lines
    assert _integrity(db) == "ok"
    with Gallery(db) as g:
        after = dict(g.people())
    assert after["obama"] == before["obama"] and all(n == expected[p] for p, n in after.items() if p != "obama")
    assert f"the {len(after) - 1} people before it are stored" in lines[0]
    code, _, err = _finish("gallery", "import", people, f"db={db}", "calibration.people=20")  # room again
    assert code == 0, err[-1500:]
    with Gallery(db) as g:
        assert dict(g.people()) == {**expected, **before}


def test_a_full_disk_during_cluster_is_one_line_and_leaves_no_half_result(people, tmp_path):
    out = tmp_path / "people"
    code, _, err = _finish("cluster", people, "--out", out, "progress=false", preexec_fn=_disk_full_at(2000))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and "Traceback" not in err, err[-2000:]
    assert len(lines) == 1 and "File too large" in lines[0], lines
    assert not out.exists() and _hidden(tmp_path) == []
