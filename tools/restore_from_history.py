"""Restore a file the tree no longer holds from git history, checked by its SHA-256 (`make shipped-keras`).

    python tools/restore_from_history.py siamese/assets/default_model/embedding.keras

The hash is the one the model dir's model.json records under "files"; every commit that touched
the path is tried, newest first, so the target does not name a commit (a rewritten history or a
moved branch still works as long as some commit holds those bytes). The file is written atomically
and only when its hash matches. Exit 1 with one line when no commit holds it (e.g. a shallow clone).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path


def main(path: str) -> int:
    target = Path(path)
    want = json.loads((target.parent / "model.json").read_text())["files"][target.name]
    commits = subprocess.run(["git", "log", "--all", "--format=%H", "--", path], capture_output=True, text=True,
                             check=True).stdout.split()
    for commit in commits:
        r = subprocess.run(["git", "show", f"{commit}:{path}"], capture_output=True)
        if r.returncode == 0 and hashlib.sha256(r.stdout).hexdigest() == want:
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_bytes(r.stdout)
            os.replace(tmp, target)
            print(f"{path}: restored from commit {commit[:12]} (SHA-256 {want[:12]}… as model.json records)")
            return 0
    print(f"error: {path}: no commit of this clone holds the bytes model.json records ({want[:12]}…; "
          f"{len(commits)} commits touch the path) — a shallow clone? `git fetch --unshallow` first", file=sys.stderr)
    return 1


if __name__ == "__main__":  # stdlib only: `make shipped-keras` runs it with the system's python3
    if len(sys.argv) != 2:
        sys.exit("usage: python tools/restore_from_history.py PATH   (a file model.json lists, e.g. "
                 "siamese/assets/default_model/embedding.keras)")
    try:
        sys.exit(main(sys.argv[1]))
    except (OSError, ValueError, KeyError, subprocess.CalledProcessError) as err:
        what = f"model.json lists no {err}" if isinstance(err, KeyError) else str(err)
        sys.exit(f"error: {sys.argv[1]}: {what}")
