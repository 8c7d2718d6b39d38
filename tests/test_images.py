"""Tests for siamese.io.images: every odd or broken input is built in tmp_path (numpy, cv2, Pillow)."""

from __future__ import annotations

import io
import logging
import os
import pickle
import struct
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from siamese.io import images
from siamese.io.images import IMAGE_SUFFIXES, ImageError, list_images, read_image, write_image

RED_RGB = (255, 0, 0)


@pytest.fixture
def rgb() -> np.ndarray:
    """(40, 60, 3) uint8 RGB: smooth colour ramps, so JPEG stays close to the original."""
    yy, xx = np.mgrid[0:40, 0:60]
    return np.dstack([xx * 4, yy * 6, 255 - xx * 4]).astype(np.uint8)


def expect_error(path: Path, reason: str, **kw) -> ImageError:
    """Reads `path`, asserts an ImageError naming the file with `reason`, and returns it."""
    with pytest.raises(ImageError) as info:
        read_image(path, **kw)
    err = info.value
    assert err.reason == reason, str(err)
    assert path.name in str(err) and str(err).startswith(str(path))
    assert "\n" not in str(err)
    return err


def forbid_decoding(monkeypatch) -> None:
    def no_decoding(*args, **kw):
        raise AssertionError("decoded an image that should have been refused from its header")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    monkeypatch.setattr(cv2, "imdecodeWithMetadata", no_decoding)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def pillow_bytes(array: np.ndarray, fmt: str, orientation: int | None = None, **kw) -> bytes:
    """`array` (RGB or RGBA) encoded by Pillow, with an EXIF orientation tag when given."""
    pil = Image.fromarray(array)
    if orientation is not None:
        exif = pil.getexif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    out = io.BytesIO()
    pil.save(out, fmt, **kw)
    return out.getvalue()


# --- good files -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix, tolerance", [(".png", 0), (".jpg", 4), (".webp", 6), (".bmp", 0), (".tif", 0)])
def test_roundtrip(tmp_path, rgb, suffix, tolerance):
    path = write_image(tmp_path / f"face{suffix}", rgb)
    back = read_image(path)
    assert back.shape == (40, 60, 3) and back.dtype == np.uint8
    assert np.abs(back.astype(int) - rgb).mean() <= tolerance


def test_bgr_file_becomes_rgb(tmp_path):
    bgr = np.zeros((30, 30, 3), np.uint8)
    bgr[..., 2] = 255  # red, in OpenCV's channel order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    assert tuple(read_image(tmp_path / "red.png")[0, 0]) == RED_RGB


@pytest.mark.parametrize("fmt", ["GIF", "PPM"])
def test_gif_and_ppm(tmp_path, rgb, fmt):
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(pillow_bytes(rgb, fmt))
    back = read_image(path)
    assert back.shape == (40, 60, 3)
    if fmt == "PPM":
        np.testing.assert_array_equal(back, rgb)


def test_greyscale_becomes_three_channels(tmp_path):
    grey = np.arange(30 * 40, dtype=np.uint32).reshape(30, 40).astype(np.uint8)
    for name in ("grey.png", "grey.pgm"):
        cv2.imwrite(str(tmp_path / name), grey)
        back = read_image(tmp_path / name)
        assert back.shape == (30, 40, 3)
        for c in range(3):
            np.testing.assert_array_equal(back[..., c], grey)


def test_alpha_is_composited_over_white(tmp_path):
    rgba = np.zeros((30, 30, 4), np.uint8)
    rgba[...] = (255, 0, 0, 255)  # opaque red ...
    rgba[0, 0] = (0, 0, 0, 0)  # ... one fully transparent black pixel ...
    rgba[0, 1] = (0, 0, 0, 128)  # ... and one half-transparent black pixel
    (tmp_path / "a.png").write_bytes(pillow_bytes(rgba, "PNG"))
    back = read_image(tmp_path / "a.png")
    assert back.shape == (30, 30, 3)
    assert tuple(back[0, 0]) == (255, 255, 255)
    assert all(abs(int(v) - 127) <= 1 for v in back[0, 1])
    assert tuple(back[5, 5]) == RED_RGB


def test_16_bit_is_scaled_not_clipped(tmp_path):
    deep = np.zeros((30, 30, 3), np.uint16)
    deep[0, 0] = 65535
    deep[0, 1] = 32768
    deep[0, 2] = 257 * 10
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    back = read_image(tmp_path / "deep.png")
    assert back.dtype == np.uint8
    assert tuple(back[0, 0]) == (255, 255, 255)
    assert tuple(back[0, 1]) == (128, 128, 128)
    assert tuple(back[0, 2]) == (10, 10, 10)
    assert tuple(back[1, 1]) == (0, 0, 0)


def test_float_tiff_is_scaled(tmp_path):
    ok, buf = cv2.imencode(".tiff", np.full((30, 30, 3), 0.5, np.float32))
    (tmp_path / "f.tiff").write_bytes(buf.tobytes())
    assert tuple(read_image(tmp_path / "f.tiff")[0, 0]) == (128, 128, 128)


# --- EXIF orientation ---------------------------------------------------------------------------


def marked(height=40, width=60, alpha=False) -> np.ndarray:
    """Grey image with a red 8x8 marker in the stored top-left corner."""
    img = np.full((height, width, 4 if alpha else 3), 200, np.uint8)
    img[:8, :8, :3] = RED_RGB
    return img


def test_exif_orientation_6_jpeg(tmp_path):
    """Orientation 6 = "rotate 90° clockwise to view": stored top-left lands top-right."""
    (tmp_path / "phone.jpg").write_bytes(pillow_bytes(marked(), "JPEG", orientation=6, quality=95))
    upright = read_image(tmp_path / "phone.jpg")
    assert upright.shape == (60, 40, 3)
    assert np.abs(upright[3, 36].astype(int) - RED_RGB).max() < 40  # top-right: red
    assert np.abs(upright[3, 3].astype(int) - 200).max() < 40  # top-left: grey


def test_exif_orientation_6_png_with_alpha(tmp_path):
    """RGBA needs IMREAD_UNCHANGED, which ignores EXIF: the module must rotate it itself."""
    img = marked(alpha=True)
    img[..., 3] = 255
    img[-1, -1, 3] = 0  # a transparent pixel, so the file really keeps its alpha channel
    (tmp_path / "rgba.png").write_bytes(pillow_bytes(img, "PNG", orientation=6))
    upright = read_image(tmp_path / "rgba.png")
    assert upright.shape == (60, 40, 3)
    assert tuple(upright[3, 36]) == RED_RGB
    assert tuple(upright[-1, 0]) == (255, 255, 255)  # stored bottom-right → bottom-left, over white


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_every_orientation_matches_pillow(tmp_path, fmt, orientation):
    img = np.random.default_rng(orientation).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    kw = {"lossless": True} if fmt == "WEBP" else {}
    data = pillow_bytes(img, fmt, orientation=orientation, **kw)
    (tmp_path / "o.img").write_bytes(data)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    np.testing.assert_array_equal(read_image(tmp_path / "o.img", min_side=1), expected)


def test_jpeg_orientation_without_opencv_metadata_api(tmp_path, monkeypatch):
    """OpenCV < 4.12 has no imdecodeWithMetadata; JPEG EXIF is then found by our own segment walk."""
    monkeypatch.delattr(cv2, "imdecodeWithMetadata")
    (tmp_path / "old.jpg").write_bytes(pillow_bytes(marked(), "JPEG", orientation=8, quality=95))
    upright = read_image(tmp_path / "old.jpg")
    assert upright.shape == (60, 40, 3)
    assert np.abs(upright[56, 3].astype(int) - RED_RGB).max() < 40  # orientation 8: top-left → bottom-left


# --- broken files -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated(tmp_path, rgb, suffix):
    whole = write_image(tmp_path / f"whole{suffix}", rgb).read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole[: len(whole) // 2])
    err = expect_error(cut, "truncated")
    assert ("no end-of-image marker" if suffix == ".jpg" else "no IEND chunk") in str(err)


def test_truncated_jpeg_with_zero_padding(tmp_path, rgb):
    """Interrupted downloads often leave the file pre-allocated: the tail is zeros, not EOI."""
    whole = write_image(tmp_path / "whole.jpg", rgb).read_bytes()
    (tmp_path / "padded.jpg").write_bytes(whole[: len(whole) * 2 // 3] + bytes(4096))
    expect_error(tmp_path / "padded.jpg", "truncated")


def test_jpeg_with_trailer_after_eoi_is_fine(tmp_path, rgb):
    """Motion photos append a video after EOI; random bytes there must not look like truncation."""
    whole = write_image(tmp_path / "whole.jpg", rgb).read_bytes()
    trailer = b"\xff\xda" + np.random.default_rng(0).bytes(20_000)
    (tmp_path / "motion.jpg").write_bytes(whole + trailer)
    assert read_image(tmp_path / "motion.jpg").shape == (40, 60, 3)


def test_random_bytes_named_jpg(tmp_path):
    (tmp_path / "noise.jpg").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ImageError) as info:
        read_image(tmp_path / "noise.jpg")
    assert info.value.reason in {"not_image", "corrupt"} and "noise.jpg" in str(info.value)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_corrupt_data(tmp_path, rgb, suffix):
    data = bytearray(write_image(tmp_path / f"good{suffix}", rgb).read_bytes())
    if suffix == ".jpg":  # clobber the Huffman tables: structure intact, decoding impossible
        at = data.find(b"\xff\xc4")
        data[at + 4 : at + 30] = b"\xff" * 26
    else:  # flip bits inside the compressed pixel data
        data[data.find(b"IDAT") + 10] ^= 0xFF
    (tmp_path / f"bad{suffix}").write_bytes(bytes(data))
    err = expect_error(tmp_path / f"bad{suffix}", "corrupt")
    assert "could not decode" in str(err)


def test_text_file(tmp_path):
    (tmp_path / "a.txt").write_text("hello, not a picture\n")
    err = expect_error(tmp_path / "a.txt", "not_image")
    assert str(err) == f"{tmp_path / 'a.txt'}: not an image (unrecognised file signature)"


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    expect_error(tmp_path / "empty.jpg", "empty")


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nowhere.jpg", "missing")


def test_directory(tmp_path):
    (tmp_path / "folder.jpg").mkdir()
    err = expect_error(tmp_path / "folder.jpg", "unreadable")
    assert "list_images" in str(err)


def test_permission_denied(tmp_path, rgb, monkeypatch):
    path = write_image(tmp_path / "locked.png", rgb)

    def denied(*args, **kw):  # chmod 000 would not stop root, so fake the refusal
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(images, "open", denied, raising=False)
    expect_error(path, "unreadable")


def test_too_small(tmp_path):
    cv2.imwrite(str(tmp_path / "tiny.jpg"), np.zeros((8, 8, 3), np.uint8))
    err = expect_error(tmp_path / "tiny.jpg", "too_small")
    assert "8x8 px is below the 20 px minimum side" in str(err)
    assert read_image(tmp_path / "tiny.jpg", min_side=8).shape == (8, 8, 3)


def test_huge_png_refused_from_header_without_decoding(tmp_path, monkeypatch):
    """A header-only PNG claiming 30000x30000: refused before any decode is attempted."""
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    (tmp_path / "big.png").write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr))
    forbid_decoding(monkeypatch)
    err = expect_error(tmp_path / "big.png", "too_large")
    assert "30000x30000 = 900.0 MP is over the 60 MP limit — raise max_pixels" in str(err)


def test_huge_jpeg_refused_from_header(tmp_path, rgb, monkeypatch):
    data = bytearray(write_image(tmp_path / "small.jpg", rgb).read_bytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 20000, 20000)  # height, width
    (tmp_path / "big.jpg").write_bytes(bytes(data))
    forbid_decoding(monkeypatch)
    err = expect_error(tmp_path / "big.jpg", "too_large")
    assert "20000x20000 = 400.0 MP is over the 60 MP limit" in str(err)


# Image bombs: headers claiming a huge size, written by hand, so nothing big is ever allocated here.


def tiff_header(width: int, height: int, endian: str = "<", kind: int = 3) -> bytes:
    """A TIFF that is only a header: IFD0 holding ImageWidth and ImageLength as SHORT (3) or LONG (4)."""
    def entry(tag: int, value: int) -> bytes:
        return struct.pack(endian + "HHI", tag, kind, 1) + struct.pack(endian + "HI"[kind - 3], value).ljust(4, b"\0")

    magic = b"II*\x00" if endian == "<" else b"MM\x00*"
    return magic + struct.pack(endian + "IH", 8, 2) + entry(256, width) + entry(257, height) + bytes(4)


def bigtiff_header(width: int, height: int) -> bytes:
    """A little-endian BigTIFF header: 8-byte offsets, 20-byte IFD entries, LONG8 (16) values."""
    def entry(tag: int, value: int) -> bytes:
        return struct.pack("<HHQQ", tag, 16, 1, value)

    return b"II+\x00" + struct.pack("<HHQQ", 8, 0, 16, 2) + entry(256, width) + entry(257, height) + bytes(8)


def webp_header(chunk: bytes, width: int, height: int) -> bytes:
    """The first chunk of a WebP: 'VP8 ' (lossy), 'VP8L' (lossless) or 'VP8X' (extended, the canvas)."""
    if chunk == b"VP8 ":
        body = b"\x00\x00\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height)
    elif chunk == b"VP8L":
        body = b"\x2f" + struct.pack("<I", (width - 1) | (height - 1) << 14)
    else:
        body = bytes(4) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    riff = b"WEBP" + chunk + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", len(riff)) + riff


def bmp_header(width: int, height: int) -> bytes:
    """A 24-bit BMP header (BITMAPINFOHEADER) and no pixels; a negative height means top-down rows."""
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHH", 40, width, height, 1, 24) + bytes(24)


BOMBS = {
    "tiff_le_short.tif": (tiff_header(20000, 20000, "<", 3), "20000x20000 = 400.0 MP"),
    "tiff_be_short.tif": (tiff_header(20000, 20000, ">", 3), "20000x20000 = 400.0 MP"),
    "tiff_le_long.tif": (tiff_header(100000, 3000, "<", 4), "100000x3000 = 300.0 MP"),
    "tiff_be_long.tif": (tiff_header(3000, 100000, ">", 4), "3000x100000 = 300.0 MP"),
    "bigtiff.tif": (bigtiff_header(20000, 20000), "20000x20000 = 400.0 MP"),
    "lossy.webp": (webp_header(b"VP8 ", 16000, 16000), "16000x16000 = 256.0 MP"),
    "lossless.webp": (webp_header(b"VP8L", 16384, 16384), "16384x16384 = 268.4 MP"),
    "extended.webp": (webp_header(b"VP8X", 100000, 1000), "100000x1000 = 100.0 MP"),
    "top_down.bmp": (bmp_header(20000, -20000), "20000x20000 = 400.0 MP"),
    "bottom_up.bmp": (bmp_header(10000, 10000), "10000x10000 = 100.0 MP"),
    "comment.ppm": (b"P6\n# made by hand\n20000 20000\n255\n", "20000x20000 = 400.0 MP"),
    "grey.pgm": (b"P5 12000\t9000 255 ", "12000x9000 = 108.0 MP"),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_image_bombs_are_refused_from_the_header_without_decoding(tmp_path, monkeypatch, name):
    data, claim = BOMBS[name]
    (tmp_path / name).write_bytes(data)
    forbid_decoding(monkeypatch)
    err = expect_error(tmp_path / name, "too_large")
    assert f"{claim} is over the 60 MP limit — raise max_pixels" in str(err)


@pytest.mark.parametrize("case", ["tiff", "bigtiff", "webp_lossy", "webp_lossless", "webp_extended", "bmp", "ppm",
                                  "pgm"])
def test_header_sizes_of_real_files(tmp_path, rgb, monkeypatch, case):
    """Files written by Pillow and OpenCV: the size read from their headers is the true one."""
    encoded = {"tiff": lambda: pillow_bytes(rgb, "TIFF"), "bigtiff": lambda: pillow_bytes(rgb, "TIFF", big_tiff=True),
               "webp_lossy": lambda: pillow_bytes(rgb, "WEBP", quality=80),
               "webp_lossless": lambda: pillow_bytes(rgb, "WEBP", lossless=True),
               "webp_extended": lambda: pillow_bytes(np.dstack([rgb, rgb[..., :1]]), "WEBP"),  # alpha: VP8X
               "bmp": lambda: cv2.imencode(".bmp", rgb)[1].tobytes(),
               "ppm": lambda: pillow_bytes(rgb, "PPM"), "pgm": lambda: cv2.imencode(".pgm", rgb[..., 0])[1].tobytes()}
    data = encoded[case]()
    chunk = {"webp_lossy": b"VP8 ", "webp_lossless": b"VP8L", "webp_extended": b"VP8X"}.get(case)
    assert chunk is None or data[12:16] == chunk  # each WebP flavour really is exercised
    (tmp_path / "real.img").write_bytes(data)
    assert read_image(tmp_path / "real.img").shape == (40, 60, 3)  # and it decodes as before
    forbid_decoding(monkeypatch)
    err = expect_error(tmp_path / "real.img", "too_large", max_pixels=2000)
    assert "60x40 = 0.0 MP is over the 0.002 MP limit" in str(err)


def deflate_tiff(side: int) -> bytes:
    """A real side x side 8-bit grey TIFF of zeros in one deflate strip: 10000 px a side is 100 MB of
    pixels in about 100 kB, the kind of file that took gigabytes to refuse after decoding."""
    z = zlib.compressobj(6)
    rows = bytes(side * min(side, 100))
    strip = b"".join(z.compress(rows) for _ in range(0, side, 100)) + z.flush()
    tags = [(256, 4, side), (257, 4, side), (258, 3, 8), (259, 3, 8), (262, 3, 1), (273, 4, 0), (277, 3, 1),
            (278, 4, side), (279, 4, len(strip))]
    start = 8 + 2 + 12 * len(tags) + 4  # the strip follows the IFD
    ifd = b"".join(struct.pack("<HHI", tag, kind, 1) + struct.pack("<" + "HI"[kind - 3], start if tag == 273 else v)
                   .ljust(4, b"\0") for tag, kind, v in tags)
    return b"II*\x00" + struct.pack("<IH", 8, len(tags)) + ifd + bytes(4) + strip


def test_deflate_tiff_builder_makes_real_tiffs(tmp_path):
    (tmp_path / "small.tif").write_bytes(deflate_tiff(200))
    back = read_image(tmp_path / "small.tif")
    assert back.shape == (200, 200, 3) and not back.any()


def test_tiff_bomb_is_refused_with_little_memory(tmp_path):
    """Peak memory of a fresh process reading a 100 MP TIFF bomb: it must not grow by the pixels."""
    bomb = tmp_path / "bomb.tif"
    bomb.write_bytes(deflate_tiff(10000))
    assert bomb.stat().st_size < 1_000_000
    code = ("import resource, sys\n"
            "from siamese.io.images import ImageError, read_image\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    read_image(sys.argv[1])\nexcept ImageError as err:\n    print(err.reason)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    r = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, cwd=repo, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    reason, grown_kb = r.stdout.split()
    assert reason == "too_large"
    assert int(grown_kb) < 30_000, f"peak memory grew by {int(grown_kb) // 1024} MB reading a refused image"


def test_pixel_limit_after_decode_for_other_formats(tmp_path, rgb):
    cv2.imwrite(str(tmp_path / "plain.bmp"), rgb)
    expect_error(tmp_path / "plain.bmp", "too_large", max_pixels=1000)


def test_non_ascii_path(tmp_path, rgb):
    path = write_image(tmp_path / "фото é" / "名前.png", rgb)
    np.testing.assert_array_equal(read_image(path), rgb)


def test_error_pickles_with_its_attributes():
    err = pickle.loads(pickle.dumps(ImageError("x.jpg", "corrupt", "corrupt JPEG data")))
    assert (err.path, err.reason, str(err)) == ("x.jpg", "corrupt", "x.jpg: corrupt JPEG data")
    assert isinstance(err, ValueError)


# --- listing and writing ------------------------------------------------------------------------


def test_list_images(tmp_path, rgb):
    for rel in ["b.jpg", "a.PNG", "sub/deeper/c.webp", "sub/d.jpeg", "notes.txt", ".hidden.jpg",
                ".cache/e.jpg", "sub/.git/f.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = list_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.PNG", "b.jpg", "sub/d.jpeg", "sub/deeper/c.webp"]
    assert list_images(tmp_path / "notes.txt") == [tmp_path / "notes.txt"]  # a file is taken as given
    assert {".jpg", ".png", ".webp", ".gif", ".tif", ".bmp", ".ppm"} <= IMAGE_SUFFIXES
    with pytest.raises(ImageError) as info:
        list_images(tmp_path / "gone")
    assert info.value.reason == "missing" and "gone" in str(info.value)


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_symlink_loops_are_skipped_with_one_line_each(tmp_path, caplog):
    root, other = tmp_path / "photos", tmp_path / "other"
    for rel in ["photos/ok.jpg", "photos/sub/in.jpg", "other/far.jpg"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (root / "self.jpg").symlink_to("self.jpg")  # a link to itself
    (root / "a.jpg").symlink_to("b.jpg")  # a -> b -> a
    (root / "b.jpg").symlink_to("a.jpg")
    (root / "sub" / "up").symlink_to("..")  # a folder link to its parent
    (root / "sub" / "here").symlink_to(".")  # ... and to its own folder
    (root / "shared").symlink_to(other)  # a link to a folder elsewhere: followed
    skipped = Counter()
    with caplog.at_level(logging.WARNING):
        found = list_images(root, skipped)
    assert [p.relative_to(root).as_posix() for p in found] == ["ok.jpg", "shared/far.jpg", "sub/in.jpg"]
    assert skipped == {"symlink_loop": 5}
    lines = warnings_of(caplog)
    assert len(lines) == 5 and all("symlink loop" in line and "\n" not in line for line in lines)
    for loop in ["self.jpg", "a.jpg", "b.jpg", "sub/up", "sub/here"]:
        assert sum(line.startswith(f"skipped {root / loop}:") for line in lines) == 1, (loop, lines)


def test_a_symlink_loop_as_the_input_says_so(tmp_path):
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "loop.jpg").symlink_to("loop.jpg")
    for path in (tmp_path / "loop", tmp_path / "loop.jpg"):
        with pytest.raises(ImageError) as info:
            list_images(path)
        assert info.value.reason == "symlink_loop" and str(info.value).startswith(f"{path}: symlink loop")
        assert "not found" not in str(info.value)
    assert "symlink loop" in str(expect_error(tmp_path / "loop.jpg", "symlink_loop"))


def test_unreadable_folders_are_reported_and_counted(tmp_path, caplog, monkeypatch):
    for rel in ["a.jpg", "locked/b.jpg", "open/c.jpg"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    real_scandir = os.scandir

    def scandir(path="."):  # chmod 000 would not stop root, so fake the refusal
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    skipped = Counter()
    with caplog.at_level(logging.WARNING):
        found = list_images(tmp_path, skipped)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.jpg", "open/c.jpg"]
    assert skipped == {"unreadable_folder": 1}
    assert warnings_of(caplog) == [f"skipped {tmp_path / 'locked'}: folder could not be listed (Permission denied)"]
    assert list_images(tmp_path) == found  # without a Counter: the same list, as before


def test_broken_links_and_fifos_are_not_listed(tmp_path, caplog):
    (tmp_path / "ok.png").write_bytes(b"x")
    (tmp_path / "gone.jpg").symlink_to("nowhere.jpg")
    (tmp_path / "notes.txt").symlink_to("nowhere.txt")  # not an image name: not worth a line
    os.mkfifo(tmp_path / "pipe.jpg")  # reading it would block for ever
    skipped = Counter()
    with caplog.at_level(logging.WARNING):
        assert list_images(tmp_path, skipped) == [tmp_path / "ok.png"]
    assert skipped == {"broken_link": 1, "not_a_file": 1} and len(warnings_of(caplog)) == 2
    with pytest.raises(ImageError, match="not a regular file or folder") as info:
        list_images(tmp_path / "pipe.jpg")
    assert info.value.reason == "unreadable"


def test_write_image_is_atomic_and_leaves_no_temp_files(tmp_path, rgb):
    path = tmp_path / "out" / "new" / "face.jpg"
    write_image(path, rgb, quality=90)
    write_image(path, rgb[::-1].copy())  # overwrite in place
    assert sorted(p.name for p in path.parent.iterdir()) == ["face.jpg"]
    assert np.abs(read_image(path).astype(int) - rgb[::-1]).mean() < 4
    assert path.stat().st_mode & 0o777 == 0o644


def test_failed_write_keeps_old_file_and_cleans_up(tmp_path, rgb, monkeypatch):
    path = write_image(tmp_path / "face.png", rgb)

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(images.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_image(path, np.zeros_like(rgb))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["face.png"]
    np.testing.assert_array_equal(read_image(path), rgb)


def test_write_image_rejects_bad_input(tmp_path, rgb):
    with pytest.raises(ValueError, match=r"face\.gifx.*use \.jpg or \.png"):
        write_image(tmp_path / "face.gifx", rgb)
    with pytest.raises(ValueError, match=r"expected \(H, W, 3\) uint8 RGB"):
        write_image(tmp_path / "face.png", rgb.astype(np.float32))
    assert list(tmp_path.iterdir()) == []
