"""Enrolments made before the gallery was the one store: `data/enrolled/<person>/` folders.

Such a folder holds `crops/<person>_NNNN.jpg` (faces aligned to the model's template),
`embeddings.npy` and `person.json`. `import_enrolled` brings one person into the gallery: every
crop is embedded again with the current model (so it does not matter which model made the old
embeddings) and recorded with the crop itself as its source, the template's landmarks as its
landmarks, so `siamese gallery reembed` works on it like on any photo. The folder is only read,
never changed or deleted.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from siamese.faces.align import template
from siamese.faces.detect import Face
from siamese.gallery.enrol import file_sha256
from siamese.gallery.store import Gallery
from siamese.io.images import ImageError, read_image
from siamese.io.names import check_name

__all__ = ["import_enrolled", "legacy_people"]

log = logging.getLogger(__name__)


def legacy_people(root: str | os.PathLike) -> list[str]:
    """Names of the old enrolments under `root` (folders holding a person.json), sorted."""
    root = Path(root)
    return sorted(p.parent.name for p in root.glob("*/person.json")) if root.is_dir() else []


def import_enrolled(gallery: Gallery, embedder, root: str | os.PathLike, person: str) -> int | None:
    """Import `root/<person>/` into `gallery`; returns faces added (None: no such enrolment).

    Raises:
        ValueError: its person.json is not valid JSON (names the file).
    """
    folder = Path(root) / person
    meta_path = folder / "person.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{meta_path}: not valid JSON ({err}) — enrol {person} again") from None
    crops, records = [], []
    for rec in meta.get("images", []):
        path = folder / rec.get("crop", "")
        try:
            crop = read_image(path)
        except ImageError as err:
            log.warning("skipped %s", err)
            continue
        size = crop.shape[0]  # saved at the model's alignment size, on its template
        face = Face(np.array([0, 0, size, size], np.float32), template(size), 1.0)
        crops.append(embedder.crops(crop, [face])[0])
        records.append({"source": str(path.resolve()), "sha256": file_sha256(path),
                        "box": face.box.tolist(), "landmarks": face.landmarks.tolist()})
    if not crops:
        log.warning("%s: no readable crops to import", folder)
        return 0
    r = gallery.add(check_name(meta.get("person", person)), embedder.embed(np.stack(crops)), records)
    return r["added"]
