"""Writing a clustering out: person folders with their crops, contact sheets, the overview, the
manifest (one row per face) and the embeddings of the saved crops (for `siamese review`)."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import numpy as np

from siamese.clustering.appearances import FaceItem
from siamese.clustering.neighbours import cosine
from siamese.clustering.sheets import contact_sheet, overview
from siamese.io.files import atomic_save_npy, atomic_write_text
from siamese.io.images import read_image, write_image

__all__ = ["CROP_EMBEDDINGS", "MANIFEST_COLUMNS", "SHEET_MAX", "UNASSIGNED", "people_labels", "person_names",
           "read_crop_embeddings", "write_crop_embeddings", "write_people", "write_table"]

log = logging.getLogger(__name__)

CROP_EMBEDDINGS = "crop_embeddings"  # .npy: (n, D) float16 mean rows; .json: the model, each row's crop and faces

MANIFEST_COLUMNS = ["crop", "source", "frame", "time_s", "face", "x", "y", "w", "h", "det_score",
                    "frontalness", "sharpness", "track", "track_faces", "best", "cluster",
                    "cosine_to_centre", "score_to_centre", "label", "note"]


UNASSIGNED = "unassigned"


SHEET_MAX = 200        # crops per contact sheet (a person folder can hold more)


def people_labels(tlab: np.ndarray, tracks: list[dict], sharp: np.ndarray) -> np.ndarray:
    """Final groups: a lone track seen in 2+ frames is a person too (one long appearance);
    groups are numbered by how many faces (frames x tracks) they hold, most first."""
    tlab = tlab.copy()
    nxt = int(tlab.max(initial=-1)) + 1
    for n, t in enumerate(tracks):
        if tlab[n] < 0 and sharp[n] and len(t["members"]) >= 2:
            tlab[n], nxt = nxt, nxt + 1
    if nxt == 0:
        return tlab
    faces = np.zeros(nxt)
    np.add.at(faces, tlab[tlab >= 0], [len(t["members"]) for n, t in enumerate(tracks) if tlab[n] >= 0])
    order = np.argsort(-faces, kind="stable")
    new = np.empty(nxt, np.int64)
    new[order] = np.arange(nxt)
    return np.where(tlab >= 0, new[np.maximum(tlab, 0)], -1)


def person_names(m: int) -> list[str]:
    """The folders of person labels 0..m-1: person_001, ... (more digits past 999)."""
    width = max(3, len(str(m)))
    return [f"person_{g + 1:0{width}d}" for g in range(m)]


def write_people(tmp: Path, items, tracks, tlab, temb, embedder, keep_all: bool, sharp):
    """Move crops into person folders and draw the sheets.

    Returns:
        (manifest rows, [(crops, faces) per person]).
    """

    m = int(tlab.max(initial=-1)) + 1
    names = person_names(m)
    cos = np.zeros(len(tracks), np.float32)
    score = np.zeros(len(tracks), np.float32)
    if m:
        centres = np.stack([temb[tlab == g].mean(0) for g in range(m)])
        centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
        has = tlab >= 0
        cos[has] = cosine(temb[has], centres[tlab[has]])
        score[has] = embedder.score(temb[has], centres[tlab[has]])
    rows, groups = [], {name: [] for name in [*names, UNASSIGNED]}
    faces_in = dict.fromkeys(groups, 0)
    for n, t in enumerate(tracks):
        folder = names[tlab[n]] if tlab[n] >= 0 else UNASSIGNED
        faces_in[folder] += len(t["members"])
        for i in t["members"]:
            it, best = items[i], i == t["best"]
            rel = ""
            if best or keep_all:
                rel = f"{folder}/{it.crop_name}" if best else f"{folder}/all/{it.crop_name}"
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp / "_staging" / it.crop_name).rename(tmp / rel)
            if best:
                groups[folder].append((-float(score[n]), rel, _caption(it)))
            x, y, w, h = np.round(it.face.box, 1).tolist()
            rows.append([rel, it.source, it.frame, it.time_s, it.k, x, y, w, h, f"{it.face.score:.2f}",
                         f"{it.frontal:.2f}", f"{it.sharpness:.1f}", t["id"], len(t["members"]), int(best),
                         folder, f"{cos[n]:.4f}" if tlab[n] >= 0 else "",
                         f"{score[n]:.4f}" if tlab[n] >= 0 else "", it.label,
                         "" if sharp[n] else "blurry"])
    sheets = {}
    for folder, crops in groups.items():
        if not crops:
            continue
        crops.sort()  # most typical first (highest score to the centre); unassigned by name
        tiles = [(read_image(tmp / rel), cap) for _, rel, cap in crops[:SHEET_MAX]]
        # Videos keep one crop per track: say how many faces (sampled frames) they stand for.
        note = (f"{len(crops)} faces" if faces_in[folder] == len(crops)
                else f"{len(crops)} tracks, {faces_in[folder]} faces")
        write_image(tmp / folder / "contact_sheet.jpg",
                    contact_sheet(tiles, f"{folder}: {note}", max_tiles=SHEET_MAX, total=len(crops)))
        sheets[folder] = (note, tiles[:8])
    write_image(tmp / "overview.jpg", overview(sheets))
    rows.sort(key=lambda r: (r[15] == UNASSIGNED, r[15], r[1], str(r[2]), r[4]))
    return rows, [(len(groups[name]), faces_in[name]) for name in names]


def _caption(it: FaceItem) -> str:
    if it.time_s != "":
        return f"{float(it.time_s):.1f}s"
    return Path(it.source).stem[:14]


def write_table(path: Path, rows: list[list]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def write_crop_embeddings(out: Path, crops: list[str], emb: np.ndarray, fingerprint: str,
                          faces: list[int] | None = None) -> None:
    """What each saved crop stands for, beside the manifest, so that the review compares faces as
    `siamese cluster` did without embedding them again: `out/crop_embeddings.npy` ((n, D) float16:
    the mean of the unit embeddings of the faces the crop stands for, its whole track when only the
    track's best crop is kept) and `.json` ({"model": the embedder's fingerprint, "crops": the n crop
    file names, "faces": how many faces each stands for, 1 when not given})."""
    faces = [1] * len(crops) if faces is None else [int(n) for n in faces]
    atomic_save_npy(out / f"{CROP_EMBEDDINGS}.npy", np.asarray(emb, np.float16))
    atomic_write_text(out / f"{CROP_EMBEDDINGS}.json",
                      json.dumps({"model": fingerprint, "crops": list(crops), "faces": faces}))


def read_crop_embeddings(root: Path, fingerprint: str) -> dict[str, tuple[np.ndarray, int]]:
    """{crop file name: ((D,) float32 mean embedding of the faces it stands for, their number)}
    written by `write_crop_embeddings` (a crop that is one face: its unit embedding and 1; files
    from before "faces" was written: one face each); empty when there are none, they were made by
    another model (logged) or the files do not match (logged)."""
    meta_path, npy = root / f"{CROP_EMBEDDINGS}.json", root / f"{CROP_EMBEDDINGS}.npy"
    if not meta_path.is_file():
        return {}
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("model") != fingerprint:
            log.info("%s: made by another model — its crops are embedded again", meta_path)
            return {}
        emb = np.load(npy, allow_pickle=False).astype(np.float32)
        faces = np.asarray(meta.get("faces", [1] * len(meta["crops"])), np.int64)
        if emb.ndim != 2 or len(emb) != len(meta["crops"]) or faces.shape != (len(emb),) or (faces < 1).any():
            raise ValueError(f"{len(emb)} rows for {len(meta['crops'])} crops and {faces.size} face counts")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        log.warning("%s: unusable (%s) — its crops are embedded again", meta_path, err)
        return {}
    one = faces == 1  # one face: unit length again after float16
    emb[one] /= np.maximum(np.linalg.norm(emb[one], axis=1, keepdims=True), 1e-12)
    return {str(c): (e, int(n)) for c, e, n in zip(meta["crops"], emb, faces)}
