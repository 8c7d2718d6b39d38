"""Enrolment: filling a `siamese.gallery.Gallery` from photos, a folder of people, a camera or a
video (`enroll`: what `siamese enroll` and `siamese gallery add` run), and re-embedding it for
another model.

Outcomes, by design: the same name again merges into that person; the same file (by SHA-256) twice
for one person is skipped; a file enrolled as someone else is skipped with a warning; photos and
frames go through the one capture loop (`siamese.faces.capture.captures`): one clear face, big and
frontal enough and not cut by the frame border, else skipped and counted by reason. Names follow
`siamese.io.names.check_name`. Nothing is written for a person until a face of theirs is kept. No TensorFlow here.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np

from siamese.faces.capture import SKIPS, captures, sources
from siamese.faces.detect import Face
from siamese.gallery.recognize import Recognizer
from siamese.gallery.store import Gallery, GalleryError, _now
from siamese.io.files import file_digest, sweep_stale
from siamese.io.images import ImageError, list_images, read_image, write_image
from siamese.io.names import BadName, check_name
from siamese.io.video import is_video

__all__ = ["REASONS", "add_images", "add_video", "enroll", "file_sha256", "import_folder", "reembed"]

log = logging.getLogger(__name__)

# What each add reports: kept, and every reason a photo or frame was not.
REASONS = ("added", "duplicates", "enrolled_as_other", *SKIPS, "unreadable")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a photo: what the gallery knows a source file by."""
    return file_digest(path, "sha256")


def _source(path: str, sha: str, face: Face) -> dict:
    return {"source": str(Path(path).resolve()), "sha256": sha, "box": np.round(face.box, 1).tolist(),
            "landmarks": face.landmarks.tolist()}  # exact: re-embed re-aligns from them


def _result(name: str, counts: Counter, r: dict) -> dict:
    counts["added"] += r["added"]
    counts["duplicates"] += r["duplicates"]  # a concurrent add of the same file
    return {"person": name, "new_person": r["new_person"], **{k: counts[k] for k in REASONS}}


def add_images(gallery: Gallery, embedder, detector, name: str, paths: list, *, min_size: float = 0,
               min_frontal: float = 0.0) -> dict:
    """Enrol `name` from photos: each photo's one clear face is embedded and stored.

    Args:
        gallery, embedder, detector: the store, its model and a `siamese.faces.Detector`.
        name: the person (`check_name`).
        paths: photo files.
        min_size, min_frontal: as `siamese.faces.capture.clear_face` (photos a user chose: 0).

    Returns:
        {"person", "new_person", and a count for each of `REASONS`}.
    """
    name, counts, todo = check_name(name), Counter(), {}
    for path in map(str, paths):
        try:
            sha = file_sha256(path)
        except OSError as err:
            log.warning("skipped %s: %s", path, err.strerror or err)
            counts["unreadable"] += 1
            continue
        owners = gallery.owners(sha)
        if name in owners:
            counts["duplicates"] += 1
        elif owners:
            log.warning("skipped %s: already enrolled as %s", path, owners[0])
            counts["enrolled_as_other"] += 1
        else:
            todo[path] = sha
    crops, records = [], []
    for cap in captures(sources(list(todo), stats=counts) if todo else [], detector, min_size=min_size,
                        min_frontal=min_frontal, stats=counts):
        crops.append(embedder.crops(cap.image, [cap.face])[0])
        records.append(_source(cap.source, todo[cap.source], cap.face))
    emb = embedder.embed(np.stack(crops)) if crops else np.zeros((0, embedder.dim), np.float32)
    _warn_look_alikes(gallery, embedder, name, emb, [r["source"] for r in records])
    r = gallery.add(name, emb, records)
    return _result(name, counts, r)


def add_video(gallery: Gallery, embedder, detector, name: str, source, count: int = 20,
              every_s: float = 0.5, min_size: int = 60, min_frontal: float = 0.4) -> dict:
    """Enrol `name` from a camera, video file or stream: up to `count` frames with one clear,
    large enough, frontal enough face. Each kept frame is saved under
    `gallery.frames_dir/<person id>/` (the re-embed source). Returns `add_images`' counts plus
    "frames" read."""
    name, counts = check_name(name), Counter()
    kept = list(captures(sources(source, every_s, counts), detector, count=count, min_size=min_size,
                         min_frontal=min_frontal, stats=counts))  # a bad source raises before any write
    if not kept:
        r = {"added": 0, "duplicates": 0, "new_person": False}
        return {**_result(name, counts, r), "frames": counts["seen"]}
    emb = embedder.embed(np.stack([embedder.crops(c.image, [c.face])[0] for c in kept]))
    # Frames are written to a staging folder first and moved under the person's id in the same
    # transaction that adds their embeddings: a kill leaves no half-enrolled person, and the next
    # enrolment sweeps a killed run's staging folder (siamese.io.files.sweep_stale).
    sweep_stale(gallery.frames_dir / "incoming")
    staging = gallery.frames_dir / f".incoming.tmp-{os.getpid()}-{time.time_ns()}"
    moved = []
    try:
        staged = []
        for cap in kept:
            stem = f"{Path(cap.source).stem}_{cap.frame:06d}_{time.time_ns()}"  # unique across runs
            staged.append((write_image(staging / f"{stem}.jpg", cap.image), cap))
        _warn_look_alikes(gallery, embedder, name, emb, [str(p) for p, _ in staged])
        with gallery.transaction(bump=False):
            new = gallery.db.execute("INSERT OR IGNORE INTO people(name, created) VALUES(?, ?)",
                                     (name, _now())).rowcount == 1
            pid = gallery.db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()[0]
            # Frames no row points at were moved by a run killed before its commit; any run moving
            # frames holds this write lock, so none is in flight: they are orphans.
            known = {Path(src).name for (src,) in gallery.db.execute(
                "SELECT source FROM embeddings WHERE person_id = ? AND source IS NOT NULL", (pid,))}
            for orphan in (gallery.frames_dir / str(pid)).glob("*.jpg"):
                if orphan.name not in known:
                    orphan.unlink(missing_ok=True)
            records = []
            for path, cap in staged:
                sha = file_sha256(path)
                if name in gallery.owners(sha):  # the same frame again: a duplicate row (ignored), no file
                    records.append({"sha256": sha})
                    continue
                final = gallery.frames_dir / str(pid) / path.name
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, final)
                moved.append(final)
                records.append(_source(str(final), sha, cap.face))
            r = {**gallery.add(name, emb, records), "new_person": new}
    except BaseException:
        for path in moved:  # the transaction did not commit: its frames go too
            path.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**_result(name, counts, r), "frames": counts["seen"]}


def _warn_look_alikes(gallery: Gallery, embedder, name: str, emb: np.ndarray, sources: list[str]) -> int:
    """Warn (one line each) about new faces of `name` that another person of the gallery matches
    at its calibrated unknown threshold: the same face under two names, or a look-alike. Returns
    how many. Without a calibration there is no threshold to trust, and no warning."""
    cal = gallery.get("calibration") or {}
    if not len(emb) or "nn" not in cal:
        return 0
    vectors, labels, names, _ = gallery.embeddings()
    others = [i for i, n in enumerate(names) if n != name]
    keep = np.isin(labels, others)
    if not keep.any():
        return 0
    rec = Recognizer(embedder, vectors[keep], labels[keep], names)
    found = 0
    for (label, score), src in zip(zip(*(a[:, 0] for a in rec.rank(emb, top=1))), sources):
        if label >= 0 and score >= cal["nn"]["threshold"]:
            log.warning("%s: this face of %s matches %s (score %.3f >= the unknown threshold %.3f) — the same "
                        "person under two names?", src, name, names[label], score, cal["nn"]["threshold"])
            found += 1
    return found


def enroll(gallery: Gallery, embedder, detector, name: str, source, *, video: dict | None = None) -> dict:
    """Enrol `name` from `source`: a photo, a folder of photos or a list of them (`add_images`),
    or a camera index, video file or stream URL (`add_video`, settings from `video`)."""
    if isinstance(source, (list, tuple)):
        return add_images(gallery, embedder, detector, name, list(source))
    src = str(source)
    if src.strip().isdigit() or "://" in src or is_video(src):
        return add_video(gallery, embedder, detector, name, source, **(video or {}))
    if not Path(src).exists():
        raise FileNotFoundError(f"{src}: not found — give a photo, a folder of photos, a video or a camera index")
    return add_images(gallery, embedder, detector, name, list_images(src))


def import_folder(gallery: Gallery, embedder, detector, root: str | os.PathLike) -> dict:
    """Enrol everyone in `root`: `root/<person>/*.jpg` and `root/<person>.jpg` (both layouts,
    also mixed). All names are checked before anything is written. Returns {person: counts}."""
    root, groups = Path(root), {}
    if not root.is_dir():
        raise GalleryError(f"{root}: not a folder — import takes known/<person>/*.jpg or known/<person>.jpg")
    for path in list_images(root):
        rel = path.relative_to(root)
        person = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        try:
            groups.setdefault(check_name(person), []).append(path)
        except BadName as err:
            raise BadName(f"{root / rel.parts[0]}: {err}") from None
    if not groups:
        raise GalleryError(f"{root}: no images — expected known/<person>/*.jpg or known/<person>.jpg")
    done = {}
    for person, paths in groups.items():  # one transaction per person: a failure keeps whole people
        try:
            done[person] = add_images(gallery, embedder, detector, person, paths)
        except GalleryError as err:
            if not done:
                raise
            raise GalleryError(f"{err} (for {person}; the {len(done)} people before it are stored; the same "
                               "import again adds the rest)") from err
    return done


def reembed(gallery: Gallery, embedder) -> dict:
    """Recompute every embedding with `embedder` from its stored source image and landmarks.

    Rows whose source is gone, or whose file changed (SHA-256 differs), or that were added as
    bare vectors, cannot be recomputed: they are named in the log and deleted, since vectors of
    two models cannot be compared. Calibration and the SVC are cleared with the old model.

    Returns:
        {"reembedded", "missing": [paths], "changed": [paths], "no_source", "empty_people": [names]}.
    """
    new, drop, missing, changed, no_source = {}, [], [], [], 0
    for row in gallery.sources():
        path = row["source"]
        if not path or row["landmarks"] is None:
            no_source += 1
            drop.append(row["id"])
            continue
        try:
            if file_sha256(path) != row["sha256"]:
                changed.append(path)
                drop.append(row["id"])
                log.warning("%s changed since %s was enrolled from it: skipped", path, row["person"])
                continue
            image = read_image(path)
        except (OSError, ImageError):
            missing.append(path)
            drop.append(row["id"])
            log.warning("%s (a source of %s) is gone: skipped — re-add the person", path, row["person"])
            continue
        face = Face(np.float32(row["box"]), np.float32(row["landmarks"]), 1.0)
        new[row["id"]] = embedder.embed(embedder.crops(image, [face]))[0]
    gallery.replace_model(embedder.identity(), new, drop)
    empty = [n for n, c in gallery.people() if c == 0]
    return {"reembedded": len(new), "missing": missing, "changed": changed,
            "no_source": no_source, "empty_people": empty}


