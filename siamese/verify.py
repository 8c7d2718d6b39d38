"""FaceID-style verification: "is this the enrolled person?", live, on any video source.

    frame -> detect (a copy of <= 640 px, every k frames) -> track (optical flow in between)
    -> align + embed (new or stale tracks only) -> compare with the N enrolled embeddings
    (`siamese.enrolled`) -> fuse a track's last few comparisons -> VERIFIED / UNVERIFIED per face

Here: `judge`, `Verifier` (a frame), `run` (a source: window, verify.jsonl, verify.mp4), `verify`
(`conf/verify.yaml`); its speed is `siamese.bench.verify_speed`. Two thresholds decide, kept
apart from the scores:
- the *detection threshold* on the Siamese head's score: above it, one enrolled image counts as
  a match (default: the model's own pair threshold, `embedder.threshold`);
- the *verification threshold* on the share of enrolled images that match: at or above it the
  face is VERIFIED (default: `verify.json` beside the model, from `siamese.calibration` on LFW
  people the model never saw; 0.5 with a warning when there is none).
No TensorFlow here: the shipped model runs on ONNX Runtime.
"""

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

from siamese.calibration import calibrated_threshold
from siamese.enrolled import load_enrolled
from siamese.faces import Detector, Face
from siamese.pipeline import model_crops
from siamese.faces import box_iou
from siamese.tracking import FaceTracker
from siamese.video import FrameSource

__all__ = ["Verifier", "judge", "run", "verify"]

log = logging.getLogger(__name__)

FALLBACK_VERIFICATION = 0.5  # used only when the model has no verify.json (logged)
REFINE_SIDE = 320  # px: windows re-detected for landmarks are shrunk to this (faces ~80 px)
GREEN, RED, GREY = (40, 200, 40), (40, 40, 230), (160, 160, 160)  # BGR, for drawing


# --- the two thresholds -----------------------------------------------------------------------

def judge(scores: np.ndarray, detection_threshold: float,
          verification_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The seed tutorial's decision from head scores.

    Args:
        scores: (n, N) head scores of n faces against the N enrolled images.
        detection_threshold: a score at or above it makes that enrolled image a match.
        verification_threshold: a face is verified when its share of matches is at or above it.

    Returns:
        (shares (n,) float32 in [0, 1], verified (n,) bool). With N = 0 (an empty gallery)
        every share is 0 and nobody is verified.
    """
    scores = np.asarray(scores, np.float32).reshape(len(scores), -1)
    if scores.shape[1] == 0:
        return np.zeros(len(scores), np.float32), np.zeros(len(scores), bool)
    shares = (scores >= detection_threshold).mean(axis=1).astype(np.float32)
    return shares, shares >= verification_threshold


# --- verification -----------------------------------------------------------------------------

class Verifier:
    """Judges every face of every frame against one enrolled person.

    Args:
        embedder: a `siamese.export.Embedder`.
        enrolled: (N, D) embeddings of the person (see `load_enrolled`).
        detector: a `siamese.faces.Detector`.
        person: the name drawn on the video.
        detection_threshold: head score for one enrolled image to match; None = the model's.
        verification_threshold: share of enrolled images that must match; None = calibrated
            (`verify.json` beside the model), else 0.5 with a warning.
        detect_every: detect on every k-th frame (and on any frame where the flow lost a track);
            optical flow carries the faces in between.
        detect_max_side: detect on a copy shrunk to this long side (px); None = full size.
        embed_every: re-embed a track at most every this many frames (new tracks at once).
        smooth: judge a track on its head scores averaged over its last this many embeddings
            (1: the latest embedding alone).
        max_faces: judge only the largest this many faces (1 for a webcam login); None = all.

    Attributes:
        timings: milliseconds spent per stage, summed over frames (detect, track, embed, compare).
        frames: frames processed.
    """

    def __init__(self, embedder, enrolled: np.ndarray, detector: Detector, *, person: str = "",
                 detection_threshold: float | None = None,
                 verification_threshold: float | None = None, detect_every: int = 3,
                 detect_max_side: int | None = 640, embed_every: int = 10,
                 smooth: int = 5, max_faces: int | None = None):
        self.embedder, self.detector, self.person = embedder, detector, person
        self.enrolled = np.asarray(enrolled, np.float32).reshape(-1, embedder.dim)
        self.detection_threshold = float(embedder.threshold if detection_threshold is None
                                         else detection_threshold)
        if verification_threshold is None:
            verification_threshold = calibrated_threshold(embedder, self.detection_threshold)
            if verification_threshold is None:
                log.warning("%s has no verify.json: verification threshold %.2f (uncalibrated) — "
                            "run `python -m siamese.calibration %s`", embedder.path,
                            FALLBACK_VERIFICATION, embedder.path)
                verification_threshold = FALLBACK_VERIFICATION
        self.verification_threshold = float(verification_threshold)
        self.detect_every, self.detect_max_side = max(1, int(detect_every)), detect_max_side
        self.embed_every, self.max_faces = max(1, int(embed_every)), max_faces
        self.smooth = max(1, int(smooth))
        self.tracker = FaceTracker()
        self.timings: Counter = Counter()
        self.frames = 0
        self._last_detect: int | None = None

    def process(self, image: np.ndarray, index: int | None = None,
                time_s: float | None = None) -> dict:
        """Judge the faces of one frame.

        Args:
            image: (H, W, 3) uint8 RGB, the frame after the previous call's.
            index, time_s: the frame's number and time (default: a count from 0, None).

        Returns:
            {"frame", "time_s", "faces": [{"box" [x, y, w, h] px, "score" (mean head score
            over the enrolled images), "share" (of enrolled images matching), "decision"
            ("verified" / "unverified"), "track"}], "state" ("verified" when any face is,
            "unverified", or "no_face")}.
        """
        index = self.frames if index is None else index
        clock = time.perf_counter()
        lost = self.tracker.carry(image)
        clock = self._lap("track", clock)
        if lost or self._last_detect is None or index - self._last_detect >= self.detect_every:
            small, back = image, 1.0
            if self.detect_max_side and max(image.shape[:2]) > self.detect_max_side:
                f = self.detect_max_side / max(image.shape[:2])
                small = cv2.resize(image, (round(image.shape[1] * f), round(image.shape[0] * f)),
                                   interpolation=cv2.INTER_AREA)
                back = 1.0 / f
            faces = [fc.scaled(back) for fc in self.detector.detect(small)]
            if self.max_faces:
                faces = sorted(faces, key=lambda fc: -float(fc.box[2] * fc.box[3]))[:self.max_faces]
            self._last_detect = index
            clock = self._lap("detect", clock)
            self.tracker.match(faces, index)
            clock = self._lap("track", clock)
        # Embed only tracks detected on this frame (fresh landmarks to align on) that are new
        # or whose last judgement is `embed_every` frames old.
        due = [t for t in self.tracker.tracks if t.detected_at == index
               and index - t.state.get("embedded_at", -10**9) >= self.embed_every]
        if due:
            for t in due:
                t.face = self._refine(image, t.face)
            crops = model_crops(self.embedder, image, [t.face for t in due])
            clock = self._lap("align", clock)
            emb = self.embedder.embed(crops)
            clock = self._lap("embed", clock)
            n, N = len(due), len(self.enrolled)
            scores = self.embedder.score(np.tile(self.enrolled, (n, 1)),
                                         np.repeat(emb, N, axis=0)).reshape(n, N) if N else \
                np.zeros((n, 0), np.float32)
            # Score-level fusion over a track's last `smooth` embeddings: one face seen several
            # times is better evidence than one frame (blur, a blink, a half turn).
            fused = []
            for t, s in zip(due, scores):
                t.state["history"] = (t.state.get("history", []) + [s])[-self.smooth:]
                fused.append(np.mean(t.state["history"], axis=0))
            fused = np.array(fused).reshape(n, N)
            shares, ok = judge(fused, self.detection_threshold, self.verification_threshold)
            for t, s, sh, v in zip(due, fused, shares, ok):
                t.state.update(embedded_at=index, score=float(s.mean()) if N else 0.0,
                               share=float(sh), verified=bool(v))
            clock = self._lap("compare", clock)
        faces = [{"box": [round(float(v), 1) for v in t.face.box],
                  "score": round(t.state["score"], 4), "share": round(t.state["share"], 4),
                  "decision": "verified" if t.state["verified"] else "unverified", "track": t.id}
                 for t in self.tracker.tracks if "embedded_at" in t.state]
        state = ("no_face" if not faces else
                 "verified" if any(f["decision"] == "verified" for f in faces) else "unverified")
        self.frames += 1
        return {"frame": index, "time_s": None if time_s is None else round(float(time_s), 3),
                "faces": faces, "state": state}

    def _refine(self, image: np.ndarray, face: Face) -> Face:
        """`face` detected again at full resolution in a window around it.

        Landmarks found on a shrunk frame are coarse (a pixel there is several here), and the
        crops they align are shifted and blurred: on the Hamilton clip (smooth=1) Lin was
        verified on 71 % of his frames from 320 px landmarks, 79 % with this refinement, 92 %
        with full-size detection. One small window per embedding costs ~1-3 ms.
        """
        if not self.detect_max_side or max(image.shape[:2]) <= self.detect_max_side:
            return face  # detected at full size already
        h, w = image.shape[:2]
        cx, cy = face.center
        half = max(face.box[2], face.box[3])  # the window: the face with half its size around
        x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
        x1, y1 = int(min(w, cx + half)), int(min(h, cy + half))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return face
        window = image[y0:y1, x0:x1]
        f = min(1.0, REFINE_SIDE / max(window.shape[:2]))
        if f < 1.0:
            window = cv2.resize(window, (max(1, round(window.shape[1] * f)),
                                         max(1, round(window.shape[0] * f))),
                                interpolation=cv2.INTER_AREA)
        shift = np.array([x0, y0], np.float32)
        found = [Face(fc.box / f + np.r_[shift, 0, 0], fc.landmarks / f + shift, fc.score)
                 for fc in self.detector.detect(window)]
        if not found:
            return face
        overlap = box_iou(face.box, [fc.box for fc in found])[0]
        return found[int(overlap.argmax())] if overlap.max() >= 0.3 else face

    def _lap(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[stage] += 1000 * (now - since)
        return now


def annotate(image: np.ndarray, result: dict, person: str = "",
             fps: float | None = None) -> np.ndarray:
    """A BGR copy of the RGB `image` with each face's box, decision and score, and the FPS."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    for f in result["faces"]:
        x, y, w, h = (int(round(v)) for v in f["box"])
        ok = f["decision"] == "verified"
        cv2.rectangle(bgr, (x, y), (x + w, y + h), GREEN if ok else RED, 2)
        label = f"{person + ' ' if ok and person else ''}{'VERIFIED' if ok else 'UNVERIFIED'} " \
                f"{f['score']:.2f} ({100 * f['share']:.0f}%)"
        # Above the box, or below it when the box touches the top (the status line lives there).
        ty = y - 6 if y >= 34 else min(y + h + 16, bgr.shape[0] - 4)
        cv2.putText(bgr, label, (x, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    GREEN if ok else RED, 1, cv2.LINE_AA)
    top = "no face" if result["state"] == "no_face" else result["state"]
    if fps:
        top += f"  {fps:.0f} FPS"
    cv2.putText(bgr, top, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, GREY, 1, cv2.LINE_AA)
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
        source: a camera index, video file or stream URL (see `siamese.video.parse_source`).
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
        siamese.video.SourceError: the camera, file or stream cannot be opened (one line).
        FileExistsError: an earlier result in `out_dir` and not `overwrite`.
    """
    window = shown = bool(show) and display_available()
    if show is True and not window:
        log.warning("no window: OpenCV has no GUI here (opencv-python-headless) or there is no "
                    "display — writing the video instead")
    out = Path(out_dir) if out_dir is not None else None
    paths = {} if out is None else {"jsonl": out / "verify.jsonl", "video": out / "verify.mp4"}
    for p in paths.values():
        if p.exists() and not overwrite:
            raise FileExistsError(f"{p} exists — choose another out dir or pass overwrite=true")
    src = FrameSource(source, max_frames=max_frames)  # a bad source fails here, before any output
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    tmp = {k: p.with_name(f".{p.stem}.partial{p.suffix}") for k, p in paths.items()}
    stats, writer, log_file, fps, prev = Counter(), None, None, None, None
    start = last = time.perf_counter()
    try:
        log_file = open(tmp["jsonl"], "w") if tmp else None
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
            if log_file:
                log_file.write(json.dumps(r) + "\n")
            record = tmp and (video if video is not None else not window)
            if window or record:
                bgr = annotate(fr.image, r, verifier.person, fps)
                if record:
                    if writer is None:
                        writer = cv2.VideoWriter(str(tmp["video"]), cv2.VideoWriter_fourcc(*"mp4v"),
                                                 src.fps or 30.0, bgr.shape[1::-1])
                    writer.write(bgr)
                if window:
                    try:
                        cv2.imshow("siamese verify (q to quit)", bgr)
                        key = cv2.waitKey(1) & 0xFF
                    except cv2.error as err:  # the display went away: carry on headless
                        log.warning("window closed (%s) — continuing without it",
                                    str(err).strip()[:80])
                        window, key = False, None
                    if key in (ord("q"), 27):
                        break
            last = time.perf_counter()
            verifier.timings["annotate_write"] += 1000 * (last - now)
    except KeyboardInterrupt:
        log.info("stopped by the user after %d frames", stats["frames"])
    finally:
        src.close()
        if log_file:
            log_file.close()
        if writer is not None:
            writer.release()
        if window:
            cv2.destroyAllWindows()
        for k, p in tmp.items():  # whatever was verified so far is kept, even after Ctrl-C
            if p.exists():
                os.replace(p, paths[k])
    seconds = time.perf_counter() - start
    return {"frames": stats["frames"], "frames_with_face": stats["frames_with_face"],
            "verified_frames": stats["verified_frames"],
            "no_face_frames": stats["frames"] - stats["frames_with_face"],
            "fps": round(stats["frames"] / seconds, 1) if stats["frames"] else None,
            "failed_frames": src.failed_frames, "shown": shown,
            **{k: str(p) for k, p in paths.items() if p.exists()}}


# --- entry point (Hydra: conf/verify.yaml) ----------------------------------------------------

def verify(cfg) -> dict:
    """`conf/verify.yaml` -> a `Verifier` on `cfg.source`; prints the summary and outputs."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from siamese.export import Embedder

    embedder = Embedder.load(cfg.model_path, threads=cfg.get("threads"))
    verifier = Verifier(embedder, load_enrolled(cfg.gallery, cfg.person, embedder),
                        instantiate(cfg.detector), person=cfg.person,
                        detection_threshold=cfg.detection_threshold,
                        verification_threshold=cfg.verification_threshold,
                        detect_every=cfg.detect_every, detect_max_side=cfg.detect_max_side,
                        embed_every=cfg.embed_every, smooth=cfg.smooth,
                        max_faces=cfg.max_faces)
    out = cfg.get("out") or HydraConfig.get().runtime.output_dir
    show = cfg.show if cfg.show in ("auto", True, False) else str(cfg.show).lower() == "true"
    r = run(verifier, cfg.source, out, show=show, video=cfg.video, max_frames=cfg.max_frames)
    judged = r["frames_with_face"]
    print(f"{cfg.person}: verified in {r['verified_frames']} of {judged} frames with a face "
          f"({r['no_face_frames']} without), {r['frames']} frames at {r['fps']} FPS; thresholds: "
          f"detection {verifier.detection_threshold:.3f}, verification "
          f"{verifier.verification_threshold:.3f}" + "".join(
              f"\n{k}: {r[k]}" for k in ("jsonl", "video") if k in r))
    if r["failed_frames"]:
        print(f"{r['failed_frames']} frame(s) could not be decoded and were skipped")
    return {**r, "detection_threshold": verifier.detection_threshold,
            "verification_threshold": verifier.verification_threshold}
