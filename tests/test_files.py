"""Atomic files and folders: readers see the old version or the new one, never half of one."""

import os

import numpy as np
import pytest

from siamese.io import files


def test_atomic_write_text_and_bytes(tmp_path):
    files.atomic_write_text(tmp_path / "deep" / "notes.txt", "héllo\nwörld\n")
    assert (tmp_path / "deep" / "notes.txt").read_text(encoding="utf-8") == "héllo\nwörld\n"
    files.atomic_write_bytes(tmp_path / "blob.bin", b"\x00\x01")
    assert (tmp_path / "blob.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob.bin", "deep"]


def test_atomic_save_npy_round_trips(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    files.atomic_save_npy(tmp_path / "a.npy", a)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), a)
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_staged_dir_appears_only_when_complete(tmp_path):
    out = tmp_path / "result"
    with files.staged_dir(out) as tmp:
        (tmp / "a.txt").write_text("new")
        assert not out.exists() and tmp.parent == tmp_path and tmp.name.startswith(".result.tmp-")
    assert (out / "a.txt").read_text() == "new"
    assert oct(out.stat().st_mode & 0o777) == oct(0o755)
    assert [p.name for p in tmp_path.iterdir()] == ["result"]


def test_staged_dir_replaces_an_old_result_and_keeps_it_on_failure(tmp_path):
    out = tmp_path / "result"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="half way"):
        with files.staged_dir(out) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("half way")
    assert [p.name for p in out.iterdir()] == ["old.txt"]  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["result"]  # no partial folder left
    with files.staged_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["result"]  # the old one removed


def test_swap_dir_puts_the_old_folder_back_when_the_swap_fails(tmp_path, monkeypatch):
    out, new = tmp_path / "out", tmp_path / "new"
    out.mkdir()
    new.mkdir()
    real = files.os.rename

    def fail_second(src, dst):
        if str(src) == str(new):
            raise OSError("disk on fire")
        return real(src, dst)

    monkeypatch.setattr(files.os, "rename", fail_second)
    with pytest.raises(OSError, match="disk on fire"):
        files.swap_dir(new, out)
    assert out.is_dir() and new.is_dir()


def _dead_pid() -> int:
    import subprocess
    import sys
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporaries_of_killed_writers_are_swept_on_the_next_write(tmp_path):
    """kill -9 leaves `.NAME.tmp-PID-*`; the next write to NAME removes it (and only it)."""
    dead, live = _dead_pid(), os.getpid()
    stale_dir = tmp_path / f".result.tmp-{dead}-abcd"
    stale_dir.mkdir()
    (stale_dir / "half.txt").write_text("half")
    stale_file = tmp_path / f".result.{dead}-xyz.tmp"
    stale_file.write_text("half")
    mine = tmp_path / f".result.tmp-{live}-keep"  # a live writer's: not ours to remove
    mine.mkdir()
    other = tmp_path / f".other.tmp-{dead}-abcd"  # another target's: left alone
    other.mkdir()
    with files.staged_dir(tmp_path / "result") as tmp:
        (tmp / "a.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other.name, "result"])


def test_an_old_result_moved_aside_by_a_killed_swap_is_put_back(tmp_path):
    """Killed between the two renames of swap_dir: the old result is the user's; it comes back."""
    old = tmp_path / f".result.old-{_dead_pid()}-123"
    old.mkdir()
    (old / "kept.txt").write_text("old")
    assert files.sweep_stale(tmp_path / "result") == []
    assert (tmp_path / "result" / "kept.txt").read_text() == "old"
    files.atomic_write_text(tmp_path / "notes.txt", "x")  # files sweep too
    stale = tmp_path / f".notes.txt.{_dead_pid()}-q.tmp"
    stale.write_text("half")
    files.atomic_write_text(tmp_path / "notes.txt", "y")
    assert not stale.exists() and (tmp_path / "notes.txt").read_text() == "y"


def test_safe_name_keeps_short_names_and_shortens_long_ones(tmp_path):
    assert files.safe_name("IMG_0001.jpg") == "IMG_0001.jpg"
    assert files.safe_name("é" * 100) == "é" * 100  # 200 bytes: still fits
    long = "Zoë_名前_" * 30 + ".jpg"  # 420 bytes of UTF-8, most characters 2 or 3 bytes long
    short = files.safe_name(long)
    assert len(short.encode()) <= 200 and short.endswith(".jpg") and short.startswith("Zoë_名前_Zoë")
    assert short == files.safe_name(long)  # deterministic
    (tmp_path / short).write_bytes(b"x")  # a name the file system takes (255 bytes would not be)
    # Two long names that differ only past the cut stay two names.
    assert files.safe_name(long[:-4] + "1.jpg") != short
    assert len(files.safe_name("x" * 300, limit=64).encode()) <= 64
    with pytest.raises(ValueError, match="at least 40"):
        files.safe_name("x", limit=10)


def test_a_new_sqlite_file_is_whole_and_never_replaces_one(tmp_path, monkeypatch):
    # create_sqlite: the tables are there the moment the file is; an existing file is kept; on a file
    # system without hard links it is renamed in instead; no hidden file is left either way.
    import contextlib
    import sqlite3

    from siamese.io.files import create_sqlite

    path = tmp_path / "g.sqlite"
    assert create_sqlite(path, "CREATE TABLE t (x INTEGER)") is True
    def tables():
        with contextlib.closing(sqlite3.connect(path)) as db:
            return {r[0] for r in db.execute("SELECT name FROM sqlite_master")}

    assert tables() == {"t"}
    assert create_sqlite(path, "CREATE TABLE u (x INTEGER)") is False and tables() == {"t"}
    path.unlink()

    def no_links(src, dst):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr("os.link", no_links)
    assert create_sqlite(path, "CREATE TABLE v (x INTEGER)") is True and tables() == {"v"}
    assert create_sqlite(path, "CREATE TABLE w (x INTEGER)") is False and tables() == {"v"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.sqlite"]
