"""Live verification of a source: a window when there is a display, else an annotated video
(verify.mp4) and one JSON line per frame (verify.jsonl), written atomically at the end."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from siamese.io.draw import box_with_label, scale_for
from siamese.io.video import FrameSource
from siamese.verification.verifier import Verifier

__all__ = ["annotate", "display_available", "run"]

log = logging.getLogger(__name__)

GREEN, RED, GREY = (40, 200, 40), (40, 40, 230), (160, 160, 160)  # BGR, for drawing


# --- the two thresholds -----------------------------------------------------------------------


# --- verification -----------------------------------------------------------------------------


def annotate(image: np.ndarray, result: dict, person: str = "",
             fps: float | None = None, rule: str = "share") -> np.ndarray:
    """A BGR copy of the RGB `image` with each face's box, decision and the score `rule` decides
    by (template: the cosine; share: the mean head score and the share), and the FPS."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    for f in result["faces"]:
        ok = f["decision"] == "verified"
        score = f"{f['template']:.2f}" if rule == "template" else f"{f['score']:.2f} ({100 * f['share']:.0f}%)"
        label = f"{person + ' ' if ok and person else ''}{'VERIFIED' if ok else 'UNVERIFIED'} {score}"
        box_with_label(bgr, f["box"], label, GREEN if ok else RED)  # sized to the frame, inside it
    top = "no face" if result["state"] == "no_face" else result["state"]
    if fps:
        top += f"  {fps:.0f} FPS"
    scale, thick = scale_for(bgr)
    cv2.putText(bgr, top, (8, int(8 + 30 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, GREY, thick, cv2.LINE_AA)
    return bgr


def display_available() -> bool:
    """True when `cv2.imshow` can open a window: a GUI build of OpenCV and, on Linux, a display.

    opencv-python-headless (what this package installs) has no GUI and raises on imshow.
    """
    gui = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.M)
    if not gui or gui.group(1).upper() == "NONE":
        return False
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY")
                                                         or os.environ.get("WAYLAND_DISPLAY"))


def run(verifier: Verifier, source, out_dir: str | os.PathLike | None = None, *,
        show: str | bool = "auto", video: bool | None = None, max_frames: int | None = None,
        overwrite: bool = False) -> dict:
    """Verify every frame of `source`; show a window, and/or write an annotated video and a log.

    Args:
        verifier: a `Verifier`.
        source: a camera index, video file or stream URL (see `siamese.io.video.parse_source`).
        out_dir: where `verify.jsonl` (one JSON line per frame: time_s, frame, faces, state,
            fps) and `verify.mp4` (annotated) go, written under temporary names and renamed at
            the end (also after Ctrl-C). None writes nothing.
        show: "auto" or True: a window when OpenCV can open one (the package's
            opencv-python-headless cannot: then a warning for True, and no window); False: none.
        video: write verify.mp4: None = only while there is no window.
        max_frames: stop after this many frames (None: until the source ends, or q / Esc).
        overwrite: replace an earlier verify.jsonl / verify.mp4 in `out_dir` (otherwise refuse).

    Returns:
        {"frames", "frames_with_face", "verified_frames", "no_face_frames", "fps" (end to end),
        "failed_frames" (undecodable, skipped), "shown", and the paths "jsonl", "video" written}.

    Raises:
        siamese.io.video.SourceError: the camera, file or stream cannot be opened (one line).
        FileExistsError: an earlier result in `out_dir` and not `overwrite`.
    """
    window = shown = bool(show) and display_available()
    if show is True and not window:
        log.warning("no window: OpenCV has no GUI here (opencv-python-headless) or there is no "
                    "display — writing the video instead")
    paths = {} if out_dir is None else {"jsonl": Path(out_dir) / "verify.jsonl",
                                        "video": Path(out_dir) / "verify.mp4"}
    for p in paths.values():
        if p.exists() and not overwrite:
            raise FileExistsError(f"{p} exists — choose another out dir or pass overwrite=true")
    src = FrameSource(source, max_frames=max_frames)  # a bad source fails here, before any output
    outputs = _Outputs(paths, window, record=bool(paths) and (video if video is not None else not window),
                       fps=src.fps or 30.0)
    stats, fps, prev = Counter(), None, None
    start = last = time.perf_counter()
    try:
        for fr in src:
            verifier.timings["decode"] += 1000 * (time.perf_counter() - last)
            r = verifier.process(fr.image, fr.index, fr.time_s)
            now = time.perf_counter()
            if prev is not None:  # frame-to-frame wall time, smoothed: what a viewer sees
                rate = 1 / max(now - prev, 1e-6)
                fps = rate if fps is None else 0.9 * fps + 0.1 * rate
            prev = now
            r["fps"] = None if fps is None else round(fps, 1)
            stats["frames"] += 1
            stats["frames_with_face"] += r["state"] != "no_face"
            stats["verified_frames"] += r["state"] == "verified"
            go_on = outputs.add(fr.image, r, verifier.person, fps, verifier.rule)
            last = time.perf_counter()
            verifier.timings["annotate_write"] += 1000 * (last - now)
            if not go_on:
                break
    except KeyboardInterrupt:
        log.info("stopped by the user after %d frames", stats["frames"])
    finally:
        src.close()
        outputs.close()  # whatever was verified so far is kept, even after Ctrl-C
    seconds = time.perf_counter() - start
    return {"frames": stats["frames"], "frames_with_face": stats["frames_with_face"],
            "verified_frames": stats["verified_frames"],
            "no_face_frames": stats["frames"] - stats["frames_with_face"],
            "fps": round(stats["frames"] / seconds, 1) if stats["frames"] else None,
            "failed_frames": src.failed_frames, "shown": shown,
            **{k: str(p) for k, p in paths.items() if p.exists()}}


class _Outputs:
    """Where each judged frame goes: a window, verify.mp4 and verify.jsonl. The files are written
    under hidden partial names and renamed into place by `close`."""

    def __init__(self, paths: dict[str, Path], window: bool, record: bool, fps: float):
        self.paths, self.window, self.record, self.fps = paths, window, record, fps
        self.tmp = {k: p.with_name(f".{p.stem}.partial{p.suffix}") for k, p in paths.items()}
        if paths:
            paths["jsonl"].parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.tmp["jsonl"], "w") if paths else None
        self.writer = None

    def add(self, image: np.ndarray, result: dict, person: str, fps: float | None, rule: str = "share") -> bool:
        """Log, draw and show one frame; False when the user pressed q or Esc in the window."""
        if self.log:
            self.log.write(json.dumps(result) + "\n")
        if not (self.window or self.record):
            return True
        bgr = annotate(image, result, person, fps, rule)
        if self.record:
            if self.writer is None:
                self.writer = cv2.VideoWriter(str(self.tmp["video"]), cv2.VideoWriter_fourcc(*"mp4v"),
                                              self.fps, bgr.shape[1::-1])
            self.writer.write(bgr)
        if self.window:
            try:
                cv2.imshow("siamese verify (q to quit)", bgr)
                return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)
            except cv2.error as err:  # the display went away: carry on headless
                log.warning("window closed (%s) — continuing without it", str(err).strip()[:80])
                self.window = False
        return True

    def close(self) -> None:
        if self.log:
            self.log.close()
        if self.writer is not None:
            self.writer.release()
        if self.window:
            cv2.destroyAllWindows()
        for k, p in self.tmp.items():
            if p.exists():
                os.replace(p, self.paths[k])
