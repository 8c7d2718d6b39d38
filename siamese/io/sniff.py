"""What a file's first bytes say: the image format and its pixel size, or the video container.

Deciding by content rather than by suffix is what lets `read_image` refuse an image bomb (a tiny
file that claims 20000x20000 pixels) before a decoder allocates the pixels, and lets `is_video`
take a clip named `.ts` or with no suffix for a video and a photo named `.mp4` for a photo. Every
function here reads bytes it is given and never raises on damaged ones: it answers None instead.
Stdlib only.
"""

from __future__ import annotations

import re
import struct

__all__ = ["HEAD_BYTES", "image_format", "image_size", "iso_still_or_audio", "tiff_tags", "video_container"]

HEAD_BYTES = 512  # enough for every signature and header below (JPEG's size is found by images.py)

_IMAGE_SIGNATURES = [(b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"),
                     (b"GIF89a", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"II+\x00", "TIFF"),
                     (b"MM\x00+", "TIFF"), (b"BM", "BMP")]

# TIFF field types that hold an unsigned integer: SHORT, LONG, LONG8 (BigTIFF).
_TIFF_INTS = {3: "H", 4: "I", 16: "Q"}
_TIFF_WIDTH, _TIFF_LENGTH = 256, 257

# ISO base media files whose major brand is a still image (HEIF, AVIF, Canon CR3) or audio, not a video.
_NOT_VIDEO_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"avif", b"crx ", b"M4A ", b"M4B ", b"M4P "}
_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")


def image_format(head: bytes) -> str | None:
    """The image format named by a file's signature (its first bytes), or None.

    Returns:
        "JPEG", "PNG", "GIF", "TIFF" (BigTIFF too), "BMP", "WebP", "PNM" or None.
    """
    for signature, fmt in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return "PNM" if re.match(rb"P[1-6]\s", head) else None


def image_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) in pixels as the header of a PNG, GIF, TIFF, WebP, BMP or PNM file states it.

    Args:
        data: the file's bytes (for TIFF the whole file: its first IFD may lie anywhere).
        fmt: what `image_format` said (JPEG is walked by `siamese.io.images`).

    Returns:
        The size a decoder would allocate, or None when the header is missing or damaged (the
        decoder then decides).
    """
    reader = _SIZE_READERS.get(fmt)
    try:
        size = reader(data) if reader else None
    except (struct.error, IndexError, ValueError):
        return None
    return size if size and size[0] > 0 and size[1] > 0 else None


def _png_size(data: bytes) -> tuple[int, int] | None:
    return struct.unpack(">II", data[16:24]) if data[12:16] == b"IHDR" else None


def _gif_size(data: bytes) -> tuple[int, int]:
    return struct.unpack("<HH", data[6:10])  # the logical screen, which holds every frame


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    tags = tiff_tags(data, {_TIFF_WIDTH, _TIFF_LENGTH})
    return (tags[_TIFF_WIDTH], tags[_TIFF_LENGTH]) if len(tags) == 2 else None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """The first chunk after 'WEBP': 'VP8 ' (lossy key frame), 'VP8L' (lossless) or 'VP8X' (extended: the canvas)."""
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # 3-byte frame tag, then the key frame start code
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF  # the top 2 bits are an upscaling hint
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")  # 14 bits width - 1, 14 bits height - 1
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _bmp_size(data: bytes) -> tuple[int, int]:
    if int.from_bytes(data[14:18], "little") == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sides
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return width, abs(height)  # a negative height means rows stored top-down


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    tokens = re.sub(rb"#[^\r\n]*", b" ", data[:HEAD_BYTES]).split()  # "P6 <width> <height> ..."; # comments
    return (int(tokens[1]), int(tokens[2])) if len(tokens) >= 3 else None


_SIZE_READERS = {"PNG": _png_size, "GIF": _gif_size, "TIFF": _tiff_size, "WebP": _webp_size, "BMP": _bmp_size,
                 "PNM": _pnm_size}


def tiff_tags(data: bytes, wanted: set[int]) -> dict[int, int]:
    """Integer values of the `wanted` tags in the first IFD of TIFF-structured bytes.

    Args:
        data: a TIFF file, or an EXIF block (TIFF-structured), starting at its "II"/"MM" header.
        wanted: tag numbers, e.g. {256, 257} (ImageWidth, ImageLength) or {0x0112} (Orientation).

    Returns:
        {tag: value} for the wanted tags found with an integer type (SHORT, LONG or BigTIFF's
        LONG8), either byte order; tags missing or damaged are left out.
    """
    endian = {b"II": "<", b"MM": ">"}.get(data[:2])
    found: dict[int, int] = {}
    if endian is None or len(data) < 8:
        return found
    big = struct.unpack_from(endian + "H", data, 2)[0] == 43  # BigTIFF: 8-byte offsets, 20-byte entries
    head, entry, layout = ("Q", 20, "HHQ8s") if big else ("H", 12, "HHI4s")
    try:
        ifd = struct.unpack_from(endian + ("Q" if big else "I"), data, 8 if big else 4)[0]
        count = struct.unpack_from(endian + head, data, ifd)[0]
        first = ifd + struct.calcsize(head)
        for k in range(min(count, (len(data) - first) // entry)):
            tag, kind, _, value = struct.unpack_from(endian + layout, data, first + entry * k)
            if tag in wanted and kind in _TIFF_INTS:  # values are left-justified in the value field
                found[tag] = struct.unpack_from(endian + _TIFF_INTS[kind], value)[0]
    except struct.error:  # an offset past the end: keep what was found
        pass
    return found


def video_container(head: bytes) -> str | None:
    """The video container named by a file's first bytes (`HEAD_BYTES` of them is enough), or None.

    Returns:
        "ISO media" (mp4, mov, m4v, 3gp), "QuickTime" (old mov without 'ftyp'), "MPEG-TS", "M2TS",
        "FLV", "Matroska" (mkv, webm), "AVI", "MPEG-PS", "ASF" (wmv) or None.
    """
    if image_format(head):  # a GIF starts with 0x47, MPEG-TS's sync byte: a file is one or the other
        return None
    box = head[4:8]
    if box == b"ftyp":
        return None if head[8:12] in _NOT_VIDEO_BRANDS else "ISO media"
    if box in (b"moov", b"mdat", b"wide"):
        return "QuickTime"
    if head[:4] == b"FLV\x01":
        return "FLV"
    if head[:4] == b"\x1aE\xdf\xa3":  # EBML
        return "Matroska"
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "AVI"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):  # pack header; a bare MPEG video sequence
        return "MPEG-PS"
    if head[:16] == _ASF_GUID:
        return "ASF"
    if _sync_bytes(head, 188, 0):
        return "MPEG-TS"
    if _sync_bytes(head, 192, 4):  # Blu-ray / AVCHD packets: a 4-byte timestamp, then a TS packet
        return "M2TS"
    return None


def iso_still_or_audio(head: bytes) -> bool:
    """True for an ISO base media file holding a still image (HEIF, AVIF, Canon CR3) or audio: no video,
    though it starts like an mp4."""
    return head[4:8] == b"ftyp" and head[8:12] in _NOT_VIDEO_BRANDS


def _sync_bytes(head: bytes, packet: int, offset: int) -> bool:
    """True when every packet that starts within `head` (two at least) starts with the sync byte 0x47."""
    starts = range(offset, len(head), packet)
    return len(starts) >= 2 and all(head[i] == 0x47 for i in starts)
