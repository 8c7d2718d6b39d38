"""Files written so that a reader never sees half of one: atomic files and folders.

`atomic_write_bytes` / `atomic_write_text` / `atomic_save_npy` write a hidden temporary file in
the target's folder and rename it over the target. `staged_dir` builds a whole folder the same
way: everything goes into a hidden `.NAME.tmp-PID-*` folder beside `NAME`, which `swap_dir` puts in
place only once it is complete (an old `NAME` is moved aside first and removed last). `safe_name`
keeps a file name derived from a user's file name within what file systems allow.

Every temporary name carries the writer's process id, so a run killed with `kill -9` leaves
nothing behind for long: the next write to the same target removes the temporaries of writers
that are no longer alive (`sweep_stale`). Stdlib and NumPy only.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["atomic_save_npy", "atomic_write_bytes", "atomic_write_text", "create_sqlite", "file_digest",
           "flat_name", "safe_name", "staged_dir", "sweep_stale", "swap_dir"]



def _stale_pattern(name: str) -> re.Pattern:
    """`.NAME.tmp-PID-x` (staged folders), `.NAME.PID-x.tmp` (atomic files), `.NAME.old-PID-ns`."""
    return re.compile(rf"^\.{re.escape(name)}\.(?P<kind>tmp-|old-|)(?P<pid>\d+)-.+$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale(target: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that killed writers left beside `target`; returns what was removed.

    Only hidden names this module makes for `target` (`.NAME.tmp-PID-*`, `.NAME.PID-*.tmp`,
    `.NAME.old-PID-*`) whose PID is no longer a running process are touched; a live writer's
    temporaries and every other file are left alone. A swapped-out old folder whose writer died
    before the new one was in place is the user's last good result: it is put back, not removed.
    """
    target = Path(target)
    removed = []
    pattern = _stale_pattern(target.name)
    try:
        siblings = sorted(target.parent.iterdir())
    except OSError:
        return removed
    for p in siblings:
        m = pattern.match(p.name)
        if not m or _alive(int(m["pid"])):
            continue
        if m["kind"] == "old-" and not os.path.lexists(target):
            with contextlib.suppress(OSError):
                os.rename(p, target)
            continue
        with contextlib.suppress(OSError):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes `data` so that readers see the old file or the new one, never half of it.

    The bytes go to a hidden temporary file in the same folder (same file system, so `os.replace`
    is atomic), are flushed to disk, then renamed over `path`. Parents are created. Returns `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates 0600 files; keep an existing file's mode, else use the usual 0644.
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    sweep_stale(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def create_sqlite(path: str | os.PathLike, script: str) -> bool:
    """A new SQLite database at `path`, made whole first: `script` (its tables) runs in one
    transaction, WAL journal, in a hidden file beside it, which is then linked in. SQLite's own
    create leaves an empty file until the first commit, which another process opening it then would
    take for a damaged one. A file already at `path` (another writer's, just made) is kept.
    Returns whether this call made it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)  # as a file SQLite creates, not mkstemp's 0600
        with contextlib.closing(sqlite3.connect(tmp, isolation_level=None)) as db:
            db.executescript(f"PRAGMA journal_mode = WAL; BEGIN; {script}; COMMIT;")
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: rename, unless another writer got there first
            if path.exists():
                return False
            os.replace(tmp, path)
            return True
    finally:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """`atomic_write_bytes` for text (written as is: no newline translation)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """`np.save` through `atomic_write_bytes` (never a half-written .npy)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    return atomic_write_bytes(path, buf.getvalue())


def swap_dir(tmp: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Put the finished folder `tmp` in place of `out` (same parent folder).

    An existing `out` is renamed aside first and removed only once `tmp` is in place; if the
    second rename fails, the old `out` is put back. Returns `out`.
    """
    tmp, out = Path(tmp), Path(out)
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{time.time_ns()}"  # swept if we die here
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out


@contextlib.contextmanager
def staged_dir(out: str | os.PathLike, mode: int = 0o755) -> Iterator[Path]:
    """Build a folder beside `out` and swap it in when the block ends without an error.

    Example:
        with staged_dir("people/") as tmp:
            write_everything_into(tmp)      # people/ appears (or is replaced) only at the end

    On an exception (Ctrl-C included) the partial folder is removed and `out` is untouched.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(out)  # what a killed earlier run left here
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    tmp.chmod(mode)  # mkdtemp makes it 0700; results are meant to be shared
    try:
        yield tmp
        swap_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks (memory stays flat whatever its size).
    `algorithm` is any `hashlib` name; md5 is used as a checksum only."""
    h = hashlib.new(algorithm, usedforsecurity=algorithm != "md5")
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def safe_name(name: str, limit: int = 200) -> str:
    """A file name derived from a user's one (one path component), shortened when it would be too long.

    Most file systems refuse a name over 255 bytes (`Errno 36: File name too long`); a name whose
    encoded form (UTF-8 on Linux) is over `limit` bytes keeps its first characters and its suffix
    and gains "~" and 12 hex digits of the SHA-256 of the whole name, so two long names that begin
    alike stay two names. The cut never splits a character. The default 200 leaves room for what
    callers append, such as `_face12.jpg`.

    Example:
        safe_name("Été " * 100 + ".jpg") -> "Été Été … Ét~b79e845429c9.jpg"  (200 bytes)

    Returns:
        `name` itself when it fits, else the shortened name (deterministic).
    """
    if limit < 40:
        raise ValueError(f"safe_name limit must be at least 40 bytes, got {limit}")
    if len(os.fsencode(name)) <= limit:
        return name
    suffix = Path(name).suffix if len(os.fsencode(Path(name).suffix)) <= 16 else ""
    tag = "~" + hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
    room = limit - len(os.fsencode(suffix + tag))
    kept, used = [], 0
    for char in name[: len(name) - len(suffix)]:
        used += len(os.fsencode(char))
        if used > room:
            break
        kept.append(char)
    return "".join(kept) + tag + suffix


def flat_name(rel: str | os.PathLike) -> str:
    """One file name for the file at the relative path `rel`, distinct for every distinct path
    (the prefix of crop names in detect and cluster results).

    The photo's path with "/" written "__" and its suffix kept ("trip/a.jpg" -> "trip__a.jpg"), so
    p.jpg and p.png, or face.bmp and face.tiff, get crops of their own. Where "__" could be read
    two ways (a part holding "__" or "~", or starting or ending with "_": "a__b.jpg" beside
    "a/b.jpg"), "~" and a hash of the path are added; a plain stem never holds "~", so the two
    kinds never meet. Long stems are shortened by `safe_name` (also with a hash).
    """
    rel = Path(rel)
    stem = "__".join(rel.parts)
    if any("__" in part or "~" in part or part.startswith("_") or part.endswith("_") for part in rel.parts):
        stem += "~" + hashlib.sha256(os.fsencode(rel.as_posix())).hexdigest()[:10]
    return safe_name(stem)
