"""Enrolment for verification: one person's clear frontal faces, kept in their own folder.

    photos / camera / video -> one clear frontal face each (`siamese.pipeline.dominant_face`,
    `siamese.faces.frontalness`) -> aligned as the model expects -> embedded ->
    gallery/<person>/crops/<person>_NNNN.jpg   the aligned crops, for a human to check
                    embeddings.npy             (N, D) float32 unit vectors
                    person.json                the images' sources and the model's identity

Here: `enroll` (add to, or replace, an enrolment), `load_enrolled` (what `siamese.verify`
compares with) and `enroll_from_config` (`conf/enroll.yaml`, `siamese enroll`). The model is
identified by `siamese.gallery.model_identity` (one fingerprint for its ONNX and Keras copies):
an enrolment made with another model is refused with a re-enrol message. Writes are atomic:
a new or replaced enrolment is built beside the old one and swapped in at the end; an addition
commits with person.json. No TensorFlow here.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from siamese.faces import Detector, align, frontalness, resize_faces
from siamese.gallery import model_identity
from siamese.images import IMAGE_SUFFIXES, ImageError, atomic_write_bytes, atomic_write_text, \
    list_images, read_image, write_image
from siamese.pipeline import dominant_face
from siamese.video import FrameSource

__all__ = ["enroll", "enroll_from_config", "load_enrolled"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _same_model(stored: dict, ident: dict) -> bool:
    """Whether person.json's model (`stored`) is the network `ident` identifies."""
    return stored.get("fingerprint") == ident["fingerprint"]


def _check_person(person: str) -> str:
    if not isinstance(person, str) or not _NAME.fullmatch(person) or ".." in person:
        raise ValueError(f"person name {person!r}: use letters, digits, '-', '_' or '.' "
                         "(it becomes a folder name)")
    return person


def _candidates(source, every_s: float, stats: Counter):
    """(label, frame, time_s, RGB image) from photos (a list, a folder or one file) or a video."""
    if isinstance(source, (list, tuple)):
        paths = [Path(p) for p in source]
    elif not isinstance(source, int) and Path(source).is_dir():
        paths = list_images(source)
    elif not isinstance(source, int) and Path(source).suffix.lower() in IMAGE_SUFFIXES:
        if not Path(source).exists():
            raise FileNotFoundError(f"{source}: not found — check the path to the photo")
        paths = [Path(source)]
    else:  # a camera, a video file or a stream
        with FrameSource(source, every_s=every_s) as src:
            for fr in src:
                yield src.name, fr.index, round(fr.time_s, 3), fr.image
            stats["undecodable_frames"] += src.failed_frames
        return
    if not paths:
        raise FileNotFoundError(f"{source}: no photos here — give a folder of photos, a list of "
                                "photos, a video, or a camera index")
    for path in paths:
        try:
            yield str(path), None, None, read_image(path)
        except ImageError as err:
            log.warning("skipped %s", err)
            stats["unreadable"] += 1



def enroll(source, person: str, gallery_dir: str | os.PathLike, detector: Detector, embedder, *,
           count: int = 10, every_s: float = 0.5, min_size: int = 60, min_frontal: float = 0.5,
           replace: bool = False) -> dict:
    """Enrol `person`: keep up to `count` photos or frames with one clear frontal face.

    Each kept face is aligned as the model expects, embedded, and saved under
    `gallery_dir/<person>/`: `crops/<person>_NNNN.jpg` (the aligned crops, for a human to check),
    `embeddings.npy` ((N, D) float32 unit vectors) and `person.json` (the images' sources and
    the model's identity, so that a different model refuses them). Enrolling again adds to what
    is there; `replace=True` starts over (the old enrolment is swapped out only at the end).

    Args:
        source: a camera index, video path or stream URL (frames `every_s` apart), or a photo,
            a folder of photos (recursive) or a list of photo paths.
        person: letters, digits, '-', '_' and '.' only (it becomes a folder name).
        gallery_dir: folder holding one sub-folder per enrolled person.
        detector: a `siamese.faces.Detector`; embedder: a `siamese.export.Embedder`.
        count: stop after this many kept faces.
        every_s: for video sources, at most one frame per this many seconds (varied poses).
        min_size: skip faces smaller than this (px); min_frontal: skip faces turned further
            than this `siamese.faces.frontalness` (1 frontal .. 0 profile).
        replace: discard the person's previous enrolment instead of adding to it.

    Returns:
        {"person", "kept", "total" (enrolled images now), "seen", "skipped": {reason: n}, "dir"};
        reasons: no_face, many_faces (no single clear one), small, profile, unreadable,
        undecodable_frames. Nothing is written when nothing is kept.

    Raises:
        ValueError: a bad name, or an enrolment made with another model (re-enrol with replace).
        siamese.video.SourceError: a camera or video that cannot be opened.
    """
    folder = Path(gallery_dir) / _check_person(person)
    ident = model_identity(embedder)
    old = None if replace else _read_person(folder)
    if old is not None and not _same_model(old.get("model", {}), ident):
        raise ValueError(f"{folder}: enrolled with another model ({old['model'].get('path')}) — "
                         "re-enroll with replace=true")
    al = embedder.meta.get("alignment", {})
    size, padding = int(al.get("cache_size", 112)), float(al.get("padding", 0.0))
    stats, crops, records = Counter(), [], []
    try:
        for label, frame, t, image in _candidates(source, every_s, stats):
            stats["seen"] += 1
            faces = detector.detect(image)
            face = dominant_face(faces)
            reason = ("no_face" if not faces else "many_faces" if face is None
                      else "small" if min(face.box[2:]) < min_size
                      else "profile" if frontalness(face) < min_frontal else None)
            if reason:
                stats[reason] += 1
                continue
            crops.append(align(image, face.landmarks, size, padding))
            records.append({"source": label, "frame": frame, "time_s": t,
                            "detector_score": round(face.score, 3),
                            "frontalness": round(frontalness(face), 3)})
            if len(crops) >= count:
                break
    except KeyboardInterrupt:  # a user stopping a camera early keeps what was captured
        log.warning("enrolment of %s stopped by the user after %d faces", person, len(crops))
    skipped = {k: v for k, v in stats.items() if k != "seen" and v}
    result = {"person": person, "kept": len(crops), "seen": stats["seen"], "skipped": skipped,
              "dir": str(folder)}
    if not crops:
        result["total"] = 0 if old is None else old["count"]
        log.warning("enrol %s: no usable face in %d images/frames %s", person, stats["seen"],
                    skipped)
        return result
    emb = embedder.embed(resize_faces(np.stack(crops), embedder.input_size))
    _save_person(folder, person, crops, emb, records, ident, old)
    result["total"] = len(crops) + (old["count"] if old else 0)
    log.info("enrol %s: %s", person, result)
    return result


def _read_person(folder: Path) -> dict | None:
    path = folder / "person.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}) — re-enroll with replace=true") \
            from None


def _save_person(folder: Path, person: str, crops: list, emb: np.ndarray, records: list,
                 ident: dict, old: dict | None) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    start = 1 + max((int(m.group(1)) for r in (old or {}).get("images", [])
                     if (m := re.search(r"_(\d+)\.jpg$", r["crop"]))), default=0)
    for k, r in enumerate(records):
        r["crop"] = f"crops/{person}_{start + k:04d}.jpg"
    if old is not None:  # add: new crop files, then embeddings, then person.json (the commit)
        emb = np.concatenate([load_enrolled(folder.parent, person), emb])
        target = folder
    else:  # new or replace: build beside, swap in at the end
        folder.parent.mkdir(parents=True, exist_ok=True)
        target = Path(tempfile.mkdtemp(prefix=f".{person}.", suffix=".partial", dir=folder.parent))
    try:
        for crop, r in zip(crops, records):
            write_image(target / r["crop"], crop)
        buf = io.BytesIO()
        np.save(buf, emb.astype(np.float32))
        atomic_write_bytes(target / "embeddings.npy", buf.getvalue())
        meta = {"person": person, "count": len(emb), "model": ident,
                "created": (old or {}).get("created", now), "updated": now,
                "images": (old or {}).get("images", []) + records}
        atomic_write_text(target / "person.json", json.dumps(meta, indent=2))
        if target != folder:
            aside = folder.with_name(f".{person}.old")
            if folder.exists():
                shutil.rmtree(aside, ignore_errors=True)
                os.rename(folder, aside)
            os.rename(target, folder)
            shutil.rmtree(aside, ignore_errors=True)
    except BaseException:
        if target != folder:
            shutil.rmtree(target, ignore_errors=True)
        raise


def load_enrolled(gallery_dir: str | os.PathLike, person: str, embedder=None) -> np.ndarray:
    """(N, D) float32 embeddings of `person` from `gallery_dir/<person>/`.

    Raises:
        FileNotFoundError: nobody enrolled under that name (with the command that enrols).
        ValueError: a bad name, or enrolled with a different model than `embedder` (re-enrol).
    """
    folder = Path(gallery_dir) / _check_person(person)
    meta = _read_person(folder)
    if meta is None:
        raise FileNotFoundError(f"{folder}: nobody enrolled as {person!r} — run "
                                f"`siamese enroll SOURCE --person {person} gallery={gallery_dir}`")
    if embedder is not None and not _same_model(meta.get("model", {}), model_identity(embedder)):
        raise ValueError(f"{folder}: enrolled with another model ({meta['model'].get('path')}, "
                         f"{str(meta['model'].get('fingerprint'))[:12]}) than {embedder.path} — "
                         f"re-enroll {person} with this model (replace=true)")
    emb = np.load(folder / "embeddings.npy")
    if len(emb) < meta["count"]:
        raise ValueError(f"{folder / 'embeddings.npy'}: {len(emb)} rows but person.json lists "
                         f"{meta['count']} — re-enroll with replace=true")
    return emb[:meta["count"]].astype(np.float32)  # extra rows: an add cut off before its commit


# --- entry point (Hydra: conf/enroll.yaml) ----------------------------------------------------

def enroll_from_config(cfg) -> dict:
    """`conf/enroll.yaml` -> `enroll(...)`; prints what was kept and why the rest was skipped."""
    from hydra.utils import instantiate

    from siamese.export import Embedder

    source = cfg.source
    if not isinstance(source, (int, str)):
        source = [str(p) for p in source]  # a list of photos from the command line
    r = enroll(source, cfg.person, cfg.gallery, instantiate(cfg.detector),
               Embedder.load(cfg.model_path), count=cfg.count, every_s=cfg.every_s,
               min_size=cfg.min_size, min_frontal=cfg.min_frontal, replace=cfg.replace)
    why = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in r["skipped"].items()) or "none skipped"
    print(f"enrolled {r['kept']} new image(s) of {r['person']} ({r['total']} in all) in {r['dir']} "
          f"from {r['seen']} photos/frames; skipped: {why}")
    if not r["kept"]:
        print("nothing enrolled — face the camera, alone, in good light (or lower min_frontal)")
    return r
