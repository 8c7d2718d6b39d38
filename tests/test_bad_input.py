"""Every command that reads photos, videos or a gallery, run over a corpus of broken, odd and
hostile inputs (made here, from the sample media): no traceback, one line naming each bad file,
the documented exit code, the inputs byte-identical afterwards, and output only where asked.

The commands run through `siamese.cli.run` — the command line's own entry point, argument parsing,
error handling and exit codes included — in this process, so TensorFlow loads once.
docs/reliability.md lists the cases and how each is handled.
"""

import hashlib
import logging
import os
import shutil
import sqlite3
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from siamese.cli import run

# name -> what its one line says (a fragment of it)
BAD_PHOTOS = {
    "truncated.jpg": "truncated JPEG", "truncated.png": "truncated PNG", "empty.jpg": "empty file",
    "text.jpg": "not an image", "random.webp": "not an image", "random.tiff": "not an image",
    "random.bmp": "MP is over", "random.gif": "MP is over", "bomb.png": "MP is over", "bomb.tiff": "MP is over",
    "bomb.webp": "MP is over", "bomb.jpg": "MP is over", "1x1.png": "below the 20 px", "broken.jpg": "broken symlink",
    "sub/loop": "symlink loop",
}
BAD_VIDEOS = ["truncated.mp4", "text.mp4", "junk.ts", "empty.mov"]
HOSTILE = ["comma, obama, 0.999\nfake.jpg", "ünïcødé_名前.jpg", "-dash.jpg", "$(touch pwned).jpg", "a;b&c|d.jpg",
           "x" * 240 + ".jpg", "null.jpg", "${oc.env:HOME}.jpg"]
BAD_GALLERIES = {"zero.sqlite": "0 bytes", "random.sqlite": "not a readable gallery",
                 "foreign.sqlite": "not a siamese gallery", "folder.sqlite": "is a folder",
                 "truncated.sqlite": "cut short"}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _tiff(width: int, height: int) -> bytes:
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", t, k, 1, v) for t, k, v in entries)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\0" * 4 + b"\0" * 1000


def _jpeg_claiming(width: int, height: int, good: bytes) -> bytes:
    """A real JPEG whose frame header (SOF0) claims another size."""
    i = good.index(b"\xff\xc0")
    return good[:i + 5] + struct.pack(">HH", height, width) + good[i + 9:]


def make_corpus(root: Path, samples: Path) -> dict:
    """photos/ (good, bad and hostile-named), videos/ (bad), known/<person>/ (an import with bad files
    inside) and galleries/ (broken ones). Returns {"photos", "videos", "known", "galleries": Path}."""
    photos, videos, known, galleries = (root / n for n in ("photos", "videos", "known", "galleries"))
    for d in (photos, videos, known / "ana", known / "ben", galleries):
        d.mkdir(parents=True)
    jpg = (samples / "photos" / "two_people.jpg").read_bytes()
    one = (samples / "reference_faces" / "obama_small.jpg").read_bytes()
    png = cv2.imencode(".png", cv2.imread(str(samples / "reference_faces" / "obama_small.jpg")))[1].tobytes()
    rng = np.random.default_rng(0)
    files = {
        "good two.jpg": jpg, "obama.jpg": one, "grey no face.png": cv2.imencode(".png", np.full((200, 200, 3), 128,
                                                                                               np.uint8))[1].tobytes(),
        "truncated.jpg": jpg[:len(jpg) // 3], "truncated.png": png[:len(png) // 2], "empty.jpg": b"",
        "text.jpg": b"hello, I am not an image\n" * 10, "random.webp": rng.bytes(3000),
        "random.tiff": rng.bytes(3000), "random.bmp": b"BM" + rng.bytes(3000),
        "random.gif": b"GIF89a" + rng.bytes(2000),
        "bomb.png": b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
                    + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + _png_chunk(b"IEND", b""),
        "bomb.tiff": _tiff(60_000, 60_000),
        "bomb.webp": b"RIFF" + struct.pack("<I", 30) + b"WEBPVP8X" + struct.pack("<I", 10) + b"\0" * 4
                     + (59_999).to_bytes(3, "little") + (59_999).to_bytes(3, "little"),
        "bomb.jpg": _jpeg_claiming(60_000, 60_000, one),
        "1x1.png": cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))[1].tobytes(),
        **{name: jpg for name in HOSTILE},
    }
    for name, data in files.items():
        (photos / name).write_bytes(data)
    # EXIF-rotated: the same photo stored on its side with Orientation = 6; it decodes upright.
    (photos / "sub").mkdir()
    os.symlink("..", photos / "sub" / "loop")
    os.symlink("missing.jpg", photos / "broken.jpg")
    clip = (samples / "video" / "short_hamilton_clip.mp4").read_bytes()
    for name, data in {"truncated.mp4": clip[:2000], "text.mp4": b"not a video" * 100,
                       "junk.ts": b"\x47" + rng.bytes(5000), "empty.mov": b""}.items():
        (videos / name).write_bytes(data)
    (known / "ana" / "obama.jpg").write_bytes(one)
    (known / "ana" / "truncated.jpg").write_bytes(jpg[:len(jpg) // 3])
    (known / "ana" / "bomb.png").write_bytes(files["bomb.png"])
    (known / "ben" / "text.jpg").write_bytes(b"not an image")
    (known / "José.jpg").write_bytes((samples / "reference_faces" / "lin-manuel-miranda.png").read_bytes())
    (galleries / "zero.sqlite").write_bytes(b"")
    (galleries / "random.sqlite").write_bytes(rng.bytes(5000))
    with sqlite3.connect(galleries / "foreign.sqlite") as c:
        c.execute("CREATE TABLE notes (x)")
    (galleries / "folder.sqlite").mkdir()
    return {"photos": photos, "videos": videos, "known": known, "galleries": galleries}


def _tree(root: Path) -> dict:
    """{relative path: sha256 or 'dir'/'link'} of everything under `root`."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, samples):
    root = tmp_path_factory.mktemp("corpus")
    paths = make_corpus(root, samples)
    good = tmp_path_factory.mktemp("good") / "g.sqlite"  # a real gallery to truncate
    assert _cli(["gallery", "import", str(paths["known"]), f"db={good}", "calibration.people=20"])[0] == 0
    shutil.copy(good, paths["galleries"] / "truncated.sqlite")
    with open(paths["galleries"] / "truncated.sqlite", "r+b") as f:
        f.truncate(3000)
    return {**paths, "root": root, "before": _tree(root)}


@pytest.fixture
def work(tmp_path, monkeypatch):
    """The folder commands run from (and write into only where they are told)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _cli(args: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `siamese ARGS`, as the console script would give them."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run(args[0], args[1:])
    finally:
        root.handlers, root.level = handlers, level
    return code, out.getvalue(), err.getvalue()


def _lines_naming(stderr: str, path: Path) -> list[str]:
    return [line for line in stderr.splitlines() if f"{path}:" in line]


def _check(code, stderr, expected_code, named: dict[Path, str]):
    assert "Traceback" not in stderr and code == expected_code, (code, stderr[-3000:])
    for path, says in named.items():
        lines = _lines_naming(stderr, path)
        assert len(lines) == 1 and says in lines[0], (path, says, lines)


def _bad_photo_lines(photos: Path) -> dict:
    return {photos / name: says for name, says in BAD_PHOTOS.items()}


COMMANDS_ON_PHOTOS = {
    "detect": lambda c, w: ["detect", str(c["photos"]), "--out", str(w / "out"), "progress=false"],
    "cluster": lambda c, w: ["cluster", str(c["photos"]), "--out", str(w / "out"), "progress=false"],
    "enroll": lambda c, w: ["enroll", str(c["photos"]), "--person", "Zoë", f"db={w / 'out' / 'g.sqlite'}",
                            "calibration.people=20"],
    "recognize": lambda c, w: ["recognize", str(c["photos"]), f"db={w / 'out' / 'g.sqlite'}"],
}


@pytest.mark.parametrize("command", list(COMMANDS_ON_PHOTOS))
def test_every_bad_photo_is_one_line_and_the_good_ones_are_used(command, corpus, work):
    if command == "recognize":  # it reads a gallery: make one in the output folder first
        assert _cli(["gallery", "import", str(corpus["known"]), f"db={work / 'out' / 'g.sqlite'}",
                     "calibration.people=20"])[0] == 0
    code, out, err = _cli(COMMANDS_ON_PHOTOS[command](corpus, work))
    _check(code, err, 0, _bad_photo_lines(corpus["photos"]))
    assert out.strip(), "a summary on stdout"
    assert _tree(corpus["root"]) == corpus["before"]  # every input byte-identical, nothing added there
    assert [p.name for p in work.iterdir()] == ["out"]  # output only where asked
    if command == "recognize":  # a hostile name cannot forge a result line: CSV quoting
        rows = [line for line in out.splitlines() if ", obama, 0.999" in line]
        assert rows and all(line.startswith('"') for line in rows)


def test_import_names_each_bad_file_and_keeps_the_good_ones(corpus, work):
    code, out, err = _cli(["gallery", "import", str(corpus["known"]), "db=g.sqlite", "calibration.people=20"])
    _check(code, err, 0, {corpus["known"] / "ana" / "truncated.jpg": "truncated JPEG",
                          corpus["known"] / "ana" / "bomb.png": "MP is over",
                          corpus["known"] / "ben" / "text.jpg": "not an image"})
    assert "ana: +1 faces" in out and "José: +1 faces" in out
    assert _tree(corpus["root"]) == corpus["before"] and [p.name for p in work.iterdir()] == ["g.sqlite"]


VIDEO_COMMANDS = {
    "detect": lambda v, w: ["detect", str(v), "--out", str(w / "out"), "progress=false"],
    "cluster": lambda v, w: ["cluster", str(v), "--out", str(w / "out"), "progress=false"],
    "enroll": lambda v, w: ["enroll", str(v), "--person", "ana", f"db={w / 'g.sqlite'}"],
    "collect": lambda v, w: ["collect", str(v), "--person", "ana", f"out_root={w / 'faces'}", "progress=false"],
    "verify": lambda v, w: ["verify", str(v), "--person", "ana", f"db={w / 'g.sqlite'}", f"out={w / 'out'}"],
}


@pytest.mark.parametrize("command", list(VIDEO_COMMANDS))
def test_a_bad_video_is_one_line_exit_1_and_writes_nothing(command, corpus, work):
    if command == "verify":  # it needs someone enrolled
        assert _cli(["gallery", "import", str(corpus["known"]), f"db={work / 'g.sqlite'}",
                     "calibration.people=20"])[0] == 0
    before = _tree(work)
    for name in BAD_VIDEOS:
        video = corpus["videos"] / name
        code, _, err = _cli(VIDEO_COMMANDS[command](video, work))
        lines = [line for line in err.splitlines() if line.strip()]
        assert "Traceback" not in err and code == 1, (name, code, err[-2000:])
        naming = [line for line in lines if line.startswith(("error:", "warning:")) and str(video) in line]
        assert len(naming) == 1 and ("video" in naming[0] or "empty file" in naming[0]), (name, lines)
        rest = [line for line in lines if line not in naming]  # at most the command's own verdict
        assert len(rest) <= 1 and all(line.startswith(f"siamese {command}: ") for line in rest), (name, lines)
        assert _tree(work) == before, name  # no half output, no empty gallery, no log in a refused folder
    assert _tree(corpus["root"]) == corpus["before"]


GALLERY_COMMANDS = {
    "recognize": lambda c, g: ["recognize", str(c["photos"] / "obama.jpg"), f"db={g}"],
    "gallery list": lambda c, g: ["gallery", "list", f"db={g}"],
    "enroll": lambda c, g: ["enroll", str(c["photos"] / "obama.jpg"), "--person", "ana", f"db={g}"],
    "gallery import": lambda c, g: ["gallery", "import", str(c["known"]), f"db={g}"],
    "verify": lambda c, g: ["verify", str(c["photos"] / "obama.jpg"), "--person", "ana", f"db={g}"],
}


@pytest.mark.parametrize("command", list(GALLERY_COMMANDS))
def test_a_broken_gallery_is_one_line_exit_1_and_left_as_it_was(command, corpus, work):
    for name, says in BAD_GALLERIES.items():
        db = corpus["galleries"] / name
        code, _, err = _cli(GALLERY_COMMANDS[command](corpus, db))
        lines = [line for line in err.splitlines() if line.strip()]
        assert "Traceback" not in err and code == 1, (name, code, err[-2000:])
        assert len(lines) == 1 and str(db) in lines[0] and says in lines[0], (name, lines)
    assert _tree(corpus["root"]) == corpus["before"]  # not "repaired", not rewritten
    assert list(work.iterdir()) == []
