"""Follow faces from frame to frame, so a video needs a detection only every few frames.

Between detections each track is carried forward by sparse optical flow (pyramidal Lucas-Kanade
on a small grey copy of the frame): its five landmarks and a 3x3 grid inside its box move with
the median point shift and scale with the median change of their spread. Points whose flow does
not come back to where it started (forward-backward check) are dropped; a track that keeps too few
is *lost* (an occlusion, a fast turn, a camera cut), which tells the caller to detect again now.

On a detection frame, detections are matched to tracks greedily by box IoU, and a match is
accepted only when the detected landmarks sit close to the carried ones (within `max_shift`
eye distances): a cut to another face in the same place starts a new track instead of inheriting
the old one's identity. No TensorFlow and no model here; it runs in well under a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from siamese.faces.detect import Face, box_iou

__all__ = ["FaceTracker", "Track"]

_LK = dict(winSize=(15, 15), maxLevel=2,
           criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))
_GRID = np.array([(u, v) for v in (0.25, 0.5, 0.75) for u in (0.25, 0.5, 0.75)], np.float32)


@dataclass
class Track:
    """One face followed over frames.

    Attributes:
        id: unique within a `FaceTracker`, from 1.
        face: where the face is now (source pixels): detected on `detected_at`, then carried
            by the flow.
        born: frame index of the first detection.
        detected_at: frame index of the last detection matched to this track.
        misses: detection frames in a row that found no match.
        state: free for the caller (the verifier keeps its embeddings and judgement here).
    """

    id: int
    face: Face
    born: int
    detected_at: int
    misses: int = 0
    state: dict = field(default_factory=dict)


class FaceTracker:
    """An IoU tracker with optical-flow steps between detections.

    Per frame: `carry(frame)`, then on detection frames `match(faces, index)` (or both at once
    with `update(frame, faces_or_None, index)`).

    Args:
        iou_min: a detection continues a track only if their boxes overlap at least this much.
        max_shift: ... and only if the mean landmark distance is at most this many eye distances.
        max_misses: drop a track after this many detection frames in a row without a match.
        flow_side: the optical flow runs on a grey copy with this long side (px): cheap, and
            faces of a webcam or a 640x360 clip keep enough texture at 320.
        min_points: a track whose flow keeps fewer good points than this is lost.
    """

    def __init__(self, iou_min: float = 0.3, max_shift: float = 0.6, max_misses: int = 1,
                 flow_side: int = 320, min_points: int = 4):
        self.iou_min, self.max_shift, self.max_misses = iou_min, max_shift, max_misses
        self.flow_side, self.min_points = flow_side, min_points
        self.tracks: list[Track] = []
        self.lost = 0  # tracks lost by the flow on the last update
        self._grey: np.ndarray | None = None
        self._next_id = 1

    def update(self, image: np.ndarray, faces: list[Face] | None, index: int) -> list[Track]:
        """`carry` the tracks to this frame, then `match` `faces` when given; returns the tracks."""
        self.carry(image)
        if faces is not None:
            self.match(faces, index)
        return self.tracks

    def carry(self, image: np.ndarray) -> int:
        """Move every track to this frame by optical flow from the previous frame.

        Args:
            image: (H, W, 3) uint8 RGB frame, the next one after the last call.

        Returns:
            How many tracks the flow lost on this frame (also in `self.lost`): when not 0, the
            caller should detect on this frame rather than wait for the next scheduled detection.
        """
        grey, scale = self.grey(image)
        self.lost = 0
        if self._grey is not None and self._grey.shape != grey.shape:
            self.lost, self.tracks = len(self.tracks), []  # the source changed size
        elif self._grey is not None and self.tracks:
            kept = []
            for t in self.tracks:
                moved = self._flow(t.face, grey, scale)
                if moved is None:
                    self.lost += 1
                else:
                    t.face = moved
                    kept.append(t)
            self.tracks = kept
        self._grey = grey
        return self.lost

    def grey(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """(grey copy with long side <= flow_side, factor from its pixels to the source's)."""
        h, w = image.shape[:2]
        f = min(1.0, self.flow_side / max(h, w))
        small = image if f == 1.0 else cv2.resize(image, (round(w * f), round(h * f)),
                                                  interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), 1.0 / f

    def _flow(self, face: Face, grey: np.ndarray, scale: float) -> Face | None:
        x, y, w, h = face.box
        pts = np.concatenate([face.landmarks, np.array([x, y]) + _GRID * [w, h]]) / scale
        p0 = pts.astype(np.float32).reshape(-1, 1, 2)
        p1, ok1, _ = cv2.calcOpticalFlowPyrLK(self._grey, grey, p0, None, **_LK)
        back, ok2, _ = cv2.calcOpticalFlowPyrLK(grey, self._grey, p1, None, **_LK)
        # Forward-backward error: a point tracked truly comes back to where it started.
        fb = np.linalg.norm((back - p0).reshape(-1, 2), axis=1)
        good = (ok1.ravel() == 1) & (ok2.ravel() == 1) & (fb < 1.0)
        if good.sum() < self.min_points:
            return None
        a, b = p0.reshape(-1, 2)[good], p1.reshape(-1, 2)[good]
        ca, cb = np.median(a, 0), np.median(b, 0)
        spread_a = np.linalg.norm(a - ca, axis=1)
        ratio = np.linalg.norm(b - cb, axis=1)[spread_a > 1] / spread_a[spread_a > 1]
        s = float(np.clip(np.median(ratio), 0.8, 1.25)) if len(ratio) else 1.0
        move = lambda p: ((p / scale - ca) * s + cb) * scale  # noqa: E731  (source px -> source px)
        centre = move(face.center)
        box = np.array([*(centre - face.box[2:] * s / 2), *(face.box[2:] * s)], np.float32)
        return Face(box, move(face.landmarks).astype(np.float32), face.score)

    def match(self, faces: list[Face], index: int) -> list[Track]:
        """Continue tracks with this frame's detections; unmatched detections start new tracks.

        Args:
            faces: detections on frame `index`, in source pixels.
            index: the frame's number.

        Returns:
            The live tracks; those continued or started here have `detected_at == index`.
        """
        pairs = []
        if self.tracks and faces:
            overlap = box_iou([t.face.box for t in self.tracks], [f.box for f in faces])
            pairs = sorted(((overlap[i, j], i, j) for i in range(len(self.tracks))
                            for j in range(len(faces)) if overlap[i, j] >= self.iou_min),
                           reverse=True)
        used_t, used_f = set(), set()
        for _, i, j in pairs:  # greedy by IoU: a handful of faces, no need for Hungarian
            if i in used_t or j in used_f or not self._close(self.tracks[i].face, faces[j]):
                continue
            t = self.tracks[i]
            t.face, t.detected_at, t.misses = faces[j], index, 0
            used_t.add(i)
            used_f.add(j)
        for i, t in enumerate(self.tracks):
            if i not in used_t:
                t.misses += 1
        self.tracks = [t for t in self.tracks if t.misses <= self.max_misses]
        for j, f in enumerate(faces):
            if j not in used_f:
                self.tracks.append(Track(self._next_id, f, index, index))
                self._next_id += 1
        return self.tracks

    def _close(self, carried: Face, detected: Face) -> bool:
        eyes = max(float(np.linalg.norm(detected.landmarks[1] - detected.landmarks[0])), 1.0)
        shift = float(np.linalg.norm(carried.landmarks - detected.landmarks, axis=1).mean())
        return shift <= self.max_shift * eyes
