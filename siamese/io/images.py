"""Image files in and out: the one place where OpenCV's BGR becomes RGB.

Every image leaving this module is (H, W, 3) uint8 RGB, whatever the file held (greyscale, alpha,
16-bit, a rotated phone photo); every file that cannot be used raises `ImageError` with a one-line
message and a `reason` to count failures by. No TensorFlow here, so it imports in milliseconds.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from siamese.io.files import atomic_write_bytes
from siamese.io.sniff import image_format, image_size, tiff_tags

__all__ = ["IMAGE_SUFFIXES", "ImageError", "NothingRead", "decode_image", "iter_images", "list_images", "read_image",
           "write_image"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif",
                            ".ppm", ".pgm", ".pbm", ".pnm"})

# The quality flag of each writable suffix (None: lossless, no quality knob).
_WRITE_QUALITY = {".jpg": cv2.IMWRITE_JPEG_QUALITY, ".jpeg": cv2.IMWRITE_JPEG_QUALITY,
                  ".webp": cv2.IMWRITE_WEBP_QUALITY, ".png": None, ".bmp": None, ".tif": None, ".tiff": None}

# A JPEG marker that ends entropy-coded data: 0xFF then not stuffing (00), restart (D0-D7) or fill (FF).
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


class NothingRead(Exception):
    """Not one of a run's inputs could be read (all unreadable, or the only video would not
    open), so its result folder is not written. `summary` says what was tried and why it failed."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


class ImageError(ValueError):
    """An image file that cannot be used; the message is ``"<path>: <problem>"``.

    Attributes:
        path: the path as given to `read_image` / `list_images`.
        reason: a short key to count failures by: ``"missing"``, ``"unreadable"`` (directory,
            permissions, I/O error), ``"empty"``, ``"not_image"``, ``"truncated"``, ``"corrupt"``,
            ``"too_large"``, ``"too_small"``, ``"unsupported"`` (an exotic pixel type) or
            ``"symlink_loop"`` (a link that leads back to itself).
    """

    def __init__(self, path: str | os.PathLike, reason: str, problem: str):
        super().__init__(f"{os.fspath(path)}: {problem}")
        self.path, self.reason, self.problem = os.fspath(path), reason, problem

    def __reduce__(self):  # keep it picklable, so errors cross multiprocessing pools intact
        return type(self), (self.path, self.reason, self.problem)


def _jpeg_info(data: bytes) -> tuple[tuple[int, int] | None, bool, bytes]:
    """Walks the JPEG segments: ((width, height) of the first SOFn, whether EOI is reached, EXIF block).

    Following the structure (rather than looking for FFD9 near the end) keeps phone photos with
    data after EOI (motion-photo videos, maker trailers) from being called truncated.
    """
    size, exif, i, n = None, b"", 2, len(data)
    while i + 2 <= n:
        if data[i] != 0xFF or data[i + 1] in (0x00, 0xFF):  # entropy-coded data, fill or garbage
            match = _JPEG_MARKER.search(data, i + 1)  # skip to the next real marker, as libjpeg does
            if match is None:
                return size, False, exif
            i = match.start()
        marker = data[i + 1]
        if marker == 0xD9:
            return size, True, exif
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length field
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if size is None and 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and i + 9 <= n:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            size = (width, height) if width and height else None  # height 0: given later by DNL
        elif marker == 0xE1 and not exif and data[i + 4 : i + 10] == b"Exif\x00\x00":
            exif = data[i + 10 : i + 2 + length]
        i += 2 + length  # after SOS this lands in entropy-coded data, skipped at the top
    return size, False, exif


def _check_size(path, width: int, height: int, max_pixels: int, min_side: int) -> None:
    if width * height > max_pixels:
        raise ImageError(path, "too_large", f"{width}x{height} = {width * height / 1e6:.1f} MP is over the "
                                            f"{max_pixels / 1e6:g} MP limit — raise max_pixels")
    if min(width, height) < min_side:
        raise ImageError(path, "too_small", f"{width}x{height} px is below the {min_side} px minimum side")


def _exif_orientation(exif: bytes) -> int:
    """The EXIF Orientation tag (1-8; 1 = upright) from a TIFF-structured EXIF block."""
    exif = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
    orientation = tiff_tags(exif, {0x0112}).get(0x0112, 1)  # a damaged block should not cost us the picture
    return orientation if 1 <= orientation <= 8 else 1


def _orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turns a stored image upright, as EXIF orientation 1-8 asks (same result as Pillow's exif_transpose)."""
    if orientation in (5, 6, 7, 8):
        img = img.swapaxes(0, 1)  # transpose; the flips below complete each rotation
    if orientation in (2, 3, 6, 7):
        img = img[:, ::-1]
    if orientation in (3, 4, 7, 8):
        img = img[::-1]
    return np.ascontiguousarray(img)


def _decode(buf: np.ndarray, fmt: str, exif: bytes) -> tuple[np.ndarray | None, int]:
    """Decodes with alpha and full bit depth kept; returns (image as stored, EXIF orientation)."""
    # Only IMREAD_UNCHANGED keeps alpha, and it ignores EXIF orientation: we apply it (TIFF comes upright).
    if hasattr(cv2, "imdecodeWithMetadata"):  # OpenCV >= 4.12 also finds EXIF in PNG and WebP
        img, kinds, blocks = cv2.imdecodeWithMetadata(buf, flags=cv2.IMREAD_UNCHANGED)
        found = [np.asarray(b).tobytes() for k, b in zip(kinds, blocks) if k == cv2.IMAGE_METADATA_EXIF]
        exif = found[0] if found else exif
    else:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return img, (_exif_orientation(exif) if exif and fmt != "TIFF" else 1)


def _to_rgb8(img: np.ndarray, path) -> np.ndarray:
    """Any decoded OpenCV image (grey / BGR / BGRA; 8-bit, 16-bit or float) → (H, W, 3) uint8 RGB."""
    if img.dtype == np.uint16:
        img = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)  # scale 0..65535 → 0..255, rounded
    elif img.dtype in (np.float32, np.float64):
        img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)  # float TIFFs hold 0..1
    elif img.dtype != np.uint8:
        raise ImageError(path, "unsupported", f"{img.dtype} pixels are not supported — save it as 8- or 16-bit")
    channels = 1 if img.ndim == 2 else img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if channels == 4:  # composite over white: transparent areas would otherwise be arbitrary colours
        alpha = img[..., 3:].astype(np.uint32)
        img = ((img[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    elif channels != 3:
        raise ImageError(path, "unsupported", f"{channels}-channel images are not supported — save it as RGB")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike, *, max_pixels: int = 60_000_000, min_side: int = 20) -> np.ndarray:
    """Reads an image file as RGB, upright, whatever its format quirks.

    Args:
        path: a JPEG, PNG, BMP, TIFF, WebP, GIF (first frame) or PPM/PGM file; the format is taken
            from the file's signature, not its suffix. Non-ASCII paths work.
        max_pixels: width x height above which the file is refused, checked from the header before
            decoding (every format above) — protects memory from huge or hostile files (image bombs).
        min_side: the shorter side, in pixels, below which the image is refused (too small for a face).

    Returns:
        (H, W, 3) uint8 RGB, with EXIF orientation applied, alpha composited over white, and
        16-bit samples scaled (not clipped) to 0..255.

    Raises:
        ImageError: with `reason` missing, unreadable, empty, not_image, truncated, corrupt,
            too_large, too_small, unsupported or symlink_loop.
    """
    if os.path.isdir(path):
        raise ImageError(path, "unreadable", "is a directory — pass an image file, or use list_images() for a folder")
    try:
        with open(path, "rb") as f:
            # Sniff first, so a big non-image (a video named .jpg) is refused without reading it all.
            fmt = image_format(f.read(16))
            if fmt is None and f.tell() == 0:
                raise ImageError(path, "empty", "empty file (0 bytes)")
            if fmt is None:
                raise ImageError(path, "not_image", "not an image (unrecognised file signature)")
            f.seek(0)
            data = f.read()
    except OSError as e:
        raise _os_error(path, e, "not found — check the path", "read") from None
    return decode_image(data, path, max_pixels=max_pixels, min_side=min_side)


def decode_image(data: bytes, name: str | os.PathLike = "upload", *, max_pixels: int = 60_000_000,
                 min_side: int = 20) -> np.ndarray:
    """`read_image` for bytes already in memory (an upload): the same checks, in the same order.

    Args:
        data: the whole encoded file.
        name: what error messages call it (`ImageError.path`).
        max_pixels, min_side: as for `read_image`.

    Returns:
        (H, W, 3) uint8 RGB, upright.
    """
    fmt = image_format(data[:16])
    if fmt is None:
        raise ImageError(name, "empty", "empty file (0 bytes)") if not data else \
            ImageError(name, "not_image", "not an image (unrecognised file signature)")
    size, complete, exif = _jpeg_info(data) if fmt == "JPEG" else (image_size(data, fmt), True, b"")
    if fmt == "PNG":
        complete = data.rfind(b"IEND") > data.rfind(b"IDAT")
    if size is not None:  # refuse huge images before a decoder allocates them (a damaged header: after)
        _check_size(name, *size, max_pixels, min_side)
    # OpenCV decodes a cut-off JPEG file with grey filler (cv2.imread, a warning on stderr) but fails
    # on the same bytes in a buffer (cv2.imdecode); checking here makes truncation a reliable, named
    # error for the two formats where it is common and cheap to see.
    if not complete:
        missing = "no end-of-image marker" if fmt == "JPEG" else "no IEND chunk"
        raise ImageError(name, "truncated", f"truncated {fmt} ({missing})")

    img, orientation = _decode(np.frombuffer(data, np.uint8), fmt, exif)
    if img is None or img.size == 0:
        raise ImageError(name, "corrupt", f"corrupt {fmt} data (OpenCV could not decode it)")
    _check_size(name, img.shape[1], img.shape[0], max_pixels, min_side)
    return _orient(_to_rgb8(img, name), orientation)


def _os_error(path: str | os.PathLike, e: OSError, missing: str, verb: str) -> ImageError:
    """The ImageError for an OSError met opening or looking at `path` (``missing`` says what to check)."""
    if isinstance(e, FileNotFoundError):
        return ImageError(path, "missing", missing)
    if isinstance(e, PermissionError):
        return ImageError(path, "unreadable", "permission denied — check its read permissions")
    if e.errno == errno.ELOOP:
        return ImageError(path, "symlink_loop", _LOOP)
    return ImageError(path, "unreadable", f"could not be {verb} ({e.strerror or e})")


def list_images(root: str | os.PathLike, skipped: Counter | None = None) -> list[Path]:
    """Image files under `root`, by suffix, recursively, sorted; hidden files and folders skipped.

    Links to folders are followed, except one that leads back to a folder above it (a symlink
    loop). What cannot be listed never stops the listing: each folder that cannot be read, each
    symlink loop, and each image-named entry that is a broken link or no regular file (a FIFO would
    block the reader) gets one warning line naming it and is counted in `skipped` by reason.

    Args:
        root: a folder to search, or a single file (returned as is, whatever its suffix).
        skipped: a Counter to add ``{reason: count}`` to: ``"unreadable_folder"``,
            ``"symlink_loop"``, ``"broken_link"``, ``"not_a_file"``.

    Returns:
        Paths sorted by their string form, so runs over the same folder visit files in the same order.

    Raises:
        ImageError: reason ``"missing"`` when `root` does not exist, ``"symlink_loop"`` when it is
            a symlink loop, ``"unreadable"`` when it cannot be looked at or is no file or folder.
    """
    root = Path(root)
    try:
        mode = root.stat().st_mode
    except OSError as e:
        raise _os_error(root, e, "not found — check the path to the image or folder", "looked at") from None
    if stat.S_ISREG(mode):
        return [root]
    if not stat.S_ISDIR(mode):
        raise ImageError(root, "unreadable", "not a regular file or folder — pass an image file or a folder")

    def report(path: str | os.PathLike, reason: str, problem: str) -> None:
        logging.getLogger(__name__).warning("skipped %s: %s", os.fspath(path), problem)
        if skipped is not None:
            skipped[reason] += 1

    return sorted(_walk(root, report))


_LOOP = "symlink loop (the link leads back to itself) — point it at a real file or folder"


def _walk(root: Path, report: Callable[[str, str, str], None]) -> Iterator[Path]:
    """Image-suffixed regular files under `root`, depth first; see `list_images` for what is skipped."""
    stack: list[tuple[Path, tuple]] = [(root, ())]  # (folder, (st_dev, st_ino) of the folders above it)
    while stack:
        folder, above = stack.pop()
        try:
            st = folder.stat()
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as e:
            report(folder, "unreadable_folder", f"folder could not be listed ({e.strerror or e})")
            continue
        key = (st.st_dev, st.st_ino)
        if key in above:  # a link to this folder's own parent, grandparent, ...: following it never ends
            report(folder, "symlink_loop", f"symlink loop (links to {os.path.realpath(folder)}, a folder above "
                                           "it) — not followed")
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            kind = _kind(entry)
            image = Path(entry.name).suffix.lower() in IMAGE_SUFFIXES
            if kind == "folder":
                stack.append((Path(entry.path), (*above, key)))
            elif kind == "file" and image:
                yield Path(entry.path)
            elif kind == "symlink_loop" or (image and kind != "file"):
                report(entry.path, kind, _PROBLEMS[kind])


_PROBLEMS = {"symlink_loop": _LOOP, "broken_link": "broken symlink (its target does not exist)",
             "not_a_file": "not a regular file (a device, FIFO or socket)",
             "unreadable": "could not be looked at (permission denied or an I/O error)"}


def _kind(entry: os.DirEntry) -> str:
    """ "folder", "file", or what is wrong with the entry (a key of `_PROBLEMS`); links are followed."""
    try:
        if entry.is_dir():
            return "folder"
        if entry.is_file():
            return "file"
    except OSError as e:
        return "symlink_loop" if e.errno == errno.ELOOP else "unreadable"
    return "broken_link" if entry.is_symlink() else "not_a_file"


def write_image(path: str | os.PathLike, rgb: np.ndarray, quality: int = 95) -> Path:
    """Writes an RGB image atomically, encoded by suffix; parent folders are created.

    Args:
        path: destination ending in .jpg/.jpeg, .png, .webp, .bmp or .tif/.tiff.
        rgb: (H, W, 3) uint8 RGB.
        quality: 0-100 for JPEG and WebP; ignored by the lossless formats.

    Returns:
        The path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _WRITE_QUALITY:
        raise ValueError(f"{path}: cannot write '{suffix}' images — use .jpg or .png")
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"{path}: expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    flag = _WRITE_QUALITY[suffix]
    params = [flag, int(quality)] if flag is not None else []
    ok, buf = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode the image as {suffix}")
    return atomic_write_bytes(path, buf.tobytes())


def iter_images(paths: Iterable[str | os.PathLike], skipped: Counter | None = None,
                **read_kw) -> Iterator[tuple[Path, np.ndarray]]:
    """Read photos one by one, skipping the unreadable: bad input never stops a batch.

    Each skipped file gets one log line (`ImageError`'s "<path>: <problem>") and is counted in
    `skipped` by its reason.

    Args:
        paths: the files (wrap them in a progress bar if you like).
        skipped: a Counter to add `{reason: count}` of skipped files to.
        read_kw: passed to `read_image` (max_pixels, min_side).

    Yields:
        (path, (H, W, 3) uint8 RGB image).
    """
    for path in paths:
        try:
            image = read_image(path, **read_kw)
        except ImageError as err:
            logging.getLogger(__name__).warning("skipped %s", err)
            if skipped is not None:
                skipped[err.reason] += 1
            continue
        yield Path(path), image
