"""Restore a file the tree no longer holds from git history, checked by its SHA-256 (`make lfw-only-keras`).

    python tools/restore_from_history.py MODEL_DIR/embedding.keras
    python tools/restore_from_history.py siamese/assets/default_model/embedding.keras \\
        --sha256 HEX --to checkpoints/lfw_only_keras/embedding.keras

The hash is `--sha256`, else the one the model dir's model.json records under "files"; every commit
that touched the path is tried, newest first, so the target does not name a commit (a rewritten
history or a moved branch still works as long as some commit holds those bytes). The file is written
atomically (to the path, or to `--to`) and only when its hash matches. Exit 1 with one line when no
commit holds it (e.g. a shallow clone).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path


def main(path: str, sha256: str | None = None, to: str | None = None) -> int:
    target = Path(to or path)
    want = sha256 or json.loads((Path(path).parent / "model.json").read_text())["files"][Path(path).name]
    commits = subprocess.run(["git", "log", "--all", "--format=%H", "--", path], capture_output=True, text=True,
                             check=True).stdout.split()
    for commit in commits:
        r = subprocess.run(["git", "show", f"{commit}:{path}"], capture_output=True)
        if r.returncode == 0 and hashlib.sha256(r.stdout).hexdigest() == want:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_bytes(r.stdout)
            os.replace(tmp, target)
            print(f"{target}: restored from commit {commit[:12]}:{path} (SHA-256 {want[:12]}…)")
            return 0
    print(f"error: {path}: no commit of this clone holds the bytes with SHA-256 {want[:12]}… "
          f"({len(commits)} commits touch the path) — a shallow clone? `git fetch --unshallow` first", file=sys.stderr)
    return 1


if __name__ == "__main__":  # stdlib only: `make lfw-only-keras` runs it with the system's python3
    if len(sys.argv) < 2:
        sys.exit("usage: python tools/restore_from_history.py PATH [--sha256 HEX] [--to OUT]   (PATH: a file "
                 "in git history, its hash from --sha256 or from model.json beside it)")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", help="the file's path in git history")
    ap.add_argument("--sha256", help="the bytes wanted (default: model.json's 'files' entry beside PATH)")
    ap.add_argument("--to", help="where to write it (default: PATH)")
    args = ap.parse_args()
    try:
        sys.exit(main(args.path, args.sha256, args.to))
    except (OSError, ValueError, KeyError, subprocess.CalledProcessError) as err:
        what = f"model.json lists no {err}" if isinstance(err, KeyError) else str(err)
        sys.exit(f"error: {args.path}: {what}")
