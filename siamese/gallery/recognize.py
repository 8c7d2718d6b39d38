"""Who is this? Every face in a photo against the gallery: a name, or an honest "unknown".

Five methods, all ending in `score >= threshold` (scores and decisions kept apart):

- "nn" (the distance method): a cosine shortlist of the `shortlist` nearest gallery embeddings,
  each scored by the Siamese head (P(same)); a person's score is their best. Score in [0, 1].
- "centred": the name as "nn" ranks it; the score is the cosine, in the model's locally centred
  space (`siamese.model.centre`: its cluster.json's cohort), between the face and that person's most
  alike enrolled face. A stranger close to many faces (a hub) scores lower there than with the head,
  so more enrolled people are accepted at the same false-accept rate (docs/distill.md, "Centred
  acceptance for 1:N"). Needs a model whose cluster.json is centred, else "nn" is used.
- "asnorm": a cosine shortlist of the `shortlist` nearest gallery embeddings, each cosine
  AS-normalised against the model's cohort (`siamese.model.centre.AsNorm`: each face's own typical
  cosine with strangers taken out); a person's score is their best; names ranked and accepted by it.
  Unitless (0: as alike as a face and its typical stranger). Needs a model with a cohort (a centred
  cluster.json), else "centred"'s fallback, "nn", is used.
- "svc" (the FaceNet seed): a linear SVC one-vs-rest on the gallery embeddings; score is the top
  class's margin (unbounded; 0 = on the boundary). Needs two or more people, else "nn" is used.
- "combined": the head's best score decides known-vs-unknown, the SVC picks the name.

The unknown threshold is calibrated, not guessed: at most `far_target` (1 %) of faces of people
never enrolled may be accepted, measured on faces of LFW people the model never saw scored
against *this* gallery (`unknown_thresholds`). Writing commands (`siamese gallery add / import /
calibrate / reembed`, `siamese.gallery.calibrate.refresh`) store those impostor faces, the
calibration and the SVC in the gallery; recognising only reads them (`load_recognizer`): when the
gallery changed since, or another `far_target` is asked for, the threshold is measured again in
memory from the stored impostors (milliseconds), and nothing is written. Without stored impostors
the model's own verification threshold is used, with a warning: it was chosen for one-to-one
checks and accepts far more strangers against a gallery of many people.

An empty gallery gives "unknown" (score 0.0) for every face, with a warning. A photo without a
face gives no rows (counted in the summary). No TensorFlow on this path.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from siamese.gallery.index import Index
from siamese.gallery.svc import Svc
from siamese.io.draw import box_with_label
from siamese.io.images import iter_images, list_images, write_image
from siamese.io.names import UNKNOWN
from siamese.model.centre import AsNorm, centring, score_norm

__all__ = ["METHODS", "Match", "Recognizer", "annotate", "calibrate", "load_recognizer", "recognize",
           "threshold_at_far", "unknown_thresholds"]

log = logging.getLogger(__name__)

METHODS = ("nn", "svc", "combined", "centred", "asnorm")


class Recognizer:
    """A gallery in memory, ready to answer: `identify(embeddings)`.

    Args:
        embedder: `siamese.model.Embedder` (only `score` and `threshold` are used).
        vectors, labels, names: (N, D) gallery embeddings, (N,) int label into `names`.
        method: "nn", "svc", "combined", "centred" or "asnorm" (see the module doc).
        svc: the fitted `Svc`, needed by "svc" and "combined" (fitted here if None).
        thresholds: {"nn": head score, "svc": margin, "centred": centred cosine, "asnorm": AS-norm
            score} from `calibrate`; missing "nn" falls back to the model's verification threshold,
            missing "svc" to margin 0 ("centred" and "asnorm" have no fallback: `load_recognizer`
            uses "nn" when it cannot calibrate them).
        space: the model's local centring (`siamese.model.centre.centring`), needed by "centred"
            (without it "nn" is used).
        norm: the model's AS-norm (`siamese.model.centre.score_norm`), needed by "asnorm" (without it
            "centred" is used, or "nn" without `space`).
        shortlist: gallery embeddings per query (the cosine's nearest) scored by the head ("nn") or
            by AS-norm ("asnorm").
        int8: `Index`'s 8-bit scan (None: from 50,000 embeddings).
    """

    def __init__(self, embedder, vectors, labels, names, *, method: str = "nn", svc: Svc | None = None,
                 thresholds: dict | None = None, shortlist: int = 32, int8: bool | None = None,
                 space=None, norm: AsNorm | None = None):
        if method not in METHODS:
            raise ValueError(f"method {method!r}: choose one of {', '.join(METHODS)}")
        self.embedder, self.names = embedder, list(names)
        self.index, self.shortlist = Index(vectors, int8), int(shortlist)
        self.labels = np.asarray(labels, np.int64)
        if method in ("svc", "combined") and len(self.names) < 2:
            if self.names:
                log.warning("method %s needs two or more people in the gallery: using nn", method)
            method = "nn"
        if method == "asnorm" and norm is None:  # a model without a cohort
            log.info("method asnorm needs a model with a cohort (a locally centred cluster.json): using %s",
                     "centred" if space is not None else "nn")
            method = "centred"
        if method == "centred" and space is None:  # a model fitted in the plain space only: its head decides
            log.info("method centred needs a model whose cluster.json is locally centred: using nn")
            method = "nn"
        if method in ("svc", "combined") and svc is None:
            svc = Svc.fit(self.index.vectors, self.labels)
        self.method, self.svc, self.space, self.norm = method, svc, space, norm
        self._norm_stats = None  # (N, 2) AS-norm stats of the gallery's faces, NaN until a query needs them
        self._centred = None  # {label: its enrolled faces in the centred space}, filled as candidates come up
        self.thresholds = {"nn": float(embedder.threshold), "svc": 0.0, **(thresholds or {})}
        self.calibration: dict | None = None  # set by load_recognizer: where the thresholds came from

    def rank(self, queries: np.ndarray, kind: str = "nn", top: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The `top` people for each query, best first: (labels (n, top) int64, -1 padded;
        scores (n, top) float32: head P(same) for "nn", SVC margin for "svc", AS-norm score for
        "asnorm"; "centred" ranks as "nn" and puts the first person's centred cosine in the first
        column)."""
        q = np.atleast_2d(np.asarray(queries, np.float32))
        if kind == "centred":  # the head's names, each scored by the centred cosine to its best face
            lab, s = self.rank(q, "nn", top)
            s[:, 0] = self._centred_accept(q, lab[:, 0])
            return lab, s
        if kind == "svc":
            d = self.svc.decision(q)
            lab = np.argsort(-d, axis=1)[:, :top]
            out_l, out_s = np.full((len(q), top), -1), np.full((len(q), top), -np.inf, np.float32)
            out_l[:, :lab.shape[1]], out_s[:, :lab.shape[1]] = lab, np.take_along_axis(d, lab, 1)
            return out_l, out_s
        n, k = len(q), self.shortlist
        if not len(self.index.vectors):  # nobody enrolled: no candidates
            return np.full((n, top), -1), np.full((n, top), -np.inf, np.float32)
        rows, cos = self.index.search(q, k)
        ok = rows >= 0
        if kind == "asnorm":
            if self.norm is None:
                raise ValueError("ranking by asnorm needs the model's AS-norm (norm=score_norm(embedder))")
            s = AsNorm.score(cos, self.norm.stats(q)[:, None], self._gallery_stats(rows)) if n else cos
        else:
            b = self.index.vectors[np.where(ok, rows, 0)].reshape(-1, q.shape[1])
            s = (self.embedder.score(np.repeat(q, k, axis=0), b).reshape(n, k) if n and ok.any()
                 else np.zeros((n, k), np.float32))
        s = np.where(ok, s, -np.inf).astype(np.float32)
        lab = np.where(ok, self.labels[np.where(ok, rows, 0)], -1)
        order = np.argsort(-s, axis=1, kind="stable")
        s, lab = np.take_along_axis(s, order, 1), np.take_along_axis(lab, order, 1)
        out_l, out_s = np.full((n, top), -1), np.full((n, top), -np.inf, np.float32)
        for i in range(n):  # a person's score is their best embedding's: keep first occurrences
            _, first = np.unique(lab[i], return_index=True)
            first = np.sort(first[lab[i, first] >= 0])[:top]
            out_l[i, :len(first)], out_s[i, :len(first)] = lab[i, first], s[i, first]
        return out_l, out_s

    def _gallery_stats(self, rows: np.ndarray) -> np.ndarray:
        """(*rows.shape, 2) AS-norm stats of the gallery faces at `rows` (-1: any), each face's
        computed once, when a query first needs it (a million-face gallery is never scanned whole)."""
        if self._norm_stats is None:
            self._norm_stats = np.full((len(self.index.vectors), 2), np.nan, np.float32)
        need = np.unique(rows[rows >= 0])
        need = need[np.isnan(self._norm_stats[need, 0])]
        if len(need):
            self._norm_stats[need] = self.norm.stats(self.index.vectors[need])
        return self._norm_stats[np.where(rows >= 0, rows, 0)]

    @property
    def threshold(self) -> float:
        """The accept threshold of this recognizer's method (its score's scale: see METHODS)."""
        return float(self.thresholds[self.method if self.method in ("centred", "svc", "asnorm") else "nn"])

    def _centred_accept(self, q: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """(n,) float32: the centred cosine of each query with the most alike enrolled face of its
        label (-inf for -1: no candidate). Only the candidates' faces are centred, once each (a
        million-face gallery is never copied whole)."""
        if self._centred is None:
            order = np.argsort(self.labels, kind="stable")
            cuts = np.flatnonzero(np.diff(self.labels[order])) + 1
            self._rows = {int(self.labels[r[0]]): r for r in np.split(order, cuts) if len(r)}
            self._centred = {}
        for k in set(labels.tolist()) - set(self._centred) - {-1}:
            self._centred[k] = self.space(self.index.vectors[self._rows[k]])
        cq = self.space(q)
        return np.array([(self._centred[int(k)] @ c).max() if k >= 0 else -np.inf
                         for c, k in zip(cq, labels)], np.float32)

    def evidence(self, queries: np.ndarray, method: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ranked labels (n, 5), accept score (n,)) of `method` (default: this one's)."""
        method = method or self.method
        if method == "centred":
            lab, s = self.rank(queries, "centred")
            return lab, s[:, 0]
        lab, s = self.rank(queries, method if method in ("svc", "asnorm") else "nn")
        if method == "combined":
            return self.rank(queries, "svc")[0], s[:, 0]
        return lab, s[:, 0]

    def identify(self, queries: np.ndarray) -> list[tuple[str, float, bool, str]]:
        """[(name or "unknown", score, known, best candidate's name)] per query embedding."""
        q = np.atleast_2d(queries)
        if not self.names:
            return [(UNKNOWN, 0.0, False, "")] * len(q)
        lab, score = self.evidence(q)
        thr = self.threshold
        out = []
        for label, s in zip(lab[:, 0], score):
            cand = self.names[label] if label >= 0 else ""
            out.append((cand if s >= thr else UNKNOWN, float(s), bool(s >= thr), cand))
        return out


def _tokens(name: str) -> tuple[str, ...]:
    return tuple(t for t in re.split(r"[\W_]+", name.lower()) if t)


def unknown_thresholds(recognizer: Recognizer, impostors: np.ndarray, impostor_names: list[str],
                       far_target: float, kinds=("nn",)) -> dict:
    """The calibration of one gallery snapshot: {kind: `calibrate(...)`} for each of `kinds`
    ("nn", "svc"), measured on the impostors whose name is not an enrolled name (an LFW stranger
    who is in fact enrolled would not be a stranger)."""
    enrolled = {_tokens(n) for n in recognizer.names}
    keep = np.array([_tokens(n) not in enrolled for n in impostor_names], bool)
    return {k: calibrate(recognizer, impostors[keep], far_target, k) for k in kinds}


def load_recognizer(gallery, embedder, method: str = "asnorm", far_target: float = 0.01,
                    shortlist: int = 32) -> Recognizer:
    """A `Recognizer` over the gallery's current snapshot. Reads only: the stored SVC when it
    fits this revision (else one fitted in memory), the stored calibration when it fits this
    revision and `far_target` (else measured again in memory on the stored impostors).

    The calibration used is in `recognizer.calibration` (None: no impostors stored, so the
    model's verification threshold stands; logged)."""
    vectors, labels, names, rev = gallery.embeddings()
    if not len(vectors):
        log.warning("%s is empty: every face will be 'unknown' — add people with `siamese gallery "
                    "import DIR`", gallery.path)
    svc = None
    if method in ("svc", "combined") and len(names) >= 2:
        stored = gallery.classifier()
        if stored and stored["revision"] == rev and stored["classes"] == names:
            svc = Svc(stored["coef"], stored["intercept"])
        else:
            log.info("%s changed since its SVC was fitted: fitting one in memory (`siamese gallery "
                     "calibrate` stores it)", gallery.path)
            svc = Svc.fit(vectors, labels)
    # both come from cluster.json's cohort: a model without one has neither (and recognizes by nn)
    space = centring(embedder, purpose="recognize") if method == "centred" else None
    norm = score_norm(embedder) if method == "asnorm" else None
    rec = Recognizer(embedder, vectors, labels, names, method=method, svc=svc, shortlist=shortlist, space=space,
                     norm=norm)
    cohort_scored = {"centred": space, "asnorm": norm}.get(rec.method)  # its thresholds hold in that space only
    kinds = ("nn", "svc") if svc is not None else ("nn", rec.method) if cohort_scored else ("nn",)
    cal = gallery.get("calibration")
    if len(vectors) and not (cal and cal.get("revision") == rev and cal.get("far_target") == far_target
                             and all(k in cal for k in kinds)
                             and (cohort_scored is None or cohort_scored.matches(cal[rec.method]))):
        imp, imp_names = gallery.impostors()
        if len(imp):
            cal = {"revision": rev, "far_target": far_target, "source": gallery.get("impostor_source"),
                   **unknown_thresholds(rec, imp, imp_names, far_target, kinds)}
        else:
            log.warning("%s has no calibration: using the model's verification threshold %.3f, which "
                        "accepts more strangers — run `siamese gallery calibrate`", gallery.path,
                        embedder.threshold)
            cal = None
            if rec.method in ("centred", "asnorm"):  # its threshold has nothing to be set on: the head's stands
                rec.method = "nn"
    rec.thresholds.update({k: cal[k]["threshold"] for k in kinds if cal and k in cal})
    rec.calibration = cal if len(vectors) else None
    return rec


@dataclass
class Match:
    """One face: `source` image, face number, `name` (or "unknown"), `score` (see METHODS),
    `box` [x, y, w, h] px, `known` (score >= threshold), `candidate` (best name, even if unknown)."""

    source: str
    face: int
    name: str
    score: float
    box: list
    known: bool
    candidate: str

    def line(self) -> str:
        """`path, name, score, [x, y, w, h]`: one plain line, like the seed's `(test/vp.jpg, vp)`.
        A path holding a comma, a quote, a line break or edge spaces is quoted by CSV's rules, so
        a file name cannot pose as another result."""
        return f"{csv_field(self.source)}, {self.name}, {self.score:.3f}, [{', '.join(f'{v:g}' for v in self.box)}]"


def csv_field(text: str) -> str:
    """`text` as one CSV field: as it is when plain, else in double quotes with quotes doubled."""
    if any(c in text for c in ',"\n\r') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


def recognize(inputs, recognizer: Recognizer, detector, *, annotate_dir=None,
              overwrite: bool = False) -> tuple[list[Match], dict]:
    """Name every face in photos.

    Args:
        inputs: a photo, a folder (recursive) or a list of them.
        recognizer: from `load_recognizer` (or built on arrays).
        detector: a `siamese.faces.Detector`.
        annotate_dir: if set, write each photo with boxes and names there (same relative path,
            `NAME_EXT.jpg`, so p.jpg and p.png do not collide); an existing non-empty folder is
            refused unless `overwrite`, and a folder at or inside an input always (the originals
            are never written).

    Returns:
        (matches left to right per photo, summary {"images", "faces", "known", "without_face"
        (paths), "unreadable"}). Unreadable photos are logged and counted, never raised.
    """

    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    out = Path(annotate_dir) if annotate_dir else None
    if out is not None:
        _check_annotate_dir(out, inputs, overwrite)
    matches, summary = [], {"images": 0, "faces": 0, "known": 0, "without_face": [], "unreadable": 0}
    for root in map(Path, inputs):
        paths = list_images(root)
        summary["images"] += len(paths)
        skipped: Counter = Counter()
        for path, image in iter_images(paths, skipped):
            faces = sorted(detector.detect(image), key=lambda f: float(f.box[0]))
            if not faces:
                summary["without_face"].append(str(path))
                continue
            found = [Match(str(path), k, n, round(s, 4), np.round(f.box, 1).tolist(), kn, c)
                     for k, (f, (n, s, kn, c)) in enumerate(
                         zip(faces, recognizer.identify(recognizer.embedder.embed_faces(image, faces))))]
            matches += found
            if out is not None:
                rel = path.relative_to(root) if root.is_dir() else Path(path.name)
                write_image(out / rel.with_name(f"{rel.stem}_{rel.suffix.lstrip('.').lower()}.jpg"),
                            annotate(image, found))
        summary["unreadable"] += sum(skipped.values())
    summary["faces"], summary["known"] = len(matches), sum(m.known for m in matches)
    return matches, summary


def _check_annotate_dir(out: Path, inputs: list, overwrite: bool) -> None:
    for root in map(Path, inputs):
        folder = root if root.is_dir() else root.parent
        if out.resolve() == folder.resolve() or out.resolve().is_relative_to(folder.resolve()):
            raise ValueError(f"{out}: annotate_dir is inside the input {folder} — choose a folder outside it "
                             "(the originals are never overwritten)")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file — give annotate_dir=FOLDER")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty — choose another annotate_dir or pass overwrite=true")


def annotate(image: np.ndarray, matches: list[Match]) -> np.ndarray:
    """A copy of `image` (RGB) with each face's box and name: green known, red unknown; the
    labels scale with the image and stay inside it."""
    im = image.copy()
    for m in matches:
        box_with_label(im, m.box, f"{m.name} {m.score:.2f}", (0, 160, 0) if m.known else (200, 0, 0))
    return im


def threshold_at_far(scores: np.ndarray, far: float) -> float:
    """The lowest threshold at which at most `far` of `scores` are >= it (accepted)."""
    # float32 throughout: scores are float32, and numpy compares them with a Python float in
    # float32, where a float64 nudge above s[k] would round back onto it.
    s = np.sort(np.asarray(scores, np.float32))[::-1]
    if not len(s):
        raise ValueError("no impostor scores to calibrate on")
    k = int(np.floor(far * len(s) + 1e-9))
    return float(np.nextafter(s[k], np.float32(np.inf))) if k < len(s) else float(s[-1])


_WARNED: set[tuple[float, int]] = set()


def calibrate(recognizer: Recognizer, impostors: np.ndarray, far_target: float = 0.01,
              kind: str = "nn") -> dict:
    """The unknown threshold for `recognizer`'s gallery at a false-accept rate.

    Args:
        recognizer: the gallery to calibrate.
        impostors: (m, D) embeddings of faces of people not in the gallery (one per person).
        far_target: the share of such people that may be wrongly accepted, e.g. 0.01.
        kind: "nn" (head score), "svc" (margin), "centred" (centred cosine) or "asnorm" (AS-norm score).

    Returns:
        {"threshold", "far_target", "far_measured" (on these impostors), "impostors" (m),
        "gallery_people"}. With m < 10 / far_target the threshold is noisy (logged).
    """
    _, scores = recognizer.rank(impostors, kind, top=1)
    thr = threshold_at_far(scores[:, 0], far_target)
    if len(impostors) < 10 / far_target and (far_target, len(impostors)) not in _WARNED:
        _WARNED.add((far_target, len(impostors)))  # once, not once per kind
        log.warning("calibrating FAR %.3g on only %d impostors: the threshold is noisy", far_target,
                    len(impostors))
    return {"threshold": thr, "far_target": far_target,
            "far_measured": round(float((scores[:, 0] >= thr).mean()), 4),
            "impostors": int(len(impostors)), "gallery_people": len(recognizer.names),
            **(recognizer.space.identity if kind == "centred" else recognizer.norm.identity if kind == "asnorm"
               else {})}
