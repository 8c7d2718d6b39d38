"""Enrolment: filling a `siamese.gallery.Gallery` from photos, a folder of people, a camera or a
video, and re-embedding it for another model; also the `siamese gallery` command.

Outcomes, by design: the same name again merges into that person; the same file (by SHA-256) twice
for one person is skipped; a file enrolled as someone else is skipped with a warning; a photo with
no face, or several faces and none clearly dominant (`siamese.pipeline.dominant_face`), is skipped
and counted. Names go through `siamese.gallery.check_name` before anything is written.
No TensorFlow here: the ONNX embedder is all enrolment needs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

from siamese.gallery import Gallery, GalleryError, _now, check_name, model_identity

log = logging.getLogger(__name__)


def _face_of(detector, image: np.ndarray):
    """(face, reason): the one clear face of a photo, else None and why."""
    from siamese.pipeline import dominant_face

    faces = detector.detect(image)
    face = dominant_face(faces)
    return face, ("no_face" if not faces else "several_faces" if face is None else "")


def add_images(gallery: Gallery, embedder, detector, name: str, paths: list) -> dict:
    """Enrol `name` from photos: each photo's one clear face is embedded and stored.

    Returns:
        Counts: added, duplicates (file already enrolled for `name`), enrolled_as_other,
        no_face, several_faces (none dominant), unreadable; and new_person.
    """
    from siamese.images import ImageError, read_image
    from siamese.pipeline import model_crops

    name, counts, crops, sources = check_name(name), Counter(), [], []
    for path in map(Path, paths):
        try:
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            image = read_image(path)
        except (OSError, ImageError) as err:
            log.warning("skipped %s", err)
            counts["unreadable"] += 1
            continue
        owners = gallery.owners(sha)
        if name in owners:
            counts["duplicates"] += 1
            continue
        if owners:
            log.warning("skipped %s: already enrolled as %s", path, owners[0])
            counts["enrolled_as_other"] += 1
            continue
        face, reason = _face_of(detector, image)
        if face is None:
            why = ("several faces, none clearly largest — crop it to one person"
                   if reason == "several_faces" else "no face found")
            log.warning("skipped %s: %s", path, why)
            counts[reason] += 1
            continue
        crops.append(model_crops(embedder, image, [face])[0])
        sources.append({"source": str(path.resolve()), "sha256": sha,
                        "box": np.round(face.box, 1).tolist(),
                        "landmarks": face.landmarks.tolist()})  # exact: re-embed re-aligns
    r = gallery.add(name, embedder.embed(np.stack(crops)) if crops else np.zeros((0, embedder.dim)),
                    sources)
    counts["added"] += r["added"]
    counts["duplicates"] += r["duplicates"]  # a concurrent add of the same file
    return {"person": name, "new_person": r["new_person"], **{k: counts[k] for k in (
        "added", "duplicates", "enrolled_as_other", "no_face", "several_faces", "unreadable")}}


def add_video(gallery: Gallery, embedder, detector, name: str, source, count: int = 20,
              every_s: float = 0.5, min_size: int = 60, min_frontal: float = 0.4) -> dict:
    """Enrol `name` from a camera, video file or stream: frames with one clear, large enough,
    frontal enough face are saved under `gallery.frames_dir/<person id>/` (the re-embed source)
    and added, up to `count`. Returns add_images' counts plus frames read."""
    from siamese.faces import frontalness
    from siamese.images import write_image
    from siamese.pipeline import dominant_face
    from siamese.video import FrameSource

    name = check_name(name)
    kept, frames = [], 0
    with FrameSource(source, every_s=every_s) as src:  # opened first: a bad source adds no one
        with gallery.transaction(bump=False):  # the person's id names the frames folder
            gallery.db.execute("INSERT OR IGNORE INTO people(name, created) VALUES(?, ?)",
                               (name, _now()))
        pid = gallery.db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()[0]
        for fr in src:
            frames += 1
            face = dominant_face(detector.detect(fr.image))
            if face is None or min(face.box[2:]) < min_size or frontalness(face) < min_frontal:
                continue
            stem = f"{Path(src.name).stem}_{fr.index:06d}_{time.time_ns()}"  # unique across runs
            path = gallery.frames_dir / str(pid) / f"{stem}.jpg"
            kept.append(write_image(path, fr.image))
            if len(kept) >= count:
                break
    r = add_images(gallery, embedder, detector, name, kept)
    return {**r, "frames": frames}


def import_folder(gallery: Gallery, embedder, detector, root: str | os.PathLike) -> dict:
    """Enrol everyone in `root`: `root/<person>/*.jpg` and `root/<person>.jpg` (both layouts,
    also mixed). All names are checked before anything is written. Returns {person: counts}."""
    from siamese.images import list_images

    root, groups = Path(root), {}
    if not root.is_dir():
        raise GalleryError(f"{root}: not a folder — import takes known/<person>/*.jpg or known/<person>.jpg")
    for path in list_images(root):
        rel = path.relative_to(root)
        person = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        try:
            groups.setdefault(check_name(person), []).append(path)
        except GalleryError as err:
            raise GalleryError(f"{root / rel.parts[0]}: {err}") from None
    if not groups:
        raise GalleryError(f"{root}: no images — expected known/<person>/*.jpg or known/<person>.jpg")
    return {p: add_images(gallery, embedder, detector, p, paths) for p, paths in groups.items()}


def reembed(gallery: Gallery, embedder) -> dict:
    """Recompute every embedding with `embedder` from its stored source image and landmarks.

    Rows whose source is gone, or whose file changed (SHA-256 differs), or that were added as
    bare vectors, cannot be recomputed: they are named in the log and deleted, since vectors of
    two models cannot be compared. Calibration and the SVC are cleared with the old model.

    Returns:
        {"reembedded", "missing": [paths], "changed": [paths], "no_source", "empty_people": [names]}.
    """
    from siamese.faces import Face
    from siamese.images import ImageError, read_image
    from siamese.pipeline import model_crops

    new, drop, missing, changed, no_source = {}, [], [], [], 0
    for row in gallery.sources():
        path = row["source"]
        if not path or row["landmarks"] is None:
            no_source += 1
            drop.append(row["id"])
            continue
        try:
            data = Path(path).read_bytes()
            if hashlib.sha256(data).hexdigest() != row["sha256"]:
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
        new[row["id"]] = embedder.embed(model_crops(embedder, image, [face]))[0]
    gallery.replace_model(model_identity(embedder), new, drop)
    empty = [n for n, c in gallery.people() if c == 0]
    return {"reembedded": len(new), "missing": missing, "changed": changed,
            "no_source": no_source, "empty_people": empty}


def gallery_command(cfg) -> dict:
    """`siamese gallery ACTION [PATH] [--person NAME]`: add, import, list, remove, reembed,
    calibrate (conf/gallery.yaml). Prints one line per outcome; returns the result."""
    from hydra.utils import instantiate

    from siamese.export import Embedder

    action, db = cfg.action, Path(cfg.db)
    if action in ("list", "remove"):
        g = Gallery(db, create=False)
        if action == "remove":
            person = cfg.person or cfg.path
            n = g.remove(person)
            print(f"removed {person} and {n} embeddings from {db}")
            return {"removed": person, "embeddings": n}
        people = g.people()
        for name, n in people:
            print(f"{name}, {n}")
        cal = g.get("calibration") or {}
        nn, stale = cal.get("nn"), cal.get("revision") != g.revision
        print(f"{len(people)} people, {sum(n for _, n in people)} embeddings in {db}; model "
              f"{(g.model or {}).get('fingerprint', '-')[:12]}; unknown threshold "
              + (f"{nn['threshold']:.4f} (FAR {nn['far_target']} on {nn['impostors']} LFW people)"
                 if nn else "not calibrated") + (" — recalibrated at the next recognize" if stale else ""))
        return {"people": dict(people)}
    embedder = Embedder.load(cfg.model_path)
    if action == "reembed":
        g = Gallery(db, create=False)
        r = reembed(g, embedder)
        print(f"re-embedded {r['reembedded']} faces with {embedder.path}; skipped {len(r['missing'])} "
              f"missing and {len(r['changed'])} changed sources, {r['no_source']} without one"
              + (f"; now without faces: {', '.join(r['empty_people'])}" if r["empty_people"] else ""))
    else:
        g = Gallery(db, model_identity(embedder), create=action != "calibrate")
        detector = instantiate(cfg.detector)
        if action == "add":
            if not cfg.person or cfg.path is None:
                raise GalleryError("gallery add needs PATH (photos, folder, video or camera index) "
                                   "and --person NAME")
            src = str(cfg.path)
            from siamese.pipeline import is_video

            if src.isdigit() or "://" in src or is_video(src):
                results = {cfg.person: add_video(g, embedder, detector, cfg.person, src, **cfg.video)}
            else:
                from siamese.images import list_images

                results = {cfg.person: add_images(g, embedder, detector, cfg.person, list_images(src))}
        elif action == "import":
            results = import_folder(g, embedder, detector, cfg.path)
        elif action != "calibrate":
            raise GalleryError(f"gallery action {action!r}: choose add, import, list, remove, "
                               "reembed or calibrate")
        else:
            results = {}
            g.set_impostors(np.zeros((0, embedder.dim)), [], "")  # forces a fresh LFW sample
        for person, r in results.items():
            print(f"{person}: +{r['added']} faces" + "".join(
                f", {r[k]} {k.replace('_', ' ')}" for k in ("duplicates", "enrolled_as_other",
                                                           "no_face", "several_faces", "unreadable")
                if r[k]))
        r = {"people": results}
    from siamese.recognize import ensure_calibration

    cal = ensure_calibration(g, embedder, cfg.far_target, cfg.calibration, cfg.data.root)
    if cal:
        print(f"unknown threshold {cal['nn']['threshold']:.4f}: accepts {cal['nn']['far_measured']:.1%} "
              f"of {cal['nn']['impostors']} LFW people never enrolled (target {cal['far_target']:.0%})")
    return r
