"""What the HTTP service does, without HTTP: the model and detector loaded once, the gallery
opened per call (SQLite: one connection per thread), and a bounded pool for the CPU work.

Every method takes decoded RGB images ((H, W, 3) uint8) and returns plain JSON-ready values;
`siamese.service.app` maps them to routes and errors to status codes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from siamese.faces.detect import Face, YuNetDetector
from siamese.gallery.calibrate import refresh
from siamese.gallery.recognize import load_recognizer
from siamese.gallery.store import Gallery, GalleryError
from siamese.io.names import check_name
from siamese.model.embedder import Embedder
from siamese.verification.verifier import judge, template_scores, verification_rule

log = logging.getLogger(__name__)

__all__ = ["Busy", "Conflict", "Engine", "NoFace", "NotFound", "Upload", "face_json"]


class NoFace(ValueError):
    """An image in which the detector found no face (the message names the image)."""


class NotFound(LookupError):
    """A subject or face id that the gallery does not hold."""


class Conflict(ValueError):
    """A write that contradicts the gallery (an image enrolled for someone else): HTTP 409."""


class Busy(RuntimeError):
    """More requests are waiting than the pool's queue holds: retry later (HTTP 503)."""


def face_json(face: Face) -> dict:
    """A detected face as JSON: box [x, y, w, h] and landmarks [[x, y] x 5] in pixels, the detector's
    confidence `det_score` 0..1 (`score` is kept for match scores)."""
    return {"box": np.round(face.box.astype(float), 1).tolist(),  # float64: 235.8, not 235.8000030517578
            "landmarks": np.round(face.landmarks.astype(float), 1).tolist(),
            "det_score": round(float(face.score), 4)}


@dataclass(frozen=True)
class Upload:
    """One decoded upload: what errors call it, its RGB pixels and the SHA-256 of its bytes."""

    name: str
    rgb: np.ndarray
    sha256: str

    @classmethod
    def of(cls, name: str, data: bytes, rgb: np.ndarray) -> "Upload":
        return cls(name, rgb, hashlib.sha256(data).hexdigest())


class Engine:
    """The service's state: one model, one detector, one gallery file and one worker pool.

    Args:
        model_path: a model directory (None: the shipped model).
        db: the SQLite gallery the CLI uses too (WAL: both may write at once).
        workers: threads doing CPU work (detect, embed, score).
        queue: requests allowed to wait for a worker; more get `Busy`.
        far_target: share of strangers `identify` may name (the gallery's calibration).
    """

    def __init__(self, model_path: str | Path | None, db: str | Path, *, workers: int = 2, queue: int = 64,
                 far_target: float = 0.01):
        self.model = Embedder.load(model_path)
        self.detector = YuNetDetector()
        self.db, self.far_target = Path(db), float(far_target)
        self.pool = ThreadPoolExecutor(max_workers=max(1, int(workers)), thread_name_prefix="siamese")
        self._slots = threading.BoundedSemaphore(max(1, int(workers)) + max(0, int(queue)))
        self._detect_lock = threading.Lock()  # the detector's native code is not documented thread-safe
        self._write_lock = threading.Lock()   # one writer per process (SQLite queues other processes)
        self._recognizer = None
        self.verification = verification_rule(self.model)  # verify.json, read once

    # --- running work ----------------------------------------------------------------------
    async def run(self, fn, *args):
        """`fn(*args)` on the pool; `Busy` when the queue is full (a burst waits, memory stays bounded)."""
        if not self._slots.acquire(blocking=False):
            raise Busy("the server is busy (every worker taken and the queue full) — retry in a moment")
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        finally:
            self._slots.release()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    # --- faces -----------------------------------------------------------------------------
    def faces(self, rgb: np.ndarray) -> list[Face]:
        """Every face, left to right."""
        with self._detect_lock:
            return sorted(self.detector.detect(rgb), key=lambda f: float(f.box[0]))

    def largest(self, up: Upload) -> tuple[Face, np.ndarray]:
        """The largest face of an upload and its (D,) embedding; NoFace when there is none."""
        faces = self.faces(up.rgb)
        if not faces:
            raise NoFace(f"{up.name}: no face found")
        face = max(faces, key=lambda f: float(f.box[2] * f.box[3]))
        return face, self.model.embed_faces(up.rgb, [face])[0]

    def detect(self, up: Upload) -> dict:
        return {"faces": [face_json(f) for f in self.faces(up.rgb)], "width": up.rgb.shape[1],
                "height": up.rgb.shape[0]}

    def embed(self, up: Upload) -> dict:
        faces = self.faces(up.rgb)
        emb = self.model.embed_faces(up.rgb, faces) if faces else np.zeros((0, self.model.dim), np.float32)
        return {"faces": [{**face_json(f), "embedding": np.round(e, 6).tolist()} for f, e in zip(faces, emb)],
                "dim": self.model.dim}

    # --- verification ----------------------------------------------------------------------
    def verify_pair(self, a: Upload, b: Upload) -> dict:
        """Do the largest faces of two images show the same person? (the head's score vs the model's threshold)"""
        (fa, ea), (fb, eb) = self.largest(a), self.largest(b)
        score = float(self.model.score(ea[None], eb[None])[0])
        thr = float(self.model.threshold)
        return {"score": round(score, 4), "threshold": round(thr, 4), "same": score >= thr,
                "faces": [face_json(fa), face_json(fb)]}

    def verify_subject(self, up: Upload, name: str) -> dict:
        """Is the largest face of `up` the enrolled `name`? By the model's verification rule and
        threshold (as `siamese verify`): "score" is the rule's (template: cosine with the mean of
        their gallery faces; share: the share of them the head matches)."""
        face, emb = self.largest(up)
        with self._gallery() as g:
            try:
                enrolled = g.person(name)
            except GalleryError:
                raise NotFound(f"no subject {check_name(name)!r}") from None
        rule, thr = self.verification.name, self.verification.cut(len(enrolled))
        if rule == "template":
            score = float(template_scores(emb[None], enrolled)[0])
        else:
            scores = self.model.score(np.repeat(emb[None], len(enrolled), 0), enrolled)
            score = float(judge(scores[None], self.model.threshold, thr)[0][0])
        return {"subject": check_name(name), "score": round(score, 4), "threshold": round(thr, 4),
                "same": score >= thr, "rule": rule,
                "match_threshold": round(float(self.model.threshold), 4),
                "enrolled_faces": len(enrolled), "faces": [face_json(face)]}

    # --- identification --------------------------------------------------------------------
    def _gallery(self, write: bool = False) -> Gallery:
        """The gallery file, opened for this call (and this thread); reading a missing one is NotFound."""
        if write:
            return Gallery(self.db, self.model.identity())
        if not self.db.exists():
            raise NotFound("the gallery is empty — add a subject first (POST /v1/subjects)")
        g = Gallery(self.db, create=False)
        g.require(self.model.identity())
        return g

    def recognizer(self):
        """The gallery's recognizer, rebuilt only when the gallery's revision changed (None: no gallery yet)."""
        if not self.db.exists():
            return None
        with self._gallery() as g:
            cached = self._recognizer
            if cached is None or cached[0] != g.revision:
                cached = self._recognizer = (g.revision, load_recognizer(g, self.model, far_target=self.far_target))
        return cached[1]

    def identify(self, up: Upload) -> dict:
        """Every face, left to right: the enrolled name, or "unknown" below the gallery's calibrated threshold."""
        faces, rec = self.faces(up.rgb), self.recognizer()
        if rec is None:
            answers = [("unknown", 0.0, False, "")] * len(faces)
        else:
            answers = rec.identify(self.model.embed_faces(up.rgb, faces)) if faces else []
        return {"faces": [{**face_json(f), "name": name, "score": round(score, 4), "known": known,
                           "candidate": cand} for f, (name, score, known, cand) in zip(faces, answers)],
                "threshold": round(rec.threshold, 4) if rec else None}

    # --- subjects --------------------------------------------------------------------------
    def subjects(self) -> list[dict]:
        """[{"name", "faces"}] of everyone enrolled, by name."""
        if not self.db.exists():
            return []
        with self._gallery() as g:
            return [{"name": n, "faces": k} for n, k in g.people()]

    def faces_of(self, name: str) -> list[dict]:
        """The stored faces of one subject: id (for DELETE), source, sha256, box, landmarks."""
        name = check_name(name)
        with self._gallery() as g:
            if name not in dict(g.people()):
                raise NotFound(f"no subject {name!r}")
            return [{k: v for k, v in s.items() if k != "person"} for s in g.sources() if s["person"] == name]

    def add_faces(self, name: str, uploads: list[Upload]) -> dict:
        """Enrol the largest face of each upload as `name` (created if new). An image already enrolled
        for them is a duplicate; one enrolled for someone else is refused, as by `siamese gallery add`.
        Nothing is written unless every upload has a face."""
        name = check_name(name)
        embedded = [(up, *self.largest(up)) for up in uploads]
        with self._write_lock, self._gallery(write=True) as g:
            for up, _, _ in embedded:
                if others := [o for o in g.owners(up.sha256) if o != name]:
                    raise Conflict(f"{up.name}: already enrolled as {others[0]!r}")
            r = g.add(name, np.stack([e for _, _, e in embedded]),
                      [{"source": f"upload:{up.name}", "sha256": up.sha256, "box": np.round(f.box, 1).tolist(),
                        "landmarks": f.landmarks.tolist()} for up, f, _ in embedded])
            self._calibrate(g)
            shas = {up.sha256 for up in uploads}
            ids = [s["id"] for s in g.sources() if s["person"] == name and s["sha256"] in shas]
        return {"subject": name, "new_subject": r["new_person"], "added": r["added"],
                "duplicates": r["duplicates"], "face_ids": ids}

    def remove_subject(self, name: str) -> dict:
        """Delete a subject and all their faces."""
        with self._write_lock, self._gallery() as g:
            try:
                n = g.remove(name)
            except GalleryError:
                raise NotFound(f"no subject {str(name).strip()!r}") from None
            self._calibrate(g)
        return {"subject": str(name).strip(), "removed_faces": n}

    def remove_face(self, name: str, face_id: int) -> dict:
        """Delete one face of a subject by its id (GET /v1/subjects/{name}/faces lists them)."""
        with self._write_lock, self._gallery() as g:
            try:
                g.remove_face(name, face_id)
            except GalleryError:
                raise NotFound(f"subject {check_name(name)!r} has no face {face_id}") from None
            self._calibrate(g)
        return {"subject": check_name(name), "removed_face": face_id}

    def _calibrate(self, g: Gallery) -> None:
        """After a change: the unknown threshold of the new revision, measured on the model's stranger
        bank (no LFW needed at run time) unless the gallery already holds its own impostors."""
        if not len(g.impostors()[0]) and (bank := self.model.impostor_bank()) is not None:
            g.set_impostors(bank[0], bank[1], f"the model's stranger bank ({bank[2]})")
        if len(g.impostors()[0]):
            refresh(g, self.model, self.far_target)

    # --- health ----------------------------------------------------------------------------
    def health(self) -> dict:
        rec = self.recognizer()
        cal = rec.calibration if rec is not None else None
        return {
            "status": "ok", "model_path": str(self.model.path), "dim": self.model.dim,
            "thresholds": {
                "match": {"value": round(float(self.model.threshold), 4),
                          "from": "model.json (chosen on the model's validation people)"},
                "verification": {"value": round(self.verification.threshold, 4), "rule": self.verification.name,
                                 "from": "verify.json" if self.verification.calibrated
                                 else "uncalibrated default (run `siamese calibrate`)"},
                "unknown": {"value": round(rec.threshold, 4) if rec else None, "method": rec.method if rec else None,
                            "from": (f"the gallery's calibration at FAR {cal['far_target']} on {cal['source']}"
                                     if cal else "the model's match threshold (gallery empty or not calibrated)")},
            },
            "gallery": {"path": str(self.db), "subjects": len(rec.names) if rec else 0},
            "model": self.model.fingerprint(),
        }
