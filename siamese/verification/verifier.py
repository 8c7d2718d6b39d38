"""FaceID-style verification: "is this the enrolled person?", live, on any video source.

    frame -> detect (a copy of <= 640 px, every k frames) -> track (optical flow in between)
    -> align + embed (new or stale tracks only) -> compare with the N enrolled embeddings
    (from the gallery, `siamese.gallery`) -> fuse a track's last few comparisons -> VERIFIED / UNVERIFIED per face

Here: `judge` and `Verifier` (a frame); `siamese.verification.live.run` plays a source (window,
verify.jsonl, verify.mp4); its speed is `siamese.eval.bench.verify_speed`. Two thresholds
decide, kept apart from the scores:
- the *verification threshold*, on the score of the face against the enrolled person by the
  verification *rule* (`verify.json` beside the model, from `siamese calibrate` on LFW people the
  model never saw): "template", the cosine of the face's embedding with the enrolled images' mean
  direction (`template_scores`), or "share", the seed tutorial's share of enrolled images that
  match (`judge`). At or above it the face is VERIFIED. Without a verify.json: "share" at 0.5,
  with a warning.
- the *match threshold* (the "share" rule's): on the Siamese head's score, above it one enrolled
  image counts as a match (default: the model's own pair threshold, `embedder.threshold`).
Each face's head scores and share are reported under either rule.
No TensorFlow here: the shipped model runs on ONNX Runtime.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import cv2
import numpy as np

from siamese.faces.detect import Detector, Face, box_iou
from siamese.faces.track import FaceTracker

__all__ = ["FALLBACK_RULE", "FALLBACK_VERIFICATION", "RULES", "VerificationRule", "Verifier", "calibrated_rule",
           "judge", "template_scores", "verification_rule"]

log = logging.getLogger(__name__)

RULES = ("template", "share")
FALLBACK_RULE, FALLBACK_VERIFICATION = "share", 0.5  # used only when the model has no verify.json (logged)


def template_scores(emb: np.ndarray, enrolled: np.ndarray) -> np.ndarray:
    """The "template" rule's score: the cosine of each face with the enrolled person's mean direction.

    Args:
        emb: (n, D) unit embeddings of the faces to judge; enrolled: (N, D) unit embeddings of the
            person's enrolled images.

    Returns:
        (n,) float32 cosines in [-1, 1]; with N = 0 (an empty gallery) -1 for every face.
    """
    emb = np.asarray(emb, np.float32).reshape(len(emb), -1)
    enrolled = np.asarray(enrolled, np.float64).reshape(-1, emb.shape[1])
    total = enrolled.sum(0)
    norm = np.linalg.norm(total)
    if not len(enrolled) or norm < 1e-12:
        return np.full(len(emb), -1.0, np.float32)
    return (emb @ (total / norm).astype(np.float32)).astype(np.float32)


REFINE_SIDE = 320  # px: windows re-detected for landmarks are shrunk to this (faces ~80 px)


def judge(scores: np.ndarray, match_threshold: float,
          verification_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The "share" rule, the seed tutorial's decision from head scores.

    Args:
        scores: (n, N) head scores of n faces against the N enrolled images.
        match_threshold: a score at or above it makes that enrolled image a match.
        verification_threshold: a face is verified when its share of matches is at or above it.

    Returns:
        (shares (n,) float32 in [0, 1], verified (n,) bool). With N = 0 (an empty gallery)
        every share is 0 and nobody is verified.
    """
    scores = np.asarray(scores, np.float32).reshape(len(scores), -1)
    if scores.shape[1] == 0:
        return np.zeros(len(scores), np.float32), np.zeros(len(scores), bool)
    shares = (scores >= match_threshold).mean(axis=1).astype(np.float32)
    return shares, shares >= verification_threshold


class Verifier:
    """Judges every face of every frame against one enrolled person.

    Args:
        embedder: a `siamese.model.Embedder`.
        enrolled: (N, D) embeddings of the person (`siamese.gallery.Gallery.person`).
        detector: a `siamese.faces.Detector`.
        person: the name drawn on the video.
        match_threshold: head score for one enrolled image to match; None = the model's.
        rule: "template" or "share" (module docstring); None = verify.json's, "share" without one.
        verification_threshold: the rule's cut (template: a cosine; share: the share of enrolled
            images that must match); None = calibrated (`verify.json` beside the model, when fitted
            for this rule and, for "template", this many enrolled images), else 0.5 with a warning
            for "share" (an error for "template").
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
                 match_threshold: float | None = None, rule: str | None = None,
                 verification_threshold: float | None = None, detect_every: int = 3,
                 detect_max_side: int | None = 640, embed_every: int = 10,
                 smooth: int = 5, max_faces: int | None = None):
        self.embedder, self.detector, self.person = embedder, detector, person
        self.enrolled = np.asarray(enrolled, np.float32).reshape(-1, embedder.dim)
        self.match_threshold = float(embedder.threshold if match_threshold is None
                                         else match_threshold)
        chosen = verification_rule(embedder, rule, verification_threshold, self.match_threshold)
        self.rule, self.verification_threshold = chosen.name, chosen.cut(len(self.enrolled))
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
            over the enrolled images), "share" (of enrolled images matching), "template" (cosine
            with the enrolled mean), "decision" ("verified" / "unverified", by `self.rule`),
            "track"}], "state" ("verified" when any face is, "unverified", or "no_face")}.
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
            crops = self.embedder.crops(image, [t.face for t in due])
            clock = self._lap("align", clock)
            emb = self.embedder.embed(crops)
            clock = self._lap("embed", clock)
            n, N = len(due), len(self.enrolled)
            scores = self.embedder.score(np.tile(self.enrolled, (n, 1)),
                                         np.repeat(emb, N, axis=0)).reshape(n, N) if N else \
                np.zeros((n, 0), np.float32)
            # Score-level fusion over a track's last `smooth` embeddings: one face seen several
            # times is better evidence than one frame (blur, a blink, a half turn).
            cosines = template_scores(emb, self.enrolled)
            fused, fused_cos = [], []
            for t, s, c in zip(due, scores, cosines):
                t.state["history"] = (t.state.get("history", []) + [(s, c)])[-self.smooth:]
                fused.append(np.mean([h[0] for h in t.state["history"]], axis=0))
                fused_cos.append(float(np.mean([h[1] for h in t.state["history"]])))
            fused = np.array(fused).reshape(n, N)
            shares = judge(fused, self.match_threshold, self.verification_threshold)[0]
            ok = (np.array(fused_cos) if self.rule == "template" else shares) >= self.verification_threshold
            for t, s, sh, c, v in zip(due, fused, shares, fused_cos, ok):
                t.state.update(embedded_at=index, score=float(s.mean()) if N else 0.0,
                               share=float(sh), template=c, verified=bool(v))
            clock = self._lap("compare", clock)
        faces = [{"box": [round(float(v), 1) for v in t.face.box],
                  "score": round(t.state["score"], 4), "share": round(t.state["share"], 4),
                  "template": round(t.state["template"], 4),
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


@dataclass(frozen=True)
class VerificationRule:
    """A verification rule and its cut: `name` ("template" or "share"), `threshold` (the cut as
    given, or verify.json's main one), `by_enrolled` ({enrolled images: cut}, a template
    calibration's: a mean of 10 faces is a steadier direction than one photo, so its cosines run
    higher) and whether it came from verify.json (`calibrated`)."""

    name: str
    threshold: float
    by_enrolled: dict[int, float] = field(default_factory=dict)
    calibrated: bool = False

    def cut(self, enrolled: int | None = None) -> float:
        """The cut for a person with `enrolled` images: that of the largest size fitted at or below
        it (the smallest one for fewer), else `threshold`."""
        if enrolled is None or not self.by_enrolled:
            return self.threshold
        fits = [k for k in self.by_enrolled if k <= enrolled]
        return self.by_enrolled[max(fits) if fits else min(self.by_enrolled)]


def calibrated_rule(embedder, match_threshold: float | None = None) -> VerificationRule | None:
    """The rule in `verify.json` beside the model, if fitted for this model (the file read once).

    None when there is no such file or it was fitted for another model (logged). A file from
    before rules were recorded is the "share" rule. A "share" calibration made at another match
    threshold is still returned, with a warning: its share was fitted for the model's own.
    """
    path = embedder.path / "verify.json"
    cal = embedder.calibration("verify.json")
    if cal is None:
        return None
    try:
        rule = VerificationRule(str(cal.get("rule", "share")), float(cal["verification_threshold"]),
                                {int(k): float(v["threshold"]) for k, v in (cal.get("by_enrolled") or {}).items()},
                                calibrated=True)
        if rule.name not in RULES:
            raise ValueError(f"unknown rule {rule.name!r}")
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: not a calibration ({err}) — refit it: "
                         f"`siamese calibrate {embedder.path} overwrite=true`") from None
    fitted = cal.get("match_threshold", cal.get("detection_threshold"))  # the key before the rename
    if rule.name == "share" and match_threshold is not None and fitted is not None and \
            abs(match_threshold - fitted) > 1e-6:
        log.warning("%s: verification threshold %.3f was fitted at match threshold %.4f, "
                    "not %.4f", path, rule.threshold, fitted, match_threshold)
    return rule


def verification_rule(embedder, rule: str | None = None, threshold: float | None = None,
                      match_threshold: float | None = None) -> VerificationRule:
    """The rule a verifier uses: `rule` at `threshold` when given, else verify.json's (its cuts
    only for its own rule), else "share" at 0.5 with a warning. Raises ValueError for an unknown
    rule, or "template" without a threshold (a cosine has no safe default)."""
    if rule is not None and rule not in RULES:
        raise ValueError(f"rule={rule!r}: one of {', '.join(RULES)}")
    cal = calibrated_rule(embedder, match_threshold)
    name = rule or (cal.name if cal else FALLBACK_RULE)
    if threshold is not None:
        return VerificationRule(name, float(threshold))
    if cal and cal.name == name:
        return cal
    if name == "share":
        log.warning("%s has no verify.json for the share rule: verification threshold %.2f (uncalibrated) — "
                    "run `siamese calibrate %s`", embedder.path, FALLBACK_VERIFICATION, embedder.path)
        return VerificationRule("share", FALLBACK_VERIFICATION)
    raise ValueError(f"{embedder.path}: no verify.json fitted for rule=template — give "
                     f"verification_threshold (a cosine) or run `siamese calibrate {embedder.path}`")
