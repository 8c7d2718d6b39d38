"""`siamese gallery import INDEX.parquet`: enrol everyone of a face index without embedding again.

The person is decided as `import_folder` decides it for a folder, from each photo's path in the
index: `<person>/<photo>` (the index's `label`) or a top-level `<person>.jpg`. Each photo gives its
one clear face (`siamese.faces.capture.clear_face` on the stored detections and image size: the
same rule, and the same skip reasons, as enrolling the photo), with the embedding the index holds;
video rows are left out (enrol a video with `siamese gallery add`). The index must have been built
with the gallery's model (the same fingerprint). Sources are recorded as `enroll` records them
(path, SHA-256, box, landmarks), so `siamese gallery reembed` works on them later.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np

from siamese.faces.capture import SKIPS, clear_face
from siamese.faces.detect import Face
from siamese.gallery.enrol import REASONS, _warn_look_alikes
from siamese.gallery.store import Gallery, GalleryError
from siamese.io.names import BadName, check_name
from siamese.library.table import open_index

__all__ = ["import_index"]

log = logging.getLogger(__name__)


def _person(source: str) -> str:
    rel = Path(source)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _photos(index) -> tuple[dict[str, list], dict]:
    """{source: [(Face, embedding, sha256, (h, w))]} of the index's photos, and its `_index.json`."""
    idx = open_index(index)
    photos: dict[str, list] = {}
    cols = ["source", "frame", "score", "box", "landmarks", "image_w", "image_h", "sha256", "embedding"]
    for b in idx.batches(cols):
        for j in np.flatnonzero(b["frame"] < 0):
            face = Face(b["box"][j].copy(), b["landmarks"][j].reshape(5, 2).copy(), float(b["score"][j]))
            photos.setdefault(b["source"][j], []).append(
                (face, b["embedding"][j].copy(), b["sha256"][j], (int(b["image_h"][j]), int(b["image_w"][j]))))
    return photos, idx.meta


def import_index(gallery: Gallery, embedder, index: str | os.PathLike) -> dict:
    """Enrol every person of the face index `index` (see the module docstring). All names are
    checked before anything is written; one transaction per person. Returns {person: counts}, the
    counts of `siamese.gallery.enrol.add_images` (its `REASONS`)."""
    photos, meta = _photos(index)
    if meta.get("model") != embedder.fingerprint():
        raise GalleryError(f"{index} was built with another model ({meta.get('model_path')}) than this gallery's "
                           f"{embedder.path} — index the photos again with model_path={embedder.path}")
    groups: dict[str, list[str]] = {}
    for source in sorted(photos):
        try:
            groups.setdefault(check_name(_person(source)), []).append(source)
        except BadName as err:
            raise BadName(f"{index}: {source}: {err}") from None
    if not groups:
        raise GalleryError(f"{index}: no faces of photos — index a folder of people (known/<person>/*.jpg)")
    root, done = Path(meta["root"]), {}
    for person, sources in groups.items():
        counts, vectors, records = Counter(), [], []
        for source in sources:
            faces = photos[source]
            sha = faces[0][2]
            owners = gallery.owners(sha)
            if person in owners:
                counts["duplicates"] += 1
                continue
            if owners:
                log.warning("skipped %s: already enrolled as %s", root / source, owners[0])
                counts["enrolled_as_other"] += 1
                continue
            face, reason = clear_face([f for f, *_ in faces], shape=faces[0][3])
            if face is None:
                counts[reason] += 1
                log.warning("skipped %s: %s", root / source, SKIPS.get(reason, reason))
                continue
            emb = next(e for f, e, *_ in faces if f is face)
            vectors.append(emb)
            records.append({"source": str((root / source).resolve()), "sha256": sha,
                            "box": np.round(face.box, 1).tolist(), "landmarks": face.landmarks.tolist()})
        emb = np.stack(vectors) if vectors else np.zeros((0, embedder.dim), np.float32)
        _warn_look_alikes(gallery, embedder, person, emb, [r["source"] for r in records])
        r = gallery.add(person, emb, records)
        counts["added"] += r["added"]
        counts["duplicates"] += r["duplicates"]
        done[person] = {"person": person, "new_person": r["new_person"], **{k: counts[k] for k in REASONS}}
    return done
