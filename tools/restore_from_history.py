"""Restore a file the tree no longer holds from git history, checked by its SHA-256 (`make lfw-only-keras`).

    python tools/restore_from_history.py MODEL_DIR/embedding.keras
    python tools/restore_from_history.py siamese/assets/default_model/embedding.keras \\
        --model-json siamese/assets/default_model/members/1-lfw_only/model.json \\
        --to checkpoints/lfw_only_keras/embedding.keras

The hash is `--sha256`, else the one a model.json records for the file's name (`--model-json`, else
the one beside the path): under "files", else under "weights_rounded"/"source_sha256" (what a
rounded copy records of the weights it was rounded from). Every commit that touched the path is
tried, newest first, so the target does not name a commit (a rewritten history or a moved branch
still works as long as some commit holds those bytes). The file is written atomically (to the path,
or to `--to`) and only when its hash matches. Exit 1 with one line when no commit holds it (e.g. a
shallow clone) and for a wrong command line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path


def recorded(model_json: Path, name: str) -> str:
    """The SHA-256 `model_json` records for file `name` (KeyError naming it when none)."""
    meta = json.loads(model_json.read_text())
    for where in (meta.get("files", {}), meta.get("weights_rounded", {}).get("source_sha256", {})):
        if name in where:
            return where[name]
    raise KeyError(f"{name} in {model_json}")


def main(path: str, sha256: str | None = None, to: str | None = None, model_json: str | None = None) -> int:
    target = Path(to or path)
    want = sha256 or recorded(Path(model_json) if model_json else Path(path).parent / "model.json", Path(path).name)
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


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # a wrong command line: one line, exit 1 (as every failure here)
        self.exit(1, f"usage: python tools/restore_from_history.py PATH [--sha256 HEX | --model-json FILE] "
                     f"[--to OUT] — {message}\n")


if __name__ == "__main__":  # stdlib only: `make lfw-only-keras` runs it with the system's python3
    ap = _Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", help="the file's path in git history")
    ap.add_argument("--sha256", help="the bytes wanted (default: a model.json's record of PATH's name)")
    ap.add_argument("--model-json", help="the model.json recording the hash (default: the one beside PATH)")
    ap.add_argument("--to", help="where to write it (default: PATH)")
    args = ap.parse_args()
    try:
        sys.exit(main(args.path, args.sha256, args.to, args.model_json))
    except (OSError, ValueError, KeyError, subprocess.CalledProcessError) as err:
        what = f"model.json lists no {err.args[0]}" if isinstance(err, KeyError) else str(err)
        sys.exit(f"error: {args.path}: {what}")
