"""Tests for siamese.io.video on the shared sample clips, files made in tmp_path and a fake camera."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from siamese.io import video
from siamese.io.video import VIDEO_SUFFIXES, Frame, FrameSource, SourceError, is_video, iter_frames, parse_source

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SAMPLES = Path(os.environ.get("SIAMESE_SAMPLES", SHARED / "samples")) / "video"
HAMILTON = SAMPLES / "short_hamilton_clip.mp4"  # 640x360, 29.97 fps, 275 frames; index at the end
OVAL = SAMPLES / "oval_office_news_clip.mp4"  # 640x360, 29.97 fps, 510 frames; index at the start

# Outside CI a missing copy skips; in CI (which always has shared/) it must not hide a failure.
needs_samples = pytest.mark.skipif(not (HAMILTON.exists() and OVAL.exists()) and not os.environ.get("CI"),
                                   reason=f"sample clips not found in {SAMPLES}")


@pytest.fixture
def synthetic(tmp_path) -> Path:
    """25 frames, 64x48 at 10 fps (mp4v): frame i has its first 2*i columns green, the rest red."""
    path = tmp_path / "synthetic.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for i in range(25):
        bgr = np.zeros((48, 64, 3), np.uint8)
        bgr[...] = (0, 0, 220)
        bgr[:, : 2 * i] = (0, 220, 0)
        writer.write(bgr)
    writer.release()
    return path


# --- parse_source -------------------------------------------------------------------------------


def test_parse_source(tmp_path):
    assert parse_source(0) == 0 and parse_source("2") == 2 and parse_source(" 1 ") == 1
    assert parse_source("rtsp://cam.local/live") == "rtsp://cam.local/live"
    assert parse_source("http://example.com/does-not-matter.mp4").startswith("http://")
    (tmp_path / "clip.mp4").write_bytes(b"x")
    assert parse_source(tmp_path / "clip.mp4") == str(tmp_path / "clip.mp4")
    with pytest.raises(SourceError, match=r"clip2\.mp4: not found"):
        parse_source(tmp_path / "clip2.mp4")
    with pytest.raises(SourceError, match="not found"):
        parse_source("²")  # a unicode digit is not a camera index


# --- the sample clips ---------------------------------------------------------------------------


@needs_samples
@pytest.mark.parametrize("path, frames", [(HAMILTON, 275), (OVAL, 510)])
def test_properties_and_every_frame(path, frames):
    with FrameSource(path) as source:
        assert source.frame_count == frames
        assert source.size == (640, 360)
        assert source.fps == pytest.approx(29.97, abs=0.01)
        assert not source.is_live
        seen = list(source)
    assert len(seen) == frames and source.failed_frames == 0
    assert [f.index for f in seen] == list(range(frames))
    assert seen[-1].time_s == pytest.approx((frames - 1) / 29.97, abs=0.01)
    assert seen[0].image.shape == (360, 640, 3) and seen[0].image.dtype == np.uint8


@needs_samples
def test_every_second():
    frames = list(iter_frames(HAMILTON, every_s=1.0))
    assert len(frames) == 10  # 275 frames = 9.2 s → 0, 1, ..., 9 s
    times = np.array([f.time_s for f in frames])
    assert times[0] == 0.0
    np.testing.assert_allclose(np.diff(times), 1.0, atol=0.05)
    assert all(np.diff([f.index for f in frames]) == 30)


@needs_samples
def test_max_frames():
    frames = list(iter_frames(OVAL, max_frames=5))
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    sparse = list(iter_frames(OVAL, every_s=2.0, max_frames=3))
    assert [round(f.time_s) for f in sparse] == [0, 2, 4]


@needs_samples
def test_frames_are_rgb():
    capture = cv2.VideoCapture(str(HAMILTON))
    for _ in range(100):  # past the opening, into frames with colour
        ok, bgr = capture.read()
    capture.release()
    assert ok
    frame = list(iter_frames(HAMILTON, max_frames=100))[-1]
    assert frame.index == 99
    np.testing.assert_array_equal(frame.image, bgr[..., ::-1])
    assert frame.image.flags.c_contiguous


@needs_samples
def test_truncated_copy_iterates_and_ends(tmp_path, caplog):
    """A clip cut at 40% of its bytes: frames up to the cut, then a clean end and a warning."""
    data = OVAL.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.4)])
    with caplog.at_level(logging.WARNING, logger="siamese.io.video"):
        with FrameSource(cut) as source:
            frames = list(source)
    assert 50 < len(frames) < 510
    assert "cut.mp4" in caplog.text and "truncated" in caplog.text


@needs_samples
def test_truncated_copy_without_index_cannot_open(tmp_path):
    """This clip keeps its index (moov atom) at the end, so its first 40% cannot even be opened."""
    data = HAMILTON.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.4)])
    with pytest.raises(SourceError, match=r"cut\.mp4: not a readable video"):
        FrameSource(cut)


# --- files made here ----------------------------------------------------------------------------


def test_synthetic_video(synthetic):
    with FrameSource(synthetic) as source:
        assert (source.frame_count, source.size, source.fps) == (25, (64, 48), 10.0)
        frames = list(source)
    assert len(frames) == 25
    for f in frames:
        assert isinstance(f, Frame) and f.image.shape == (48, 64, 3)
        assert f.time_s == pytest.approx(f.index / 10.0)
    red = frames[3].image[24, 40].astype(int)  # column 40 is still red in frame 3
    green = frames[24].image[24, 10].astype(int)
    assert red[0] > 150 and red[1] < 60 and red[2] < 60
    assert green[1] > 150 and green[0] < 60 and green[2] < 60


def test_non_ascii_path(synthetic, tmp_path):
    renamed = synthetic.rename(tmp_path / "vidéo 日本.mp4")
    assert len(list(iter_frames(renamed, max_frames=3))) == 3


def test_synthetic_every_s_picks_nearest_frames(synthetic):
    frames = list(iter_frames(synthetic, every_s=0.5))
    assert [f.index for f in frames] == [0, 5, 10, 15, 20]


def test_missing_file(tmp_path):
    with pytest.raises(SourceError) as info:
        FrameSource(tmp_path / "clip.mp4")
    assert "clip.mp4: not found" in str(info.value)


@pytest.mark.parametrize("name, content", [("notes.txt", "hello\n" * 200), ("clip.mp4", "not a video at all")])
def test_not_a_video(tmp_path, name, content):
    """A .txt file is the sneaky one: FFmpeg opens it as ANSI-art video unless we refuse it."""
    (tmp_path / name).write_text(content)
    with pytest.raises(SourceError) as info:
        FrameSource(tmp_path / name)
    assert str(info.value) == f"{tmp_path / name}: not a readable video (OpenCV could not open it)"


# --- is_video: by content, by suffix where the content says nothing -----------------------------


def ts_packets(packet: int = 188, offset: int = 0, n: int = 3) -> bytes:
    """`n` MPEG-TS packets (sync byte 0x47), each `offset` bytes after a packet boundary (M2TS: 4)."""
    return b"".join(bytes(offset) + b"\x47" + bytes(packet - offset - 1) for _ in range(n))


def jpeg_bytes(value: int = 100) -> bytes:
    return cv2.imencode(".jpg", np.full((24, 32, 3), value, np.uint8))[1].tobytes()


VIDEO_HEADS = {
    "mp4 brand": b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2mp41",
    "mov brand": b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ",
    "3gp brand": b"\x00\x00\x00\x18ftyp3gp4\x00\x00\x00\x00isom3gp4",
    "old QuickTime": b"\x00\x00\x00\x08wide\x00\x10\x00\x00mdat",
    "MPEG-TS": ts_packets(),
    "MPEG-TS, 2 packets": ts_packets(n=2),
    "M2TS": ts_packets(192, 4),
    "FLV": b"FLV\x01\x05\x00\x00\x00\x09",
    "Matroska": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01webm",
    "AVI": b"RIFF\x00\x10\x00\x00AVI LIST",
    "MPEG-PS": b"\x00\x00\x01\xba\x44\x00\x04\x00\x04\x01",
    "ASF": bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c") + bytes(16),
}


@pytest.mark.parametrize("name", ["clip.dat", "clip", "clip.jpg"])
@pytest.mark.parametrize("kind", sorted(VIDEO_HEADS))
def test_a_video_is_known_by_its_first_bytes(tmp_path, kind, name):
    (tmp_path / name).write_bytes(VIDEO_HEADS[kind])
    assert is_video(tmp_path / name)


def gif_like_ts() -> bytes:
    """A GIF starts with 0x47, MPEG-TS's sync byte: this one has it at 188 and 376 too."""
    gif = bytearray(b"GIF89a" + bytes(500))
    gif[188] = gif[376] = 0x47
    return bytes(gif)


NOT_VIDEOS = {"jpeg": jpeg_bytes, "png": lambda: cv2.imencode(".png", np.zeros((24, 32, 3), np.uint8))[1].tobytes(),
             "gif": gif_like_ts, "heic": lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(600),
             "m4a": lambda: b"\x00\x00\x00\x18ftypM4A \x00\x00\x02\x00M4A isom" + bytes(600)}


@pytest.mark.parametrize("content", sorted(NOT_VIDEOS))
def test_a_photo_or_a_song_named_mp4_is_no_video(tmp_path, content):
    (tmp_path / "photo.mp4").write_bytes(NOT_VIDEOS[content]())
    assert not is_video(tmp_path / "photo.mp4")


def test_unknown_content_keeps_the_suffix_verdict(tmp_path):
    for name in ("broken.mp4", "odd.ogv", "notes.txt", "noise"):
        (tmp_path / name).write_bytes(b"no signature here" * 20)
    assert is_video(tmp_path / "broken.mp4") and is_video(tmp_path / "odd.ogv")
    assert not is_video(tmp_path / "notes.txt") and not is_video(tmp_path / "noise")
    assert {".ts", ".mts", ".m2ts", ".3gp", ".flv", ".mjpeg"} <= VIDEO_SUFFIXES


def test_mjpeg_is_a_stream_of_jpegs(tmp_path):
    frames = b"".join(jpeg_bytes(v) for v in (0, 80, 160, 240))
    (tmp_path / "cam.mjpeg").write_bytes(frames)
    (tmp_path / "cam.jpg").write_bytes(frames)
    assert is_video(tmp_path / "cam.mjpeg") and not is_video(tmp_path / "cam.jpg")
    assert len(list(FrameSource(tmp_path / "cam.mjpeg"))) == 4


def test_is_video_never_raises(tmp_path, monkeypatch):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "folder.mp4").mkdir()
    (tmp_path / "loop.mp4").symlink_to("loop.mp4")
    os.mkfifo(tmp_path / "pipe.mp4")  # opening it to read would block for ever
    for name in ("empty.mp4", "folder.mp4", "loop.mp4", "pipe.mp4", "missing.mp4", "nul\0.mp4"):
        assert is_video(tmp_path / name) is False, name
    (tmp_path / "locked.mp4").write_bytes(VIDEO_HEADS["mp4 brand"])

    def denied(*args, **kw):  # chmod 000 would not stop root, so fake the refusal
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(video, "open", denied, raising=False)
    assert is_video(tmp_path / "locked.mp4") is False


def test_is_video_reads_only_the_start(tmp_path, monkeypatch):
    path = tmp_path / "big.bin"
    path.write_bytes(VIDEO_HEADS["Matroska"] + bytes(5_000_000))
    asked = []
    real_open = open

    class Counting:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def read(self, n=-1):
            asked.append(n)
            return self.f.read(n)

    monkeypatch.setattr(video, "open", lambda *a, **kw: Counting(real_open(*a, **kw)), raising=False)
    assert is_video(path)
    assert asked and all(0 < n <= 512 for n in asked)


@needs_samples
def test_sample_clips_are_videos_and_sample_photos_are_not():
    assert is_video(HAMILTON) and is_video(OVAL)
    photos = [p for p in SAMPLES.parent.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    assert len(photos) >= 4 and not any(is_video(p) for p in photos)


def test_absent_camera():
    with pytest.raises(SourceError) as info:
        FrameSource(99)
    message = str(info.value)
    assert message.startswith("camera 99 could not be opened") and "/dev/video99" in message
    assert "\n" not in message


def test_stream_errors_hide_passwords():
    with pytest.raises(SourceError) as info:
        FrameSource("rtsp://admin:hunter2@127.0.0.1:1/live")
    assert "hunter2" not in str(info.value) and "127.0.0.1:1/live" in str(info.value)


def test_iter_frames_fails_at_the_call_and_releases(synthetic, tmp_path):
    with pytest.raises(SourceError):
        iter_frames(tmp_path / "missing.mp4")  # no need to start the loop to find out
    frames = iter_frames(synthetic)
    assert next(frames).index == 0
    frames.close()  # what `break` in a for loop leads to, once the generator is collected


def test_bad_every_s(synthetic):
    with pytest.raises(ValueError, match="every_s"):
        FrameSource(synthetic, every_s=0)


def test_close_is_idempotent(synthetic):
    source = FrameSource(synthetic)
    source.close()
    source.close()
    assert list(source) == []


# --- a fake camera, for what a real one would do ------------------------------------------------


class FakeCamera:
    """Stands in for cv2.VideoCapture(0): grabs succeed or fail in the given order."""

    def __init__(self, grabs: list[bool], retrieves: list[bool] | None = None):
        self.grabs, self.retrieves = list(grabs), list(retrieves or [])
        self.released = False

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return True

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: 30.0, cv2.CAP_PROP_FRAME_WIDTH: 8.0, cv2.CAP_PROP_FRAME_HEIGHT: 6.0,
                cv2.CAP_PROP_FRAME_COUNT: -1.0}.get(prop, 0.0)

    def grab(self):
        return self.grabs.pop(0) if self.grabs else False

    def retrieve(self):
        if self.retrieves and not self.retrieves.pop(0):
            return False, None
        bgr = np.zeros((6, 8, 3), np.uint8)
        bgr[..., 0] = 255  # blue in BGR
        return True, bgr

    def release(self):
        self.released = True


def open_fake(monkeypatch, camera: FakeCamera) -> FrameSource:
    monkeypatch.setattr(cv2, "VideoCapture", lambda source: camera)
    monkeypatch.setattr(video.time, "sleep", lambda s: None)
    return FrameSource(0, retries=2)


def test_live_source_retries_then_ends(monkeypatch):
    camera = FakeCamera(grabs=[True, False, True, False, False, True, True])
    source = open_fake(monkeypatch, camera)
    assert source.is_live and source.frame_count is None and source.size == (8, 6)
    frames = list(source)
    # one failed read is retried and recovers; three in a row (retries=2) end the stream
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert source.failed_frames == 3
    assert camera.released
    assert tuple(frames[0].image[0, 0]) == (0, 0, 255)
    assert all(b >= a for a, b in zip([f.time_s for f in frames], [f.time_s for f in frames][1:]))


def test_frame_that_fails_to_decode_is_skipped(monkeypatch):
    camera = FakeCamera(grabs=[True] * 4, retrieves=[True, False, True, True])
    source = open_fake(monkeypatch, camera)
    assert [f.index for f in source] == [0, 2, 3]
    assert source.failed_frames == 1
