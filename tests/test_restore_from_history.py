"""tools/restore_from_history.py (`make lfw-only-keras`): a file the tree dropped comes back from git
history only with the bytes model.json records, whatever commit holds them. The tool is stdlib only
(the make target runs it with the system's python3), so the tests run it with `python -S`."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "restore_from_history.py"


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_a_dropped_weight_file_comes_back_checked_by_its_hash(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    _git(tmp_path, "init", "-q")
    for content in (b"old weights", b"the weights"):  # two versions: the recorded one is the newer
        (model / "w.keras").write_bytes(content)
        _git(tmp_path, "add", "-A")
        _git(tmp_path, "commit", "-qm", "weights")
    (model / "w.keras").unlink()
    want = hashlib.sha256(b"old weights").hexdigest()
    (model / "model.json").write_text(json.dumps({"files": {"w.keras": want}}))
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "weights out of the tree")
    run = [sys.executable, "-S", str(TOOL), "m/w.keras"]
    r = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and (model / "w.keras").read_bytes() == b"old weights"  # the recorded bytes
    (model / "w.keras").unlink()
    (model / "model.json").write_text(json.dumps({"files": {"w.keras": "0" * 64}}))
    r = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1 and not (model / "w.keras").exists()
    assert len(r.stderr.strip().splitlines()) == 1 and "no commit of this clone holds" in r.stderr
    # A hash given by hand, written elsewhere (the path itself stays as the tree has it).
    r = subprocess.run([*run, "--sha256", hashlib.sha256(b"the weights").hexdigest(), "--to", "out/w.keras"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and (tmp_path / "out" / "w.keras").read_bytes() == b"the weights"
    assert not (model / "w.keras").exists()
    # The hash a rounded copy's model.json records of the weights it came from (`make lfw-only-keras`).
    (tmp_path / "copy.json").write_text(json.dumps({"files": {}, "weights_rounded": {"source_sha256": {
        "w.keras": hashlib.sha256(b"the weights").hexdigest()}}}))
    r = subprocess.run([*run, "--model-json", "copy.json", "--to", "out2/w.keras"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0 and (tmp_path / "out2" / "w.keras").read_bytes() == b"the weights"


def test_a_path_beside_no_model_json_is_refused_in_one_line(tmp_path):
    _git(tmp_path, "init", "-q")
    r = subprocess.run([sys.executable, "-S", str(TOOL), "nowhere/w.keras"], cwd=tmp_path, capture_output=True,
                       text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "nowhere/model.json" in r.stderr
    r = subprocess.run([sys.executable, "-S", str(TOOL)], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("usage:")
