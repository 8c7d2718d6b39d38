"""Frames from a video file, a camera or a network stream, as RGB arrays.

Like `siamese.io.images`, this is a boundary where OpenCV's BGR becomes (H, W, 3) uint8 RGB. Sources
fail in one place, at opening, with a one-line `SourceError`; once open, a source never raises
while iterating: the end of a file, a cut-off file or a lost stream simply ends the iteration.
No TensorFlow here, so it imports in milliseconds.
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from siamese.io.sniff import HEAD_BYTES, image_format, iso_still_or_audio, video_container

__all__ = ["VIDEO_SUFFIXES", "Frame", "FrameSource", "SourceError", "is_video", "iter_frames", "parse_source"]

log = logging.getLogger(__name__)

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")  # rtsp://, http(s)://, udp://, rtmp://, ...
_GUESSED_FPS = 30.0  # only for files that report neither timestamps nor a frame rate


class SourceError(RuntimeError):
    """A camera, file or stream that cannot be opened; the one-line message names it and the fix."""


def _describe(source: str | int) -> str:
    """How messages name a source; hides the password in rtsp://user:password@host URLs."""
    return f"camera {source}" if isinstance(source, int) else re.sub(r"//[^/@]*@", "//***@", source)


def parse_source(spec: str | int | os.PathLike) -> str | int:
    """Turns a command-line style source into what `cv2.VideoCapture` takes.

    Args:
        spec: a camera index (``0`` or ``"0"``), a video file path, or a URL (``rtsp://``,
            ``http://``, ...).

    Returns:
        An int camera index, or the path / URL as a str.

    Raises:
        SourceError: a path that does not exist (URLs are not checked until opened).
    """
    if isinstance(spec, int):
        return spec
    spec = os.fspath(spec)
    if spec.strip().isascii() and spec.strip().isdigit():  # isascii: "²".isdigit() is True
        return int(spec)
    if _URL.match(spec):
        return spec
    if not os.path.exists(spec):
        raise SourceError(f"{spec}: not found — check the path, or give a camera index such as 0")
    if os.path.isdir(spec):
        raise SourceError(f"{spec}: is a directory — give a video file")
    return spec


@dataclass
class Frame:
    """One decoded frame.

    Attributes:
        index: frame number in the source, from 0 (frames skipped by `every_s` still count).
        time_s: seconds from the start: the container's timestamp for files (else index / fps),
            the wall clock since opening for cameras and streams.
        image: (H, W, 3) uint8 RGB.
    """

    index: int
    time_s: float
    image: np.ndarray


class FrameSource:
    """Frames from a video file, camera or stream: a context manager and an iterator of `Frame`.

    Example:
        with FrameSource("clip.mp4", every_s=1.0) as video:
            for frame in video:
                faces = detect(frame.image)

    Args:
        spec: camera index, file path or URL, as for `parse_source`.
        every_s: yield about one frame per `every_s` seconds of source time (the frame nearest
            each multiple of `every_s`); None yields every frame.
        max_frames: stop after yielding this many frames; None runs to the end of the source.
        retries: failed reads to retry before ending, on a live source or on a file that stops
            short of its frame count.

    Attributes:
        fps: frames per second as the source reports them, or None when unknown.
        frame_count: frames in the file per its header (an estimate for some containers), or None
            when unknown, e.g. for cameras and streams.
        size: (width, height) in pixels.
        is_live: True for cameras and for URLs with no known length.
        failed_frames: frames that could not be read or decoded and were skipped.

    Raises:
        SourceError: when the source cannot be opened.
    """

    def __init__(self, spec: str | int | os.PathLike, *, every_s: float | None = None,
                 max_frames: int | None = None, retries: int = 3):
        if every_s is not None and not every_s > 0:
            raise ValueError(f"every_s must be a positive number of seconds or None, got {every_s!r}")
        self.source = parse_source(spec)
        self.name = _describe(self.source)
        self.every_s, self.max_frames, self.retries = every_s, max_frames, retries
        self.failed_frames = 0
        self._cap: cv2.VideoCapture | None = cv2.VideoCapture(self.source)
        fourcc = int(self._cap.get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF
        # FFmpeg's "tty" demuxer happily opens .txt files as ANSI-art video: not what anyone meant.
        if not self._cap.isOpened() or fourcc.to_bytes(4, "little") == b"ansi":
            self._cap.release()
            raise SourceError(self._cannot_open())
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if math.isfinite(fps) and 0 < fps < 1000 else None
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)  # -1, 0 or garbage (-9e18) when unknown
        self.frame_count = int(count) if isinstance(self.source, str) and 0 < count < 2**31 else None
        self.size = (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self.is_live = isinstance(self.source, int) or (bool(_URL.match(self.source)) and self.frame_count is None)
        self._index = -1  # of the last frame grabbed
        self._yielded = 0
        self._due_s = 0.0  # source time from which the next frame is yielded (every_s)
        self._last_s = 0.0
        self._opened_at = time.monotonic()

    def _cannot_open(self) -> str:
        if isinstance(self.source, int):
            return (f"camera {self.source} could not be opened — is a webcam connected and free?"
                    f" (on Linux check /dev/video{self.source})")
        if _URL.match(self.source):
            return f"{self.name}: stream could not be opened — check the URL and that the server is reachable"
        return f"{self.name}: not a readable video (OpenCV could not open it)"

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Releases the camera or file; safe to call twice. Iteration ends afterwards."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __iter__(self) -> FrameSource:
        return self

    def __next__(self) -> Frame:
        while self._cap is not None and (self.max_frames is None or self._yielded < self.max_frames):
            if not self._grab():
                break
            t = self._time_s()
            # Half a frame of slack: yield the frame nearest each due time, so one stamped 0.999 s
            # is taken for 1 s rather than waiting for the next frame.
            if self.every_s is not None and t + 0.5 / (self.fps or _GUESSED_FPS) <= self._due_s:
                continue  # grabbed but never converted to BGR nor copied: the cheap way to skip
            ok, bgr = self._cap.retrieve()
            if not ok or bgr is None:
                self.failed_frames += 1
                continue
            if self.every_s is not None:
                # Keep to the grid 0, every_s, 2 every_s, ... so rounding to whole frames does not
                # drift; after a gap (a stalled stream) restart the grid from now.
                self._due_s += self.every_s
                if self._due_s <= t:
                    self._due_s = t + self.every_s
            self._yielded += 1
            return Frame(self._index, t, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        self.close()
        raise StopIteration

    def _grab(self) -> bool:
        """Advances to the next frame without decoding it to BGR; False when the source has ended."""
        for attempt in range(self.retries + 1):
            if self._cap.grab():
                self._index += 1
                self.failed_frames += attempt  # each failed read before this one lost a frame
                return True
            short = self.frame_count is not None and self._index + 1 < self.frame_count
            if not (self.is_live or short):
                return False  # a file that ended where its header said it would
            if self.is_live:
                time.sleep(0.1 * (attempt + 1))  # give a stalled camera or stream a moment
        if self.is_live:
            log.warning("%s: no frame after %d attempts — the camera was disconnected or the stream ended",
                        self.name, self.retries + 1)
        else:
            log.warning("%s: ended after %d of %d frames — the file may be truncated",
                        self.name, self._index + 1, self.frame_count)
        return False

    def _time_s(self) -> float:
        """Seconds from the start of the source for the frame just grabbed."""
        if self.is_live:  # camera timestamps count from boot, stream ones from anywhere
            return time.monotonic() - self._opened_at
        t = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        # Some containers give no timestamps (0 for every frame) or nonsense: fall back to index / fps.
        if not (math.isfinite(t) and t >= self._last_s and (t > 0 or self._index == 0)):
            t = self._index / (self.fps or _GUESSED_FPS)
        self._last_s = t
        return t


def iter_frames(spec: str | int | os.PathLike, **kw) -> Iterator[Frame]:
    """Frames of `spec`, releasing the source at the end or when the loop stops early.

    Args:
        spec: camera index, file path or URL, as for `parse_source`.
        **kw: `every_s`, `max_frames`, `retries`, as for `FrameSource`.

    Returns:
        An iterator of `Frame`.

    Raises:
        SourceError: at the call (not at the first frame) when the source cannot be opened.
    """
    source = FrameSource(spec, **kw)  # opened here, so a bad source fails before the loop starts

    def frames() -> Iterator[Frame]:
        with source:
            yield from source

    return frames()


VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".asf", ".ts", ".mts",
                  ".m2ts", ".3gp", ".3g2", ".flv", ".ogv", ".vob", ".mjpeg", ".mjpg"}
_MJPEG_SUFFIXES = {".mjpeg", ".mjpg"}  # a stream of JPEG frames: it starts like a photo, so the suffix decides


def is_video(path: str | os.PathLike) -> bool:
    """True for a video file, judged by its first bytes, and by its suffix where they say nothing.

    A clip named `.ts`, `.dat` or nothing at all is a video when it starts like one (ISO media
    'ftyp', MPEG-TS / M2TS sync bytes, FLV, Matroska/WebM, AVI, MPEG-PS, ASF); a photo named
    `.mp4` is not (nor a HEIC photo or an m4a song, though they start like an mp4; a JPEG named
    `.mjpeg`/`.mjpg` is, being a stream of JPEG frames); a file
    whose start is neither keeps the verdict of its suffix (`VIDEO_SUFFIXES`). Reads at most
    `HEAD_BYTES` (512) bytes and never raises: a missing, unreadable or empty path, or a folder,
    is not a video, so the photo reader reports what is wrong with it.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a folder; a FIFO would block the read
            return False
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except (OSError, ValueError):  # ValueError: a path with a NUL byte
        return False
    if not head or iso_still_or_audio(head):
        return False
    if video_container(head):
        return True
    suffix = Path(path).suffix.lower()
    fmt = image_format(head)
    if fmt is not None:
        return fmt == "JPEG" and suffix in _MJPEG_SUFFIXES
    return suffix in VIDEO_SUFFIXES
